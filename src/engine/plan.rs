//! What the reconciler should do for one service now: a pure function of
//! the replicated state, the journal rows, the engine's in-memory back-offs
//! and the time. The reconciler runs it for every service each pass (to find
//! those with work) and again under the service's lock just before acting,
//! so it always acts on fresh state.

use super::journal::Rows;
use super::{retention, schedule};
use crate::model::{CopyState, RpId, ServiceId, ZoneId};
use crate::replica::Service;
use std::collections::{HashMap, HashSet};

/// A delay that doubles on every failure, up to a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Not before this time (Unix ms).
    pub at_ms: u64,
    pub delay_ms: u64,
}

impl Backoff {
    /// The first wait.
    pub fn start(now_ms: u64, initial_ms: u64) -> Self {
        Backoff {
            at_ms: now_ms.saturating_add(initial_ms),
            delay_ms: initial_ms,
        }
    }

    /// The next wait after `prev` (or the first one).
    pub fn next(prev: Option<Backoff>, now_ms: u64, initial_ms: u64, max_ms: u64) -> Self {
        let delay_ms = prev
            .map(|b| b.delay_ms.saturating_mul(2))
            .unwrap_or(initial_ms)
            .clamp(1, max_ms.max(1));
        Backoff {
            at_ms: now_ms.saturating_add(delay_ms),
            delay_ms,
        }
    }

    /// Whether the wait is over at `now_ms`. A wait that was set in what is
    /// now the future (the clock jumped back) is over too: otherwise a jump
    /// back of an hour would stall copies and retries for an hour.
    pub fn due(b: Option<&Backoff>, now_ms: u64) -> bool {
        b.is_none_or(|b| b.at_ms <= now_ms || b.at_ms.saturating_sub(b.delay_ms) > now_ms)
    }
}

/// What the engine remembers between passes without writing it down. Lost
/// on restart, which only means some checks are made once more.
#[derive(Debug, Default)]
pub struct Memory {
    /// Services being worked on now (one task per service at a time).
    pub in_flight: HashSet<ServiceId>,
    /// A service whose last work failed waits before the next try.
    pub retry: HashMap<ServiceId, Backoff>,
    /// When to look at an incoming copy again.
    pub polls: HashMap<(ServiceId, RpId), Backoff>,
    /// When to try again to copy an RP its origin has not exported (yet).
    pub pulls: HashMap<(ServiceId, RpId), Backoff>,
    /// When to look again at volumes an RP's deletion waits on.
    pub dep_checks: HashMap<(ServiceId, RpId), Backoff>,
    /// Own RPs exported to a recovery zone named after they were taken.
    pub exported: HashSet<(ServiceId, RpId, ZoneId)>,
    /// The last permanent error of each service, until its work succeeds.
    pub last_error: HashMap<ServiceId, String>,
    /// A permanent error met by a step that still went through (an RP that
    /// could not be exported): shown once the service's work is over.
    pub soft_errors: HashMap<ServiceId, String>,
}

/// One service's work, in the order the reconciler does it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Work {
    /// A failover or migration left volumes half made (a crash): undo.
    pub resume_vol: bool,
    /// An RP was being taken when the engine stopped: finish it.
    pub resume_take: bool,
    /// Copies were being started when the engine stopped: finish them.
    pub resume_pulls: Vec<RpId>,
    /// This zone is the only active one and protects towards itself: turn
    /// replication around, towards this zone.
    pub reverse_to: Option<ZoneId>,
    /// A scheduled RP is due.
    pub take: bool,
    /// Own RPs to export to a recovery zone named after they were taken.
    pub exports: Vec<RpId>,
    /// RPs of other zones to copy here.
    pub pulls: Vec<RpId>,
    /// Incoming copies to look at.
    pub polls: Vec<RpId>,
    /// Copies retention deletes.
    pub deletes: Vec<RpId>,
    /// RPs retention would delete but volumes may still depend on.
    pub dep_checks: Vec<RpId>,
    /// Own RPs with no copy left anywhere, to forget.
    pub purges: Vec<RpId>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        *self == Work::default()
    }
}

/// The work `zone` has for `service` at `now_ms`.
pub fn plan_service(s: &Service, zone: &ZoneId, now_ms: u64, rows: &Rows, mem: &Memory) -> Work {
    let id = &s.id;
    let mut w = Work {
        resume_vol: rows.vol.contains(id),
        resume_take: rows.take.contains(id),
        ..Work::default()
    };
    // A pull intent stays while its copy is here (transferring or
    // complete); it needs work when the copy is not recorded yet, when the
    // copy was recorded gone, or when the RP itself was purged (then what
    // the intent names is deleted).
    w.resume_pulls = rows
        .pull
        .iter()
        .filter(|(sid, rp)| {
            sid == id
                && !s.rps.get(rp).is_some_and(|r| {
                    matches!(
                        r.copy_state(zone),
                        Some(CopyState::Transferring | CopyState::Complete)
                    )
                })
                && Backoff::due(mem.pulls.get(&(id.clone(), rp.clone())), now_ms)
        })
        .map(|(_, rp)| rp.clone())
        .collect();
    let depended = rows.depended(id);
    w.purges = retention::purgeable(s, zone);
    if s.is_deleted() {
        w.deletes = retention::deletions(s, zone, &depended, now_ms);
        w.dep_checks = dep_checks(s, zone, now_ms, rows, mem);
        return w;
    }
    let Some(policy) = s.policy.winner() else {
        return w;
    };
    let rz = &policy.value.recovery_zone;
    let active = s.active_zones();
    let active_here = active.contains(zone);

    if active.len() == 1 && active_here && rz == zone {
        w.reverse_to = previous_zone(s, zone);
    }
    let paused = s.pause().is_some();
    if active_here && !w.resume_take && !paused {
        // The newest RP this zone took, in the one RP order (by its seq,
        // not by the largest `taken`: one RP stamped while the clock ran
        // ahead must not stop the schedule until the clock catches up).
        let last_taken = s
            .newest_rp(|rp| &rp.origin == zone)
            .map(|rp| rp.taken.wall_ms);
        let slot_since = s
            .slots
            .get(zone)
            .and_then(|r| r.winner())
            .map(|v| v.hlc.wall_ms)
            .unwrap_or(0);
        let since = slot_since.max(policy.hlc.wall_ms);
        let due = schedule::next_due_ms(id, policy.value.interval_s, last_taken, since, now_ms);
        w.take = now_ms >= due || resumed_since(s, zone, now_ms);
    }
    if rz != zone {
        w.exports = s
            .rps
            .values()
            .filter(|rp| {
                &rp.origin == zone
                    && rp.is_complete_in(zone)
                    && rp.copy_state(rz).is_none()
                    && rp.taken.wall_ms < policy.hlc.wall_ms
                    && !mem
                        .exported
                        .contains(&(id.clone(), rp.id.clone(), rz.clone()))
            })
            .map(|rp| rp.id.clone())
            .collect();
    }
    if rz == zone {
        // Which RPs are worth having is decided over all that could be
        // copied, those already under way included, so that an old RP is
        // not fetched just because newer ones are in progress.
        let candidates: Vec<RpId> = s
            .rps
            .values()
            .filter(|rp| {
                &rp.origin != zone && rp.is_complete_in(&rp.origin) && rp.copy_state(zone).is_none()
            })
            .map(|rp| rp.id.clone())
            .collect();
        if !candidates.is_empty() {
            w.pulls = retention::worth_copying(s, zone, &depended, &candidates, now_ms)
                .into_iter()
                .filter(|rp| {
                    let key = (id.clone(), rp.clone());
                    !rows.pull.contains(&key) && Backoff::due(mem.pulls.get(&key), now_ms)
                })
                .collect();
        }
    }
    w.polls = s
        .rps
        .values()
        .filter(|rp| {
            rp.copy_state(zone) == Some(&CopyState::Transferring)
                && Backoff::due(mem.polls.get(&(id.clone(), rp.id.clone())), now_ms)
        })
        .map(|rp| rp.id.clone())
        .collect();
    w.deletes = retention::deletions(s, zone, &depended, now_ms);
    w.dep_checks = dep_checks(s, zone, now_ms, rows, mem);
    w
}

/// Protection of the service was resumed after the newest RP this zone
/// took (or it has none): one is due at once. A resume stamped beyond the
/// allowed drift ahead cannot be placed and does not count (an RP taken
/// now would never be after it); local stamps follow every stamp within
/// the drift, so the RP taken at the resume is after it.
fn resumed_since(s: &Service, zone: &ZoneId, now_ms: u64) -> bool {
    let Some(resumed) = s.resumed_at() else {
        return false;
    };
    if crate::replica::age_ms(resumed.wall_ms, now_ms).is_none() {
        return false;
    }
    s.newest_rp(|rp| &rp.origin == zone)
        .is_none_or(|rp| rp.taken < resumed)
}

/// RPs retention would delete here but for volumes made from them: the
/// ones whose volumes are due to be looked up again.
fn dep_checks(s: &Service, zone: &ZoneId, now_ms: u64, rows: &Rows, mem: &Memory) -> Vec<RpId> {
    let id = &s.id;
    let depended = rows.depended(id);
    let dep_only: std::collections::BTreeSet<RpId> = rows
        .dep
        .keys()
        .filter(|(sid, _)| sid == id)
        .map(|(_, rp)| rp.clone())
        .collect();
    if !dep_only.is_empty() {
        let without = depended
            .iter()
            .filter(|rp| !dep_only.contains(*rp))
            .cloned()
            .collect();
        return retention::deletions(s, zone, &without, now_ms)
            .into_iter()
            .filter(|rp| {
                dep_only.contains(rp)
                    && Backoff::due(mem.dep_checks.get(&(id.clone(), rp.clone())), now_ms)
            })
            .collect();
    }
    Vec::new()
}

/// The zone that protected the service before this one took over: where
/// the newest RP not taken here came from, else any other zone with a VM.
pub fn previous_zone(s: &Service, zone: &ZoneId) -> Option<ZoneId> {
    s.newest_rp(|rp| &rp.origin != zone)
        .map(|rp| rp.origin.clone())
        .or_else(|| {
            s.slots
                .iter()
                .find(|(z, r)| *z != zone && r.get().is_some_and(|v| v.is_some()))
                .map(|(z, _)| z.clone())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Policy, Retention, RpDisk, VmSlot};
    use crate::replica::{Directory, Hlc, Op, Received, Replica};

    const T0: u64 = 1_700_000_000_000;

    fn zone(s: &str) -> ZoneId {
        ZoneId::new(s).unwrap()
    }

    /// Zone a protects `vm` towards b and took RPs at `taken` (ms after T0);
    /// b has received all of it.
    fn two_zones(taken: &[u64]) -> (Replica, Replica, ServiceId) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let dir = Directory::new(
            [
                (zone("a"), key.verifying_key()),
                (zone("b"), key.verifying_key()),
            ]
            .into(),
        );
        let mut a = Replica::new(zone("a"), Some(key.clone()), dir.clone());
        let mut b = Replica::new(zone("b"), Some(key), dir);
        let id = ServiceId::new("vm").unwrap();
        let keep = |n| Retention {
            keep_last: n,
            keep_for_s: 0,
        };
        let mut events = vec![a
            .local_write(
                Op::CreateService {
                    service: id.clone(),
                    policy: Policy {
                        interval_s: 60,
                        recovery_zone: zone("b"),
                        local_retention: keep(5),
                        remote_retention: keep(2),
                    },
                    metadata: String::new(),
                    slot: VmSlot {
                        cmp_vm_id: "x".into(),
                        disks: vec!["d".into()],
                        active: true,
                    },
                },
                "t",
                T0,
            )
            .unwrap()];
        for t in taken {
            let rp = RpId::new(format!("a.{t}")).unwrap();
            events.push(
                a.local_write(
                    Op::CreateRp {
                        service: id.clone(),
                        disks: vec![RpDisk {
                            volume: "d".into(),
                            snapshot: crate::model::names::rp_snapshot_name(&id, &rp, 0),
                            global_id: format!("x.y.{t}"),
                        }],
                        rp,
                        metadata: String::new(),
                        taken: Hlc {
                            wall_ms: T0 + t,
                            logical: 0,
                        },
                    },
                    "t",
                    T0 + t,
                )
                .unwrap(),
            );
        }
        for ev in events {
            assert!(matches!(b.receive(ev, T0), Received::Applied(_)));
        }
        (a, b, id)
    }

    #[test]
    fn the_recovery_zone_copies_only_what_retention_would_keep() {
        let (_, b, id) = two_zones(&[1_000, 2_000, 3_000]);
        let s = b.service(&id).unwrap();
        let w = plan_service(
            s,
            &zone("b"),
            T0 + 4_000,
            &Rows::default(),
            &Memory::default(),
        );
        let want: Vec<RpId> = ["a.2000", "a.3000"]
            .iter()
            .map(|r| RpId::new(*r).unwrap())
            .collect();
        assert_eq!(w.pulls, want);
        assert!(!w.take && w.reverse_to.is_none() && w.deletes.is_empty());
        // A pull that is journalled (or backing off) is not planned again.
        let mut rows = Rows::default();
        rows.pull.insert((id.clone(), want[0].clone()));
        let mut mem = Memory::default();
        mem.pulls.insert(
            (id.clone(), want[1].clone()),
            Backoff::start(T0 + 4_000, 100),
        );
        let w = plan_service(s, &zone("b"), T0 + 4_000, &rows, &mem);
        assert!(w.pulls.is_empty());
        assert_eq!(w.resume_pulls, vec![want[0].clone()]);
    }

    #[test]
    fn the_active_zone_takes_an_rp_when_its_slot_is_due() {
        let (a, _, id) = two_zones(&[]);
        let s = a.service(&id).unwrap();
        let due = schedule::next_due_ms(&id, 60, None, T0, T0);
        let plan = |now| plan_service(s, &zone("a"), now, &Rows::default(), &Memory::default());
        assert!(!plan(due - 1).take);
        assert!(plan(due).take);
        // Not while an RP of it is half taken: that one is finished first.
        let mut rows = Rows::default();
        rows.take.insert(id.clone());
        let w = plan_service(s, &zone("a"), due, &rows, &Memory::default());
        assert!(w.resume_take && !w.take);
    }

    #[test]
    fn the_sole_active_zone_that_protects_to_itself_reverses_replication() {
        let (_, mut b, id) = two_zones(&[1_000]);
        for (z, active) in [("b", true), ("a", false)] {
            b.local_write(
                Op::SetSlot {
                    service: id.clone(),
                    zone: zone(z),
                    slot: Some(VmSlot {
                        cmp_vm_id: "x".into(),
                        disks: vec!["d".into()],
                        active,
                    }),
                },
                "t",
                T0 + 5_000,
            )
            .unwrap();
        }
        let s = b.service(&id).unwrap();
        let w = plan_service(
            s,
            &zone("b"),
            T0 + 6_000,
            &Rows::default(),
            &Memory::default(),
        );
        assert_eq!(w.reverse_to, Some(zone("a")));
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let b = Backoff::next(None, 1000, 100, 350);
        assert_eq!(
            b,
            Backoff {
                at_ms: 1100,
                delay_ms: 100
            }
        );
        let b = Backoff::next(Some(b), 2000, 100, 350);
        assert_eq!(b.delay_ms, 200);
        let b = Backoff::next(Some(b), 2000, 100, 350);
        assert_eq!(b.delay_ms, 350);
        assert!(!Backoff::due(Some(&b), 2349));
        assert!(Backoff::due(Some(&b), 2350));
        assert!(Backoff::due(None, 0));
        // Set at 2000 for 350 ms: a clock that went back before 2000 ends it.
        assert!(Backoff::due(Some(&b), 1999));
    }
}
