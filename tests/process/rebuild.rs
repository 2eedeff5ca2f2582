//! A zone that lost its data, or came back from an older copy of it, over
//! real processes: one `storpool-emulator` and one `drengine run` per zone
//! (zone-a <-> zone-b <-> zone-c), as an operator runs them.
//!
//! The rebuild contract (DESIGN.md §2 invariant 5, §6): while a node cannot
//! prove it holds its zone's newest event, every write answers 503 with
//! `Retry-After` and `{"error": {"code": "rebuilding"}}`; `GET /v1/status`
//! has `"rebuild": {"state": "rebuilding" | "ready" | "overridden",
//! "own_seq", "signed_seq", "confirmed_by"}`; `POST /v1/rebuild/override`
//! (operator only) and `drengine rebuild-override` let it write anyway; the
//! engine skips its ticks meanwhile (`drengine_engine_ticks_skipped_total`).
//!
//! `DRENGINE_PROCESS_ROUNDS=N` repeats every scenario N times with fresh data.

use crate::harness::*;
use drengine::model::ServiceId;
use drengine::replica::{Op, VersionVector};
use drengine::sync::wire::Msg;
use ed25519_dalek::SigningKey;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long a rebuilding node may take to become ready once its peer is up.
const READY_WAIT: Duration = Duration::from_secs(20);
/// How long 3 engine ticks (100 ms each) may take to be skipped.
const SKIP_WAIT: Duration = Duration::from_secs(10);

/// The zone's `rebuild` section of `/v1/status` (Null if absent).
async fn rebuild(net: &Net, zone: &str) -> Value {
    net.status(zone).await["rebuild"].clone()
}

/// Asserts that `a` is the refusal of a write by a rebuilding node.
#[track_caller]
fn assert_rebuilding(a: &Answer) {
    assert_eq!(a.status, 503, "a write while rebuilding: {}", a.text);
    assert_eq!(a.error_code(), Some("rebuilding"), "{}", a.text);
    assert!(
        a.body["error"]["message"].is_string(),
        "an error message: {}",
        a.text
    );
    assert!(
        a.header("retry-after").is_some(),
        "a Retry-After header: {:?}",
        a.headers
    );
}

/// Asserts the shape of a `rebuild` section in state `state`.
#[track_caller]
fn assert_rebuild_state(r: &Value, state: &str) {
    assert_eq!(r["state"], state, "rebuild: {r}");
    assert!(r["own_seq"].is_u64(), "rebuild.own_seq: {r}");
    assert!(r["signed_seq"].is_u64(), "rebuild.signed_seq: {r}");
    assert!(r["confirmed_by"].is_array(), "rebuild.confirmed_by: {r}");
}

/// Retries a create in `zone` until it answers 201; every other answer must
/// be the rebuilding refusal. Returns the id and when it was accepted.
async fn first_accepted_write(net: &Net, zone: &str, vm: &str) -> (String, Instant, u32) {
    let refused = std::cell::Cell::new(0u32);
    let (id, at) = wait_for(
        &format!("a write accepted in {zone}"),
        READY_WAIT,
        || async {
            let a = net.create_service(zone, vm).await;
            if a.status == 201 {
                return Some((
                    a.body["id"].as_str().expect("id").to_string(),
                    Instant::now(),
                ));
            }
            assert_rebuilding(&a);
            refused.set(refused.get() + 1);
            None
        },
    )
    .await;
    let refused = refused.get();
    (id, at, refused)
}

/// Asserts every zone lists exactly `ids`, each created by zone-a alone,
/// and that all three zones converged; returns the digest.
async fn assert_everywhere(net: &Net, ids: &BTreeSet<String>) -> String {
    net.wait_services(&ZONES, ids).await;
    let digest = net.wait_converged(&ZONES).await;
    for z in ZONES {
        let services = net.services(z).await;
        let have: BTreeSet<String> = services.keys().cloned().collect();
        assert_eq!(&have, ids, "{z}: exactly the services written, none lost");
        for (id, s) in &services {
            assert_eq!(
                s["created_by"],
                json!(["zone-a"]),
                "{z}: service {id} created once, by zone-a: {s}"
            );
        }
    }
    digest
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// The harness itself, and what holds today

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_zone_processes_converge_and_a_killed_or_restored_zone_catches_up() {
    repeat("harness", |_| async {
        let mut net = Net::start().await;
        net.wait_connected("zone-b", "zone-a").await;
        net.wait_connected("zone-b", "zone-c").await;
        let t = Instant::now();
        let mut ids = BTreeSet::new();
        ids.insert(net.protect("zone-a", "vm-1").await);
        let took = net.wait_services(&["zone-c"], &ids).await;
        println!(
            "figure: a write in zone-a reached zone-c (2 hops) in {}",
            secs(took)
        );
        ids.insert(net.protect("zone-a", "vm-2").await);
        net.wait_services(&ZONES, &ids).await;

        // kill -9 zone-c, write while it is down, bring it back.
        net.kill("zone-c");
        ids.insert(net.protect("zone-a", "vm-3").await);
        net.start_zone("zone-c").await;
        let t_back = net.started_at("zone-c");
        net.wait_services(&["zone-c"], &ids).await;
        println!(
            "figure: zone-c killed and restarted caught up {} after its start",
            secs(t_back.elapsed())
        );

        // Zone-c writes nothing of its own: an older copy of its data is
        // simply brought up to date by its peer.
        net.stop("zone-c").await;
        let copy = net.save_copy("zone-c");
        net.start_zone("zone-c").await;
        ids.insert(net.protect("zone-a", "vm-4").await);
        net.wait_services(&["zone-c"], &ids).await;
        net.stop("zone-c").await;
        net.restore(&copy);
        net.start_zone("zone-c").await;
        let digest = assert_everywhere(&net, &ids).await;

        // A clean restart of the middle zone.
        net.restart("zone-b").await;
        ids.insert(net.protect("zone-a", "vm-5").await);
        assert_everywhere(&net, &ids).await;
        assert_ne!(digest, net.digest("zone-a").await.unwrap_or_default());
        let log = std::fs::read_to_string(net.log_path("zone-b")).expect("zone-b log");
        assert!(log.contains("serving"), "zone-b's log is captured");
        println!("figure: harness scenario took {}", secs(t.elapsed()));
    })
    .await;
}

// ---------------------------------------------------------------------------
// The rebuild contract

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_zone_rebuilds_from_its_peer_and_loses_nothing() {
    repeat("wiped", |_| async {
        let mut net = Net::start().await;
        let mut ids = BTreeSet::new();
        for i in 1..=3 {
            ids.insert(net.protect("zone-a", &format!("vm-{i}")).await);
        }
        net.wait_services(&ZONES, &ids).await;
        net.wait_converged(&ZONES).await;

        // Zone-a loses its disk while its only peer is down too.
        net.stop("zone-a").await;
        net.wipe("zone-a");
        net.stop("zone-b").await;
        net.start_zone("zone-a").await;
        let a_started = net.started_at("zone-a");
        let refused = net.create_service("zone-a", "vm-early").await;
        assert_rebuilding(&refused);
        let r = rebuild(&net, "zone-a").await;
        assert_rebuild_state(&r, "rebuilding");
        println!("figure: zone-a rebuilding with zone-b down: {r}");

        net.start_zone("zone-b").await;
        let b_started = net.started_at("zone-b");
        let (id, accepted, refusals) = first_accepted_write(&net, "zone-a", "vm-4").await;
        ids.insert(id);
        let r = rebuild(&net, "zone-a").await;
        assert_rebuild_state(&r, "ready");
        println!(
            "figure: zone-a start -> first accepted write {}; zone-b start -> first accepted write {} ({refusals} refusals meanwhile); rebuild {r}",
            secs(accepted - a_started),
            secs(accepted - b_started),
        );
        for i in 5..=6 {
            ids.insert(net.protect("zone-a", &format!("vm-{i}")).await);
        }
        assert_eq!(ids.len(), 6, "six distinct service ids");
        let digest = assert_everywhere(&net, &ids).await;
        let vv = &net.status("zone-b").await["vv"];
        println!("figure: converged, digest {digest}, vv {vv}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_restored_from_an_older_copy_never_reuses_a_sequence_number() {
    repeat("older copy", |_| async {
        let mut net = Net::start().await;
        let mut ids = BTreeSet::new();
        for i in 1..=2 {
            ids.insert(net.protect("zone-a", &format!("vm-{i}")).await);
        }
        net.wait_services(&ZONES, &ids).await;
        net.stop("zone-a").await;
        let copy = net.save_copy("zone-a");
        net.start_zone("zone-a").await;
        net.wait_ready(&["zone-a"]).await;
        for i in 3..=4 {
            ids.insert(net.protect("zone-a", &format!("vm-{i}")).await);
        }
        net.wait_services(&ZONES, &ids).await;
        let signed = net.status("zone-b").await["vv"]["zone-a"].clone();

        // Back from the older copy, with its peer up.
        net.stop("zone-a").await;
        net.restore(&copy);
        net.start_zone("zone-a").await;
        let started = net.started_at("zone-a");
        let (id, accepted, refusals) = first_accepted_write(&net, "zone-a", "vm-5").await;
        ids.insert(id);
        let r = rebuild(&net, "zone-a").await;
        assert_rebuild_state(&r, "ready");
        println!(
            "figure: restored zone-a start -> first accepted write {} with zone-b up ({refusals} refusals); zone-a had signed {signed} events; rebuild {r}",
            secs(accepted - started)
        );
        ids.insert(net.protect("zone-a", "vm-6").await);
        assert_eq!(ids.len(), 6);
        assert_everywhere(&net, &ids).await;
        let own = net.status("zone-a").await["vv"]["zone-a"].as_u64();
        assert!(
            own >= signed.as_u64().map(|s| s + 2),
            "zone-a's own seq moved past what it had signed: {own:?} vs {signed}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_whose_peers_are_all_gone_writes_only_after_an_operator_override() {
    repeat("override", |_| async {
        let mut net = Net::start().await;
        let id = net.protect("zone-a", "vm-1").await;
        let ids = BTreeSet::from([id]);
        net.wait_services(&ZONES, &ids).await;

        // Zone-a and zone-c lose their data; zone-b, the only peer of both,
        // is gone.
        net.stop("zone-a").await;
        net.stop("zone-c").await;
        net.wipe("zone-a");
        net.wipe("zone-c");
        net.stop("zone-b").await;
        net.start_zone("zone-a").await;
        net.start_zone("zone-c").await;
        for z in ["zone-a", "zone-c"] {
            assert_rebuilding(&net.create_service(z, "vm-refused").await);
            assert_rebuild_state(&rebuild(&net, z).await, "rebuilding");
        }

        // Only an operator may override.
        for token in [READ_TOKEN, CMP_TOKEN] {
            let a = net
                .call(
                    "zone-a",
                    Method::POST,
                    "/v1/rebuild/override",
                    Some(token),
                    Some(json!({})),
                    &[],
                )
                .await;
            assert_eq!(a.status, 403, "override with {token}: {}", a.text);
        }
        assert_rebuilding(&net.create_service("zone-a", "vm-refused").await);

        let t = Instant::now();
        let a = net
            .call(
                "zone-a",
                Method::POST,
                "/v1/rebuild/override",
                Some(OP_TOKEN),
                Some(json!({})),
                &[],
            )
            .await;
        assert_eq!(a.status, 200, "override: {}", a.text);
        assert_rebuild_state(&rebuild(&net, "zone-a").await, "overridden");
        net.create_service("zone-a", "vm-2").await.expect(201);
        println!(
            "figure: zone-a override -> accepted write {}",
            secs(t.elapsed())
        );

        // The CLI form, in zone-c.
        let (code, stdout, stderr) = net.cli("zone-c", &["rebuild-override"]);
        assert_eq!(code, 0, "rebuild-override: {stdout} {stderr}");
        assert_rebuild_state(&rebuild(&net, "zone-c").await, "overridden");
        net.create_service("zone-c", "vm-c").await.expect(201);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_does_nothing_while_rebuilding() {
    const ACTIONS: [&str; 3] = ["VolumesGroupSnapshot", "SnapshotExport", "SnapshotDelete"];
    const SKIPPED: &str = "drengine_engine_ticks_skipped_total";
    repeat("engine", |_| async {
        let mut net = Net::start().await;
        // An RP every second: the engine always has work in zone-a.
        let a = net.create_service_with("zone-a", "vm-busy", 1).await;
        a.expect(201);
        wait_until(
            "zone-a's engine snapshotting and exporting",
            WAIT,
            || async {
                let calls = net.emulator_calls("zone-a").await;
                calls.get("VolumesGroupSnapshot").copied().unwrap_or(0) >= 2
                    && calls.get("SnapshotExport").copied().unwrap_or(0) >= 2
            },
        )
        .await;

        net.stop("zone-a").await;
        net.wipe("zone-a");
        net.stop("zone-b").await;
        let before = net.emulator_calls("zone-a").await;
        let snapshots_before = net.snapshots("zone-a").await;
        println!(
            "figure: before the wipe zone-a's cluster saw {:?}, holds {} snapshots",
            ACTIONS.map(|c| before.get(c).copied().unwrap_or(0)),
            snapshots_before.len()
        );
        net.start_zone("zone-a").await;
        let started = net.started_at("zone-a");
        let skipped = wait_for("zone-a's engine skipping 3 ticks", SKIP_WAIT, || async {
            metric(&net.metrics("zone-a").await, SKIPPED, &[]).filter(|n| *n >= 3.0)
        })
        .await;
        assert_rebuild_state(&rebuild(&net, "zone-a").await, "rebuilding");
        let during = net.emulator_calls("zone-a").await;
        for c in ACTIONS {
            assert_eq!(
                during.get(c),
                before.get(c),
                "{c} while zone-a was rebuilding: {during:?}"
            );
        }
        assert_eq!(net.snapshots("zone-a").await, snapshots_before);
        println!(
            "figure: {skipped} ticks skipped in {} while rebuilding, no StorPool action",
            secs(started.elapsed())
        );

        // With its peer back, the engine goes back to work.
        net.start_zone("zone-b").await;
        let b_started = net.started_at("zone-b");
        wait_until("zone-a ready", READY_WAIT, || async {
            rebuild(&net, "zone-a").await["state"] == "ready"
        })
        .await;
        wait_until("zone-a's engine snapshotting again", WAIT, || async {
            let calls = net.emulator_calls("zone-a").await;
            calls.get("VolumesGroupSnapshot") > before.get("VolumesGroupSnapshot")
        })
        .await;
        println!(
            "figure: zone-b start -> zone-a's engine snapshotting again {}",
            secs(b_started.elapsed())
        );
    })
    .await;
}

// ---------------------------------------------------------------------------
// A hostile configured peer

/// Small sync limits, so an oversized frame is cheap to send.
fn small_frames(_zone: &str, cfg: &mut toml::Table) {
    let sync = table(cfg, "sync");
    sync.insert("max_batch_bytes".into(), (64 * 1024).into());
    sync.insert("max_message_bytes".into(), (400 * 1024).into());
}

/// Zone-b's version vector, from its status.
async fn vv_of(net: &Net, zone: &str) -> VersionVector {
    serde_json::from_value(net.status(zone).await["vv"].clone()).expect("vv")
}

/// What the hostile zone-c sends zone-b: a batch with an event of zone-a
/// signed by zone-c's key, an event of zone-c signed by a stranger's key
/// and bytes that are no event; a frame that does not decode; a frame over
/// zone-b's limit. Returns the answers' kinds.
async fn attack(net: &Net, hostile: &HostilePeer, service: &str) -> Vec<Msg> {
    let b_vv = vv_of(net, "zone-b").await;
    let op = |m: &str| Op::SetMetadata {
        service: ServiceId::new(service).expect("service id"),
        metadata: m.into(),
    };
    let a_seq = b_vv.get(&"zone-a".parse().expect("zone")) + 1;
    let wrong_key = HostilePeer::event(
        "zone-a",
        a_seq,
        b_vv.clone(),
        op("zone-c speaking for zone-a"),
        &hostile.key,
    );
    let stranger = HostilePeer::event(
        "zone-c",
        1,
        b_vv.clone(),
        op("a stranger speaking for zone-c"),
        &SigningKey::generate(&mut rand::rngs::OsRng),
    );
    let frames = vec![
        hostile.hello(),
        hostile.events(
            1,
            vec![
                wrong_key.encode(),
                stranger.encode(),
                vec![0xde, 0xad, 0xbe, 0xef],
            ],
        ),
        HostilePeer::malformed(),
        HostilePeer::oversized(500_000),
        hostile.events(2, vec![]),
    ];
    hostile.exchange(frames).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_sending_garbage_is_dropped_and_the_link_goes_on() {
    repeat("hostile", |_| async {
        let mut net = Net::with(small_frames).await;
        for z in ZONES {
            net.start_zone(z).await;
        }
        net.wait_ready(&ZONES).await;
        let svc = net.protect("zone-a", "vm-1").await;
        let mut ids = BTreeSet::from([svc.clone()]);
        net.wait_services(&ZONES, &ids).await;
        let digest_before = net.wait_converged(&ZONES).await;

        // Zone-c's key in the wrong hands, next to the real zone-c.
        let hostile = hostile_peer(&net, "zone-c", "zone-b").await;
        let t = Instant::now();
        let answers = attack(&net, &hostile, &svc).await;
        let kinds: Vec<&str> = answers.iter().map(|m| m.kind()).collect();
        assert_eq!(kinds, ["welcome", "ack", "dropped", "dropped", "ack"]);
        let reasons: Vec<String> = answers
            .iter()
            .filter_map(|m| match m {
                Msg::Dropped { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        println!(
            "figure: attack answered in {} with {kinds:?}, drops {reasons:?}",
            secs(t.elapsed())
        );
        // Nothing forged was applied: zone-b is where it was.
        assert_eq!(net.digest("zone-b").await, Some(digest_before.clone()));
        let b_vv = vv_of(&net, "zone-b").await;
        assert_eq!(
            b_vv.get(&"zone-c".parse().expect("zone")),
            0,
            "zone-c never wrote"
        );
        // Each drop is logged with its reason.
        let logged: BTreeMap<&str, usize> = [
            (
                "bad_signature",
                &["refused an event from peer", "bad_signature"][..],
            ),
            ("event_decode", &["dropped an event from peer"][..]),
            ("malformed", &["dropped a frame from peer", "malformed"][..]),
            ("oversized", &["dropped a frame from peer", "oversized"][..]),
        ]
        .into_iter()
        .map(|(r, needles)| (r, net.log_lines("zone-b", needles)))
        .collect();
        println!("figure: zone-b's log lines per drop reason: {logged:?}");
        assert!(logged["bad_signature"] >= 2, "{logged:?}");
        assert!(logged.values().all(|n| *n >= 1), "{logged:?}");

        // A snapshot zone-b did not ask for (it is not behind the floor the
        // Hello on that stream named) is dropped unread.
        let snap = postcard::to_stdvec(&hostile.own_snapshot().await).expect("encode");
        let mut frames = vec![hostile.hello()];
        frames.extend(HostilePeer::snapshot_frames(7, &snap, 1 << 20));
        let answers = hostile.exchange(frames).await;
        let kinds: Vec<&str> = answers.iter().map(|m| m.kind()).collect();
        assert_eq!(kinds, ["welcome", "dropped"], "{answers:?}");
        println!(
            "figure: an unsolicited {}-byte snapshot: {:?}",
            snap.len(),
            answers.last()
        );
        assert_eq!(net.digest("zone-b").await, Some(digest_before.clone()));

        // The link goes on: a real write in zone-a reaches zone-c.
        net.wait_connected("zone-b", "zone-c").await;
        ids.insert(net.protect("zone-a", "vm-2").await);
        let took = net.wait_services(&["zone-c"], &ids).await;
        net.wait_converged(&ZONES).await;
        println!(
            "figure: after the attack a write in zone-a reached zone-c in {}",
            secs(took)
        );
        hostile.stop().await;
        ids.insert(net.protect("zone-a", "vm-3").await);
        net.wait_services(&ZONES, &ids).await;
        net.wait_converged(&ZONES).await;
    })
    .await;
}

/// CONTRACT (proposed): zone-b's `/metrics` exports the sync layer's drop
/// counters (`SyncCounters.dropped`) as `drengine_sync_dropped_total{reason}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_b_counts_a_hostile_peers_garbage_in_its_metrics() {
    const DROPPED: &str = "drengine_sync_dropped_total";
    repeat("hostile metrics", |_| async {
        let mut net = Net::with(small_frames).await;
        for z in ZONES {
            net.start_zone(z).await;
        }
        net.wait_ready(&ZONES).await;
        let svc = net.protect("zone-a", "vm-1").await;
        net.wait_services(&ZONES, &BTreeSet::from([svc.clone()]))
            .await;
        let hostile = hostile_peer(&net, "zone-c", "zone-b").await;
        let count = |text: &str, reason: &str| metric(text, DROPPED, &[("reason", reason)]);
        let before = net.metrics("zone-b").await;
        attack(&net, &hostile, &svc).await;
        let after = net.metrics("zone-b").await;
        for (reason, n) in [
            ("bad_signature", 2.0),
            ("event_decode", 1.0),
            ("malformed", 1.0),
            ("oversized", 1.0),
        ] {
            let was = count(&before, reason).unwrap_or(0.0);
            let is = count(&after, reason)
                .unwrap_or_else(|| panic!("{DROPPED}{{reason=\"{reason}\"}} in zone-b's /metrics"));
            assert_eq!(is - was, n, "{reason}");
        }
        hostile.stop().await;
    })
    .await;
}

/// A configured peer (here an impostor with zone-c's key) that sends zone-b
/// snapshots forging other zones' data: a vector entry for zone-a at
/// u64::MAX, zone-a's service deleted, zone-b's own copy state. Each is
/// dropped with a logged, counted reason; zone-b's state does not move; a
/// snapshot zone-b did not ask for is dropped unread; the link goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_feed_a_zone_forged_state_by_snapshot() {
    const DROPPED: &str = "drengine_sync_dropped_total";
    repeat("forged snapshot", |_| async {
        let mut net = Net::start().await;
        let svc = net.protect("zone-a", "vm-1").await;
        let mut ids = BTreeSet::from([svc.clone()]);
        net.wait_services(&ZONES, &ids).await;
        net.stop("zone-c").await;
        let hostile = hostile_peer(&net, "zone-c", "zone-b").await;
        hostile.wait_caught_up(&net, "zone-b").await;
        let honest = hostile.own_snapshot().await;
        assert!(!honest.events.is_empty());
        let digest_before = net.digest("zone-b").await;
        let forged_before = metric(
            &net.metrics("zone-b").await,
            DROPPED,
            &[("reason", "snapshot_forged")],
        )
        .unwrap_or(0.0);
        let za: drengine::model::ZoneId = "zone-a".parse().expect("zone");
        let zb: drengine::model::ZoneId = "zone-b".parse().expect("zone");
        let service = ServiceId::new(&svc).expect("service id");

        let mut unbacked = honest.clone();
        unbacked.vv.set(za.clone(), u64::MAX);
        let mut deleted = honest.clone();
        let i = deleted
            .events
            .iter()
            .position(|e| e.event.origin == za)
            .expect("an event of zone-a");
        let mut ev = deleted.events[i].event.clone();
        ev.op = Op::DeleteService {
            service: service.clone(),
        };
        deleted.events[i] = ev.sign(&hostile.key);
        let mut copy = honest.clone();
        let mut ev = copy.events[0].event.clone();
        ev.origin = zb.clone();
        ev.op = Op::SetCopy {
            service: service.clone(),
            rp: drengine::model::RpId::for_origin(&za, "rp1").expect("rp id"),
            state: drengine::model::CopyState::Deleted,
        };
        copy.events[0] = ev.sign(&hostile.key);

        // zone-b is behind the floor these Hellos name: it accepts a
        // snapshot on the stream, if the snapshot proves itself.
        let mut behind = VersionVector::new();
        behind.set(za.clone(), u64::MAX);
        for (id, (what, snap)) in [
            ("unbacked vector entry", unbacked),
            ("deletion signed by another zone", deleted),
            ("copy state signed by another zone", copy),
        ]
        .into_iter()
        .enumerate()
        {
            let bytes = postcard::to_stdvec(&snap).expect("encode");
            let mut frames = vec![hostile.hello_with_floor(behind.clone())];
            frames.extend(HostilePeer::snapshot_frames(id as u64 + 1, &bytes, 1 << 20));
            let answers = hostile.exchange(frames).await;
            let kinds: Vec<&str> = answers.iter().map(|m| m.kind()).collect();
            assert_eq!(kinds, ["welcome", "dropped"], "{what}: {answers:?}");
            println!("{what}: {:?}", answers.last());
            assert_eq!(net.digest("zone-b").await, digest_before, "{what}");
        }
        let forged = metric(
            &net.metrics("zone-b").await,
            DROPPED,
            &[("reason", "snapshot_forged")],
        )
        .expect("snapshot_forged in zone-b's /metrics");
        assert_eq!(forged - forged_before, 3.0);
        assert!(net.log_lines("zone-b", &["does not prove itself"]) >= 3);
        // Not behind the floor named: dropped unread, counted.
        let bytes = postcard::to_stdvec(&honest).expect("encode");
        let mut frames = vec![hostile.hello()];
        frames.extend(HostilePeer::snapshot_frames(9, &bytes, 1 << 20));
        let kinds: Vec<String> = hostile
            .exchange(frames)
            .await
            .iter()
            .map(|m| m.kind().to_string())
            .collect();
        assert_eq!(kinds, ["welcome", "dropped"]);
        let unsolicited = metric(
            &net.metrics("zone-b").await,
            DROPPED,
            &[("reason", "snapshot_unsolicited")],
        );
        assert!(unsolicited >= Some(1.0), "{unsolicited:?}");
        assert_eq!(net.digest("zone-b").await, digest_before);

        // The link goes on.
        hostile.stop().await;
        net.start_zone("zone-c").await;
        ids.insert(net.protect("zone-a", "vm-2").await);
        net.wait_services(&ZONES, &ids).await;
        net.wait_converged(&ZONES).await;
    })
    .await;
}
