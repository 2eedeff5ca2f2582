//! The promises that matter most, over real processes: `storpool-emulator`
//! and one `drengine run` per zone, killed with SIGKILL, links cut, peers
//! and clients hostile. One test binary, one module per area:
//! `cargo test --release --test process rebuild::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod harness;
mod proxy;

mod api_flood;
mod chaos;
mod engine;
mod flood;
mod rebuild;
