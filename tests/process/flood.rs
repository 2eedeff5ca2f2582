//! What configured peers can make a node hold, over real processes.
//!
//! Four zones run. Two hostile peers attack zone-a at once, each holding a
//! real zone's key (zone-a accepts them as those zones): one, as zone-c,
//! withholds one of zone-c's events and floods zone-a with many large
//! later ones; the other, as zone-d, starts state snapshots on two
//! streams, sends part of them and stalls, and starts a frame and stops
//! inside it. Zone-a's memory (VmRSS / VmHWM of its process) stays under a
//! bound computed from its per-peer limits, the stalled streams are closed
//! after `sync.read_timeout_ms`, every drop is counted, and a write at
//! zone-b still reaches zone-a during the attack.

use crate::harness::*;
use drengine::replica::{Op, VersionVector, MAX_PENDING_ORIGIN_BYTES};
use drengine::sync::wire::{self, Msg};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
/// Zone-a's limits in this test (see `tweak`).
const MAX_MESSAGE_BYTES: usize = 2 * MIB;
const MAX_BATCH_BYTES: usize = MIB;
const SNAPSHOT_PER_PEER: usize = 8 * MIB;
const SNAPSHOT_TOTAL: usize = 16 * MIB;
const READ_TIMEOUT_MS: u64 = 3_000;
/// The flood: this many events of zone-c past the withheld one, each
/// carrying a message body of `BODY_BYTES`.
const FLOOD_EVENTS: u64 = 1_200;
const BODY_BYTES: usize = 200_000;
/// Zone-c's withheld event: far past anything the real zone-c signs here.
const WITHHELD_SEQ: u64 = 1_000_000;
/// Events per flood frame (within `MAX_MESSAGE_BYTES`).
const PER_FRAME: usize = 8;
/// Streams a peer may hold open to a node (`MAX_INBOUND_STREAMS_PER_PEER`).
const STREAMS_PER_PEER: usize = 4;

/// The four zones of this test.
const ZONES4: [&str; 4] = ["zone-a", "zone-b", "zone-c", "zone-d"];

/// Every zone with zone-a's limits, each a peer of the three others.
fn tweak(zone: &str, cfg: &mut toml::Table) {
    let sync = table(cfg, "sync");
    let peers = ZONES4
        .iter()
        .filter(|z| **z != zone)
        .map(|z| toml::Value::from(*z))
        .collect();
    sync.insert("peers".into(), toml::Value::Array(peers));
    sync.insert(
        "max_message_bytes".into(),
        (MAX_MESSAGE_BYTES as i64).into(),
    );
    sync.insert("max_batch_bytes".into(), (MAX_BATCH_BYTES as i64).into());
    sync.insert("max_snapshot_bytes".into(), (64 * MIB as i64).into());
    sync.insert(
        "max_snapshot_bytes_per_peer".into(),
        (SNAPSHOT_PER_PEER as i64).into(),
    );
    sync.insert(
        "max_snapshot_bytes_total".into(),
        (SNAPSHOT_TOTAL as i64).into(),
    );
    sync.insert("read_timeout_ms".into(), (READ_TIMEOUT_MS as i64).into());
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn dropped(metrics: &str, reason: &str) -> f64 {
    metric(
        metrics,
        "drengine_sync_dropped_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_peer_and_a_stalling_peer_cannot_grow_a_nodes_memory_past_its_limits() {
    let mut net = Net::with_zones(ZONES4.len(), tweak).await;
    for z in ZONES4 {
        net.start_zone(z).await;
    }
    net.wait_ready(&ZONES4).await;
    let mut ids = BTreeSet::from([net.protect("zone-b", "vm-0").await]);
    net.wait_services(&ZONES4, &ids).await;
    let pid = net.pid("zone-a").expect("zone-a runs");
    let base_rss = proc_status_kib(pid, "VmRSS").expect("zone-a runs");
    let base_hwm = proc_status_kib(pid, "VmHWM").expect("zone-a runs");
    println!(
        "figure: zone-a before the attack: VmRSS {}, VmHWM {}",
        mib(base_rss),
        mib(base_hwm)
    );

    let flooder = Arc::new(hostile_peer(&net, "zone-c", "zone-a").await);
    let staller = hostile_peer(&net, "zone-d", "zone-a").await;
    let answer_wait = Duration::from_secs(20);

    // The staller's snapshot streams. Stream 1 sends parts just under the
    // peer's budget, then nothing. Stream 2 starts another snapshot: its
    // second part is over the budget the first holds (dropped), then it
    // begins a frame and stops inside it.
    let floor = {
        let mut f = VersionVector::new();
        f.set(staller.zone.clone(), 2 * WITHHELD_SEQ);
        f
    };
    let part = vec![7u8; MIB - 1024];
    let parts = 1_000u32;
    let snapshot_part = |id: u64, i: u32| {
        wire::encode_frame(&Msg::Snapshot {
            id,
            part: i,
            parts,
            bytes: part.clone(),
        })
    };
    let mut stall1 = staller.open_stream().await;
    let welcome = stall1
        .exchange(&staller.hello_with_floor(floor.clone()), answer_wait)
        .await;
    assert!(matches!(welcome, Some(Msg::Welcome { .. })), "{welcome:?}");
    let held_parts = (SNAPSHOT_PER_PEER / part.len() - 1) as u32;
    for i in 0..held_parts {
        let got = stall1.exchange(&snapshot_part(1, i), answer_wait).await;
        assert!(
            matches!(got, Some(Msg::SnapshotPartAck { part, .. }) if part == i),
            "part {i}: {got:?}"
        );
    }
    let mut stall2 = staller.open_stream().await;
    let welcome = stall2
        .exchange(&staller.hello_with_floor(floor.clone()), answer_wait)
        .await;
    assert!(matches!(welcome, Some(Msg::Welcome { .. })), "{welcome:?}");
    let first = stall2.exchange(&snapshot_part(2, 0), answer_wait).await;
    assert!(
        matches!(first, Some(Msg::SnapshotPartAck { .. })),
        "{first:?}"
    );
    let over = stall2.exchange(&snapshot_part(2, 1), answer_wait).await;
    match &over {
        Some(Msg::Dropped { reason, .. }) => {
            println!("figure: a snapshot part over the peer's budget: {reason}");
            assert!(reason.contains("budget"), "{reason}");
        }
        other => panic!("expected a drop over the budget, got {other:?}"),
    }
    let stalled_at = Instant::now();
    let mut partial = (MAX_MESSAGE_BYTES as u32 - 1024).to_be_bytes().to_vec();
    partial.extend(vec![1u8; 300_000]);
    assert!(stall2.send(&partial).await);

    // The flood, by the other peer, until told to stop: zone-c's events
    // past the withheld one, newest first, pass after pass.
    let stop = Arc::new(AtomicBool::new(false));
    let sent_events = Arc::new(AtomicU64::new(0));
    let flood = {
        let hostile = flooder.clone();
        let stop = stop.clone();
        let sent_events = sent_events.clone();
        tokio::spawn(async move {
            let body = "f".repeat(BODY_BYTES);
            let to: drengine::model::ZoneId = "zone-b".parse().expect("zone");
            let events: Vec<Vec<u8>> = (WITHHELD_SEQ + 1..=WITHHELD_SEQ + FLOOD_EVENTS)
                .rev()
                .map(|seq| {
                    let mut deps = VersionVector::new();
                    deps.set("zone-c".parse().expect("zone"), seq - 1);
                    HostilePeer::event(
                        "zone-c",
                        seq,
                        deps,
                        Op::SendMessage {
                            to: to.clone(),
                            body: body.clone(),
                        },
                        &hostile.key,
                    )
                    .encode()
                })
                .collect();
            let mut stream = hostile.open_stream().await;
            let mut passes = 0u32;
            let mut id = 0u64;
            loop {
                for chunk in events.chunks(PER_FRAME) {
                    id += 1;
                    let got = stream
                        .exchange(&hostile.events(id, chunk.to_vec()), answer_wait)
                        .await;
                    assert!(matches!(got, Some(Msg::Ack { .. })), "batch {id}: {got:?}");
                    sent_events.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                passes += 1;
                // The second pass finds the share full of lower seqs: refused.
                if passes >= 2 && stop.load(Ordering::Relaxed) {
                    return passes;
                }
            }
        })
    };

    // Meanwhile: zone-a's memory, and honest writes from zone-b.
    let sample = |peak: &mut u64| {
        if let Some(rss) = proc_status_kib(pid, "VmRSS") {
            *peak = (*peak).max(rss);
        }
    };
    let mut peak_rss = base_rss;
    wait_until("the flood is under way", WAIT, || {
        sample(&mut peak_rss);
        let n = sent_events.load(Ordering::Relaxed);
        async move { n >= FLOOD_EVENTS / 2 }
    })
    .await;
    let t = Instant::now();
    let svc = net.protect("zone-b", "vm-1").await;
    ids.insert(svc.clone());
    wait_until(
        "zone-b's write reaches zone-a during the flood",
        WAIT,
        || {
            sample(&mut peak_rss);
            let ids = ids.clone();
            let net = &net;
            async move { net.service_ids("zone-a").await.is_superset(&ids) }
        },
    )
    .await;
    let reached = t.elapsed();
    let during = sent_events.load(Ordering::Relaxed);
    println!(
        "figure: during the flood ({during} events sent so far) zone-b's write reached zone-a in {:.2}s",
        reached.as_secs_f64()
    );
    assert!(!flood.is_finished(), "the flood went on meanwhile");

    // The stalled streams are closed after the read timeout; stream 1's
    // bytes are given back.
    let closed1 = stall1.answer(WAIT).await;
    assert!(
        closed1.is_none(),
        "stream 1 closed, not answered: {closed1:?}"
    );
    let closed2 = stall2.answer(WAIT).await;
    assert!(
        closed2.is_none(),
        "stream 2 closed, not answered: {closed2:?}"
    );
    let closed_after = stalled_at.elapsed();
    println!(
        "figure: both stalled streams closed {:.2}s after they stalled (read_timeout_ms {READ_TIMEOUT_MS})",
        closed_after.as_secs_f64()
    );
    assert!(closed_after >= Duration::from_millis(READ_TIMEOUT_MS - 500));

    stop.store(true, Ordering::Relaxed);
    let passes = flood.await.expect("the flood task");
    sample(&mut peak_rss);
    let total_sent = sent_events.load(Ordering::Relaxed);
    let hwm = proc_status_kib(pid, "VmHWM").expect("zone-a runs");
    let rss = proc_status_kib(pid, "VmRSS").expect("zone-a runs");

    // The bound: what zone-a's limits let the two peers make it hold (the
    // flooded origin's share of the early-event buffer, the staller's
    // snapshot budget, a frame and its decoded copies on each stream of
    // each peer) plus 32 MiB of allocator slack.
    let bound_kib = ((MAX_PENDING_ORIGIN_BYTES
        + SNAPSHOT_PER_PEER
        + 2 * STREAMS_PER_PEER * 3 * MAX_MESSAGE_BYTES
        + 32 * MIB)
        / 1024) as u64;
    let flooded_mib = total_sent as f64 * BODY_BYTES as f64 / MIB as f64;
    println!(
        "figure: flood of {total_sent} events ({flooded_mib:.0} MiB, {passes} passes); zone-a VmRSS before {}, peak sampled {}, now {}; VmHWM {} (before {}); bound before + {}",
        mib(base_rss),
        mib(peak_rss),
        mib(rss),
        mib(hwm),
        mib(base_hwm),
        mib(bound_kib)
    );
    assert!(
        flooded_mib > 2.0 * (bound_kib as f64 / 1024.0),
        "the flood is larger than the bound it is checked against"
    );
    assert!(
        peak_rss.saturating_sub(base_rss) <= bound_kib,
        "zone-a's RSS grew by {} (bound {})",
        mib(peak_rss - base_rss),
        mib(bound_kib)
    );
    assert!(
        hwm.saturating_sub(base_rss.max(base_hwm)) <= bound_kib,
        "zone-a's peak RSS grew by {} (bound {})",
        mib(hwm.saturating_sub(base_rss.max(base_hwm))),
        mib(bound_kib)
    );

    // Every drop is counted, and nothing of the flood was applied.
    let metrics = net.metrics("zone-a").await;
    let stalled = dropped(&metrics, "stalled");
    let over_budget = dropped(&metrics, "snapshot_over_budget");
    let full = dropped(&metrics, "buffer_full");
    let pending = metric(&metrics, "drengine_pending_events_count", &[]).unwrap_or(-1.0);
    println!(
        "figure: zone-a dropped stalled={stalled} snapshot_over_budget={over_budget} buffer_full={full}; pending events {pending}"
    );
    assert!(stalled >= 2.0, "{stalled}");
    assert!(over_budget >= 1.0, "{over_budget}");
    assert!(full >= 1.0, "{full}");
    let share = (MAX_PENDING_ORIGIN_BYTES / BODY_BYTES) as f64;
    assert!(pending > 0.0 && pending <= share, "{pending} > {share}");
    let a_vv: VersionVector =
        serde_json::from_value(net.status("zone-a").await["vv"].clone()).expect("vv");
    assert!(a_vv.get(&"zone-c".parse().expect("zone")) < WITHHELD_SEQ);

    // And after it, sync goes on as before.
    ids.insert(net.protect("zone-b", "vm-2").await);
    net.wait_services(&["zone-a", "zone-b"], &ids).await;
    match Arc::try_unwrap(flooder) {
        Ok(h) => h.stop().await,
        Err(_) => panic!("the flooding peer is still shared"),
    }
    staller.stop().await;
}
