//! Preflight (`?dry_run=true`) of every DR action, over real HTTP against
//! two real nodes (zone-a and zone-b, synced over libp2p, each with its
//! engine on its own emulated StorPool cluster).
//!
//! The story: zone-a protects a VM; RP 1 is complete in zone-b, RP 2 is
//! stuck on its way there; zone-a goes down. In zone-b every DR action's dry
//! run is asked: each leaves `/v1/status`'s digest and every mutating
//! StorPool call count as they were, a refused one answers exactly what the
//! real call answers, and an accepted one says what the real call then does
//! (RP 1 used, RP 2's data lost, zone-a unreachable and still active, a
//! conflict, the volumes by their names).

use crate::harness::*;
use drengine::emulator::FaultUpdate;
use drengine::engine::naming::{object_name, Kind};
use drengine::model::{RpId, ServiceId};

use drengine::storpool::StorPoolClient;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const SVC: &str = "svc-pre";
const DISKS: [&str; 2] = ["pre-root", "pre-data"];

/// StorPool calls that change a cluster (the emulator's names).
const MUTATING: &[&str] = &[
    "VolumeCreate",
    "VolumeUpdate",
    "VolumeDelete",
    "VolumeRevert",
    "VolumeSnapshot",
    "VolumesGroupSnapshot",
    "VolumeBackup",
    "VolumesGroupBackup",
    "SnapshotUpdate",
    "SnapshotDelete",
    "SnapshotDeleteById",
    "SnapshotExport",
    "SnapshotUnexport",
    "SnapshotFromRemote",
    "SnapshotsRemoteUnexport",
];

impl Api {
    async fn digest(&self) -> String {
        self.get("/v1/status").await["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn rp(&self, rp: &str) -> Value {
        self.get(&format!("/v1/services/{SVC}/rps/{rp}")).await
    }
}

/// A DR action as sent: method, path under the service, token, body,
/// headers.
struct Ask<'a> {
    method: Method,
    what: &'a str,
    token: &'a str,
    body: Option<Value>,
    headers: Vec<(&'a str, &'a str)>,
}

fn post<'a>(what: &'a str, token: &'a str, body: Value) -> Ask<'a> {
    Ask {
        method: Method::POST,
        what,
        token,
        body: Some(body),
        headers: Vec::new(),
    }
}

impl Ask<'_> {
    fn path(&self, dry: bool) -> String {
        let base = if self.what.is_empty() {
            format!("/v1/services/{SVC}")
        } else {
            format!("/v1/services/{SVC}/{}", self.what)
        };
        if dry {
            format!("{base}?dry_run=true")
        } else {
            base
        }
    }

    async fn send(&self, api: &Api, dry: bool) -> (StatusCode, Value) {
        api.call(
            self.method.clone(),
            &self.path(dry),
            self.token,
            self.body.clone(),
            &self.headers,
        )
        .await
    }
}

/// Every mutating call count of every cluster.
fn mutating_calls(dep: &Deployment) -> BTreeMap<String, u64> {
    let stats = dep.emulator().stats();
    let mut out = BTreeMap::new();
    for (cluster, s) in stats["clusters"].as_object().unwrap() {
        for call in MUTATING {
            let n = s["calls"][*call].as_u64().unwrap_or(0);
            out.insert(format!("{cluster}/{call}"), n);
        }
    }
    out
}

/// What must not move across a dry run.
#[derive(Debug, PartialEq)]
struct Marks {
    digest: String,
    calls: BTreeMap<String, u64>,
}

async fn marks(api: &Api, dep: &Deployment) -> Marks {
    Marks {
        digest: api.digest().await,
        calls: mutating_calls(dep),
    }
}

/// Runs the dry run of `ask`, checks it changed nothing, and answers it.
async fn dry(api: &Api, dep: &Deployment, ask: &Ask<'_>) -> (StatusCode, Value) {
    let before = marks(api, dep).await;
    let answer = ask.send(api, true).await;
    assert_eq!(
        marks(api, dep).await,
        before,
        "the dry run of {} changed something: {}",
        ask.what,
        answer.1
    );
    answer
}

/// A refused action: its dry run answers the same status and body as the
/// real call, and neither changes anything.
async fn refused_alike(api: &Api, dep: &Deployment, ask: Ask<'_>, status: u16, code: &str) {
    let (dry_status, dry_body) = dry(api, dep, &ask).await;
    let before = marks(api, dep).await;
    let (real_status, real_body) = ask.send(api, false).await;
    assert_eq!(
        marks(api, dep).await,
        before,
        "a refused {} wrote",
        ask.what
    );
    assert_eq!(real_status.as_u16(), status, "{}: {real_body}", ask.what);
    assert_eq!(
        real_body["error"]["code"], code,
        "{}: {real_body}",
        ask.what
    );
    assert_eq!(dry_status, real_status, "{}: {dry_body}", ask.what);
    assert_eq!(dry_body, real_body, "{}", ask.what);
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v["volume"].as_str().unwrap().to_string())
        .collect()
}

fn expected_names(kind: Kind, rp: &str) -> Vec<String> {
    let svc: ServiceId = SVC.parse().unwrap();
    let rp: RpId = rp.parse().unwrap();
    (0..DISKS.len())
        .map(|i| object_name(kind, &svc, &rp, i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dry_run_changes_nothing_says_what_the_action_does_and_is_refused_alike() {
    // The VM's disks in zone-a's cluster, protected towards zone-b; RP 1
    // complete in zone-b.
    let ProtectedPair {
        dep,
        node_a,
        node_b,
        a,
        b,
        rp1,
    } = protected_pair(SVC, "vm-pre", &DISKS, WAIT).await;
    // RP 2, stuck on its way to zone-b.
    dep.emulator()
        .set_faults(
            "zone-a",
            &FaultUpdate {
                peer: Some("zone-b".into()),
                stuck: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    let (status, rp2) = a
        .call(
            Method::POST,
            &format!("/v1/services/{SVC}/rps"),
            CMP_TOKEN,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rp2}");
    let rp2 = rp2["id"].as_str().unwrap().to_string();
    wait_until(
        "RP 2 transferring to zone-b, as zone-b sees it",
        WAIT,
        || async {
            let (s, v) = b
                .call(
                    Method::GET,
                    &format!("/v1/services/{SVC}/rps/{rp2}"),
                    READ_TOKEN,
                    None,
                    &[],
                )
                .await;
            s == StatusCode::OK && v["copies"]["zone-b"]["state"] == "transferring"
        },
    )
    .await;

    // Zone-a goes down.
    node_a.shutdown().await;
    wait_until("zone-b sees zone-a down", WAIT, || async {
        b.get("/v1/peers").await["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["zone"] == "zone-a" && p["connected"] == false)
    })
    .await;

    // Where the VM's RPs go now: zone-a's to zone-b.
    let view = b.get(&format!("/v1/services/{SVC}")).await;
    assert_eq!(
        view["protection"],
        json!([{ "zone": "zone-a", "rps_go_to": "zone-b" }]),
        "{view}"
    );
    assert_eq!(view["rpo"]["kept_only_in"], json!([]), "{view}");

    // The failover's dry run in zone-b.
    let failover = post("failover", CMP_TOKEN, json!({}));
    let (status, pre) = dry(&b, &dep, &failover).await;
    assert_eq!(status, StatusCode::OK, "{pre}");
    let v1 = b.rp(&rp1).await;
    let v2 = b.rp(&rp2).await;
    let ms = |v: &Value| v["taken"]["wall_ms"].as_u64().unwrap();
    assert_eq!(pre["action"], "failover");
    assert_eq!(pre["service"], SVC);
    assert_eq!(pre["zone"], "zone-b");
    assert_eq!(pre["rp"]["id"], rp1.as_str(), "{pre}");
    assert_eq!(pre["rp"]["origin"], "zone-a");
    assert_eq!(
        pre["rp"]["complete_in"],
        json!(["zone-a", "zone-b"]),
        "{pre}"
    );
    assert!(pre["rp"]["age_s"].as_f64().unwrap() >= 0.0, "{pre}");
    let taken = pre["rp"]["taken"].as_str().unwrap();
    assert!(taken.ends_with('Z') && taken.contains('T'), "{taken}");
    let secs = ms(&v1) / 1000;
    assert!(
        taken.contains(&format!(
            "{:02}:{:02}:{:02}.{:03}Z",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            ms(&v1) % 1000
        )),
        "{taken} is not {}",
        ms(&v1)
    );
    assert_eq!(pre["newest_rp"]["id"], rp2.as_str(), "{pre}");
    assert_eq!(pre["newest_rp"]["complete_in"], json!(["zone-a"]), "{pre}");
    let lost = (ms(&v2) - ms(&v1)) as f64 / 1000.0;
    assert_eq!(pre["data_loss_s"].as_f64(), Some(lost), "{pre}");
    assert_eq!(pre["takes_rp"], false);
    assert_eq!(pre["active_after"], json!(["zone-a", "zone-b"]), "{pre}");
    assert_eq!(pre["conflict"], true);
    assert_eq!(
        pre["other_zones"],
        json!([{ "zone": "zone-a", "active_now": true, "active_after": true, "reachable": false }]),
        "{pre}"
    );
    let vm_names = expected_names(Kind::Vm, &rp1);
    assert_eq!(names(&pre["creates"]), vm_names, "{pre}");
    assert_eq!(pre["reverts"], json!([]));
    assert_eq!(pre["changes_nothing"], false);
    // zone-b's RPs would be kept only in zone-b (its recovery zone) while
    // zone-a's VM is active: no other zone to name here (see
    // tests/engine/failover.rs for a failover naming one).
    assert_eq!(
        pre["protection"],
        json!({ "rps_go_to": null, "storage_link": null }),
        "{pre}"
    );
    let warnings = pre["warnings"].to_string();
    assert!(warnings.contains("kept only in zone-b"), "{warnings}");
    assert!(warnings.contains("zone-a is unreachable"), "{warnings}");
    assert!(warnings.contains("active-VM conflict"), "{warnings}");
    assert!(
        warnings.contains(&format!("older than the newest RP {rp2}")),
        "{warnings}"
    );

    // A test failover's dry run: clones by their names, nothing activated.
    let test = post("test-failover", CMP_TOKEN, json!({ "rp": rp1 }));
    let (status, pre_test) = dry(&b, &dep, &test).await;
    assert_eq!(status, StatusCode::OK, "{pre_test}");
    assert_eq!(pre_test["action"], "test-failover");
    assert_eq!(
        names(&pre_test["creates"]),
        expected_names(Kind::Test, &rp1)
    );
    assert_eq!(pre_test["active_after"], json!(["zone-a"]));
    assert_eq!(pre_test["conflict"], false);
    assert_eq!(pre_test["data_loss_s"], Value::Null);

    // Refused here, by the dry run as by the real call (the role is
    // checked first, as for the real call: the last row).
    let refusals = [
        (
            post("failover", CMP_TOKEN, json!({ "rp": rp2 })),
            409,
            "precondition",
        ),
        (
            post("failover", CMP_TOKEN, json!({ "rp": "zone-a.404" })),
            404,
            "not_found",
        ),
        (
            post("failover", CMP_TOKEN, json!({ "recovery_zone": "zone-b" })),
            422,
            "invalid_input",
        ),
        (
            post("failover", CMP_TOKEN, json!({ "recovery_zone": "zone-q" })),
            422,
            "invalid_input",
        ),
        // zone-a's VM is active: it cannot be the recovery zone too.
        (
            post("failover", CMP_TOKEN, json!({ "recovery_zone": "zone-a" })),
            422,
            "invalid_input",
        ),
        (
            post(
                "test-failover",
                CMP_TOKEN,
                json!({ "recovery_zone": "zone-a" }),
            ),
            400,
            "bad_request",
        ),
        (
            post("test-failover", CMP_TOKEN, json!({ "rp": rp2 })),
            409,
            "precondition",
        ),
        (
            post("revert", CMP_TOKEN, json!({ "rp": rp1 })),
            409,
            "precondition",
        ),
        (
            post("migrate", CMP_TOKEN, json!({ "target": "zone-a" })),
            409,
            "precondition",
        ),
        (
            post("migrate/complete", CMP_TOKEN, json!({})),
            409,
            "precondition",
        ),
        (
            post("deactivate", OP_TOKEN, json!({ "zone": "zone-c" })),
            409,
            "no_vm",
        ),
        (
            post(
                "resolve",
                OP_TOKEN,
                json!({ "field": "active_vms", "keep_zone": "zone-a" }),
            ),
            409,
            "no_conflict",
        ),
        (
            Ask {
                method: Method::DELETE,
                what: "",
                token: OP_TOKEN,
                body: None,
                headers: vec![("if-match", "\"stale\"")],
            },
            412,
            "precondition_failed",
        ),
        (post("deactivate", CMP_TOKEN, json!({})), 403, "forbidden"),
    ];
    for (ask, status, code) in refusals {
        refused_alike(&b, &dep, ask, status, code).await;
    }
    // A bad dry_run value is named.
    let (status, bad) = b
        .call(
            Method::POST,
            &format!("/v1/services/{SVC}/failover?dry_run=maybe"),
            CMP_TOKEN,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["error"]["field"], "dry_run");

    // Delete's dry run: accepted, and nothing deleted.
    let (status, pre_del) = dry(
        &b,
        &dep,
        &Ask {
            method: Method::DELETE,
            what: "",
            token: OP_TOKEN,
            body: None,
            headers: Vec::new(),
        },
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pre_del}");
    assert_eq!(pre_del["action"], "delete");
    assert_eq!(pre_del["rp"], Value::Null);
    assert!(
        pre_del["warnings"].to_string().contains("keeps running"),
        "{pre_del}"
    );
    assert_eq!(
        b.get(&format!("/v1/services/{SVC}")).await["deleted"],
        false
    );

    // The real failover does what its dry run said.
    let (status, done) = failover.send(&b, false).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["rp"], rp1.as_str());
    assert_eq!(names(&done["volumes"]), vm_names);
    assert_eq!(done["volumes"], pre["creates"]);
    let view = b.get(&format!("/v1/services/{SVC}")).await;
    assert_eq!(view["active_zones"], pre["active_after"], "{view}");
    // zone-a's RPs go to zone-b; zone-b keeps its own only there, and the
    // RPO status says so.
    assert_eq!(
        view["protection"],
        json!([
            { "zone": "zone-a", "rps_go_to": "zone-b" },
            { "zone": "zone-b", "rps_go_to": null }
        ]),
        "{view}"
    );
    assert_eq!(view["rpo"]["kept_only_in"], json!(["zone-b"]), "{view}");
    assert_ne!(view["rpo"]["level"], "ok", "{view}");
    let in_b: Vec<String> = StorPoolClient::new(dep.emulator().storpool_config("zone-b").unwrap())
        .unwrap()
        .volumes_list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(vm_names.iter().all(|n| in_b.contains(n)), "{in_b:?}");

    // Its retry's dry run: changes nothing, says so.
    let (status, again) = dry(&b, &dep, &failover).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["changes_nothing"], true, "{again}");
    assert_eq!(again["creates"], done["volumes"]);

    // Revert's dry run, then the revert: the VM's volumes back at RP 1.
    let revert = post("revert", CMP_TOKEN, json!({ "rp": rp1 }));
    let (status, pre_rev) = dry(&b, &dep, &revert).await;
    assert_eq!(status, StatusCode::OK, "{pre_rev}");
    assert_eq!(names(&pre_rev["reverts"]), vm_names);
    assert_eq!(pre_rev["creates"], json!([]));
    assert_eq!(pre_rev["data_loss_s"].as_f64(), Some(lost));
    let (status, reverted) = revert.send(&b, false).await;
    assert_eq!(status, StatusCode::OK, "{reverted}");
    assert_eq!(reverted["volumes"], pre_rev["reverts"]);

    // Deactivate's and resolve's dry runs on the conflict: zone-b alone.
    for ask in [
        post("deactivate", OP_TOKEN, json!({ "zone": "zone-a" })),
        post(
            "resolve",
            OP_TOKEN,
            json!({ "field": "active_vms", "keep_zone": "zone-b" }),
        ),
    ] {
        let (status, p) = dry(&b, &dep, &ask).await;
        assert_eq!(status, StatusCode::OK, "{p}");
        assert_eq!(p["active_after"], json!(["zone-b"]), "{p}");
        assert_eq!(p["conflict"], false, "{p}");
        assert_eq!(
            p["other_zones"],
            json!([{ "zone": "zone-a", "active_now": true, "active_after": false, "reachable": false }]),
            "{p}"
        );
    }
    let resolve = post(
        "resolve",
        OP_TOKEN,
        json!({ "field": "active_vms", "keep_zone": "zone-b" }),
    );
    let (status, resolved) = resolve.send(&b, false).await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["active_zones"], json!(["zone-b"]), "{resolved}");

    node_b.shutdown().await;
}
