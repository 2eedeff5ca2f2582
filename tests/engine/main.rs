//! The DR engine and the StorPool client against the StorPool emulator over
//! HTTP, with real redb files. One test binary, one module per area:
//! `cargo test --release --test engine crash::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod crash;
mod failover;
mod faults;
mod flows;
mod pause;
mod retention;
mod safety;
mod storpool_client;
