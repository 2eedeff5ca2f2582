//! Whether this replica may sign new events: the rule that no dot is ever
//! signed twice.
//!
//! A node cannot tell from its own disk whether it holds its zone's newest
//! event: a wiped data directory, a restored older copy of it and a fresh
//! host taking the zone over all look like a log that simply ends. If it
//! numbered new events from there, it would sign `(zone, seq)` dots its peers
//! already hold for other events, and they would drop the new ones as
//! duplicates: acknowledged writes lost, digests apart for ever.
//!
//! So every replica starts *rebuilding*. It learns the highest seq its zone
//! is known to have signed from what peers tell it (their version vectors,
//! what they know every other zone has, and the deps of events they relay;
//! a peer counts an event it holds early, waiting for its causal past, in
//! what it knows, because it may still apply it),
//! and it signs again only once (a) at least one peer has reported since
//! this start and (b) it has applied its own zone's events up to the highest
//! seq anyone reported (they come back by sync, or in a snapshot). A zone
//! alone in its directory has nobody to collide with. An operator whose
//! zone's peers are all gone may override, knowingly: the override is
//! logged by the shell and shown in the status.
//!
//! What this cannot see: an event that reached only zones that are
//! unreachable from every peer that reported. Peers gossip what every zone
//! has, so this needs a zone cut off from all of them at once.

use super::VersionVector;
use crate::model::ZoneId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Where a replica stands on signing new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    /// It may not yet prove it holds its zone's newest event.
    Rebuilding,
    /// It holds every event of its zone that anyone reported.
    Ready,
    /// An operator let it sign without that proof.
    Overridden,
}

impl RebuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            RebuildState::Rebuilding => "rebuilding",
            RebuildState::Ready => "ready",
            RebuildState::Overridden => "overridden",
        }
    }
}

/// What a replica knows about its own zone's signed events since it started.
#[derive(Debug, Clone)]
pub struct Rebuild {
    /// Nothing to prove: nobody else is in the directory (nothing can
    /// collide), or the replica was not started as a node (tools, tests).
    exempt: bool,
    /// The highest seq of our zone that any report or event showed signed.
    signed_seq: u64,
    /// Peers that reported to us directly since this start.
    confirmed_by: BTreeSet<ZoneId>,
    overridden: bool,
}

/// The rebuild state as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildStatus {
    pub state: RebuildState,
    /// Our zone's seq this replica has applied.
    pub own_seq: u64,
    /// The highest seq of our zone anyone reported signed.
    pub signed_seq: u64,
    /// Peers that reported since this start.
    pub confirmed_by: Vec<ZoneId>,
}

impl Rebuild {
    /// A replica that signs without proof: only for a zone alone in its
    /// directory, or one that is not a node's (see [`Rebuild::unproven`]).
    pub fn exempt() -> Self {
        Rebuild::new(true)
    }

    /// What a node starts with: it must learn how far its zone got first,
    /// unless `alone` in the directory.
    pub fn unproven(alone: bool) -> Self {
        Rebuild::new(alone)
    }

    fn new(exempt: bool) -> Self {
        Rebuild {
            exempt,
            signed_seq: 0,
            confirmed_by: BTreeSet::new(),
            overridden: false,
        }
    }

    /// Evidence that our zone signed up to `seq` (a vector entry, a dep, a
    /// relayed event of ours).
    pub fn saw_signed(&mut self, seq: u64) {
        self.signed_seq = self.signed_seq.max(seq);
    }

    /// A peer reported to us directly (its version vector and what it knows
    /// every zone has were taken in with [`Rebuild::saw_signed`]).
    pub fn confirmed(&mut self, by: &ZoneId) {
        self.confirmed_by.insert(by.clone());
    }

    pub fn override_now(&mut self) {
        self.overridden = true;
    }

    /// True if it holds every event of its zone anyone reported, and
    /// someone did. Not a latch: a later report of a higher seq (our zone
    /// signed it before this start) stops signing until that event is here.
    fn ready(&self, own_seq: u64) -> bool {
        self.exempt || (!self.confirmed_by.is_empty() && own_seq >= self.signed_seq)
    }

    /// True if the replica, having applied `own_seq` of its zone, may sign.
    pub fn can_sign(&self, own_seq: u64) -> bool {
        self.overridden || self.ready(own_seq)
    }

    pub fn status(&self, own_seq: u64) -> RebuildStatus {
        let state = if self.ready(own_seq) {
            RebuildState::Ready
        } else if self.overridden {
            RebuildState::Overridden
        } else {
            RebuildState::Rebuilding
        };
        RebuildStatus {
            state,
            own_seq,
            signed_seq: self.signed_seq.max(own_seq),
            confirmed_by: self.confirmed_by.iter().cloned().collect(),
        }
    }

    /// Takes in what a vector says of our zone.
    pub fn saw_vv(&mut self, zone: &ZoneId, vv: &VersionVector) {
        self.saw_signed(vv.get(zone));
    }
}
