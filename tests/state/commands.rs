//! One place decides every write: commands are decided against the replica
//! in the writer thread and written in the same step, so a peer's or the
//! engine's write cannot land between the look and the write.
//!
//! Each test below is one race the handlers and the engine used to have
//! when they read the replica, decided, and then wrote: the world changes
//! in between (a peer's event is ingested, an operator edits), and the
//! write must then be refused or decided on what is there now.

use drengine::model::{Policy, Retention, ServiceId, VmSlot, ZoneId};
use drengine::replica::{
    service_conflicts, Choice, Command, ConflictField, ConflictKind, ConflictTarget, Directory,
    Dot, Expect, FieldValue, Op, Outcome, Replica, SignedEvent, WriteError,
};
use drengine::store::{Db, DbError, Store};
use ed25519_dalek::SigningKey;

fn z(s: &str) -> ZoneId {
    ZoneId::new(s).unwrap()
}

fn zone(i: usize) -> ZoneId {
    z(&format!("zone-{}", (b'a' + i as u8) as char))
}

fn keys(n: usize) -> (Vec<SigningKey>, Directory) {
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 7; 32]))
        .collect();
    let dir = Directory::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| (zone(i), k.verifying_key()))
            .collect(),
    );
    (keys, dir)
}

fn policy(rz: &str, interval_s: u64) -> Policy {
    let keep = Retention {
        keep_last: 3,
        keep_for_s: 3600,
    };
    Policy {
        interval_s,
        recovery_zone: z(rz),
        local_retention: keep.clone(),
        remote_retention: keep,
    }
}

fn slot(vm: &str, disk: &str, active: bool) -> VmSlot {
    VmSlot {
        cmp_vm_id: vm.into(),
        disks: vec![disk.into()],
        active,
    }
}

fn svc() -> ServiceId {
    ServiceId::new("svc-1").unwrap()
}

/// Zone-a's durable replica (the one under test) and plain replicas of the
/// other zones, which stand for peers whose events it ingests.
struct World {
    db: Db,
    peers: Vec<Replica>,
    _dir: tempfile::TempDir,
}

async fn world(n: usize) -> World {
    let (keys, directory) = keys(n);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb"), &zone(0)).unwrap();
    let db = Db::open(
        store,
        Replica::new(zone(0), Some(keys[0].clone()), directory.clone()),
    )
    .unwrap();
    db.override_rebuild("test");
    let peers = (1..n)
        .map(|i| Replica::new(zone(i), Some(keys[i].clone()), directory.clone()))
        .collect();
    World {
        db,
        peers,
        _dir: dir,
    }
}

impl World {
    /// Peer `i` (1-based zone index) writes `op` and zone-a ingests it.
    async fn peer_writes(&mut self, i: usize, op: Op) -> SignedEvent {
        let ev = self.peers[i - 1].local_write(op, "cmp", 2000).unwrap();
        let rep = self
            .db
            .ingest(vec![ev.clone()], Some(zone(i)))
            .await
            .unwrap();
        assert_eq!(rep.applied.len(), 1, "{rep:?}");
        ev
    }

    /// Every event zone-a has, delivered to every peer.
    async fn share(&mut self, evs: &[SignedEvent]) {
        for p in &mut self.peers {
            for e in evs {
                let _ = p.receive(e.clone(), 2000);
            }
        }
    }

    fn sides(&self, target: &ConflictTarget) -> Vec<Dot> {
        self.db.read(|r| {
            service_conflicts(r.service(&svc()).unwrap())
                .into_iter()
                .find(|c| &c.kind.target() == target)
                .map(|c| c.sides.into_iter().map(|s| s.dot).collect())
                .unwrap_or_default()
        })
    }
}

/// A service created in zone-a and known to every peer.
async fn protected(w: &mut World) -> SignedEvent {
    let done =
        w.db.execute(
            Command::Protect {
                service: svc(),
                policy: policy("zone-b", 60),
                metadata: "m".into(),
                slot: slot("vm-a", "disk-a", true),
                fingerprint: b"print".to_vec(),
            },
            "cmp",
        )
        .await
        .unwrap();
    assert_eq!(done.outcome, Outcome::Created);
    let ev = done.events[0].clone();
    w.share(std::slice::from_ref(&ev)).await;
    ev
}

/// Race 1: `resolve` checked the sides it was shown, then wrote its ops one
/// commit at a time; a peer's write could land between the check and the
/// writes, or between two of them. Now the sides are compared and every op
/// written in one step: a side that changed refuses the resolve and writes
/// nothing; one that did not is settled in one commit.
#[tokio::test]
async fn a_resolve_is_compared_and_written_in_one_step() {
    let mut w = world(3).await;
    protected(&mut w).await;
    // zone-b and zone-c each fail over while cut off: three active VMs.
    for i in [1, 2] {
        w.peer_writes(
            i,
            Op::SetSlot {
                service: svc(),
                zone: zone(i),
                slot: Some(slot(&format!("vm-{i}"), "disk", true)),
            },
        )
        .await;
    }
    let target = ConflictTarget::ActiveVms;
    let seen = w.sides(&target);
    assert_eq!(seen.len(), 3, "three zones with an active VM");
    // The operator looked; then zone-c's CMP restarts its VM (a new write
    // of its slot: the side the operator saw is gone).
    w.peer_writes(
        2,
        Op::SetSlot {
            service: svc(),
            zone: zone(2),
            slot: Some(slot("vm-2", "disk-new", true)),
        },
    )
    .await;
    let before = w.db.read(|r| r.vv().clone());
    let resolve = |seen: Vec<Dot>| Command::Resolve {
        service: svc(),
        target: target.clone(),
        choice: Choice::KeepZone(zone(0)),
        seen: Some(seen),
    };
    let err = w.db.execute(resolve(seen), "operator").await.unwrap_err();
    assert!(
        matches!(err, DbError::Write(WriteError::SidesChanged)),
        "{err:?}"
    );
    assert_eq!(w.db.read(|r| r.vv().clone()), before, "nothing written");
    // Resolved against the sides as they are: both writes in one commit.
    let mut feed = w.db.subscribe();
    let done =
        w.db.execute(resolve(w.sides(&target)), "operator")
            .await
            .unwrap();
    // Both slot writes and the resolve's history record.
    assert_eq!(done.events.len(), 3);
    assert!(matches!(
        &done.events[2].event.op,
        drengine::replica::Op::Record { action, .. } if action == "resolve"
    ));
    assert_eq!(feed.recv().await.unwrap().events.len(), 3, "one commit");
    let active = w.db.read(|r| r.service(&svc()).unwrap().active_zones());
    assert_eq!(active, vec![zone(0)]);
    // The disks zone-c's CMP wrote last are the ones kept, inactive.
    let c_slot =
        w.db.read(|r| r.service(&svc()).unwrap().slot(&zone(2)).cloned());
    assert_eq!(c_slot, Some(slot("vm-2", "disk-new", false)));
}

/// Race 2: `deactivate` read the zone's slot under an API-wide lock, then
/// wrote it back inactive; a peer's write of that slot landing in between
/// (new disks from that zone's CMP) was overwritten with the old disks.
/// Decided in the writer, it deactivates the slot as it is when written.
#[tokio::test]
async fn a_deactivation_keeps_a_slot_write_that_landed_first() {
    let mut w = world(2).await;
    protected(&mut w).await;
    w.peer_writes(
        1,
        Op::SetSlot {
            service: svc(),
            zone: zone(1),
            slot: Some(slot("vm-b", "disk-old", true)),
        },
    )
    .await;
    // The peer's new disks and the deactivation queued together: the
    // writer takes them in order, and the deactivation sees the new disks.
    let new = w.peers[0]
        .local_write(
            Op::SetSlot {
                service: svc(),
                zone: zone(1),
                slot: Some(slot("vm-b", "disk-new", true)),
            },
            "cmp",
            3000,
        )
        .unwrap();
    let ingest = w.db.ingest(vec![new], Some(zone(1)));
    let deactivate = w.db.execute(
        Command::Deactivate {
            service: svc(),
            zone: zone(1),
        },
        "operator",
    );
    let (ingested, done) = tokio::join!(ingest, deactivate);
    ingested.unwrap();
    assert_eq!(done.unwrap().outcome, Outcome::Written);
    let values: Vec<Option<VmSlot>> = w.db.read(|r| {
        r.service(&svc()).unwrap().slots[&zone(1)]
            .values()
            .iter()
            .map(|v| v.value.clone())
            .collect()
    });
    assert_eq!(values, vec![Some(slot("vm-b", "disk-new", false))]);
    // Deactivating again writes nothing.
    let again =
        w.db.execute(
            Command::Deactivate {
                service: svc(),
                zone: zone(1),
            },
            "operator",
        )
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert!(again.events.is_empty());
}

/// Race 3: the engine's reverse replication read the policy and wrote it
/// back with the new recovery zone, with no check: an operator's PATCH
/// made in between was silently overwritten. The engine's retarget names
/// the policy it read; any other policy now refuses it.
#[tokio::test]
async fn an_engine_retarget_never_overwrites_an_operators_edit() {
    let mut w = world(3).await;
    protected(&mut w).await;
    let read_by_engine = policy("zone-b", 60);
    let edited = policy("zone-b", 300);
    w.db.execute(
        Command::Edit {
            service: svc(),
            expect: Expect::Any,
            policy: Some(edited.clone()),
            metadata: None,
            slot: None,
        },
        "operator",
    )
    .await
    .unwrap();
    let retarget = |expected: Policy| Command::Retarget {
        service: svc(),
        expected,
        recovery_zone: zone(2),
    };
    let err =
        w.db.execute(retarget(read_by_engine), "node")
            .await
            .unwrap_err();
    assert!(
        matches!(err, DbError::Write(WriteError::Changed(_))),
        "{err:?}"
    );
    let now =
        w.db.read(|r| r.service(&svc()).unwrap().policy.get().cloned());
    assert_eq!(now.as_ref(), Some(&edited), "the operator's edit stands");
    // Retargeting the policy as it is keeps the operator's other fields.
    w.db.execute(retarget(edited.clone()), "node")
        .await
        .unwrap();
    let now =
        w.db.read(|r| r.service(&svc()).unwrap().policy.get().cloned());
    assert_eq!(
        now,
        Some(Policy {
            recovery_zone: zone(2),
            ..edited
        })
    );
}

/// An idempotent create decided in the writer: two identical creates
/// racing make one service (one created, one told it exists as asked),
/// and a different request for the same id is refused.
#[tokio::test]
async fn racing_identical_creates_make_one_service() {
    let w = world(2).await;
    let create = |print: &[u8]| Command::Protect {
        service: svc(),
        policy: policy("zone-b", 60),
        metadata: "m".into(),
        slot: slot("vm-a", "disk-a", true),
        fingerprint: print.to_vec(),
    };
    let (x, y) = tokio::join!(
        w.db.execute(create(b"same"), "cmp"),
        w.db.execute(create(b"same"), "cmp")
    );
    let mut outcomes = vec![x.unwrap().outcome, y.unwrap().outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, vec![Outcome::Created, Outcome::Existing]);
    assert_eq!(w.db.read(|r| r.vv().total()), 1);
    let err = w.db.execute(create(b"other"), "cmp").await.unwrap_err();
    assert!(
        matches!(err, DbError::Write(WriteError::IdempotencyMismatch(_))),
        "{err:?}"
    );
}

/// A resolve of a register writes the chosen side's value, decided from
/// the register itself (no JSON round trip of the value).
#[tokio::test]
async fn a_resolve_keeps_the_chosen_side_or_writes_a_new_value() {
    let mut w = world(2).await;
    protected(&mut w).await;
    w.db.execute(
        Command::Edit {
            service: svc(),
            expect: Expect::Any,
            policy: None,
            metadata: Some("from-a".into()),
            slot: None,
        },
        "cmp",
    )
    .await
    .unwrap();
    let b = w
        .peer_writes(
            1,
            Op::SetMetadata {
                service: svc(),
                metadata: "from-b".into(),
            },
        )
        .await;
    let target = ConflictTarget::Field(ConflictField::Metadata);
    assert_eq!(w.sides(&target).len(), 2);
    // A value of the wrong type is refused and writes nothing.
    let err =
        w.db.execute(
            Command::Resolve {
                service: svc(),
                target: target.clone(),
                choice: Choice::Value(FieldValue::Hold(true)),
                seen: None,
            },
            "operator",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Write(WriteError::Invalid(_))),
        "{err:?}"
    );
    w.db.execute(
        Command::Resolve {
            service: svc(),
            target: target.clone(),
            choice: Choice::Side(b.dot()),
            seen: Some(w.sides(&target)),
        },
        "operator",
    )
    .await
    .unwrap();
    let s = w.db.read(|r| r.service(&svc()).cloned().unwrap());
    assert_eq!(s.metadata.get().map(String::as_str), Some("from-b"));
    assert!(!service_conflicts(&s)
        .iter()
        .any(|c| matches!(&c.kind, ConflictKind::ConcurrentWrite { .. })));
    // No conflict left to resolve: said so, nothing written.
    let err =
        w.db.execute(
            Command::Resolve {
                service: svc(),
                target,
                choice: Choice::Side(b.dot()),
                seen: None,
            },
            "operator",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Write(WriteError::NoConflict { .. })),
        "{err:?}"
    );
}
