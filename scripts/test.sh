#!/usr/bin/env bash
# The one test command: formatting and lints (clippy, warnings as errors), then every test the
# crate has (unit, integration against the real app and binaries, property tests, doc tests,
# examples built), then the benchmarks run once each as tests so they cannot rot.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
cargo test --locked --bench protocol --bench rules --bench outbound --bench push
