#!/usr/bin/env bash
# The one test command: formatting and lints (clippy, warnings as errors), then every test the
# crate has (unit, integration against the real app and binaries, property tests, doc tests,
# examples built), then the benchmarks run once each as tests so they cannot rot.
#
# The PostgreSQL tests use the server HUIXIN_TEST_POSTGRES names; when it is unset and
# PostgreSQL is installed, a throwaway cluster (scripts/postgres.sh) serves this run and is
# removed at the end. Without either, those tests say they were skipped.
#
# WxPusher's own Python client (the `wxpusher` package) is tried against huixin by a test: the
# Python HUIXIN_TEST_PYTHON names, else one in a virtualenv made here (target/wxpusher-venv)
# with the package installed from PyPI. Without it that test says it was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${HUIXIN_TEST_PYTHON:-}" ] && command -v python3 >/dev/null 2>&1; then
  venv=target/wxpusher-venv
  if ! "$venv/bin/python" -c "import wxpusher" >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet wxpusher; }; then
      echo "warning: could not install the wxpusher package; its test skips (or fails, under HUIXIN_REQUIRE_WXPUSHER)" >&2
    fi
  fi
  if "$venv/bin/python" -c "import wxpusher" >/dev/null 2>&1; then
    export HUIXIN_TEST_PYTHON="$PWD/$venv/bin/python"
  fi
fi

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
cargo test --locked --bench protocol --bench rules --bench outbound --bench push --bench console \
  --bench metrics
