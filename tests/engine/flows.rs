//! Planned migration and failback, revert, test failover, retention.

use crate::harness::*;
use drengine::emulator::FaultUpdate;
use drengine::engine::{naming, EngineError};
use drengine::model::CopyState;
use drengine::replica::{ConflictKind, Op};

fn stuck(net: &Net, stuck: bool) {
    net.dep
        .emulator()
        .set_faults(
            "a",
            &FaultUpdate {
                peer: Some("b".into()),
                stuck: Some(stuck),
                ..FaultUpdate::default()
            },
        )
        .unwrap();
}

/// Migration a → b refuses until the final RP (taken after a's VM was
/// stopped) is complete in b, then switches without an active-VM conflict;
/// replication turns around, and failback is the same migration back.
#[tokio::test]
async fn migration_waits_for_the_final_rp_then_fails_back() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let ab = ["a", "b"];
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0", "d1"], "b", 3600, 3).await;
    let before = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("an RP complete in b", &ab, |n| {
        n.complete_in("b", &id, &before)
    })
    .await;

    stuck(&net, true);
    let started = net
        .engine("a")
        .start_migration(&id, &z("b"), "cmp")
        .await
        .unwrap();
    assert_ne!(started.final_rp, before);
    assert!(!net.service("a", &id).slot(&z("a")).unwrap().active);
    // A retried start answers the same final RP.
    let again = net
        .engine("a")
        .start_migration(&id, &z("b"), "cmp")
        .await
        .unwrap();
    assert_eq!(again.final_rp, started.final_rp);

    // b has an older complete RP, but not the final one: refused.
    net.sync(&ab).await;
    net.engine("b").reconcile_once().await.unwrap();
    net.sync(&ab).await;
    match net.engine("b").complete_migration(&id, "cmp").await {
        Err(EngineError::Precondition(m)) => {
            assert!(m.contains(started.final_rp.as_str()), "{m}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(net.volumes_list("b").await.is_empty());

    stuck(&net, false);
    net.settle("final RP complete in b", &ab, |n| {
        n.complete_in("b", &id, &started.final_rp)
    })
    .await;
    let out = net
        .engine("b")
        .complete_migration(&id, "cmp")
        .await
        .unwrap();
    assert_eq!(out.rp, started.final_rp);
    net.settle("replication reversed", &ab, |n| {
        ab.iter()
            .all(|zone| n.service(zone, &id).policy.get().unwrap().recovery_zone == z("a"))
    })
    .await;
    for zone in ab {
        let conflicts = net.db(zone).read(|r| r.conflicts());
        assert!(
            !conflicts.iter().any(|c| c.kind == ConflictKind::ActiveVms),
            "{zone}"
        );
    }

    // Failback: the same migration, b → a.
    let back = net
        .engine("b")
        .start_migration(&id, &z("a"), "cmp")
        .await
        .unwrap();
    net.settle("final RP of the failback complete in a", &ab, |n| {
        n.complete_in("a", &id, &back.final_rp)
    })
    .await;
    let home = net
        .engine("a")
        .complete_migration(&id, "cmp")
        .await
        .unwrap();
    assert_eq!(home.rp, back.final_rp);
    let s = net.service("a", &id);
    assert_eq!(s.active_zones(), vec![z("a")]);
    net.settle("replication back to b", &ab, |n| {
        n.service("b", &id).policy.get().unwrap().recovery_zone == z("b")
    })
    .await;
    for zone in ab {
        net.assert_consistent(zone).await;
    }
}

/// Revert makes the VM's volumes copies of an RP again.
#[tokio::test]
async fn revert_to_an_older_rp() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0", "d1"], "b", 3600, 3).await;
    let rp1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    let rp2 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    let parent = |vols: &[drengine::storpool::VolumeInfo], name: &str| {
        vols.iter()
            .find(|v| v.name == name)
            .unwrap()
            .parent_name
            .clone()
    };
    let vols = net.volumes_list("a").await;
    assert_eq!(
        parent(&vols, "d0"),
        Some(naming::rp_snapshot_name(&id, &rp2, 0))
    );
    let out = net.engine("a").revert(&id, &rp1, "operator").await.unwrap();
    assert_eq!(out.rp, rp1);
    assert_eq!(out.volumes[1].volume, "d1");
    let vols = net.volumes_list("a").await;
    for (i, d) in ["d0", "d1"].iter().enumerate() {
        assert_eq!(
            parent(&vols, d),
            Some(naming::rp_snapshot_name(&id, &rp1, i))
        );
    }
    // Not where the VM is not active.
    net.sync(&["a", "b"]).await;
    assert!(matches!(
        net.engine("b").revert(&id, &rp1, "operator").await,
        Err(EngineError::Precondition(_))
    ));
}

/// Test failover: clones in the recovery zone, tagged, nothing activated;
/// the RP they come from is pinned until the clean-up removes them.
#[tokio::test]
async fn test_failover_and_cleanup() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let ab = ["a", "b"];
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0"], "b", 3600, 1).await;
    let rp1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("rp1 complete in b", &ab, |n| n.complete_in("b", &id, &rp1))
        .await;
    let out = net
        .engine("b")
        .test_failover(&id, None, "operator")
        .await
        .unwrap();
    assert_eq!(out.rp, rp1);
    let vols = net.volumes_list("b").await;
    assert_eq!(vols.len(), 1);
    assert!(naming::is_ours(
        &vols[0].tags,
        naming::Kind::Test,
        &id,
        Some(&rp1)
    ));
    assert!(
        net.service("b", &id).slot(&z("b")).is_none(),
        "nothing activated"
    );

    // A newer RP would let retention (keep 1) drop rp1 in b, but the test
    // clone depends on it.
    let rp2 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("rp2 complete in b", &ab, |n| n.complete_in("b", &id, &rp2))
        .await;
    for _ in 0..3 {
        net.engine("b").reconcile_once().await.unwrap();
    }
    assert!(net.complete_in("b", &id, &rp1), "pinned by the test clone");

    net.engine("b")
        .cleanup_test_failover(&id, "operator")
        .await
        .unwrap();
    assert!(net.volumes_list("b").await.is_empty());
    net.settle("rp1 deleted in b once unpinned", &ab, |n| {
        n.copy_gone("b", &id, &rp1)
    })
    .await;
    // Clean-up twice is fine.
    net.engine("b")
        .cleanup_test_failover(&id, "operator")
        .await
        .unwrap();
    for zone in ab {
        net.assert_consistent(zone).await;
    }
}

/// Retention (keep the last one) never deletes the newest RP complete in
/// the recovery zone, an RP on hold, or one failover volumes depend on;
/// a deleted service's snapshots are all cleaned up.
#[tokio::test]
async fn retention_keeps_what_must_be_kept() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let ab = ["a", "b"];
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0"], "b", 3600, 1).await;

    let held = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.db("a")
        .write(
            Op::SetHold {
                service: id.clone(),
                rp: held.clone(),
                hold: true,
            },
            "operator",
        )
        .await
        .unwrap();
    let safe = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("both complete in b", &ab, |n| {
        n.service("a", &id).rps[&safe].is_complete_in(&z("b"))
            && n.service("a", &id).rps[&held].is_complete_in(&z("b"))
    })
    .await;
    // The link stops: a newer RP cannot reach b.
    stuck(&net, true);
    let newest = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    for _ in 0..5 {
        net.sync(&ab).await;
        for zone in ab {
            net.engine(zone).reconcile_once().await.unwrap();
        }
    }
    let s = net.service("a", &id);
    assert!(s.rps[&held].is_complete_in(&z("a")), "held");
    assert!(
        s.rps[&safe].is_complete_in(&z("a")),
        "newest complete in the recovery zone"
    );
    assert!(s.rps[&newest].is_complete_in(&z("a")), "newest here");
    stuck(&net, false);
    // The older one is deleted in both zones, then its origin (a) forgets
    // it and b hears of that.
    net.settle(
        "newest complete in b, older one deleted and purged",
        &ab,
        |n| n.complete_in("b", &id, &newest) && ab.iter().all(|zone| n.purged(zone, &id, &safe)),
    )
    .await;
    assert!(net.complete_in("a", &id, &held) && net.complete_in("b", &id, &held));

    // b fails over from the newest RP: its volumes pin it there.
    let out = net
        .engine("b")
        .failover(&id, None, None, "operator")
        .await
        .unwrap();
    assert_eq!(out.rp, newest);
    // Deleting the service cleans up everything but the pinned and held copies.
    net.db("a")
        .write(
            Op::DeleteService {
                service: id.clone(),
            },
            "operator",
        )
        .await
        .unwrap();
    net.settle("copies of the deleted service gone", &ab, |n| {
        let s = n.service("a", &id);
        s.rps[&newest].copy_state(&z("a")) == Some(&CopyState::Deleted)
    })
    .await;
    assert!(
        net.complete_in("b", &id, &newest),
        "failover volumes depend on it"
    );
    assert!(net.complete_in("a", &id, &held) && net.complete_in("b", &id, &held));
    // Once the failover volumes are gone and the hold is released, nothing is left.
    for v in &out.volumes {
        net.sp(&z("b")).volume_delete(&v.volume).await.unwrap();
    }
    net.db("b")
        .write(
            Op::SetHold {
                service: id.clone(),
                rp: held.clone(),
                hold: false,
            },
            "operator",
        )
        .await
        .unwrap_or_else(|e| panic!("release hold: {e}"));
    net.settle("every copy deleted and every RP purged", &ab, |n| {
        ab.iter().all(|zone| n.service(zone, &id).rps.is_empty())
    })
    .await;
    for zone in ab {
        assert!(net.rp_snapshots(zone).await.is_empty(), "{zone}");
        net.assert_consistent(zone).await;
    }
}
