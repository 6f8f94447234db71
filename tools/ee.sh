#!/usr/bin/env bash
# The execution environment of the AWX job templates (awx/ee/execution-environment.yml):
#   tools/ee.sh create       the build context in .build/ee/context (Containerfile, _build/)
#   tools/ee.sh build [TAG]  the image too (podman or docker), tagged TAG (ascend-vllm-ee:<version>)
# Both first build this checkout's collection tarball into .build/ee/collection, the file the
# definition installs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.venv/bin"
work="$root/.build/ee"
action=${1:-create}
version=$(sed -n 's/^version: *//p' "$root/galaxy.yml")

rm -rf "$work/collection" "$work/context"
mkdir -p "$work/collection"
"$bin/ansible-galaxy" collection build "$root" --output-path "$work/collection" --force >/dev/null
expected="ascend-vllm-$version.tar.gz"
if ! grep -q "collection/$expected" "$root/awx/ee/requirements.yml"; then
  echo "awx/ee/requirements.yml must install collection/$expected (galaxy.yml is at $version)" >&2
  exit 1
fi
case $action in
  create)
    "$bin/ansible-builder" create -f "$root/awx/ee/execution-environment.yml" -c "$work/context" ;;
  build)
    "$bin/ansible-builder" build -f "$root/awx/ee/execution-environment.yml" -c "$work/context" \
      -t "${2:-ascend-vllm-ee:$version}" ;;
  *)
    echo "usage: tools/ee.sh create|build [TAG]" >&2
    exit 2 ;;
esac
