#!/usr/bin/env bash
# Make promtool usable on this machine (Debian/Ubuntu, root), idempotently: installs Debian's
# `prometheus` package (which ships promtool) if promtool is missing, the way the monitoring
# role installs Prometheus on a site. CI runs it before the tests that check the alert and
# recording rules of roles/monitoring (`promtool check rules`, `promtool test rules`).
# The package's service start may be refused here (policy-rc.d); only promtool is needed.
set -euo pipefail

say() { printf 'promtool: %s\n' "$*"; }
die() {
  printf 'promtool: ERROR: %s\n' "$*" >&2
  exit 1
}

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
[[ $(id -u) -eq 0 ]] || die "promtool is missing; run as root to install Debian's prometheus package"
aptlog=/var/log/ascend-vllm-promtool-apt.log
say "installing prometheus (apt, log: $aptlog)"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  --no-install-recommends prometheus; } >"$aptlog" 2>&1; then
  tail -n 20 "$aptlog" >&2
  die "apt-get install prometheus failed (see $aptlog)"
fi
command -v promtool >/dev/null 2>&1 || die "prometheus installed but promtool not found"
say "installed $(promtool --version 2>&1 | head -n 1)"
