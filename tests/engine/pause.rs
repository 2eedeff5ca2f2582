//! Pause and resume of a service's protection, on the emulator over HTTP
//! with the engines' clocks moved by the test: while paused no RP is taken
//! on schedule, no zone deletes a copy and the RPO reads `paused`; resuming
//! takes an RP at once, and retention goes on as before.

use crate::harness::*;
use drengine::engine::RpoLevel;
use drengine::model::{Pause, Retention, ServiceId};
use drengine::replica::Op;

const HOUR_MS: i64 = 3_600_000;

async fn set_paused(net: &Net, zone: &str, id: &ServiceId, pause: Option<Pause>) {
    net.db(zone)
        .write(
            Op::SetPaused {
                service: id.clone(),
                pause,
            },
            "ops",
        )
        .await
        .unwrap();
}

/// Reconciles both zones (relaying between them) with both clocks at
/// `offset_ms` from now.
async fn pass(net: &Net, clocks: &[&SkewedClock], offset_ms: i64) {
    for c in clocks {
        c.set_offset_ms(offset_ms);
    }
    for zone in ["a", "b"] {
        net.engine(zone).reconcile_once().await.unwrap();
        net.sync(&["a", "b"]).await;
    }
}

#[tokio::test]
async fn a_paused_service_takes_no_rp_and_loses_no_copy_until_it_is_resumed() {
    let mut net = Net::new(&["a", "b"], |_| {}).await;
    let (clock_a, clock_b) = (SkewedClock::default(), SkewedClock::default());
    net.clocks.insert(z("a"), clock_a.clock());
    net.clocks.insert(z("b"), clock_b.clock());
    net.open(&z("a")).await;
    net.open(&z("b")).await;
    let ab = ["a", "b"];
    let clocks = [&clock_a, &clock_b];
    let id = quiet_service("vm", 3600);
    // Keep the newest 1, and 2 hours' worth.
    let keep = Retention {
        keep_last: 1,
        keep_for_s: 2 * 3600,
    };
    net.protect_keeping("a", &id, &["d0", "d1"], "b", 3600, keep)
        .await;
    let mut rps = Vec::new();
    for _ in 0..2 {
        rps.push(net.engine("a").take_rp(&id, "cmp").await.unwrap());
    }
    net.settle("two RPs complete in b", &ab, |n| {
        rps.iter().all(|rp| n.complete_in("b", &id, rp))
    })
    .await;

    set_paused(
        &net,
        "a",
        &id,
        Some(Pause {
            by: "ops".into(),
            reason: "storage migration".into(),
        }),
    )
    .await;
    net.sync(&ab).await;
    // Five hours paused: five RPs would have been due, and both old RPs
    // would have aged out of a (keep-for 2 h, keep-last 1).
    for hour in 1..=5 {
        pass(&net, &clocks, hour * HOUR_MS).await;
    }
    let service = net.service("a", &id);
    assert_eq!(service.rps.len(), 2, "no RP is taken while paused");
    for rp in &rps {
        assert!(net.complete_in("a", &id, rp), "a deleted {rp} while paused");
        assert!(net.complete_in("b", &id, rp), "b deleted {rp} while paused");
    }
    assert_eq!(net.rp_snapshots("a").await.len(), 4, "2 RPs x 2 disks in a");
    for zone in ab {
        let rpo = net.engine(zone).status(&id).unwrap().rpo;
        assert_eq!(rpo.level, RpoLevel::Paused, "{zone}");
        assert!(
            !rpo.past_rpo,
            "{zone}: a paused service is not past its RPO"
        );
        assert!(rpo.rpo_age_s.is_some_and(|age| age >= 5.0 * 3600.0));
    }

    // Resumed ten minutes into the sixth hour: the schedule would wait for
    // the hour after the last RP, the resume takes one at once.
    set_paused(&net, "a", &id, None).await;
    pass(&net, &clocks, 5 * HOUR_MS + 600_000).await;
    let fresh = net
        .service("a", &id)
        .newest_rp(|rp| rp.origin == z("a"))
        .map(|rp| rp.id.clone())
        .expect("an RP");
    assert!(!rps.contains(&fresh), "the resume took an RP at once");
    net.settle("the fresh RP complete in b, old ones aged out", &ab, |n| {
        n.complete_in("b", &id, &fresh)
            && rps
                .iter()
                .all(|rp| n.copy_gone("a", &id, rp) && n.copy_gone("b", &id, rp))
    })
    .await;
    let rpo = net.engine("a").status(&id).unwrap().rpo;
    assert_ne!(rpo.level, RpoLevel::Paused);
    assert!(!rpo.past_rpo);
    // One more pass in the same hour takes nothing more: the resume counts once.
    pass(&net, &clocks, 5 * HOUR_MS + 660_000).await;
    let newest = net
        .service("a", &id)
        .newest_rp(|rp| rp.origin == z("a"))
        .map(|rp| rp.id.clone());
    assert_eq!(newest, Some(fresh), "no second RP for the same resume");
    for zone in ab {
        net.assert_consistent(zone).await;
    }
}
