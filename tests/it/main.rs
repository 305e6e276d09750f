//! huixin's integration tests, one binary for all of them: each file here is a module that
//! drives the real app, binary, store or browser the way its own test target used to, and
//! `common/` is what they share. One binary links huixin and its dependencies once instead of
//! once per file, which is most of a clean build's test time.
//!
//! A new test file is a new `mod` line below. `cargo test --test it webhooks::` runs one file's
//! tests. `tests/rules_log.rs` stays a target of its own: it installs the process-wide tracing
//! subscriber, which must not capture the other tests' logs.

mod common;

mod admin;
mod app;
mod apps;
mod callback;
mod cli;
mod crypto;
mod deploy;
mod docs;
mod emulator;
mod layers;
mod metrics;
mod outbound;
mod outbound_cli;
mod parse;
mod pipeline;
mod processes;
mod props;
mod push;
mod push_compat;
mod push_group;
mod push_render;
mod rules;
mod rules_index;
mod scale_out;
mod simulate;
mod store;
mod store_copy;
mod webhooks;
mod wxpusher;
