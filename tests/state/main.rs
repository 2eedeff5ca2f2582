//! The state core: the replica's rules, the writer's commands, the seeded
//! simulation, property tests and the module layering. One test binary, one
//! module per area: `cargo test --release --test state simulation::` runs
//! one of them.

#[path = "../support/mod.rs"]
mod support;

mod commands;
mod layering;
mod properties;
mod replica;
mod simulation;
