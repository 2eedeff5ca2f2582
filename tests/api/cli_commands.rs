//! The `drengine` binary against a real node: --json output and exit codes
//! (0 ok, 1 server error, 2 usage, 3 not found, 4 conflict, 5 unreachable).

use crate::harness::*;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_drengine");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs `drengine ARGS` with a terminal (a pty) on stdin, on which `typed`
/// was typed.
async fn drengine_typed(url: &str, token: &str, args: &[&str], typed: &str) -> Out {
    use std::io::Write;
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut master = std::fs::File::from(pty.master);
    master.write_all(typed.as_bytes()).unwrap();
    let out = Command::new(BIN)
        .args(args)
        .env("DRENGINE_API", url)
        .env("DRENGINE_TOKEN", token)
        .env_remove("RUST_LOG")
        .stdin(Stdio::from(pty.slave))
        .output()
        .await
        .unwrap();
    drop(master);
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn drengine(url: &str, token: &str, args: &[&str]) -> Out {
    let out = Command::new(BIN)
        .args(args)
        .env("DRENGINE_API", url)
        .env("DRENGINE_TOKEN", token)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protect_list_show_and_update_with_json_output() {
    let n = start_node().await;
    let out = drengine(
        &n.url,
        CMP_TOKEN,
        &[
            "--json",
            "protect",
            "--vm",
            "vm-1",
            "--disk",
            "vm-1-root",
            "--disk",
            "vm-1-data",
            "--recovery-zone",
            "zone-b",
            "--interval-s",
            "120",
            "--metadata",
            "<vm/>",
            "--idempotency-key",
            "k1",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let svc = out.json();
    let id = svc["id"].as_str().unwrap().to_string();
    assert_eq!(svc["slots"]["zone-a"]["disks"][1], "vm-1-data");
    assert_eq!(svc["policy"]["interval_s"], 120);
    // A retried protect with the same key is the same service.
    let again = drengine(
        &n.url,
        CMP_TOKEN,
        &[
            "--json",
            "protect",
            "--vm",
            "vm-1",
            "--disk",
            "vm-1-root",
            "--disk",
            "vm-1-data",
            "--recovery-zone",
            "zone-b",
            "--interval-s",
            "120",
            "--metadata",
            "<vm/>",
            "--idempotency-key",
            "k1",
        ],
    )
    .await;
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["id"], id.as_str());

    let list = drengine(&n.url, READ_TOKEN, &["--json", "services"]).await;
    assert_eq!(list.code, 0);
    assert_eq!(list.json()["services"][0]["id"], id.as_str());
    let table = drengine(&n.url, READ_TOKEN, &["services"]).await;
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains(&id));

    let shown = drengine(&n.url, READ_TOKEN, &["--json", "service", "show", &id]).await;
    assert_eq!(shown.code, 0);
    let version = shown.json()["version"].as_str().unwrap().to_string();
    let upd = drengine(
        &n.url,
        CMP_TOKEN,
        &["--json", "service", "update", &id, "--interval-s", "30"],
    )
    .await;
    assert_eq!(upd.code, 0, "{}", upd.stderr);
    assert_eq!(upd.json()["policy"]["interval_s"], 30);
    // The version read before that update is stale now: exit 4.
    let stale = drengine(
        &n.url,
        CMP_TOKEN,
        &[
            "--json",
            "service",
            "update",
            &id,
            "--metadata",
            "x",
            "--if-match",
            &version,
        ],
    )
    .await;
    assert_eq!(stale.code, 4, "{}", stale.stderr);
    assert_eq!(stale.json()["error"]["code"], "precondition_failed");
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_went_wrong() {
    let n = start_node().await;
    let out = drengine(&n.url, READ_TOKEN, &["--json", "service", "show", "nope"]).await;
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["error"]["field"], "service");
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);

    let out = drengine(
        &n.url,
        READ_TOKEN,
        &[
            "protect",
            "--vm",
            "v",
            "--disk",
            "d",
            "--recovery-zone",
            "zone-b",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "403 is a server refusal: {}", out.stderr);
    let out = drengine(&n.url, "wrong-token", &["services"]).await;
    assert_eq!(out.code, 1);

    let out = drengine(&n.url, CMP_TOKEN, &["protect", "--vm", "v"]).await;
    assert_eq!(out.code, 2, "usage: {}", out.stderr);
    let out = drengine(&n.url, CMP_TOKEN, &["no-such-command"]).await;
    assert_eq!(out.code, 2);
    let out = drengine(
        &n.url,
        CMP_TOKEN,
        &["resolve", "svc", "policy", "--choose", "nonsense", "--yes"],
    )
    .await;
    assert_eq!(out.code, 2);

    let help = drengine(&n.url, CMP_TOKEN, &["--help"]).await;
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:"));

    let svc = n.protect("vm-1").await;
    let id = svc["id"].as_str().unwrap();
    let out = drengine(&n.url, CMP_TOKEN, &["--json", "failover", id, "--yes"]).await;
    assert_eq!(out.code, 1, "engine off: 503");
    assert_eq!(out.json()["error"]["code"], "engine_not_running");
    let out = drengine(
        &n.url,
        OP_TOKEN,
        &["deactivate", id, "--zone", "zone-c", "--yes"],
    )
    .await;
    assert_eq!(out.code, 4, "no VM there: 409");

    // A port nobody listens on: unreachable.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let out = drengine(&dead, READ_TOKEN, &["services"]).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_conflicts_and_peers_in_json() {
    let n = start_node().await;
    let out = drengine(
        &n.url,
        CMP_TOKEN,
        &[
            "--json",
            "send",
            "--to",
            "zone-b",
            "--kind",
            "cmp.keep-stopped",
            "--body",
            r#"{"vm": "vm-1"}"#,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["kind"], "cmp.keep-stopped");
    assert_eq!(out.json()["body"]["vm"], "vm-1");
    let id = out.json()["id"].as_str().unwrap().to_string();
    let out = drengine(
        &n.url,
        CMP_TOKEN,
        &["send", "--to", "zone-b", "--body", "{oops"],
    )
    .await;
    assert_eq!(out.code, 2, "bad JSON is a usage error: {}", out.stderr);
    let out = drengine(
        &n.url,
        READ_TOKEN,
        &[
            "--json",
            "messages",
            "--direction",
            "outbox",
            "--kind",
            "cmp.keep-stopped",
            "--state",
            "sent",
        ],
    )
    .await;
    assert_eq!(
        out.json()["messages"][0]["id"],
        id.as_str(),
        "{}",
        out.stdout
    );
    let out = drengine(
        &n.url,
        READ_TOKEN,
        &["--json", "messages", "--direction", "outbox"],
    )
    .await;
    assert_eq!(out.json()["messages"][0]["id"], id.as_str());
    let out = drengine(&n.url, CMP_TOKEN, &["ack", &id, "--result", "true"]).await;
    assert_eq!(out.code, 4, "only the addressee acknowledges");
    let out = drengine(&n.url, CMP_TOKEN, &["messages", "ack", &id]).await;
    assert_eq!(out.code, 4, "only the addressee acknowledges");
    let out = drengine(&n.url, READ_TOKEN, &["--json", "conflicts"]).await;
    assert_eq!(out.json()["conflicts"], serde_json::json!([]));
    let out = drengine(&n.url, READ_TOKEN, &["--json", "peers"]).await;
    assert_eq!(out.json()["peers"][0]["zone"], "zone-b");
    let out = drengine(&n.url, READ_TOKEN, &["status"]).await;
    assert!(out.stdout.starts_with("zone zone-a"), "{}", out.stdout);
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_event_as_a_json_line() {
    let n = start_node().await;
    let mut child = Command::new(BIN)
        .args(["--api", &n.url, "--token", READ_TOKEN, "--json", "watch"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Writes until the watcher has connected and reports one.
    let line = loop {
        n.protect("vm-1").await;
        if let Ok(Ok(Some(l))) =
            tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
        {
            break l;
        }
    };
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "event");
    assert_eq!(v["data"]["op"], "create_service");
    assert_eq!(v["data"]["actor"], "cmp-1");
    child.kill().await.unwrap();
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_writes_a_private_key_file_and_prints_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.key");
    let out = drengine(
        "http://unused",
        "",
        &["keygen", "--out", path.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = drengine::node::config::read_signing_key(&path).unwrap();
    assert_eq!(
        out.stdout.trim(),
        hex::encode(key.verifying_key().to_bytes())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = drengine(
        "http://unused",
        "",
        &["keygen", "--out", path.to_str().unwrap()],
    )
    .await;
    assert_eq!(again.code, 2, "refuses to overwrite");
    let printed = drengine("http://unused", "", &["keygen"]).await;
    assert!(printed.stdout.contains("public_key = "));
}

/// The DR commands show the action's preflight and ask for the service id
/// on a terminal; `--yes` goes ahead, `--dry-run` only shows; with no
/// terminal and no `--yes` they refuse (exit 2) and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_commands_ask_for_the_service_id_unless_yes() {
    let n = start_node().await;
    let svc = n.protect("vm-1").await;
    let id = svc["id"].as_str().unwrap().to_string();
    let digest = || async { n.get("/v1/status", READ_TOKEN).await.body["digest"].clone() };
    let before = digest().await;

    // No terminal on stdin (`output()` gives the child none), no --yes:
    // every DR command refuses before it sends anything.
    for args in [
        &["service", "delete", &id][..],
        &["deactivate", &id, "--zone", "zone-a"],
        &["resolve", &id, "active_vms", "--keep-zone", "zone-a"],
        &["failover", &id],
        &["migrate", &id, "--target", "zone-b"],
        &["migrate", &id, "--complete"],
        &["revert", &id, "--rp", "zone-a.1"],
        &["test-failover", &id],
    ] {
        let out = drengine(&n.url, OP_TOKEN, args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("not a terminal"), "{}", out.stderr);
        assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    }
    assert_eq!(digest().await, before);

    // --dry-run: the preflight only, as JSON or for people.
    let out = drengine(
        &n.url,
        OP_TOKEN,
        &["--json", "service", "delete", &id, "--dry-run"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pre = out.json();
    assert_eq!(pre["action"], "delete");
    assert_eq!(pre["service"], id.as_str());
    let out = drengine(
        &n.url,
        OP_TOKEN,
        &["deactivate", &id, "--zone", "zone-a", "--dry-run"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("preflight: deactivate of service {id} in zone-a")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("active after"), "{}", out.stdout);
    // A refused dry run is the action's refusal: exit 4, the same error.
    let out = drengine(
        &n.url,
        OP_TOKEN,
        &["--json", "deactivate", &id, "--zone", "zone-c", "--dry-run"],
    )
    .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.json()["error"]["code"], "no_vm");
    assert_eq!(digest().await, before);

    // A terminal: the preflight is shown and the id asked for; anything
    // else typed refuses (exit 2) and changes nothing.
    let out = drengine_typed(&n.url, OP_TOKEN, &["service", "delete", &id], "vm-1\n").await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("preflight: delete of service {id}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("Type the service id ({id})")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("not confirmed"), "{}", out.stderr);
    assert_eq!(digest().await, before);
    // A refusal on a terminal asks nothing.
    let out = drengine_typed(
        &n.url,
        OP_TOKEN,
        &["deactivate", &id, "--zone", "zone-c"],
        "",
    )
    .await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        !out.stderr.contains("Type the service id"),
        "{}",
        out.stderr
    );

    // --yes goes ahead without asking.
    let out = drengine(
        &n.url,
        OP_TOKEN,
        &["--json", "deactivate", &id, "--zone", "zone-a", "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["slots"]["zone-a"]["active"], false);
    // The id typed: it goes ahead.
    let typed = format!("{id}\n");
    let out = drengine_typed(
        &n.url,
        OP_TOKEN,
        &["--json", "service", "delete", &id],
        &typed,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["deleted"], true, "{}", out.stdout);
    n.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_prints_a_table_and_the_servers_json() {
    let n = start_node().await;
    let created = n.protect("vm-h").await;
    let svc = created["id"].as_str().unwrap();
    let out = drengine(
        &n.url,
        OP_TOKEN,
        &["--json", "service", "delete", svc, "--yes"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // --json: the server's answer, entries newest first.
    let out = drengine(&n.url, READ_TOKEN, &["--json", "history", svc]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "mark-deleted", "protect"], "{v}");
    assert_eq!(v["entries"][0]["actor"], "alice");
    assert_eq!(v["entries"][2]["actor"], "cmp-1");
    assert_eq!(v["entries"][0]["zone"], "zone-a");
    assert!(v["next_before"].is_null());
    let server = n
        .get(&format!("/v1/services/{svc}/history"), READ_TOKEN)
        .await;
    assert_eq!(v, server.body);

    // Filters as flags, and paging with --limit / --before.
    let out = drengine(
        &n.url,
        READ_TOKEN,
        &["--json", "history", "--actor", "cmp-1", "--zone", "zone-a"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["entries"].as_array().unwrap().len(), 1);
    let out = drengine(&n.url, READ_TOKEN, &["--json", "history", "--limit", "2"]).await;
    let page = out.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let next = page["next_before"].as_str().unwrap().to_string();
    let out = drengine(
        &n.url,
        READ_TOKEN,
        &["--json", "history", "--limit", "2", "--before", &next],
    )
    .await;
    assert_eq!(out.json()["entries"][0]["action"], "protect");

    // The table: a header and a row per entry, newest first.
    let out = drengine(&n.url, READ_TOKEN, &["history", svc]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("AT"), "{}", out.stdout);
    for h in ["ZONE", "ACTOR", "ACTION", "SERVICE", "RP", "SUMMARY"] {
        assert!(lines[0].contains(h), "{}", out.stdout);
    }
    let rows: Vec<&&str> = lines.iter().filter(|l| l.contains("zone-a")).collect();
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert!(rows[0].contains("delete") && rows[0].contains("alice"));
    assert!(rows[2].contains("protect") && rows[2].contains("cmp-1"));

    // A bad filter is the server's 400: exit code 1, its message shown.
    let out = drengine(&n.url, READ_TOKEN, &["history", "--since", "yesterday"]).await;
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(out.stderr.contains("since"), "{}", out.stderr);
    n.node.shutdown().await;
}
