//! When scheduled recovery points are due: the one place for that arithmetic.
//!
//! Each service's RPs fall on a grid of slots `phase + k * interval`, where
//! the phase is derived from a hash of the service id. Services created
//! together (or a node restarted with thousands of them overdue) are thus
//! spread evenly over the interval instead of hitting StorPool in one burst,
//! and every zone computes the same slots for a service. Pure functions of
//! their inputs; time is passed in as Unix milliseconds.
//!
//! A stamp from the future (an RP taken while the clock ran ahead, a
//! policy written by a zone whose clock does) never holds the schedule
//! back: beyond the allowed drift its time is unknown
//! ([`crate::replica::age_ms`]), and an unknown last RP means one is due now.

use crate::model::ServiceId;
use crate::replica::age_ms;

/// The service's offset within its interval, in `0..interval_ms`.
pub fn phase_ms(service: &ServiceId, interval_ms: u64) -> u64 {
    if interval_ms == 0 {
        return 0;
    }
    let hash = blake3::hash(service.as_str().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first) % interval_ms
}

/// The latest slot at or before `t_ms` (or the first slot, if `t_ms` is before it).
pub fn slot_at_or_before(t_ms: u64, interval_ms: u64, phase_ms: u64) -> u64 {
    if interval_ms == 0 || t_ms < phase_ms {
        return phase_ms;
    }
    t_ms - (t_ms - phase_ms) % interval_ms
}

/// The first slot strictly after `t_ms`.
pub fn slot_after(t_ms: u64, interval_ms: u64, phase_ms: u64) -> u64 {
    if t_ms < phase_ms {
        return phase_ms;
    }
    slot_at_or_before(t_ms, interval_ms, phase_ms).saturating_add(interval_ms.max(1))
}

/// When the next scheduled RP of `service` is due in the zone that runs it,
/// seen at `now_ms`.
///
/// `last_taken_ms` is the `taken` of the newest RP (in the one RP order,
/// [`crate::replica::Service::rps_in_order`]) this zone took of the
/// service; with none, `since_ms` (when the VM became active here, or its
/// policy was set) anchors the first one, which is then due at the first
/// slot at or after it. Missed slots are not made up: an overdue service
/// gets one RP, and the next is due at the slot after it.
///
/// A `last_taken_ms` (or, with no RP, a `since_ms`) more than the allowed
/// clock drift ahead of `now_ms` is a time we cannot place: the RP is due
/// now (answers `now_ms`), rather than when the clock catches up with a
/// stamp made while it ran ahead. The RP taken then is on time again.
pub fn next_due_ms(
    service: &ServiceId,
    interval_s: u64,
    last_taken_ms: Option<u64>,
    since_ms: u64,
    now_ms: u64,
) -> u64 {
    let interval_ms = interval_s.saturating_mul(1000).max(1);
    let phase = phase_ms(service, interval_ms);
    let anchor = last_taken_ms.unwrap_or(since_ms);
    if age_ms(anchor, now_ms).is_none() {
        return now_ms;
    }
    match last_taken_ms {
        Some(t) => slot_after(t, interval_ms, phase),
        None if since_ms <= phase => phase,
        None => slot_after(since_ms - 1, interval_ms, phase),
    }
}

/// How late an RP taken at `taken_ms` was for its slot (the latest slot at or
/// before it): what "made on time" is measured by.
pub fn lateness_ms(service: &ServiceId, interval_s: u64, taken_ms: u64) -> u64 {
    let interval_ms = interval_s.saturating_mul(1000).max(1);
    let phase = phase_ms(service, interval_ms);
    taken_ms.saturating_sub(slot_at_or_before(taken_ms, interval_ms, phase))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(i: usize) -> ServiceId {
        ServiceId::new(format!("vm-{i}")).unwrap()
    }

    #[test]
    fn phases_spread_services_over_the_interval() {
        let interval_ms = 60_000;
        let mut buckets = [0usize; 60];
        for i in 0..6000 {
            let p = phase_ms(&svc(i), interval_ms);
            assert!(p < interval_ms);
            buckets[(p / 1000) as usize] += 1;
        }
        // 100 per second on average; no second gets a burst.
        assert!(
            buckets.iter().all(|&b| (50..=150).contains(&b)),
            "{buckets:?}"
        );
    }

    #[test]
    fn slots_lie_on_the_grid() {
        assert_eq!(slot_at_or_before(10_500, 1000, 200), 10_200);
        assert_eq!(slot_at_or_before(10_200, 1000, 200), 10_200);
        assert_eq!(slot_after(10_200, 1000, 200), 11_200);
        assert_eq!(slot_after(10_199, 1000, 200), 10_200);
        assert_eq!(slot_after(100, 1000, 200), 200);
    }

    #[test]
    fn next_due_follows_the_last_rp_and_skips_missed_slots() {
        let s = svc(1);
        let phase = phase_ms(&s, 60_000);
        let base = 1_700_000_000_000u64;
        let slot = base - (base - phase) % 60_000;
        let now = slot + 700_000;
        // The first RP is due at the first slot at or after activation.
        assert_eq!(next_due_ms(&s, 60, None, slot, now), slot);
        assert_eq!(next_due_ms(&s, 60, None, slot + 1, now), slot + 60_000);
        // Taken 2 s late: the next one is still on the grid.
        assert_eq!(
            next_due_ms(&s, 60, Some(slot + 2_000), 0, now),
            slot + 60_000
        );
        // Down for ten minutes: one RP now, then back on the grid.
        let late = slot + 600_000 + 7_000;
        assert_eq!(next_due_ms(&s, 60, Some(slot), 0, now), slot + 60_000);
        assert_eq!(next_due_ms(&s, 60, Some(late), 0, now), slot + 660_000);
        assert_eq!(lateness_ms(&s, 60, slot + 2_000), 2_000);
        assert_eq!(lateness_ms(&s, 60, late), 7_000);
    }

    #[test]
    fn a_stamp_from_the_future_does_not_hold_the_schedule_back() {
        let s = svc(2);
        let now = 1_700_000_000_000u64;
        let hour = 3_600_000;
        // The last RP was taken while the clock ran an hour ahead: due now.
        assert_eq!(next_due_ms(&s, 60, Some(now + hour), 0, now), now);
        // So is the first RP of a policy stamped an hour ahead.
        assert_eq!(next_due_ms(&s, 60, None, now + hour, now), now);
        // Within the allowed drift the stamp is taken as it is.
        let near = now + crate::replica::MAX_CLOCK_DRIFT_MS;
        assert!(next_due_ms(&s, 60, Some(near), 0, now) > near);
    }
}
