//! `drengine devnet` as a user runs it: three zones in one process on free
//! ports, reachable with the CLI, stopped cleanly by Ctrl-C (SIGINT).

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_drengine");

async fn cli(api: &str, args: &[&str]) -> (i32, Value) {
    let out = Command::new(BIN)
        .args(["--api", api, "--token", "secret-devnet", "--json"])
        .args(args)
        .output()
        .await
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_starts_three_zones_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "devnet",
            "--base-port",
            "0",
            "--json",
            "--token",
            "secret-devnet",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("devnet started in time")
        .unwrap()
        .expect("a line");
    let info: Value = serde_json::from_str(&first).unwrap();
    let zones = info["zones"].as_array().unwrap();
    let names: Vec<&str> = zones.iter().map(|z| z["zone"].as_str().unwrap()).collect();
    assert_eq!(names, ["zone-a", "zone-b", "zone-c"]);
    for z in zones {
        let (code, status) = cli(z["api"].as_str().unwrap(), &["status"]).await;
        assert_eq!(code, 0);
        assert_eq!(status["zone"], z["zone"]);
    }
    // zone-b links to both others, zone-a and zone-c only to zone-b.
    let (_, peers) = cli(zones[1]["api"].as_str().unwrap(), &["peers"]).await;
    let peer_zones: Vec<&str> = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["zone"].as_str().unwrap())
        .collect();
    assert_eq!(peer_zones, ["zone-a", "zone-c"]);
    let (_, peers) = cli(zones[0]["api"].as_str().unwrap(), &["peers"]).await;
    assert_eq!(peers["peers"].as_array().unwrap().len(), 1);
    // The generated configs are real: each loads and validates.
    for name in names {
        drengine::node::config::Config::load(&dir.path().join(name).join("config.toml")).unwrap();
    }
    let (code, svc) = cli(
        zones[0]["api"].as_str().unwrap(),
        &[
            "protect",
            "--vm",
            "vm-1",
            "--disk",
            "vm-1-root",
            "--recovery-zone",
            "zone-b",
        ],
    )
    .await;
    assert_eq!(code, 0, "{svc}");

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("devnet stopped in time")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// `drengine devnet --configs-only`: the three zones' keys and configs, for
/// running each zone as its own process (as `scripts/demo.sh` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_configs_only_writes_configs_that_load_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["devnet", "--configs-only", "--base-port", "9100", "--json"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let zones = info["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 3);
    for (i, z) in zones.iter().enumerate() {
        assert_eq!(z["api"], format!("http://127.0.0.1:{}", 9100 + i));
        assert_eq!(z["storpool"], format!("http://127.0.0.1:{}", 9300 + i));
        let config = drengine::node::config::Config::load(std::path::Path::new(
            z["config"].as_str().unwrap(),
        ))
        .unwrap();
        assert_eq!(config.zone.as_str(), z["zone"].as_str().unwrap());
        assert!(config.engine.enabled);
    }
    // Free ports cannot be written into configs.
    let out = Command::new(BIN)
        .args(["devnet", "--configs-only", "--base-port", "0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
