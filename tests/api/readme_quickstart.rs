//! README's "Try it on the devnet" block runs as printed: the devnet on its
//! embedded defaults (APIs on 7101–7103, StorPool on 7301–7303, token
//! `devnet`), then every line of the block in one fresh `bash -e` whose PATH
//! has no drengine on it, from the repository root. The block's last command
//! (`drengine watch`) follows the feed until stopped: it must print the next
//! change, then it is stopped as a user would (SIGINT).
//!
//! The block puts `target/release` on the PATH, so the test runs only when
//! it was itself built into that directory (as `scripts/test.sh` does); in
//! another profile or target dir it says so and passes without running.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_drengine");
const PORTS: [u16; 9] = [7101, 7102, 7103, 7201, 7202, 7203, 7301, 7302, 7303];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first `sh` block after the "Try it on the devnet" heading.
fn quickstart_block() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Try it on the devnet")
        .expect("README has the quick start")..];
    let start = section.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = section[start..].find("```").expect("the block ends") + start;
    section[start..end].to_string()
}

/// Lines of a child's output, as they come.
fn lines(out: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut l = BufReader::new(out).lines();
        while let Ok(Some(line)) = l.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// Waits for a line containing `needle`; returns every line seen until then.
async fn wait_line(
    rx: &mut mpsc::UnboundedReceiver<String>,
    seen: &mut Vec<String>,
    needle: &str,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(line)) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            Ok(None) | Err(_) => return false,
        }
    }
}

/// Sends `signal` to the process group `pgid`.
fn signal_group(signal: &str, pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .status();
}

/// Kills a process group when dropped, so a failed assertion leaves no
/// devnet or `drengine watch` behind.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group("-KILL", pgid);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_runs_as_printed() {
    let release = repo().join("target").join("release");
    if Path::new(BIN).parent() != Some(release.as_path()) {
        eprintln!("skipped: the README's PATH names {release:?}; this test binary is {BIN}");
        return;
    }
    for p in PORTS {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} is taken: the quick start uses the devnet's default ports; stop what holds it"
        );
    }
    let block = quickstart_block();
    assert!(block.contains("drengine watch"), "{block}");

    // The README's first command, with the binary it builds.
    let mut devnet = Command::new(BIN)
        .arg("devnet")
        .current_dir(repo())
        .process_group(0)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let devnet_group = Group(devnet.id());
    let (dtx, mut drx) = mpsc::unbounded_channel();
    lines(devnet.stdout.take().unwrap(), dtx.clone());
    lines(devnet.stderr.take().unwrap(), dtx);
    let mut devnet_out = Vec::new();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = http
            .get("http://127.0.0.1:7103/healthz")
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        while let Ok(l) = drx.try_recv() {
            devnet_out.push(l);
        }
        assert!(
            Instant::now() < deadline,
            "devnet did not start: {devnet_out:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A fresh shell: no DRENGINE_* and no drengine on the PATH.
    let path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !Path::new(d).join("drengine").exists())
        .collect::<Vec<_>>()
        .join(":");
    let mut shell = Command::new("bash")
        .args(["-e", "-x", "-c", &block])
        .current_dir(repo())
        .process_group(0)
        .env_clear()
        .env("PATH", path)
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let shell_group = Group(shell.id());
    let (tx, mut rx) = mpsc::unbounded_channel();
    lines(shell.stdout.take().unwrap(), tx.clone());
    lines(shell.stderr.take().unwrap(), tx);
    let mut seen = Vec::new();

    // Every command before `watch` ran and succeeded (`bash -e` stops at
    // the first that fails, and then never reaches `watch`).
    let reached = wait_line(
        &mut rx,
        &mut seen,
        "+ drengine watch",
        Duration::from_secs(240),
    )
    .await;
    assert!(
        reached,
        "the block stopped before `drengine watch`: {:?}\n{seen:#?}",
        shell.try_wait()
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("is complete in zone-a, zone-b")),
        "{seen:#?}"
    );
    // `watch` follows the feed: a change made now shows up in it. Take RPs
    // where the VM is now active, zone-b, until one is seen (the feed may
    // still be connecting when the first is).
    let mut shown = false;
    for _ in 0..20 {
        let r = http
            .post("http://127.0.0.1:7102/v1/services/vm-1-dr/rps")
            .bearer_auth("devnet")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        if wait_line(&mut rx, &mut seen, "vm-1-dr", Duration::from_secs(3)).await {
            shown = true;
            break;
        }
    }
    assert!(shown, "watch printed no change: {seen:#?}");
    assert_eq!(
        shell.try_wait().unwrap(),
        None,
        "watch keeps following until stopped"
    );
    // Ctrl-C, as a user stops them.
    if let Some(pgid) = shell_group.0 {
        signal_group("-INT", pgid);
    }
    let stopped = tokio::time::timeout(Duration::from_secs(20), shell.wait()).await;
    assert!(stopped.is_ok(), "watch stops on Ctrl-C");
    if let Some(pgid) = devnet_group.0 {
        signal_group("-INT", pgid);
    }
    let stopped = tokio::time::timeout(Duration::from_secs(30), devnet.wait()).await;
    assert!(stopped.is_ok(), "the devnet stops on Ctrl-C");
}
