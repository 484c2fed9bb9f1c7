#!/usr/bin/env bash
# Measures what `scripts/run.sh` installs on a fresh Debian machine, before and after
# installing by need: a minimal Debian (debootstrap --variant=minbase) is made once in a temp
# dir, then copied for each package set, and `apt-get install` is timed in each copy (download
# and unpack, services kept from starting). Prints the minutes and the package counts.
# Needs root and the Debian mirror; takes several minutes. Leaves nothing behind.
#
#   bash scripts/measure-install.sh
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "measure-install.sh: needs root (chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null 2>&1 || apt-get install -y -qq debootstrap >/dev/null
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
work=$(mktemp -d /tmp/grab-bench-measure-XXXXXX)
mounted=()
cleanup() {
  for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
echo "measure-install: a minimal $suite in $work/base" >&2
debootstrap --variant=minbase "$suite" "$work/base" http://deb.debian.org/debian >/dev/null
# Services must not start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$work/base/usr/sbin/policy-rc.d"
chmod +x "$work/base/usr/sbin/policy-rc.d"
chroot "$work/base" apt-get update -qq

measure() {
  local name=$1; shift
  local root="$work/$name"
  cp -a "$work/base" "$root"
  mount -t proc proc "$root/proc"; mounted+=("$root/proc")
  local start end count
  start=$(date +%s.%N)
  chroot "$root" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >"$work/$name.log" 2>&1
  end=$(date +%s.%N)
  count=$(grep -c '^Setting up' "$work/$name.log" || true)
  printf '%-28s %6.2f min  %4s packages  (%s)\n' "$name" \
    "$(echo "($end - $start) / 60" | bc -l)" "$count" "$*"
  umount -l "$root/proc"; rm -rf "$root"
}
# Before: install-deps.sh installed everything for every command.
measure before-everything redis-server redis-tools nginx apache2-utils wrk chromium \
  fonts-dejavu-core postgresql mariadb-server
# After: what `grab-bench validate --needs scenarios/1m.toml` prints.
measure after-1m-needs redis-server nginx
