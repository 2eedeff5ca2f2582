//! Retention over time: the recovery zone's freeze during an outage of the
//! zone that takes the RPs, with the engines' clocks moved by the test.

use crate::harness::*;
use drengine::model::{Retention, ServiceId};

const HOUR_MS: i64 = 3_600_000;

/// Since when `zone`'s engine says its retention of `id` is frozen.
fn frozen_since(net: &Net, zone: &str, id: &ServiceId) -> Option<u64> {
    net.engine(zone)
        .status(id)
        .unwrap()
        .retention_frozen_since_ms
}

/// A week-long outage of zone a (its node and cluster unreachable from b):
/// zone b, the recovery zone, keeps every copy it had, though each is far
/// older than the policy's keep-for window and more than its keep-last
/// count, and says since when its retention is frozen. Once a comes back
/// and a new RP arrives, retention ages the old copies out as before.
#[tokio::test]
async fn a_week_long_outage_keeps_every_copy_the_recovery_zone_had() {
    let mut net = Net::new(&["a", "b"], |_| {}).await;
    let (clock_a, clock_b) = (SkewedClock::default(), SkewedClock::default());
    net.clocks.insert(z("a"), clock_a.clock());
    net.clocks.insert(z("b"), clock_b.clock());
    net.open(&z("a")).await;
    net.open(&z("b")).await;
    let ab = ["a", "b"];
    let id = quiet_service("vm", 3600);
    // Keep the newest 2, and 4 hours' worth.
    let keep = Retention {
        keep_last: 2,
        keep_for_s: 4 * 3600,
    };
    net.protect_keeping("a", &id, &["d0", "d1"], "b", 3600, keep)
        .await;
    let mut rps = Vec::new();
    for _ in 0..4 {
        rps.push(net.engine("a").take_rp(&id, "cmp").await.unwrap());
    }
    net.settle("four RPs complete in b", &ab, |n| {
        rps.iter().all(|rp| n.complete_in("b", &id, rp))
    })
    .await;
    assert_eq!(frozen_since(&net, "b", &id), None);

    // Zone a goes dark: nothing is relayed to or from it, its engine stops.
    // Zone b lives through a week, an hour at a time.
    for hour in 1..=7 * 24 {
        clock_b.set_offset_ms(hour * HOUR_MS);
        net.engine("b").reconcile_once().await.unwrap();
    }
    for rp in &rps {
        assert!(
            net.complete_in("b", &id, rp),
            "b lost {rp} during the outage"
        );
    }
    let snaps = net.rp_snapshots("b").await;
    assert_eq!(snaps.len(), 8, "b's cluster keeps all 4 RPs x 2 disks");
    let status = net.engine("b").status(&id).unwrap();
    let since = status
        .retention_frozen_since_ms
        .expect("b says its retention is frozen");
    assert!(
        since <= now_ms() + 2 * HOUR_MS as u64,
        "frozen since {since}"
    );
    // The RPO is what an operator is alerted by; the freeze does not hide it.
    assert!(status.rpo.past_rpo);

    // A week later a is back (its clock too), and takes a new RP: once it
    // is complete in b, the old copies age out as usual (keep the newest 2).
    clock_a.set_offset_ms(7 * 24 * HOUR_MS);
    let fresh = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("the new RP complete in b, old copies aged out", &ab, |n| {
        n.complete_in("b", &id, &fresh) && rps[..3].iter().all(|rp| n.copy_gone("b", &id, rp))
    })
    .await;
    assert!(net.complete_in("b", &id, &rps[3]), "the newest 2 are kept");
    assert_eq!(frozen_since(&net, "b", &id), None);
    for zone in ab {
        net.assert_consistent(zone).await;
    }
}
