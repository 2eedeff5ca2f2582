//! Sync between zones: real libp2p on loopback, real redb files. One test
//! binary, one module per area: `cargo test --release --test sync line::`
//! runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod line;
mod partition;
mod security;
