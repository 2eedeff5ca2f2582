//! Retention: which copies of a service's recovery points a zone deletes.
//!
//! [`select`] is the one function that decides; everything else (the
//! reconciler's deletions, and the recovery zone's choice of which RPs are
//! worth copying at all) asks it. Pure: the caller passes the time in.
//!
//! Each zone applies retention to its own copies only. RPs the zone took
//! itself are kept by the policy's local retention, copies received from
//! another zone by the remote retention; each is kept while it is among the
//! newest `keep_last` of its group or younger than `keep_for_s`. Whatever
//! the policy says, a zone never deletes its copy of
//! - the newest RP complete in the recovery zone (the one a failover would use),
//! - an RP on hold,
//! - an RP that volumes here were created from and still depend on,
//! - an RP it took that is still on its way to the recovery zone,
//! - a copy still being received (unless the service is deleted).
//!
//! Once no copy of an RP is left in any zone, its origin purges it from the
//! replicated state ([`purgeable`]).
//!
//! **Retention freeze.** Copies received from another zone stop ageing while
//! no newer one arrives: their ages are judged at [`ageing_stopped_at`], one
//! policy interval after the newest complete copy here was taken, once that
//! lies in the past. While the zone that takes the RPs is unreachable (its
//! node, its cluster or the link between the clusters is down) or keeps
//! failing to take or send them, no new copy completes, so nothing received
//! here ages out: a long outage never leaves the recovery zone with fewer
//! good points than it had when the outage began, whatever `keep_for_s`
//! says. `keep_last` still counts, so once copies arrive again the newest
//! ones push the oldest out as before. Deferring a deletion is always safe;
//! so is the short freeze while the next copy is on its way.
//!
//! **Pause.** While a service's protection is paused, no zone deletes any
//! of its copies: existing points are kept until it is resumed (or
//! deleted).
//!
//! "Newest" is the one RP order ([`Service::rps_in_order`]: an origin's RPs
//! by the seq of their creation), never the raw `taken` stamp, so an RP
//! stamped while a clock ran ahead cannot push the really newest RPs out of
//! `keep_last`. "Younger than `keep_for_s`" is the age [`age_ms`] believes:
//! a stamp beyond the allowed drift ahead has no age, so `keep_for_s` does
//! not keep it (only its rank, holds and the rules above do).

use crate::model::{CopyState, Policy, RpId, ZoneId};
use crate::replica::{age_ms, RecoveryPoint, Service, MAX_RPS_PER_PURGE};
use std::collections::BTreeSet;

/// One RP as retention sees it in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rp: RpId,
    /// Place in the one RP order: higher is newer.
    pub rank: usize,
    pub taken_ms: u64,
    /// Taken by this zone (local retention) rather than copied here (remote).
    pub own: bool,
    /// This zone's copy.
    pub state: CopyState,
    /// Kept whatever the policy says (see the module documentation).
    pub protected: bool,
}

impl Entry {
    fn present(&self) -> bool {
        matches!(self.state, CopyState::Complete | CopyState::Transferring)
    }
}

/// The RPs whose copy in this zone retention deletes now. `policy` is the
/// service's policy (none: keep everything); a deleted service keeps only
/// protected copies.
pub fn select(
    entries: &[Entry],
    policy: Option<&Policy>,
    service_deleted: bool,
    now_ms: u64,
) -> Vec<RpId> {
    let mut out = Vec::new();
    if service_deleted {
        out.extend(
            entries
                .iter()
                .filter(|e| e.present() && !e.protected)
                .map(|e| e.rp.clone()),
        );
        return out;
    }
    let Some(policy) = policy else {
        return out;
    };
    for own in [true, false] {
        let rule = if own {
            &policy.local_retention
        } else {
            &policy.remote_retention
        };
        let group = complete_newest_first(entries, own);
        let keep_for_ms = rule.keep_for_s.saturating_mul(1000);
        let judged_at = if own {
            now_ms
        } else {
            ageing_stopped_at(&group, policy, now_ms).unwrap_or(now_ms)
        };
        for (i, e) in group.into_iter().enumerate() {
            let recent = age_ms(e.taken_ms, judged_at).is_some_and(|age| age < keep_for_ms);
            if i < rule.keep_last as usize || recent || e.protected {
                continue;
            }
            out.push(e.rp.clone());
        }
    }
    out
}

/// The complete copies of `entries` taken here (`own`) or received,
/// newest first in the one RP order.
fn complete_newest_first(entries: &[Entry], own: bool) -> Vec<&Entry> {
    let mut group: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.own == own && e.state == CopyState::Complete)
        .collect();
    group.sort_by(|a, b| (b.rank, &b.rp).cmp(&(a.rank, &a.rp)));
    group
}

/// When the received copies of `complete` (complete copies received from
/// other zones, newest first in the one RP order) stopped ageing: one
/// `policy` interval after the newest of them was taken, if that is before
/// `now_ms` (a freeze, see the module documentation); `None` while they age.
/// A newest copy stamped in the future has no freeze point before now.
fn ageing_stopped_at(complete: &[&Entry], policy: &Policy, now_ms: u64) -> Option<u64> {
    let newest = complete.first()?;
    let at = newest
        .taken_ms
        .saturating_add(policy.interval_s.saturating_mul(1000));
    (at < now_ms).then_some(at)
}

/// Since when retention in `zone` has frozen the copies of `service`
/// received from other zones (see the module documentation), once the
/// freeze has lasted `grace_ms` (the time one RP takes to be taken and
/// sent, so that the short freeze before each copy arrives is not shown).
pub fn frozen_since(service: &Service, zone: &ZoneId, now_ms: u64, grace_ms: u64) -> Option<u64> {
    let policy = service.policy.get()?;
    if service.is_deleted() {
        return None;
    }
    let all = entries(service, zone, &BTreeSet::new());
    let at = ageing_stopped_at(&complete_newest_first(&all, false), policy, now_ms)?;
    (now_ms.saturating_sub(at) > grace_ms).then_some(at)
}

/// The retention view of `service` in `zone`: every RP with a copy state
/// here, with its protection worked out. `depended` are the RPs that volumes
/// in this zone were created from and still depend on.
pub fn entries(service: &Service, zone: &ZoneId, depended: &BTreeSet<RpId>) -> Vec<Entry> {
    view(service, zone, depended, &[])
}

/// [`entries`], plus `candidates` (RPs with no copy here yet) as if they
/// had been copied here complete.
fn view(
    service: &Service,
    zone: &ZoneId,
    depended: &BTreeSet<RpId>,
    candidates: &[RpId],
) -> Vec<Entry> {
    let recovery_zone = service.policy.get().map(|p| &p.recovery_zone);
    let order = service.rps_in_order();
    let newest_safe = recovery_zone
        .and_then(|z| order.iter().rev().find(|rp| rp.is_complete_in(z)))
        .map(|rp| rp.id.clone());
    let entry = |rank: usize, rp: &RecoveryPoint| -> Option<Entry> {
        let Some(state) = rp.copy_state(zone).cloned() else {
            return candidates.contains(&rp.id).then(|| Entry {
                rp: rp.id.clone(),
                rank,
                taken_ms: rp.taken.wall_ms,
                own: false,
                state: CopyState::Complete,
                protected: false,
            });
        };
        let own = &rp.origin == zone;
        let on_its_way = own
            && recovery_zone.is_some_and(|rz| {
                rz != zone
                    && matches!(
                        rp.copy_state(rz),
                        Some(CopyState::Pending | CopyState::Transferring)
                    )
            });
        // A deleted service needs no failover base any more: only holds
        // and dependent volumes keep its copies.
        let protected = rp.is_held()
            || depended.contains(&rp.id)
            || (!service.is_deleted() && (newest_safe.as_ref() == Some(&rp.id) || on_its_way));
        Some(Entry {
            rp: rp.id.clone(),
            rank,
            taken_ms: rp.taken.wall_ms,
            own,
            state,
            protected,
        })
    };
    order
        .iter()
        .enumerate()
        .filter_map(|(rank, rp)| entry(rank, rp))
        .collect()
}

/// What `zone`'s retention deletes of `service` now: nothing while its
/// protection is paused (unless it is deleted).
pub fn deletions(
    service: &Service,
    zone: &ZoneId,
    depended: &BTreeSet<RpId>,
    now_ms: u64,
) -> Vec<RpId> {
    if service.pause().is_some() && !service.is_deleted() {
        return Vec::new();
    }
    select(
        &entries(service, zone, depended),
        service.policy.get(),
        service.is_deleted(),
        now_ms,
    )
}

/// Of the RPs `zone` took, those of which no copy is left anywhere (every
/// zone's copy deleted or failed; this zone's deleted, or refused because
/// what it names is not this engine's snapshot, so nothing of the engine's
/// is left of it here) and not on hold: the origin purges them from the
/// replicated state. At most a purge's worth.
pub fn purgeable(service: &Service, zone: &ZoneId) -> Vec<RpId> {
    service
        .rps
        .values()
        .filter(|rp| {
            &rp.origin == zone
                && !rp.is_held()
                && match rp.copy_state(zone) {
                    Some(CopyState::Deleted) => true,
                    Some(CopyState::Failed { error }) => error == super::naming::FOREIGN_SNAPSHOT,
                    _ => false,
                }
                && rp
                    .copies
                    .values()
                    .all(|c| matches!(c.value, CopyState::Deleted | CopyState::Failed { .. }))
        })
        .map(|rp| rp.id.clone())
        .take(MAX_RPS_PER_PURGE)
        .collect()
}

/// Of `candidates` (RPs of other zones not yet copied here), those retention
/// would keep if they were copied: the only ones worth transferring.
pub fn worth_copying(
    service: &Service,
    zone: &ZoneId,
    depended: &BTreeSet<RpId>,
    candidates: &[RpId],
    now_ms: u64,
) -> Vec<RpId> {
    if service.is_deleted() {
        return Vec::new();
    }
    let all = view(service, zone, depended, candidates);
    let dropped = select(&all, service.policy.get(), false, now_ms);
    candidates
        .iter()
        .filter(|c| !dropped.contains(c))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Retention, ServiceId};

    fn rp(i: u64) -> RpId {
        RpId::new(format!("a.{i}")).unwrap()
    }

    fn entry(i: u64, own: bool, state: CopyState, protected: bool) -> Entry {
        Entry {
            rp: rp(i),
            rank: i as usize,
            taken_ms: i * 1000,
            own,
            state,
            protected,
        }
    }

    fn policy(local: u32, remote: u32, keep_for_s: u64) -> Policy {
        Policy {
            interval_s: 60,
            recovery_zone: ZoneId::new("b").unwrap(),
            local_retention: Retention {
                keep_last: local,
                keep_for_s,
            },
            remote_retention: Retention {
                keep_last: remote,
                keep_for_s,
            },
        }
    }

    #[test]
    fn keeps_the_newest_n_of_each_group() {
        let es: Vec<Entry> = (1..=5)
            .map(|i| entry(i, true, CopyState::Complete, false))
            .chain((6..=9).map(|i| entry(i, false, CopyState::Complete, false)))
            .collect();
        let mut out = select(&es, Some(&policy(2, 3, 0)), false, 100_000);
        out.sort();
        assert_eq!(out, vec![rp(1), rp(2), rp(3), rp(6)]);
    }

    #[test]
    fn the_newest_in_rp_order_is_kept_whatever_its_stamp() {
        let now = 10_000_000;
        let at = |i: u64, taken_ms: u64| Entry {
            taken_ms,
            ..entry(i, false, CopyState::Complete, false)
        };
        // RP 1 was stamped while its origin's clock ran an hour ahead; RP 2
        // came after it (higher rank) with an honest, older-looking stamp.
        let es = vec![at(1, now + 3_600_000), at(2, now - 1_000_000)];
        // Keep the newest one, and any younger than 10 minutes: the stamp
        // from the future is not young, it is unknown.
        let out = select(&es, Some(&policy(1, 1, 600)), false, now);
        assert_eq!(out, vec![rp(1)]);
    }

    #[test]
    fn keeps_young_ones_whatever_their_rank() {
        let es: Vec<Entry> = (1..=5)
            .map(|i| entry(i, true, CopyState::Complete, false))
            .collect();
        // now = 6 s; keep for 3 s: RPs at 4 s and 5 s are young, 1..3 go except the newest 1.
        let mut out = select(&es, Some(&policy(1, 1, 3)), false, 6_000);
        out.sort();
        assert_eq!(out, vec![rp(1), rp(2), rp(3)]);
    }

    #[test]
    fn received_copies_stop_ageing_while_no_newer_one_arrives() {
        // Hourly RPs over two days, copied here; keep the newest 2 and six
        // hours' worth.
        let hour = 3_600_000;
        let es: Vec<Entry> = (1..=48)
            .map(|i| Entry {
                taken_ms: i * hour,
                ..entry(i, false, CopyState::Complete, false)
            })
            .collect();
        let mut p = policy(2, 2, 6 * 3600);
        p.interval_s = 3600;
        // When the next copy was due (an hour after the newest was taken)
        // the zone deletes what it would have deleted then, and no more a
        // week later: the outage does not age the copies out.
        let due = 49 * hour;
        let at_due = select(&es, Some(&p), false, due);
        assert_eq!(at_due.len(), 43, "{at_due:?}");
        for later in [due + 1, due + hour, due + 7 * 24 * hour, u64::MAX] {
            assert_eq!(select(&es, Some(&p), false, later), at_due, "at {later}");
        }
        // Copies taken here (local retention) keep ageing: the zone's own
        // schedule goes on.
        let own: Vec<Entry> = es
            .iter()
            .map(|e| Entry {
                own: true,
                ..e.clone()
            })
            .collect();
        assert_eq!(select(&own, Some(&p), false, due + 7 * 24 * hour).len(), 46);
        // Before it was due the copies aged as usual.
        assert_eq!(select(&es, Some(&p), false, due - 1).len(), 42);
        assert_eq!(select(&es, Some(&p), false, 47 * hour + 1).len(), 41);
    }

    #[test]
    fn never_deletes_protected_or_incoming_copies() {
        let es = vec![
            entry(1, false, CopyState::Complete, true),
            entry(2, false, CopyState::Transferring, false),
            entry(3, false, CopyState::Complete, false),
            entry(4, false, CopyState::Complete, false),
            entry(5, false, CopyState::Deleted, false),
        ];
        let out = select(&es, Some(&policy(1, 1, 0)), false, 100_000);
        assert_eq!(out, vec![rp(3)]);
    }

    #[test]
    fn only_own_rps_with_no_copy_left_and_no_hold_are_purged() {
        use crate::replica::{Mvr, RecoveryPoint, Versioned};
        let (a, b) = (ZoneId::new("a").unwrap(), ZoneId::new("b").unwrap());
        let dot = |seq| crate::replica::Dot {
            origin: a.clone(),
            seq,
        };
        let rp_with = |i: u64, copies: Vec<(&ZoneId, CopyState)>, held: bool| {
            let mut hold = Mvr::default();
            if held {
                hold.write(&Default::default(), dot(100 + i), Default::default(), true);
            }
            RecoveryPoint {
                id: RpId::new(format!("{}.{i}", if i < 10 { "a" } else { "b" })).unwrap(),
                origin: if i < 10 { a.clone() } else { b.clone() },
                created: dot(i),
                taken: Default::default(),
                disks: Vec::new(),
                metadata: String::new(),
                copies: copies
                    .into_iter()
                    .map(|(z, value)| {
                        let v = Versioned {
                            dot: dot(i),
                            hlc: Default::default(),
                            value,
                        };
                        (z.clone(), v)
                    })
                    .collect(),
                hold,
            }
        };
        let gone = CopyState::Deleted;
        let failed = CopyState::Failed { error: "x".into() };
        let foreign = CopyState::Failed {
            error: super::super::naming::FOREIGN_SNAPSHOT.into(),
        };
        let rps = [
            // The origin refused to delete what its RP named (not the
            // engine's): nothing of the engine's left, so it is purged; a
            // copy failed otherwise (taking it failed) is not.
            rp_with(7, vec![(&a, foreign), (&b, gone.clone())], false),
            rp_with(8, vec![(&a, failed.clone())], false),
            rp_with(1, vec![(&a, gone.clone()), (&b, gone.clone())], false),
            rp_with(2, vec![(&a, gone.clone()), (&b, failed)], false),
            rp_with(3, vec![(&a, gone.clone())], false),
            rp_with(
                4,
                vec![(&a, gone.clone()), (&b, CopyState::Complete)],
                false,
            ),
            rp_with(
                5,
                vec![(&a, CopyState::Complete), (&b, gone.clone())],
                false,
            ),
            rp_with(6, vec![(&a, gone.clone()), (&b, gone.clone())], true),
            rp_with(11, vec![(&a, gone.clone()), (&b, gone)], false),
        ];
        let mut service = crate::replica::Service::new(ServiceId::new("s").unwrap());
        service.rps = rps.into_iter().map(|r| (r.id.clone(), r)).collect();
        let out = purgeable(&service, &a);
        let ids: Vec<String> = out.iter().map(|r| r.to_string()).collect();
        assert_eq!(ids, ["a.1", "a.2", "a.3", "a.7"]);
    }

    #[test]
    fn a_deleted_service_keeps_only_protected_copies() {
        let es = vec![
            entry(1, true, CopyState::Complete, true),
            entry(2, true, CopyState::Complete, false),
            entry(3, false, CopyState::Transferring, false),
            entry(4, false, CopyState::Failed { error: "x".into() }, false),
        ];
        let out = select(&es, None, true, 0);
        assert_eq!(out, vec![rp(2), rp(3)]);
    }
}
