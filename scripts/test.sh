#!/usr/bin/env bash
# The one test command: formatting and lints (clippy, warnings as errors), then every test the
# crate has (unit, integration against the real app and binaries, property tests, doc tests,
# examples built), then the benchmarks run once each as tests so they cannot rot.
#
# The PostgreSQL tests use the server HUIXIN_TEST_POSTGRES names; when it is unset and
# PostgreSQL is installed, a throwaway cluster (scripts/postgres.sh) serves this run and is
# removed at the end. Without either, those tests say they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${HUIXIN_TEST_POSTGRES:-}" ] &&
  { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; }; then
  pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/huixin-test-pg.XXXXXX")"
  stop_postgres() {
    scripts/postgres.sh stop "$pg_dir" || true
    rm -rf "$pg_dir"
  }
  trap stop_postgres EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if url="$(scripts/postgres.sh start "$pg_dir")"; then
    export HUIXIN_TEST_POSTGRES="$url"
    echo "PostgreSQL for the tests: $url" >&2
  else
    echo "warning: scripts/postgres.sh could not start a cluster; the PostgreSQL tests skip (or fail, under HUIXIN_REQUIRE_POSTGRES)" >&2
    tail -n 20 "$pg_dir"/*.log >&2 2>/dev/null || true
  fi
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
cargo test --locked --bench protocol --bench rules --bench outbound --bench push
