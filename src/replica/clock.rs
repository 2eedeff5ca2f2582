//! Hybrid logical clock. Stamps are for display, tie-breaking of reads and
//! retention arithmetic only, never for deciding which concurrent write wins.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A hybrid logical clock stamp: physical milliseconds since the Unix epoch
/// plus a counter for events within the same millisecond.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    pub wall_ms: u64,
    pub logical: u32,
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

/// Largest step a remote stamp may move our clock ahead of our physical time.
/// A stamp further in the future is still accepted but does not drag the
/// local clock with it.
pub const MAX_CLOCK_DRIFT_MS: u64 = 60_000;

/// The clock of one node. It never reads time itself: the shell passes the
/// physical time in, which keeps the core deterministic.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    pub fn new(last: Hlc) -> Self {
        HlcClock { last }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new stamp for a local event, strictly after every stamp seen so far.
    pub fn tick(&mut self, physical_ms: u64) -> Hlc {
        self.last = if physical_ms > self.last.wall_ms {
            Hlc {
                wall_ms: physical_ms,
                logical: 0,
            }
        } else {
            Hlc {
                wall_ms: self.last.wall_ms,
                logical: self.last.logical.saturating_add(1),
            }
        };
        self.last
    }

    /// Takes a remote stamp into account so later local stamps follow it.
    pub fn observe(&mut self, remote: Hlc, physical_ms: u64) {
        if remote > self.last && remote.wall_ms <= physical_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
            self.last = remote;
        }
    }
}
