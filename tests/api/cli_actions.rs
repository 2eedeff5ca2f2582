//! The DR actions through the `drengine` binary, as an operator runs them:
//! `drengine devnet` (three zones, the engine, an emulated StorPool cluster
//! per zone) in a child process, and the CLI against its zones' APIs.
//! Checks `--json` answers and exit codes (0 ok, 3 not found, 4 conflict or
//! precondition, 5 unreachable).

use crate::support::wait_until;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_drengine");
const TOKEN: &str = "cli-actions";
/// The devnet's StorPool token (`drengine::node::devnet::STORPOOL_TOKEN`).
const SP_AUTH: &str = "Storpool v1:devnet-storpool";
/// Long enough that no scheduled RP falls inside the test.
const INTERVAL_S: &str = "86400";
const WAIT: Duration = Duration::from_secs(60);

/// One `drengine` run.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\nstderr: {}", self.stdout, self.stderr))
    }

    #[track_caller]
    fn ok(self) -> Value {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.json()
    }

    /// Asserts a refusal with `code` and the API error code `error`.
    #[track_caller]
    fn refused(self, code: i32, error: &str) -> Out {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.json()["error"]["code"], error, "{}", self.stdout);
        assert!(self.stderr.starts_with("error: "), "{}", self.stderr);
        self
    }
}

/// Runs `drengine --json ARGS` against `api`.
async fn drengine(api: &str, args: &[&str]) -> Out {
    let out = Command::new(BIN)
        .args(["--api", api, "--token", TOKEN, "--json"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run drengine");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A zone of the devnet as `drengine devnet --json` describes it.
struct Zone {
    api: String,
    storpool: String,
}

struct Devnet {
    child: Child,
    zones: Vec<Zone>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Devnet {
    async fn start() -> Devnet {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(BIN)
            .args(["devnet", "--base-port", "0", "--json", "--token", TOKEN])
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn devnet");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the devnet started in time")
            .expect("read")
            .expect("a line");
        let info: Value = serde_json::from_str(&first).expect("devnet json");
        let zones = info["zones"]
            .as_array()
            .expect("zones")
            .iter()
            .map(|z| Zone {
                api: z["api"].as_str().expect("api").to_string(),
                storpool: z["storpool"].as_str().expect("storpool").to_string(),
            })
            .collect();
        Devnet {
            child,
            zones,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn api(&self, i: usize) -> &str {
        &self.zones[i].api
    }

    /// One call to zone `i`'s emulated StorPool API; its `data`.
    async fn storpool(&self, i: usize, call: &str, body: Option<Value>) -> Value {
        let url = format!("{}/ctrl/1.0/{call}", self.zones[i].storpool);
        let req = match body {
            Some(b) => self.http.post(url).json(&b),
            None => self.http.get(url),
        };
        let res = req
            .header("authorization", SP_AUTH)
            .send()
            .await
            .expect("StorPool");
        assert!(res.status().is_success(), "{call}: {}", res.status());
        res.json::<Value>().await.expect("json")["data"].take()
    }

    /// Volume names in zone `i`'s cluster.
    async fn volumes(&self, i: usize) -> Vec<String> {
        self.storpool(i, "VolumesList", None)
            .await
            .as_array()
            .expect("volumes")
            .iter()
            .filter_map(|v| v["name"].as_str().map(String::from))
            .collect()
    }

    /// Stops (or lets go) transfers between zone `i` and zone `j`.
    async fn stuck(&self, i: usize, j: usize, stuck: bool) {
        let zone = ["zone-a", "zone-b", "zone-c"][j];
        let res = self
            .http
            .post(format!("{}/_emulator/faults", self.zones[i].storpool))
            .json(&json!({ "peer": zone, "stuck": stuck }))
            .send()
            .await
            .expect("faults");
        assert!(res.status().is_success(), "faults: {}", res.status());
    }

    /// Ctrl-C, as an operator stops it.
    async fn stop(mut self) {
        let pid = self.child.id().expect("pid").to_string();
        let killed = Command::new("kill").args(["-INT", &pid]).status().await;
        assert!(killed.expect("kill").success());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the devnet stopped in time")
            .expect("wait");
        assert_eq!(status.code(), Some(0));
    }
}

/// Polls `rp list --complete-in ZONE` in that zone until `rp` is listed.
async fn wait_complete(api: &str, svc: &str, rp: &str, zone: &str) {
    wait_until(&format!("RP {rp} complete in {zone}"), WAIT, || async {
        let out = drengine(api, &["rp", "list", svc, "--complete-in", zone]).await;
        out.code == 0
            && out.json()["rps"]
                .as_array()
                .is_some_and(|l| l.iter().any(|r| r["id"] == rp))
    })
    .await;
}

fn active_vm_conflicts(list: &Value) -> Vec<&Value> {
    list["conflicts"]
        .as_array()
        .map(|cs| cs.iter().filter(|c| c["kind"] == "active_vms").collect())
        .unwrap_or_default()
}

/// The whole DR story with the CLI: protect in zone-a, an RP replicated to
/// zone-b, a test failover there and its clean-up, failover to zone-b while
/// zone-a's VM still runs, the active-VM conflict listed in every zone,
/// refused and accepted resolutions, revert, and a planned migration back
/// to zone-a that is refused until its final RP is complete there; then
/// pause (RPO level `paused`) and resume (an RP at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_actions_through_the_cli_on_a_devnet_with_the_engine() {
    let net = Devnet::start().await;
    let (a, b, c) = (net.api(0), net.api(1), net.api(2));

    // The CMP's VM has two disks in zone-a's cluster.
    for disk in ["vm-1-root", "vm-1-data"] {
        net.storpool(
            0,
            "VolumeCreate",
            Some(json!({ "name": disk, "size": 1 << 20 })),
        )
        .await;
    }
    let svc = drengine(
        a,
        &[
            "protect",
            "--id",
            "svc-vm-1",
            "--vm",
            "vm-1",
            "--disk",
            "vm-1-root",
            "--disk",
            "vm-1-data",
            "--recovery-zone",
            "zone-b",
            "--interval-s",
            INTERVAL_S,
            "--metadata",
            "<domain name='vm-1'/>",
        ],
    )
    .await
    .ok();
    let svc = svc["id"].as_str().expect("id").to_string();
    assert_eq!(svc, "svc-vm-1");
    // Protecting the same VM again under the same id: 409.
    drengine(
        a,
        &[
            "protect",
            "--id",
            &svc,
            "--vm",
            "vm-1",
            "--disk",
            "x",
            "--recovery-zone",
            "zone-b",
        ],
    )
    .await
    .refused(4, "idempotency_mismatch");

    // An RP on demand, replicated to zone-b.
    let rp = drengine(a, &["rp", "take", &svc]).await.ok();
    let rp = rp["id"].as_str().expect("rp id").to_string();
    assert!(rp.starts_with("zone-a."), "{rp}");
    wait_complete(b, &svc, &rp, "zone-b").await;
    let shown = drengine(b, &["rp", "show", &svc, &rp]).await.ok();
    assert_eq!(shown["copies"]["zone-b"]["state"], "complete", "{shown}");
    assert_eq!(shown["metadata"], "<domain name='vm-1'/>");
    drengine(b, &["rp", "show", &svc, "zone-a.404"])
        .await
        .refused(3, "not_found");
    drengine(b, &["rp", "take", "no-such-service"])
        .await
        .refused(3, "not_found");

    // A test failover in zone-b: clones, nothing active; then clean-up.
    let test = drengine(b, &["test-failover", &svc, "--yes"]).await.ok();
    assert_eq!(test["rp"], rp.as_str());
    let clones: Vec<String> = test["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["volume"].as_str().expect("volume").to_string())
        .collect();
    assert_eq!(clones.len(), 2, "{test}");
    let in_b = net.volumes(1).await;
    assert!(clones.iter().all(|v| in_b.contains(v)), "{in_b:?}");
    let shown = drengine(b, &["service", "show", &svc]).await.ok();
    assert_eq!(shown["active_zones"], json!(["zone-a"]));
    let cleaned = drengine(b, &["test-failover", &svc, "--cleanup"])
        .await
        .ok();
    assert_eq!(cleaned["id"], svc.as_str());
    let in_b = net.volumes(1).await;
    assert!(clones.iter().all(|v| !in_b.contains(v)), "{in_b:?}");

    // Failover to zone-b while zone-a's VM still runs: allowed (zone-a may
    // be unreachable for all zone-b knows), and a conflict everywhere.
    drengine(c, &["failover", &svc, "--yes"])
        .await
        .refused(4, "precondition");
    drengine(b, &["failover", &svc, "--rp", "zone-a.404", "--yes"])
        .await
        .refused(3, "not_found");
    let failed_over = drengine(b, &["failover", &svc, "--rp", &rp, "--yes"])
        .await
        .ok();
    assert_eq!(failed_over["zone"], "zone-b");
    assert_eq!(failed_over["rp"], rp.as_str());
    assert_eq!(failed_over["metadata"], "<domain name='vm-1'/>");
    assert_eq!(failed_over["volumes"][1]["disk"], "vm-1-data");
    // A retried failover answers the same.
    let again = drengine(b, &["failover", &svc, "--yes"]).await.ok();
    assert_eq!(again, failed_over);
    for api in [a, b, c] {
        wait_until("the active-VM conflict in every zone", WAIT, || async {
            let out = drengine(api, &["conflicts", "--service", &svc]).await;
            out.code == 0
                && active_vm_conflicts(&out.json())
                    .first()
                    .is_some_and(|c| c["sides"].as_array().map(Vec::len) == Some(2))
        })
        .await;
    }
    let listed = drengine(c, &["conflicts"]).await.ok();
    let zones: Vec<&Value> = active_vm_conflicts(&listed)[0]["sides"]
        .as_array()
        .expect("sides")
        .iter()
        .map(|s| &s["zone"])
        .collect();
    assert_eq!(zones, [&json!("zone-a"), &json!("zone-b")]);
    // The table says what each side is and how to settle it.
    let table = Command::new(BIN)
        .args(["--api", c, "--token", TOKEN, "conflicts"])
        .output()
        .await
        .expect("run drengine");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("vm-1 active, disks vm-1-root,vm-1-data"),
        "{table}"
    );
    assert!(table.contains("--keep-zone ZONE"), "{table}");
    // Migration out of zone-a while the VM runs in two zones: refused.
    let refused = drengine(a, &["migrate", &svc, "--target", "zone-b", "--yes"])
        .await
        .refused(4, "precondition");
    assert!(
        refused.stderr.contains("active VMs in zone-a, zone-b"),
        "{}",
        refused.stderr
    );

    // Resolution: deactivating a zone without a VM is refused; keeping an
    // unknown zone too; keeping zone-b, from zone-c, ends it everywhere.
    drengine(c, &["deactivate", &svc, "--zone", "zone-c", "--yes"])
        .await
        .refused(4, "no_vm");
    let out = drengine(c, &["resolve", &svc, "active_vms", "--yes"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--keep-zone"), "{}", out.stderr);
    drengine(
        c,
        &[
            "resolve",
            &svc,
            "active_vms",
            "--keep-zone",
            "zone-c",
            "--yes",
        ],
    )
    .await
    .refused(1, "invalid_input");
    let resolved = drengine(
        c,
        &[
            "resolve",
            &svc,
            "active_vms",
            "--keep-zone",
            "zone-b",
            "--yes",
        ],
    )
    .await
    .ok();
    assert_eq!(resolved["slots"]["zone-a"]["active"], false, "{resolved}");
    for api in [a, b, c] {
        wait_until("no conflict left", WAIT, || async {
            let out = drengine(api, &["conflicts"]).await;
            out.code == 0 && out.json()["conflicts"] == json!([])
        })
        .await;
    }
    // Zone-b runs the VM alone now, so it protects towards zone-a.
    wait_until("replication reversed towards zone-a", WAIT, || async {
        let out = drengine(b, &["service", "show", &svc]).await;
        out.code == 0 && out.json()["policy"]["recovery_zone"] == "zone-a"
    })
    .await;

    // Revert zone-b's VM to the RP; not where the VM is inactive.
    let reverted = drengine(b, &["revert", &svc, "--rp", &rp, "--yes"])
        .await
        .ok();
    assert_eq!(reverted["volumes"], failed_over["volumes"], "{reverted}");
    drengine(a, &["revert", &svc, "--rp", &rp, "--yes"])
        .await
        .refused(4, "precondition");
    drengine(b, &["revert", &svc, "--rp", "zone-a.404", "--yes"])
        .await
        .refused(3, "not_found");

    // Planned migration back to zone-a, with zone-b -> zone-a transfers held
    // up: completing is refused until the final RP is complete in zone-a.
    drengine(a, &["migrate", &svc, "--complete", "--yes"])
        .await
        .refused(4, "precondition");
    drengine(b, &["migrate", &svc, "--target", "zone-c", "--yes"])
        .await
        .refused(4, "precondition");
    net.stuck(1, 0, true).await;
    let started = drengine(b, &["migrate", &svc, "--target", "zone-a", "--yes"])
        .await
        .ok();
    assert_eq!(started["target"], "zone-a");
    let final_rp = started["final_rp"].as_str().expect("final rp").to_string();
    assert!(final_rp.starts_with("zone-b."), "{final_rp}");
    wait_until("the final RP known in zone-a", WAIT, || async {
        drengine(a, &["rp", "show", &svc, &final_rp]).await.code == 0
    })
    .await;
    let early = drengine(a, &["migrate", &svc, "--complete", "--yes"])
        .await
        .refused(4, "precondition");
    assert!(
        early
            .stderr
            .contains("is not complete in zone zone-a yet (transferring)")
            || early
                .stderr
                .contains("is not complete in zone zone-a yet (not started)"),
        "{}",
        early.stderr
    );
    net.stuck(1, 0, false).await;
    wait_complete(a, &svc, &final_rp, "zone-a").await;
    let done = drengine(a, &["migrate", &svc, "--complete", "--yes"])
        .await
        .ok();
    assert_eq!(done["zone"], "zone-a");
    assert_eq!(done["rp"], final_rp.as_str());
    let shown = drengine(a, &["service", "show", &svc]).await.ok();
    assert_eq!(shown["active_zones"], json!(["zone-a"]), "{shown}");

    // Paused for maintenance: zone-a's engine grades its RPO `paused`.
    let paused = drengine(
        a,
        &["service", "pause", &svc, "--reason", "storage migration"],
    )
    .await
    .ok();
    assert_eq!(paused["paused"]["reason"], "storage migration", "{paused}");
    wait_until("the RPO level paused in zone-a", WAIT, || async {
        let shown = drengine(a, &["service", "show", &svc]).await.ok();
        shown["rpo"]["level"] == "paused" && shown["rpo"]["past_rpo"] == false
    })
    .await;
    // Resumed: an RP is taken at once, though the next is a day away.
    let resumed = drengine(a, &["service", "resume", &svc]).await.ok();
    assert!(resumed["paused"].is_null(), "{resumed}");
    wait_until("an RP taken at the resume", WAIT, || async {
        let shown = drengine(a, &["service", "show", &svc]).await.ok();
        shown["newest_recoverable_rp"]
            .as_str()
            .is_some_and(|rp| rp != final_rp && rp.starts_with("zone-a."))
    })
    .await;

    net.stop().await;
}

/// What an operator sees when the node is not there, or the name is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_exit_codes_without_a_node_or_a_service() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", free.local_addr().expect("addr"));
    drop(free);
    for args in [
        &["failover", "svc", "--yes"][..],
        &["migrate", "svc", "--complete", "--yes"],
        &["test-failover", "svc", "--cleanup"],
        &["rp", "take", "svc"],
        &["service", "pause", "svc"],
        &["service", "resume", "svc"],
    ] {
        let out = drengine(&dead, args).await;
        assert_eq!(out.code, 5, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("cannot reach"), "{}", out.stderr);
    }
    let out = drengine(&dead, &["migrate", "svc", "--yes"]).await;
    assert_eq!(out.code, 2, "--target or --complete: {}", out.stderr);
    let out = drengine(&dead, &["revert", "svc", "--yes"]).await;
    assert_eq!(out.code, 2, "--rp is required: {}", out.stderr);
}
