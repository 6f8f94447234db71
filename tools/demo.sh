#!/usr/bin/env bash
# `make demo`: the main job on the built-in simulator. Starts a Docker engine if needed,
# builds the simulator images (cached), brings up a 3-node simulated Atlas 800 A3 cluster
# (idempotent: an existing one is reused), then runs the collection's playbooks against it
# exactly as against a real cluster - only the inventory differs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "Docker engine"
tools/docker-engine.sh

step "Simulated cluster: 3 x Atlas 800 A3 (sim/ascend-sim up)"
sim/ascend-sim up --profile a3 --nodes 3

step "NPU and fabric facts of every node (playbooks/facts.yml)"
ansible-playbook -i inventories/sim playbooks/facts.yml

cat <<'TXT'

Demo done. Today it shows the fact gathering every deployment is gated on (the plan,
preflight and single-node / PD deployment playbooks are still to come). Try a fault:
  sim/ascend-sim fault ascend-sim-node2 chip-health 3 Critical
  .venv/bin/ansible-playbook -i inventories/sim playbooks/facts.yml   # fails naming the chip
  sim/ascend-sim fault ascend-sim-node2 clear
Tear the cluster down with: sim/ascend-sim down
TXT
