#!/usr/bin/env bash
# Make a Docker engine usable on this machine (Debian/Ubuntu, root), idempotently:
#   1. install Debian's docker.io (+ debootstrap, iproute2) if missing;
#   2. start dockerd in the background if it is not answering (the package's own service
#      start is blocked on the dev/CI machines), logging to /var/log/dockerd-ascend-sim.log;
#   3. only if a privileged probe container fails (a capability bounding set without, e.g.,
#      CAP_SYS_RESOURCE), install tools/runc-capfilter as /usr/local/sbin/runc-capfilter and
#      restart dockerd with it as the default runtime.
# A no-op when all is up. Prints what it did. See shared/env/MACHINE.md for the measurements.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
log=/var/log/dockerd-ascend-sim.log
wrapper_src="$root/tools/runc-capfilter"
wrapper=/usr/local/sbin/runc-capfilter
probe_image=ascend-sim/probe:1
pidfile=/var/run/docker.pid

say() { printf 'docker-engine: %s\n' "$*"; }
die() {
  printf 'docker-engine: ERROR: %s\n' "$*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (installs packages and starts dockerd)"

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  # the simulated hccn_tool pings for real; its own tests run it on this machine too
  command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
  if ((${#missing[@]} == 0)); then
    return
  fi
  local aptlog=/var/log/ascend-sim-apt.log
  say "installing ${missing[*]} (apt, log: $aptlog)"
  # The packaged service start may be refused here (policy-rc.d); dockerd is started below.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}"; } >"$aptlog" 2>&1; then
    tail -n 20 "$aptlog" >&2
    die "apt-get install ${missing[*]} failed (see $aptlog)"
  fi
  command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd not found"
  say "installed ${missing[*]}"
}

engine_up() { docker info >/dev/null 2>&1; }

dockerd_pid() {
  local pid
  [[ -r $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -n $pid && -d /proc/$pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]] || return 1
  printf '%s\n' "$pid"
}

sync_wrapper() {
  # Keep the installed wrapper equal to the checkout's (only once it has been needed).
  if [[ -e $wrapper ]] && ! cmp -s "$wrapper_src" "$wrapper"; then
    install -m 0755 "$wrapper_src" "$wrapper"
    say "updated $wrapper"
  fi
}

start_dockerd() {
  local args=()
  if [[ -x $wrapper ]]; then
    args=(--add-runtime "capfilter=$wrapper" --default-runtime capfilter)
  fi
  say "starting dockerd ${args[*]} (log: $log)"
  # setsid + nohup: the daemon outlives this script and the calling shell.
  setsid nohup dockerd "${args[@]}" >>"$log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 60; i++)); do
    if engine_up; then
      say "dockerd is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
      return
    fi
    sleep 0.5
  done
  tail -n 20 "$log" >&2 || true
  die "dockerd did not answer within 30 s (see $log)"
}

stop_dockerd() {
  local pid i
  if systemctl is-active --quiet docker 2>/dev/null; then
    die "dockerd is managed by systemd here: add {\"runtimes\": {\"capfilter\": {\"path\": \"$wrapper\"}}, \"default-runtime\": \"capfilter\"} to /etc/docker/daemon.json and restart docker"
  fi
  pid=$(dockerd_pid) || die "dockerd is running but not from $pidfile: stop it, then re-run this script"
  say "stopping dockerd (pid $pid)"
  kill "$pid"
  for ((i = 0; i < 120; i++)); do
    [[ -d /proc/$pid ]] || return 0
    sleep 0.25
  done
  die "dockerd (pid $pid) did not stop within 30 s"
}

make_probe_image() {
  # A tiny image holding /usr/bin/true and its libraries, imported from this machine
  # (nothing can be pulled).
  docker image inspect "$probe_image" >/dev/null 2>&1 && return
  local files
  mapfile -t files < <(
    {
      echo /usr/bin/true
      ldd /usr/bin/true | grep -o '/[^ ]*'
    } | sed 's|^/||' | sort -u
  )
  tar -C / -ch "${files[@]}" 2>/dev/null | docker import - "$probe_image" >/dev/null
}

privileged_ok() {
  docker run --rm --privileged --network none "$probe_image" /usr/bin/true >/dev/null 2>&1
}

install_packages
sync_wrapper

if engine_up; then
  say "dockerd already answering"
else
  start_dockerd
fi

runtime=$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)
if [[ $runtime == capfilter ]]; then
  say "privileged containers: default runtime is capfilter ($wrapper)"
else
  make_probe_image
  if privileged_ok; then
    say "privileged containers work with runtime $runtime"
  else
    say "a privileged probe container failed: installing the runc capability filter"
    install -D -m 0755 "$wrapper_src" "$wrapper"
    stop_dockerd
    start_dockerd
    privileged_ok || die "privileged containers still fail with $wrapper (see $log)"
    say "privileged containers work with runtime capfilter"
  fi
fi
say "ready"
