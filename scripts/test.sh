#!/usr/bin/env bash
# The one test command: formatting, then every test the crate has (unit, integration against
# the real server and binaries, property tests, doc tests, examples built), then the
# benchmarks run once each as tests so they cannot rot.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo test --locked
cargo test --locked --bench protocol --bench rules --bench outbound --bench push
