#!/usr/bin/env bash
# Installs what grab-bench needs and the machine lacks: redis-server, redis-cli (redis-tools),
# redis-sentinel and
# nginx (the system under test), ab (apache2-utils) and wrk (the benchmark script compares against
# them), PostgreSQL and MariaDB (the example shop's databases: sut::postgres and sut::mariadb
# start private servers), and chromium (the browser test renders the report page in it headless; with a font, for its
# screenshots).
# Debian/Ubuntu only; elsewhere it says what to install and exits non-zero.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# redis-cli joins the private Redis Cluster (`redis = "cluster"`); Debian ships it in redis-tools.
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
# redis-sentinel watches the private master and replica of `redis = "sentinel"` (the failover drill).
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v ab >/dev/null 2>&1 || missing+=(apache2-utils)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ -z "${GRAB_BENCH_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium fonts-dejavu-core)
fi
# Debian keeps initdb and postgres in /usr/lib/postgresql/<version>/bin, off PATH.
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
  || missing+=(postgresql)
{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } \
  && command -v mariadb-install-db >/dev/null 2>&1 || missing+=(mariadb-server)

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
# Debian starts the packaged services; grab-bench starts its own on free ports, so stop those.
if command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now redis-server redis-sentinel nginx >/dev/null 2>&1 || true
fi
$sudo service redis-server stop >/dev/null 2>&1 || true
$sudo service nginx stop >/dev/null 2>&1 || true
# The same for the databases, but only when this run installed them: a PostgreSQL or MariaDB
# that was already here may be someone's own.
services=()
for pkg in "${missing[@]}"; do
  case $pkg in
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
