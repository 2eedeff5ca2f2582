//! Version vectors: per zone, the highest contiguous event seq applied.

use crate::model::ZoneId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The identity of an event: its origin zone and its seq there.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Dot {
    pub origin: ZoneId,
    #[schema(maximum = 18446744073709551615u64)]
    pub seq: u64,
}

impl std::fmt::Display for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.origin, self.seq)
    }
}

/// Per zone, the highest seq such that every event `1..=seq` of that zone
/// has been applied. Zones at 0 are not stored, so equal vectors encode equally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionVector(BTreeMap<ZoneId, u64>);

impl VersionVector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, zone: &ZoneId) -> u64 {
        self.0.get(zone).copied().unwrap_or(0)
    }

    pub fn set(&mut self, zone: ZoneId, seq: u64) {
        if seq == 0 {
            self.0.remove(&zone);
        } else {
            self.0.insert(zone, seq);
        }
    }

    /// True if the event `dot` is covered: it happened before (or is in) this vector.
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.seq <= self.get(&dot.origin)
    }

    /// True if every entry of `other` is covered by this vector.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(z, s)| self.get(z) >= *s)
    }

    /// Pointwise maximum.
    pub fn merge(&mut self, other: &VersionVector) {
        for (z, s) in &other.0 {
            if *s > self.get(z) {
                self.0.insert(z.clone(), *s);
            }
        }
    }

    /// Pointwise minimum, over the zones of both.
    pub fn meet(&self, other: &VersionVector) -> VersionVector {
        let mut out = VersionVector::new();
        for (z, s) in &self.0 {
            out.set(z.clone(), (*s).min(other.get(z)));
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ZoneId, u64)> {
        self.0.iter().map(|(z, s)| (z, *s))
    }

    /// Total number of events this vector counts.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// How many events `other` has that this vector lacks.
    pub fn missing_from(&self, other: &VersionVector) -> u64 {
        other
            .0
            .iter()
            .map(|(z, s)| s.saturating_sub(self.get(z)))
            .sum()
    }
}
