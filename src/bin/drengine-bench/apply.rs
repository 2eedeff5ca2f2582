//! Scenarios `apply` (events applied per second, in memory and with redb)
//! and `write` (durable local write latency and group-commit throughput).

use anyhow::Context;
use drengine::model::{Policy, Retention, ServiceId, VmSlot, ZoneId};
use drengine::replica::{Directory, Op, Replica, SignedEvent};
use drengine::store::{Db, Store};
use ed25519_dalek::SigningKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZONES: usize = 3;

fn zone(i: usize) -> anyhow::Result<ZoneId> {
    Ok(ZoneId::new(format!("zone-{i}"))?)
}

fn setup() -> anyhow::Result<(Vec<SigningKey>, Directory)> {
    let keys: Vec<SigningKey> = (0..ZONES)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 7; 32]))
        .collect();
    let mut map = std::collections::BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        map.insert(zone(i)?, k.verifying_key());
    }
    Ok((keys, Directory::new(map)))
}

fn protect_op(i: usize) -> anyhow::Result<Op> {
    Ok(Op::CreateService {
        service: ServiceId::new(format!("svc-{i}"))?,
        policy: Policy {
            interval_s: 60,
            recovery_zone: zone(1)?,
            local_retention: Retention {
                keep_last: 4,
                keep_for_s: 86_400,
            },
            remote_retention: Retention {
                keep_last: 8,
                keep_for_s: 86_400,
            },
        },
        metadata: "x".repeat(200),
        slot: VmSlot {
            cmp_vm_id: format!("vm-{i}"),
            disks: vec![format!("vm-{i}-disk0"), format!("vm-{i}-disk1")],
            active: true,
        },
    })
}

fn metadata_op(i: usize, n: usize) -> anyhow::Result<Op> {
    Ok(Op::SetMetadata {
        service: ServiceId::new(format!("svc-{i}"))?,
        metadata: format!("{n:0>200}"),
    })
}

/// `total` events from three zones writing to 1,000 services, in an order
/// every replica can apply (each zone sees the others' events as it goes).
fn make_events(total: usize) -> anyhow::Result<Vec<SignedEvent>> {
    let (keys, dir) = setup()?;
    let mut writers: Vec<Replica> = (0..ZONES)
        .map(|i| Ok(Replica::new(zone(i)?, Some(keys[i].clone()), dir.clone())))
        .collect::<anyhow::Result<_>>()?;
    let mut out = Vec::with_capacity(total);
    for n in 0..total {
        let w = n % ZONES;
        let op = if n < 1000 {
            protect_op(n)?
        } else {
            metadata_op(n % 1000, n)?
        };
        // Only the first zone creates; the others edit once they have seen it.
        let w = if n < 1000 { 0 } else { w };
        let ev = writers[w].local_write(op, "bench", 1_700_000_000_000 + n as u64)?;
        for (j, r) in writers.iter_mut().enumerate() {
            if j != w {
                r.receive(ev.clone(), 0);
            }
        }
        out.push(ev);
    }
    Ok(out)
}

fn fresh_replica() -> anyhow::Result<Replica> {
    let (_, dir) = setup()?;
    Ok(Replica::new(ZoneId::new("reader")?, None, dir))
}

pub fn apply(args: &[String]) -> anyhow::Result<()> {
    let total: usize = args
        .first()
        .map(|s| s.parse())
        .transpose()
        .context("event count")?
        .unwrap_or(30_000);
    let events = make_events(total)?;

    let mut mem = fresh_replica()?;
    let t = Instant::now();
    for ev in events.iter().cloned() {
        mem.receive(ev, 0);
    }
    let mem_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(mem.vv().total() == total as u128, "not all events applied");

    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("bench.redb"), &ZoneId::new("reader")?)?;
    let mut disk = fresh_replica()?;
    let batch = 256;
    let t = Instant::now();
    for chunk in events.chunks(batch) {
        let mut applied = Vec::with_capacity(chunk.len());
        for ev in chunk.iter().cloned() {
            if let drengine::replica::Received::Applied(a) = disk.receive(ev, 0) {
                applied.extend(a.into_iter().map(|a| a.event));
            }
        }
        store.commit(&mut disk, &applied, &[])?;
    }
    let disk_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(disk.digest() == mem.digest(), "digests differ");

    let per_mem = total as f64 / mem_s;
    let per_disk = total as f64 / disk_s;
    println!("scenario apply: {total} signed events from {ZONES} zones, 1000 services");
    println!("{:<28} {:>14}", "mode", "events/s");
    println!("{:<28} {:>14.0}", "memory (verify + apply)", per_mem);
    println!(
        "{:<28} {:>14.0}",
        format!("redb ({batch}/txn, durable)"),
        per_disk
    );
    println!(
        "{}",
        serde_json::json!({
            "scenario": "apply",
            "events": total,
            "events_per_s_memory": per_mem.round(),
            "events_per_s_redb": per_disk.round(),
        })
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// The floor under any durable write here: a bare redb transaction with one
/// 300-byte row and a durable commit, measured in the same run.
fn bare_redb_commit(n: usize) -> anyhow::Result<(f64, f64)> {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let tmp = tempfile::tempdir()?;
    let db = redb::Database::create(tmp.path().join("bare.redb"))?;
    let row = [7u8; 300];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        let txn = db.begin_write()?;
        txn.open_table(T)?.insert(i, &row[..])?;
        txn.commit()?;
        lat.push(t.elapsed());
    }
    lat.sort();
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

pub fn write(args: &[String]) -> anyhow::Result<()> {
    let single_n: usize = args
        .first()
        .map(|s| s.parse())
        .transpose()
        .context("write count")?
        .unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (bare_p50, bare_p99) = bare_redb_commit(500)?;
    rt.block_on(async move {
        let (keys, dir) = setup()?;
        let tmp = tempfile::tempdir()?;
        let store = Store::open(&tmp.path().join("write.redb"), &zone(0)?)?;
        let db = Db::open(
            store,
            Replica::new(zone(0)?, Some(keys[0].clone()), dir.clone()),
        )?;
        db.override_rebuild("bench");
        for i in 0..1000 {
            db.write(protect_op(i)?, "bench").await?;
        }
        // One writer: each write waits for its own durable commit.
        let mut lat = Vec::with_capacity(single_n);
        for n in 0..single_n {
            let op = metadata_op(n % 1000, n)?;
            let t = Instant::now();
            db.write(op, "bench").await?;
            lat.push(t.elapsed());
        }
        lat.sort();
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

        // 64 concurrent writers: commits are shared.
        let writers = 64;
        let per_writer = 500;
        let db = Arc::new(db);
        let (commits0, commands0) = db.commit_stats();
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..per_writer {
                    db.write(metadata_op((w * 15 + n) % 1000, n)?, "bench")
                        .await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = t.elapsed().as_secs_f64();
        let rate = (writers * per_writer) as f64 / secs;
        let (commits1, commands1) = db.commit_stats();
        let per_commit = (commands1 - commands0) as f64 / (commits1 - commits0).max(1) as f64;

        // A restart: the state rows at the last checkpoint, then the log
        // replayed above it (at most CHECKPOINT_EVENTS events, and a batch).
        let digest = db.read(|r| r.digest());
        drop(db);
        let path = tmp.path().join("write.redb");
        let deadline = Instant::now() + Duration::from_secs(10);
        let store = loop {
            // The writer thread closes the database just after the last handle goes.
            match Store::open(&path, &zone(0)?) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        let t = Instant::now();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        let replica = store.load_replica(zone(0)?, Some(keys[0].clone()), dir, now_ms)?;
        let restart_ms = t.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(replica.digest() == digest, "the restarted replica differs");
        println!("scenario write: durable local writes (fsync per commit), 1000 services");
        println!("{:<34} {:>12}", "measure", "value");
        println!(
            "{:<34} {:>12.3}",
            "bare redb commit p50 ms (floor)", bare_p50
        );
        println!(
            "{:<34} {:>12.3}",
            "bare redb commit p99 ms (floor)", bare_p99
        );
        println!("{:<34} {:>12.3}", "1 writer p50 ms", p50);
        println!("{:<34} {:>12.3}", "1 writer p99 ms", p99);
        println!("{:<34} {:>12.0}", "64 writers writes/s", rate);
        println!(
            "{:<34} {:>12.1}",
            "64 writers writes per commit", per_commit
        );
        println!("{:<34} {:>12.1}", "restart (load + replay) ms", restart_ms);
        println!(
            "{}",
            serde_json::json!({
                "scenario": "write",
                "single_p50_ms": (p50 * 1000.0).round() / 1000.0,
                "single_p99_ms": (p99 * 1000.0).round() / 1000.0,
                "concurrent64_writes_per_s": rate.round(),
                "concurrent64_writes_per_commit": (per_commit * 10.0).round() / 10.0,
                "restart_ms": (restart_ms * 10.0).round() / 10.0,
                "bare_redb_commit_p50_ms": (bare_p50 * 1000.0).round() / 1000.0,
                "bare_redb_commit_p99_ms": (bare_p99 * 1000.0).round() / 1000.0,
            })
        );
        anyhow::Ok(())
    })
}
