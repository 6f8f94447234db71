#!/usr/bin/env bash
# Regenerates the toolchain lock from its top-level list in a throw-away venv, so the
# lock holds exactly what toolchain.in resolves to today and nothing left over.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python=${PYTHON:-python3.12}
# lock NAME: requirements/NAME.txt from requirements/NAME.in, resolved in a throw-away venv.
lock() {
  local name=$1
  "$python" -m venv "$tmp/$name"
  "$tmp/$name/bin/pip" install --quiet --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
  "$tmp/$name/bin/pip" install --quiet -r "$root/requirements/$name.in" 2>&1 | { grep -v "^WARNING: Location" || true; }
  {
    echo "# Locked: every package pinned. Generated from $name.in by 'make lock'"
    echo "# (python3.12 -m venv; pip install -r $name.in; pip freeze). Do not edit by hand."
    "$tmp/$name/bin/pip" freeze --all | grep -v -E '^(pip|setuptools|wheel)=='
  } > "$root/requirements/$name.txt"
  echo "wrote requirements/$name.txt"
}
lock toolchain
lock evaluate
