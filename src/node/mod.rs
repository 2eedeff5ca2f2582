//! Wires the pieces of one zone's node together: configuration, the durable
//! replica, sync, the DR engine and the API.

pub mod config;

pub use config::{Config, Role};
