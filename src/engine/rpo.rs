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

use super::RpoStatus;
use crate::replica::{age_ms, Service};

/// The RPO of `service` at `now_ms`, as a zone that has its state sees it.
pub fn rpo(service: &Service, now_ms: u64, grace_ms: u64) -> RpoStatus {
    let Some(policy) = service.policy.winner() else {
        return RpoStatus {
            service: service.id.clone(),
            rpo_age_s: None,
            rpo_target_s: 0,
            past_rpo: false,
        };
    };
    let target_s = policy.value.interval_s;
    let limit_ms = target_s.saturating_mul(1000).saturating_add(grace_ms);
    let rz = &policy.value.recovery_zone;
    let mut complete = service
        .rps_in_order()
        .into_iter()
        .rev()
        .filter(|rp| rp.is_complete_in(rz))
        .peekable();
    let any_complete = complete.peek().is_some();
    let age = complete.find_map(|rp| age_ms(rp.taken.wall_ms, now_ms));
    let past_rpo = match age {
        Some(age) => age > limit_ms,
        // Complete RPs, none of known age: the worst case.
        None if any_complete => true,
        // With no RP in the recovery zone yet, the clock runs from when the
        // policy was set: a brand-new service is not reported at once.
        None => age_ms(policy.hlc.wall_ms, now_ms).is_none_or(|a| a > limit_ms),
    };
    RpoStatus {
        service: service.id.clone(),
        rpo_age_s: age.map(|a| a as f64 / 1000.0),
        rpo_target_s: target_s,
        past_rpo,
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

    #[test]
    fn no_rp_yet_counts_from_the_policy() {
        let (r, id) = service_with_policy(60);
        let s = r.service(&id).unwrap();
        let st = rpo(s, 1_000_000 + 80_000, 30_000);
        assert_eq!(st.rpo_age_s, None);
        assert!(!st.past_rpo);
        assert!(rpo(s, 1_000_000 + 90_001, 30_000).past_rpo);
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
        let ok = rpo(&s, 100_000, 30_000);
        assert_eq!(ok.rpo_age_s, Some(90.0));
        assert!(!ok.past_rpo);
        assert!(rpo(&s, 100_001, 30_000).past_rpo);
    }

    #[test]
    fn an_rp_from_the_future_is_no_evidence_of_protection() {
        let (r, id) = service_with_policy(60);
        let now = 2_000_000_000;
        let hour = 3_600_000;
        // The newest RP was stamped an hour ahead: the RPO is the age of
        // the one before it, not 0.
        let s = with_rps(r.service(&id).unwrap(), &[now - 200_000, now + hour]);
        let st = rpo(&s, now, 30_000);
        assert_eq!(st.rpo_age_s, Some(200.0));
        assert!(st.past_rpo);
        // Only RPs from the future: unknown age, the worst case.
        let s = with_rps(r.service(&id).unwrap(), &[now + hour]);
        let st = rpo(&s, now, 30_000);
        assert_eq!(st.rpo_age_s, None);
        assert!(st.past_rpo);
        // The clock jumped back after an RP stamped an hour ahead: a newer
        // RP (by its seq) with an honest stamp is the RPO again.
        let s = with_rps(r.service(&id).unwrap(), &[now + hour, now - 5_000]);
        let st = rpo(&s, now, 30_000);
        assert_eq!(st.rpo_age_s, Some(5.0));
        assert!(!st.past_rpo);
    }
}
