//! Scenarios `propagate` (how long a durable write takes to be applied in
//! every zone, over one hop and along a five-zone line) and `heal` (two
//! zones that wrote apart converge: time and bytes on the wire against the
//! size of what was missing). Real nodes: redb files in a tempdir, libp2p
//! over loopback.

use anyhow::Context;
use drengine::model::{Policy, Retention, ServiceId, VmSlot, ZoneId};
use drengine::node::config::{Config, EngineConfig, SyncConfig, ZoneEntry};
use drengine::replica::{Dot, Op, Replica};
use drengine::store::{Db, Store};
use drengine::sync::{Sync, SyncHandle};
use ed25519_dalek::SigningKey;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Writes timed per topology (after the warm-up).
const WRITES: usize = 300;
const WARMUP_WRITES: usize = 20;
/// Events each side writes while partitioned, in `heal`.
const HEAL_EVENTS_PER_SIDE: usize = 10_000;
/// Writes in flight at once while filling a side (group commit).
const FILL_CONCURRENCY: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(60);

struct Node {
    zone: ZoneId,
    db: Db,
    sync: SyncHandle,
}

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

fn zone(s: &str) -> anyhow::Result<ZoneId> {
    Ok(ZoneId::new(s)?)
}

/// Starts `names` as zones, each dialling the next one (a line).
async fn line(names: &[&str]) -> anyhow::Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let keys: Vec<SigningKey> = (0..names.len())
        .map(|i| SigningKey::from_bytes(&[i as u8 + 11; 32]))
        .collect();
    let entries: Vec<ZoneEntry> = names
        .iter()
        .zip(&keys)
        .map(|(n, k)| {
            Ok(ZoneEntry {
                id: zone(n)?,
                public_key: drengine::node::config::PublicKey(k.verifying_key()),
                sync_addr: None,
                storpool_location: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let mut nodes = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let cfg = Config {
            zone: zone(n)?,
            data_dir: dir.path().to_path_buf(),
            key_file: dir.path().join(format!("{n}.key")),
            zones: entries.clone(),
            api: Default::default(),
            sync: SyncConfig {
                listen: "/ip4/127.0.0.1/tcp/0".into(),
                peers: names
                    .get(i + 1)
                    .map(|p| zone(p))
                    .transpose()?
                    .into_iter()
                    .collect(),
                ..SyncConfig::default()
            },
            engine: EngineConfig {
                enabled: false,
                ..Default::default()
            },
            storpool: Default::default(),
            history: Default::default(),
            messages: Default::default(),
        };
        cfg.validate()?;
        let store = Store::open(&dir.path().join(format!("{n}.redb")), &cfg.zone)?;
        let db = Db::open(
            store,
            Replica::new(cfg.zone.clone(), Some(keys[i].clone()), cfg.directory()),
        )?;
        db.override_rebuild("bench");
        let sync = Sync::start(&cfg.sync_setup(), keys[i].clone(), db.clone()).await?;
        nodes.push(Node {
            zone: cfg.zone.clone(),
            db,
            sync,
        });
    }
    for w in nodes.windows(2) {
        let addr = w[1].sync.listen_addrs()[0].clone();
        w[0].sync.set_peer_addr(&w[1].zone, addr).await?;
    }
    for w in nodes.windows(2) {
        wait(TIMEOUT, || {
            w[0].sync
                .peers()
                .iter()
                .any(|p| p.zone == w[1].zone && p.connected)
        })
        .await
        .context("neighbours did not connect")?;
    }
    Ok(Cluster { _dir: dir, nodes })
}

impl Cluster {
    async fn stop(self) {
        for n in self.nodes {
            n.sync.shutdown().await;
        }
    }
}

async fn wait(timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn create_op(service: &ServiceId, recovery: &ZoneId) -> Op {
    let retention = Retention {
        keep_last: 4,
        keep_for_s: 86_400,
    };
    Op::CreateService {
        service: service.clone(),
        policy: Policy {
            interval_s: 60,
            recovery_zone: recovery.clone(),
            local_retention: retention.clone(),
            remote_retention: retention,
        },
        metadata: "x".repeat(200),
        slot: VmSlot {
            cmp_vm_id: format!("{service}-vm"),
            disks: vec![format!("{service}-disk0")],
            active: true,
        },
    }
}

fn metadata_op(service: &ServiceId, n: usize) -> Op {
    Op::SetMetadata {
        service: service.clone(),
        metadata: format!("{n:0>200}"),
    }
}

/// Forwards, from every node but the first, each applied event of the
/// first node's zone with the time it became durable there.
fn watch_applied(cluster: &Cluster) -> mpsc::UnboundedReceiver<(usize, Dot, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let origin = cluster.nodes[0].zone.clone();
    for (i, n) in cluster.nodes.iter().enumerate().skip(1) {
        let mut feed = n.db.subscribe();
        let tx = tx.clone();
        let origin = origin.clone();
        tokio::spawn(async move {
            while let Ok(commit) = feed.recv().await {
                let now = Instant::now();
                for (ev, _) in &commit.events {
                    if ev.event.origin == origin && tx.send((i, ev.dot(), now)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    rx
}

/// Latencies (ms) from each write returning at the first node to its
/// event being applied at every other node.
async fn measure(cluster: &Cluster) -> anyhow::Result<Vec<f64>> {
    let first = &cluster.nodes[0];
    let service = ServiceId::new("bench-svc")?;
    let recovery = cluster.nodes[1].zone.clone();
    let mut applied = watch_applied(cluster);
    let others = cluster.nodes.len() - 1;
    let mut out = Vec::with_capacity(WRITES);
    for n in 0..WARMUP_WRITES + WRITES {
        let op = if n == 0 {
            create_op(&service, &recovery)
        } else {
            metadata_op(&service, n)
        };
        let ev = first.db.write(op, "bench").await?;
        let acked = Instant::now();
        let dot = ev.dot();
        let mut seen = vec![false; cluster.nodes.len()];
        let mut last = acked;
        let mut remaining = others;
        while remaining > 0 {
            let (i, d, at) = tokio::time::timeout(TIMEOUT, applied.recv())
                .await
                .context("an event did not arrive")?
                .context("watchers stopped")?;
            if d == dot && !seen[i] {
                seen[i] = true;
                remaining -= 1;
                last = last.max(at);
            }
        }
        if n >= WARMUP_WRITES {
            out.push(last.saturating_duration_since(acked).as_secs_f64() * 1000.0);
        }
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Figures {
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

fn figures(mut v: Vec<f64>) -> Figures {
    v.sort_by(|a, b| a.total_cmp(b));
    Figures {
        p50: percentile(&v, 0.50),
        p99: percentile(&v, 0.99),
        max: v.last().copied().unwrap_or(0.0),
        mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn propagate(_args: &[String]) -> anyhow::Result<()> {
    init_tracing();
    runtime()?.block_on(async {
        let two = line(&["a", "b"]).await?;
        let hop1 = figures(measure(&two).await?);
        two.stop().await;
        let five = line(&["a", "b", "c", "d", "e"]).await?;
        let line5 = figures(measure(&five).await?);
        five.stop().await;

        println!("propagate: write acknowledged at a -> applied in every zone ({WRITES} writes each, after {WARMUP_WRITES} warm-up)");
        println!("{:<10} {:>9} {:>9} {:>9} {:>9}", "topology", "p50 ms", "p99 ms", "max ms", "mean ms");
        for (name, f) in [("1 hop", &hop1), ("line of 5", &line5)] {
            println!(
                "{:<10} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name, f.p50, f.p99, f.max, f.mean
            );
        }
        println!("targets: line5 p50 <= 10 ms, p99 <= 30 ms");
        let json = serde_json::json!({
            "writes": WRITES,
            "hop1_p50_ms": round3(hop1.p50),
            "hop1_p99_ms": round3(hop1.p99),
            "line5_p50_ms": round3(line5.p50),
            "line5_p99_ms": round3(line5.p99),
        });
        println!("{json}");
        Ok(())
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes `n` metadata updates to `service` on `node`, many in flight.
async fn fill(node: &Node, service: &ServiceId, n: usize) -> anyhow::Result<()> {
    let mut done = 0;
    while done < n {
        let chunk = FILL_CONCURRENCY.min(n - done);
        let writes = (0..chunk).map(|i| node.db.write(metadata_op(service, done + i), "bench"));
        for r in futures::future::join_all(writes).await {
            r?;
        }
        done += chunk;
    }
    Ok(())
}

pub fn heal(_args: &[String]) -> anyhow::Result<()> {
    init_tracing();
    runtime()?.block_on(async {
        let cluster = line(&["a", "b"]).await?;
        let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
        let (sa, sb) = (ServiceId::new("svc-a")?, ServiceId::new("svc-b")?);
        a.db.write(create_op(&sa, &b.zone), "bench").await?;
        b.db.write(create_op(&sb, &a.zone), "bench").await?;
        let digest = |n: &Node| n.db.read(|r| r.digest());
        wait(TIMEOUT, || digest(a) == digest(b))
            .await
            .context("initial sync")?;

        a.sync.block(std::slice::from_ref(&b.zone)).await?;
        b.sync.block(std::slice::from_ref(&a.zone)).await?;
        let connected = |n: &Node| n.sync.peers().iter().any(|p| p.connected);
        wait(TIMEOUT, || !connected(a) && !connected(b))
            .await
            .context("partition")?;

        let filled = Instant::now();
        let (ra, rb) = tokio::join!(
            fill(a, &sa, HEAL_EVENTS_PER_SIDE),
            fill(b, &sb, HEAL_EVENTS_PER_SIDE)
        );
        ra?;
        rb?;
        let fill_ms = filled.elapsed().as_secs_f64() * 1000.0;

        // What each side lacks, in the encoding that goes on the wire.
        let (va, vb) = (a.db.read(|r| r.vv().clone()), b.db.read(|r| r.vv().clone()));
        let missing_a =
            a.db.store()
                .events_missing(&vb, &va, usize::MAX, usize::MAX)?;
        let missing_b =
            b.db.store()
                .events_missing(&va, &vb, usize::MAX, usize::MAX)?;
        let missing_events = missing_a.events.len() + missing_b.events.len();
        let missing_bytes = (missing_a.bytes + missing_b.bytes) as u64;
        let sent_before = a.sync.counters().bytes_sent + b.sync.counters().bytes_sent;

        let healed = Instant::now();
        a.sync.unblock(std::slice::from_ref(&b.zone)).await?;
        b.sync.unblock(std::slice::from_ref(&a.zone)).await?;
        wait(TIMEOUT, || digest(a) == digest(b))
            .await
            .context("convergence")?;
        let converge_ms = healed.elapsed().as_secs_f64() * 1000.0;
        let bytes_sent = a.sync.counters().bytes_sent + b.sync.counters().bytes_sent - sent_before;
        cluster.stop().await;

        let ratio = bytes_sent as f64 / missing_bytes.max(1) as f64;
        println!(
            "heal: two zones write {HEAL_EVENTS_PER_SIDE} events each while partitioned, then heal"
        );
        println!("{:<28} {:>14}", "figure", "value");
        println!("{:<28} {:>14.1}", "fill both sides (ms)", fill_ms);
        println!("{:<28} {:>14}", "missing events", missing_events);
        println!("{:<28} {:>14}", "missing event bytes", missing_bytes);
        println!("{:<28} {:>14}", "bytes sent after heal", bytes_sent);
        println!("{:<28} {:>14.3}", "bytes / missing", ratio);
        println!("{:<28} {:>14.1}", "converge (ms)", converge_ms);
        println!("targets: converge <= 2000 ms, bytes <= 1.3 x missing");
        let json = serde_json::json!({
            "events_per_side": HEAL_EVENTS_PER_SIDE,
            "converge_ms": round3(converge_ms),
            "bytes_sent": bytes_sent,
            "missing_event_bytes": missing_bytes,
        });
        println!("{json}");
        Ok(())
    })
}
