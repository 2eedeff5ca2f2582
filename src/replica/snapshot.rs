//! State snapshots that carry their own proof.
//!
//! A zone that fell behind a peer's compacted log is brought up to date by a
//! snapshot. A snapshot holds no state at all: it is the *live* events (every
//! signed event whose dot the sender's state still holds: a register value, a
//! creation, an RP, a copy state, a message or its ack) and, for every entry
//! of the claimed version vector, that zone's own signed event at that seq
//! (the *head*). The receiver verifies every signature and rebuilds the state
//! by applying the live events in a causal order, so nothing it installs was
//! not signed by the zone that owns it, and no zone's vector entry is raised
//! past what that zone signed.
//!
//! Why applying only the live events gives the sender's state exactly: a
//! register keeps a write until a later write whose deps cover it replaces
//! it; every write that is gone was replaced by one that is still there, or
//! went with its register (a purged RP, whose creation is then not live
//! either). Applying the live events in causal order makes every one of them
//! land as it did at the sender, and nothing else is there to survive.
//!
//! A receiver does not need to be behind the snapshot everywhere: two zones
//! rebuilt from opposite sides can each be behind the other's compacted log
//! with neither vector covering the other. The receiver *merges*
//! ([`merge`]): once the snapshot proved the sender's state on its own, it
//! keeps an event of either side if every side whose vector covers its dot
//! holds it live, and rebuilds the state from those events as `verify` does.
//! A dot a side's vector covers but whose event is not live there was
//! superseded or purged on that side, by an event that side holds (or that
//! is itself gone for the same reason), so it is gone from the join of the
//! two histories too; a dot only one side's vector covers is the other
//! side's news. The result is the state of every event either side applied,
//! and a snapshot that covers everything the receiver has merges to exactly
//! the sender's state.

use super::{authorize, Directory, Dot, EventError, Rejected, SignedEvent, State, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A verifiable copy of a replica's state (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What the sender had applied.
    pub vv: VersionVector,
    /// The signed events whose dots the state holds.
    pub events: Vec<SignedEvent>,
    /// Per zone of `vv`, its event at `vv[zone]`: the proof of the claim.
    /// Not applied (it may be superseded), only verified.
    pub heads: Vec<SignedEvent>,
}

/// Why a snapshot was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot event refused: {0}")]
    Event(#[from] EventError),
    #[error("snapshot claims {0} but carries no event signed by that zone at that seq")]
    UnbackedClaim(Dot),
    #[error("snapshot event {0} is not covered by the snapshot's version vector")]
    BeyondClaim(Dot),
    #[error("snapshot carries event {0} twice")]
    Duplicate(Dot),
    #[error("snapshot event {0} is refused by the rules: {1}")]
    Rejected(Dot, Rejected),
    #[error("snapshot event {0} is not part of the state it rebuilds")]
    NotLive(Dot),
    /// Two different events signed at one dot: one the snapshot carries and
    /// another it carries too (a head beside a live event) or that the
    /// importer holds live. Its origin equivocated; which one is the real
    /// event cannot be told, so neither replaces the other.
    #[error("snapshot carries an event at {0} other than the one signed at that dot it carries or we hold (its origin signed two events with one seq)")]
    Equivocation(Dot),
}

impl Snapshot {
    /// Checks every signature and claim, and rebuilds the state the live
    /// events make: the sender's state, exactly. A receiver that has events
    /// the snapshot lacks then merges the two ([`merge`]).
    pub fn verify(&self, directory: &Directory) -> Result<State, SnapshotError> {
        // Every vector entry is backed by its zone's own event at that seq.
        let mut heads: BTreeMap<Dot, &SignedEvent> = BTreeMap::new();
        for h in &self.heads {
            h.verify(directory)?;
            if heads.insert(h.dot(), h).is_some() {
                return Err(SnapshotError::Duplicate(h.dot()));
            }
        }
        for (zone, seq) in self.vv.iter() {
            let dot = Dot {
                origin: zone.clone(),
                seq,
            };
            if heads.remove(&dot).is_none() {
                return Err(SnapshotError::UnbackedClaim(dot));
            }
        }
        if let Some(extra) = heads.keys().next() {
            return Err(SnapshotError::BeyondClaim(extra.clone()));
        }
        // The claim is consistent with what the heads say their zones had.
        for h in &self.heads {
            if !self.vv.dominates(&h.event.deps) {
                return Err(SnapshotError::BeyondClaim(h.dot()));
            }
        }
        let mut order: Vec<&SignedEvent> = Vec::with_capacity(self.events.len());
        let mut seen = BTreeSet::new();
        for ev in &self.events {
            ev.verify(directory)?;
            let dot = ev.dot();
            if !self.vv.covers(&dot) || !self.vv.dominates(&ev.event.deps) {
                return Err(SnapshotError::BeyondClaim(dot));
            }
            if !seen.insert(dot.clone()) {
                return Err(SnapshotError::Duplicate(dot));
            }
            // A live event that is also its zone's head is that head.
            if self
                .heads
                .iter()
                .any(|h| h.dot() == dot && h.event != ev.event)
            {
                return Err(SnapshotError::Equivocation(dot));
            }
            order.push(ev);
        }
        causal_order(&mut order);
        let mut state = State::default();
        for ev in order {
            authorize(&state, directory, &ev.event)
                .map_err(|r| SnapshotError::Rejected(ev.dot(), r))?;
            state.apply(&ev.event);
        }
        // Canonical: exactly the live events, nothing superseded alongside.
        let live = state.live_dots();
        if let Some(dot) = seen.iter().find(|d| !live.contains(*d)) {
            return Err(SnapshotError::NotLive(dot.clone()));
        }
        debug_assert_eq!(live, seen, "a rebuilt value without its event");
        Ok(state)
    }
}

/// Sorts events into a causal order: an event's deps count strictly more
/// events than those of any event in its causal past, so sorting by that
/// count (then dot, for one order everywhere) puts every event after its past.
fn causal_order(events: &mut [&SignedEvent]) {
    events.sort_by_key(|e| (e.event.deps.total(), e.dot()));
}

/// Refuses a snapshot that carries, as a live event or a head, an event
/// other than the one `ours_live` holds at that dot (`ours_live` is the
/// receiver's: signed events it verified and holds live). The two are
/// the same dot signed twice by its origin: the merge would keep ours in
/// the state while the snapshot's went to the log (a head, or our own
/// event superseded there), and no signature tells which one is real.
pub fn check_equivocation(
    ours_live: &[SignedEvent],
    theirs: &Snapshot,
) -> Result<(), SnapshotError> {
    let ours: BTreeMap<Dot, &SignedEvent> = ours_live.iter().map(|e| (e.dot(), e)).collect();
    for ev in theirs.events.iter().chain(&theirs.heads) {
        if ours.get(&ev.dot()).is_some_and(|o| o.event != ev.event) {
            return Err(SnapshotError::Equivocation(ev.dot()));
        }
    }
    Ok(())
}

/// The state of the join of two replicas' histories: the receiver's (its
/// vector `ours_vv` and the signed events of its live dots, `ours_live`)
/// and a snapshot `theirs` that already verified. Returns the joined vector
/// and the state rebuilt, in causal order under `authorize`, from:
/// - each event of `theirs` that is live here too, or whose dot `ours_vv`
///   does not cover (news to us);
/// - each event of `ours_live` that `theirs` carries too, or whose dot its
///   vector does not cover (news to the sender).
///
/// An event dropped by these rules was superseded or purged on a side that
/// covers it (a `PurgeRps` leaves no live event: without the rule an RP
/// purged on one side would come back from the other side's live creation).
/// When `theirs.vv` covers `ours_vv` the kept events are exactly
/// `theirs.events` and the result is the sender's state.
///
/// One exception: the importer's own zone's live events other than RP
/// creations are kept whatever the snapshot says. They are writes this
/// zone acknowledged, and keeping one that was in fact superseded is
/// harmless: the event that superseded it (or the one that superseded
/// that) is live on the sender and carried, and it is applied after it in
/// causal order. Only a purge leaves nothing behind, so own RP creations
/// follow the rule above. A snapshot that leaves events out therefore
/// cannot make a node drop its own acknowledged writes.
///
/// `ours_live` is trusted (it was verified when it came in). Every kept
/// event was accepted on its side; one the rules refuse on the rebuilt
/// state is left out, as a refused received event is.
pub fn merge(
    directory: &Directory,
    own_zone: &crate::model::ZoneId,
    ours_vv: &VersionVector,
    ours_live: &[SignedEvent],
    theirs: &Snapshot,
) -> (VersionVector, State) {
    let ours: BTreeMap<Dot, &SignedEvent> = ours_live.iter().map(|e| (e.dot(), e)).collect();
    let carried: BTreeMap<Dot, &SignedEvent> = theirs.events.iter().map(|e| (e.dot(), e)).collect();
    let mut kept: BTreeMap<Dot, &SignedEvent> = BTreeMap::new();
    for (dot, ev) in &carried {
        if ours.contains_key(dot) || !ours_vv.covers(dot) {
            kept.insert(dot.clone(), ev);
        }
    }
    for (dot, ev) in &ours {
        let acknowledged_here =
            &dot.origin == own_zone && !matches!(ev.event.op, super::Op::CreateRp { .. });
        if carried.contains_key(dot) || !theirs.vv.covers(dot) || acknowledged_here {
            // Our own copy where both carry it: it is what our log holds.
            kept.insert(dot.clone(), ev);
        }
    }
    let mut order: Vec<&SignedEvent> = kept.into_values().collect();
    causal_order(&mut order);
    let mut state = State::default();
    for ev in order {
        if authorize(&state, directory, &ev.event).is_ok() {
            state.apply(&ev.event);
        }
    }
    let mut vv = ours_vv.clone();
    vv.merge(&theirs.vv);
    (vv, state)
}

impl State {
    /// The dots of every event whose effect the state still holds: what a
    /// snapshot must carry and what compaction must keep.
    pub fn live_dots(&self) -> BTreeSet<Dot> {
        let mut out = BTreeSet::new();
        for s in self.services.values() {
            out.extend(s.created.iter().cloned());
            out.extend(s.policy.values().iter().map(|v| v.dot.clone()));
            out.extend(s.metadata.values().iter().map(|v| v.dot.clone()));
            out.extend(s.deleted.values().iter().map(|v| v.dot.clone()));
            out.extend(s.paused.values().iter().map(|v| v.dot.clone()));
            for slot in s.slots.values() {
                out.extend(slot.values().iter().map(|v| v.dot.clone()));
            }
            for rp in s.rps.values() {
                out.insert(rp.created.clone());
                out.extend(rp.copies.values().map(|v| v.dot.clone()));
                out.extend(rp.hold.values().iter().map(|v| v.dot.clone()));
            }
        }
        for m in self.messages.values() {
            out.insert(m.dot.clone());
            out.extend(m.delivered.values().map(|d| d.dot.clone()));
            out.extend(m.answers.values().map(|a| a.step.dot.clone()));
        }
        out
    }
}

/// The dots a snapshot of a replica at `vv` with `state` carries: the live
/// events and the heads. The store reads their signed events from its log.
pub fn snapshot_dots(vv: &VersionVector, state: &State) -> (BTreeSet<Dot>, Vec<Dot>) {
    let heads = vv
        .iter()
        .map(|(z, seq)| Dot {
            origin: z.clone(),
            seq,
        })
        .collect();
    (state.live_dots(), heads)
}
