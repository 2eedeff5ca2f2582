//! Failover stories, against the StorPool emulator over HTTP.

mod engine_support;

use drengine::engine::{naming, EngineError};
use drengine::replica::ConflictKind;
use engine_support::*;

/// A VM protected in zone a replicates to b; a goes dark; b fails over
/// from the newest RP complete there and gets volumes cloned from it.
#[tokio::test]
async fn rp_replicates_then_failover_while_primary_down() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let id = svc("vm1");
    net.protect("a", &id, &["vm1-d0", "vm1-d1"], "b", 3600, 3)
        .await;

    let rp = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    let s = net.service("a", &id);
    let recorded = &s.rps[&rp];
    assert_eq!(recorded.disks.len(), 2);
    assert_eq!(
        recorded.disks[0].snapshot,
        naming::rp_snapshot_name(&id, &rp, 0)
    );
    assert_eq!(recorded.metadata, "vm config of vm1");
    assert_eq!(net.rp_snapshots("a").await.len(), 2);

    net.settle("RP complete in b", &["a", "b"], |n| {
        n.complete_in("b", &id, &rp) && n.service("a", &id).rps[&rp].is_complete_in(&z("b"))
    })
    .await;
    net.assert_consistent("a").await;
    net.assert_consistent("b").await;

    // Zone a is unreachable from here on: no relaying, no engine.
    let out = net
        .engine("b")
        .failover(&id, None, "operator")
        .await
        .unwrap();
    assert_eq!(out.rp, rp);
    assert_eq!(out.metadata, "vm config of vm1");
    assert_eq!(out.volumes.len(), 2);
    let vols = net.volumes_list("b").await;
    for (i, v) in out.volumes.iter().enumerate() {
        let made = vols
            .iter()
            .find(|x| x.name == v.volume)
            .expect("volume made");
        assert_eq!(
            made.parent_name.as_deref(),
            Some(naming::rp_snapshot_name(&id, &rp, i).as_str())
        );
        assert_eq!(v.disk, format!("vm1-d{i}"));
    }
    let s = net.service("b", &id);
    let slot = s.slot(&z("b")).unwrap();
    assert!(slot.active);
    assert_eq!(
        slot.disks,
        out.volumes
            .iter()
            .map(|v| v.volume.clone())
            .collect::<Vec<_>>()
    );

    // A retried failover answers the same; no second set of volumes.
    let again = net
        .engine("b")
        .failover(&id, None, "operator")
        .await
        .unwrap();
    assert_eq!(again, out);
    assert_eq!(net.volumes_list("b").await.len(), 2);
    net.assert_consistent("b").await;
}

/// Failover refuses when nothing is complete locally, naming the reason.
#[tokio::test]
async fn failover_refuses_without_a_complete_rp() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let id = svc("vm1");
    net.protect("a", &id, &["vm1-d0"], "b", 3600, 3).await;
    net.sync(&["a", "b"]).await;
    match net.engine("b").failover(&id, None, "operator").await {
        Err(EngineError::Precondition(m)) => assert!(m.contains("no recovery point"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(net.volumes_list("b").await.is_empty());
    let conflicts = net.db("b").read(|r| r.conflicts());
    assert!(!conflicts.iter().any(|c| c.kind == ConflictKind::ActiveVms));
}
