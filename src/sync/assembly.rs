//! Reassembly of a snapshot that arrives in parts, within byte budgets.
//!
//! Every part's bytes are reserved before they are kept, against three
//! limits: the snapshot's own (`sync.max_snapshot_bytes`), the peer's
//! across all its streams (`sync.max_snapshot_bytes_per_peer`) and every
//! peer's together (`sync.max_snapshot_bytes_total`). A reservation is
//! given back when its assembly ends (imported, refused, out of order, the
//! stream stalled or closed): it is released on drop, so no path can keep
//! it. Part numbers and counts come from the peer and are checked, never
//! trusted for arithmetic.

use crate::model::ZoneId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Why a part was refused. The assembly it belonged to is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PartError {
    #[error("snapshot {id} part {part} of {parts} out of order")]
    OutOfOrder { id: u64, part: u32, parts: u32 },
    #[error("snapshot {id} is over the {max} byte limit")]
    TooLarge { id: u64, max: usize },
    #[error("snapshot {id} is over this peer's budget of {max} bytes for snapshots in flight")]
    OverPeerBudget { id: u64, max: usize },
    #[error("snapshot {id} is over this node's budget of {max} bytes for snapshots in flight")]
    OverTotalBudget { id: u64, max: usize },
}

impl PartError {
    /// True if a budget or size limit refused it (not the sender's order).
    pub fn is_over_budget(&self) -> bool {
        !matches!(self, PartError::OutOfOrder { .. })
    }
}

#[derive(Debug, Default)]
struct Used {
    per_peer: BTreeMap<ZoneId, usize>,
    total: usize,
}

/// The node's snapshot byte budget, shared by every inbound stream.
#[derive(Debug)]
pub(crate) struct Budget {
    per_peer: usize,
    total: usize,
    used: Mutex<Used>,
}

impl Budget {
    pub fn new(per_peer: usize, total: usize) -> Arc<Budget> {
        Arc::new(Budget {
            per_peer,
            total,
            used: Mutex::new(Used::default()),
        })
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes reserved now by `zone`'s assemblies, and by all.
    pub fn reserved(&self, zone: &ZoneId) -> (usize, usize) {
        let u = self.used();
        (u.per_peer.get(zone).copied().unwrap_or(0), u.total)
    }

    fn reserve(&self, zone: &ZoneId, id: u64, n: usize) -> Result<(), PartError> {
        let mut u = self.used();
        let peer = u.per_peer.get(zone).copied().unwrap_or(0);
        if peer.saturating_add(n) > self.per_peer {
            return Err(PartError::OverPeerBudget {
                id,
                max: self.per_peer,
            });
        }
        if u.total.saturating_add(n) > self.total {
            return Err(PartError::OverTotalBudget {
                id,
                max: self.total,
            });
        }
        u.per_peer.insert(zone.clone(), peer.saturating_add(n));
        u.total = u.total.saturating_add(n);
        Ok(())
    }

    fn release(&self, zone: &ZoneId, n: usize) {
        let mut u = self.used();
        u.total = u.total.saturating_sub(n);
        let left = u.per_peer.get(zone).copied().unwrap_or(0).saturating_sub(n);
        if left == 0 {
            u.per_peer.remove(zone);
        } else {
            u.per_peer.insert(zone.clone(), left);
        }
    }
}

/// One snapshot arriving in parts on one stream.
#[derive(Debug)]
pub(crate) struct Assembly {
    budget: Arc<Budget>,
    zone: ZoneId,
    id: u64,
    parts: u32,
    next: u32,
    bytes: Vec<u8>,
    /// Bytes reserved in `budget` (what `bytes` holds).
    reserved: usize,
}

impl Assembly {
    /// A new assembly for snapshot `id` of `parts` parts from `zone`; its
    /// first part is added with [`Assembly::add`].
    pub fn new(budget: Arc<Budget>, zone: ZoneId, id: u64, parts: u32) -> Assembly {
        Assembly {
            budget,
            zone,
            id,
            parts,
            next: 0,
            bytes: Vec::new(),
            reserved: 0,
        }
    }

    /// True if `part` of `parts` of snapshot `id` is the one expected next.
    pub fn expects(&self, id: u64, part: u32, parts: u32) -> bool {
        self.id == id && self.parts == parts && self.next == part && part < parts
    }

    /// Adds the next part, within `max_bytes` for the whole snapshot and
    /// the budgets. An error means the assembly is to be dropped.
    pub fn add(
        &mut self,
        part: u32,
        parts: u32,
        id: u64,
        bytes: &[u8],
        max_bytes: usize,
    ) -> Result<(), PartError> {
        if !self.expects(id, part, parts) {
            return Err(PartError::OutOfOrder { id, part, parts });
        }
        if self.bytes.len().saturating_add(bytes.len()) > max_bytes {
            return Err(PartError::TooLarge { id, max: max_bytes });
        }
        self.budget.reserve(&self.zone, id, bytes.len())?;
        self.reserved = self.reserved.saturating_add(bytes.len());
        self.bytes.extend_from_slice(bytes);
        // `part < parts`, so this is at most `parts`.
        self.next = part.saturating_add(1);
        Ok(())
    }

    /// True once every part is in.
    pub fn is_complete(&self) -> bool {
        self.next >= self.parts
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Assembly {
    fn drop(&mut self) {
        self.budget.release(&self.zone, self.reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> ZoneId {
        ZoneId::new(s).unwrap()
    }

    #[test]
    fn parts_are_taken_in_order_and_complete() {
        let b = Budget::new(100, 100);
        let mut a = Assembly::new(b.clone(), z("zone-c"), 7, 3);
        a.add(0, 3, 7, &[1, 2], 10).unwrap();
        assert!(!a.is_complete());
        assert_eq!(
            a.add(2, 3, 7, &[5], 10),
            Err(PartError::OutOfOrder {
                id: 7,
                part: 2,
                parts: 3
            })
        );
        a.add(1, 3, 7, &[3, 4], 10).unwrap();
        a.add(2, 3, 7, &[5], 10).unwrap();
        assert!(a.is_complete());
        assert_eq!(a.bytes(), &[1, 2, 3, 4, 5]);
        assert_eq!(b.reserved(&z("zone-c")), (5, 5));
        drop(a);
        assert_eq!(b.reserved(&z("zone-c")), (0, 0));
    }

    #[test]
    fn u32_max_part_numbers_and_counts_are_refused_without_overflow() {
        let b = Budget::new(100, 100);
        let mut a = Assembly::new(b.clone(), z("zone-c"), u64::MAX, u32::MAX);
        // part == parts, part past parts, and the last of u32::MAX parts
        // out of order: all refused.
        for (part, parts) in [
            (u32::MAX, u32::MAX),
            (u32::MAX, 3),
            (u32::MAX - 1, u32::MAX),
        ] {
            assert!(matches!(
                a.add(part, parts, u64::MAX, &[1], 10),
                Err(PartError::OutOfOrder { .. })
            ));
        }
        // u32::MAX parts in order is fine until the bytes run out.
        a.add(0, u32::MAX, u64::MAX, &[1; 10], 10).unwrap();
        assert!(!a.is_complete());
        assert!(matches!(
            a.add(1, u32::MAX, u64::MAX, &[1], 10),
            Err(PartError::TooLarge { .. })
        ));
        // A zero-part snapshot expects nothing.
        let empty = Assembly::new(b.clone(), z("zone-c"), 1, 0);
        assert!(!empty.expects(1, 0, 0));
        assert!(empty.is_complete());
        // An assembly whose last part is u32::MAX - 1 completes.
        let mut last = Assembly::new(b.clone(), z("zone-b"), 1, u32::MAX);
        last.next = u32::MAX - 1;
        last.add(u32::MAX - 1, u32::MAX, 1, &[], 10).unwrap();
        assert!(last.is_complete());
    }

    #[test]
    fn a_peers_streams_share_its_budget_and_every_peer_the_total() {
        let b = Budget::new(10, 15);
        let mut s1 = Assembly::new(b.clone(), z("zone-c"), 1, 4);
        let mut s2 = Assembly::new(b.clone(), z("zone-c"), 2, 4);
        s1.add(0, 4, 1, &[0; 6], 100).unwrap();
        assert_eq!(
            s2.add(0, 4, 2, &[0; 6], 100),
            Err(PartError::OverPeerBudget { id: 2, max: 10 })
        );
        s2.add(0, 4, 2, &[0; 4], 100).unwrap();
        assert_eq!(b.reserved(&z("zone-c")), (10, 10));
        // Another peer has its own share, within the total.
        let mut other = Assembly::new(b.clone(), z("zone-b"), 1, 4);
        assert_eq!(
            other.add(0, 4, 1, &[0; 6], 100),
            Err(PartError::OverTotalBudget { id: 1, max: 15 })
        );
        other.add(0, 4, 1, &[0; 5], 100).unwrap();
        // Dropping an assembly (refused, stalled, closed) gives its bytes back.
        drop(s1);
        assert_eq!(b.reserved(&z("zone-c")), (4, 9));
        let mut s3 = Assembly::new(b.clone(), z("zone-c"), 3, 1);
        s3.add(0, 1, 3, &[0; 6], 100).unwrap();
        drop((s2, s3, other));
        assert_eq!(b.reserved(&z("zone-c")), (0, 0));
        assert_eq!(b.reserved(&z("zone-b")), (0, 0));
    }
}
