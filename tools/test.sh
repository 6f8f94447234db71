#!/usr/bin/env bash
# The one test command (`make test`, and .ci/run): static checks first (fast, no
# services), then ansible-test sanity on the built collection, then pytest over the
# unit, simulator and end-to-end suites. Any failure fails the whole run.
# `tools/test.sh lint` runs only the static checks.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$root/.venv/bin"
export PATH="$bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

lint() {
  step "ruff"
  ruff check .
  ruff format --check .
  step "yamllint"
  yamllint --strict .
  step "ansible-lint (production profile)"
  ansible-lint --offline --nocolor
  step "changelog fragments"
  antsibull-changelog lint
}

lint
[[ "${1:-}" == "lint" ]] && exit 0

step "ansible-test sanity (built collection, --local)"
tools/sanity.sh

if ls tests/sim/test_cluster.py >/dev/null 2>&1 || compgen -G "molecule/*/molecule.yml" >/dev/null; then
  step "Docker engine (for simulator and Molecule tests)"
  tools/docker-engine.sh
fi

scenarios=()
for config in molecule/*/molecule.yml; do
  [[ -e $config ]] && scenarios+=("$(basename "$(dirname "$config")")")
done
if ((${#scenarios[@]})); then
  step "simulator images (the Molecule platforms are simulated nodes)"
  sim/ascend-sim build
  for scenario in "${scenarios[@]}"; do
    step "molecule test -s $scenario"
    molecule test -s "$scenario"
  done
fi

step "promtool (the monitoring role's rules are checked and unit-tested with it)"
tools/promtool.sh
export ASCEND_REQUIRE_PROMTOOL=1

# Last, so that its closing line is the run's summary. The fault cases among the tests
# write their table (tests/faults.py) to docs/faults.md.
export ASCEND_FAULTS_DOC="$root/docs/faults.md"
step "pytest"
pytest
