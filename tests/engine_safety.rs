//! A zone that comes back loses nothing and cannot be fed forged state:
//! RP order and RPO do not rest on one zone's raw wall clock.

mod engine_support;

use drengine::engine::schedule;
use drengine::replica::MAX_CLOCK_DRIFT_MS;
use engine_support::*;

const HOUR_MS: i64 = 3_600_000;

/// A clock that jumps an hour ahead and back does not stop the schedule:
/// the RP stamped an hour ahead is no reason to wait an hour, so the next
/// RP is taken at once and the ones after on time. Seen from a zone with a
/// right clock, an RP stamped an hour ahead is no evidence of protection:
/// its RPO is unknown and past the target, never 0.
#[tokio::test]
async fn the_schedule_and_rpo_survive_a_clock_jump_ahead_and_back() {
    let mut net = Net::new(&["a", "b"], |_| {}).await;
    let ab = ["a", "b"];
    let clock = SkewedClock::default();
    net.clocks.insert(z("a"), clock.clock());
    net.open(&z("a")).await;
    let id = svc("vm-clock");
    let interval_s = 2;
    net.protect("a", &id, &["d0"], "b", interval_s, 3).await;

    clock.set_offset_ms(HOUR_MS);
    net.settle("an RP stamped an hour ahead, complete in b", &ab, |n| {
        n.service("b", &id)
            .rps
            .values()
            .any(|rp| rp.is_complete_in(&z("b")))
    })
    .await;
    let ahead = net.service("b", &id);
    let r1 = ahead.newest_complete_rp(&z("b")).unwrap().clone();
    assert!(r1.taken.wall_ms > system_ms() + MAX_CLOCK_DRIFT_MS);
    let rpo = net.engine("b").status(&id).unwrap().rpo;
    assert_eq!(rpo.rpo_age_s, None, "an RP from the future has no age");
    assert!(rpo.past_rpo, "and is no evidence of protection");

    // The clock is put right. The next RP is due at once, not in an hour.
    let last_seq = |n: &Net| {
        n.service("a", &id)
            .rps
            .values()
            .filter(|rp| rp.origin == z("a"))
            .map(|rp| rp.created.seq)
            .max()
            .unwrap_or(0)
    };
    let seq_at_jump = last_seq(&net);
    clock.set_offset_ms(0);
    let back_at = system_ms();
    net.settle("an RP after the jump back", &ab, |n| {
        last_seq(n) > seq_at_jump
    })
    .await;
    let s = net.service("a", &id);
    let r2 = s.newest_rp(|rp| rp.origin == z("a")).unwrap().clone();
    assert!(
        r2.taken.wall_ms >= back_at && r2.taken.wall_ms < back_at + 10_000,
        "taken at once after the jump back: {} vs {back_at}",
        r2.taken.wall_ms
    );
    // The next ones are on the schedule's grid again.
    net.settle("two more RPs on schedule", &ab, |n| {
        n.service("a", &id)
            .rps
            .values()
            .filter(|rp| rp.created.seq > r2.created.seq)
            .count()
            >= 2
    })
    .await;
    let s = net.service("a", &id);
    for rp in s.rps.values().filter(|rp| rp.created.seq > r2.created.seq) {
        let late = schedule::lateness_ms(&id, interval_s, rp.taken.wall_ms);
        assert!(late < 1_500, "RP {} {late} ms late for its slot", rp.id);
    }
    // And b's RPO rests on RPs of known age again.
    net.settle("b's RPO back within the target", &ab, |n| {
        let rpo = n.engine("b").status(&id).unwrap().rpo;
        rpo.rpo_age_s.is_some_and(|a| a < 10.0) && !rpo.past_rpo
    })
    .await;
}

/// After a clock jump ahead and back, the RP stamped an hour ahead is the
/// *oldest* of those taken since, as it really is: retention drops it
/// first and keeps the causally newest, and failover picks the causally
/// newest RP complete in the recovery zone, not the one with the largest
/// stamp.
#[tokio::test]
async fn failover_and_retention_follow_causal_order_not_a_clock_that_ran_ahead() {
    let mut net = Net::new(&["a", "b"], |_| {}).await;
    let ab = ["a", "b"];
    let clock = SkewedClock::default();
    net.clocks.insert(z("a"), clock.clock());
    net.open(&z("a")).await;
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0"], "b", 3600, 2).await;

    clock.set_offset_ms(HOUR_MS);
    let r1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("r1 complete in b", &ab, |n| n.complete_in("b", &id, &r1))
        .await;
    clock.set_offset_ms(0);
    // The schedule takes one at once (r1 is no reason to wait)...
    net.settle("a scheduled RP after the jump back", &ab, |n| {
        n.service("a", &id).rps.len() >= 2
    })
    .await;
    let s = net.service("a", &id);
    let r2 = s.newest_rp(|rp| rp.id != r1).unwrap().id.clone();
    // ... and one more on demand.
    let r3 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    assert!(net.service("a", &id).rps[&r1].taken > net.service("a", &id).rps[&r3].taken);
    net.settle(
        "r2 and r3 complete in b, r1 dropped by retention (keep 2) in both zones",
        &ab,
        |n| {
            n.complete_in("b", &id, &r2)
                && n.complete_in("b", &id, &r3)
                && ab.iter().all(|zone| n.copy_gone(zone, &id, &r1))
        },
    )
    .await;
    for zone in ab {
        assert!(net.complete_in(zone, &id, &r3), "{zone} keeps the newest");
        assert!(
            net.complete_in(zone, &id, &r2),
            "{zone} keeps the one before"
        );
    }
    // zone-a goes away; b fails over to the causally newest RP.
    let out = net
        .engine("b")
        .failover(&id, None, "operator")
        .await
        .unwrap();
    assert_eq!(out.rp, r3);
}
