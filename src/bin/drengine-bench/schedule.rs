//! Scenario `schedule`: many services with a short interval against the
//! StorPool emulator, to see whether scheduled RPs are made on time, what
//! they cost in StorPool calls, and what the node spends in CPU.
//!
//! Two zones, a (where every VM runs) and b (the recovery zone), each with
//! its own redb database and engine, in this process; their events are
//! relayed directly between the databases. The emulator runs as a separate
//! process (`storpool-emulator`, next to this binary) so that the CPU
//! measured here is the nodes' alone.
//!
//! Options: `--services N` (10000), `--interval-s S` (60), `--duration-s S`
//! (180, measured), `--warmup-s S` (20, not measured), `--disks N` (1),
//! `--bandwidth-mbps M` (10000).
//!
//! Figures: `on_time_ratio` — of the schedule slots due in the measured
//! window, the share with an RP taken within 5 s after the slot;
//! `storpool_calls_per_rp` — StorPool API calls received by both clusters
//! (emulator counters: taking, exporting, copying, completion checks and
//! retention deletes) per RP taken; `node_cpu_share` — CPU time of this
//! process over wall time, divided by the two nodes it runs (1.0 = one core).

use anyhow::{bail, Context};
use drengine::engine::{schedule as slots, Engine};
use drengine::model::{Policy, Retention, ServiceId, VmSlot, ZoneId};
use drengine::node::config::{Config, EngineConfig, ZoneEntry};
use drengine::replica::{Op, Replica};
use drengine::store::{Db, Store};
use drengine::storpool::{StorPoolClient, StorPoolConfig, VolumeCreate};
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";
/// An RP counts as on time when taken at most this long after its slot.
const ON_TIME_MS: u64 = 5_000;
const VOLUME_BYTES: u64 = 1024 * 1024;

struct Opts {
    services: usize,
    interval_s: u64,
    duration_s: u64,
    warmup_s: u64,
    disks: usize,
    bandwidth_mbps: f64,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        services: 10_000,
        interval_s: 60,
        duration_s: 180,
        warmup_s: 20,
        disks: 1,
        bandwidth_mbps: 10_000.0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--services" => o.services = value.parse()?,
            "--interval-s" => o.interval_s = value.parse()?,
            "--duration-s" => o.duration_s = value.parse()?,
            "--warmup-s" => o.warmup_s = value.parse()?,
            "--disks" => o.disks = value.parse()?,
            "--bandwidth-mbps" => o.bandwidth_mbps = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    anyhow::ensure!(
        o.services > 0 && o.interval_s > 0 && o.disks > 0,
        "options must be positive"
    );
    Ok(o)
}

pub fn schedule(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    cpu_time_of("self")
}

/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat`
/// (fields 14 and 15, in clock ticks of USER_HZ = 100 on Linux).
fn cpu_time_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields count from after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// The emulator child process; killed when dropped.
struct EmulatorProcess {
    child: std::process::Child,
    addrs: BTreeMap<String, SocketAddr>,
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_emulator(dir: &Path, bandwidth_mbps: f64) -> anyhow::Result<EmulatorProcess> {
    let exe = std::env::current_exe()?.with_file_name("storpool-emulator");
    let ready = dir.join("emulator-ready.json");
    let child = std::process::Command::new(&exe)
        .args([
            "--cluster",
            "a=127.0.0.1:0",
            "--cluster",
            "b=127.0.0.1:0",
            "--token",
            TOKEN,
            "--bandwidth-mbps",
            &bandwidth_mbps.to_string(),
            "--ready-file",
        ])
        .arg(&ready)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with scripts/bench.sh)",
                exe.display()
            )
        })?;
    let mut emu = EmulatorProcess {
        child,
        addrs: BTreeMap::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        anyhow::ensure!(Instant::now() < deadline, "the emulator did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let map: BTreeMap<String, String> = serde_json::from_slice(&std::fs::read(&ready)?)?;
    for (k, v) in map {
        emu.addrs.insert(k, v.parse()?);
    }
    Ok(emu)
}

fn sp_config(addr: SocketAddr) -> StorPoolConfig {
    StorPoolConfig::new(addr.ip().to_string(), addr.port(), TOKEN)
}

/// API calls the emulator received so far, by call name, over all clusters.
async fn emulator_calls(
    http: &reqwest::Client,
    addr: SocketAddr,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let v: serde_json::Value = http
        .get(format!("http://{addr}/_emulator/stats"))
        .send()
        .await?
        .json()
        .await?;
    let clusters = v["clusters"].as_object().context("stats shape")?;
    let mut out = BTreeMap::new();
    for c in clusters.values() {
        for (name, n) in c["calls"].as_object().context("stats shape")? {
            *out.entry(name.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    Ok(out)
}

/// Carries the events each database lacks from the other, in bounded batches.
async fn relay(a: &Db, b: &Db, from: &ZoneId) -> anyhow::Result<()> {
    loop {
        let theirs = b.read(|r| r.vv().clone());
        let ours = a.read(|r| r.vv().clone());
        let batch = a
            .store()
            .events_missing(&theirs, &ours, 4096, 16 * 1024 * 1024)?;
        if batch.events.is_empty() {
            return Ok(());
        }
        let more = batch.more;
        b.ingest(batch.events, Some(from.clone())).await?;
        if !more {
            return Ok(());
        }
    }
}

async fn run(o: Opts) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emu = start_emulator(dir.path(), o.bandwidth_mbps)?;
    let za = ZoneId::new("a")?;
    let zb = ZoneId::new("b")?;
    let keys: BTreeMap<ZoneId, SigningKey> = [(za.clone(), 11u8), (zb.clone(), 12u8)]
        .into_iter()
        .map(|(z, b)| (z, SigningKey::from_bytes(&[b; 32])))
        .collect();
    let engine_cfg = EngineConfig {
        max_concurrent_calls: 32,
        ..EngineConfig::default()
    };
    let config = |zone: &ZoneId| Config {
        zone: zone.clone(),
        data_dir: dir.path().to_path_buf(),
        key_file: dir.path().join("unused.key"),
        zones: keys
            .iter()
            .map(|(z, k)| ZoneEntry {
                id: z.clone(),
                public_key: drengine::node::config::PublicKey(k.verifying_key()),
                sync_addr: None,
                storpool_location: None,
            })
            .collect(),
        api: Default::default(),
        sync: Default::default(),
        engine: engine_cfg.clone(),
        storpool: sp_config(emu.addrs[zone.as_str()]),
        history: Default::default(),
        messages: Default::default(),
    };
    let mut dbs = BTreeMap::new();
    for zone in [&za, &zb] {
        let cfg = config(zone);
        let store = Store::open(&dir.path().join(format!("{zone}.redb")), zone)?;
        let db = Db::open(
            store,
            Replica::new(zone.clone(), Some(keys[zone].clone()), cfg.directory()),
        )?;
        db.override_rebuild("bench");
        dbs.insert(zone.clone(), db);
    }
    let (db_a, db_b) = (dbs[&za].clone(), dbs[&zb].clone());

    // Setup: the VMs' volumes in a, and a service for each.
    let setup = Instant::now();
    let client_a = StorPoolClient::new(sp_config(emu.addrs["a"]))?;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..o.services)
        .map(|i| {
            let (c, db, disks) = (client_a.clone(), db_a.clone(), o.disks);
            let (interval_s, rz) = (o.interval_s, zb.clone());
            async move {
                let names: Vec<String> = (0..disks).map(|d| format!("vm{i}-d{d}")).collect();
                for n in &names {
                    c.volume_create(&VolumeCreate {
                        name: Some(n.clone()),
                        size: Some(VOLUME_BYTES),
                        ..Default::default()
                    })
                    .await?;
                }
                let keep = Retention {
                    keep_last: 1,
                    keep_for_s: 0,
                };
                db.write(
                    Op::CreateService {
                        service: ServiceId::new(format!("vm{i}"))?,
                        policy: Policy {
                            interval_s,
                            recovery_zone: rz,
                            local_retention: keep.clone(),
                            remote_retention: keep,
                        },
                        metadata: format!("vm{i} config"),
                        slot: VmSlot {
                            cmp_vm_id: format!("cmp-{i}"),
                            disks: names,
                            active: true,
                        },
                    },
                    "bench",
                )
                .await?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in results {
        r?;
    }
    relay(&db_a, &db_b, &za).await?;
    let setup_s = setup.elapsed().as_secs_f64();

    let engines = [
        Engine::start(
            db_a.clone(),
            StorPoolClient::new(sp_config(emu.addrs["a"]))?,
            config(&za).engine_setup(),
        )?,
        Engine::start(
            db_b.clone(),
            StorPoolClient::new(sp_config(emu.addrs["b"]))?,
            config(&zb).engine_setup(),
        )?,
    ];
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relayer = {
        let (a, b, za, zb) = (db_a.clone(), db_b.clone(), za.clone(), zb.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = relay(&a, &b, &za).await {
                    eprintln!("relay a→b: {e}");
                }
                if let Err(e) = relay(&b, &a, &zb).await {
                    eprintln!("relay b→a: {e}");
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(o.warmup_s)).await;
    let http = reqwest::Client::new();
    let calls0 = emulator_calls(&http, emu.addrs["a"]).await?;
    let emu_pid = emu.child.id().to_string();
    let emu_cpu0 = cpu_time_of(&emu_pid);
    let (cpu0, wall0, t0) = (cpu_time(), Instant::now(), now_ms());
    tokio::time::sleep(Duration::from_secs(o.duration_s)).await;
    let (cpu1, wall1, t1) = (cpu_time(), Instant::now(), now_ms());
    let emu_cpu1 = cpu_time_of(&emu_pid);
    let calls1 = emulator_calls(&http, emu.addrs["a"]).await?;
    let past_rpo = engines[1].rpo_all().iter().filter(|r| r.past_rpo).count();
    for e in &engines {
        e.shutdown().await;
    }
    stop_tx.send_replace(true);
    relayer.await?;

    // Every slot due in [t0, t1 - 5 s] should have an RP within 5 s after it.
    // RPs are read from the event log, not the state: retention deletes old
    // ones and their origin purges them from the state.
    let interval_ms = o.interval_s * 1000;
    let mut taken_by_service: BTreeMap<ServiceId, Vec<u64>> = BTreeMap::new();
    let mut rps_in_window = BTreeSet::new();
    let mut purged = 0usize;
    for ev in db_a.store().events_of(&za, 0, usize::MAX)? {
        match ev.event.op {
            Op::CreateRp {
                service, rp, taken, ..
            } => {
                if (t0..t1).contains(&taken.wall_ms) {
                    rps_in_window.insert((service.clone(), rp));
                }
                taken_by_service
                    .entry(service)
                    .or_default()
                    .push(taken.wall_ms);
            }
            Op::PurgeRps { rps, .. } => purged += rps.len(),
            _ => {}
        }
    }
    let rps_in_state: usize = db_a.read(|r| r.state().services.values().map(|s| s.rps.len()).sum());
    let mut copied_in_b = BTreeSet::new();
    for ev in db_a.store().events_of(&zb, 0, usize::MAX)? {
        if let Op::SetCopy { service, rp, .. } = ev.event.op {
            let key = (service, rp);
            if rps_in_window.contains(&key) {
                copied_in_b.insert(key);
            }
        }
    }
    let complete_in_b = copied_in_b.len() as u64;
    let (slots_due, on_time, mut lateness) = db_a.read(|r| {
        let mut due = 0u64;
        let mut ok = 0u64;
        let mut lateness = Vec::new();
        for s in r.state().services.values() {
            let phase = slots::phase_ms(&s.id, interval_ms);
            let taken = taken_by_service
                .get(&s.id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            lateness.extend(
                taken
                    .iter()
                    .filter(|t| (t0..t1).contains(*t))
                    .map(|t| t - slots::slot_at_or_before(*t, interval_ms, phase)),
            );
            let mut slot = slots::slot_after(t0.saturating_sub(1), interval_ms, phase);
            while slot + ON_TIME_MS <= t1 {
                due += 1;
                if taken.iter().any(|t| (slot..=slot + ON_TIME_MS).contains(t)) {
                    ok += 1;
                }
                slot += interval_ms;
            }
        }
        (due, ok, lateness)
    });
    let rps_in_window = rps_in_window.len() as u64;
    lateness.sort_unstable();
    let pct = |p: f64| {
        lateness
            .get(((lateness.len() as f64 * p) as usize).min(lateness.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let emulator_cpu_share = (emu_cpu1 - emu_cpu0).as_secs_f64() / (wall1 - wall0).as_secs_f64();
    let wall_s = (wall1 - wall0).as_secs_f64();
    let process_cpu_share = (cpu1 - cpu0).as_secs_f64() / wall_s;
    let node_cpu_share = process_cpu_share / 2.0;
    let on_time_ratio = if slots_due == 0 {
        0.0
    } else {
        on_time as f64 / slots_due as f64
    };
    let by_call: BTreeMap<String, u64> = calls1
        .iter()
        .map(|(k, v)| (k.clone(), v - calls0.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let calls: u64 = by_call.values().sum();
    let calls_per_rp = if rps_in_window == 0 {
        0.0
    } else {
        calls as f64 / rps_in_window as f64
    };

    println!(
        "scenario schedule: {} services, {} disk(s) each, interval {} s, keep the last 1",
        o.services, o.disks, o.interval_s
    );
    println!("  setup (volumes + services)    {setup_s:>10.1} s");
    println!(
        "  measured window               {wall_s:>10.1} s (after {} s warm-up)",
        o.warmup_s
    );
    println!("  slots due in the window       {slots_due:>10}");
    println!(
        "  RPs within {} s of their slot  {on_time:>10}",
        ON_TIME_MS / 1000
    );
    println!("  on-time ratio                 {on_time_ratio:>10.5}");
    println!(
        "  lateness p50 / p99 / max      {:>6} / {} / {} ms",
        pct(0.5),
        pct(0.99),
        lateness.last().copied().unwrap_or(0)
    );
    println!("  RPs taken in the window       {rps_in_window:>10}");
    println!("  of which copied (state in b)  {complete_in_b:>10}");
    println!("  RPs purged by a (whole run)   {purged:>10}");
    println!("  RPs in a's state at the end   {rps_in_state:>10}");
    println!("  StorPool calls (both zones)   {calls:>10}");
    println!("  StorPool calls per RP         {calls_per_rp:>10.2}");
    for (name, n) in &by_call {
        println!(
            "    {name:<26}  {:>10.2}",
            *n as f64 / rps_in_window.max(1) as f64
        );
    }
    println!("  process CPU / wall (2 nodes)  {process_cpu_share:>10.3}");
    println!("  per-node CPU share            {node_cpu_share:>10.3}");
    println!("  emulator CPU / wall           {emulator_cpu_share:>10.3}");
    println!("  services past RPO in b at end {past_rpo:>10}");
    let json = serde_json::json!({
        "scenario": "schedule",
        "services": o.services,
        "interval_s": o.interval_s,
        "duration_s": o.duration_s,
        "slots_due": slots_due,
        "rps_taken": rps_in_window,
        "rps_purged": purged,
        "rps_in_state_at_end": rps_in_state,
        "on_time_ratio": on_time_ratio,
        "storpool_calls_per_rp": calls_per_rp,
        "node_cpu_share": node_cpu_share,
        "process_cpu_share": process_cpu_share,
        "emulator_cpu_share": emulator_cpu_share,
        "lateness_p99_ms": pct(0.99),
        "past_rpo_at_end": past_rpo,
    });
    drop(emu);
    println!("{json}");
    Ok(())
}
