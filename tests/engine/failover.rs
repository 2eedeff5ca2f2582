//! Failover stories, against the StorPool emulator over HTTP.

use crate::harness::*;
use drengine::engine::{naming, EngineError};
use drengine::replica::ConflictKind;

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
        .failover(&id, None, None, "operator")
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
        .failover(&id, None, None, "operator")
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
    match net.engine("b").failover(&id, None, None, "operator").await {
        Err(EngineError::Precondition(m)) => assert!(m.contains("no recovery point"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(net.volumes_list("b").await.is_empty());
    let conflicts = net.db("b").read(|r| r.conflicts());
    assert!(!conflicts.iter().any(|c| c.kind == ConflictKind::ActiveVms));
}

fn active_vm_conflict_zones(net: &Net, zone: &str) -> Option<Vec<String>> {
    net.db(zone).read(|r| {
        r.conflicts()
            .into_iter()
            .find(|c| c.kind == ConflictKind::ActiveVms)
            .map(|c| c.sides.iter().map(|s| s.zone.to_string()).collect())
    })
}

/// The story operators pay for: zone a (primary) goes dark, b fails over;
/// a comes back still running its VM, so every zone shows the active-VM
/// conflict and both sides keep being protected; an operator resolves it
/// in a by marking a's VM inactive, and replication turns around, b → a.
#[tokio::test]
async fn failover_while_primary_down_then_conflict_resolved() {
    let mut net = Net::new(&["a", "b", "c"], |_| {}).await;
    let all = ["a", "b", "c"];
    let id = svc("vm1");
    net.protect("a", &id, &["vm1-d0", "vm1-d1"], "b", 3600, 5)
        .await;
    let rp1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("rp1 complete in b, seen everywhere", &all, |n| {
        all.iter().all(|zone| {
            n.service(zone, &id)
                .rps
                .get(&rp1)
                .is_some_and(|rp| rp.is_complete_in(&z("b")))
        })
    })
    .await;

    // Zone a is cut off: its node stops, nothing is relayed to or from it.
    net.engine("a").shutdown().await;
    let bc = ["b", "c"];
    let out = net
        .engine("b")
        .failover(&id, None, None, "operator-b")
        .await
        .unwrap();
    assert_eq!(out.rp, rp1);
    net.sync(&bc).await;
    assert!(net.service("c", &id).slot(&z("b")).unwrap().active);
    // b protects its own VM meanwhile (locally: the policy still names b).
    let rp_b = net.engine("b").take_rp(&id, "cmp-b").await.unwrap();

    // a's node comes back (restarted from its database). It never learned
    // of the failover, and its VM kept running: it takes an RP of it.
    net.open(&z("a")).await;
    let rp_a2 = net.engine("a").take_rp(&id, "cmp-a").await.unwrap();

    // a reconnects: the conflict shows in all three zones, with both sides.
    net.sync(&all).await;
    for zone in all {
        let sides = active_vm_conflict_zones(&net, zone)
            .unwrap_or_else(|| panic!("zone {zone} does not show the active-VM conflict"));
        assert_eq!(sides, vec!["a".to_string(), "b".to_string()], "zone {zone}");
    }
    // Both sides stay protected: a's new RP reaches b, b's stays in b.
    net.settle(
        "a's RP taken during the partition complete in b",
        &all,
        |n| n.complete_in("b", &id, &rp_a2),
    )
    .await;
    assert!(net.complete_in("b", &id, &rp_b));

    // The operator resolves it in a: a's VM is marked inactive.
    let mut slot = net.service("a", &id).slot(&z("a")).unwrap().clone();
    slot.active = false;
    net.db("a")
        .write(
            drengine::replica::Op::SetSlot {
                service: id.clone(),
                zone: z("a"),
                slot: Some(slot),
            },
            "operator-a",
        )
        .await
        .unwrap();
    net.settle(
        "conflict gone and replication reversed everywhere",
        &all,
        |n| {
            all.iter().all(|zone| {
                active_vm_conflict_zones(n, zone).is_none()
                    && n.service(zone, &id).policy.get().unwrap().recovery_zone == z("a")
            })
        },
    )
    .await;

    // Replication now runs b → a: a new RP of b completes in a, and b's RP
    // from the partition follows it there.
    let rp_b2 = net.engine("b").take_rp(&id, "cmp-b").await.unwrap();
    net.settle("b's RPs complete in a", &all, |n| {
        n.complete_in("a", &id, &rp_b2) && n.complete_in("a", &id, &rp_b)
    })
    .await;
    let rpo = net.engine("b").status(&id).unwrap().rpo;
    assert!(!rpo.past_rpo && rpo.rpo_age_s.is_some(), "{rpo:?}");
    for zone in all {
        net.assert_consistent(zone).await;
    }
}

/// A failover may name a new recovery zone. Without one, the new VM's RPs
/// stay in b (the old recovery zone) until the active-VM conflict is
/// resolved, and the RPO status says they are kept only locally; with one,
/// the policy names it in the same write that marks the VM active, and b's
/// next RP is complete in c. Refused recovery zones change nothing: b
/// itself, a zone not configured, one b's cluster has no link to.
#[tokio::test]
async fn failover_naming_a_recovery_zone_protects_the_new_vm_at_once() {
    let net = Net::new(&["a", "b", "c"], |_| {}).await;
    let all = ["a", "b", "c"];
    let (id, plain) = (svc("vm1"), svc("vm2"));
    net.protect("a", &id, &["vm1-d0"], "b", 3600, 5).await;
    net.protect("a", &plain, &["vm2-d0"], "b", 3600, 5).await;
    let rp1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    let rp2 = net.engine("a").take_rp(&plain, "cmp").await.unwrap();
    net.settle("both RPs complete in b", &all, |n| {
        n.complete_in("b", &id, &rp1) && n.complete_in("b", &plain, &rp2)
    })
    .await;
    // A migration to a zone a's cluster has no link to is refused too,
    // before the VM is marked stopped.
    let unlink = |cluster: &str, peer: &str, on: bool| {
        net.dep
            .emulator()
            .set_faults(
                cluster,
                &drengine::emulator::FaultUpdate {
                    peer: Some(peer.into()),
                    unlinked: Some(on),
                    ..Default::default()
                },
            )
            .unwrap()
    };
    unlink("a", "b", true);
    match net
        .engine("a")
        .start_migration(&plain, &z("b"), "operator")
        .await
    {
        Err(EngineError::InvalidInput(e)) => {
            assert_eq!(e.field_name(), "target");
            assert!(
                e.to_string().contains("no link to zone b; it can reach: c"),
                "{e}"
            );
        }
        other => panic!("migration: {other:?}"),
    }
    assert!(net.service("a", &plain).slot(&z("a")).unwrap().active);
    unlink("a", "b", false);

    net.engine("a").shutdown().await;
    let bc = ["b", "c"];
    let rules = net.engine_cfg.rpo_rules();
    let rpo_in_b = |id: &drengine::model::ServiceId| {
        drengine::engine::rpo::rpo(&net.service("b", id), net.engine_cfg.clock.now_ms(), &rules)
    };

    // Without a recovery zone: b's RPs are kept only in b.
    net.engine("b")
        .failover(&plain, None, None, "operator")
        .await
        .unwrap();
    let st = rpo_in_b(&plain);
    assert_eq!(st.kept_only_in, vec![z("b")], "{st:?}");
    assert!(st.level >= drengine::engine::RpoLevel::Warning, "{st:?}");

    // Refused: b itself, an unknown zone, then c while b's cluster has no
    // link to c's. Nothing is written, no volume made.
    unlink("b", "c", true);
    let vv = net.db("b").read(|r| r.vv().clone());
    let volumes = net.volumes_list("b").await.len();
    for (rz, want) in [
        ("b", "is this zone"),
        ("zz", "not a configured zone"),
        ("c", "has no link to zone c; it can reach: a"),
    ] {
        match net
            .engine("b")
            .failover(&id, None, Some(&z(rz)), "operator")
            .await
        {
            Err(EngineError::InvalidInput(e)) => {
                assert_eq!(e.field_name(), "recovery_zone");
                assert!(e.to_string().contains(want), "{rz}: {e}");
            }
            other => panic!("recovery zone {rz}: {other:?}"),
        }
    }
    // The dry run refuses alike (it judges the links as last read).
    let peers = drengine::engine::preflight::Peers::new();
    match net
        .engine("b")
        .preview_failover(&id, None, Some(&z("c")), &peers)
    {
        Err(EngineError::InvalidInput(e)) => assert!(e.to_string().contains("no link"), "{e}"),
        other => panic!("dry run: {other:?}"),
    }
    assert_eq!(net.db("b").read(|r| r.vv().clone()), vv, "a refusal wrote");
    assert_eq!(net.volumes_list("b").await.len(), volumes);
    unlink("b", "c", false);

    // Naming c: the slot and the policy are written together (one
    // command, decided and committed in one writer step).
    // (Once the links are read again: a check re-reads them when the last
    // read is over a second old.)
    let out = wait_for(
        "a failover naming c passes once linked",
        SETTLE_WAIT,
        || async {
            match net
                .engine("b")
                .failover(&id, None, Some(&z("c")), "operator")
                .await
            {
                Ok(out) => Some(out),
                Err(EngineError::InvalidInput(e)) if e.to_string().contains("no link") => None,
                Err(e) => panic!("{e:?}"),
            }
        },
    )
    .await;
    assert_eq!(out.rp, rp1);
    let again = net
        .engine("b")
        .preview_failover(&id, None, Some(&z("c")), &peers)
        .unwrap();
    assert!(again.changes_nothing, "{again:?}");
    assert_eq!(
        again.protection,
        Some(drengine::engine::preflight::Protection {
            rps_go_to: Some(z("c")),
            storage_link: Some(true),
        })
    );
    let s = net.service("b", &id);
    assert!(s.slot(&z("b")).unwrap().active);
    assert_eq!(s.policy.get().unwrap().recovery_zone, z("c"));
    let mine: Vec<_> = net
        .db("b")
        .store()
        .events_of(&z("b"), vv.get(&z("b")), 16)
        .unwrap();
    let ops: Vec<&str> = mine
        .iter()
        .map(|e| match &e.event.op {
            drengine::replica::Op::SetSlot { .. } => "slot",
            drengine::replica::Op::SetPolicy { .. } => "policy",
            drengine::replica::Op::Record { .. } => "record",
            _ => "other",
        })
        .collect();
    assert_eq!(ops, ["slot", "policy", "record"], "{mine:?}");
    let st = rpo_in_b(&id);
    assert!(
        st.kept_only_in.is_empty(),
        "a's and b's RPs both go to c: {st:?}"
    );

    // b's next RP is replicated to c at once.
    let rp_b = net.engine("b").take_rp(&id, "cmp-b").await.unwrap();
    net.settle("b's RP complete in c", &bc, |n| {
        n.complete_in("c", &id, &rp_b)
    })
    .await;
    // (c also wants a's older RPs now, which a, down, never sent it: a
    // pull waits in c's journal, so only b is checked for leftovers.)
    net.assert_consistent("b").await;
}
