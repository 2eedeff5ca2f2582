//! RPO arithmetic: the one place that says whether a service is protected
//! well enough. Pure; the caller passes the time in.
//!
//! A service's RPO is the age of its newest RP that is complete in the
//! recovery zone: the data a failover would lose right now. It is past its
//! target when that age exceeds the policy interval plus a grace period that
//! covers taking and transferring one RP.

use super::RpoStatus;
use crate::replica::Service;

/// The RPO of `service` at `now_ms`, as a zone that has its state sees it.
pub fn rpo(service: &Service, now_ms: u64, grace_ms: u64) -> RpoStatus {
    let (target_s, newest_ms, since_ms) = match service.policy.winner() {
        Some(p) => (
            p.value.interval_s,
            service
                .newest_complete_rp(&p.value.recovery_zone)
                .map(|rp| rp.taken.wall_ms),
            p.hlc.wall_ms,
        ),
        None => (0, None, 0),
    };
    rpo_of(target_s, newest_ms, since_ms, now_ms, grace_ms, service)
}

fn rpo_of(
    target_s: u64,
    newest_ms: Option<u64>,
    since_ms: u64,
    now_ms: u64,
    grace_ms: u64,
    service: &Service,
) -> RpoStatus {
    let age_ms = newest_ms.map(|t| now_ms.saturating_sub(t));
    let limit_ms = target_s.saturating_mul(1000).saturating_add(grace_ms);
    // With no RP in the recovery zone yet, the clock runs from when the
    // policy was set: a brand-new service is not reported at once.
    let past_rpo = age_ms.unwrap_or_else(|| now_ms.saturating_sub(since_ms)) > limit_ms;
    RpoStatus {
        service: service.id.clone(),
        rpo_age_s: age_ms.map(|a| a as f64 / 1000.0),
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

    #[test]
    fn age_of_the_newest_rp_against_interval_and_grace() {
        let (r, id) = service_with_policy(60);
        let s = r.service(&id).unwrap();
        let ok = rpo_of(60, Some(10_000), 0, 100_000, 30_000, s);
        assert_eq!(ok.rpo_age_s, Some(90.0));
        assert!(!ok.past_rpo);
        assert!(rpo_of(60, Some(10_000), 0, 100_001, 30_000, s).past_rpo);
    }
}
