#!/usr/bin/env bash
# Regenerates the toolchain lock from its top-level list in a throw-away venv, so the
# lock holds exactly what toolchain.in resolves to today and nothing left over.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python=${PYTHON:-python3.12}
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
"$tmp/venv/bin/pip" install --quiet -r "$root/requirements/toolchain.in" 2>&1 | { grep -v "^WARNING: Location" || true; }
{
  echo "# Locked toolchain: every package pinned. Generated from toolchain.in by 'make lock'"
  echo "# (python3.12 -m venv; pip install -r toolchain.in; pip freeze). Do not edit by hand."
  "$tmp/venv/bin/pip" freeze --all | grep -v -E '^(pip|setuptools|wheel)=='
} > "$root/requirements/toolchain.txt"
echo "wrote requirements/toolchain.txt"
