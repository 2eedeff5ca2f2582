//! RPO arithmetic: the one place that says whether a service is protected
//! well enough. Pure; the caller passes the time in.
//!
//! A service's RPO is the age of its newest RP that is complete in the
//! recovery zone: the data a failover would lose right now. It is past its
//! target when that age exceeds the policy interval plus a grace period that
//! covers taking and transferring one RP.
//!
//! "Newest" is the one RP order ([`Service::rps_in_order`]), and an age is
//! only believed within the allowed clock drift ([`age_ms`]): an RP stamped
//! further in the future has an unknown age, so it is no evidence of
//! protection. The RPO is then the age of the newest complete RP whose age
//! is known (an older RP of the same origin holds older data, so that age
//! is an upper bound on the loss); with none, the age is unknown and the
//! service counts as past its RPO — never as an RPO of 0.
//!
//! The RPO *level* grades the same age for alerting: `ok`, `warning` once
//! it is older than `warning_factor` × interval, `critical` once older than
//! `critical_factor` × interval (2 and 3 by default). An unknown age is
//! `critical`; with no RP in the recovery zone yet, the age since the
//! policy was set is graded. A service with an active VM whose RPs are kept
//! only in its own zone (its recovery zone, as right after a failover until
//! the active-VM conflict is resolved or a recovery zone is named) is at
//! least `warning`, and says which zones keep them only locally.
//!
//! A service whose protection an operator paused is `paused` (never past
//! its RPO, nothing alerts) until it is resumed; its age is still shown.

use super::{RpoLevel, RpoStatus};
use crate::model::ZoneId;
use crate::replica::{age_ms, Service};

/// Where the RPs of a VM active in `zone` are replicated: the recovery zone
/// of the policy, or `None` when that is `zone` itself (kept only there).
pub fn replicated_to(service: &Service, zone: &ZoneId) -> Option<ZoneId> {
    let rz = &service.policy.winner()?.value.recovery_zone;
    (rz != zone).then(|| rz.clone())
}

/// How ages are judged: the grace of `past_rpo` and the level factors.
/// Built from the engine's configuration, which checks the factors
/// (finite, at least 1, critical at least warning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RpoRules {
    pub grace_ms: u64,
    pub warning_factor: f64,
    pub critical_factor: f64,
}

impl Default for RpoRules {
    fn default() -> Self {
        RpoRules {
            grace_ms: 30_000,
            warning_factor: 2.0,
            critical_factor: 3.0,
        }
    }
}

impl RpoRules {
    /// The level of an age (`None`: unknown) for an interval of `interval_s`.
    pub fn level(&self, age_ms: Option<u64>, interval_s: u64) -> RpoLevel {
        let Some(age) = age_ms else {
            return RpoLevel::Critical;
        };
        // f64 arithmetic saturates (to infinity) instead of wrapping; the
        // factors are finite and at least 1.
        let interval_ms = interval_s as f64 * 1000.0;
        let age = age as f64;
        if age > interval_ms * self.critical_factor {
            RpoLevel::Critical
        } else if age > interval_ms * self.warning_factor {
            RpoLevel::Warning
        } else {
            RpoLevel::Ok
        }
    }
}

/// The RPO of `service` at `now_ms`, as a zone that has its state sees it.
pub fn rpo(service: &Service, now_ms: u64, rules: &RpoRules) -> RpoStatus {
    let Some(policy) = service.policy.winner() else {
        return RpoStatus {
            service: service.id.clone(),
            rpo_age_s: None,
            rpo_target_s: 0,
            past_rpo: false,
            level: RpoLevel::Ok,
            kept_only_in: Vec::new(),
        };
    };
    let target_s = policy.value.interval_s;
    let limit_ms = target_s.saturating_mul(1000).saturating_add(rules.grace_ms);
    let rz = &policy.value.recovery_zone;
    let mut complete = service
        .rps_in_order()
        .into_iter()
        .rev()
        .filter(|rp| rp.is_complete_in(rz))
        .peekable();
    let any_complete = complete.peek().is_some();
    let age = complete.find_map(|rp| age_ms(rp.taken.wall_ms, now_ms));
    // The age that is judged: the RPO's, or with no complete RP at all the
    // time since the policy was set (a brand-new service is not reported at
    // once). Complete RPs, none of known age, are the worst case (`None`).
    let judged = match age {
        Some(age) => Some(age),
        None if any_complete => None,
        None => age_ms(policy.hlc.wall_ms, now_ms),
    };
    let kept_only_in: Vec<ZoneId> = service
        .active_zones()
        .into_iter()
        .filter(|z| replicated_to(service, z).is_none())
        .collect();
    let paused = service.pause().is_some() && !service.is_deleted();
    let mut level = rules.level(judged, target_s);
    if !kept_only_in.is_empty() {
        level = level.max(RpoLevel::Warning);
    }
    if paused {
        level = RpoLevel::Paused;
    }
    RpoStatus {
        service: service.id.clone(),
        rpo_age_s: age.map(|a| a as f64 / 1000.0),
        rpo_target_s: target_s,
        past_rpo: !paused && judged.is_none_or(|a| a > limit_ms),
        level,
        kept_only_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Policy, Retention, ServiceId, VmSlot, ZoneId};
    use crate::replica::{Directory, Op, Replica};

    fn service_with_policy(interval_s: u64) -> (Replica, ServiceId) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let a = ZoneId::new("a").unwrap();
        let b = ZoneId::new("b").unwrap();
        let dir = Directory::new(
            [
                (a.clone(), key.verifying_key()),
                (b.clone(), key.verifying_key()),
            ]
            .into(),
        );
        let mut r = Replica::new(a, Some(key), dir);
        let id = ServiceId::new("vm1").unwrap();
        let keep = Retention {
            keep_last: 1,
            keep_for_s: 0,
        };
        r.local_write(
            Op::CreateService {
                service: id.clone(),
                policy: Policy {
                    interval_s,
                    recovery_zone: b,
                    local_retention: keep.clone(),
                    remote_retention: keep,
                },
                metadata: String::new(),
                slot: VmSlot {
                    cmp_vm_id: "x".into(),
                    disks: vec!["d".into()],
                    active: true,
                },
            },
            "t",
            1_000_000,
        )
        .unwrap();
        (r, id)
    }

    const RULES: RpoRules = RpoRules {
        grace_ms: 30_000,
        warning_factor: 2.0,
        critical_factor: 3.0,
    };

    #[test]
    fn no_rp_yet_counts_from_the_policy() {
        let (r, id) = service_with_policy(60);
        let s = r.service(&id).unwrap();
        let st = rpo(s, 1_000_000 + 80_000, &RULES);
        assert_eq!(st.rpo_age_s, None);
        assert!(!st.past_rpo);
        assert!(rpo(s, 1_000_000 + 90_001, &RULES).past_rpo);
    }

    /// Gives the service RPs of zone a (created in this order) taken at
    /// `taken` (ms), each complete in the recovery zone b.
    fn with_rps(s: &crate::replica::Service, taken: &[u64]) -> crate::replica::Service {
        use crate::model::{CopyState, RpId};
        use crate::replica::{Dot, Hlc, RecoveryPoint, Versioned};
        let (a, b) = (ZoneId::new("a").unwrap(), ZoneId::new("b").unwrap());
        let mut s = s.clone();
        for (i, t) in taken.iter().enumerate() {
            let dot = Dot {
                origin: a.clone(),
                seq: 10 + i as u64,
            };
            let complete = Versioned {
                dot: dot.clone(),
                hlc: Hlc::default(),
                value: CopyState::Complete,
            };
            let id = RpId::new(format!("a.{i}")).unwrap();
            s.rps.insert(
                id.clone(),
                RecoveryPoint {
                    id,
                    origin: a.clone(),
                    created: dot,
                    taken: Hlc {
                        wall_ms: *t,
                        logical: 0,
                    },
                    disks: Vec::new(),
                    metadata: String::new(),
                    copies: [(a.clone(), complete.clone()), (b.clone(), complete)].into(),
                    hold: Default::default(),
                },
            );
        }
        s
    }

    #[test]
    fn age_of_the_newest_rp_against_interval_and_grace() {
        let (r, id) = service_with_policy(60);
        let s = with_rps(r.service(&id).unwrap(), &[5_000, 10_000]);
        let ok = rpo(&s, 100_000, &RULES);
        assert_eq!(ok.rpo_age_s, Some(90.0));
        assert!(!ok.past_rpo);
        assert!(rpo(&s, 100_001, &RULES).past_rpo);
    }

    #[test]
    fn an_rp_from_the_future_is_no_evidence_of_protection() {
        let (r, id) = service_with_policy(60);
        let now = 2_000_000_000;
        let hour = 3_600_000;
        // The newest RP was stamped an hour ahead: the RPO is the age of
        // the one before it, not 0.
        let s = with_rps(r.service(&id).unwrap(), &[now - 200_000, now + hour]);
        let st = rpo(&s, now, &RULES);
        assert_eq!(st.rpo_age_s, Some(200.0));
        assert!(st.past_rpo);
        // Only RPs from the future: unknown age, the worst case.
        let s = with_rps(r.service(&id).unwrap(), &[now + hour]);
        let st = rpo(&s, now, &RULES);
        assert_eq!(st.rpo_age_s, None);
        assert!(st.past_rpo);
        // The clock jumped back after an RP stamped an hour ahead: a newer
        // RP (by its seq) with an honest stamp is the RPO again.
        let s = with_rps(r.service(&id).unwrap(), &[now + hour, now - 5_000]);
        let st = rpo(&s, now, &RULES);
        assert_eq!(st.rpo_age_s, Some(5.0));
        assert!(!st.past_rpo);
    }

    #[test]
    fn levels_move_ok_warning_critical_with_age() {
        let (r, id) = service_with_policy(60);
        let s = with_rps(r.service(&id).unwrap(), &[1_000_000]);
        let at = |age_ms: u64| rpo(&s, 1_000_000 + age_ms, &RULES);
        assert_eq!(at(0).level, RpoLevel::Ok);
        assert_eq!(at(120_000).level, RpoLevel::Ok);
        assert_eq!(at(120_001).level, RpoLevel::Warning);
        assert_eq!(at(180_000).level, RpoLevel::Warning);
        assert_eq!(at(180_001).level, RpoLevel::Critical);
        // Past the RPO (interval + grace) before it is a warning.
        assert!(at(90_001).past_rpo && at(90_001).level == RpoLevel::Ok);
        let wide = RpoRules {
            warning_factor: 10.0,
            critical_factor: 10.0,
            ..RULES
        };
        assert_eq!(rpo(&s, 1_000_000 + 599_999, &wide).level, RpoLevel::Ok);
        assert_eq!(
            rpo(&s, 1_000_000 + 600_001, &wide).level,
            RpoLevel::Critical
        );
    }

    #[test]
    fn an_unknown_age_is_critical_and_no_rp_yet_grades_the_policy_age() {
        let (r, id) = service_with_policy(60);
        let now = 2_000_000_000;
        let s = with_rps(r.service(&id).unwrap(), &[now + 3_600_000]);
        assert_eq!(rpo(&s, now, &RULES).level, RpoLevel::Critical);
        let s = r.service(&id).unwrap();
        assert_eq!(rpo(s, 1_000_000 + 100_000, &RULES).level, RpoLevel::Ok);
        assert_eq!(rpo(s, 1_000_000 + 130_000, &RULES).level, RpoLevel::Warning);
        assert_eq!(
            rpo(s, 1_000_000 + 200_000, &RULES).level,
            RpoLevel::Critical
        );
    }

    #[test]
    fn huge_intervals_and_ages_do_not_overflow() {
        assert_eq!(RULES.level(Some(u64::MAX), u64::MAX), RpoLevel::Ok);
        assert_eq!(RULES.level(Some(u64::MAX), 1), RpoLevel::Critical);
        assert_eq!(RULES.level(Some(0), 0), RpoLevel::Ok);
        assert_eq!(RULES.level(Some(1), 0), RpoLevel::Critical);
    }
}
