//! Crash safety: the reconciler is killed at every StorPool call of a step
//! in turn (just before it is sent, and just after StorPool carried it
//! out); a fresh engine over the same redb file and the same emulator must
//! finish or undo the step with no duplicate, leaked or lost snapshot.

use crate::harness::*;
use drengine::engine::{CrashPoint, EngineError};
use drengine::model::ServiceId;

const MAX_CALLS_PER_STEP: u64 = 12;

fn points(n: u64) -> [CrashPoint; 2] {
    [CrashPoint::BeforeCall(n), CrashPoint::AfterCall(n)]
}

async fn protected_pair(disks: &[&str], keep_last: u32) -> (Net, ServiceId) {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, disks, "b", 3600, keep_last).await;
    (net, id)
}

fn rps_of(net: &Net, zone: &str, id: &ServiceId) -> usize {
    net.service(zone, id).rps.len()
}

/// Taking an RP: journal, group snapshot, exports, record.
#[tokio::test]
async fn taking_an_rp_survives_a_crash_at_every_call() {
    for n in 1..=MAX_CALLS_PER_STEP {
        let mut finished = false;
        for point in points(n) {
            let (mut net, id) = protected_pair(&["d0", "d1"], 3).await;
            net.engine("a").set_crash_point(Some(point));
            match net.engine("a").take_rp(&id, "cmp").await {
                Ok(_) => finished = true,
                Err(EngineError::NotRunning) => {}
                Err(e) => panic!("{point:?}: {e}"),
            }
            // Killed: a fresh engine over the same database finishes the RP.
            net.open(&z("a")).await;
            net.settle(
                &format!("{point:?}: the RP completes in b"),
                &["a", "b"],
                |n| {
                    n.service("a", &id)
                        .rps
                        .values()
                        .any(|rp| rp.is_complete_in(&z("b")))
                },
            )
            .await;
            assert_eq!(rps_of(&net, "a", &id), 1, "{point:?}: exactly one RP");
            assert_eq!(net.rp_snapshots("a").await.len(), 2, "{point:?}");
            net.assert_consistent("a").await;
            net.assert_consistent("b").await;
        }
        if finished {
            eprintln!("an RP takes {} StorPool calls", n - 1);
            assert!(
                n > 2,
                "the sweep covered the group snapshot and the exports"
            );
            return;
        }
    }
    panic!("taking an RP never finished within {MAX_CALLS_PER_STEP} calls");
}

/// Copying an RP into the recovery zone: journal, pulls, completion checks.
#[tokio::test]
async fn copying_an_rp_survives_a_crash_at_every_call() {
    for n in 1..=MAX_CALLS_PER_STEP {
        let mut finished = false;
        for point in points(n) {
            let (mut net, id) = protected_pair(&["d0", "d1"], 3).await;
            let rp = net.engine("a").take_rp(&id, "cmp").await.unwrap();
            net.sync(&["a", "b"]).await;
            net.engine("b").set_crash_point(Some(point));
            // Step b until its copy is complete, or until the crash point.
            let crashed = loop {
                match net.engine("b").reconcile_once().await {
                    Err(EngineError::NotRunning) => break true,
                    Err(e) => panic!("{point:?}: {e}"),
                    Ok(_) if net.complete_in("b", &id, &rp) => break false,
                    Ok(_) => tokio::task::yield_now().await,
                }
            };
            finished |= !crashed;
            net.open(&z("b")).await;
            net.settle(
                &format!("{point:?}: the copy completes"),
                &["a", "b"],
                |n| n.complete_in("b", &id, &rp),
            )
            .await;
            assert_eq!(net.rp_snapshots("b").await.len(), 2, "{point:?}");
            net.assert_consistent("a").await;
            net.assert_consistent("b").await;
        }
        if finished {
            return;
        }
    }
    panic!("copying an RP never finished within {MAX_CALLS_PER_STEP} calls");
}

/// Retention deleting copies in both zones.
#[tokio::test]
async fn retention_survives_a_crash_at_every_call() {
    for n in 1..=MAX_CALLS_PER_STEP {
        let mut finished = false;
        for point in points(n) {
            let (mut net, id) = protected_pair(&["d0", "d1"], 1).await;
            let old = net.engine("a").take_rp(&id, "cmp").await.unwrap();
            net.settle("first RP complete in b", &["a", "b"], |n| {
                n.service("a", &id).rps[&old].is_complete_in(&z("b"))
            })
            .await;
            let new = net.engine("a").take_rp(&id, "cmp").await.unwrap();
            net.settle("second RP complete in b", &["a", "b"], |n| {
                n.service("a", &id).rps[&new].is_complete_in(&z("b"))
            })
            .await;
            // Now retention (keep 1) deletes the old copy in both zones.
            let mut crashed = false;
            for zone in ["a", "b"] {
                net.engine(zone).set_crash_point(Some(point));
                match net.engine(zone).reconcile_once().await {
                    Err(EngineError::NotRunning) => crashed = true,
                    Err(e) => panic!("{point:?}: {e}"),
                    Ok(_) => net.engine(zone).set_crash_point(None),
                }
                net.sync(&["a", "b"]).await;
            }
            finished |= !crashed;
            net.open(&z("a")).await;
            net.open(&z("b")).await;
            net.settle(
                &format!("{point:?}: the old copies are deleted"),
                &["a", "b"],
                |n| ["a", "b"].iter().all(|zone| n.copy_gone(zone, &id, &old)),
            )
            .await;
            for zone in ["a", "b"] {
                assert!(
                    net.complete_in(zone, &id, &new),
                    "{point:?}: the newest stays in {zone}"
                );
                assert_eq!(net.rp_snapshots(zone).await.len(), 2, "{point:?} {zone}");
                net.assert_consistent(zone).await;
            }
        }
        if finished {
            return;
        }
    }
    panic!("retention never finished within {MAX_CALLS_PER_STEP} calls");
}

/// A failover killed half way leaves no volumes behind once the restarted
/// engine has looked, and a retried failover succeeds with one set of volumes.
#[tokio::test]
async fn failover_survives_a_crash_at_every_call() {
    for n in 1..=MAX_CALLS_PER_STEP {
        let mut finished = false;
        for point in points(n) {
            let (mut net, id) = protected_pair(&["d0", "d1"], 3).await;
            let rp = net.engine("a").take_rp(&id, "cmp").await.unwrap();
            net.settle("RP complete in b", &["a", "b"], |n| {
                n.complete_in("b", &id, &rp)
            })
            .await;
            net.engine("b").set_crash_point(Some(point));
            match net.engine("b").failover(&id, None, None, "operator").await {
                Ok(_) => finished = true,
                Err(EngineError::NotRunning) => {}
                Err(e) => panic!("{point:?}: {e}"),
            }
            net.open(&z("b")).await;
            if !finished {
                // The restarted engine undoes the half-made failover...
                net.engine("b").reconcile_once().await.unwrap();
                assert!(
                    net.volumes_list("b").await.is_empty(),
                    "{point:?}: volumes left"
                );
                assert!(!net
                    .service("b", &id)
                    .slot(&z("b"))
                    .is_some_and(|s| s.active));
                // ...and the operator's retry succeeds.
                net.engine("b")
                    .failover(&id, None, None, "operator")
                    .await
                    .unwrap();
            }
            assert_eq!(net.volumes_list("b").await.len(), 2, "{point:?}");
            assert!(net.service("b", &id).slot(&z("b")).unwrap().active);
            net.assert_consistent("b").await;
        }
        if finished {
            return;
        }
    }
    panic!("failover never finished within {MAX_CALLS_PER_STEP} calls");
}
