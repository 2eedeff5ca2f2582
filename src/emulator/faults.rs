//! Fault injection: what can be changed at start (flags) or at run time (`POST /_emulator/faults`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize};

use super::listener::DownMode;

/// A change of faults; absent fields are left as they are.
///
/// ```json
/// {"cluster": "a", "transient_error_rate": 0.2, "down": "hang", "restart_ms": 500,
///  "peer": "b", "bandwidth_mbps": 10, "stuck": false, "capacity_bytes": null, "seed": 7}
/// ```
/// `bandwidth_mbps`, `stuck` and `unlinked` apply to the links between `cluster` and `peer` (both
/// directions), or between `cluster` and every other cluster when `peer` is absent;
/// `"bandwidth_mbps": null` goes back to the default bandwidth. `"capacity_bytes": null`
/// removes the capacity limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    /// The cluster to change; defaults to the cluster whose port received the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Share of API calls (0.0–1.0) answered with a transient `busy` error instead of being run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient_error_rate: Option<f64>,
    /// `up`, `hang` (requests are held) or `refuse` (connections are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<DownMode>,
    /// Emulates a restart of the cluster's API: refuse connections for this many
    /// milliseconds, then answer again (state is kept, as StorPool keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_ms: Option<u64>,
    /// Restricts `bandwidth_mbps` / `stuck` to the links with this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Bandwidth override for transfers, Mbit/s; `null` restores the default.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub bandwidth_mbps: Option<Option<f64>>,
    /// Transfers on the links make no progress while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<bool>,
    /// The clusters are not registered as each other's remote locations
    /// while true (`LocationsList` leaves them out, calls naming them fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlinked: Option<bool>,
    /// Refuse allocations beyond this many bytes with `insufficientResources`; `null` removes the limit.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub capacity_bytes: Option<Option<u64>>,
    /// Re-seeds the random choice of which calls fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The API-level faults of one cluster.
#[derive(Debug)]
pub struct ClusterFaults {
    /// Share of calls answered with a transient error.
    pub transient_error_rate: f64,
    /// The seed the RNG was last seeded with.
    pub seed: u64,
    rng: StdRng,
}

impl ClusterFaults {
    /// No faults, with the given seed.
    pub fn new(seed: u64, transient_error_rate: f64) -> Self {
        ClusterFaults {
            transient_error_rate,
            seed,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Re-seeds the RNG.
    pub fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// Whether this call should fail transiently.
    pub fn roll_transient(&mut self) -> bool {
        self.transient_error_rate > 0.0 && self.rng.gen::<f64>() < self.transient_error_rate
    }
}
