//! What the fuzz targets share: a three-zone deployment with fixed keys, a
//! short history of real signed events (made by real replicas), the
//! replica states it leaves, and the seed corpora, all made from real
//! encodings at start-up (nothing binary is committed).
//!
//! The harness holds every zone's key, so besides feeding the fuzzer's
//! bytes as they are (what a peer without a key can send), a target can
//! re-sign what decoded ([`resign`]): what a zone holding its own key, or a
//! compromised one, can make the others apply. That is the input that gets
//! past the signature check into the rules, the apply, the merge and the
//! store.

use drengine::model::{
    names, CopyState, Policy, Retention, RpDisk, RpId, ServiceId, VmSlot, ZoneId,
};
use drengine::replica::{
    Directory, Dot, Hlc, Op, Received, Replica, SignedEvent, Snapshot, State, VersionVector,
};
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// Physical time the fixtures' replicas run at (ms since the epoch).
pub const NOW_MS: u64 = 1_800_000_000_000;

pub fn zone(s: &str) -> ZoneId {
    ZoneId::new(s).expect("fixture zone id")
}

/// The zones `zone-a`, `zone-b`, `zone-c`, each with a fixed key.
pub fn keys() -> &'static BTreeMap<ZoneId, SigningKey> {
    static KEYS: OnceLock<BTreeMap<ZoneId, SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        ["zone-a", "zone-b", "zone-c"]
            .iter()
            .enumerate()
            .map(|(i, z)| (zone(z), SigningKey::from_bytes(&[i as u8 + 1; 32])))
            .collect()
    })
}

pub fn directory() -> Directory {
    Directory::new(
        keys()
            .iter()
            .map(|(z, k)| (z.clone(), k.verifying_key()))
            .collect(),
    )
}

/// The event signed again with its origin's key, if the harness has it.
pub fn resign(ev: &SignedEvent) -> Option<SignedEvent> {
    let key = keys().get(&ev.event.origin)?;
    Some(ev.event.clone().sign(key))
}

/// A snapshot with every event and head signed again by its origin (those
/// of unknown origins as they were).
pub fn resign_snapshot(snap: &Snapshot) -> Snapshot {
    let again = |evs: &[SignedEvent]| -> Vec<SignedEvent> {
        evs.iter()
            .map(|e| resign(e).unwrap_or_else(|| e.clone()))
            .collect()
    };
    Snapshot {
        vv: snap.vv.clone(),
        events: again(&snap.events),
        heads: again(&snap.heads),
    }
}

/// The recorded history and what it leaves.
pub struct Fixture {
    /// Every event signed, in the order it was made.
    pub events: Vec<SignedEvent>,
    /// zone-c's replica after the first `events_at_c` events (it then misses
    /// the rest): the receiver the targets feed.
    pub c_state: State,
    pub c_vv: VersionVector,
    pub c_clock: Hlc,
    pub events_at_c: usize,
    /// zone-a's replica at the end: what its snapshot proves.
    pub a_state: State,
    pub a_vv: VersionVector,
    pub a_clock: Hlc,
    /// zone-a's snapshot at the end, as `Store::export_snapshot` makes it.
    pub a_snapshot: Snapshot,
    pub service: ServiceId,
}

impl Fixture {
    /// zone-c's replica, restored from the fixture (cheap: no verify).
    pub fn replica_c(&self, with_key: bool) -> Replica {
        Replica::restore(
            zone("zone-c"),
            with_key.then(|| keys()[&zone("zone-c")].clone()),
            directory(),
            self.c_state.clone(),
            self.c_vv.clone(),
            self.c_clock,
        )
    }

    /// `zone`'s replica restored from zone-a's final state and vector (so
    /// with zone-a's conflict and messages), with its key if `with_key`.
    pub fn replica_from_a(&self, z: &str, with_key: bool) -> Replica {
        Replica::restore(
            zone(z),
            with_key.then(|| keys()[&zone(z)].clone()),
            directory(),
            self.a_state.clone(),
            self.a_vv.clone(),
            self.a_clock,
        )
    }

    /// The signed events of zone-c's live dots (what a store reads for an
    /// import).
    pub fn c_live(&self) -> Vec<SignedEvent> {
        live_of(&self.events, &self.c_state)
    }
}

fn live_of(events: &[SignedEvent], state: &State) -> Vec<SignedEvent> {
    let by_dot: BTreeMap<Dot, &SignedEvent> = events.iter().map(|e| (e.dot(), e)).collect();
    state
        .live_dots()
        .iter()
        .filter_map(|d| by_dot.get(d).map(|e| (*e).clone()))
        .collect()
}

fn policy(recovery: &str) -> Policy {
    Policy {
        interval_s: 60,
        recovery_zone: zone(recovery),
        local_retention: Retention {
            keep_last: 2,
            keep_for_s: 3600,
        },
        remote_retention: Retention {
            keep_last: 3,
            keep_for_s: 7200,
        },
    }
}

fn rp_create(service: &ServiceId, rp: &RpId, taken: Hlc) -> Op {
    let disks = (0..2)
        .map(|i| RpDisk {
            volume: format!("vm-1-disk{i}"),
            snapshot: names::rp_snapshot_name(service, rp, i),
            global_id: format!("a1.b{i}.c{}", taken.wall_ms % 1000),
        })
        .collect();
    Op::CreateRp {
        service: service.clone(),
        rp: rp.clone(),
        disks,
        metadata: "{\"vm\":\"vm-1\"}".into(),
        taken,
    }
}

/// The history: zone-a protects a VM and takes RPs, zone-b copies one and
/// holds it, both edit the metadata concurrently (a conflict), messages go
/// both ways and one is acknowledged, zone-a purges an RP; zone-c hears of
/// the first part only.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let dir = directory();
    let mk = |z: &str| Replica::new(zone(z), Some(keys()[&zone(z)].clone()), dir.clone());
    let (mut a, mut b, mut c) = (mk("zone-a"), mk("zone-b"), mk("zone-c"));
    let mut events: Vec<SignedEvent> = Vec::new();
    let mut t = NOW_MS;
    let service = ServiceId::new("svc-1").expect("fixture id");
    let write = |r: &mut Replica, op: Op, t: &mut u64, events: &mut Vec<SignedEvent>| {
        *t += 1000;
        let ev = r.local_write(op, "fuzz", *t).expect("fixture write");
        events.push(ev.clone());
        ev
    };
    let deliver = |r: &mut Replica, evs: &[SignedEvent], t: u64| {
        for e in evs {
            match r.receive(e.clone(), t) {
                Received::Applied(_) | Received::Duplicate => {}
                other => panic!("fixture event not applied: {other:?}"),
            }
        }
    };
    write(
        &mut a,
        Op::CreateService {
            service: service.clone(),
            policy: policy("zone-b"),
            metadata: "{\"vm\":\"vm-1\"}".into(),
            slot: VmSlot {
                cmp_vm_id: "vm-1".into(),
                disks: vec!["vm-1-disk0".into(), "vm-1-disk1".into()],
                active: true,
            },
        },
        &mut t,
        &mut events,
    );
    let rp1 = RpId::for_origin(&zone("zone-a"), "1").expect("rp id");
    let rp2 = RpId::for_origin(&zone("zone-a"), "2").expect("rp id");
    let taken = a.tick(t);
    write(
        &mut a,
        rp_create(&service, &rp1, taken),
        &mut t,
        &mut events,
    );
    write(
        &mut a,
        Op::SendMessage {
            to: zone("zone-b"),
            body: "hello from a".into(),
        },
        &mut t,
        &mut events,
    );
    deliver(&mut b, &events.clone(), t);
    deliver(&mut c, &events.clone(), t);
    let events_at_c = events.len();
    write(
        &mut b,
        Op::SetCopy {
            service: service.clone(),
            rp: rp1.clone(),
            state: CopyState::Complete,
        },
        &mut t,
        &mut events,
    );
    write(
        &mut b,
        Op::SetHold {
            service: service.clone(),
            rp: rp1.clone(),
            hold: true,
        },
        &mut t,
        &mut events,
    );
    let msg = drengine::replica::message_id(&events[2].dot());
    write(&mut b, Op::AckMessage { message: msg }, &mut t, &mut events);
    // Concurrent edits: a conflict on the metadata.
    write(
        &mut a,
        Op::SetMetadata {
            service: service.clone(),
            metadata: "{\"vm\":\"vm-1\",\"edit\":\"a\"}".into(),
        },
        &mut t,
        &mut events,
    );
    write(
        &mut b,
        Op::SetMetadata {
            service: service.clone(),
            metadata: "{\"vm\":\"vm-1\",\"edit\":\"b\"}".into(),
        },
        &mut t,
        &mut events,
    );
    write(
        &mut b,
        Op::SendMessage {
            to: zone("zone-a"),
            body: "hello from b".into(),
        },
        &mut t,
        &mut events,
    );
    deliver(&mut a, &events[events_at_c..].to_vec(), t);
    let taken = a.tick(t);
    write(
        &mut a,
        rp_create(&service, &rp2, taken),
        &mut t,
        &mut events,
    );
    write(
        &mut a,
        Op::SetCopy {
            service: service.clone(),
            rp: rp2.clone(),
            state: CopyState::Deleted,
        },
        &mut t,
        &mut events,
    );
    write(
        &mut a,
        Op::PurgeRps {
            service: service.clone(),
            rps: vec![rp2],
        },
        &mut t,
        &mut events,
    );
    write(
        &mut a,
        Op::SetSlot {
            service: service.clone(),
            zone: zone("zone-b"),
            slot: Some(VmSlot {
                cmp_vm_id: "vm-1-b".into(),
                disks: vec!["vm-1-b-disk0".into()],
                active: false,
            }),
        },
        &mut t,
        &mut events,
    );
    let (live, heads) = a.snapshot_dots();
    let by_dot: BTreeMap<Dot, &SignedEvent> = events.iter().map(|e| (e.dot(), e)).collect();
    let a_snapshot = Snapshot {
        vv: a.vv().clone(),
        events: live.iter().map(|d| by_dot[d].clone()).collect(),
        heads: heads.iter().map(|d| by_dot[d].clone()).collect(),
    };
    Fixture {
        events,
        c_state: c.state().clone(),
        c_vv: c.vv().clone(),
        c_clock: c.clock(),
        events_at_c,
        a_state: a.state().clone(),
        a_vv: a.vv().clone(),
        a_clock: a.clock(),
        a_snapshot,
        service,
    }
}

/// Writes `seeds` into the corpus directory libFuzzer was given (the first
/// argument that is not a flag, if it is a directory), as `seed-N` files,
/// so that `cargo fuzz run TARGET` starts from real encodings. Call from
/// the target's `init`.
pub fn write_seeds(seeds: impl IntoIterator<Item = Vec<u8>>) {
    let Some(dir) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        return;
    };
    let dir = Path::new(&dir);
    if !dir.is_dir() {
        return;
    }
    for (i, s) in seeds.into_iter().enumerate() {
        let path = dir.join(format!("seed-{i}"));
        if !path.exists() {
            let _ = std::fs::write(path, s);
        }
    }
}

/// Seeds of `wire_frame`: one frame of each message kind, with real
/// vectors, events and a snapshot part, and the whole lot as one stream.
pub fn wire_seeds() -> Vec<Vec<u8>> {
    use drengine::sync::wire::{encode_frame, KnownMap, LinkReport, Msg};
    let f = fixture();
    let known: KnownMap = [
        (zone("zone-a"), f.a_vv.clone()),
        (zone("zone-c"), f.c_vv.clone()),
    ]
    .into_iter()
    .collect();
    let snap = postcard::to_stdvec(&f.a_snapshot).unwrap_or_default();
    let msgs = vec![
        Msg::Hello {
            zone: zone("zone-a"),
            vv: f.a_vv.clone(),
            known: known.clone(),
            floor: f.c_vv.clone(),
            links: vec![LinkReport {
                zone: zone("zone-b"),
                connected: true,
                rtt_us: Some(180),
            }],
        },
        Msg::Welcome {
            vv: f.c_vv.clone(),
            known,
        },
        Msg::Events {
            id: 7,
            vv: f.a_vv.clone(),
            events: f.events[f.events_at_c..]
                .iter()
                .map(SignedEvent::encode)
                .collect(),
        },
        Msg::Ack {
            id: 7,
            vv: f.a_vv.clone(),
        },
        Msg::Snapshot {
            id: 1,
            part: 0,
            parts: 2,
            bytes: snap[..snap.len() / 2].to_vec(),
        },
        Msg::SnapshotPartAck { id: 1, part: 0 },
        Msg::SnapshotAck {
            id: 1,
            imported: true,
            vv: f.a_vv.clone(),
        },
        Msg::Dropped {
            reason: "malformed".into(),
            vv: f.c_vv.clone(),
        },
    ];
    let mut seeds: Vec<Vec<u8>> = msgs.iter().map(encode_frame).collect();
    seeds.push(seeds.concat());
    seeds
}

/// Seeds of `event`: every event of the history, in its stored encoding.
pub fn event_seeds() -> Vec<Vec<u8>> {
    fixture().events.iter().map(SignedEvent::encode).collect()
}

/// Seeds of `snapshot`: zone-a's snapshot, and one of zone-c.
pub fn snapshot_seeds() -> Vec<Vec<u8>> {
    let f = fixture();
    let c = Snapshot {
        vv: f.c_vv.clone(),
        events: f.c_live(),
        heads: f
            .c_vv
            .iter()
            .filter_map(|(z, seq)| {
                f.events
                    .iter()
                    .find(|e| &e.event.origin == z && e.event.seq == seq)
                    .cloned()
            })
            .collect(),
    };
    [&f.a_snapshot, &c]
        .iter()
        .map(|s| postcard::to_stdvec(s).unwrap_or_default())
        .collect()
}

/// Seeds of `config`: the example configuration files of the repository.
pub fn config_seeds() -> Vec<Vec<u8>> {
    [
        include_str!("../../config/zone-a.toml"),
        include_str!("../../config/zone-b.toml"),
        include_str!("../../config/zone-c.toml"),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// The request kinds of `api_json`, by the input's first byte.
pub const API_KINDS: [&str; 8] = [
    "create_service",
    "update_service",
    "failover",
    "migrate",
    "revert",
    "deactivate",
    "resolve",
    "send_message",
];

/// Seeds of `api_json`: a body of each request kind as the CLI's client
/// sends it (the `api::types` structs serialised), after its kind byte.
pub fn api_seeds() -> Vec<Vec<u8>> {
    use drengine::api::types::*;
    use drengine::replica::{ConflictField, ConflictTarget};
    let f = fixture();
    let rp = RpId::for_origin(&zone("zone-a"), "1").expect("rp id");
    let side = f.a_state.services[&f.service].metadata.values()[0]
        .dot
        .clone();
    let bodies: Vec<(u8, Vec<u8>)> = vec![
        (
            0,
            serde_json::to_vec(&CreateService {
                id: Some(ServiceId::new("svc-2").expect("id")),
                cmp_vm_id: "vm-2".into(),
                disks: vec!["vm-2-root".into()],
                metadata: "{}".into(),
                policy: policy("zone-b"),
            })
            .unwrap_or_default(),
        ),
        (
            1,
            serde_json::to_vec(&UpdateService {
                policy: Some(policy("zone-c")),
                metadata: Some("{\"x\":1}".into()),
                slot: Some(VmSlot {
                    cmp_vm_id: "vm-1".into(),
                    disks: vec!["vm-1-disk0".into()],
                    active: false,
                }),
            })
            .unwrap_or_default(),
        ),
        (
            2,
            serde_json::to_vec(&FailoverRequest {
                rp: Some(rp.clone()),
                recovery_zone: Some(zone("zone-c")),
            })
            .unwrap_or_default(),
        ),
        (
            3,
            serde_json::to_vec(&MigrateRequest {
                target: zone("zone-b"),
            })
            .unwrap_or_default(),
        ),
        (
            4,
            serde_json::to_vec(&RevertRequest { rp }).unwrap_or_default(),
        ),
        (
            5,
            serde_json::to_vec(&DeactivateRequest {
                zone: Some(zone("zone-b")),
            })
            .unwrap_or_default(),
        ),
        (
            6,
            serde_json::to_vec(&ResolveRequest {
                field: ConflictTarget::Field(ConflictField::Metadata),
                choose: Some(side.clone()),
                value: None,
                keep_zone: None,
                seen: Some(vec![side]),
            })
            .unwrap_or_default(),
        ),
        (
            6,
            serde_json::to_vec(&ResolveRequest {
                field: ConflictTarget::Field(ConflictField::Metadata),
                choose: None,
                value: Some(serde_json::Value::String("{}".into())),
                keep_zone: None,
                seen: None,
            })
            .unwrap_or_default(),
        ),
        (
            7,
            serde_json::to_vec(&SendMessage {
                to: "zone-b".into(),
                kind: Some("drengine.request-rp".into()),
                service: None,
                body: serde_json::json!({ "why": "drill" }),
                ttl_s: Some(600),
            })
            .unwrap_or_default(),
        ),
    ];
    bodies
        .into_iter()
        .map(|(k, b)| [vec![k], b].concat())
        .collect()
}

/// A store of zone-a holding the whole history in its log, opened once per
/// process (in memory-backed scratch space when the machine has it).
pub fn store_a() -> &'static drengine::store::Store {
    static STORE: OnceLock<(tempfile::TempDir, drengine::store::Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("drengine-fuzz-")
                .tempdir_in(scratch())
                .expect("tempdir");
            let a = zone("zone-a");
            let store =
                drengine::store::Store::open(&dir.path().join("zone-a.redb"), &a).expect("store");
            let mut r = Replica::new(a, None, directory());
            let f = fixture();
            for e in &f.events {
                r.receive(e.clone(), NOW_MS);
            }
            store.commit(&mut r, &f.events, &[]).expect("commit");
            (dir, store)
        })
        .1
}

/// Where redb files go: memory-backed when the machine has it.
pub fn scratch() -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
