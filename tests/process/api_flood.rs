//! A connection flood over real processes (one `storpool-emulator`, one
//! `drengine run` per zone, default `[api]` limits): 2,000 clients open
//! connections to zone-a's API and never finish their request headers,
//! reopening whenever the node closes one, for `DRENGINE_FLOOD_HOLD_S`
//! seconds (default 40). Meanwhile authenticated requests keep answering, on
//! kept-alive and on fresh connections; a write in zone-a reaches zone-b and
//! zone-c (sync is not starved); zone-a's engine keeps calling its StorPool
//! cluster; the node's open files stay under the cap plus what it had; and a
//! SIGINT still stops it cleanly, flood or not.

use crate::harness::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Clients that never finish their headers.
const ATTACKERS: usize = 2_000;
/// `api.max_connections`'s default.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How long an attacker waits before reopening a connection the node closed.
const REOPEN_PAUSE_MS: u64 = 250;
/// Time between two probes of the API.
const PROBE_INTERVAL_MS: u64 = 250;
/// Open files the node may have beyond the cap and what it had before.
const FD_SLACK: usize = 64;

fn hold() -> Duration {
    Duration::from_secs(
        std::env::var("DRENGINE_FLOOD_HOLD_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40),
    )
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[derive(Default)]
struct Flood {
    opened: AtomicU64,
    closed_by_node: AtomicU64,
    connect_failed: AtomicU64,
    /// Connections open right now.
    open: AtomicU64,
}

/// One client: opens a connection, sends half a request, waits for the node
/// to close it, pauses, again, until `stop`.
async fn attacker(addr: String, flood: Arc<Flood>, stop: Arc<AtomicBool>) {
    let half =
        format!("GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OP_TOKEN}\r\n");
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        match TcpStream::connect(&addr).await {
            Ok(mut s) => {
                flood.opened.fetch_add(1, Ordering::Relaxed);
                flood.open.fetch_add(1, Ordering::Relaxed);
                if s.write_all(half.as_bytes()).await.is_ok() {
                    // Until the node closes it (or the flood ends).
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
                            .await
                        {
                            Err(_) => continue,
                            Ok(Ok(0)) | Ok(Err(_)) => {
                                flood.closed_by_node.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(Ok(_)) => panic!("the node answered a request it never got whole"),
                        }
                    }
                }
                flood.open.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) => {
                flood.connect_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(REOPEN_PAUSE_MS)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_sent_requests_starve_neither_the_api_nor_sync_nor_storpool() {
    let hold = hold();
    println!("flood: {ATTACKERS} connections that never finish their headers, held {hold:?}");
    let mut net = Net::start().await;
    let before = net.protect("zone-a", "vm-before").await;
    net.wait_services(&ZONES, &BTreeSet::from([before])).await;
    let pid = net.pid("zone-a").expect("zone-a runs");
    let fds_before = open_files(pid);
    let calls_before: u64 = net.emulator_calls("zone-a").await.values().sum();
    let addr = net.api("zone-a").trim_start_matches("http://").to_string();

    let flood = Arc::new(Flood::default());
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| tokio::spawn(attacker(addr.clone(), flood.clone(), stop.clone())))
        .collect();
    let started = Instant::now();
    // The cap fills: the node holds as many as it allows.
    wait_until(
        "the node holds a full cap of flood connections",
        WAIT,
        || async { open_files(pid) >= fds_before + DEFAULT_MAX_CONNECTIONS - FD_SLACK },
    )
    .await;
    println!(
        "cap full after {:?}: node has {} open files (was {fds_before})",
        started.elapsed(),
        open_files(pid)
    );

    let mut kept_alive = Vec::new();
    let mut fresh = Vec::new();
    let mut fds_max = 0;
    let mut write: Option<(Duration, Duration)> = None;
    while started.elapsed() < hold {
        fds_max = fds_max.max(open_files(pid));
        // A kept-alive connection (the harness's pooled client).
        let t = Instant::now();
        let a = net.get("zone-a", "/v1/status").await;
        assert_eq!(a.status, 200, "kept-alive probe: {}", a.text);
        kept_alive.push(t.elapsed());
        // A fresh connection each time.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let t = Instant::now();
        let res = client
            .get(format!("{}/v1/status", net.api("zone-a")))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("fresh-connection probe after {:?}: {e}", started.elapsed())
            });
        assert_eq!(res.status(), 200);
        fresh.push(t.elapsed());
        if write.is_none() && started.elapsed() >= hold / 2 {
            // A write in the flooded zone reaches the others.
            let t = Instant::now();
            let a = net.create_service_with("zone-a", "vm-during", 5).await;
            a.expect(201);
            let took_write = t.elapsed();
            let id = a.body["id"].as_str().expect("id").to_string();
            let reached = net
                .wait_services(&["zone-b", "zone-c"], &BTreeSet::from([id]))
                .await;
            write = Some((took_write, reached));
        }
        tokio::time::sleep(Duration::from_millis(PROBE_INTERVAL_MS)).await;
    }
    let (took_write, reached) = write.expect("the write was made during the flood");
    let calls_after: u64 = net.emulator_calls("zone-a").await.values().sum();
    let held = started.elapsed();
    let open_now = flood.open.load(Ordering::Relaxed);

    // SIGINT under the flood: a clean exit within the harness's deadline.
    let t = Instant::now();
    net.stop("zone-a").await;
    let took_stop = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }

    kept_alive.sort();
    fresh.sort();
    let opened = flood.opened.load(Ordering::Relaxed);
    let closed = flood.closed_by_node.load(Ordering::Relaxed);
    println!(
        "held {held:?}: {opened} flood connections opened ({:.0}/s), {closed} closed by the node, \
         {} connects failed, {open_now} open at the end",
        opened as f64 / held.as_secs_f64(),
        flood.connect_failed.load(Ordering::Relaxed),
    );
    println!(
        "probes: {} kept-alive p50 {:?} max {:?}; {} fresh p50 {:?} max {:?}",
        kept_alive.len(),
        percentile(&kept_alive, 0.5),
        percentile(&kept_alive, 1.0),
        fresh.len(),
        percentile(&fresh, 0.5),
        percentile(&fresh, 1.0),
    );
    println!(
        "write during the flood: acknowledged in {took_write:?}, in zone-b and zone-c {reached:?} later; \
         StorPool calls from zone-a during the flood: {}; node open files max {fds_max} (before {fds_before}); \
         SIGINT to exit {took_stop:?}",
        calls_after - calls_before
    );
    assert!(
        fds_max <= fds_before + DEFAULT_MAX_CONNECTIONS + FD_SLACK,
        "open files {fds_max} > {fds_before} + cap {DEFAULT_MAX_CONNECTIONS} + {FD_SLACK}"
    );
    assert!(
        calls_after > calls_before,
        "zone-a's engine stopped calling StorPool"
    );
    // At the moment of counting, a few flood connections are between being
    // closed by the node and reconnecting (250 ms later): nearly the cap.
    assert!(
        open_now as usize + 64 >= DEFAULT_MAX_CONNECTIONS,
        "the flood kept nearly a cap's worth of connections open ({open_now})"
    );
    assert!(closed > 0, "the node closed flood connections");
}
