//! A zone that comes back loses nothing and cannot be fed forged state:
//! the engine touches only the StorPool objects it made for a service and
//! RP, and RP order and RPO do not rest on one zone's raw wall clock.

use crate::harness::*;
use drengine::engine::{naming, schedule, EngineError};
use drengine::model::{CopyState, RpDisk, RpId, ServiceId};
use drengine::replica::{Hlc, Op, MAX_CLOCK_DRIFT_MS};
use drengine::storpool::{SnapshotUpdate, Tags, VolumeSnapshot};
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;

fn foreign_copy(net: &Net, zone: &str, id: &ServiceId, rp: &RpId) -> bool {
    net.service(zone, id)
        .rps
        .get(rp)
        .and_then(|r| r.copy_state(&z(zone)))
        == Some(&CopyState::Failed {
            error: naming::FOREIGN_SNAPSHOT.into(),
        })
}

/// A hostile zone-a signs an RP whose disk names the globalId of an
/// unrelated snapshot in zone-b's cluster. zone-b's StorPool answers the
/// copy with `objectExists`; the engine does not take that as done, since
/// the snapshot is not its copy of that RP: the copy is recorded failed,
/// the service shows why, and neither retention nor the service's deletion
/// ever deletes the snapshot. Honest RPs go on as before.
#[tokio::test]
async fn a_forged_rp_cannot_make_the_recovery_zone_adopt_or_delete_a_snapshot() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let ab = ["a", "b"];
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0"], "b", 3600, 1).await;
    // zone-b's cluster holds a snapshot that has nothing to do with DR.
    net.volumes("b", &["db"]).await;
    let victim = net
        .sp(&z("b"))
        .volume_snapshot(
            "db",
            &VolumeSnapshot {
                name: Some("db@nightly".into()),
                ..VolumeSnapshot::default()
            },
        )
        .await
        .unwrap()
        .snapshot_global_id;
    net.sync(&ab).await;

    // zone-a's node writes (and signs, with zone-a's key) an RP naming it.
    // The rules accept it: the snapshot name is the RP's own and the
    // globalId well formed; which cluster a globalId is from cannot be
    // told from the event. zone-b ingests it as sync would.
    let forged = RpId::new("a.666").unwrap();
    net.db("a")
        .write(
            Op::CreateRp {
                service: id.clone(),
                rp: forged.clone(),
                disks: vec![RpDisk {
                    volume: "d0".into(),
                    snapshot: naming::rp_snapshot_name(&id, &forged, 0),
                    global_id: victim.clone(),
                }],
                metadata: "forged".into(),
                taken: Hlc {
                    wall_ms: now_ms(),
                    logical: 0,
                },
            },
            "node",
        )
        .await
        .unwrap();
    net.relay(&z("a"), &z("b")).await;
    assert!(net.service("b", &id).rps.contains_key(&forged));

    net.engine("b").reconcile_once().await.unwrap();
    assert!(
        foreign_copy(&net, "b", &id, &forged),
        "b's copy of the forged RP is recorded failed: {:?}",
        net.service("b", &id).rps[&forged].copy_state(&z("b"))
    );
    let error = net.engine("b").status(&id).unwrap().last_error;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains(naming::FOREIGN_SNAPSHOT) && e.contains(forged.as_str())),
        "the service shows the refusal: {error:?}"
    );
    let untouched = |net: &Net| {
        let sp = net.sp(&z("b"));
        let victim = victim.clone();
        async move {
            let s = sp.snapshot_opt(&format!("~{victim}")).await.unwrap();
            let s = s.expect("the unrelated snapshot still exists");
            assert!(!s.deleted, "the unrelated snapshot is not being deleted");
            assert_eq!(s.name, "db@nightly");
            assert!(s.tags.is_empty(), "no tags were put on it: {:?}", s.tags);
        }
    };
    untouched(&net).await;

    // Honest RPs still flow, and retention (keep 1) runs in b.
    let rp1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("rp1 complete in b", &ab, |n| n.complete_in("b", &id, &rp1))
        .await;
    let rp2 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("rp2 complete in b, rp1 deleted there", &ab, |n| {
        n.complete_in("b", &id, &rp2) && n.copy_gone("b", &id, &rp1)
    })
    .await;
    untouched(&net).await;

    // Deleting the service deletes every copy that is the engine's, and
    // nothing else.
    net.db("a")
        .write(
            Op::DeleteService {
                service: id.clone(),
            },
            "operator",
        )
        .await
        .unwrap();
    net.settle("every RP of the deleted service purged", &ab, |n| {
        ab.iter().all(|zone| n.service(zone, &id).rps.is_empty())
    })
    .await;
    untouched(&net).await;
    for zone in ab {
        assert!(net.rp_snapshots(zone).await.is_empty(), "{zone}");
        net.assert_consistent(zone).await;
    }
}

/// A snapshot that no longer carries the name or tags the engine gave it
/// (an operator renamed or re-tagged it) is not the engine's any more:
/// failover does not clone it, retention does not delete it (the copy is
/// recorded failed instead), revert does not revert to it.
#[tokio::test]
async fn the_engine_never_deletes_clones_or_reverts_to_what_is_not_its_own() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let ab = ["a", "b"];
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0"], "b", 3600, 1).await;
    let rp1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("rp1 complete in b", &ab, |n| n.complete_in("b", &id, &rp1))
        .await;
    let gid1 = net.service("b", &id).rps[&rp1].disks[0].global_id.clone();
    net.sp(&z("b"))
        .snapshot_update(
            &format!("~{gid1}"),
            &SnapshotUpdate {
                rename: Some("kept-by-operator".into()),
                ..SnapshotUpdate::default()
            },
        )
        .await
        .unwrap();

    match net
        .engine("b")
        .failover(&id, Some(&rp1), None, "operator")
        .await
    {
        Err(EngineError::Precondition(m)) => {
            assert!(m.contains(naming::FOREIGN_SNAPSHOT), "{m}")
        }
        other => panic!("failover from a renamed snapshot: {other:?}"),
    }
    assert!(net.volumes_list("b").await.is_empty(), "nothing cloned");
    assert!(net
        .engine("b")
        .status(&id)
        .unwrap()
        .last_error
        .is_some_and(|e| e.contains(naming::FOREIGN_SNAPSHOT)));

    // rp2 makes retention (keep 1) want rp1's copy in b gone: refused.
    let rp2 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.settle("rp2 complete in b, rp1's copy refused there", &ab, |n| {
        n.complete_in("b", &id, &rp2) && foreign_copy(n, "b", &id, &rp1)
    })
    .await;
    let kept = net.sp(&z("b")).snapshot("kept-by-operator").await.unwrap();
    assert!(!kept.deleted && kept.global_id == gid1);

    // In a, rp2's snapshot loses its RP tag: no revert to it.
    let gid2 = net.service("a", &id).rps[&rp2].disks[0].global_id.clone();
    let mut untag = Tags::new();
    untag.insert(naming::TAG_RP.into(), String::new());
    net.sp(&z("a"))
        .snapshot_update(
            &format!("~{gid2}"),
            &SnapshotUpdate {
                tags: Some(untag),
                ..SnapshotUpdate::default()
            },
        )
        .await
        .unwrap();
    match net.engine("a").revert(&id, &rp2, "operator").await {
        Err(EngineError::Precondition(m)) => {
            assert!(m.contains(naming::FOREIGN_SNAPSHOT), "{m}")
        }
        other => panic!("revert to an untagged snapshot: {other:?}"),
    }
    let d0 = net.sp(&z("a")).volume("d0").await.unwrap();
    assert_eq!(
        d0.parent_name,
        Some(naming::rp_snapshot_name(&id, &rp2, 0)),
        "d0 untouched (still on the snapshot rp2 took of it)"
    );
    let s = net.sp(&z("a")).snapshot(&format!("~{gid2}")).await.unwrap();
    assert!(!s.deleted);
}

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
    assert!(r1.taken.wall_ms > now_ms() + MAX_CLOCK_DRIFT_MS);
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
    let back_at = now_ms();
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
        .failover(&id, None, None, "operator")
        .await
        .unwrap();
    assert_eq!(out.rp, r3);
}

/// The origin may purge an RP before it learns that the recovery zone is
/// copying it (the puller's intent is only local): zone-b records its copy
/// transferring while zone-a, not having heard of it, deletes its own copy
/// by retention and purges the RP. Once the purge reaches zone-b, its copy
/// is deleted there too (the pull intent still names it), not left behind.
#[tokio::test]
async fn a_copy_of_an_rp_purged_under_it_is_deleted() {
    let net = Net::new(&["a", "b"], |_| {}).await;
    let id = quiet_service("vm", 3600);
    net.protect("a", &id, &["d0", "d1"], "b", 3600, 1).await;
    net.sync(&["a", "b"]).await;
    let rp1 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    net.relay(&z("a"), &z("b")).await;
    // zone-b copies rp1; zone-a hears nothing of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while net.service("b", &id).rps[&rp1]
        .copy_state(&z("b"))
        .is_none()
    {
        assert!(Instant::now() < deadline, "zone-b never started its copy");
        let _ = net.engine("b").reconcile_once().await;
    }
    let of_rp1 = |snaps: Vec<drengine::storpool::SnapshotInfo>| {
        snaps
            .into_iter()
            .filter(|s| s.tags.get(naming::TAG_RP).map(String::as_str) == Some(rp1.as_str()))
            .count()
    };
    assert_eq!(of_rp1(net.rp_snapshots("b").await), 2);
    // zone-a takes rp2; retention (keep 1) deletes its rp1 and purges it.
    let _rp2 = net.engine("a").take_rp(&id, "cmp").await.unwrap();
    while !net.purged("a", &id, &rp1) {
        assert!(Instant::now() < deadline, "zone-a never purged rp1");
        let _ = net.engine("a").reconcile_once().await;
    }
    // The purge reaches zone-b: its copy of rp1 goes.
    loop {
        net.sync(&["a", "b"]).await;
        if net.purged("b", &id, &rp1) && of_rp1(net.rp_snapshots("b").await) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "zone-b kept {} snapshots of the purged rp1",
            of_rp1(net.rp_snapshots("b").await)
        );
        let _ = net.engine("b").reconcile_once().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    net.assert_consistent("b").await;
}
