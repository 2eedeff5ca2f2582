//! The materialised state: what every node holds after applying events.
//! Equal sets of applied events give equal `State` values, byte for byte.

use super::{Dot, Event, Hlc, Mvr, Op, VersionVector, Versioned};
use crate::model::message::{DEFAULT_MESSAGE_TTL_MS, TEXT_KIND};
use crate::model::{CopyState, MessageId, Pause, Policy, RpDisk, RpId, ServiceId, VmSlot, ZoneId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A DR service as replicated: every mutable field is a register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    /// The dots of the events that created it (more than one only if two
    /// zones created the same id concurrently).
    pub created: Vec<Dot>,
    pub policy: Mvr<Policy>,
    pub metadata: Mvr<String>,
    /// Per zone, the VM that stands for the service there.
    pub slots: BTreeMap<ZoneId, Mvr<Option<VmSlot>>>,
    pub deleted: Mvr<bool>,
    pub rps: BTreeMap<RpId, RecoveryPoint>,
    /// Protection paused (`Some`) or resumed (`None`); see [`Service::pause`].
    pub paused: Mvr<Option<Pause>>,
}

/// A recovery point: one group snapshot, with a copy state per zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPoint {
    pub id: RpId,
    /// The zone that took it: the only writer of the RP itself.
    pub origin: ZoneId,
    pub created: Dot,
    /// When the group snapshot was taken.
    pub taken: Hlc,
    pub disks: Vec<RpDisk>,
    /// The service's VM metadata at the time of the snapshot.
    pub metadata: String,
    /// Per zone, that zone's copy; each written by its own zone only.
    pub copies: BTreeMap<ZoneId, Versioned<CopyState>>,
    pub hold: Mvr<bool>,
}

impl RecoveryPoint {
    pub fn copy_state(&self, zone: &ZoneId) -> Option<&CopyState> {
        self.copies.get(zone).map(|v| &v.value)
    }

    pub fn is_complete_in(&self, zone: &ZoneId) -> bool {
        self.copy_state(zone).is_some_and(CopyState::is_complete)
    }

    /// On hold if any current value says so: a hold is never lost to a
    /// concurrent release.
    pub fn is_held(&self) -> bool {
        self.hold.values().iter().any(|v| v.value)
    }
}

/// A control message between zones, carried as events: its sending, then
/// per addressee its delivery (the addressee's node has it) and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub dot: Dot,
    pub from: ZoneId,
    /// The addressees.
    pub to: Vec<ZoneId>,
    /// Sent to `"*"`: every zone the sender knew of.
    pub broadcast: bool,
    pub actor: String,
    pub sent: Hlc,
    pub kind: String,
    pub service: Option<ServiceId>,
    /// JSON text.
    pub body: String,
    /// Unix ms after which an unanswered message is expired and no answer
    /// is taken.
    pub deadline_ms: u64,
    /// Per addressee, its node's delivery.
    pub delivered: BTreeMap<ZoneId, Step>,
    /// Per addressee, its answer.
    pub answers: BTreeMap<ZoneId, Answered>,
}

/// One step of a message in one zone: the event that wrote it, when, and
/// who asked (a token's name, or `node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub dot: Dot,
    pub at: Hlc,
    pub by: String,
}

/// An addressee's answer to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub step: Step,
    /// JSON text.
    pub result: String,
}

/// Where a message stands for one addressee, or for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageState {
    Sent,
    Delivered,
    Acked,
    Expired,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Acked => "acked",
            MessageState::Expired => "expired",
        }
    }
}

impl Message {
    pub fn is_for(&self, zone: &ZoneId) -> bool {
        self.to.contains(zone)
    }

    /// Where it stands for addressee `zone` at `now_ms`: an answer wins
    /// over the deadline (it was stamped before it: later ones are refused).
    pub fn state_for(&self, zone: &ZoneId, now_ms: u64) -> MessageState {
        if self.answers.contains_key(zone) {
            MessageState::Acked
        } else if now_ms > self.deadline_ms {
            MessageState::Expired
        } else if self.delivered.contains_key(zone) {
            MessageState::Delivered
        } else {
            MessageState::Sent
        }
    }

    /// Where it stands as a whole: acked once every addressee answered,
    /// expired once the deadline passed with any still silent, else
    /// delivered once every addressee has it.
    pub fn state(&self, now_ms: u64) -> MessageState {
        let states: Vec<MessageState> = self.to.iter().map(|z| self.state_for(z, now_ms)).collect();
        if states.iter().all(|s| *s == MessageState::Acked) {
            MessageState::Acked
        } else if now_ms > self.deadline_ms {
            MessageState::Expired
        } else if states.iter().all(|s| *s >= MessageState::Delivered) {
            MessageState::Delivered
        } else {
            MessageState::Sent
        }
    }

    /// When it was done (its last answer, or its deadline), if it is.
    pub fn done_at_ms(&self, now_ms: u64) -> Option<u64> {
        match self.state(now_ms) {
            MessageState::Acked => self.answers.values().map(|a| a.step.at.wall_ms).max(),
            MessageState::Expired => Some(self.deadline_ms),
            _ => None,
        }
    }
}

impl Service {
    /// A service with no fields written yet (events fill it in).
    pub fn new(id: ServiceId) -> Self {
        Service {
            id,
            created: Vec::new(),
            policy: Mvr::default(),
            metadata: Mvr::default(),
            slots: BTreeMap::new(),
            deleted: Mvr::default(),
            rps: BTreeMap::new(),
            paused: Mvr::default(),
        }
    }

    /// True if one of the events that created the service is covered by `deps`:
    /// the writer had seen the service.
    pub fn seen_by(&self, deps: &VersionVector) -> bool {
        self.created.iter().any(|d| deps.covers(d))
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.get().copied().unwrap_or(false)
    }

    /// The pause in force, if protection is paused: only while every
    /// current value says so, so a resume concurrent with a pause leaves
    /// the service protected (the pause's values stay, shown).
    pub fn pause(&self) -> Option<&Versioned<Option<Pause>>> {
        let values = self.paused.values();
        if values.is_empty() || values.iter().any(|v| v.value.is_none()) {
            return None;
        }
        self.paused.winner()
    }

    /// When protection was last resumed, if it was paused before: the
    /// write that ended the pause, while no pause is in force.
    pub fn resumed_at(&self) -> Option<Hlc> {
        if self.pause().is_some() {
            return None;
        }
        self.paused
            .values()
            .iter()
            .filter(|v| v.value.is_none())
            .map(|v| v.hlc)
            .max()
    }

    /// The VM slot a zone reads for `zone`.
    pub fn slot(&self, zone: &ZoneId) -> Option<&VmSlot> {
        self.slots
            .get(zone)
            .and_then(|r| r.get())
            .and_then(|s| s.as_ref())
    }

    /// Zones where the service has an active VM. A zone counts if any of its
    /// slot's current values is active, so a concurrent write cannot hide one.
    pub fn active_zones(&self) -> Vec<ZoneId> {
        self.slots
            .iter()
            .filter(|(_, r)| {
                r.values()
                    .iter()
                    .any(|v| v.value.as_ref().is_some_and(|s| s.active))
            })
            .map(|(z, _)| z.clone())
            .collect()
    }

    /// The service's RPs from oldest to newest: **the one RP order** that
    /// every "newest RP" question (failover's pick, retention's ranks, RPO,
    /// the schedule, the API's listing) goes by.
    ///
    /// An origin's RPs are ordered by the seq of their creation event
    /// (`created`): its events are totally ordered, so that is the order in
    /// which it really took them, whatever its wall clock said. Across
    /// origins there is no causal order in the state, so RPs are ordered by
    /// `taken`, made monotone per origin (each RP counts as taken no earlier
    /// than any earlier RP of its origin), then by origin and seq. A clock
    /// that jumped back can therefore never put an origin's later RP before
    /// its earlier ones, and the order is total and the same on every node
    /// holding the same state.
    pub fn rps_in_order(&self) -> Vec<&RecoveryPoint> {
        let mut by_origin: Vec<&RecoveryPoint> = self.rps.values().collect();
        by_origin.sort_by(|a, b| (&a.origin, a.created.seq).cmp(&(&b.origin, b.created.seq)));
        let mut keyed: Vec<(Hlc, &RecoveryPoint)> = Vec::with_capacity(by_origin.len());
        let mut running: Option<(&ZoneId, Hlc)> = None;
        for rp in by_origin {
            let floor = match running {
                Some((origin, t)) if origin == &rp.origin => t.max(rp.taken),
                _ => rp.taken,
            };
            running = Some((&rp.origin, floor));
            keyed.push((floor, rp));
        }
        keyed.sort_by(|(ta, a), (tb, b)| {
            (ta, &a.origin, a.created.seq).cmp(&(tb, &b.origin, b.created.seq))
        });
        keyed.into_iter().map(|(_, rp)| rp).collect()
    }

    /// The newest RP (in [`Service::rps_in_order`]) that `pred` accepts.
    pub fn newest_rp(&self, pred: impl Fn(&RecoveryPoint) -> bool) -> Option<&RecoveryPoint> {
        self.rps_in_order().into_iter().rev().find(|rp| pred(rp))
    }

    /// The newest RP whose copy in `zone` is complete: what a failover to
    /// `zone` uses and retention there never deletes.
    pub fn newest_complete_rp(&self, zone: &ZoneId) -> Option<&RecoveryPoint> {
        self.newest_rp(|rp| rp.is_complete_in(zone))
    }
}

/// Everything replicated, keyed for deterministic encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub services: BTreeMap<ServiceId, Service>,
    pub messages: BTreeMap<MessageId, Message>,
}

/// What applying one event changed, so the store can write just that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    Service(ServiceId),
    Message(MessageId),
    /// Messages forgotten (their rows go).
    Messages(Vec<MessageId>),
}

impl State {
    /// Applies an event that `rules::authorize` accepted. Pure field writes:
    /// every decision about whether the event may apply was made before.
    /// Answers the row it changed (`None` for an `Op::Record`, which
    /// changes nothing: it is there for the audit history only).
    pub(super) fn apply(&mut self, ev: &Event) -> Option<Touched> {
        if matches!(ev.op, Op::Record { .. }) {
            return None;
        }
        Some(self.apply_write(ev))
    }

    fn apply_write(&mut self, ev: &Event) -> Touched {
        let dot = ev.dot();
        let deps = &ev.deps;
        let hlc = ev.hlc;
        match &ev.op {
            Op::CreateService {
                service,
                policy,
                metadata,
                slot,
            } => {
                let s = self
                    .services
                    .entry(service.clone())
                    .or_insert_with(|| Service::new(service.clone()));
                if let Err(at) = s.created.binary_search(&dot) {
                    s.created.insert(at, dot.clone());
                }
                s.policy.write(deps, dot.clone(), hlc, policy.clone());
                s.metadata.write(deps, dot.clone(), hlc, metadata.clone());
                s.slots.entry(ev.origin.clone()).or_default().write(
                    deps,
                    dot,
                    hlc,
                    Some(slot.clone()),
                );
                Touched::Service(service.clone())
            }
            Op::SetPolicy { service, policy } => {
                self.with_service(service, |s| s.policy.write(deps, dot, hlc, policy.clone()))
            }
            Op::SetMetadata { service, metadata } => self.with_service(service, |s| {
                s.metadata.write(deps, dot, hlc, metadata.clone())
            }),
            Op::SetSlot {
                service,
                zone,
                slot,
            } => self.with_service(service, |s| {
                s.slots
                    .entry(zone.clone())
                    .or_default()
                    .write(deps, dot, hlc, slot.clone())
            }),
            Op::DeleteService { service } => {
                self.with_service(service, |s| s.deleted.write(deps, dot, hlc, true))
            }
            Op::CreateRp {
                service,
                rp,
                disks,
                metadata,
                taken,
            } => self.with_service(service, |s| {
                let mut copies = BTreeMap::new();
                copies.insert(
                    ev.origin.clone(),
                    Versioned {
                        dot: dot.clone(),
                        hlc,
                        value: CopyState::Complete,
                    },
                );
                s.rps.insert(
                    rp.clone(),
                    RecoveryPoint {
                        id: rp.clone(),
                        origin: ev.origin.clone(),
                        created: dot,
                        taken: *taken,
                        disks: disks.clone(),
                        metadata: metadata.clone(),
                        copies,
                        hold: Mvr::default(),
                    },
                );
            }),
            Op::SetCopy { service, rp, state } => self.with_service(service, |s| {
                if let Some(r) = s.rps.get_mut(rp).filter(|r| deps.covers(&r.created)) {
                    r.copies.insert(
                        ev.origin.clone(),
                        Versioned {
                            dot,
                            hlc,
                            value: state.clone(),
                        },
                    );
                }
            }),
            Op::SetHold { service, rp, hold } => self.with_service(service, |s| {
                if let Some(r) = s.rps.get_mut(rp).filter(|r| deps.covers(&r.created)) {
                    r.hold.write(deps, dot, hlc, *hold);
                }
            }),
            Op::PurgeRps { service, rps } => self.with_service(service, |s| {
                for rp in rps {
                    s.rps.remove(rp);
                }
            }),
            Op::SetPaused { service, pause } => {
                self.with_service(service, |s| s.paused.write(deps, dot, hlc, pause.clone()))
            }
            Op::SendMessage { to, body } => {
                // The first format: free text to one zone, a day to answer.
                let text = serde_json::to_string(body).unwrap_or_default();
                self.add_message(
                    ev,
                    &dot,
                    hlc,
                    vec![to.clone()],
                    false,
                    TEXT_KIND,
                    None,
                    text,
                    DEFAULT_MESSAGE_TTL_MS,
                )
            }
            Op::Send {
                to,
                broadcast,
                kind,
                service,
                body,
                ttl_ms,
            } => self.add_message(
                ev,
                &dot,
                hlc,
                to.clone(),
                *broadcast,
                kind,
                service.clone(),
                body.clone(),
                *ttl_ms,
            ),
            Op::AckMessage { message } => self.answer(ev, &dot, hlc, message, "null".into()),
            Op::Answer { message, result } => self.answer(ev, &dot, hlc, message, result.clone()),
            Op::Deliver { message } => {
                if let Some(m) = self.messages.get_mut(message) {
                    m.delivered.entry(ev.origin.clone()).or_insert(Step {
                        dot,
                        at: hlc,
                        by: ev.actor.clone(),
                    });
                }
                Touched::Message(message.clone())
            }
            Op::PruneMessages { messages } => {
                for m in messages {
                    self.messages.remove(m);
                }
                Touched::Messages(messages.clone())
            }
            Op::Record { service, .. } => Touched::Service(service.clone()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_message(
        &mut self,
        ev: &Event,
        dot: &Dot,
        hlc: Hlc,
        to: Vec<ZoneId>,
        broadcast: bool,
        kind: &str,
        service: Option<ServiceId>,
        body: String,
        ttl_ms: u64,
    ) -> Touched {
        let id = message_id(dot);
        self.messages.insert(
            id.clone(),
            Message {
                id: id.clone(),
                dot: dot.clone(),
                from: ev.origin.clone(),
                to,
                broadcast,
                actor: ev.actor.clone(),
                sent: hlc,
                kind: kind.to_string(),
                service,
                body,
                deadline_ms: hlc.wall_ms.saturating_add(ttl_ms),
                delivered: BTreeMap::new(),
                answers: BTreeMap::new(),
            },
        );
        Touched::Message(id)
    }

    /// The origin's answer; its first one stands (the rules refuse a
    /// second from the same zone, and late ones).
    fn answer(
        &mut self,
        ev: &Event,
        dot: &Dot,
        hlc: Hlc,
        id: &MessageId,
        result: String,
    ) -> Touched {
        if let Some(m) = self.messages.get_mut(id) {
            m.answers.entry(ev.origin.clone()).or_insert(Answered {
                step: Step {
                    dot: dot.clone(),
                    at: hlc,
                    by: ev.actor.clone(),
                },
                result,
            });
            // An answer is also a delivery.
            m.delivered.entry(ev.origin.clone()).or_insert(Step {
                dot: dot.clone(),
                at: hlc,
                by: ev.actor.clone(),
            });
        }
        Touched::Message(id.clone())
    }

    fn with_service(&mut self, id: &ServiceId, f: impl FnOnce(&mut Service)) -> Touched {
        if let Some(s) = self.services.get_mut(id) {
            f(s);
        }
        Touched::Service(id.clone())
    }
}

/// The event that sent message `id` (ids are `origin.seq`).
pub fn message_dot(id: &MessageId) -> Option<Dot> {
    let (origin, seq) = id.as_str().rsplit_once('.')?;
    Some(Dot {
        origin: origin.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

/// The id of the message sent by the event `dot`.
pub fn message_id(dot: &Dot) -> MessageId {
    // A zone id and a number always make a valid message id.
    MessageId::new(format!("{}.{}", dot.origin, dot.seq))
        .unwrap_or_else(|_| unreachable!("zone ids are valid message id characters"))
}
