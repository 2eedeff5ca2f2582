//! What the engine counts for `/metrics`: RPs taken and failed, and how
//! long a copy took to arrive. Shared handles (clones count together); the
//! API registers them at each scrape.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Clone, Debug)]
pub struct EngineMetrics {
    /// RPs this zone took (scheduled, on demand, final).
    pub rps_taken: Counter,
    /// Attempts to take an RP that failed (StorPool or the database; a
    /// refusal such as a VM not active here is not counted).
    pub rps_failed: Counter,
    /// From an RP's `taken` to its copy being complete here, for copies
    /// this zone received (seconds).
    pub copy_transfer: Histogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            rps_taken: Counter::default(),
            rps_failed: Counter::default(),
            // 0.1 s .. ~55 min.
            copy_transfer: Histogram::new(exponential_buckets(0.1, 2.0, 16)),
        }
    }
}
