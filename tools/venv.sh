#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv from the locked
# toolchain, so every developer, CI run and demo uses the same ansible-core, collections
# and test tools. Re-running is cheap: nothing is installed while the lock is unchanged.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
lock="$root/requirements/toolchain.txt"

find_python() {
  # ansible-core 2.21 needs Python >= 3.12 on the controller.
  local candidate
  for candidate in "${PYTHON:-}" python3.12 python3.13 python3 \
                   "$HOME"/.pyenv/versions/3.12*/bin/python3 "$HOME"/.pyenv/versions/3.13*/bin/python3; do
    [[ -n "$candidate" ]] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# The repo root is the collection: expose it as ascend.vllm to Ansible (ansible.cfg's
# collections_path) and to Python (tests import ansible_collections.ascend.vllm...).
mkdir -p "$root/.build/collections/ansible_collections/ascend"
ln -sfn "$root" "$root/.build/collections/ansible_collections/ascend/vllm"

# make_venv DIR LOCK: DIR holds exactly LOCK's packages; nothing is done while LOCK is unchanged.
make_venv() {
  local dir=$1 lock=$2 stamp="$1/.toolchain.sha256" want python
  want=$(sha256sum "$lock" | cut -d' ' -f1)
  if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  python=$(find_python) || {
    echo "ERROR: no Python >= 3.12 found (ansible-core 2.21 needs it). Install one, or set PYTHON=/path/to/python3.12." >&2
    exit 1
  }
  echo "==> creating $dir with $python ($("$python" --version))"
  "$python" -m venv --clear "$dir"
  "$dir/bin/python" -m pip install --quiet --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "==> installing the locked packages (${lock#"$root"/})"
  "$dir/bin/python" -m pip install --quiet -r "$lock" 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "$want" > "$stamp"
}

make_venv "$venv" "$lock"
# The evaluator, lm-eval, in a venv of its own (its numpy / pandas / pyarrow pins stay out of the
# toolchain): playbooks/evaluate.yml and its tests find it in .venv-eval.
make_venv "$root/.venv-eval" "$root/requirements/evaluate.txt"
