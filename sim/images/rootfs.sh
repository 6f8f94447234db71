#!/usr/bin/env bash
# Build a Debian bookworm root filesystem tarball with debootstrap (minbase + extra packages),
# for `docker import`. Nothing is pulled from a container registry: the packages come from the
# Debian mirror (env ASCEND_SIM_MIRROR, default: the mirror this machine's apt uses, else
# http://deb.debian.org/debian).
#
#   rootfs.sh OUT.tar|- PKG[,PKG...]        (- : the tarball goes to stdout)
#
# The rootfs is trimmed for size: no cached .debs, no apt lists, no docs/man pages or message
# translations, and a dpkg config that keeps those out of later installs too.
set -euo pipefail

[[ $# -eq 2 ]] || {
  echo "usage: $0 OUT.tar|- PKG[,PKG...]" >&2
  exit 2
}
out=$1
include=$2

default_mirror() {
  local uri
  uri=$(grep -rhoE '^(URIs:|deb)\s+http://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    grep -oE 'http://[^ ]+' | head -n 1 || true)
  printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}
mirror=${ASCEND_SIM_MIRROR:-$(default_mirror)}

work=$(mktemp -d /var/tmp/ascend-sim-rootfs.XXXXXX)
cleanup() {
  # debootstrap mounts /proc and /sys inside the target while it runs: unmount anything
  # left below it before deleting, and never cross into another file system.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET | grep -F "$work/" | sort -r)
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

target="$work/rootfs"
if ! debootstrap --variant=minbase --include="$include" bookworm "$target" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  tail -n 30 "$target/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  echo "rootfs.sh: debootstrap failed" >&2
  exit 1
fi

rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/cache/apt/*.bin \
  "$target"/var/lib/apt/lists/* "$target"/usr/share/doc/* "$target"/usr/share/man/* \
  "$target"/usr/share/info/* "$target"/var/log/*.log "$target"/var/log/apt/*
find "$target/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
mkdir -p "$target/etc/dpkg/dpkg.cfg.d" "$target/etc/apt/apt.conf.d"
cat >"$target/etc/dpkg/dpkg.cfg.d/01-ascend-sim-nodoc" <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
CFG
cat >"$target/etc/apt/apt.conf.d/01-ascend-sim-clean" <<'CFG'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };
CFG
# Machine identity is per container; an empty machine-id lets systemd make one at boot.
: >"$target/etc/machine-id"
rm -f "$target/var/lib/dbus/machine-id"

if [[ $out == - ]]; then
  tar --numeric-owner --xattrs -C "$target" -cf - .
else
  tar --numeric-owner --xattrs -C "$target" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
fi
