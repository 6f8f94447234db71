#!/usr/bin/env bash
# Runs `ansible-test sanity` on the collection exactly as users receive it: build the
# tarball (honouring galaxy.yml's build_ignore), install it with --offline into a
# temporary ansible_collections tree, and test that tree. This also proves that the
# built artifact installs without Galaxy.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
work="$root/.build/sanity"
python="$venv/bin/python"

rm -rf "$work"
mkdir -p "$work/dist"
"$venv/bin/ansible-galaxy" collection build "$root" --output-path "$work/dist" --force >/dev/null
tarball=$(ls "$work"/dist/ascend-vllm-*.tar.gz)
# --force: ansible.cfg already exposes this checkout as ascend.vllm, which galaxy would take as installed.
ANSIBLE_COLLECTIONS_PATH="$work/collections" "$venv/bin/ansible-galaxy" collection install --offline --no-deps --force \
  -p "$work/collections" "$tarball" >/dev/null
echo "==> built and installed offline: $(basename "$tarball")"

# ansible-test bootstraps pip in its sanity virtual environments with a get-pip script it
# downloads from a host these machines cannot reach. A stand-in with the same contract
# (pip install arguments in argv) works from ensurepip and PyPI.
# ansible-test pins the pip version it bootstraps in its own source.
pip_version=$("$python" - <<'PY'
import pathlib, re
import ansible_test
source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
# ansible-test runs pip with a filtered environment, so a CA bundle given to pip through
# PIP_CERT (networks with a TLS-inspecting proxy) would be lost: the stand-in writes it
# into each sanity venv's own pip.conf instead.
ca_bundle=${PIP_CERT:-${REQUESTS_CA_BUNDLE:-}}
sed "s|@CA_BUNDLE@|$ca_bundle|" > "$cache/get_pip_${pip_version//./_}.py" <<'PY'
"""Stand-in for ansible-test's get-pip bootstrap: ensurepip, then pip install argv."""
import ensurepip
import os
import subprocess
import sys

CA_BUNDLE = "@CA_BUNDLE@"
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

if CA_BUNDLE:
    with open(os.path.join(sys.prefix, "pip.conf"), "w") as conf:
        conf.write("[global]\ncert = %s\n" % CA_BUNDLE)
ensurepip.bootstrap(upgrade=True)
# ensurepip sets PIP_CONFIG_FILE=/dev/null in this process; pip must see the real config.
os.environ.pop("PIP_CONFIG_FILE", None)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
PY

cd "$work/collections/ansible_collections/ascend/vllm"
# ansible-test picks its targets from git; the installed tree is not a checkout.
git init -q && git add -A
PATH="$venv/bin:$PATH" "$venv/bin/ansible-test" sanity --local --python "$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --color no --requirements "$@"
