//! The sending half of a link to one peer, as a plain state machine
//! (sans-I/O): it decides what to send next from our version vector, what
//! the peer is known to have and the compaction floor, and it digests the
//! peer's answers. The tokio shell in `session` carries out its steps (reads
//! the store, writes frames) and feeds it what comes back.
//!
//! Rules it keeps:
//! - at most one request outstanding (back-pressure: the next batch is
//!   sent only after the previous one was ingested and acknowledged);
//! - it never sends what the peer is known to have (`known`, kept by the
//!   shell from handshakes, acks and the version vectors the peer sends us);
//! - a peer behind the compaction floor gets a snapshot first, and only once
//!   we have every event the peer has (else it would refuse it);
//! - an answer that shows no progress stalls the link until the next
//!   anti-entropy tick, so bad data can never make two nodes spin.

use super::wire::Msg;
use crate::replica::VersionVector;

/// What the shell should do next for this peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to do until something changes (a commit, an answer, a tick).
    Wait,
    /// Send Hello (our version vector and what we know each zone has),
    /// then wait for the Welcome.
    Greet,
    /// Read from the store the events `theirs` lacks (in causal order, up to
    /// the batch limits) and hand them to [`Outbound::events`].
    FetchEvents { theirs: VersionVector },
    /// Export a snapshot and hand it to [`Outbound::snapshot`].
    SendSnapshot,
}

/// How an answer changes what a peer is known to have.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// The peer has exactly this (a fresh session's Welcome, an imported
    /// snapshot): forget older beliefs, it may have lost data.
    Replace(VersionVector),
    /// The peer has at least this.
    Merge(VersionVector),
}

impl Known {
    pub fn apply(self, known: &mut VersionVector) {
        match self {
            Known::Replace(vv) => *known = vv,
            Known::Merge(vv) => known.merge(&vv),
        }
    }
}

/// A message arrived that this state machine did not ask for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected {kind} while {phase}")]
pub struct Unexpected {
    pub kind: &'static str,
    pub phase: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// A new session: the first step is Hello.
    Start,
    /// Hello sent, waiting for Welcome.
    Greeting,
    Idle,
    /// Batch `id` sent; `known_before` is what the peer was known to have.
    AwaitingAck {
        id: u64,
        known_before: VersionVector,
    },
    AwaitingSnapshotAck {
        id: u64,
    },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Start => "starting",
            Phase::Greeting => "greeting",
            Phase::Idle => "idle",
            Phase::AwaitingAck { .. } => "awaiting an ack",
            Phase::AwaitingSnapshotAck { .. } => "awaiting a snapshot ack",
        }
    }
}

/// The sending half of one session with one peer.
#[derive(Debug)]
pub struct Outbound {
    phase: Phase,
    next_id: u64,
    /// The first Welcome of a session replaces what we believed the peer
    /// had (it may have restarted from an older copy); later ones merge.
    greeted: bool,
    /// The last answer showed no progress: wait for the next tick.
    stalled: bool,
}

/// True if a peer at `theirs` lacks events below the compaction `floor`.
pub fn needs_snapshot(floor: &VersionVector, theirs: &VersionVector) -> bool {
    floor.iter().any(|(z, f)| theirs.get(z) < f)
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbound {
    pub fn new() -> Self {
        Outbound {
            phase: Phase::Start,
            next_id: 1,
            greeted: false,
            stalled: false,
        }
    }

    /// True while a request is outstanding.
    pub fn awaiting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Greeting | Phase::AwaitingAck { .. } | Phase::AwaitingSnapshotAck { .. }
        )
    }

    /// True while a Hello is outstanding.
    pub fn greeting(&self) -> bool {
        self.phase == Phase::Greeting
    }

    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// The next thing to do. `ours` is our version vector, `known` what the
    /// peer is known to have, `floor` our compaction floor.
    pub fn poll(
        &mut self,
        ours: &VersionVector,
        known: &VersionVector,
        floor: &VersionVector,
    ) -> Step {
        match self.phase {
            Phase::Start => {
                self.phase = Phase::Greeting;
                return Step::Greet;
            }
            Phase::Idle if !self.stalled => {}
            _ => return Step::Wait,
        }
        if needs_snapshot(floor, known) {
            // A snapshot that does not cover what the peer has is refused:
            // wait until the peer's own session has brought us its events.
            if ours.dominates(known) {
                return Step::SendSnapshot;
            }
            return Step::Wait;
        }
        if known.dominates(ours) {
            return Step::Wait;
        }
        Step::FetchEvents {
            theirs: known.clone(),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The batch fetched for [`Step::FetchEvents`]: the message to send, or
    /// `None` if there was nothing to send after all (the link then waits
    /// for the next tick rather than ask the store again at once).
    pub fn events(
        &mut self,
        ours: &VersionVector,
        known: &VersionVector,
        events: Vec<Vec<u8>>,
    ) -> Option<Msg> {
        debug_assert_eq!(self.phase, Phase::Idle, "events fetched while busy");
        if events.is_empty() {
            self.stalled = true;
            return None;
        }
        let id = self.take_id();
        self.phase = Phase::AwaitingAck {
            id,
            known_before: known.clone(),
        };
        Some(Msg::Events {
            id,
            vv: ours.clone(),
            events,
        })
    }

    /// The snapshot exported for [`Step::SendSnapshot`], encoded; `None`
    /// means it could not be sent (too large): wait for the next tick.
    pub fn snapshot(&mut self, snapshot: Option<Vec<u8>>) -> Option<Msg> {
        debug_assert_eq!(self.phase, Phase::Idle, "snapshot sent while busy");
        let Some(snapshot) = snapshot else {
            self.stalled = true;
            return None;
        };
        let id = self.take_id();
        self.phase = Phase::AwaitingSnapshotAck { id };
        Some(Msg::Snapshot { id, snapshot })
    }

    /// Digests an answer from the peer; returns how it changes what the
    /// peer is known to have (the shell applies that to the shared book,
    /// which the peer's other session also updates).
    pub fn on_reply(&mut self, msg: Msg) -> Result<Known, Unexpected> {
        match (&self.phase, msg) {
            (Phase::Greeting, Msg::Welcome { vv, .. }) => {
                self.phase = Phase::Idle;
                if self.greeted {
                    Ok(Known::Merge(vv))
                } else {
                    self.greeted = true;
                    Ok(Known::Replace(vv))
                }
            }
            (Phase::AwaitingAck { id, known_before }, Msg::Ack { id: acked, vv })
                if *id == acked =>
            {
                if known_before.dominates(&vv) {
                    // Nothing we sent was taken: don't send it again now.
                    self.stalled = true;
                }
                self.phase = Phase::Idle;
                Ok(Known::Merge(vv))
            }
            (
                Phase::AwaitingSnapshotAck { id },
                Msg::SnapshotAck {
                    id: acked,
                    imported,
                    vv,
                },
            ) if *id == acked => {
                self.phase = Phase::Idle;
                if imported {
                    // The peer's state is now exactly the snapshot.
                    Ok(Known::Replace(vv))
                } else {
                    Ok(Known::Merge(vv))
                }
            }
            (phase, Msg::Dropped { vv, .. }) if *phase != Phase::Idle && *phase != Phase::Start => {
                self.stalled = true;
                self.phase = Phase::Idle;
                Ok(Known::Merge(vv))
            }
            (phase, msg) => Err(Unexpected {
                kind: msg.kind(),
                phase: phase.name(),
            }),
        }
    }

    /// The anti-entropy tick: un-stalls the link and, if it is idle, says
    /// to greet again (swap version vectors: the peer may have lost or
    /// gained events we did not hear about). True means send Hello.
    pub fn on_tick(&mut self) -> bool {
        self.stalled = false;
        if self.phase == Phase::Idle {
            self.phase = Phase::Greeting;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ZoneId;

    fn z(s: &str) -> ZoneId {
        ZoneId::new(s).unwrap()
    }

    fn vv(entries: &[(&str, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (zone, seq) in entries {
            v.set(z(zone), *seq);
        }
        v
    }

    /// A fresh session greeted by a peer at `theirs`.
    fn greeted(ours: &VersionVector, theirs: VersionVector) -> (Outbound, VersionVector) {
        let mut o = Outbound::new();
        let mut known = VersionVector::new();
        let step = o.poll(ours, &known, &VersionVector::new());
        assert_eq!(step, Step::Greet);
        assert_eq!(o.poll(ours, &known, &VersionVector::new()), Step::Wait);
        o.on_reply(Msg::Welcome {
            vv: theirs,
            known: Default::default(),
        })
        .unwrap()
        .apply(&mut known);
        (o, known)
    }

    #[test]
    fn sends_only_what_the_peer_lacks_one_batch_at_a_time() {
        let ours = vv(&[("a", 5), ("b", 2)]);
        let (mut o, mut known) = greeted(&ours, vv(&[("a", 3), ("b", 2)]));
        let floor = VersionVector::new();
        assert_eq!(
            o.poll(&ours, &known, &floor),
            Step::FetchEvents {
                theirs: vv(&[("a", 3), ("b", 2)])
            }
        );
        let msg = o.events(&ours, &known, vec![vec![1], vec![2]]).unwrap();
        let Msg::Events { id, .. } = msg else {
            panic!()
        };
        // While the batch is out, nothing else goes.
        let more = vv(&[("a", 6), ("b", 2)]);
        assert_eq!(o.poll(&more, &known, &floor), Step::Wait);
        o.on_reply(Msg::Ack {
            id,
            vv: ours.clone(),
        })
        .unwrap()
        .apply(&mut known);
        assert_eq!(known, ours);
        assert!(matches!(
            o.poll(&more, &known, &floor),
            Step::FetchEvents { .. }
        ));
    }

    #[test]
    fn a_peer_known_to_have_everything_gets_nothing() {
        let ours = vv(&[("a", 5)]);
        let (mut o, mut known) = greeted(&ours, vv(&[("a", 2)]));
        // The peer told us (by sending us events) that it has more.
        known.merge(&vv(&[("a", 5), ("b", 1)]));
        assert_eq!(o.poll(&ours, &known, &VersionVector::new()), Step::Wait);
    }

    #[test]
    fn an_ack_without_progress_stalls_until_the_tick() {
        let ours = vv(&[("a", 2)]);
        let (mut o, mut known) = greeted(&ours, VersionVector::new());
        let floor = VersionVector::new();
        assert!(matches!(
            o.poll(&ours, &known, &floor),
            Step::FetchEvents { .. }
        ));
        let Some(Msg::Events { id, .. }) = o.events(&ours, &known, vec![vec![0]]) else {
            panic!()
        };
        o.on_reply(Msg::Ack {
            id,
            vv: VersionVector::new(),
        })
        .unwrap()
        .apply(&mut known);
        assert!(o.is_stalled());
        assert_eq!(o.poll(&ours, &known, &floor), Step::Wait);
        assert!(o.on_tick());
        o.on_reply(Msg::Welcome {
            vv: VersionVector::new(),
            known: Default::default(),
        })
        .unwrap()
        .apply(&mut known);
        assert!(matches!(
            o.poll(&ours, &known, &floor),
            Step::FetchEvents { .. }
        ));
    }

    #[test]
    fn a_dropped_request_never_leaves_the_link_waiting() {
        let ours = vv(&[("a", 2)]);
        let (mut o, mut known) = greeted(&ours, VersionVector::new());
        let _ = o.poll(&ours, &known, &VersionVector::new());
        let _ = o.events(&ours, &known, vec![vec![0]]);
        assert!(o.awaiting());
        o.on_reply(Msg::Dropped {
            reason: "malformed".into(),
            vv: VersionVector::new(),
        })
        .unwrap()
        .apply(&mut known);
        assert!(!o.awaiting());
        // Answers nobody asked for are refused, not acted on.
        assert!(o
            .on_reply(Msg::Welcome {
                vv: VersionVector::new(),
                known: Default::default(),
            })
            .is_err());
    }

    #[test]
    fn behind_the_floor_gets_a_snapshot_once_we_cover_it() {
        let floor = vv(&[("a", 10), ("b", 4)]);
        let ours = vv(&[("a", 12), ("b", 4)]);
        // The peer is behind the floor on `a` but has `c` events we lack.
        let theirs = vv(&[("a", 3), ("c", 2)]);
        let (mut o, mut known) = greeted(&ours, theirs.clone());
        assert_eq!(o.poll(&ours, &known, &floor), Step::Wait);
        // Its session brought us its `c` events.
        let ours = vv(&[("a", 12), ("b", 4), ("c", 2)]);
        assert_eq!(o.poll(&ours, &known, &floor), Step::SendSnapshot);
        let Some(Msg::Snapshot { id, .. }) = o.snapshot(Some(vec![1, 2, 3])) else {
            panic!()
        };
        o.on_reply(Msg::SnapshotAck {
            id,
            imported: true,
            vv: ours.clone(),
        })
        .unwrap()
        .apply(&mut known);
        assert_eq!(known, ours);
        assert_eq!(o.poll(&ours, &known, &floor), Step::Wait);
    }

    #[test]
    fn a_refused_snapshot_waits_for_the_peers_events() {
        let floor = vv(&[("a", 10)]);
        let ours = vv(&[("a", 12)]);
        let (mut o, mut known) = greeted(&ours, vv(&[("a", 1)]));
        assert_eq!(o.poll(&ours, &known, &floor), Step::SendSnapshot);
        let Some(Msg::Snapshot { id, .. }) = o.snapshot(Some(vec![0])) else {
            panic!()
        };
        // Meanwhile the peer wrote an event of its own.
        o.on_reply(Msg::SnapshotAck {
            id,
            imported: false,
            vv: vv(&[("a", 1), ("b", 1)]),
        })
        .unwrap()
        .apply(&mut known);
        assert_eq!(o.poll(&ours, &known, &floor), Step::Wait);
        let ours = vv(&[("a", 12), ("b", 1)]);
        assert_eq!(o.poll(&ours, &known, &floor), Step::SendSnapshot);
    }
}
