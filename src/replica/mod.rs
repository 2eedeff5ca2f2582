//! The replica: events, clocks, registers, conflicts — the pure core.
//!
//! A `Replica` takes inputs (a local write, a received event, a snapshot)
//! and returns outputs (signed events to store and send, what changed). It
//! reads no clock (the shell passes `now_ms`), touches no disk or network.
//!
//! Architecture invariant: nothing in this module does I/O or depends on
//! tokio, redb, libp2p or HTTP. That is why the simulation can drive many
//! replicas deterministically from a seed.

pub mod audit;
mod clock;
mod command;
mod conflict;
mod event;
mod mvr;
mod pending;
mod rebuild;
mod rules;
mod snapshot;
mod state;
mod vv;

pub use clock::{age_ms, Hlc, HlcClock, MAX_CLOCK_DRIFT_MS};
pub use command::{
    decide, parse_field_value, version_token, Choice, Command, Decision, Expect, FieldValue,
    Outcome,
};
pub use conflict::{
    conflicts, service_conflicts, Conflict, ConflictField, ConflictKind, ConflictSide,
    ConflictTarget,
};
pub use event::{
    sign_canonical, Directory, Event, EventError, Op, SignedEvent, EVENT_FORMAT_VERSION,
    MAX_EVENT_BYTES, MAX_MESSAGES_PER_PRUNE, MAX_RPS_PER_PURGE,
};
pub use mvr::{Mvr, Versioned};
pub use pending::{
    PendingLimits, PendingStats, MAX_PENDING_AGE_MS, MAX_PENDING_BYTES, MAX_PENDING_EVENTS,
    MAX_PENDING_ORIGIN_BYTES, MAX_PENDING_ORIGIN_EVENTS, PENDING_ENTRY_OVERHEAD_BYTES,
};
pub use rebuild::{RebuildState, RebuildStatus};
pub use rules::{authorize, Rejected};
pub use snapshot::{check_equivocation, merge, snapshot_dots, Snapshot, SnapshotError};
pub use state::{
    message_dot, message_id, Answered, Message, MessageState, RecoveryPoint, Service, State, Step,
    Touched,
};
pub use vv::{Dot, VersionVector};

use crate::model::message::{check_kind, check_ttl_ms};
use crate::model::{
    InvalidInput, MessageId, ServiceId, ZoneId, MAX_MESSAGE_BYTES, MAX_METADATA_BYTES,
};
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, BTreeSet};

/// Why a local write was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("service {0} does not exist")]
    NoSuchService(ServiceId),
    #[error("service {0} is deleted")]
    Deleted(ServiceId),
    #[error("recovery point {0} does not exist")]
    NoSuchRp(String),
    #[error("message {0} does not exist")]
    NoSuchMessage(MessageId),
    #[error("message {message} is for {to}; answer it there")]
    NotAddressee { message: MessageId, to: String },
    #[error("message {0} is already answered from this zone")]
    Answered(MessageId),
    #[error("{0} already exists")]
    Exists(String),
    #[error("refused: {0}")]
    Rejected(#[from] Rejected),
    #[error("this replica has no signing key")]
    NoKey,
    /// It cannot yet prove it holds its zone's newest event (it lost its
    /// data, or came back from an older copy): signing now could reuse a
    /// seq. Try again once peers brought it up to date.
    /// A create for an id that exists, from a different request.
    #[error("service {0} exists and was created from a different request")]
    IdempotencyMismatch(ServiceId),
    /// A conditional write whose service moved on; `current` is its version.
    #[error("the service changed: its version is now {current}")]
    Stale { current: String },
    /// What the command was decided on changed (the engine re-plans).
    #[error("{0}")]
    Changed(String),
    #[error("service {service} has no VM in zone {zone}")]
    NoVm { service: ServiceId, zone: ZoneId },
    #[error("service {service} has no conflict on {target:?}")]
    NoConflict { service: ServiceId, target: String },
    #[error("the conflict's sides changed since they were read")]
    SidesChanged,
    #[error("this node is rebuilding: it accepts writes once a peer has confirmed it holds its zone's newest event (it has its zone's events up to {own_seq}; the highest seen signed is {signed_seq}), or an operator overrides")]
    Rebuilding { own_seq: u64, signed_seq: u64 },
}

/// One event that was applied, and whether the rules refused its op.
#[derive(Debug, Clone)]
pub struct Applied {
    pub event: SignedEvent,
    pub rejected: Option<Rejected>,
}

/// What became of a received event.
#[derive(Debug, Clone)]
pub enum Received {
    /// Applied, with any buffered events it unblocked, in apply order.
    Applied(Vec<Applied>),
    /// Already applied or already waiting: nothing to do.
    Duplicate,
    /// Waiting for its causal past.
    Buffered,
    /// The early-event buffer is full; dropped, to be fetched again.
    BufferFull,
    /// Not authentic or not well formed: dropped.
    Refused(EventError),
}

/// The keys whose stored rows are stale since the last `take_dirty`.
#[derive(Debug, Clone, Default)]
pub struct Dirty {
    pub services: BTreeSet<ServiceId>,
    pub messages: BTreeSet<MessageId>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.messages.is_empty()
    }
}

/// One zone's replica of the DR state.
pub struct Replica {
    zone: ZoneId,
    key: Option<SigningKey>,
    directory: Directory,
    clock: HlcClock,
    state: State,
    vv: VersionVector,
    pending: pending::Pending,
    /// Per zone, the newest version vector it is known to have had.
    known: BTreeMap<ZoneId, VersionVector>,
    dirty: Dirty,
    /// What this start has learned of its zone's signed events.
    rebuild: rebuild::Rebuild,
}

impl Replica {
    /// An empty replica. `key` is the zone's signing key; a replica without
    /// one can only receive (used by tools and tests).
    pub fn new(zone: ZoneId, key: Option<SigningKey>, directory: Directory) -> Self {
        Replica {
            rebuild: rebuild::Rebuild::exempt(),
            zone,
            key,
            directory,
            clock: HlcClock::default(),
            state: State::default(),
            vv: VersionVector::new(),
            pending: pending::Pending::default(),
            known: BTreeMap::new(),
            dirty: Dirty::default(),
        }
    }

    /// A replica restored from what the store holds.
    pub fn restore(
        zone: ZoneId,
        key: Option<SigningKey>,
        directory: Directory,
        state: State,
        vv: VersionVector,
        clock: Hlc,
    ) -> Self {
        let mut r = Replica::new(zone, key, directory);
        r.state = state;
        r.vv = vv;
        r.clock = HlcClock::new(clock);
        r
    }

    pub fn zone(&self) -> &ZoneId {
        &self.zone
    }
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.key.as_ref()
    }
    pub fn directory(&self) -> &Directory {
        &self.directory
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn vv(&self) -> &VersionVector {
        &self.vv
    }
    pub fn clock(&self) -> Hlc {
        self.clock.last()
    }
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
    /// What the early-event buffer holds and has dropped.
    pub fn pending_stats(&self) -> PendingStats {
        self.pending.stats()
    }
    /// Bounds of the early-event buffer other than the defaults (tests).
    pub fn set_pending_limits(&mut self, limits: PendingLimits) {
        self.pending.set_limits(limits);
    }
    pub fn service(&self, id: &ServiceId) -> Option<&Service> {
        self.state.services.get(id)
    }
    pub fn conflicts(&self) -> Vec<Conflict> {
        conflicts(&self.state)
    }

    /// A digest of the replicated state: equal on replicas that applied the
    /// same events.
    pub fn digest(&self) -> String {
        let bytes = postcard::to_stdvec(&(&self.vv, &self.state)).unwrap_or_default();
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// Stamps a time for a local action (an RP's snapshot time, say).
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        self.clock.tick(now_ms)
    }

    /// Makes, signs and applies a local write. The caller must make the
    /// returned event durable before acknowledging it to anyone.
    pub fn local_write(
        &mut self,
        op: Op,
        actor: &str,
        now_ms: u64,
    ) -> Result<SignedEvent, WriteError> {
        let event = self.prepare_write(op, actor, now_ms)?;
        let key = self.key.as_ref().ok_or(WriteError::NoKey)?;
        Ok(event.sign(key))
    }

    /// [`Replica::local_write`] without the signature: checks, stamps and
    /// applies the write and returns the event for the caller to sign with
    /// [`Replica::signing_key`] (the node's writer signs a batch on two
    /// threads). The event must be signed and durable before anyone hears
    /// of it.
    pub fn prepare_write(&mut self, op: Op, actor: &str, now_ms: u64) -> Result<Event, WriteError> {
        self.check_can_sign()?;
        self.check_local(&op)?;
        let own_seq = self.vv.get(&self.zone);
        let seq = own_seq
            .checked_add(1)
            .ok_or_else(|| InvalidInput::field("seq", "this zone has signed u64::MAX events"))?;
        let event = Event {
            origin: self.zone.clone(),
            seq,
            deps: self.vv.clone(),
            hlc: self.clock.tick(now_ms),
            actor: actor.to_string(),
            op,
        };
        authorize(&self.state, &self.directory, &event)?;
        let rejected = self.apply(&event, now_ms);
        debug_assert!(rejected.is_none(), "a checked local write was rejected");
        Ok(event)
    }

    /// The checks a local write gets beyond the replicated rules: what the
    /// API should refuse even though a peer's event of the same shape would
    /// be applied. `prepare_write` runs them; a caller writing several ops
    /// together runs them on all first.
    pub fn check_local(&self, op: &Op) -> Result<(), WriteError> {
        let known = |z: &ZoneId| self.directory.contains(z);
        let live = |id: &ServiceId| -> Result<&Service, WriteError> {
            let s = self
                .state
                .services
                .get(id)
                .ok_or_else(|| WriteError::NoSuchService(id.clone()))?;
            if s.is_deleted() {
                return Err(WriteError::Deleted(id.clone()));
            }
            Ok(s)
        };
        let metadata_ok = |m: &str| {
            if m.len() > MAX_METADATA_BYTES {
                Err(InvalidInput::field(
                    "metadata",
                    format!("longer than {MAX_METADATA_BYTES} bytes"),
                ))
            } else {
                Ok(())
            }
        };
        match op {
            Op::CreateService {
                service,
                policy,
                metadata,
                slot,
            } => {
                if self.state.services.contains_key(service) {
                    return Err(WriteError::Exists(format!("service {service}")));
                }
                policy.validate(std::slice::from_ref(&self.zone), known)?;
                metadata_ok(metadata)?;
                slot.validate()?;
            }
            Op::SetPolicy { service, policy } => {
                let s = live(service)?;
                policy.validate(&s.active_zones(), known)?;
            }
            Op::SetMetadata { service, metadata } => {
                live(service)?;
                metadata_ok(metadata)?;
            }
            Op::SetSlot {
                service,
                zone,
                slot,
            } => {
                live(service)?;
                if !known(zone) {
                    return Err(InvalidInput::field("zone", format!("unknown zone {zone}")).into());
                }
                if let Some(slot) = slot {
                    slot.validate()?;
                }
            }
            Op::DeleteService { service } => {
                live(service)?;
            }
            Op::SetPaused { service, pause } => {
                live(service)?;
                if let Some(p) = pause {
                    p.validate()?;
                }
            }
            Op::CreateRp { service, rp, .. } => {
                let s = live(service)?;
                if s.rps.contains_key(rp) {
                    return Err(WriteError::Exists(format!("recovery point {rp}")));
                }
            }
            Op::SetCopy { service, rp, .. } | Op::SetHold { service, rp, .. } => {
                let s = self
                    .state
                    .services
                    .get(service)
                    .ok_or_else(|| WriteError::NoSuchService(service.clone()))?;
                if !s.rps.contains_key(rp) {
                    return Err(WriteError::NoSuchRp(rp.to_string()));
                }
            }
            Op::PurgeRps { service, rps } => {
                let s = self
                    .state
                    .services
                    .get(service)
                    .ok_or_else(|| WriteError::NoSuchService(service.clone()))?;
                if let Some(rp) = rps.iter().find(|rp| !s.rps.contains_key(*rp)) {
                    return Err(WriteError::NoSuchRp(rp.to_string()));
                }
            }
            Op::SendMessage { to, .. } => {
                if !known(to) {
                    return Err(InvalidInput::field("to", format!("unknown zone {to}")).into());
                }
            }
            Op::AckMessage { message } => {
                if !self.state.messages.contains_key(message) {
                    return Err(WriteError::NoSuchMessage(message.clone()));
                }
            }
            Op::Send {
                to,
                broadcast,
                kind,
                body,
                ttl_ms,
                ..
            } => {
                if to.is_empty() && !broadcast {
                    return Err(InvalidInput::field("to", "no zone to send to").into());
                }
                if to.is_empty() {
                    return Err(InvalidInput::field("to", "this zone knows no other zone").into());
                }
                if let Some(z) = to.iter().find(|z| !known(z)) {
                    return Err(InvalidInput::field("to", format!("unknown zone {z}")).into());
                }
                if to.contains(&self.zone) {
                    return Err(InvalidInput::field("to", "a message goes to another zone").into());
                }
                check_kind(kind)?;
                check_ttl_ms(*ttl_ms)?;
                if body.len() > MAX_MESSAGE_BYTES {
                    return Err(InvalidInput::field(
                        "body",
                        format!("longer than {MAX_MESSAGE_BYTES} bytes as JSON"),
                    )
                    .into());
                }
            }
            Op::Deliver { message } | Op::Answer { message, .. } => {
                let m = self
                    .state
                    .messages
                    .get(message)
                    .ok_or_else(|| WriteError::NoSuchMessage(message.clone()))?;
                if !m.is_for(&self.zone) {
                    return Err(WriteError::NotAddressee {
                        message: message.clone(),
                        to: m
                            .to
                            .iter()
                            .map(|z| z.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                if let Op::Answer { result, .. } = op {
                    if m.answers.contains_key(&self.zone) {
                        return Err(WriteError::Answered(message.clone()));
                    }
                    if result.len() > MAX_MESSAGE_BYTES {
                        return Err(InvalidInput::field(
                            "result",
                            format!("longer than {MAX_MESSAGE_BYTES} bytes as JSON"),
                        )
                        .into());
                    }
                }
            }
            Op::PruneMessages { messages } => {
                if let Some(m) = messages
                    .iter()
                    .find(|m| !self.state.messages.contains_key(*m))
                {
                    return Err(WriteError::NoSuchMessage(m.clone()));
                }
            }
            // A record may follow the service's deletion in its own batch
            // (the tombstone stays in the state): it needs the service only.
            Op::Record {
                service,
                action,
                summary,
                ..
            } => {
                if !self.state.services.contains_key(service) {
                    return Err(WriteError::NoSuchService(service.clone()));
                }
                audit::check_record(action, summary)?;
            }
        }
        Ok(())
    }

    /// Takes in an event from a peer: verifies it, applies it if its causal
    /// past is here (and then whatever it unblocks), or buffers it (within
    /// the buffer's bounds, see `pending`; events that waited too long are
    /// dropped here first).
    pub fn receive(&mut self, ev: SignedEvent, now_ms: u64) -> Received {
        let dot = ev.dot();
        if self.vv.covers(&dot) || self.pending.contains(&dot) {
            return Received::Duplicate;
        }
        if let Err(e) = ev.verify(&self.directory) {
            return Received::Refused(e);
        }
        self.pending.expire(now_ms);
        if let Some(waits_for) = self.waits_for(&ev.event) {
            let bytes = pending::entry_bytes(&ev);
            if !self.pending.make_room(&dot, bytes) {
                return Received::BufferFull;
            }
            // Verified, so signed evidence already: its origin signed this
            // seq (and had its deps). Reported on, so that a rebuilding node
            // of that zone does not sign the seq again while the event may
            // still be applied here once its causal past arrives.
            self.saw_signed_event(&ev.event);
            self.pending.insert(ev, bytes, waits_for, now_ms);
            return Received::Buffered;
        }
        let mut applied = Vec::new();
        let rejected = self.apply(&ev.event, now_ms);
        applied.push(Applied {
            event: ev,
            rejected,
        });
        self.drain_pending(now_ms, &mut applied);
        Received::Applied(applied)
    }

    /// The first dot of `ev`'s causal past not applied here (for an event
    /// this replica does not cover), or `None` if it can be applied now.
    /// Its origin's previous event comes first, then its deps in order.
    fn waits_for(&self, ev: &Event) -> Option<Dot> {
        let have = self.vv.get(&ev.origin);
        if have.checked_add(1) != Some(ev.seq) {
            return Some(Dot {
                origin: ev.origin.clone(),
                seq: ev.seq.saturating_sub(1),
            });
        }
        ev.deps
            .iter()
            .find(|(z, s)| *z != &ev.origin && self.vv.get(z) < *s)
            .map(|(z, s)| Dot {
                origin: z.clone(),
                seq: s,
            })
    }

    fn is_ready(&self, ev: &Event) -> bool {
        !self.vv.covers(&ev.dot()) && self.waits_for(ev).is_none()
    }

    /// Applies the buffered events that became applicable: only those
    /// woken by an apply (they waited for its dot), each looked at again
    /// and either applied or indexed under what it waits for now.
    fn drain_pending(&mut self, now_ms: u64, applied: &mut Vec<Applied>) {
        while let Some(dot) = self.pending.pop_woken() {
            if self.vv.covers(&dot) {
                self.pending.take(&dot);
                continue;
            }
            let Some(ev) = self.pending.get(&dot) else {
                continue;
            };
            match self.waits_for(&ev.event) {
                Some(w) => self.pending.rewait(&dot, w),
                None => {
                    let Some(ev) = self.pending.take(&dot) else {
                        continue;
                    };
                    let rejected = self.apply(&ev.event, now_ms);
                    applied.push(Applied {
                        event: ev,
                        rejected,
                    });
                }
            }
        }
    }

    /// Applies an event whose causal past is here. Returns why its op was
    /// refused, if it was; the version vector moves on either way.
    fn apply(&mut self, ev: &Event, now_ms: u64) -> Option<Rejected> {
        debug_assert!(self.is_ready(ev), "applied out of causal order");
        self.clock.observe(ev.hlc, now_ms);
        let verdict = authorize(&self.state, &self.directory, ev);
        if verdict.is_ok() {
            match self.state.apply(ev) {
                Some(Touched::Service(s)) => self.dirty.services.insert(s),
                Some(Touched::Message(m)) => self.dirty.messages.insert(m),
                Some(Touched::Messages(ms)) => {
                    self.dirty.messages.extend(ms);
                    true
                }
                None => false,
            };
        }
        self.vv.set(ev.origin.clone(), ev.seq);
        self.pending.wake(&ev.dot());
        self.saw_signed_event(ev);
        verdict.err()
    }

    /// Takes in what a verified event proves: its origin had its deps and
    /// itself (how far our own zone got, if it names it).
    fn saw_signed_event(&mut self, ev: &Event) {
        self.rebuild.saw_vv(&self.zone, &ev.deps);
        if ev.origin == self.zone {
            self.rebuild.saw_signed(ev.seq);
        }
        let mut had = ev.deps.clone();
        had.set(ev.origin.clone(), ev.seq);
        self.known.entry(ev.origin.clone()).or_default().merge(&had);
    }

    /// Applies an event from this replica's own log, on restart. It was
    /// verified before it was stored, so only its causal place is checked;
    /// an event out of place is returned as an error (a damaged log).
    pub fn replay(&mut self, ev: &SignedEvent, now_ms: u64) -> Result<(), Dot> {
        if !self.is_ready(&ev.event) {
            return Err(ev.dot());
        }
        self.apply(&ev.event, now_ms);
        Ok(())
    }

    /// Number of rows changed since the last `take_dirty`.
    pub fn dirty_len(&self) -> usize {
        self.dirty.services.len() + self.dirty.messages.len()
    }

    /// Rows changed since the last call, for the store to write.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    /// Records what a peer told us it has (sync handshakes).
    pub fn note_peer_vv(&mut self, zone: &ZoneId, vv: &VersionVector) {
        if self.directory.contains(zone) {
            self.rebuild.saw_vv(&self.zone, vv);
            self.known.entry(zone.clone()).or_default().merge(vv);
        }
    }

    /// A peer's handshake: what it has and what it knows every zone has.
    /// Also what this replica needs to sign again after a restart: a
    /// direct report of how far its own zone got (see `rebuild`).
    pub fn peer_report(
        &mut self,
        from: &ZoneId,
        vv: &VersionVector,
        known: &BTreeMap<ZoneId, VersionVector>,
    ) {
        if from == &self.zone || !self.directory.contains(from) {
            return;
        }
        self.note_peer_vv(from, vv);
        self.merge_known(known);
        self.rebuild.confirmed(from);
    }

    /// What a node does when it starts: it cannot tell from its own disk
    /// whether it holds its zone's newest event (the data may be wiped or
    /// an older copy), so it signs nothing until peers told it how far its
    /// zone got and it has those events (see `rebuild`). A zone alone in
    /// its directory has nothing to prove.
    pub fn require_rebuild_proof(&mut self) {
        let alone = self.directory.zones().all(|z| z == &self.zone);
        self.rebuild = rebuild::Rebuild::unproven(alone);
    }

    /// Where this replica stands on signing (see `rebuild`).
    pub fn rebuild_status(&self) -> RebuildStatus {
        self.rebuild.status(self.vv.get(&self.zone))
    }

    /// Refuses any local write while this replica may not sign (no key, or
    /// rebuilding). Checked before anything else: a rebuilding node's state
    /// is older than its zone's, so its other verdicts (not found, stale
    /// version) could be wrong.
    pub fn check_can_sign(&self) -> Result<(), WriteError> {
        if self.key.is_none() {
            return Err(WriteError::NoKey);
        }
        let own_seq = self.vv.get(&self.zone);
        if !self.rebuild.can_sign(own_seq) {
            return Err(WriteError::Rebuilding {
                own_seq,
                signed_seq: self.rebuild.status(own_seq).signed_seq,
            });
        }
        Ok(())
    }

    /// True if a local write would be signed now.
    pub fn can_sign(&self) -> bool {
        self.key.is_some() && self.rebuild.can_sign(self.vv.get(&self.zone))
    }

    /// An operator's override: sign from here on without a peer's report.
    /// May reuse a seq if the zone signed more than this replica has.
    pub fn override_rebuild(&mut self) {
        self.rebuild.override_now();
    }

    /// What this replica knows each zone has (itself included). Peers swap
    /// these so that a zone that never writes still lets others compact.
    pub fn known(&self) -> BTreeMap<ZoneId, VersionVector> {
        let mut out = self.known.clone();
        out.insert(self.zone.clone(), self.vv.clone());
        out
    }

    /// Merges a peer's [`Replica::known`]: each entry only ever grows.
    pub fn merge_known(&mut self, theirs: &BTreeMap<ZoneId, VersionVector>) {
        for (z, vv) in theirs {
            if self.directory.contains(z) {
                self.rebuild.saw_vv(&self.zone, vv);
            }
            if z != &self.zone && self.directory.contains(z) {
                self.known.entry(z.clone()).or_default().merge(vv);
            }
        }
    }

    /// Every zone in the directory is known to have every event at or below
    /// this vector: the log below it can be compacted.
    pub fn stable_vv(&self) -> VersionVector {
        let mut out = self.vv.clone();
        for z in self.directory.zones() {
            if z == &self.zone {
                continue;
            }
            let theirs = self.known.get(z).cloned().unwrap_or_default();
            out = out.meet(&theirs);
        }
        out
    }

    /// The dots a snapshot of this replica carries (live events and the
    /// heads of its version vector); the store reads their events.
    pub fn snapshot_dots(&self) -> (BTreeSet<Dot>, Vec<Dot>) {
        snapshot_dots(&self.vv, &self.state)
    }

    /// Merges in the state a peer's snapshot proves. `own_live` are the
    /// signed events of this replica's live dots ([`State::live_dots`]; the
    /// store holds them). The snapshot must prove the sender's state on its
    /// own (`Snapshot::verify`); then the state becomes that of the join of
    /// both histories ([`merge`]): the vector is the join of both, and
    /// nothing this replica had that the sender lacks is lost. A snapshot
    /// that covers all we have gives the sender's state. Returns
    /// buffered events the import unblocked and that were applied. A
    /// refused snapshot changes nothing.
    pub fn import_snapshot(
        &mut self,
        snap: &Snapshot,
        own_live: &[SignedEvent],
        now_ms: u64,
    ) -> Result<Vec<Applied>, SnapshotError> {
        debug_assert_eq!(
            own_live
                .iter()
                .map(SignedEvent::dot)
                .collect::<BTreeSet<_>>(),
            self.state.live_dots(),
            "the importer's live events are not its live dots"
        );
        snap.verify(&self.directory)?;
        check_equivocation(own_live, snap)?;
        // Merged even when the snapshot covers all we have (then it is the
        // sender's state): a creation we saw purged, or a value we saw
        // superseded, stays gone even if the snapshot carries it back.
        (self.vv, self.state) = merge(&self.directory, &self.zone, &self.vv, own_live, snap);
        for h in &snap.heads {
            self.clock.observe(h.event.hlc, now_ms);
            self.saw_signed_event(&h.event);
        }
        self.pending.drop_covered(&self.vv);
        self.pending.wake_all();
        self.dirty.services = self.state.services.keys().cloned().collect();
        self.dirty.messages = self.state.messages.keys().cloned().collect();
        let mut applied = Vec::new();
        self.drain_pending(now_ms, &mut applied);
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> ZoneId {
        ZoneId::new(s).unwrap()
    }

    struct Zones {
        keys: BTreeMap<ZoneId, SigningKey>,
        directory: Directory,
    }

    fn zones() -> Zones {
        let keys: BTreeMap<ZoneId, SigningKey> = ["zone-a", "zone-b", "zone-c"]
            .iter()
            .enumerate()
            .map(|(i, n)| (z(n), SigningKey::from_bytes(&[i as u8 + 1; 32])))
            .collect();
        let directory = Directory::new(
            keys.iter()
                .map(|(z, k)| (z.clone(), k.verifying_key()))
                .collect(),
        );
        Zones { keys, directory }
    }

    impl Zones {
        /// Event `seq` of `origin` with `deps` (its own entry `seq - 1`),
        /// a message carrying `body_bytes` bytes.
        fn event(
            &self,
            origin: &str,
            seq: u64,
            deps: &[(&str, u64)],
            body_bytes: usize,
        ) -> SignedEvent {
            let mut vv = VersionVector::new();
            for (zn, s) in deps {
                vv.set(z(zn), *s);
            }
            vv.set(z(origin), seq.saturating_sub(1));
            Event {
                origin: z(origin),
                seq,
                deps: vv,
                hlc: Hlc {
                    wall_ms: 1,
                    logical: 0,
                },
                actor: "test".into(),
                op: Op::SendMessage {
                    to: z("zone-a"),
                    body: "x".repeat(body_bytes),
                },
            }
            .sign(&self.keys[&z(origin)])
        }

        fn replica(&self) -> Replica {
            Replica::new(z("zone-a"), None, self.directory.clone())
        }
    }

    fn applied_dots(r: Received) -> Vec<u64> {
        match r {
            Received::Applied(a) => a.iter().map(|a| a.event.event.seq).collect(),
            other => panic!("not applied: {other:?}"),
        }
    }

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn a_flood_behind_a_withheld_event_keeps_the_nearest_events_of_that_origin_only() {
        let zs = zones();
        let mut r = zs.replica();
        let limits = PendingLimits {
            max_origin_events: 10,
            ..PendingLimits::default()
        };
        r.set_pending_limits(limits);
        // zone-c withholds its seq 1 and floods 2..=100, newest first: each
        // lower seq takes the place of a higher one.
        for seq in (2..=100).rev() {
            let got = r.receive(zs.event("zone-c", seq, &[], 16), T0);
            assert!(matches!(got, Received::Buffered), "{seq}: {got:?}");
        }
        assert_eq!(r.pending_len(), 10);
        assert_eq!(r.pending_stats().evicted, 89);
        // In order, past the share: refused, nothing evicted.
        let mut r2 = zs.replica();
        r2.set_pending_limits(limits);
        let mut full = 0;
        for seq in 2..=100 {
            if let Received::BufferFull = r2.receive(zs.event("zone-c", seq, &[], 16), T0) {
                full += 1;
            }
        }
        assert_eq!((r2.pending_len(), full), (10, 89));
        // Another origin's early event still has room.
        assert!(matches!(
            r.receive(zs.event("zone-b", 2, &[], 16), T0),
            Received::Buffered
        ));
        // The withheld event unblocks exactly the kept ones, in order.
        for r in [&mut r, &mut r2] {
            let got = applied_dots(r.receive(zs.event("zone-c", 1, &[], 16), T0));
            assert_eq!(got, (1..=11).collect::<Vec<_>>());
            assert_eq!(r.vv().get(&z("zone-c")), 11);
        }
        assert_eq!(r.pending_len(), 1, "zone-b's still waits");
        assert_eq!(r2.pending_len(), 0);
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes_per_origin_and_in_total() {
        let zs = zones();
        let mut r = zs.replica();
        let one = pending::entry_bytes(&zs.event("zone-c", 2, &[], 10_000));
        r.set_pending_limits(PendingLimits {
            max_origin_bytes: 3 * one,
            max_bytes: 5 * one,
            ..PendingLimits::default()
        });
        let mut buffered = BTreeMap::<&str, usize>::new();
        for origin in ["zone-c", "zone-b"] {
            for seq in 2..=10 {
                if let Received::Buffered = r.receive(zs.event(origin, seq, &[], 10_000), T0) {
                    *buffered.entry(origin).or_default() += 1;
                }
            }
        }
        // zone-c got its share of 3; zone-b its 2 left of the total of 5.
        assert_eq!(buffered["zone-c"], 3);
        assert_eq!(buffered["zone-b"], 2);
        let stats = r.pending_stats();
        assert_eq!(stats.events, 5);
        assert!(stats.bytes <= 5 * one, "{stats:?}");
        // An event larger than a whole share never fits.
        assert!(matches!(
            r.receive(zs.event("zone-a", 2, &[], 4 * 10_000), T0),
            Received::BufferFull
        ));
    }

    #[test]
    fn early_events_expire_and_come_back_as_new() {
        let zs = zones();
        let mut r = zs.replica();
        let early = zs.event("zone-c", 3, &[], 16);
        assert!(matches!(r.receive(early.clone(), T0), Received::Buffered));
        assert!(matches!(
            r.receive(early.clone(), T0 + 1),
            Received::Duplicate
        ));
        // Anything received after the age limit first drops what is too old.
        let later = T0 + MAX_PENDING_AGE_MS;
        assert!(matches!(
            r.receive(zs.event("zone-b", 2, &[], 16), later),
            Received::Buffered
        ));
        assert_eq!(r.pending_stats().expired, 1);
        assert_eq!(r.pending_len(), 1);
        // Sent again (anti-entropy), it is buffered again and applies.
        assert!(matches!(r.receive(early, later), Received::Buffered));
        assert!(matches!(
            r.receive(zs.event("zone-c", 2, &[], 16), later),
            Received::Buffered
        ));
        assert_eq!(
            applied_dots(r.receive(zs.event("zone-c", 1, &[], 16), later)),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn an_applied_event_wakes_what_waited_for_it_across_origins() {
        let zs = zones();
        let mut r = zs.replica();
        // b:1 needs c:2; c:2 needs c:1; b:2 needs b:1 and c:1.
        let b1 = zs.event("zone-b", 1, &[("zone-c", 2)], 16);
        let b2 = zs.event("zone-b", 2, &[("zone-c", 1)], 16);
        let c2 = zs.event("zone-c", 2, &[], 16);
        for e in [b2, b1, c2] {
            assert!(matches!(r.receive(e, T0), Received::Buffered));
        }
        let got = match r.receive(zs.event("zone-c", 1, &[], 16), T0) {
            Received::Applied(a) => a
                .iter()
                .map(|a| a.event.dot().to_string())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, ["zone-c:1", "zone-c:2", "zone-b:1", "zone-b:2"]);
        assert_eq!(r.pending_len(), 0);
    }

    #[test]
    fn u64_max_seqs_and_vector_entries_neither_panic_nor_wrap() {
        let zs = zones();
        let mut vv = VersionVector::new();
        vv.set(z("zone-c"), u64::MAX);
        let mut r = Replica::restore(
            z("zone-a"),
            None,
            zs.directory.clone(),
            State::default(),
            vv,
            Hlc::default(),
        );
        // vv + 1 would overflow: an event of zone-c is covered, never ready.
        let c = zs.event("zone-c", 5, &[], 16);
        assert_eq!(r.replay(&c, T0), Err(c.dot()));
        assert!(matches!(
            r.receive(zs.event("zone-c", u64::MAX, &[], 16), T0),
            Received::Duplicate
        ));
        // An event that names u64::MAX in its deps, or is seq u64::MAX.
        let mut fresh = zs.replica();
        let b = zs.event("zone-b", 1, &[("zone-c", u64::MAX)], 16);
        assert!(matches!(fresh.receive(b.clone(), T0), Received::Buffered));
        assert!(matches!(r.receive(b, T0), Received::Applied(_)));
        let top = zs.event("zone-b", u64::MAX, &[], 16);
        assert!(matches!(fresh.receive(top, T0), Received::Buffered));
        assert_eq!(fresh.pending_len(), 2);
        // Their sums still order causally.
        let deps = fresh.pending.get(&Dot {
            origin: z("zone-b"),
            seq: u64::MAX,
        });
        assert!(deps.is_some_and(|e| e.event.deps.total() == u128::from(u64::MAX - 1)));
    }
}
