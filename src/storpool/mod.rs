//! Client of StorPool's HTTP JSON API (`/ctrl/1.0/…`), the node's only way to drive storage.
//!
//! * [`StorPoolConfig`] — where the API is and how patient to be (`[storpool]` in the node's TOML).
//! * [`StorPoolClient`] — typed async calls, bounded retries of transient failures, counters.
//! * [`types`] — the requests and answers, shared with the emulator so both speak one dialect.
//! * [`names`] — StorPool's naming rules, checked before anything is sent.
//! * [`StorPoolError`] — one error type that keeps StorPool's error `name` and `descr`.
//!
//! Architecture invariant: this module knows nothing about DR services or recovery points;
//! it maps calls to HTTP and back. Naming and tagging policy lives in the engine.

mod client;
mod config;
mod error;
pub mod metrics;
pub mod names;
pub mod types;

pub use client::{StorPoolClient, API_PREFIX};
pub use config::{StorPoolConfig, DEFAULT_API_PORT};
pub use error::{names as error_names, StorPoolError};
pub use metrics::StorPoolMetrics;
pub use types::*;
