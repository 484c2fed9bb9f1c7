#!/usr/bin/env bash
# Installs, from Debian packages, the programs grab-bench starts that this machine lacks — only
# the ones asked for:
#
#   bash scripts/install-deps.sh                    # everything the tests use
#   bash scripts/install-deps.sh redis-server nginx # what `grab-bench validate --needs` printed
#
# Programs: redis-server; redis-cli (a private Redis Cluster, Debian's redis-tools);
# redis-sentinel (the failover drill's `redis = "sentinel"`); nginx (the
# built-in cluster's balancer); postgres and mariadbd (private databases of a described system);
# chromium (the browser test renders the report page, with a font for its screenshots); ab and wrk
# (the benchmark scripts compare against them); prometheus (the live-metrics test sends to a real
# one); time (GNU time: the hostile-server tests read peak RSS with it). `tests` or no argument:
# all of them.
# Debian/Ubuntu only; elsewhere it says what to install and exits non-zero.
set -euo pipefail

wanted=("$@")
if [ ${#wanted[@]} -eq 0 ] || [ "${wanted[*]}" = tests ]; then
  wanted=(redis-server redis-cli redis-sentinel nginx postgres mariadbd chromium ab wrk prometheus time)
fi

missing=()
for program in "${wanted[@]}"; do
  case $program in
    redis-server) command -v redis-server >/dev/null 2>&1 || missing+=(redis-server) ;;
    redis-cli) command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools) ;;
    # The private master, replica and sentinels of `redis = "sentinel"` (the failover drill).
    redis-sentinel) command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel) ;;
    nginx) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx) ;;
    ab) command -v ab >/dev/null 2>&1 || missing+=(apache2-utils) ;;
    prometheus) command -v prometheus >/dev/null 2>&1 || missing+=(prometheus) ;;
    # GNU time: the hostile-server tests read grab-bench's peak RSS from it (`time -f %M`).
    time) [ -x /usr/bin/time ] || missing+=(time) ;;
    wrk) command -v wrk >/dev/null 2>&1 || missing+=(wrk) ;;
    chromium)
      if [ -z "${GRAB_BENCH_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
        missing+=(chromium fonts-dejavu-core)
      fi ;;
    # Debian keeps initdb and postgres in /usr/lib/postgresql/<version>/bin, off PATH.
    postgres)
      command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
        || missing+=(postgresql) ;;
    mariadbd)
      { command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } \
        && command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server) ;;
    *) echo "grab-bench: install-deps.sh does not know the program '$program'" >&2; exit 2 ;;
  esac
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "grab-bench: please install: ${missing[*]} (no apt-get on this machine)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "grab-bench: installing ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged services; grab-bench starts its own on free ports, so stop those —
# only the ones this run installed: one that was already here may be someone's own.
services=()
for pkg in "${missing[@]}"; do
  case $pkg in
    redis-server) services+=(redis-server) ;;
    nginx) services+=(nginx) ;;
    prometheus) services+=(prometheus prometheus-node-exporter) ;;
    postgresql) services+=(postgresql) ;;
    mariadb-server) services+=(mariadb) ;;
  esac
done
for service in "${services[@]}"; do
  if command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
  $sudo service "$service" stop >/dev/null 2>&1 || true
done
