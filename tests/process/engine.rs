//! The engine's safety promises over real processes: one `storpool-emulator`
//! and one `drengine run` per zone (zone-a <-> zone-b <-> zone-c), attacked
//! over the wire and with a node's clock moved, not only in the simulation
//! or in-process (`tests/engine/safety.rs` states the same promises there).
//!
//! - The engine touches only what it made (ARCHITECTURE.md invariant 6): a
//!   configured peer holding zone-c's key signs RPs whose disks name other
//!   snapshots. Those the rules can refuse (a snapshot name that is not the
//!   RP's own) are dropped with a logged, counted reason; those they cannot
//!   (a well-formed globalId that is another zone's or nobody's) the engine
//!   refuses when it looks at the object: nothing in any cluster changes,
//!   no copy is complete, retention and deletion leave them alone, and the
//!   link goes on.
//! - No raw wall clock decides (invariant 7): zone-a's engine clock is moved
//!   an hour ahead and back through `DRENGINE_CLOCK_SKEW_FILE`; the schedule
//!   goes on, the RPO zone-b shows is not hidden by RPs from the future, and
//!   failover picks the causally newest RP.
//!
//! `DRENGINE_PROCESS_ROUNDS=N` repeats every scenario N times with fresh data.

use crate::harness::*;
use drengine::api::types::{RpList, RpView};
use drengine::engine::{naming, schedule, CLOCK_SKEW_FILE_ENV};
use drengine::model::{names, RpDisk, RpId, ServiceId, ZoneId};
use drengine::replica::{Hlc, Op, VersionVector, MAX_CLOCK_DRIFT_MS};
use drengine::sync::wire::Msg;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const HOUR_MS: i64 = 3_600_000;
/// A policy interval long enough that the schedule takes no RP during a
/// test (with a service id whose first slot is hours away): RPs are taken
/// on demand.
const QUIET_S: u64 = 86_400;

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn zone(z: &str) -> ZoneId {
    z.parse().expect("zone id")
}

/// A service id whose first scheduled RP (interval [`QUIET_S`]) is more
/// than three hours away, even for a clock an hour ahead.
fn quiet_id(prefix: &str) -> ServiceId {
    let now = now_ms();
    (0..)
        .map(|i| ServiceId::new(format!("{prefix}-{i}")).expect("service id"))
        .find(|id| schedule::next_due_ms(id, QUIET_S, None, now, now) > now + 3 * 3_600_000)
        .expect("a quiet id")
}

/// Protects VM `vm` of `zone` (recovery zone zone-b) with its two disks
/// created first, an RP every `interval_s`, retention `keep_local` /
/// `keep_remote` by count only. With `id`, the service gets that id.
async fn protect(
    net: &Net,
    zone: &str,
    id: Option<&ServiceId>,
    vm: &str,
    interval_s: u64,
    keep_local: u32,
    keep_remote: u32,
) -> ServiceId {
    let disks = [format!("{vm}-disk0"), format!("{vm}-disk1")];
    for d in &disks {
        net.create_volume(zone, d).await;
    }
    let mut body = json!({
        "cmp_vm_id": vm,
        "disks": disks,
        "metadata": format!("<vm name='{vm}'/>"),
        "policy": {
            "interval_s": interval_s,
            "recovery_zone": "zone-b",
            "local_retention": { "keep_last": keep_local, "keep_for_s": 0 },
            "remote_retention": { "keep_last": keep_remote, "keep_for_s": 0 }
        }
    });
    if let Some(id) = id {
        body["id"] = json!(id.as_str());
    }
    let a = net
        .call(
            zone,
            Method::POST,
            "/v1/services",
            Some(CMP_TOKEN),
            Some(body),
            &[],
        )
        .await;
    a.expect(201);
    ServiceId::new(a.body["id"].as_str().expect("service id")).expect("service id")
}

/// The service's RPs as `zone` lists them, oldest first in the one RP
/// order; empty once the service is gone.
async fn rps(net: &Net, zone: &str, id: &ServiceId) -> Vec<RpView> {
    let a = net.get(zone, &format!("/v1/services/{id}/rps")).await;
    if a.status == 404 {
        return Vec::new();
    }
    a.expect(200);
    serde_json::from_value::<RpList>(a.body.clone())
        .expect("an RP list")
        .rps
}

/// `GET /v1/services/{id}` in `zone`.
async fn service(net: &Net, zone: &str, id: &ServiceId) -> Value {
    let a = net.get(zone, &format!("/v1/services/{id}")).await;
    a.expect(200);
    a.body
}

/// `POST /v1/services/{id}/rps` in `zone` (the CMP takes an RP now).
async fn take_rp(net: &Net, zone: &str, id: &ServiceId) -> RpView {
    let a = net
        .call(
            zone,
            Method::POST,
            &format!("/v1/services/{id}/rps"),
            Some(CMP_TOKEN),
            Some(json!({})),
            &[],
        )
        .await;
    a.expect(201);
    serde_json::from_value(a.body.clone()).expect("an RP")
}

fn copy_state<'a>(rp: &'a RpView, z: &str) -> Option<&'a str> {
    rp.copies.get(&zone(z)).map(|c| c.state.as_str())
}

/// Whether `zone` lists `rp` complete in `in_zone`.
async fn complete_in(net: &Net, zone: &str, id: &ServiceId, rp: &RpId, in_zone: &str) -> bool {
    rps(net, zone, id)
        .await
        .iter()
        .any(|r| &r.id == rp && r.complete_in.contains(&self::zone(in_zone)))
}

/// Whether `zone` has no copy of `rp` left (deleted, or the RP purged).
async fn copy_gone(net: &Net, zone: &str, id: &ServiceId, rp: &RpId) -> bool {
    rps(net, zone, id)
        .await
        .iter()
        .find(|r| &r.id == rp)
        .is_none_or(|r| copy_state(r, zone) == Some("deleted"))
}

/// What a snapshot is, as far as whose it is goes.
#[derive(Debug, Clone, PartialEq)]
struct Snap {
    name: String,
    deleted: bool,
    tags: Value,
}

/// Every snapshot of the zone's cluster by globalId.
async fn snapshots(net: &Net, zone: &str) -> BTreeMap<String, Snap> {
    net.storpool(zone, "SnapshotsList", None)
        .await
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            (
                s["globalId"].as_str().expect("globalId").to_string(),
                Snap {
                    name: s["name"].as_str().expect("name").to_string(),
                    deleted: s["deleted"].as_bool().unwrap_or(false),
                    tags: s["tags"].clone(),
                },
            )
        })
        .collect()
}

/// Snapshots volume `volume` of the zone's cluster as `name` with `tags`,
/// directly (not through the engine); answers the globalId.
async fn snapshot_directly(net: &Net, zone: &str, volume: &str, name: &str, tags: Value) -> String {
    net.create_volume(zone, volume).await;
    let v = net
        .storpool(
            zone,
            &format!("VolumeSnapshot/{volume}"),
            Some(json!({ "name": name, "tags": tags })),
        )
        .await;
    v["snapshotGlobalId"]
        .as_str()
        .unwrap_or_else(|| panic!("VolumeSnapshot {name} in {zone}: {v}"))
        .to_string()
}

async fn vv_of(net: &Net, zone: &str) -> VersionVector {
    serde_json::from_value(net.status(zone).await["vv"].clone()).expect("vv")
}

// ---------------------------------------------------------------------------
// The engine touches only what it made

const DROPPED: &str = "drengine_sync_dropped_total";
const REFUSED: &str = "refused: the snapshot this RP names was not made by this engine for it";

/// A hostile zone-c (its key, in-process, next to zone-b; the real zone-c
/// stopped) signs RPs of a service zone-a protects into zone-b, whose disks
/// name: the globalId of zone-b's copy of another service's RP (zone-a's
/// snapshot), of a non-DR snapshot in zone-b, of a snapshot in zone-b with
/// the RP's very name but not the engine's tags, and of a snapshot in
/// zone-c's own cluster; and two RPs whose disks carry a snapshot name that
/// is not the RP's own. The two are dropped by the rules (logged, counted);
/// the four reach zone-b, whose engine refuses to count any as a copy;
/// nothing in zone-b's cluster changes. Then the real zone-c comes back
/// (and refuses to delete its own cluster's snapshot the forged RP names),
/// honest RPs go on, retention runs in zone-b, the service is deleted and
/// purged everywhere: every snapshot the engine did not make for it is
/// still there, as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_rps_from_a_configured_peer_touch_nothing_the_engine_did_not_make() {
    repeat("forged rps", |_| async {
        let t_all = Instant::now();
        let mut net = Net::start().await;
        let (zb, zc) = (zone("zone-b"), zone("zone-c"));
        let x = protect(&net, "zone-a", Some(&quiet_id("vm-x")), "vm-x", QUIET_S, 1, 1).await;
        let y = protect(&net, "zone-a", Some(&quiet_id("vm-y")), "vm-y", QUIET_S, 1, 4).await;
        let x1 = take_rp(&net, "zone-a", &x).await;
        wait_until("x's RP complete in zone-b", WAIT, || {
            complete_in(&net, "zone-b", &x, &x1.id, "zone-b")
        })
        .await;
        net.wait_services(&ZONES, &BTreeSet::from([x.to_string(), y.to_string()]))
            .await;

        // What is in zone-b's and zone-c's clusters that the engine did not
        // make for service y.
        let f = |n: &str| RpId::for_origin(&zc, n).expect("rp id");
        let (f1, f2, f3, f4) = (f("9001"), f("9002"), f("9003"), f("9004"));
        let x_copy = x1.disks[0].clone();
        let nightly = snapshot_directly(&net, "zone-b", "db", "db@nightly", json!({})).await;
        let lookalike_name = names::rp_snapshot_name(&y, &f3, 0);
        let lookalike = snapshot_directly(
            &net,
            "zone-b",
            "db",
            &lookalike_name,
            // The engine's tags but for one: no `drengine.kind`.
            json!({ naming::TAG_SERVICE: y.as_str(), naming::TAG_RP: f3.as_str(), naming::TAG_DISK: "0" }),
        )
        .await;
        let c_backup = snapshot_directly(&net, "zone-c", "db", "db@backup", json!({})).await;

        // zone-c's key in the wrong hands; the real zone-c is down, so the
        // seqs the impostor signs are zone-c's next ones.
        net.stop("zone-c").await;
        let hostile = hostile_peer(&net, "zone-c", "zone-b").await;
        let b_before = snapshots(&net, "zone-b").await;
        let c_before = snapshots(&net, "zone-c").await;
        let calls_before = net.emulator_calls("zone-b").await;
        let metrics_before = net.metrics("zone-b").await;
        let b_vv = vv_of(&net, "zone-b").await;
        let disk = |snapshot: String, global_id: &str| RpDisk {
            volume: "vm-y-disk0".into(),
            snapshot,
            global_id: global_id.to_string(),
        };
        let own_name = |rp: &RpId| names::rp_snapshot_name(&y, rp, 0);
        let (r1, r2) = (f("9101"), f("9102"));
        let forged = [
            (f1.clone(), disk(own_name(&f1), &x_copy.global_id)),
            (f2.clone(), disk(own_name(&f2), &nightly)),
            (f3.clone(), disk(own_name(&f3), &lookalike)),
            (f4.clone(), disk(own_name(&f4), &c_backup)),
            // Not the RP's own snapshot names: refused by the rules.
            (r1.clone(), disk("db@nightly".into(), &nightly)),
            (
                r2.clone(),
                disk(x_copy.snapshot.clone(), &x_copy.global_id),
            ),
        ];
        let c_seq = b_vv.get(&zc);
        let events: Vec<Vec<u8>> = forged
            .iter()
            .enumerate()
            .map(|(i, (rp, d))| {
                let seq = c_seq + 1 + i as u64;
                let mut deps = b_vv.clone();
                if seq > 1 {
                    deps.set(zc.clone(), seq - 1);
                }
                HostilePeer::event(
                    "zone-c",
                    seq,
                    deps,
                    Op::CreateRp {
                        service: y.clone(),
                        rp: rp.clone(),
                        disks: vec![d.clone()],
                        metadata: "<vm name='forged'/>".into(),
                        taken: Hlc {
                            wall_ms: now_ms(),
                            logical: 0,
                        },
                    },
                    &hostile.key,
                )
                .encode()
            })
            .collect();
        let t_attack = Instant::now();
        let answers = hostile
            .exchange(vec![hostile.hello(), hostile.events(1, events)])
            .await;
        let kinds: Vec<&str> = answers.iter().map(Msg::kind).collect();
        assert_eq!(kinds, ["welcome", "ack"], "{answers:?}");

        // The rules drop the two with foreign snapshot names: logged with
        // the reason, counted.
        let rejected = |text: &str| metric(text, DROPPED, &[("reason", "rejected")]).unwrap_or(0.0);
        let metrics_after = net.metrics("zone-b").await;
        assert_eq!(
            rejected(&metrics_after) - rejected(&metrics_before),
            2.0,
            "two events rejected by the rules"
        );
        let name_refusals = net.log_lines(
            "zone-b",
            &["rejected by the rules", "is not the RP's own name"],
        );
        assert_eq!(name_refusals, 2, "each rejection logged with its reason");
        let listed: BTreeSet<RpId> = rps(&net, "zone-b", &y)
            .await
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            listed,
            BTreeSet::from([f1.clone(), f2.clone(), f3.clone(), f4.clone()]),
            "only the RPs the rules cannot refuse are in zone-b's state"
        );

        // The engine refuses the other three when it finds the objects.
        let foreign = |r: &RpView| {
            r.copies.get(&zb).is_some_and(|c| {
                c.state == "failed" && c.error.as_deref() == Some(naming::FOREIGN_SNAPSHOT)
            })
        };
        // Each refusal stays on the RP's copy in zone-b (the service's
        // last_error is overwritten by the next step's outcome, e.g. f4's
        // failing import, so it is not a durable place to look).
        wait_until(
            "zone-b refuses to count f1, f2, f3 as copies",
            WAIT,
            || async {
                let list = rps(&net, "zone-b", &y).await;
                [&f1, &f2, &f3]
                    .iter()
                    .all(|id| list.iter().any(|r| &r.id == *id && foreign(r)))
            },
        )
        .await;
        eprintln!(
            "figure: forged RPs sent -> zone-b's engine refused all three in {} (rules dropped 2 on arrival)",
            secs(t_attack.elapsed())
        );
        for rp in [&f1, &f2, &f3] {
            assert!(
                net.log_lines("zone-b", &[REFUSED, rp.as_str()]) >= 1,
                "zone-b logs its refusal of {rp}"
            );
        }
        // f4 names a snapshot zone-c never exported: zone-b cannot copy it.
        let list = rps(&net, "zone-b", &y).await;
        assert!(
            list.iter().all(|r| !r.complete_in.contains(&zb)),
            "no forged RP is complete in zone-b: {list:?}"
        );
        assert_eq!(
            snapshots(&net, "zone-b").await,
            b_before,
            "zone-b's cluster is exactly as it was"
        );
        let calls = net.emulator_calls("zone-b").await;
        for call in ["SnapshotDelete", "SnapshotUpdate", "VolumeRevert", "VolumeCreate"] {
            assert_eq!(calls.get(call), calls_before.get(call), "{call} in zone-b");
        }

        // The real zone-c comes back: it gets its zone's events (the
        // impostor's) back from zone-b and goes on from there.
        hostile.stop().await;
        net.start_zone("zone-c").await;
        let c_started = net.started_at("zone-c");
        net.wait_ready(&["zone-c"]).await;
        eprintln!(
            "figure: zone-c back and ready {} after its start",
            secs(c_started.elapsed())
        );

        // Honest RPs go on; retention (keep 4 in zone-b) deletes the copy
        // of the first of five, and nothing it did not make.
        let mut honest = Vec::new();
        let t_honest = Instant::now();
        for _ in 0..5 {
            let rp = take_rp(&net, "zone-a", &y).await;
            wait_until("an honest RP of y complete in zone-b", WAIT, || {
                complete_in(&net, "zone-b", &y, &rp.id, "zone-b")
            })
            .await;
            honest.push(rp.id);
        }
        wait_until("retention deletes the oldest honest copy in zone-b", WAIT, || {
            copy_gone(&net, "zone-b", &y, &honest[0])
        })
        .await;
        eprintln!(
            "figure: 5 honest RPs complete in zone-b and retention done in {}",
            secs(t_honest.elapsed())
        );
        net.wait_converged(&ZONES).await;
        let list = rps(&net, "zone-b", &y).await;
        for rp in [&f1, &f2, &f3, &f4] {
            let r = list.iter().find(|r| &r.id == rp);
            assert!(
                r.is_none_or(|r| !r.complete_in.contains(&zb)),
                "{rp} never complete in zone-b"
            );
        }
        let now_b = snapshots(&net, "zone-b").await;
        for (gid, snap) in &b_before {
            assert_eq!(now_b.get(gid), Some(snap), "zone-b's {} untouched", snap.name);
        }

        // Deleting the service deletes every copy that is the engine's,
        // and nothing else; every RP is purged in every zone: the honest
        // ones, f1..f3 (zone-c's "copies" of them were absent in its
        // cluster, so deleted), and f4, which zone-c refused to delete
        // (what it names is not the engine's): its copy is `failed
        // {foreignSnapshot}`, nothing of the engine's is left of it.
        let t_delete = Instant::now();
        net.call(
            "zone-a",
            Method::DELETE,
            &format!("/v1/services/{y}"),
            Some(OP_TOKEN),
            None,
            &[],
        )
        .await
        .expect(200);
        for z in ZONES {
            wait_until(
                &format!("every RP of the deleted service purged in {z}"),
                WAIT,
                || async { rps(&net, z, &y).await.is_empty() },
            )
            .await;
        }
        eprintln!(
            "figure: service deleted -> every RP purged in every zone in {}",
            secs(t_delete.elapsed())
        );
        let now_b = snapshots(&net, "zone-b").await;
        for (gid, snap) in &b_before {
            assert_eq!(now_b.get(gid), Some(snap), "zone-b's {} untouched", snap.name);
        }
        assert_eq!(now_b[&lookalike].name, lookalike_name);
        assert_eq!(now_b[&nightly].name, "db@nightly");
        let left: Vec<&Snap> = now_b
            .iter()
            .filter(|(gid, s)| !b_before.contains_key(*gid) && !s.deleted)
            .map(|(_, s)| s)
            .collect();
        assert!(left.is_empty(), "the engine's own copies are gone: {left:?}");
        // zone-c held the forged f4 as its own complete copy: deleting it
        // was refused (its snapshot is db@backup), not done.
        assert_eq!(snapshots(&net, "zone-c").await, c_before, "zone-c's cluster");
        assert!(
            net.log_lines("zone-c", &[REFUSED, f4.as_str()]) >= 1,
            "zone-c logs its refusal to delete what f4 names"
        );
        assert!(
            complete_in(&net, "zone-b", &x, &x1.id, "zone-b").await,
            "x's copy in zone-b still complete"
        );
        // And the link goes on.
        let z = protect(&net, "zone-a", None, "vm-z", QUIET_S, 1, 1).await;
        net.wait_services(&ZONES, &BTreeSet::from([x.to_string(), z.to_string()]))
            .await;
        net.wait_converged(&ZONES).await;
        eprintln!("figure: forged-RP scenario took {}", secs(t_all.elapsed()));
    })
    .await;
}

// ---------------------------------------------------------------------------
// No raw wall clock decides

/// Sets the offset of a `DRENGINE_CLOCK_SKEW_FILE`, atomically.
fn set_skew(path: &Path, offset_ms: i64) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, offset_ms.to_string()).expect("write skew");
    std::fs::rename(&tmp, path).expect("rename skew");
}

/// A devnet whose zone-a reads its engine clock through a skew file (at
/// offset 0), with `tweak` on every config; every zone started and ready.
async fn net_with_skewed_a(tweak: impl Fn(&str, &mut toml::Table)) -> (Net, std::path::PathBuf) {
    net_with_skewed("zone-a", tweak).await
}

/// A devnet whose `zone` reads its engine clock through a skew file.
async fn net_with_skewed(
    zone: &str,
    tweak: impl Fn(&str, &mut toml::Table),
) -> (Net, std::path::PathBuf) {
    let mut net = Net::with(tweak).await;
    let skew = net.dir.path().join(format!("{zone}.skew"));
    set_skew(&skew, 0);
    net.set_env(
        zone,
        CLOCK_SKEW_FILE_ENV,
        skew.to_str().expect("utf-8 path"),
    );
    for z in ZONES {
        net.start_zone(z).await;
    }
    net.wait_ready(&ZONES).await;
    assert_eq!(
        net.log_lines(zone, &[CLOCK_SKEW_FILE_ENV, "WARN"]),
        1,
        "{zone} warns once that its clock is moved by a file"
    );
    (net, skew)
}

fn is_future(rp: &RpView) -> bool {
    rp.taken.wall_ms > now_ms() + MAX_CLOCK_DRIFT_MS
}

/// zone-a takes an RP every 2 s. Its clock jumps an hour ahead: its RPs
/// are stamped an hour ahead; zone-b, whose clock is right, counts them as
/// no evidence of protection and shows the service past its RPO (with the
/// age of the last RP it can place), not at 0. The clock jumps back: the
/// next RP is taken at once, not in an hour, the ones after on the
/// schedule's grid, and zone-b's RPO is within its target again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_and_rpo_survive_a_running_nodes_clock_jump() {
    repeat("clock jump schedule", |_| async {
        let t_all = Instant::now();
        // RPO target 2 s + 2 s of grace: a service is past its RPO 4 s
        // after the last RP of known age.
        let (net, skew) = net_with_skewed_a(|_, cfg| {
            table(cfg, "engine").insert("rpo_grace_ms".into(), 2_000.into());
        })
        .await;
        let interval_s = 2;
        let id = protect(&net, "zone-a", None, "vm-clock", interval_s, 3, 3).await;
        let t = Instant::now();
        wait_until("two scheduled RPs complete in zone-b", WAIT, || async {
            rps(&net, "zone-b", &id)
                .await
                .iter()
                .filter(|r| r.complete_in.contains(&zone("zone-b")))
                .count()
                >= 2
        })
        .await;
        eprintln!(
            "figure: protect -> 2 scheduled RPs complete in zone-b {}",
            secs(t.elapsed())
        );

        // An hour ahead.
        set_skew(&skew, HOUR_MS);
        let t_jump = Instant::now();
        let ahead = wait_for("an RP stamped an hour ahead", WAIT, || async {
            rps(&net, "zone-a", &id).await.into_iter().find(is_future)
        })
        .await;
        eprintln!(
            "figure: clock +1h -> first RP stamped ahead {} (taken {} ms ahead)",
            secs(t_jump.elapsed()),
            ahead.taken.wall_ms.saturating_sub(now_ms())
        );
        // zone-b: its newest complete RP is from the future, and it shows
        // the service past its RPO with the age of the RP before, not 0.
        let rpo = wait_for(
            "zone-b past its RPO while its newest complete RP is stamped ahead",
            WAIT,
            || async {
                let list = rps(&net, "zone-b", &id).await;
                let newest = list
                    .iter()
                    .rev()
                    .find(|r| r.complete_in.contains(&zone("zone-b")))?;
                if !is_future(newest) {
                    return None;
                }
                let rpo = service(&net, "zone-b", &id).await["rpo"].clone();
                (rpo["past_rpo"] == true).then_some(rpo)
            },
        )
        .await;
        let age = rpo["rpo_age_s"].as_f64();
        assert!(
            age.is_none_or(|a| a >= 4.0),
            "the RPO shown is the age of an RP of known age, not 0: {rpo}"
        );
        eprintln!(
            "figure: zone-b showed past RPO {} after the jump: {rpo}",
            secs(t_jump.elapsed())
        );

        // Back. The next RP is due at once.
        let before: BTreeSet<RpId> = rps(&net, "zone-a", &id)
            .await
            .into_iter()
            .map(|r| r.id)
            .collect();
        set_skew(&skew, 0);
        let back_at = now_ms();
        let t_back = Instant::now();
        let next = wait_for("an RP of known age after the jump back", WAIT, || async {
            rps(&net, "zone-a", &id)
                .await
                .into_iter()
                .find(|r| !before.contains(&r.id) && !is_future(r))
        })
        .await;
        assert!(
            next.taken.wall_ms < back_at + 10_000,
            "taken at once after the jump back, not in an hour: {} vs {back_at}",
            next.taken.wall_ms
        );
        eprintln!(
            "figure: clock back -> next RP taken {} ms later (interval {interval_s} s)",
            next.taken.wall_ms.saturating_sub(back_at)
        );
        // The next two are on the grid.
        let after = wait_for("two more RPs on schedule", WAIT, || async {
            let list = rps(&net, "zone-a", &id).await;
            let i = list.iter().position(|r| r.id == next.id)?;
            let later: Vec<RpView> = list[i + 1..].to_vec();
            (later.len() >= 2).then_some(later)
        })
        .await;
        for rp in &after {
            assert!(!is_future(rp), "{} taken with the clock right", rp.id);
            let late = schedule::lateness_ms(&id, interval_s, rp.taken.wall_ms);
            assert!(late < 1_500, "RP {} {late} ms late for its slot", rp.id);
            eprintln!(
                "figure: RP {} after the jump back, {late} ms after its slot",
                rp.id
            );
        }
        // And zone-b's RPO rests on RPs of known age again.
        let rpo = wait_for("zone-b's RPO back within the target", WAIT, || async {
            let rpo = service(&net, "zone-b", &id).await["rpo"].clone();
            (rpo["past_rpo"] == false && rpo["rpo_age_s"].as_f64().is_some_and(|a| a < 10.0))
                .then_some(rpo)
        })
        .await;
        eprintln!(
            "figure: clock back -> zone-b's RPO within target {}: {rpo}",
            secs(t_back.elapsed())
        );
        eprintln!(
            "figure: clock-jump schedule scenario took {}",
            secs(t_all.elapsed())
        );
    })
    .await;
}

/// After zone-a's clock jumped ahead and back, the RP stamped an hour
/// ahead is the oldest of those taken since, as it really is: retention
/// drops it first in both zones, and a failover in zone-b with zone-a gone
/// picks the causally newest RP complete there, not the one with the
/// largest stamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_over_processes_follows_causal_order_not_a_clock_that_ran_ahead() {
    repeat("clock jump failover", |_| async {
        let t_all = Instant::now();
        let (mut net, skew) = net_with_skewed_a(|_, _| {}).await;
        let id = protect(
            &net,
            "zone-a",
            Some(&quiet_id("vm-f")),
            "vm-f",
            QUIET_S,
            2,
            2,
        )
        .await;

        set_skew(&skew, HOUR_MS);
        let r1 = take_rp(&net, "zone-a", &id).await;
        assert!(is_future(&r1), "r1 stamped an hour ahead: {:?}", r1.taken);
        wait_until("r1 complete in zone-b", WAIT, || {
            complete_in(&net, "zone-b", &id, &r1.id, "zone-b")
        })
        .await;
        set_skew(&skew, 0);
        let t_back = Instant::now();
        // The schedule takes one at once (r1 is no reason to wait an hour)...
        let r2 = wait_for("a scheduled RP after the jump back", WAIT, || async {
            rps(&net, "zone-a", &id)
                .await
                .into_iter()
                .find(|r| r.id != r1.id)
        })
        .await;
        eprintln!(
            "figure: clock back -> scheduled RP {} in {}",
            r2.id,
            secs(t_back.elapsed())
        );
        assert!(
            !is_future(&r2),
            "r2 taken with the clock right: {:?}",
            r2.taken
        );
        // ... and one more on demand.
        let r3 = take_rp(&net, "zone-a", &id).await;
        assert!(r1.taken > r3.taken, "r1's stamp is the largest");
        let t = Instant::now();
        wait_until(
            "r2 and r3 complete in zone-b, r1 dropped by retention (keep 2) in zone-a and zone-b",
            WAIT,
            || async {
                complete_in(&net, "zone-b", &id, &r2.id, "zone-b").await
                    && complete_in(&net, "zone-b", &id, &r3.id, "zone-b").await
                    && copy_gone(&net, "zone-b", &id, &r1.id).await
                    && copy_gone(&net, "zone-a", &id, &r1.id).await
            },
        )
        .await;
        eprintln!(
            "figure: retention dropped the future-stamped r1 in {}",
            secs(t.elapsed())
        );
        for z in ["zone-a", "zone-b"] {
            assert!(complete_in(&net, z, &id, &r3.id, z).await, "{z} keeps r3");
            assert!(complete_in(&net, z, &id, &r2.id, z).await, "{z} keeps r2");
        }
        assert_eq!(
            service(&net, "zone-b", &id).await["newest_recoverable_rp"],
            json!(r3.id.as_str())
        );

        // zone-a goes away; zone-b fails over to the causally newest RP.
        net.stop("zone-a").await;
        let t = Instant::now();
        let a = net
            .call(
                "zone-b",
                Method::POST,
                &format!("/v1/services/{id}/failover"),
                Some(CMP_TOKEN),
                Some(json!({})),
                &[],
            )
            .await;
        a.expect(200);
        assert_eq!(a.body["rp"], json!(r3.id.as_str()), "failover: {}", a.text);
        eprintln!(
            "figure: failover in zone-b from {} answered in {}",
            r3.id,
            secs(t.elapsed())
        );
        eprintln!(
            "figure: clock-jump failover scenario took {}",
            secs(t_all.elapsed())
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// RPO levels and the alert rules' metrics

const DAY_MS: i64 = 24 * 3_600_000;

/// The RPO level of `id` as `zone` shows it on the service view.
async fn rpo_level(net: &Net, zone: &str, id: &ServiceId) -> String {
    service(net, zone, id).await["rpo"]["level"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Ids `GET /v1/services?rpo=LEVEL` lists in `zone`.
async fn graded(net: &Net, zone: &str, level: &str) -> BTreeSet<String> {
    let a = net.get(zone, &format!("/v1/services?rpo={level}")).await;
    a.expect(200);
    a.body["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect()
}

/// A service of zone-a with one RP a day (none due during the test) and one
/// RP taken now, complete in zone-b. zone-b's engine clock then moves on:
/// 2.5 days later its RPO is `warning`, 3.5 days `critical`, and back to
/// `ok` when the clock is right again — on the service view, in
/// `GET /v1/services?rpo=…`, in the CLI table and as
/// `drengine_service_rpo_level`. Every metric `config/alerts.yaml` names is
/// one a node exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpo_levels_move_ok_warning_critical_as_time_passes() {
    repeat("rpo levels", |_| async {
        let (net, skew) = net_with_skewed("zone-b", |_, _| {}).await;
        let id = protect(
            &net,
            "zone-a",
            Some(&quiet_id("vm-lvl")),
            "vm-lvl",
            QUIET_S,
            3,
            3,
        )
        .await;
        let rp = take_rp(&net, "zone-a", &id).await;
        wait_until("the RP complete in zone-b", WAIT, || async {
            complete_in(&net, "zone-b", &id, &rp.id, "zone-b").await
        })
        .await;
        let rpo = wait_for("zone-b grades the RPO ok", WAIT, || async {
            let v = service(&net, "zone-b", &id).await["rpo"].clone();
            (v["level"] == "ok").then_some(v)
        })
        .await;
        assert_eq!(rpo["past_rpo"], false, "{rpo}");
        assert!(graded(&net, "zone-b", "warning").await.is_empty());
        assert!(graded(&net, "zone-b", "ok").await.contains(id.as_str()));
        let m = net.metrics("zone-b").await;
        assert_eq!(
            metric(&m, "drengine_services_by_rpo_level", &[("level", "ok")]),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &m,
                "drengine_service_rpo_level",
                &[("service", id.as_str())]
            ),
            None,
            "no per-service series while the service is ok"
        );
        // zone-b got the service and the RP from zone-a over sync.
        for (family, direction) in [
            ("drengine_sync_bytes_total", "sent"),
            ("drengine_sync_bytes_total", "received"),
            ("drengine_sync_events_total", "received"),
        ] {
            let n = metric(&m, family, &[("direction", direction)]);
            assert!(n.is_some_and(|n| n > 0.0), "{family} {direction}: {n:?}");
        }

        for (offset, level, value) in [
            (5 * DAY_MS / 2, "warning", 1.0),
            (7 * DAY_MS / 2, "critical", 2.0),
        ] {
            set_skew(&skew, offset);
            wait_until(&format!("zone-b grades the RPO {level}"), WAIT, || async {
                rpo_level(&net, "zone-b", &id).await == level
            })
            .await;
            assert_eq!(service(&net, "zone-b", &id).await["rpo"]["past_rpo"], true);
            assert!(graded(&net, "zone-b", "warning")
                .await
                .contains(id.as_str()));
            assert_eq!(
                graded(&net, "zone-b", "critical")
                    .await
                    .contains(id.as_str()),
                level == "critical"
            );
            let m = net.metrics("zone-b").await;
            assert_eq!(
                metric(
                    &m,
                    "drengine_service_rpo_level",
                    &[("service", id.as_str())]
                ),
                Some(value)
            );
            assert_eq!(
                metric(&m, "drengine_services_by_rpo_level", &[("level", level)]),
                Some(1.0)
            );
            let (code, out, err) = net.cli("zone-b", &["services", "--rpo", "warning"]);
            assert_eq!(code, 0, "{err}");
            let row = out
                .lines()
                .find(|l| l.starts_with(id.as_str()))
                .unwrap_or_else(|| panic!("{id} in the CLI table: {out}"));
            assert!(row.contains(level), "{row}");
            // zone-a's clock is right: its own view of the same RP is ok.
            assert_eq!(rpo_level(&net, "zone-a", &id).await, "ok");
            if level != "critical" {
                continue;
            }
            // The alert rules name only metrics a node exports (a
            // per-service family has series only while a service is not ok).
            let alerts = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alerts.yaml"),
            )
            .expect("config/alerts.yaml");
            let named: BTreeSet<&str> = alerts
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("drengine_"))
                .collect();
            assert!(named.len() >= 6, "{named:?}");
            for name in named {
                let family = name.strip_suffix("_total").unwrap_or(name);
                assert!(
                    m.lines().any(|l| l.starts_with(&format!("# TYPE {name} "))
                        || l.starts_with(&format!("# TYPE {family} "))),
                    "config/alerts.yaml names {name}, which /metrics does not export"
                );
            }
        }
        set_skew(&skew, 0);
        wait_until("zone-b grades the RPO ok again", WAIT, || async {
            rpo_level(&net, "zone-b", &id).await == "ok"
        })
        .await;
        let (code, out, _) = net.cli("zone-b", &["services", "--rpo", "warning"]);
        assert_eq!(code, 0);
        assert!(!out.contains(id.as_str()), "{out}");
        let a = net.get("zone-b", "/v1/services?rpo=bad").await;
        assert_eq!(a.status, 400, "{}", a.body);
        assert_eq!(a.error_code(), Some("bad_request"));
    })
    .await;
}

/// `POST /v1/services` in zone-a for VM `vm` (one disk, created first by
/// the caller) sending its RPs to `recovery`, with id `id` if given.
async fn create_in_a(net: &Net, vm: &str, recovery: &str, id: Option<&str>) -> Answer {
    let mut body = json!({
        "cmp_vm_id": vm,
        "disks": [format!("{vm}-disk0")],
        "policy": {
            "interval_s": QUIET_S,
            "recovery_zone": recovery,
            "local_retention": { "keep_last": 2, "keep_for_s": 0 },
            "remote_retention": { "keep_last": 2, "keep_for_s": 0 }
        }
    });
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    net.call(
        "zone-a",
        Method::POST,
        "/v1/services",
        Some(CMP_TOKEN),
        Some(body),
        &[],
    )
    .await
}

/// `storage_links` of `zone`'s status, once its engine has read them.
async fn storage_links(net: &Net, zone: &str) -> Value {
    wait_for(
        &format!("{zone} reads its StorPool links"),
        WAIT,
        || async {
            let v = net.status(zone).await["storage_links"].clone();
            (!v.is_null()).then_some(v)
        },
    )
    .await
}

/// Asserts a 422 on `policy.recovery_zone`.
fn assert_unreachable_refused(a: &Answer) {
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.error_code(), Some("invalid_input"), "{}", a.body);
    assert_eq!(
        a.body["error"]["field"], "policy.recovery_zone",
        "{}",
        a.body
    );
}

/// Only zones the storage can reach: zone-a's cluster has no link to
/// zone-c's. `GET /v1/status` says which zones it reaches; a policy naming
/// zone-c as the recovery zone is refused (422 on `policy.recovery_zone`,
/// naming the zones it can reach), on create and on a PATCH in the VM's
/// zone; nothing is written. Once the link is registered, the same create
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_zone_the_local_storage_cannot_reach_is_refused() {
    repeat("storage links", |_| async {
        let mut net = Net::with(|_, _| {}).await;
        net.storpool_faults("zone-a", json!({"peer": "zone-c", "unlinked": true}))
            .await;
        for z in ZONES {
            net.start_zone(z).await;
        }
        net.wait_ready(&ZONES).await;
        let links = storage_links(&net, "zone-a").await;
        assert_eq!(links["reachable"], json!(["zone-b"]), "{links}");
        assert_eq!(links["unreachable"], json!(["zone-c"]), "{links}");
        let b = storage_links(&net, "zone-b").await;
        assert_eq!(b["reachable"], json!(["zone-a", "zone-c"]), "{b}");

        net.create_volume("zone-a", "vm-link-disk0").await;
        let digest = net.digest("zone-a").await;
        let a = create_in_a(&net, "vm-link", "zone-c", None).await;
        assert_unreachable_refused(&a);
        let msg = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("zone-c") && msg.contains("can reach: zone-b"),
            "{msg}"
        );
        assert_eq!(
            net.digest("zone-a").await,
            digest,
            "a refused create writes nothing"
        );

        // A service sending to zone-b may not be moved to zone-c from zone-a…
        let ok = create_in_a(&net, "vm-link", "zone-b", None).await;
        ok.expect(201);
        let id = ServiceId::new(ok.body["id"].as_str().expect("id")).expect("id");
        let mut policy = ok.body["policy"].clone();
        policy["recovery_zone"] = json!("zone-c");
        let patch = net
            .call(
                "zone-a",
                Method::PATCH,
                &format!("/v1/services/{id}"),
                Some(CMP_TOKEN),
                Some(json!({ "policy": policy })),
                &[],
            )
            .await;
        assert_unreachable_refused(&patch);
        assert_eq!(
            service(&net, "zone-a", &id).await["policy"]["recovery_zone"],
            "zone-b"
        );

        // …until the clusters are linked.
        net.storpool_faults("zone-a", json!({"peer": "zone-c", "unlinked": false}))
            .await;
        wait_until(
            "a create naming zone-c passes once linked",
            WAIT,
            || async {
                let a = create_in_a(&net, "vm-link", "zone-c", Some("vm-link-c")).await;
                assert!(a.status == 201 || a.status == 422, "{}", a.body);
                a.status == 201
            },
        )
        .await;
    })
    .await;
}
