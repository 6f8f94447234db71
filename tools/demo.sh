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

step "PD 1P1D deployment of MiniMax-M2.7: prefill on node1, decode on node2, the proxy on node3 (pd_1p1d.yml)"
ansible-playbook -i inventories/sim pd_1p1d.yml

cat <<'TXT'

Demo done: MiniMax-M2.7 (simulated) serves through the PD proxy at ascend-sim-node3:8009, two
prefill DP ranks on node1 and two decode DP ranks on node2 behind it, verified end to end
(every rank's health; chat, the weather tool call and a stream through the proxy). Try:
  sim/ascend-sim exec node3 curl -s localhost:8009/v1/models
  sim/ascend-sim exec node3 curl -s localhost:8009/health          # every backend healthy
  sim/ascend-sim exec node1 npu-smi info                           # the prefill ranks hold chips 0-15
  .venv/bin/ansible-playbook -i inventories/sim pd_1p1d.yml        # again: changed=0
  sim/ascend-sim fault ascend-sim-node2 chip-health 3 Critical
  .venv/bin/ansible-playbook -i inventories/sim playbooks/facts.yml  # fails naming the chip
  sim/ascend-sim fault ascend-sim-node2 clear
Tear the cluster down with: sim/ascend-sim down
TXT
