//! The StorPool client against the emulator, over real HTTP on loopback.
//!
//! Each test starts its own emulator in-process on free ports. Waits are conditions with
//! deadlines, never bare sleeps.

use std::time::Duration;

use crate::support::wait_until;

use drengine::emulator::{DownMode, Emulator, EmulatorConfig, EmulatorHandle, FaultUpdate};
use drengine::storpool::names::global_id_ref;
use drengine::storpool::*;

const TOKEN: &str = "4242";
const MIB: u64 = 1024 * 1024;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn emulator(cfg: EmulatorConfig) -> EmulatorHandle {
    let h = Emulator::start(cfg).await.expect("emulator starts");
    eprintln!("emulator seed {}", h.seed());
    h
}

/// A client of `cluster` that retries quickly (tests should not wait on backoff).
fn client(h: &EmulatorHandle, cluster: &str) -> StorPoolClient {
    let mut cfg = h.storpool_config(cluster).expect("cluster exists");
    cfg.backoff_initial_ms = 1;
    cfg.backoff_max_ms = 20;
    cfg.timeout_ms = 5_000;
    StorPoolClient::new(cfg).expect("valid config")
}

async fn new_volume(c: &StorPoolClient, name: &str, size: u64) -> VolumeCreated {
    c.volume_create(&VolumeCreate {
        name: Some(name.into()),
        size: Some(size),
        tags: Some(tags(&[("drengine.service", "svc1")])),
        ..Default::default()
    })
    .await
    .expect("volume created")
}

#[tokio::test]
async fn volumes_and_local_snapshots_round_trip() {
    let h = emulator(EmulatorConfig::local(&["a"], TOKEN)).await;
    let a = client(&h, "a");

    let created = new_volume(&a, "vm1-disk0", 8 * MIB).await;
    let gid = created.global_id.expect("globalId");
    assert!(names::is_global_id(&gid), "{gid}");
    new_volume(&a, "vm1-disk1", 8 * MIB).await;

    let vols = a.volumes_list().await.unwrap();
    assert_eq!(vols.len(), 2);
    let v = a.volume(&global_id_ref(&gid)).await.unwrap();
    assert_eq!(v.name, "vm1-disk0");
    assert_eq!(v.size, 8 * MIB);
    assert_eq!(v.tags["drengine.service"], "svc1");
    assert!(a.volume_opt("nope").await.unwrap().is_none());

    // One snapshot of one volume; it becomes the volume's parent.
    let s = a
        .volume_snapshot(
            "vm1-disk0",
            &VolumeSnapshot {
                name: Some("svc1.rp0.disk0".into()),
                tags: Some(tags(&[("drengine.rp", "rp0")])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        a.volume("vm1-disk0").await.unwrap().parent_name.as_deref(),
        Some("svc1.rp0.disk0")
    );

    // A group snapshot: one instant, all volumes.
    let group = a
        .volumes_group_snapshot(&GroupSnapshot {
            volumes: vec![
                GroupSnapshotVolume {
                    volume: "vm1-disk0".into(),
                    name: Some("svc1.rp1.disk0".into()),
                    tags: None,
                },
                GroupSnapshotVolume {
                    volume: "vm1-disk1".into(),
                    name: Some("svc1.rp1.disk1".into()),
                    tags: None,
                },
            ],
            tags: Some(tags(&[("drengine.rp", "rp1")])),
        })
        .await
        .unwrap();
    assert_eq!(group.len(), 2);
    let snap = a.snapshot("svc1.rp1.disk0").await.unwrap();
    assert_eq!(snap.global_id, group[0].snapshot_global_id);
    assert_eq!(snap.parent_name.as_deref(), Some("svc1.rp0.disk0"));
    assert_eq!(snap.on_volume.as_deref(), Some("vm1-disk0"));
    assert_eq!(snap.tags["drengine.rp"], "rp1");
    assert!(snap.is_complete() && !snap.backup);
    let t0 = snap.creation_timestamp;
    assert_eq!(
        a.snapshot("svc1.rp1.disk1")
            .await
            .unwrap()
            .creation_timestamp,
        t0
    );

    // Tags: set one, remove one (empty value); a deletion date.
    a.snapshot_update(
        "svc1.rp1.disk0",
        &SnapshotUpdate {
            tags: Some(tags(&[("drengine.hold", "yes"), ("drengine.rp", "")])),
            delete_after: Some(3600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let snap = a
        .snapshot(&global_id_ref(&group[0].snapshot_global_id))
        .await
        .unwrap();
    assert_eq!(snap.tags, tags(&[("drengine.hold", "yes")]));
    assert!(snap.target_delete_date.unwrap() > t0);

    // Failover-style clone: a new volume from `~gid`, with tags.
    let clone = a
        .volume_create(&VolumeCreate {
            name: Some("vm1-disk0-clone".into()),
            parent: Some(global_id_ref(&s.snapshot_global_id)),
            tags: Some(tags(&[("drengine.clone", "1")])),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(clone.global_id.is_some());
    let cv = a.volume("vm1-disk0-clone").await.unwrap();
    assert_eq!(cv.parent_name.as_deref(), Some("svc1.rp0.disk0"));
    assert_eq!(cv.size, 8 * MIB);

    // Revert the volume to the older snapshot.
    a.volume_revert(
        "vm1-disk0",
        &VolumeRevert {
            to_snapshot: "svc1.rp0.disk0".into(),
            revert_size: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        a.volume("vm1-disk0").await.unwrap().parent_name.as_deref(),
        Some("svc1.rp0.disk0")
    );

    // Deleting a snapshot a volume still depends on: kept, marked deleted, name freed.
    a.snapshot_delete("svc1.rp0.disk0").await.unwrap();
    let pending = a
        .snapshot(&global_id_ref(&s.snapshot_global_id))
        .await
        .unwrap();
    assert!(pending.deleted && !pending.is_complete());
    assert!(a.snapshot_opt("svc1.rp0.disk0").await.unwrap().is_none());
    a.volume_delete("vm1-disk0-clone").await.unwrap();
    a.volume_delete("vm1-disk0").await.unwrap();
    // rp1.disk0 was the old head of vm1-disk0's chain; it still exists, the pending one is gone
    // once its last child (rp1.disk0) is deleted too.
    a.snapshot_delete("svc1.rp1.disk0").await.unwrap();
    assert!(a
        .snapshot_opt(&global_id_ref(&s.snapshot_global_id))
        .await
        .unwrap()
        .is_none());
    assert_eq!(a.volumes_list().await.unwrap().len(), 1);

    h.shutdown().await;
}

#[tokio::test]
async fn group_backup_is_recovering_while_in_flight_and_complete_later() {
    let mut cfg = EmulatorConfig::local(&["zone-a", "zone-b"], TOKEN);
    cfg.bandwidth_mbps = 8.0; // 1 MB/s: two 1 MiB volumes take about two seconds
    let h = emulator(cfg).await;
    let a = client(&h, "zone-a");
    let b = client(&h, "zone-b");

    let locs = a.locations_list().await.unwrap();
    assert_eq!(locs.len(), 1);
    assert_eq!(locs[0].name, "zone-b");
    new_volume(&a, "d0", MIB).await;
    new_volume(&a, "d1", MIB).await;

    let res = a
        .volumes_group_backup(&GroupBackup {
            location: "zone-b".into(),
            volumes: vec!["d0".into(), "d1".into()],
            tags: Some(tags(&[("drengine.rp", "rp7")])),
        })
        .await
        .unwrap();
    assert_eq!(res.backups.len(), 2);
    let gids: Vec<String> = res
        .backups
        .values()
        .map(|e| e.snapshot_global_id.clone())
        .collect();

    // In flight: the receiving copies exist, keep the globalId, and are recovering.
    let d0_gid = a.volume("d0").await.unwrap().global_id;
    for gid in &gids {
        let copy = b.snapshot(&global_id_ref(gid)).await.unwrap();
        assert!(
            copy.recovering_from_remote,
            "{gid} should still be in flight"
        );
        assert!(copy.backup);
        assert_eq!(copy.tags["drengine.rp"], "rp7");
        assert!(!copy.is_complete());
    }
    let first = b
        .snapshot(&global_id_ref(&res.backups["d0"].snapshot_global_id))
        .await
        .unwrap();
    assert_eq!(first.backup_of_global_id.as_deref(), Some(d0_gid.as_str()));
    let exports = a.exports_list().await.unwrap();
    assert!(exports
        .iter()
        .any(|e| e.backing_up && e.location == "zone-b"));

    // Later: complete.
    wait_until(
        "both backups complete in zone-b",
        Duration::from_secs(30),
        || {
            let b = b.clone();
            let gids = gids.clone();
            async move {
                let all = b.snapshots_list().await.unwrap();
                gids.iter()
                    .all(|g| all.iter().any(|s| &s.global_id == g && s.is_complete()))
            }
        },
    )
    .await;
    assert!(a
        .exports_list()
        .await
        .unwrap()
        .iter()
        .all(|e| !e.backing_up));

    // Failover in zone-b: a volume from the received snapshot, by globalId.
    let fo = b
        .volume_create(&VolumeCreate {
            name: Some("svc1-failover-d0".into()),
            parent: Some(global_id_ref(&gids[0])),
            tags: Some(tags(&[("drengine.failover", "svc1")])),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(fo.global_id.is_some());
    assert_eq!(b.volume("svc1-failover-d0").await.unwrap().size, MIB);

    h.shutdown().await;
}

#[tokio::test]
async fn export_remote_list_fetch_and_unexport() {
    let mut cfg = EmulatorConfig::local(&["a", "b"], TOKEN);
    cfg.bandwidth_mbps = 8.0;
    let h = emulator(cfg).await;
    let a = client(&h, "a");
    let b = client(&h, "b");

    new_volume(&a, "v", MIB).await;
    let s = a
        .volume_snapshot(
            "v",
            &VolumeSnapshot {
                name: Some("svc.rp1.v".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let gid = s.snapshot_global_id;

    // Not exported yet: nothing to fetch.
    let fetch = SnapshotFromRemote {
        remote_location: "a".into(),
        remote_id: gid.clone(),
        ..Default::default()
    };
    assert!(b
        .snapshot_from_remote(&fetch)
        .await
        .unwrap_err()
        .is_not_found());

    a.snapshot_export(&SnapshotExport {
        snapshot: "svc.rp1.v".into(),
        location: "b".into(),
    })
    .await
    .unwrap();
    let exports = a.exports_list().await.unwrap();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].global_id, gid);
    let remote = b.snapshots_remote_list().await.unwrap();
    assert_eq!(remote.len(), 1);
    assert_eq!(remote[0].remote_id, gid);
    assert_eq!(remote[0].location, "a");
    assert_eq!(remote[0].local_snapshot, None);

    b.snapshot_from_remote(&fetch).await.unwrap();
    // A repeat answers objectExists, which a retrying caller treats as done.
    assert!(b
        .snapshot_from_remote(&fetch)
        .await
        .unwrap_err()
        .is_exists());
    assert!(
        b.snapshot(&global_id_ref(&gid))
            .await
            .unwrap()
            .recovering_from_remote
    );
    // Unexporting while the remote is still copying is refused.
    let unexport = SnapshotUnexport {
        snapshot: "svc.rp1.v".into(),
        location: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(
        a.snapshot_unexport(&unexport).await.unwrap_err().api_name(),
        Some(error_names::INVALID_PARAM)
    );

    wait_until("copy complete in b", Duration::from_secs(30), || {
        let b = b.clone();
        let gid = gid.clone();
        async move {
            b.snapshot(&global_id_ref(&gid))
                .await
                .unwrap()
                .is_complete()
        }
    })
    .await;
    let remote = b.snapshots_remote_list().await.unwrap();
    assert_eq!(remote[0].local_snapshot.as_deref(), Some("svc.rp1.v"));

    // The receiver gives the snapshot up and asks the sender to delete it in an hour.
    b.snapshots_remote_unexport(&[RemoteUnexport {
        location: "a".into(),
        global_snapshot_id: gid.clone(),
        delete_after: Some(3600),
        ..Default::default()
    }])
    .await
    .unwrap();
    assert!(a.exports_list().await.unwrap().is_empty());
    assert!(a
        .snapshot("svc.rp1.v")
        .await
        .unwrap()
        .target_delete_date
        .is_some());

    // Export again and unexport from the sender side.
    a.snapshot_export(&SnapshotExport {
        snapshot: global_id_ref(&gid),
        location: "b".into(),
    })
    .await
    .unwrap();
    a.snapshot_unexport(&unexport).await.unwrap();
    assert!(b.snapshots_remote_list().await.unwrap().is_empty());

    h.shutdown().await;
}

#[tokio::test]
async fn transient_errors_are_retried_until_the_call_succeeds() {
    let mut cfg = EmulatorConfig::local(&["a"], TOKEN);
    cfg.transient_error_rate = 0.5;
    cfg.seed = Some(7);
    let h = emulator(cfg).await;
    let mut ccfg = h.storpool_config("a").unwrap();
    ccfg.max_retries = 30;
    ccfg.backoff_initial_ms = 1;
    ccfg.backoff_max_ms = 2;
    let a = StorPoolClient::new(ccfg).unwrap();

    for i in 0..20 {
        new_volume(&a, &format!("v{i}"), MIB).await;
    }
    assert_eq!(a.volumes_list().await.unwrap().len(), 20);
    assert!(
        a.retries_total() > 0,
        "with a 50% error rate some calls must have been retried"
    );
    assert_eq!(a.errors_total(), a.retries_total());
    assert_eq!(h.api_calls("a"), a.requests_total());

    // Back to normal: no more retries.
    h.set_faults(
        "a",
        &FaultUpdate {
            transient_error_rate: Some(0.0),
            ..Default::default()
        },
    )
    .unwrap();
    let before = a.retries_total();
    a.volumes_list().await.unwrap();
    assert_eq!(a.retries_total(), before);
    h.shutdown().await;
}

#[tokio::test]
async fn permanent_errors_surface_with_storpool_error_names() {
    let h = emulator(EmulatorConfig::local(&["a"], TOKEN)).await;
    let a = client(&h, "a");

    let before = a.requests_total();
    let e = a.snapshot("missing").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(!e.is_transient());
    assert_eq!(
        a.requests_total(),
        before + 1,
        "a permanent error is not retried"
    );
    match &e {
        StorPoolError::Api { name, descr, .. } => {
            assert_eq!(name, "objectDoesNotExist");
            assert!(descr.contains("missing"));
        }
        other => panic!("unexpected {other:?}"),
    }

    new_volume(&a, "v", MIB).await;
    let dup = a
        .volume_create(&VolumeCreate {
            name: Some("v".into()),
            size: Some(MIB),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(dup.is_exists());
    let odd = a
        .volume_create(&VolumeCreate {
            name: Some("w".into()),
            size: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(odd.api_name(), Some("invalidParam"));

    // Names are checked before anything is sent.
    let sent = a.requests_total();
    let bad = a.volume("a/b").await.unwrap_err();
    assert!(matches!(bad, StorPoolError::InvalidName { .. }));
    assert_eq!(a.requests_total(), sent);

    // A wrong token is refused the way StorPool refuses it.
    let mut wrong = h.storpool_config("a").unwrap();
    wrong.token = "nope".into();
    let e = StorPoolClient::new(wrong)
        .unwrap()
        .volumes_list()
        .await
        .unwrap_err();
    assert_eq!(e.api_name(), Some(error_names::AUTH_ERROR));
    h.shutdown().await;
}

#[tokio::test]
async fn multicluster_form_reports_the_cluster() {
    let h = emulator(EmulatorConfig::local(&["a", "b"], TOKEN)).await;
    let mut cfg = h.storpool_config("a").unwrap();
    cfg.multicluster = true;
    let a = StorPoolClient::new(cfg).unwrap();
    new_volume(&a, "v", MIB).await;
    let v = a.volume("v").await.unwrap();
    assert_eq!(v.cluster_name.as_deref(), Some("a"));
    assert!(v.cluster_id.is_some());
    // Calls without a multi-cluster form still use the plain path.
    assert_eq!(a.locations_list().await.unwrap().len(), 1);
    let stats = h.stats();
    assert!(stats["clusters"]["a"]["calls"]["LocationsList"].as_u64() == Some(1));
    h.shutdown().await;
}

#[tokio::test]
async fn stuck_link_holds_transfers_until_released() {
    let mut cfg = EmulatorConfig::local(&["a", "b"], TOKEN);
    cfg.stuck_transfers = true;
    let h = emulator(cfg).await;
    let a = client(&h, "a");
    let b = client(&h, "b");
    new_volume(&a, "v", MIB).await;
    let res = a
        .volume_backup(&VolumeBackup {
            volume: "v".into(),
            location: "b".into(),
            tags: None,
        })
        .await
        .unwrap();
    let gid = res.remote_id.unwrap();
    // Poll a few times: no progress while stuck (the state endpoint shows 0 bytes done).
    for _ in 0..3 {
        assert!(
            b.snapshot(&global_id_ref(&gid))
                .await
                .unwrap()
                .recovering_from_remote
        );
        assert_eq!(h.state()["transfers"][0]["bytesDone"].as_u64(), Some(0));
    }
    h.set_faults(
        "b",
        &FaultUpdate {
            stuck: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    wait_until(
        "backup complete once unstuck",
        Duration::from_secs(30),
        || {
            let b = b.clone();
            let gid = gid.clone();
            async move {
                b.snapshot(&global_id_ref(&gid))
                    .await
                    .unwrap()
                    .is_complete()
            }
        },
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_cluster_that_stops_answering_gives_transport_errors_until_back() {
    let h = emulator(EmulatorConfig::local(&["a"], TOKEN)).await;
    let mut cfg = h.storpool_config("a").unwrap();
    cfg.timeout_ms = 300;
    cfg.max_retries = 1;
    cfg.backoff_initial_ms = 1;
    let a = StorPoolClient::new(cfg).unwrap();
    new_volume(&a, "v", MIB).await;

    h.set_faults(
        "a",
        &FaultUpdate {
            down: Some(DownMode::Refuse),
            ..Default::default()
        },
    )
    .unwrap();
    let e = a.volumes_list().await.unwrap_err();
    assert!(matches!(e, StorPoolError::Transport { .. }), "{e}");
    assert!(e.is_transient());

    h.set_faults(
        "a",
        &FaultUpdate {
            down: Some(DownMode::Hang),
            ..Default::default()
        },
    )
    .unwrap();
    let e = a.volumes_list().await.unwrap_err();
    assert!(matches!(e, StorPoolError::Transport { .. }), "{e}");

    h.set_faults(
        "a",
        &FaultUpdate {
            down: Some(DownMode::Up),
            ..Default::default()
        },
    )
    .unwrap();
    wait_until("cluster answers again", Duration::from_secs(10), || {
        let a = a.clone();
        async move { a.volumes_list().await.is_ok() }
    })
    .await;
    assert_eq!(a.volumes_list().await.unwrap().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn config_deserialises_from_toml_with_defaults() {
    #[derive(serde::Deserialize)]
    struct Node {
        storpool: StorPoolConfig,
    }
    let node: Node = toml::from_str(
        r#"
        [storpool]
        host = "10.1.2.3"
        token = "999"
        multicluster = true
        max_retries = 3
        "#,
    )
    .unwrap();
    assert_eq!(node.storpool.port, DEFAULT_API_PORT);
    assert!(node.storpool.multicluster);
    assert_eq!(node.storpool.max_retries, 3);
    let typo = toml::from_str::<Node>("[storpool]\nhost = \"h\"\ntoken = \"t\"\ntimeout_s = 5\n");
    assert!(typo.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_survive_a_restart_of_the_api() {
    let h = emulator(EmulatorConfig::local(&["a"], TOKEN)).await;
    let mut cfg = h.storpool_config("a").unwrap();
    cfg.max_retries = 12;
    cfg.backoff_initial_ms = 20;
    cfg.backoff_max_ms = 200;
    let a = StorPoolClient::new(cfg).unwrap();
    new_volume(&a, "before", MIB).await; // leaves a pooled keep-alive connection behind

    h.set_faults(
        "a",
        &FaultUpdate {
            restart_ms: Some(300),
            ..Default::default()
        },
    )
    .unwrap();
    // A request written into a connection the dying API drops gets no answer, and a mutation
    // without an answer is not retried (it may have been applied). Let the restart close the
    // idle connection first, as it would while the node is between two reconciler passes.
    wait_until(
        "the restart closed open connections",
        Duration::from_secs(5),
        || {
            let open = h.open_connections("a");
            async move { open == 0 }
        },
    )
    .await;
    // The pooled connection is closed by the restart; the new connection is refused until the
    // API is back, which the client retries (nothing was sent), so the create goes through once.
    new_volume(&a, "after", MIB).await;
    assert!(a.retries_total() > 0);
    let names: Vec<String> = a
        .volumes_list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["before", "after"]);
    h.shutdown().await;
}

/// `deleteAfter` is added to the emulator's clock: a huge value (one the
/// sum would overflow with) is refused with a clear 400 `invalidParam`,
/// never a panic or a wrapped date, and the emulator keeps answering.
#[tokio::test]
async fn a_huge_delete_after_is_refused_with_a_clear_error() {
    let h = emulator(EmulatorConfig::local(&["a"], TOKEN)).await;
    let a = client(&h, "a");
    new_volume(&a, "vm1-disk0", 8 * MIB).await;
    a.volume_snapshot(
        "vm1-disk0",
        &VolumeSnapshot {
            name: Some("svc1.rp0.disk0".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Through the typed client: the largest value the field holds.
    for huge in [
        i64::MAX,
        i64::MAX - 1,
        i64::MAX / 2 + 1,
        200 * 366 * 24 * 3600,
    ] {
        let e = a
            .snapshot_update(
                "svc1.rp0.disk0",
                &SnapshotUpdate {
                    delete_after: Some(huge),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.api_name(), Some("invalidParam"), "{huge}: {e}");
        assert!(e.to_string().contains("deleteAfter"), "{huge}: {e}");
    }
    let snap = a.snapshot("svc1.rp0.disk0").await.unwrap();
    assert_eq!(snap.target_delete_date, None, "nothing was scheduled");

    // Raw JSON, as any client could send it: u64::MAX (past what the
    // field holds) and i64::MAX, on the snapshot and the volume calls.
    let cfg = h.storpool_config("a").unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}:{}/ctrl/1.0", cfg.host, cfg.port);
    for (call, arg, fields) in [
        ("SnapshotUpdate", "svc1.rp0.disk0", ""),
        (
            "VolumeSnapshot",
            "vm1-disk0",
            r#""name": "svc1.rp9.disk0", "#,
        ),
    ] {
        for huge in [u64::MAX.to_string(), i64::MAX.to_string()] {
            let body = format!(r#"{{{fields}"deleteAfter": {huge}}}"#);
            let resp = http
                .post(format!("{base}/{call}/{arg}"))
                .header("Authorization", format!("Storpool v1:{TOKEN}"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            eprintln!("{call} deleteAfter={huge}: {status} {text}");
            assert_eq!(status, 400, "{call} deleteAfter={huge}: {text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["name"], "invalidParam", "{text}");
        }
    }
    assert!(
        a.snapshot_opt("svc1.rp9.disk0").await.unwrap().is_none(),
        "a refused snapshot call creates nothing"
    );
    // Still answering, and an ordinary deleteAfter still works.
    a.snapshot_update(
        "svc1.rp0.disk0",
        &SnapshotUpdate {
            delete_after: Some(3600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(a
        .snapshot("svc1.rp0.disk0")
        .await
        .unwrap()
        .target_delete_date
        .is_some());
    h.shutdown().await;
}
