//! drengine: a disaster-recovery engine for multi-site clouds built on StorPool storage.
//!
//! The crate is laid out as the architecture reads (see ARCHITECTURE.md):
//! a pure replicated-state core (`model`, `replica`), and shells that feed it
//! (`store`, `sync`, `storpool`, `engine`, `api`), wired together by `node`.

pub mod api;
pub mod cli;
#[cfg(feature = "devnet")]
pub mod emulator;
pub mod engine;
pub mod model;
pub mod node;
pub mod replica;
pub mod store;
pub mod storpool;
pub mod sync;
