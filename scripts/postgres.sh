#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and benchmarks: `scripts/postgres.sh start DIR`
# makes a cluster in DIR (initdb from Debian's postgresql package or PATH), starts it on a free
# loopback port with trust authentication, and prints the URL the tests read from
# HUIXIN_TEST_POSTGRES; `scripts/postgres.sh stop DIR` stops it. As root, the cluster runs as
# the `postgres` user (PostgreSQL refuses to run as root). Nothing is left running as a service.
#
# The tests' cluster trades durability for speed (fsync, synchronous_commit and full_page_writes
# off). `PG_DURABLE=1` keeps PostgreSQL's durable defaults instead, as a benchmark must;
# `PG_OPTIONS` adds server options (`PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements"`).
set -euo pipefail
cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
bin=""
for candidate in /usr/lib/postgresql/*/bin; do
  if [ -x "$candidate/initdb" ]; then bin="$candidate"; fi
done
if [ -z "$bin" ] && command -v initdb >/dev/null 2>&1; then
  bin="$(dirname "$(command -v initdb)")"
fi
if [ -z "$bin" ]; then
  echo "no initdb: install Debian's postgresql package" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U huixin -A trust -E UTF8 --no-instructions >"$dir/initdb.log"
    fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # Several test processes each open pools: room for all of them.
    options="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400"
    if [ "${PG_DURABLE:-0}" != 1 ]; then
      options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "$options ${PG_OPTIONS:-}" >/dev/null
    echo "$port" >"$dir/port"
    echo "postgres://huixin@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
    fi
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
