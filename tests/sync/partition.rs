//! Partitions and heals: writes on both sides of a cut, including
//! concurrent writes to one field and a failover while the primary is cut
//! off, converge after the heal with every conflict visible everywhere.

use crate::harness::*;
use drengine::model::ServiceId;
use drengine::replica::{ConflictField, ConflictKind, Op};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_both_sides_of_a_partition_converge_after_the_heal() {
    init_tracing();
    let dep = Deployment::new(&["a", "b", "c"]);
    // A triangle: a dials b and c, b dials c.
    let a = dep.start(dep.config_with("a", &["b", "c"], |_| {})).await;
    let b = dep.start(dep.config_with("b", &["c"], |_| {})).await;
    let c = dep.start(dep.config_with("c", &[], |_| {})).await;
    a.dial(&b).await;
    a.dial(&c).await;
    b.dial(&c).await;
    create_service(&a, "vm1", "b").await;
    wait_until("vm1 everywhere", TIMEOUT, || async {
        b.has_service("vm1") && c.has_service("vm1")
    })
    .await;

    // Cut a off from b and c (both ends of each link block).
    a.sync.block(&[zone("b"), zone("c")]).await.unwrap();
    b.sync.block(&[zone("a")]).await.unwrap();
    c.sync.block(&[zone("a")]).await.unwrap();
    wait_until("a is cut off", TIMEOUT, || async {
        !a.connected_to("b") && !a.connected_to("c") && !b.connected_to("a") && !c.connected_to("a")
    })
    .await;

    // Both sides write the same field, and b fails vm1 over while a still
    // runs it: two active VMs.
    set_metadata(&a, "vm1", "written in a").await;
    set_metadata(&b, "vm1", "written in b").await;
    b.db.write(
        Op::SetSlot {
            service: service("vm1"),
            zone: zone("b"),
            slot: Some(slot("vm1-replica", true)),
        },
        "failover",
    )
    .await
    .unwrap();
    // Plenty of independent writes on each side too.
    create_service(&a, "vm-a", "c").await;
    create_service(&c, "vm-c", "a").await;
    for i in 0..100 {
        set_metadata(&a, "vm-a", &format!("a {i}")).await;
        set_metadata(&c, "vm-c", &format!("c {i}")).await;
    }
    wait_until("b and c agree during the cut", TIMEOUT, || async {
        b.digest() == c.digest()
    })
    .await;
    assert_ne!(a.digest(), b.digest());
    assert!(!a.has_service("vm-c"));
    // Blocked peers stay out: no connection comes back by itself.
    assert!(!a.connected_to("b"));

    for (n, zs) in [
        (&a, vec![zone("b"), zone("c")]),
        (&b, vec![zone("a")]),
        (&c, vec![zone("a")]),
    ] {
        n.sync.unblock(&zs).await.unwrap();
    }
    wait_until("equal digests after the heal", TIMEOUT, || async {
        let d = a.digest();
        b.digest() == d && c.digest() == d
    })
    .await;

    let vm1 = ServiceId::new("vm1").unwrap();
    let conflicts: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|n| n.db.read(|r| r.conflicts()))
        .collect();
    assert_eq!(conflicts[0], conflicts[1]);
    assert_eq!(conflicts[0], conflicts[2]);
    let kinds: Vec<_> = conflicts[0]
        .iter()
        .filter(|c| c.service == vm1)
        .map(|c| c.kind.clone())
        .collect();
    assert!(kinds.contains(&ConflictKind::ConcurrentWrite {
        field: ConflictField::Metadata
    }));
    assert!(kinds.contains(&ConflictKind::ActiveVms));
    let mut values = a.metadata("vm1");
    values.sort();
    assert_eq!(values, ["written in a", "written in b"]);
    for n in [&a, &b, &c] {
        assert!(n.has_service("vm-a") && n.has_service("vm-c"));
        assert_eq!(n.metadata("vm-a"), ["a 99"]);
        assert_eq!(n.metadata("vm-c"), ["c 99"]);
    }
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_restarted_from_its_file_catches_up() {
    init_tracing();
    let dep = Deployment::new(&["a", "b"]);
    let a = dep.start(dep.config_with("a", &["b"], |_| {})).await;
    let b = dep.start(dep.config_with("b", &[], |_| {})).await;
    a.dial(&b).await;
    create_service(&b, "vm-b", "a").await;
    wait_until("a has vm-b", TIMEOUT, || async { a.has_service("vm-b") }).await;

    let b_cfg = b.cfg.clone();
    b.stop().await;
    wait_until("a sees b gone", TIMEOUT, || async { !a.connected_to("b") }).await;
    create_service(&a, "vm-a", "b").await;
    for i in 0..200 {
        set_metadata(&a, "vm-a", &format!("v{i}")).await;
    }

    // b comes back from its redb file, on a new port: a finds it again.
    let b = dep.start(b_cfg).await;
    assert!(b.has_service("vm-b"), "b kept its state across the restart");
    a.dial(&b).await;
    wait_until("b caught up", TIMEOUT, || async {
        a.digest() == b.digest()
    })
    .await;
    assert_eq!(b.metadata("vm-a"), ["v199"]);
    // It caught up from the log, by events, not by snapshot.
    assert_eq!(b.sync.counters().snapshots_imported, 0);
    for n in [a, b] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_compaction_point_is_brought_up_by_snapshot() {
    init_tracing();
    let dep = Deployment::new(&["a", "b", "c"]);
    // Small batches, so the snapshot goes in several parts.
    let a = dep
        .start(dep.config_with("a", &["b", "c"], |s| s.max_batch_bytes = 64))
        .await;
    let b = dep.start(dep.config_with("b", &[], |_| {})).await;
    let c = dep.start(dep.config_with("c", &[], |_| {})).await;
    a.dial(&b).await;
    a.dial(&c).await;
    create_service(&a, "vm-a", "b").await;
    create_service(&b, "vm-b", "c").await;
    create_service(&c, "vm-c", "a").await;
    for i in 0..50 {
        set_metadata(&a, "vm-a", &format!("v{i}")).await;
    }
    wait_until("all equal", TIMEOUT, || async {
        let d = a.digest();
        b.digest() == d && c.digest() == d
    })
    .await;
    // Every zone has every event: a may drop its whole log.
    wait_compacted(&a, TIMEOUT).await;

    // c loses its database and comes back empty. (It wrote before, so it
    // must not write again until it has its own events back.)
    let c_cfg = c.cfg.clone();
    c.stop().await;
    std::fs::remove_file(dep.db_path("c")).unwrap();
    let c = dep.start_unproven(c_cfg).await;
    assert!(!c.has_service("vm-a"));
    // Until a peer tells it how far zone c got, it signs nothing.
    let refused =
        c.db.write(
            drengine::replica::Op::SetMetadata {
                service: service("vm-c"),
                metadata: "too early".into(),
            },
            "test",
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(drengine::store::DbError::Write(
                drengine::replica::WriteError::Rebuilding { .. }
            ))
        ),
        "{refused:?}"
    );
    a.dial(&c).await;
    wait_until("c rebuilt from a's snapshot", TIMEOUT, || async {
        a.digest() == c.digest()
    })
    .await;
    // (The counter moves just after the import is durable.)
    wait_until("import counted", TIMEOUT, || async {
        c.sync.counters().snapshots_imported == 1
    })
    .await;
    assert_eq!(a.sync.counters().snapshots_sent, 1);
    assert_eq!(c.metadata("vm-a"), ["v49"]);
    // And events flow as usual afterwards, both ways.
    set_metadata(&a, "vm-a", "after").await;
    set_metadata(&c, "vm-c", "c again").await;
    wait_until("all equal again", TIMEOUT, || async {
        let d = a.digest();
        b.digest() == d && c.digest() == d
    })
    .await;
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_compacts_even_when_the_far_zone_never_writes() {
    init_tracing();
    let dep = Deployment::new(&["a", "b", "c"]);
    let a = dep.start(dep.config_with("a", &["b"], |_| {})).await;
    let b = dep.start(dep.config_with("b", &["c"], |_| {})).await;
    let c = dep.start(dep.config_with("c", &[], |_| {})).await;
    a.dial(&b).await;
    b.dial(&c).await;
    create_service(&a, "vm-a", "b").await;
    for i in 0..20 {
        set_metadata(&a, "vm-a", &format!("v{i}")).await;
    }
    wait_until("c has everything", TIMEOUT, || async {
        c.digest() == a.digest()
    })
    .await;
    // a never hears from c directly and c never writes: only what b tells a
    // (in handshakes) lets a know c has a's events.
    wait_compacted(&a, TIMEOUT).await;
    for n in [a, b, c] {
        n.stop().await;
    }
}
