//! The replicated state's rules, one user story per test.

use crate::support::{open_store, wait_until};
use drengine::model::{CopyState, Policy, Retention, RpDisk, RpId, ServiceId, VmSlot, ZoneId};
use drengine::replica::{
    version_token, Command, ConflictField, ConflictKind, Directory, Dot, Expect, Op, Received,
    Rejected, Replica, SignedEvent, SnapshotError, WriteError,
};
use drengine::store::{Db, Store};
use ed25519_dalek::SigningKey;
use std::time::Duration;

fn z(s: &str) -> ZoneId {
    ZoneId::new(s).unwrap()
}

struct Zones {
    keys: Vec<SigningKey>,
    directory: Directory,
}

fn zones(n: usize) -> Zones {
    let keys: Vec<SigningKey> = (0..n)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect();
    let directory = Directory::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    z(&format!("zone-{}", (b'a' + i as u8) as char)),
                    k.verifying_key(),
                )
            })
            .collect(),
    );
    Zones { keys, directory }
}

impl Zones {
    fn replica(&self, i: usize) -> Replica {
        let zone = z(&format!("zone-{}", (b'a' + i as u8) as char));
        Replica::new(zone, Some(self.keys[i].clone()), self.directory.clone())
    }
}

fn policy(rz: &str) -> Policy {
    Policy {
        interval_s: 60,
        recovery_zone: z(rz),
        local_retention: Retention {
            keep_last: 3,
            keep_for_s: 3600,
        },
        remote_retention: Retention {
            keep_last: 3,
            keep_for_s: 3600,
        },
    }
}

fn slot(vm: &str, active: bool) -> VmSlot {
    VmSlot {
        cmp_vm_id: vm.into(),
        disks: vec![format!("{vm}-disk0")],
        active,
    }
}

fn svc() -> ServiceId {
    ServiceId::new("svc-1").unwrap()
}

fn protect(r: &mut Replica) -> SignedEvent {
    r.local_write(
        Op::CreateService {
            service: svc(),
            policy: policy("zone-b"),
            metadata: "cpu=2".into(),
            slot: slot("vm-1", true),
        },
        "cmp-a",
        1000,
    )
    .unwrap()
}

/// The one disk of an RP of `svc()` as the engine records it.
fn rp_disks(rp: &RpId) -> Vec<RpDisk> {
    vec![RpDisk {
        volume: "vm-1-disk0".into(),
        snapshot: drengine::model::names::rp_snapshot_name(&svc(), rp, 0),
        global_id: "a.b.1".into(),
    }]
}

fn deliver(to: &mut Replica, evs: &[SignedEvent]) {
    for e in evs {
        to.receive(e.clone(), 2000);
    }
}

#[test]
fn concurrent_policy_edits_are_listed_until_a_write_that_saw_both() {
    let zs = zones(3);
    let (mut a, mut b, mut c) = (zs.replica(0), zs.replica(1), zs.replica(2));
    let e0 = protect(&mut a);
    deliver(&mut b, std::slice::from_ref(&e0));
    deliver(&mut c, &[e0]);
    let mut pa = policy("zone-b");
    pa.interval_s = 30;
    let mut pb = policy("zone-c");
    pb.interval_s = 90;
    let ea = a
        .local_write(
            Op::SetPolicy {
                service: svc(),
                policy: pa,
            },
            "op-a",
            3000,
        )
        .unwrap();
    let eb = b
        .local_write(
            Op::SetPolicy {
                service: svc(),
                policy: pb,
            },
            "op-b",
            3000,
        )
        .unwrap();
    for r in [&mut a, &mut b, &mut c] {
        deliver(r, &[ea.clone(), eb.clone()]);
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(b.digest(), c.digest());
    let conflicts = c.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(
        conflicts[0].kind,
        ConflictKind::ConcurrentWrite {
            field: ConflictField::Policy
        }
    );
    let zones: Vec<_> = conflicts[0]
        .sides
        .iter()
        .map(|s| s.zone.to_string())
        .collect();
    assert_eq!(zones, ["zone-a", "zone-b"]);
    // Reads still answer one value, chosen the same way everywhere.
    let read = |r: &Replica| r.service(&svc()).unwrap().policy.get().cloned();
    assert_eq!(read(&a), read(&c));

    // An operator in zone C, having seen both, resolves it.
    let resolve = c
        .local_write(
            Op::SetPolicy {
                service: svc(),
                policy: policy("zone-b"),
            },
            "op-c",
            4000,
        )
        .unwrap();
    deliver(&mut a, std::slice::from_ref(&resolve));
    deliver(&mut b, &[resolve]);
    for r in [&a, &b, &c] {
        assert!(r.conflicts().is_empty());
        assert_eq!(read(r).unwrap().interval_s, 60);
    }
}

#[test]
fn failover_while_cut_off_shows_active_vm_conflict_until_one_is_deactivated() {
    let zs = zones(3);
    let (mut a, mut b, mut c) = (zs.replica(0), zs.replica(1), zs.replica(2));
    let e0 = protect(&mut a);
    deliver(&mut b, std::slice::from_ref(&e0));
    deliver(&mut c, &[e0]);
    // Zone B fails over while A is cut off.
    let fo = b
        .local_write(
            Op::SetSlot {
                service: svc(),
                zone: z("zone-b"),
                slot: Some(slot("vm-b", true)),
            },
            "cmp-b",
            5000,
        )
        .unwrap();
    deliver(&mut c, std::slice::from_ref(&fo));
    deliver(&mut a, &[fo]);
    for r in [&a, &b, &c] {
        let cs = r.conflicts();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].kind, ConflictKind::ActiveVms);
        let sides: Vec<_> = cs[0].sides.iter().map(|s| s.zone.to_string()).collect();
        assert_eq!(sides, ["zone-a", "zone-b"]);
    }
    // Resolved in A: A's VM marked inactive.
    let off = a
        .local_write(
            Op::SetSlot {
                service: svc(),
                zone: z("zone-a"),
                slot: Some(slot("vm-1", false)),
            },
            "op-a",
            6000,
        )
        .unwrap();
    deliver(&mut b, std::slice::from_ref(&off));
    deliver(&mut c, &[off]);
    for r in [&a, &b, &c] {
        assert!(r.conflicts().is_empty());
        assert_eq!(r.service(&svc()).unwrap().active_zones(), [z("zone-b")]);
    }
}

#[test]
fn forged_altered_and_replayed_events_change_nothing() {
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let e0 = protect(&mut a);
    // Altered after signing.
    let mut altered = e0.clone();
    altered.event.actor = "mallory".into();
    assert!(matches!(b.receive(altered, 0), Received::Refused(_)));
    // Signed by a key not in the directory.
    let stranger = SigningKey::from_bytes(&[99; 32]);
    let forged = e0.event.clone().sign(&stranger);
    assert!(matches!(b.receive(forged, 0), Received::Refused(_)));
    let before = b.digest();
    assert_eq!(before, zs.replica(1).digest(), "nothing applied");
    assert!(matches!(b.receive(e0.clone(), 0), Received::Applied(_)));
    let after = b.digest();
    assert!(matches!(b.receive(e0, 0), Received::Duplicate));
    assert_eq!(b.digest(), after);
}

#[test]
fn early_events_wait_for_their_causal_past() {
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let e1 = protect(&mut a);
    let e2 = a
        .local_write(
            Op::SetMetadata {
                service: svc(),
                metadata: "cpu=4".into(),
            },
            "cmp-a",
            2000,
        )
        .unwrap();
    assert!(matches!(b.receive(e2, 0), Received::Buffered));
    assert_eq!(b.pending_len(), 1);
    match b.receive(e1, 0) {
        Received::Applied(v) => assert_eq!(v.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn only_the_taking_zone_writes_an_rp_and_only_a_zone_writes_its_copy() {
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let e0 = protect(&mut a);
    deliver(&mut b, &[e0]);
    let rp_of_a = RpId::for_origin(&z("zone-a"), "1").unwrap();
    let disks = rp_disks(&rp_of_a);
    // B cannot record an RP under A's name: refused locally...
    let err = b
        .local_write(
            Op::CreateRp {
                service: svc(),
                rp: rp_of_a.clone(),
                disks: disks.clone(),
                metadata: String::new(),
                taken: Default::default(),
            },
            "b",
            0,
        )
        .unwrap_err();
    assert!(
        matches!(err, WriteError::Rejected(Rejected::NotOwner { .. })),
        "{err:?}"
    );
    // ... and A's own RP is accepted, with A's copy complete.
    let rp = a
        .local_write(
            Op::CreateRp {
                service: svc(),
                rp: rp_of_a.clone(),
                disks,
                metadata: "cpu=2".into(),
                taken: Default::default(),
            },
            "node",
            0,
        )
        .unwrap();
    deliver(&mut b, &[rp]);
    let copy = b
        .local_write(
            Op::SetCopy {
                service: svc(),
                rp: rp_of_a.clone(),
                state: CopyState::Complete,
            },
            "node",
            0,
        )
        .unwrap();
    deliver(&mut a, &[copy]);
    let s = a.service(&svc()).unwrap();
    let rp = &s.rps[&rp_of_a];
    assert!(rp.is_complete_in(&z("zone-a")) && rp.is_complete_in(&z("zone-b")));
    assert_eq!(s.newest_complete_rp(&z("zone-b")).unwrap().id, rp_of_a);
    assert_eq!(a.digest(), b.digest());
}

/// Once no copy of an RP is left, its origin forgets it everywhere; only the
/// origin may, and a copy update racing the purge does not bring it back.
#[test]
fn the_origin_purges_an_rp_and_a_racing_copy_update_does_not_revive_it() {
    let zs = zones(3);
    let (mut a, mut b, mut c) = (zs.replica(0), zs.replica(1), zs.replica(2));
    let e0 = protect(&mut a);
    let rp_id = RpId::for_origin(&z("zone-a"), "1").unwrap();
    let rp = a
        .local_write(
            Op::CreateRp {
                service: svc(),
                rp: rp_id.clone(),
                disks: rp_disks(&rp_id),
                metadata: String::new(),
                taken: Default::default(),
            },
            "node",
            0,
        )
        .unwrap();
    deliver(&mut b, &[e0.clone(), rp.clone()]);
    deliver(&mut c, &[e0, rp]);
    let purge = Op::PurgeRps {
        service: svc(),
        rps: vec![rp_id.clone()],
    };
    // Only the RP's origin may forget it.
    let err = b.local_write(purge.clone(), "node", 0).unwrap_err();
    assert!(
        matches!(err, WriteError::Rejected(Rejected::NotOwner { .. })),
        "{err:?}"
    );
    // a purges while b, not having heard, records its copy.
    let purged = a.local_write(purge.clone(), "node", 0).unwrap();
    let copy = b
        .local_write(
            Op::SetCopy {
                service: svc(),
                rp: rp_id.clone(),
                state: CopyState::Deleted,
            },
            "node",
            0,
        )
        .unwrap();
    // c hears them in one order, a and b in the other: all end alike.
    deliver(&mut c, &[copy.clone(), purged.clone()]);
    deliver(&mut a, &[copy]);
    deliver(&mut b, &[purged]);
    for r in [&a, &b, &c] {
        assert!(r.service(&svc()).unwrap().rps.is_empty(), "{}", r.zone());
    }
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.digest(), c.digest());
    // A purge of an RP that is gone is refused locally, naming it.
    let err = a.local_write(purge, "node", 0).unwrap_err();
    assert!(matches!(err, WriteError::NoSuchRp(_)), "{err:?}");
}

#[test]
fn bad_input_gets_a_clear_error_naming_the_field_and_changes_nothing() {
    let zs = zones(2);
    let mut a = zs.replica(0);
    let before = a.digest();
    let try_create = |a: &mut Replica, p: Policy, s: VmSlot, m: String| {
        a.local_write(
            Op::CreateService {
                service: svc(),
                policy: p,
                metadata: m,
                slot: s,
            },
            "cmp",
            0,
        )
    };
    let field = |e: WriteError| match e {
        WriteError::Invalid(i) => i.field_name(),
        other => panic!("{other:?}"),
    };
    let mut p = policy("zone-b");
    p.interval_s = 0;
    assert_eq!(
        field(try_create(&mut a, p, slot("v", true), "".into()).unwrap_err()),
        "policy.interval_s"
    );
    assert_eq!(
        field(try_create(&mut a, policy("zone-a"), slot("v", true), "".into()).unwrap_err()),
        "policy.recovery_zone"
    );
    let mut unknown = policy("zone-b");
    unknown.recovery_zone = z("zone-x");
    assert_eq!(
        field(try_create(&mut a, unknown, slot("v", true), "".into()).unwrap_err()),
        "policy.recovery_zone"
    );
    let mut bad = slot("v", true);
    bad.disks = vec!["bad name!".into()];
    assert_eq!(
        field(try_create(&mut a, policy("zone-b"), bad, "".into()).unwrap_err()),
        "disks"
    );
    let long = "x".repeat(drengine::model::MAX_METADATA_BYTES + 1);
    assert_eq!(
        field(try_create(&mut a, policy("zone-b"), slot("v", true), long).unwrap_err()),
        "metadata"
    );
    assert!(ZoneId::new("bad zone").is_err());
    assert!(serde_json::from_str::<ZoneId>("\"a/b\"").is_err());
    assert_eq!(a.digest(), before);
    assert_eq!(a.vv().total(), 0);
}

#[tokio::test]
async fn acknowledged_writes_survive_restart_and_concurrent_writers_share_commits() {
    let zs = zones(2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.redb");
    let open = || {
        let store = Store::open(&path, &z("zone-a")).unwrap();
        let db = Db::open(store, zs.replica(0)).unwrap();
        db.override_rebuild("test");
        db
    };
    let db = open();
    db.write(
        Op::CreateService {
            service: svc(),
            policy: policy("zone-b"),
            metadata: "m".into(),
            slot: slot("vm", true),
        },
        "cmp",
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.write(
                Op::SetMetadata {
                    service: svc(),
                    metadata: format!("m{i}"),
                },
                "cmp",
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let digest = db.read(|r| r.digest());
    assert_eq!(db.read(|r| r.vv().total()), 65);
    assert_eq!(db.store().log_len().unwrap(), 65);
    drop(db);
    // The writer thread holds the database until it sees the channel close.
    let reopened = Db::open(open_store(&path, &z("zone-a")).await, zs.replica(0)).unwrap();
    reopened.override_rebuild("test");
    reopened.override_rebuild("test");
    assert_eq!(reopened.read(|r| r.digest()), digest);
    // A database of another zone is refused.
    drop(reopened);
    wait_until(
        "the file refused as another zone's",
        Duration::from_secs(10),
        || async {
            match Store::open(&path, &z("zone-b")) {
                Err(drengine::store::StoreError::WrongZone { .. }) => true,
                // Still held by the closing writer.
                Err(_) => false,
                other => panic!("{:?}", other.map(|_| ())),
            }
        },
    )
    .await;
}

/// A conditional write compares and writes in the writer thread: the check
/// sees every write made before it and none can come in between; all its
/// ops land in one commit, or none does.
#[tokio::test]
async fn a_conditional_write_checks_and_writes_as_one() {
    let zs = zones(2);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb"), &z("zone-a")).unwrap();
    let db = Db::open(store, zs.replica(0)).unwrap();
    db.override_rebuild("test");
    db.write(
        Op::CreateService {
            service: svc(),
            policy: policy("zone-b"),
            metadata: "m0".into(),
            slot: slot("vm", true),
        },
        "cmp",
    )
    .await
    .unwrap();
    let metadata = |r: &Replica| r.service(&svc()).unwrap().metadata.get().cloned();
    let version = db.read(|r| version_token(r.service(&svc()).unwrap()));
    let edit = |expect: Expect, metadata: String| Command::Edit {
        service: svc(),
        expect,
        policy: Some(policy("zone-b")),
        metadata: Some(metadata),
        slot: None,
    };
    // The version is compared after the write queued before it.
    let first = db.write(
        Op::SetMetadata {
            service: svc(),
            metadata: "m1".into(),
        },
        "other",
    );
    let stale = db.execute(
        edit(Expect::OneOf(vec![version.clone()]), "m2".into()),
        "cmp",
    );
    let (first, stale) = tokio::join!(first, stale);
    first.unwrap();
    let now = db.read(|r| version_token(r.service(&svc()).unwrap()));
    match stale {
        Err(drengine::store::DbError::Write(WriteError::Stale { current })) => {
            assert_eq!(current, now)
        }
        other => panic!("{other:?}"),
    }
    assert_ne!(now, version);
    assert_eq!(db.read(|r| r.vv().total()), 2, "nothing of the stale write");
    // A version that matches: both ops in one commit, in order.
    let mut feed = db.subscribe();
    let done = db
        .execute(edit(Expect::OneOf(vec![now]), "m2".into()), "cmp")
        .await
        .unwrap();
    let evs = done.events;
    assert_eq!(evs.iter().map(|e| e.event.seq).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(feed.recv().await.unwrap().events.len(), 2);
    assert_eq!(db.read(metadata).as_deref(), Some("m2"));
    // One bad op refuses them all: nothing is applied.
    let err = db
        .execute(edit(Expect::Any, "x".repeat(1 << 20)), "cmp")
        .await
        .unwrap_err();
    assert!(
        matches!(err, drengine::store::DbError::Write(WriteError::Invalid(_))),
        "{err:?}"
    );
    assert_eq!(db.read(|r| r.vv().total()), 4);
    assert_eq!(db.read(metadata).as_deref(), Some("m2"));
}

/// A snapshot of `r` made from every event it applied: the live ones and
/// the heads of its vector, as the store exports it.
fn snapshot_of(r: &Replica, all: &[SignedEvent]) -> drengine::replica::Snapshot {
    let (live, heads) = r.snapshot_dots();
    let find = |d: &drengine::replica::Dot| all.iter().find(|e| &e.dot() == d).unwrap().clone();
    drengine::replica::Snapshot {
        vv: r.vv().clone(),
        events: live.iter().map(find).collect(),
        heads: heads.iter().map(find).collect(),
    }
}

/// zone-a protects a VM and edits it; zone-b hears everything and takes an
/// RP copy. Returns both replicas and every event.
fn history(zs: &Zones) -> (Replica, Replica, Vec<SignedEvent>) {
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let mut all = vec![protect(&mut a)];
    for m in ["cpu=4", "cpu=8"] {
        all.push(
            a.local_write(
                Op::SetMetadata {
                    service: svc(),
                    metadata: m.into(),
                },
                "cmp-a",
                2000,
            )
            .unwrap(),
        );
    }
    for ev in &all {
        b.receive(ev.clone(), 2000);
    }
    all.push(
        b.local_write(
            Op::SetSlot {
                service: svc(),
                zone: z("zone-b"),
                slot: Some(slot("vm-1b", false)),
            },
            "cmp-b",
            3000,
        )
        .unwrap(),
    );
    (a, b, all)
}

#[test]
fn a_snapshot_rebuilds_exactly_the_senders_state_from_its_signed_events() {
    let zs = zones(3);
    let (_a, b, all) = history(&zs);
    let snap = snapshot_of(&b, &all);
    // Superseded edits are not carried, only what the state holds.
    assert!(snap.events.len() < all.len());
    let mut c = zs.replica(2);
    c.import_snapshot(&snap, &[], 4000).unwrap();
    assert_eq!(c.digest(), b.digest());
}

#[test]
fn a_forged_snapshot_changes_nothing() {
    let zs = zones(3);
    let (_a, b, all) = history(&zs);
    let mut c = zs.replica(2);
    let before = c.digest();
    let honest = snapshot_of(&b, &all);
    let forger = &zs.keys[2]; // zone-c may sign as itself only

    // A vector entry for zone-a at u64::MAX, not backed by zone-a's event.
    let mut claim = honest.clone();
    claim.vv.set(z("zone-a"), u64::MAX);
    // ... or "backed" by an event zone-c signed in zone-a's name.
    let mut fake_head = claim.clone();
    let mut head = honest.heads[0].event.clone();
    head.seq = u64::MAX;
    head.deps.set(z("zone-a"), u64::MAX - 1);
    fake_head.heads[0] = head.sign(forger);
    // The service deleted by an event signed by the wrong zone.
    let mut deleted = honest.clone();
    let mut ev = honest.events[0].event.clone();
    ev.op = Op::DeleteService { service: svc() };
    deleted.events[0] = ev.sign(forger);
    // Zone-b's copy state of an RP, written by zone-c.
    let mut copy = honest.clone();
    let mut ev = honest.events[1].event.clone();
    ev.origin = z("zone-b");
    ev.op = Op::SetCopy {
        service: svc(),
        rp: RpId::for_origin(&z("zone-a"), "rp1").unwrap(),
        state: CopyState::Deleted,
    };
    copy.events[1] = ev.sign(forger);
    // A superseded event carried beside the one that replaced it.
    let mut stale = honest.clone();
    stale.events.push(all[1].clone());

    for (what, snap) in [
        ("unbacked vector entry", claim),
        ("head signed by another zone", fake_head),
        ("deletion signed by another zone", deleted),
        ("copy state signed by another zone", copy),
        ("superseded event carried", stale),
    ] {
        let res = c.import_snapshot(&snap, &[], 4000);
        assert!(res.is_err(), "{what}: accepted");
        println!("{what}: {}", res.unwrap_err());
        assert_eq!(c.digest(), before, "{what}: changed state");
    }
    // The honest one still goes in.
    c.import_snapshot(&honest, &[], 4000).unwrap();
    assert_eq!(c.digest(), b.digest());
}

/// `ev` signed again by `key` with another op: the same dot, another event
/// (its origin equivocating: two events signed with one seq).
fn equivocate(ev: &SignedEvent, op: Op, key: &SigningKey) -> SignedEvent {
    let mut e = ev.event.clone();
    e.op = op;
    e.sign(key)
}

/// A snapshot may not carry an event at a dot where it, or the importer,
/// has another: as its head beside the live event at that dot, as a live
/// event where the importer holds another live, or as a head where the
/// importer holds another live. Each is refused with the dot named and
/// changes nothing, in memory and over a real store (whose log would
/// otherwise keep the head in place of the event the state holds).
#[tokio::test]
async fn a_snapshot_carrying_two_events_at_one_dot_is_refused() {
    let zs = zones(3);
    let (_a, mut b, mut all) = history(&zs);
    let b1 = all[3].clone();
    let other_slot = Op::SetSlot {
        service: svc(),
        zone: z("zone-b"),
        slot: Some(slot("vm-other", false)),
    };
    let b1_again = equivocate(&b1, other_slot, &zs.keys[1]);
    assert_eq!(b1_again.dot(), b1.dot());
    b1_again.verify(&zs.directory).unwrap();
    let honest = snapshot_of(&b, &all);
    let refused = |res: Result<Vec<_>, SnapshotError>, dot: &Dot, what: &str| match res {
        Err(SnapshotError::Equivocation(d)) if &d == dot => {
            println!("{what}: {}", SnapshotError::Equivocation(d))
        }
        other => panic!("{what}: expected Equivocation({dot}), got {other:?}"),
    };

    // 1. Its head at b:1 is not the live event it carries at b:1.
    let mut head_differs = honest.clone();
    for h in &mut head_differs.heads {
        if h.dot() == b1.dot() {
            *h = b1_again.clone();
        }
    }
    assert!(head_differs.events.contains(&b1));
    let mut c = zs.replica(2);
    let before = c.digest();
    refused(
        c.import_snapshot(&head_differs, &[], 4000),
        &b1.dot(),
        "head beside another event at its dot",
    );
    assert_eq!(c.digest(), before);
    assert_eq!(c.vv().total(), 0);

    // ... and over a real store: refused, nothing in the log or the state.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("c.redb"), &z("zone-c")).unwrap();
    let db = Db::open(store, zs.replica(2)).unwrap();
    match db.import_snapshot(head_differs).await {
        Err(drengine::store::DbError::Snapshot(SnapshotError::Equivocation(d))) => {
            assert_eq!(d, b1.dot())
        }
        other => panic!("over the store: expected Equivocation, got {other:?}"),
    }
    assert_eq!(db.read(|r| r.digest()), before);
    assert_eq!(db.durable_vv().total(), 0);
    assert!(db
        .store()
        .events_of(&z("zone-b"), 0, 10)
        .unwrap()
        .is_empty());
    db.import_snapshot(honest.clone()).await.unwrap();
    assert_eq!(db.read(|r| r.digest()), b.digest());
    assert_eq!(
        db.store().events_of(&z("zone-b"), 0, 10).unwrap(),
        vec![b1.clone()]
    );

    // 2. A zone-b that signed b:1 twice: its snapshot carries the other
    //    b:1 (as event and head) to a zone holding the first live.
    let mut c = zs.replica(2);
    deliver(&mut c, &all);
    let before = c.digest();
    let vv_before = c.vv().clone();
    let own = live_of(&c, &all);
    assert!(own.contains(&b1));
    let mut other_history = honest.clone();
    for e in other_history
        .events
        .iter_mut()
        .chain(&mut other_history.heads)
    {
        if e.dot() == b1.dot() {
            *e = b1_again.clone();
        }
    }
    other_history.verify(&zs.directory).unwrap();
    refused(
        c.import_snapshot(&other_history, &own, 4000),
        &b1.dot(),
        "event other than the importer's live one",
    );
    assert_eq!(c.digest(), before);
    assert_eq!(c.vv(), &vv_before);

    // 3. Its head at a:3 (superseded at the sender, so not carried live)
    //    is not the a:3 the importer holds live.
    let a3 = all[2].clone();
    let mut c = zs.replica(2);
    deliver(&mut c, &all);
    all.push(set_metadata(&mut b, "cpu=16"));
    let superseding = snapshot_of(&b, &all);
    assert!(!superseding.events.contains(&a3));
    let own = live_of(&c, &all);
    assert!(own.contains(&a3));
    let a3_again = equivocate(
        &a3,
        Op::SetMetadata {
            service: svc(),
            metadata: "cpu=9".into(),
        },
        &zs.keys[0],
    );
    let mut head_other = superseding.clone();
    for h in &mut head_other.heads {
        if h.dot() == a3.dot() {
            *h = a3_again.clone();
        }
    }
    head_other.verify(&zs.directory).unwrap();
    let before = c.digest();
    refused(
        c.import_snapshot(&head_other, &own, 4000),
        &a3.dot(),
        "head other than the importer's live event",
    );
    assert_eq!(c.digest(), before);
    // The honest one goes in.
    c.import_snapshot(&superseding, &own, 4000).unwrap();
    assert_eq!(c.digest(), b.digest());
}

#[test]
fn a_restarted_node_signs_only_once_a_peer_showed_it_has_its_zones_newest_event() {
    let zs = zones(2);
    let (a, mut b, all) = history(&zs);
    // zone-a lost its data: a new, empty replica as a node start makes it.
    let mut wiped = zs.replica(0);
    wiped.require_rebuild_proof();
    let refused = wiped.local_write(
        Op::SetMetadata {
            service: svc(),
            metadata: "too early".into(),
        },
        "cmp-a",
        5000,
    );
    assert!(
        matches!(refused, Err(WriteError::Rebuilding { .. })),
        "{refused:?}"
    );
    // zone-b reports: zone-a had signed 3 events. Still not enough.
    b.receive(all[0].clone(), 5000);
    let known = b.known();
    wiped.peer_report(&z("zone-b"), b.vv(), &known);
    let st = wiped.rebuild_status();
    assert_eq!((st.own_seq, st.signed_seq), (0, 3));
    assert!(!wiped.can_sign());
    // zone-a's own events come back by sync: now it may sign seq 4.
    for ev in &all {
        wiped.receive(ev.clone(), 5000);
    }
    assert!(wiped.can_sign());
    let ev = wiped
        .local_write(
            Op::SetMetadata {
                service: svc(),
                metadata: "after".into(),
            },
            "cmp-a",
            5000,
        )
        .unwrap();
    assert_eq!(ev.event.seq, a.vv().get(&z("zone-a")) + 1);
}

#[test]
fn an_operator_override_lets_a_lone_rebuilding_node_sign() {
    let zs = zones(2);
    let mut r = zs.replica(0);
    r.require_rebuild_proof();
    assert!(!r.can_sign());
    r.override_rebuild();
    assert!(r.can_sign());
    assert_eq!(
        r.rebuild_status().state,
        drengine::replica::RebuildState::Overridden
    );
}

/// An RP event is a claim about StorPool objects, so its disks may name
/// only what the engine makes for that RP: a peer signing an RP whose
/// snapshot is not the RP's own name, whose globalId is not one, or that
/// names one globalId twice is refused by every node alike, and the RP
/// never appears.
#[test]
fn an_rp_naming_snapshots_the_engine_did_not_make_is_refused() {
    use drengine::replica::{Event, Hlc};
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let e0 = protect(&mut a);
    deliver(&mut b, &[e0]);
    let rp = RpId::for_origin(&z("zone-a"), "7").unwrap();
    let own = |i: usize| drengine::model::names::rp_snapshot_name(&svc(), &rp, i);
    let disk = |volume: &str, snapshot: String, gid: &str| RpDisk {
        volume: volume.into(),
        snapshot,
        global_id: gid.into(),
    };
    let forged: Vec<(&str, Vec<RpDisk>)> = vec![
        (
            "another snapshot's name",
            vec![disk("vm-1-disk0", "precious@backup".into(), "b.a.1")],
        ),
        (
            "another RP's name",
            vec![disk(
                "vm-1-disk0",
                drengine::model::names::rp_snapshot_name(
                    &svc(),
                    &RpId::for_origin(&z("zone-a"), "1").unwrap(),
                    0,
                ),
                "b.a.1",
            )],
        ),
        (
            "not a globalId",
            vec![disk("vm-1-disk0", own(0), "../../etc")],
        ),
        (
            "upper case globalId",
            vec![disk("vm-1-disk0", own(0), "B.A.1")],
        ),
        (
            "one globalId twice",
            vec![
                disk("vm-1-disk0", own(0), "b.a.1"),
                disk("vm-1-disk1", own(1), "b.a.1"),
            ],
        ),
        ("a bad volume name", vec![disk("vm/1", own(0), "b.a.1")]),
        (
            "one volume twice",
            vec![
                disk("vm-1-disk0", own(0), "b.a.1"),
                disk("vm-1-disk0", own(1), "b.a.2"),
            ],
        ),
    ];
    // The engine's own names and well-formed globalIds pass.
    let honest = RpId::for_origin(&z("zone-a"), "8").unwrap();
    let ok = a
        .local_write(
            Op::CreateRp {
                service: svc(),
                rp: honest.clone(),
                disks: vec![disk(
                    "vm-1-disk0",
                    drengine::model::names::rp_snapshot_name(&svc(), &honest, 0),
                    "a.a.1",
                )],
                metadata: String::new(),
                taken: Hlc::default(),
            },
            "node",
            4000,
        )
        .unwrap();
    deliver(&mut b, &[ok]);
    assert!(b.service(&svc()).unwrap().rps.contains_key(&honest));
    for (what, disks) in forged {
        let op = Op::CreateRp {
            service: svc(),
            rp: rp.clone(),
            disks,
            metadata: String::new(),
            taken: Hlc::default(),
        };
        // The honest write path refuses it before signing...
        let err = a.local_write(op.clone(), "node", 5000).unwrap_err();
        assert!(
            matches!(err, WriteError::Rejected(Rejected::Invalid(_))),
            "{what}: {err:?}"
        );
        // ... and a hostile zone-a that signs it anyway changes nothing in b.
        let seq = b.vv().get(&z("zone-a")) + 1;
        let ev = Event {
            origin: z("zone-a"),
            seq,
            deps: b.vv().clone(),
            hlc: Hlc {
                wall_ms: 5000,
                logical: seq as u32,
            },
            actor: "node".into(),
            op,
        }
        .sign(&zs.keys[0]);
        match b.receive(ev, 5000) {
            Received::Applied(applied) => assert!(
                matches!(applied[0].rejected, Some(Rejected::Invalid(_))),
                "{what}: {:?}",
                applied[0].rejected
            ),
            other => panic!("{what}: {other:?}"),
        }
        assert!(!b.service(&svc()).unwrap().rps.contains_key(&rp), "{what}");
    }
}

/// The live events of `r`: what its store holds and a snapshot import
/// merges with.
fn live_of(r: &Replica, all: &[SignedEvent]) -> Vec<SignedEvent> {
    snapshot_of(r, all).events
}

/// A replica that heard every event of `all` (early ones wait for their
/// past): the state of the join of every history.
fn joined(zs: &Zones, all: &[SignedEvent]) -> Replica {
    let mut r = Replica::new(z("zone-x"), None, zs.directory.clone());
    deliver(&mut r, all);
    assert_eq!(r.pending_len(), 0);
    r
}

/// Each of `a` and `b` imports the other's snapshot (both taken before
/// either import), as two zones rebuilt from opposite sides do.
fn swap_snapshots(a: &mut Replica, b: &mut Replica, all: &[SignedEvent]) {
    assert!(
        !a.vv().dominates(b.vv()) && !b.vv().dominates(a.vv()),
        "the vectors are incomparable"
    );
    let (snap_a, snap_b) = (snapshot_of(a, all), snapshot_of(b, all));
    let (own_a, own_b) = (live_of(a, all), live_of(b, all));
    a.import_snapshot(&snap_b, &own_a, 4000).unwrap();
    b.import_snapshot(&snap_a, &own_b, 4000).unwrap();
}

fn set_metadata(r: &mut Replica, m: &str) -> SignedEvent {
    r.local_write(
        Op::SetMetadata {
            service: svc(),
            metadata: m.into(),
        },
        "cmp",
        3000,
    )
    .unwrap()
}

fn set_slot(r: &mut Replica, zone: &str, vm: &str) -> SignedEvent {
    r.local_write(
        Op::SetSlot {
            service: svc(),
            zone: z(zone),
            slot: Some(slot(vm, false)),
        },
        "cmp",
        3000,
    )
    .unwrap()
}

/// Two zones each behind the other: neither snapshot covers the other's
/// vector, and each import gives the state of every event of both (the
/// concurrent edits side by side, as a conflict).
#[test]
fn snapshots_with_incomparable_vectors_merge_to_the_union() {
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let mut all = vec![protect(&mut a)];
    deliver(&mut b, &all);
    all.push(set_metadata(&mut a, "cpu=8"));
    all.push(set_slot(&mut b, "zone-b", "vm-1b"));
    all.push(set_metadata(&mut b, "cpu=16"));
    swap_snapshots(&mut a, &mut b, &all);
    let union = joined(&zs, &all);
    assert_eq!(a.digest(), union.digest());
    assert_eq!(b.digest(), union.digest());
    let metadata = a.service(&svc()).unwrap().metadata.values().len();
    assert_eq!(metadata, 2, "both concurrent edits kept");
    assert!(a.service(&svc()).unwrap().slot(&z("zone-b")).is_some());
}

/// A purge leaves no live event, so a snapshot of a zone that has not
/// heard of it still carries the RP's creation: the side that purged it
/// covers the creation and no longer holds it, so it stays purged on both
/// sides (and a copy state racing the purge does not revive it).
#[test]
fn an_rp_purged_on_either_side_stays_purged_after_a_merge() {
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let mut all = vec![protect(&mut a)];
    let rp_id = RpId::for_origin(&z("zone-a"), "1").unwrap();
    all.push(
        a.local_write(
            Op::CreateRp {
                service: svc(),
                rp: rp_id.clone(),
                disks: rp_disks(&rp_id),
                metadata: String::new(),
                taken: Default::default(),
            },
            "node",
            2000,
        )
        .unwrap(),
    );
    deliver(&mut b, &all);
    all.push(
        a.local_write(
            Op::PurgeRps {
                service: svc(),
                rps: vec![rp_id.clone()],
            },
            "node",
            3000,
        )
        .unwrap(),
    );
    all.push(
        b.local_write(
            Op::SetCopy {
                service: svc(),
                rp: rp_id.clone(),
                state: CopyState::Complete,
            },
            "node",
            3000,
        )
        .unwrap(),
    );
    all.push(set_slot(&mut b, "zone-b", "vm-1b"));
    // b's snapshot carries the creation (live there) and its copy state.
    assert!(snapshot_of(&b, &all).events.contains(&all[1]));
    swap_snapshots(&mut a, &mut b, &all);
    for r in [&a, &b] {
        assert!(r.service(&svc()).unwrap().rps.is_empty(), "{}", r.zone());
        assert!(r.service(&svc()).unwrap().slot(&z("zone-b")).is_some());
    }
    let union = joined(&zs, &all);
    assert_eq!(a.digest(), union.digest());
    assert_eq!(b.digest(), union.digest());
}

/// A value one side replaced is still live at the other side, which did
/// not see the replacement: it does not come back on either side.
#[test]
fn a_superseded_register_value_does_not_come_back_after_a_merge() {
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let mut all = vec![protect(&mut a), set_metadata(&mut a, "cpu=4")];
    deliver(&mut b, &all);
    all.push(set_metadata(&mut a, "cpu=8"));
    all.push(set_slot(&mut b, "zone-b", "vm-1b"));
    assert!(snapshot_of(&b, &all).events.contains(&all[1]));
    swap_snapshots(&mut a, &mut b, &all);
    for r in [&a, &b] {
        let s = r.service(&svc()).unwrap();
        assert_eq!(s.metadata.get().map(String::as_str), Some("cpu=8"));
        assert_eq!(s.metadata.values().len(), 1, "{}", r.zone());
    }
    let union = joined(&zs, &all);
    assert_eq!(a.digest(), union.digest());
    assert_eq!(b.digest(), union.digest());
}

/// A node that imports a snapshot keeps what it acknowledged that no peer
/// has yet: in its state, in its log (to send on) and on disk.
#[tokio::test]
async fn an_import_keeps_the_importers_events_no_peer_has() {
    let zs = zones(2);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.redb"), &z("zone-a")).unwrap();
    let db = Db::open(store, zs.replica(0)).unwrap();
    db.override_rebuild("test");
    let create = db
        .write(
            Op::CreateService {
                service: svc(),
                policy: policy("zone-b"),
                metadata: "cpu=2".into(),
                slot: slot("vm-1", true),
            },
            "cmp",
        )
        .await
        .unwrap();
    // zone-b has only the creation, and news of its own.
    let mut b = zs.replica(1);
    deliver(&mut b, std::slice::from_ref(&create));
    let mut all = vec![create];
    all.push(set_slot(&mut b, "zone-b", "vm-1b"));
    // zone-a's edits that never left it.
    for m in ["cpu=4", "cpu=8"] {
        let op = Op::SetMetadata {
            service: svc(),
            metadata: m.into(),
        };
        all.push(db.write(op, "cmp").await.unwrap());
    }
    db.import_snapshot(snapshot_of(&b, &all)).await.unwrap();
    let union = joined(&zs, &all);
    assert_eq!(db.read(|r| r.digest()), union.digest());
    assert_eq!(db.read(|r| r.vv().get(&z("zone-a"))), 3);
    // Still in the log for zone-b, which lacks them, and on disk.
    let logged = db.store().events_of(&z("zone-a"), 1, 10).unwrap();
    assert_eq!(logged, all[2..].to_vec());
    let directory = zs.directory.clone();
    let restored = db
        .store()
        .load_replica(z("zone-a"), None, directory, 5000)
        .unwrap();
    assert_eq!(restored.digest(), union.digest());
    assert!(!db.store().needs_snapshot(b.vv()).unwrap());
}

/// A snapshot from one peer cannot show what it leaves out (ARCHITECTURE.md,
/// invariant 6), but it cannot make a node drop its own acknowledged
/// writes: one that omits the importer's own live edit still proves
/// itself, and the importer keeps the edit (its own zone's live events
/// other than RP creations are kept whatever the snapshot's vector covers).
#[test]
fn a_snapshot_that_leaves_out_the_importers_own_write_cannot_drop_it() {
    let zs = zones(2);
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let mut all = vec![protect(&mut a), set_metadata(&mut a, "cpu=4")];
    deliver(&mut b, &all);
    all.push(set_slot(&mut b, "zone-b", "vm-1b"));
    all.push(set_slot(&mut a, "zone-a", "vm-1a"));
    let mut omitting = snapshot_of(&b, &all);
    omitting.events.retain(|e| e != &all[1]);
    omitting.verify(&zs.directory).unwrap();
    let own = live_of(&a, &all);
    a.import_snapshot(&omitting, &own, 4000).unwrap();
    let s = a.service(&svc()).unwrap();
    assert_eq!(s.metadata.get().map(String::as_str), Some("cpu=4"));
    // And it is still superseded by what did supersede it at the sender.
    let (mut a, mut b) = (zs.replica(0), zs.replica(1));
    let mut all = vec![protect(&mut a), set_metadata(&mut a, "cpu=4")];
    deliver(&mut b, &all);
    all.push(set_metadata(&mut b, "cpu=8"));
    let honest = snapshot_of(&b, &all);
    let own = live_of(&a, &all);
    a.import_snapshot(&honest, &own, 4000).unwrap();
    let s = a.service(&svc()).unwrap();
    assert_eq!(s.metadata.get().map(String::as_str), Some("cpu=8"));
    assert!(!s.metadata.is_conflict());
}
