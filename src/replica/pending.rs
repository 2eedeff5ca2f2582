//! The early-event buffer: verified events that wait for their causal past.
//!
//! A buffered event is only a not-yet-applied copy: it is not in the
//! version vector, so no peer is ever told we have it and every sender
//! keeps it (and sends it again). Dropping one — because its origin's
//! share or the whole buffer is full, or because it waited too long —
//! loses nothing; anti-entropy fetches it again once its past is here.
//!
//! Bounded in events and bytes, per origin and in total, and by age. An
//! origin can fill only its own share (the signature binds the origin),
//! and within it the events nearest to being applied are kept: a new
//! event evicts the same origin's higher seqs to make room.
//!
//! Indexed by the dot each event waits for (the first of its causal past
//! not yet applied), so applying an event looks only at the events that
//! waited for it, never rescans the buffer.

use super::event::SignedEvent;
use super::vv::{Dot, VersionVector};
use crate::model::ZoneId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Most events held in total. Past this, early events are refused; they
/// are fetched again later.
pub const MAX_PENDING_EVENTS: usize = 8192;
/// Most bytes (encoded events plus [`PENDING_ENTRY_OVERHEAD_BYTES`] each)
/// held in total.
pub const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;
/// Most events held of one origin.
pub const MAX_PENDING_ORIGIN_EVENTS: usize = 4096;
/// Most bytes held of one origin.
pub const MAX_PENDING_ORIGIN_BYTES: usize = 16 * 1024 * 1024;
/// How long an event may wait for its causal past before it is dropped.
pub const MAX_PENDING_AGE_MS: u64 = 120_000;
/// What one entry is counted beyond its encoding (the decoded event, the
/// index entries).
pub const PENDING_ENTRY_OVERHEAD_BYTES: usize = 512;

/// The bounds of the buffer (the defaults are the constants above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_origin_events: usize,
    pub max_origin_bytes: usize,
    pub max_age_ms: u64,
}

impl Default for PendingLimits {
    fn default() -> Self {
        PendingLimits {
            max_events: MAX_PENDING_EVENTS,
            max_bytes: MAX_PENDING_BYTES,
            max_origin_events: MAX_PENDING_ORIGIN_EVENTS,
            max_origin_bytes: MAX_PENDING_ORIGIN_BYTES,
            max_age_ms: MAX_PENDING_AGE_MS,
        }
    }
}

/// What the buffer holds and has dropped (since the replica was made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingStats {
    pub events: usize,
    pub bytes: usize,
    /// Dropped for having waited longer than `max_age_ms`.
    pub expired: u64,
    /// Dropped to make room for an event of the same origin nearer to
    /// being applied.
    pub evicted: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    events: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    ev: SignedEvent,
    bytes: usize,
    at_ms: u64,
    /// Its place in `by_age`.
    n: u64,
    /// The dot it waits for (it is in `waiting` under it), or `None` if it
    /// is in `woken`, to be looked at again.
    waits_for: Option<Dot>,
}

/// The buffer itself. The replica decides what an event waits for.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    limits: PendingLimits,
    events: BTreeMap<Dot, Entry>,
    waiting: BTreeMap<Dot, BTreeSet<Dot>>,
    /// Insertion order, oldest first: what expiry looks at.
    by_age: BTreeMap<u64, Dot>,
    per_origin: BTreeMap<ZoneId, Usage>,
    total: Usage,
    /// Events whose awaited dot was applied: look at them again, in order.
    woken: VecDeque<Dot>,
    next_n: u64,
    expired: u64,
    evicted: u64,
}

impl Pending {
    pub fn set_limits(&mut self, limits: PendingLimits) {
        self.limits = limits;
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn contains(&self, dot: &Dot) -> bool {
        self.events.contains_key(dot)
    }

    pub fn get(&self, dot: &Dot) -> Option<&SignedEvent> {
        self.events.get(dot).map(|e| &e.ev)
    }

    pub fn stats(&self) -> PendingStats {
        PendingStats {
            events: self.total.events,
            bytes: self.total.bytes,
            expired: self.expired,
            evicted: self.evicted,
        }
    }

    /// Makes room for an event `dot` of `bytes` (as [`entry_bytes`]
    /// counts), evicting its origin's higher seqs if its origin's share is
    /// full. False if it does not fit: then nothing was evicted.
    pub fn make_room(&mut self, dot: &Dot, bytes: usize) -> bool {
        let l = self.limits;
        if bytes > l.max_origin_bytes || bytes > l.max_bytes {
            return false;
        }
        let usage = self
            .per_origin
            .get(&dot.origin)
            .copied()
            .unwrap_or_default();
        let over = |u: Usage| {
            u.events.saturating_add(1) > l.max_origin_events
                || u.bytes.saturating_add(bytes) > l.max_origin_bytes
        };
        // The origin's events above `dot`, highest first, that eviction
        // would take, until it fits.
        let mut victims = Vec::new();
        let mut after = usage;
        if over(after) {
            let above = Dot {
                origin: dot.origin.clone(),
                seq: dot.seq.saturating_add(1),
            };
            let upto = Dot {
                origin: dot.origin.clone(),
                seq: u64::MAX,
            };
            if dot.seq < u64::MAX {
                for (d, e) in self.events.range(above..=upto).rev() {
                    if !over(after) {
                        break;
                    }
                    after.events = after.events.saturating_sub(1);
                    after.bytes = after.bytes.saturating_sub(e.bytes);
                    victims.push(d.clone());
                }
            }
            if over(after) {
                return false;
            }
        }
        let freed: usize = victims
            .iter()
            .filter_map(|d| self.events.get(d))
            .map(|e| e.bytes)
            .fold(0, usize::saturating_add);
        let total_events = self.total.events.saturating_sub(victims.len());
        let total_bytes = self.total.bytes.saturating_sub(freed);
        if total_events.saturating_add(1) > l.max_events
            || total_bytes.saturating_add(bytes) > l.max_bytes
        {
            return false;
        }
        for d in victims {
            self.take(&d);
            self.evicted = self.evicted.saturating_add(1);
        }
        true
    }

    /// Buffers `ev` (after [`Pending::make_room`] said it fits), waiting
    /// for `waits_for`.
    pub fn insert(&mut self, ev: SignedEvent, bytes: usize, waits_for: Dot, now_ms: u64) {
        let dot = ev.dot();
        self.take(&dot);
        let n = self.next_n;
        self.next_n = self.next_n.saturating_add(1);
        self.by_age.insert(n, dot.clone());
        self.waiting
            .entry(waits_for.clone())
            .or_default()
            .insert(dot.clone());
        let u = self.per_origin.entry(dot.origin.clone()).or_default();
        u.events = u.events.saturating_add(1);
        u.bytes = u.bytes.saturating_add(bytes);
        self.total.events = self.total.events.saturating_add(1);
        self.total.bytes = self.total.bytes.saturating_add(bytes);
        self.events.insert(
            dot,
            Entry {
                ev,
                bytes,
                at_ms: now_ms,
                n,
                waits_for: Some(waits_for),
            },
        );
    }

    /// Removes an event, wherever it is indexed.
    pub fn take(&mut self, dot: &Dot) -> Option<SignedEvent> {
        let e = self.events.remove(dot)?;
        self.by_age.remove(&e.n);
        if let Some(w) = &e.waits_for {
            self.unindex(w, dot);
        }
        if let Some(u) = self.per_origin.get_mut(&dot.origin) {
            u.events = u.events.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(e.bytes);
            if u.events == 0 {
                self.per_origin.remove(&dot.origin);
            }
        }
        self.total.events = self.total.events.saturating_sub(1);
        self.total.bytes = self.total.bytes.saturating_sub(e.bytes);
        Some(e.ev)
    }

    fn unindex(&mut self, waits_for: &Dot, dot: &Dot) {
        if let Some(set) = self.waiting.get_mut(waits_for) {
            set.remove(dot);
            if set.is_empty() {
                self.waiting.remove(waits_for);
            }
        }
    }

    /// Drops what waited longer than the limit.
    pub fn expire(&mut self, now_ms: u64) {
        let max_age = self.limits.max_age_ms;
        while let Some((_, dot)) = self.by_age.first_key_value() {
            let Some(e) = self.events.get(dot) else {
                // Cannot happen: `by_age` and `events` change together.
                self.by_age.pop_first();
                continue;
            };
            if e.at_ms.saturating_add(max_age) > now_ms {
                break;
            }
            let dot = dot.clone();
            self.take(&dot);
            self.expired = self.expired.saturating_add(1);
        }
    }

    /// `dot` was applied: the events waiting for it are to be looked at.
    pub fn wake(&mut self, dot: &Dot) {
        let Some(set) = self.waiting.remove(dot) else {
            return;
        };
        for d in set {
            if let Some(e) = self.events.get_mut(&d) {
                e.waits_for = None;
                self.woken.push_back(d);
            }
        }
    }

    /// Every event is to be looked at (the vector moved by more than one
    /// apply: a snapshot import).
    pub fn wake_all(&mut self) {
        let dots: Vec<Dot> = self.waiting.keys().cloned().collect();
        for d in dots {
            self.wake(&d);
        }
    }

    /// The next woken event to look at.
    pub fn pop_woken(&mut self) -> Option<Dot> {
        while let Some(d) = self.woken.pop_front() {
            if self.events.get(&d).is_some_and(|e| e.waits_for.is_none()) {
                return Some(d);
            }
        }
        None
    }

    /// A woken event is still not applicable: it now waits for `waits_for`.
    pub fn rewait(&mut self, dot: &Dot, waits_for: Dot) {
        let Some(e) = self.events.get_mut(dot) else {
            return;
        };
        if let Some(old) = e.waits_for.replace(waits_for.clone()) {
            self.unindex(&old, dot);
        }
        self.waiting
            .entry(waits_for)
            .or_default()
            .insert(dot.clone());
    }

    /// Drops every event `vv` covers.
    pub fn drop_covered(&mut self, vv: &VersionVector) {
        let covered: Vec<Dot> = self
            .events
            .keys()
            .filter(|d| vv.covers(d))
            .cloned()
            .collect();
        for d in covered {
            self.take(&d);
        }
    }
}

/// What an event is counted as in the buffer.
pub fn entry_bytes(ev: &SignedEvent) -> usize {
    ev.encode()
        .len()
        .saturating_add(PENDING_ENTRY_OVERHEAD_BYTES)
}
