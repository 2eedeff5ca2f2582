//! The HTTP API and the CLI, over real HTTP against real nodes (and the
//! `drengine` binary as an operator runs it). One test binary, one module
//! per area: `cargo test --release --test api races::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod cli_actions;
mod cli_commands;
mod cli_devnet;
mod config_examples;
mod conflicts;
mod dashboard;
mod feed_metrics;
mod hardening;
mod history;
mod messages;
mod node_devnet;
mod pause;
mod preflight;
mod races;
mod readme_quickstart;
mod services;
