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
//!   we have every event the peer has (else it would refuse it); a snapshot
//!   goes in parts of at most a batch's size, each acknowledged;
//! - every request gets exactly one answer, so answers never go astray;
//! - an answer that shows no progress stalls the link until the next
//!   anti-entropy tick, so bad data can never make two nodes spin.

use super::wire::Msg;
use crate::replica::VersionVector;
use std::collections::VecDeque;

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
    /// Send this message (the next part of a snapshot), then wait.
    Send(Msg),
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
    /// Snapshot `id` is going out in parts: `sent` parts are out, `rest`
    /// wait; `waiting` while the last part sent is unanswered.
    Snapshot {
        id: u64,
        sent: u32,
        parts: u32,
        rest: VecDeque<Vec<u8>>,
        waiting: bool,
    },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Start => "starting",
            Phase::Greeting => "greeting",
            Phase::Idle => "idle",
            Phase::AwaitingAck { .. } => "awaiting an ack",
            Phase::Snapshot { .. } => "sending a snapshot",
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
            Phase::Greeting | Phase::AwaitingAck { .. } | Phase::Snapshot { waiting: true, .. }
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
        match &mut self.phase {
            Phase::Start => {
                self.phase = Phase::Greeting;
                return Step::Greet;
            }
            Phase::Snapshot {
                id,
                sent,
                parts,
                rest,
                waiting,
            } if !*waiting => {
                let Some(bytes) = rest.pop_front() else {
                    // Every part went out and was answered without the
                    // final ack: cannot happen, but never wait forever.
                    self.phase = Phase::Idle;
                    self.stalled = true;
                    return Step::Wait;
                };
                *waiting = true;
                let part = *sent;
                *sent = sent.saturating_add(1);
                return Step::Send(Msg::Snapshot {
                    id: *id,
                    part,
                    parts: *parts,
                    bytes,
                });
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
        self.next_id = self.next_id.wrapping_add(1);
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

    /// The snapshot exported for [`Step::SendSnapshot`], encoded, to be
    /// sent in parts of at most `part_bytes`; `None` means it could not be
    /// exported (too large): wait for the next tick. The parts then come out
    /// of [`Outbound::poll`] as [`Step::Send`], one per answer.
    pub fn snapshot(&mut self, snapshot: Option<Vec<u8>>, part_bytes: usize) {
        debug_assert_eq!(self.phase, Phase::Idle, "snapshot sent while busy");
        let Some(snapshot) = snapshot else {
            self.stalled = true;
            return;
        };
        let rest: VecDeque<Vec<u8>> = if snapshot.is_empty() {
            VecDeque::from([Vec::new()])
        } else {
            snapshot
                .chunks(part_bytes.max(1))
                .map(<[u8]>::to_vec)
                .collect()
        };
        let id = self.take_id();
        self.phase = Phase::Snapshot {
            id,
            sent: 0,
            parts: rest.len() as u32,
            rest,
            waiting: false,
        };
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
                Phase::Snapshot {
                    id,
                    sent,
                    rest,
                    waiting: true,
                    ..
                },
                Msg::SnapshotPartAck { id: acked, part },
            ) if *id == acked && part.checked_add(1) == Some(*sent) && !rest.is_empty() => {
                if let Phase::Snapshot { waiting, .. } = &mut self.phase {
                    *waiting = false;
                }
                Ok(Known::Merge(VersionVector::new()))
            }
            (
                Phase::Snapshot {
                    id,
                    rest,
                    waiting: true,
                    ..
                },
                Msg::SnapshotAck {
                    id: acked,
                    imported,
                    vv,
                },
            ) if *id == acked && rest.is_empty() => {
                self.phase = Phase::Idle;
                if imported {
                    // The peer's state is now what it answered: the
                    // snapshot merged with what it had.
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

    /// Sends the snapshot `bytes` in parts of `part_bytes`, answering
    /// each part, and returns the parts and the snapshot's id.
    fn send_snapshot(
        o: &mut Outbound,
        ours: &VersionVector,
        known: &VersionVector,
        floor: &VersionVector,
        bytes: Vec<u8>,
        part_bytes: usize,
    ) -> (Vec<Vec<u8>>, u64) {
        o.snapshot(Some(bytes), part_bytes);
        let mut got = Vec::new();
        loop {
            let Step::Send(Msg::Snapshot {
                id,
                part,
                parts,
                bytes,
            }) = o.poll(ours, known, floor)
            else {
                panic!("expected a part")
            };
            assert_eq!(part as usize, got.len());
            // One part at a time.
            assert_eq!(o.poll(ours, known, floor), Step::Wait);
            got.push(bytes);
            if part + 1 == parts {
                return (got, id);
            }
            o.on_reply(Msg::SnapshotPartAck { id, part }).unwrap();
        }
    }

    #[test]
    fn a_part_ack_of_u32_max_is_unexpected_not_an_overflow() {
        let floor = vv(&[("a", 10)]);
        let ours = vv(&[("a", 12)]);
        let (mut o, known) = greeted(&ours, vv(&[("a", 3)]));
        assert_eq!(o.poll(&ours, &known, &floor), Step::SendSnapshot);
        o.snapshot(Some(vec![1, 2, 3]), 1);
        let Step::Send(Msg::Snapshot { id, .. }) = o.poll(&ours, &known, &floor) else {
            panic!("expected a part")
        };
        assert!(o
            .on_reply(Msg::SnapshotPartAck { id, part: u32::MAX })
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
        let (parts, id) = send_snapshot(&mut o, &ours, &known, &floor, vec![1, 2, 3, 4, 5], 2);
        assert_eq!(parts, vec![vec![1, 2], vec![3, 4], vec![5]]);
        // An answer to another snapshot is not this one's.
        assert!(o
            .on_reply(Msg::SnapshotAck {
                id: id + 1,
                imported: true,
                vv: ours.clone(),
            })
            .is_err());
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
        let (_, id) = send_snapshot(&mut o, &ours, &known, &floor, vec![0], 16);
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

    #[test]
    fn a_snapshot_part_dropped_on_the_way_ends_the_snapshot() {
        let floor = vv(&[("a", 10)]);
        let ours = vv(&[("a", 12)]);
        let (mut o, mut known) = greeted(&ours, VersionVector::new());
        assert_eq!(o.poll(&ours, &known, &floor), Step::SendSnapshot);
        o.snapshot(Some(vec![0; 10]), 4);
        assert!(matches!(o.poll(&ours, &known, &floor), Step::Send(_)));
        o.on_reply(Msg::Dropped {
            reason: "too large".into(),
            vv: VersionVector::new(),
        })
        .unwrap()
        .apply(&mut known);
        assert!(!o.awaiting());
        assert_eq!(o.poll(&ours, &known, &floor), Step::Wait);
        // The tick starts over with a Hello.
        assert!(o.on_tick());
    }
}
