//! Hybrid logical clock. Stamps are for display, tie-breaking of reads and
//! retention arithmetic only, never for deciding which concurrent write wins.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A hybrid logical clock stamp: physical milliseconds since the Unix epoch
/// plus a counter for events within the same millisecond.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
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

/// How old a stamp `stamp_ms` written by some zone's clock is at `now_ms`
/// (this node's clock): **the one place** that says how far another
/// clock's time is believed. A stamp up to [`MAX_CLOCK_DRIFT_MS`] ahead is
/// ordinary drift and counts as age 0; one further ahead cannot be placed
/// in time at all (the writer's clock ran ahead, or lies), and its age is
/// unknown (`None`). Callers treat an unknown age as the worst case for
/// what they protect: RPO counts it as no evidence of protection, the
/// schedule as no recent RP, retention as not young.
pub fn age_ms(stamp_ms: u64, now_ms: u64) -> Option<u64> {
    if stamp_ms > now_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
        return None;
    }
    Some(now_ms.saturating_sub(stamp_ms))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_beyond_the_allowed_drift_have_no_age() {
        let now = 10_000_000;
        assert_eq!(age_ms(now - 5, now), Some(5));
        assert_eq!(age_ms(now + MAX_CLOCK_DRIFT_MS, now), Some(0));
        assert_eq!(age_ms(now + MAX_CLOCK_DRIFT_MS + 1, now), None);
        assert_eq!(age_ms(u64::MAX, u64::MAX), Some(0));
    }
}
