//! The engine's configuration (the `[engine]` table) and what it needs of
//! the deployment, which the node assembles.

use crate::model::ZoneId;
use serde::Deserialize;
use std::collections::BTreeMap;

/// What the engine needs to start: this zone, every zone's StorPool
/// location name (its cluster as the other clusters see it) and settings.
#[derive(Debug, Clone)]
pub struct EngineSetup {
    pub zone: ZoneId,
    pub locations: BTreeMap<ZoneId, String>,
    pub config: EngineConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Run the reconciler (off for a node that only serves state).
    pub enabled: bool,
    /// How often the reconciler looks at what is due.
    pub tick_ms: u64,
    /// Most StorPool calls the reconciler has in flight at once (one per
    /// service being worked on).
    pub max_concurrent_calls: usize,
    /// Most services queued for the reconciler at once; the rest wait for
    /// the next tick.
    pub max_queued_services: usize,
    /// Slack on top of the policy interval before a service counts as past
    /// its RPO: the time to take and transfer one RP.
    pub rpo_grace_ms: u64,
    /// A service's RPO level is `warning` once its RPO is older than this
    /// many intervals...
    pub rpo_warning_factor: f64,
    /// ...and `critical` once older than this many.
    pub rpo_critical_factor: f64,
    /// Back-off of a service's work after a failure, doubling up to the max.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How soon an incoming copy is looked at again, doubling up to the max.
    pub copy_poll_initial_ms: u64,
    pub copy_poll_max_ms: u64,
    /// How often volumes that pin an RP against retention are looked up.
    pub dep_check_interval_ms: u64,
    /// How long a shutdown waits for steps in progress before cutting them
    /// off (which is safe: the journal finishes them after a restart).
    pub shutdown_grace_ms: u64,
    /// The engine's wall clock (not configurable in TOML: the system clock,
    /// or one a test injects).
    #[serde(skip)]
    pub clock: crate::engine::Clock,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            enabled: true,
            tick_ms: 500,
            max_concurrent_calls: 16,
            max_queued_services: 8192,
            rpo_grace_ms: 30_000,
            rpo_warning_factor: 2.0,
            rpo_critical_factor: 3.0,
            retry_initial_ms: 1_000,
            retry_max_ms: 60_000,
            copy_poll_initial_ms: 250,
            copy_poll_max_ms: 5_000,
            dep_check_interval_ms: 60_000,
            shutdown_grace_ms: 5_000,
            clock: crate::engine::Clock::system(),
        }
    }
}

impl EngineConfig {
    /// How RPO ages are judged, from these settings.
    pub fn rpo_rules(&self) -> crate::engine::rpo::RpoRules {
        crate::engine::rpo::RpoRules {
            grace_ms: self.rpo_grace_ms,
            warning_factor: self.rpo_warning_factor,
            critical_factor: self.rpo_critical_factor,
        }
    }
}
