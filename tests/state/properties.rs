//! Property tests (proptest): the encodings round trip (version vectors,
//! events, sync frames, snapshots), and replicated state converges
//! whatever the delivery order: the multi-value register over any causal
//! order, a replica over any order with duplicates, and a snapshot import
//! to the state of both histories.
//!
//! Seeds: every property runs from a fixed seed (`DRENGINE_PROP_SEED`,
//! default 1; `random` for a fresh one), printed at its start; cases per
//! property from `DRENGINE_PROP_CASES`. A failure prints the seed and
//! proptest's minimal input; `DRENGINE_PROP_SEED=N cargo test --release
//! --test state properties::NAME` replays it. Failure persistence is off: no
//! `proptest-regressions` files; a counterexample worth keeping becomes a
//! named unit test.

use drengine::model::{
    names, CopyState, MessageId, Policy, Retention, RpDisk, RpId, ServiceId, VmSlot, ZoneId,
};
use drengine::replica::{
    Directory, Dot, Event, Hlc, Mvr, Op, Received, Replica, SignedEvent, Snapshot, VersionVector,
};
use drengine::sync::wire::{self, KnownMap, LinkReport, Msg, Read};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::collections::{BTreeMap, BTreeSet};

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const NOW_MS: u64 = 1_800_000_000_000;

fn config(default_cases: u32) -> Config {
    let seed = match std::env::var("DRENGINE_PROP_SEED").as_deref() {
        Err(_) => 1,
        Ok("random") => rand::random::<u64>(),
        Ok(v) => v
            .parse()
            .expect("DRENGINE_PROP_SEED: unset, `random` or a number"),
    };
    let cases = std::env::var("DRENGINE_PROP_CASES")
        .ok()
        .map(|v| v.parse().expect("DRENGINE_PROP_CASES: a number"))
        .unwrap_or(default_cases);
    eprintln!("DRENGINE_PROP_SEED={seed} DRENGINE_PROP_CASES={cases}");
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

fn zone(s: &str) -> ZoneId {
    ZoneId::new(s).unwrap()
}

fn key(z: &ZoneId) -> SigningKey {
    let i = ZONES.iter().position(|n| *n == z.as_str()).unwrap();
    SigningKey::from_bytes(&[i as u8 + 1; 32])
}

fn directory() -> Directory {
    Directory::new(
        ZONES
            .iter()
            .map(|z| (zone(z), key(&zone(z)).verifying_key()))
            .collect(),
    )
}

// ---- strategies -------------------------------------------------------

fn zone_s() -> impl Strategy<Value = ZoneId> {
    prop::sample::select(ZONES.to_vec()).prop_map(zone)
}

fn vv_s() -> impl Strategy<Value = VersionVector> {
    prop::collection::btree_map(zone_s(), any::<u64>(), 0..4).prop_map(|m| {
        let mut vv = VersionVector::new();
        for (z, s) in m {
            vv.set(z, s);
        }
        vv
    })
}

fn hlc_s() -> impl Strategy<Value = Hlc> {
    (any::<u64>(), any::<u32>()).prop_map(|(wall_ms, logical)| Hlc { wall_ms, logical })
}

fn name_s() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,15}"
}

fn service_s() -> impl Strategy<Value = ServiceId> {
    name_s().prop_map(|s| ServiceId::new(s).unwrap())
}

fn rp_s() -> impl Strategy<Value = RpId> {
    (zone_s(), "[a-z0-9]{1,8}").prop_map(|(z, s)| RpId::for_origin(&z, &s).unwrap())
}

fn policy_s() -> impl Strategy<Value = Policy> {
    (any::<u64>(), zone_s(), any::<(u32, u64, u32, u64)>()).prop_map(|(i, z, (a, b, c, d))| {
        Policy {
            interval_s: i,
            recovery_zone: z,
            local_retention: Retention {
                keep_last: a,
                keep_for_s: b,
            },
            remote_retention: Retention {
                keep_last: c,
                keep_for_s: d,
            },
        }
    })
}

fn slot_s() -> impl Strategy<Value = VmSlot> {
    (
        ".{0,12}",
        prop::collection::vec(name_s(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(cmp_vm_id, disks, active)| VmSlot {
            cmp_vm_id,
            disks,
            active,
        })
}

fn copy_s() -> impl Strategy<Value = CopyState> {
    prop_oneof![
        Just(CopyState::Pending),
        Just(CopyState::Transferring),
        Just(CopyState::Complete),
        ".{0,12}".prop_map(|error| CopyState::Failed { error }),
        Just(CopyState::Deleted),
    ]
}

fn op_s() -> impl Strategy<Value = Op> {
    prop_oneof![
        (service_s(), policy_s(), ".{0,24}", slot_s()).prop_map(
            |(service, policy, metadata, slot)| Op::CreateService {
                service,
                policy,
                metadata,
                slot
            }
        ),
        (service_s(), policy_s()).prop_map(|(service, policy)| Op::SetPolicy { service, policy }),
        (service_s(), ".{0,24}")
            .prop_map(|(service, metadata)| Op::SetMetadata { service, metadata }),
        (service_s(), zone_s(), prop::option::of(slot_s())).prop_map(|(service, zone, slot)| {
            Op::SetSlot {
                service,
                zone,
                slot,
            }
        }),
        service_s().prop_map(|service| Op::DeleteService { service }),
        (service_s(), rp_s(), ".{0,12}", hlc_s(), 0usize..3).prop_map(
            |(service, rp, metadata, taken, n)| Op::CreateRp {
                disks: (0..n)
                    .map(|i| RpDisk {
                        volume: format!("vol-{i}"),
                        snapshot: names::rp_snapshot_name(&service, &rp, i),
                        global_id: format!("a.b.{i}"),
                    })
                    .collect(),
                service,
                rp,
                metadata,
                taken,
            }
        ),
        (service_s(), rp_s(), copy_s()).prop_map(|(service, rp, state)| Op::SetCopy {
            service,
            rp,
            state
        }),
        (service_s(), rp_s(), any::<bool>()).prop_map(|(service, rp, hold)| Op::SetHold {
            service,
            rp,
            hold
        }),
        (zone_s(), ".{0,24}").prop_map(|(to, body)| Op::SendMessage { to, body }),
        name_s().prop_map(|m| Op::AckMessage {
            message: MessageId::new(m).unwrap()
        }),
        (service_s(), prop::collection::vec(rp_s(), 0..3))
            .prop_map(|(service, rps)| Op::PurgeRps { service, rps }),
        (
            service_s(),
            prop::sample::select(vec!["failover", "revert", "resolve", "reboot", ""]),
            prop::option::of(rp_s()),
            ".{0,40}"
        )
            .prop_map(|(service, action, rp, summary)| Op::Record {
                service,
                action: action.to_string(),
                rp,
                summary,
            }),
        (
            prop::collection::vec(zone_s(), 0..3),
            any::<bool>(),
            "[a-z]{1,6}\\.[a-z-]{1,10}",
            prop::option::of(service_s()),
            ".{0,24}",
            any::<u64>()
        )
            .prop_map(|(to, broadcast, kind, service, body, ttl_ms)| Op::Send {
                to,
                broadcast,
                kind,
                service,
                body,
                ttl_ms
            }),
        name_s().prop_map(|m| Op::Deliver {
            message: MessageId::new(m).unwrap()
        }),
        (name_s(), ".{0,24}").prop_map(|(m, result)| Op::Answer {
            message: MessageId::new(m).unwrap(),
            result
        }),
        prop::collection::vec(name_s(), 0..3).prop_map(|ms| Op::PruneMessages {
            messages: ms.into_iter().map(|m| MessageId::new(m).unwrap()).collect()
        }),
    ]
}

fn event_s() -> impl Strategy<Value = Event> {
    (zone_s(), any::<u64>(), vv_s(), hlc_s(), ".{0,12}", op_s()).prop_map(
        |(origin, seq, deps, hlc, actor, op)| Event {
            origin,
            seq,
            deps,
            hlc,
            actor,
            op,
        },
    )
}

/// Events signed by their origin, or carrying any 64 bytes (or fewer) as
/// a signature.
fn signed_s() -> impl Strategy<Value = SignedEvent> {
    (
        event_s(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..65)),
    )
        .prop_map(|(ev, sig)| match sig {
            None => {
                let k = key(&ev.origin);
                ev.sign(&k)
            }
            Some(sig) => SignedEvent { event: ev, sig },
        })
}

fn known_s() -> impl Strategy<Value = KnownMap> {
    prop::collection::btree_map(zone_s(), vv_s(), 0..3)
}

fn links_s() -> impl Strategy<Value = Vec<LinkReport>> {
    prop::collection::vec(
        (zone_s(), any::<bool>(), any::<Option<u32>>()).prop_map(|(zone, connected, rtt_us)| {
            LinkReport {
                zone,
                connected,
                rtt_us,
            }
        }),
        0..4,
    )
}

fn msg_s() -> impl Strategy<Value = Msg> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (zone_s(), vv_s(), known_s(), vv_s(), links_s()).prop_map(
            |(zone, vv, known, floor, links)| Msg::Hello {
                zone,
                vv,
                known,
                floor,
                links
            }
        ),
        (vv_s(), known_s()).prop_map(|(vv, known)| Msg::Welcome { vv, known }),
        (
            any::<u64>(),
            vv_s(),
            prop::collection::vec(signed_s().prop_map(|e| e.encode()), 0..3)
        )
            .prop_map(|(id, vv, events)| Msg::Events { id, vv, events }),
        (any::<u64>(), vv_s()).prop_map(|(id, vv)| Msg::Ack { id, vv }),
        (any::<u64>(), any::<u32>(), any::<u32>(), bytes()).prop_map(|(id, part, parts, bytes)| {
            Msg::Snapshot {
                id,
                part,
                parts,
                bytes,
            }
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(id, part)| Msg::SnapshotPartAck { id, part }),
        (any::<u64>(), any::<bool>(), vv_s()).prop_map(|(id, imported, vv)| Msg::SnapshotAck {
            id,
            imported,
            vv
        }),
        (".{0,16}", vv_s()).prop_map(|(reason, vv)| Msg::Dropped { reason, vv }),
    ]
}

// ---- encodings round trip ---------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn version_vectors_round_trip_and_merge_is_a_join(a in vv_s(), b in vv_s()) {
        let bytes = postcard::to_stdvec(&a).unwrap();
        prop_assert_eq!(&postcard::from_bytes::<VersionVector>(&bytes).unwrap(), &a);
        let json = serde_json::to_vec(&a).unwrap();
        prop_assert_eq!(&serde_json::from_slice::<VersionVector>(&json).unwrap(), &a);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        prop_assert_eq!(&ab, &ba);
        prop_assert!(ab.dominates(&a) && ab.dominates(&b));
        let mut again = ab.clone();
        again.merge(&b);
        prop_assert_eq!(&again, &ab);
        let m = a.meet(&b);
        prop_assert!(a.dominates(&m) && b.dominates(&m));
    }

    #[test]
    fn events_round_trip_and_keep_their_signature(ev in signed_s()) {
        let bytes = ev.encode();
        let back = SignedEvent::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &ev);
        prop_assert_eq!(back.event.canonical_bytes(), ev.event.canonical_bytes());
        let dir = directory();
        prop_assert_eq!(back.verify(&dir), ev.verify(&dir));
        // A genuine signature verifies unless the event is malformed.
        let genuine = ev.event.clone().sign(&key(&ev.event.origin));
        let well_formed = ev.event.seq > 0
            && ev.event.deps.get(&ev.event.origin) == ev.event.seq - 1;
        prop_assert_eq!(SignedEvent::decode(&genuine.encode()).unwrap().verify(&dir).is_ok(), well_formed);
    }

    #[test]
    fn frames_round_trip_in_sequence(msgs in prop::collection::vec(msg_s(), 0..5)) {
        let stream: Vec<u8> = msgs.iter().flat_map(wire::encode_frame).collect();
        futures::executor::block_on(async {
            let mut r = futures::io::Cursor::new(&stream[..]);
            for m in &msgs {
                match wire::read_frame(&mut r, usize::MAX).await.unwrap() {
                    Read::Msg { msg, bytes } => {
                        prop_assert_eq!(&msg, m);
                        prop_assert_eq!(bytes, wire::encode_frame(m).len());
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            prop_assert!(matches!(wire::read_frame(&mut r, usize::MAX).await.unwrap(), Read::Eof));
            Ok(())
        })?;
    }
}

// ---- histories made by real replicas ----------------------------------

/// One step of a history: a zone writes, or one zone hears all another has.
#[derive(Debug, Clone)]
enum Step {
    Write(usize, Write),
    Sync { from: usize, to: usize },
}

#[derive(Debug, Clone)]
enum Write {
    Create(u8),
    Metadata(u8, u8),
    Policy(u8, usize),
    Slot(u8, usize, bool),
    Delete(u8),
    TakeRp(u8),
    Copy(u8, u8, bool),
    Hold(u8, u8, bool),
    Purge(u8),
    Message(usize),
    Ack,
    Record(u8),
}

fn write_s() -> impl Strategy<Value = Write> {
    let svc = || 0u8..2;
    prop_oneof![
        svc().prop_map(Write::Create),
        (svc(), any::<u8>()).prop_map(|(s, v)| Write::Metadata(s, v)),
        (svc(), 0usize..3).prop_map(|(s, z)| Write::Policy(s, z)),
        (svc(), 0usize..3, any::<bool>()).prop_map(|(s, z, a)| Write::Slot(s, z, a)),
        svc().prop_map(Write::Delete),
        svc().prop_map(Write::TakeRp),
        (svc(), 0u8..4, any::<bool>()).prop_map(|(s, r, d)| Write::Copy(s, r, d)),
        (svc(), 0u8..4, any::<bool>()).prop_map(|(s, r, h)| Write::Hold(s, r, h)),
        svc().prop_map(Write::Purge),
        (0usize..3).prop_map(Write::Message),
        Just(Write::Ack),
        svc().prop_map(Write::Record),
    ]
}

fn steps_s(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0usize..3, write_s()).prop_map(|(z, w)| Step::Write(z, w)),
            2 => (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Sync { from, to }),
        ],
        1..max,
    )
}

/// Three replicas after `steps`, and every event signed, in the order made
/// (a causal order).
struct History {
    replicas: Vec<Replica>,
    log: Vec<SignedEvent>,
}

impl History {
    fn run(steps: &[Step]) -> History {
        let mut replicas: Vec<Replica> = ZONES
            .iter()
            .map(|z| Replica::new(zone(z), Some(key(&zone(z))), directory()))
            .collect();
        let mut log: Vec<SignedEvent> = Vec::new();
        let mut t = NOW_MS;
        for step in steps {
            t += 1000;
            match step {
                Step::Write(z, w) => {
                    let r = &mut replicas[*z];
                    if let Some(op) = op_for(r, w, t) {
                        // Ops the local checks refuse write nothing.
                        if let Ok(ev) = r.local_write(op, "prop", t) {
                            log.push(ev);
                        }
                    }
                }
                Step::Sync { from, to } if from != to => {
                    let have = replicas[*from].vv().clone();
                    for ev in log.iter().filter(|e| have.covers(&e.dot())) {
                        replicas[*to].receive(ev.clone(), t);
                    }
                }
                Step::Sync { .. } => {}
            }
        }
        History { replicas, log }
    }

    fn by_dot(&self) -> BTreeMap<Dot, &SignedEvent> {
        self.log.iter().map(|e| (e.dot(), e)).collect()
    }

    /// What a store would export for replica `i`.
    fn snapshot(&self, i: usize) -> Snapshot {
        let by_dot = self.by_dot();
        let (live, heads) = self.replicas[i].snapshot_dots();
        Snapshot {
            vv: self.replicas[i].vv().clone(),
            events: live.iter().map(|d| by_dot[d].clone()).collect(),
            heads: heads.iter().map(|d| by_dot[d].clone()).collect(),
        }
    }

    fn live(&self, i: usize) -> Vec<SignedEvent> {
        let by_dot = self.by_dot();
        self.replicas[i]
            .state()
            .live_dots()
            .iter()
            .map(|d| by_dot[d].clone())
            .collect()
    }

    /// A fresh replica of `z` fed, in log order, the events `vv` covers.
    fn reference(&self, z: &str, vv: &VersionVector) -> Replica {
        let mut r = Replica::new(zone(z), None, directory());
        for ev in self.log.iter().filter(|e| vv.covers(&e.dot())) {
            r.receive(ev.clone(), NOW_MS);
        }
        r
    }
}

fn op_for(r: &Replica, w: &Write, t: u64) -> Option<Op> {
    let me = r.zone().clone();
    let svc = |i: &u8| ServiceId::new(format!("svc-{i}")).unwrap();
    let other = ZONES.iter().map(|z| zone(z)).find(|z| z != &me).unwrap();
    let policy = |recovery: ZoneId| Policy {
        interval_s: 60,
        recovery_zone: recovery,
        local_retention: Retention {
            keep_last: 1,
            keep_for_s: 60,
        },
        remote_retention: Retention {
            keep_last: 2,
            keep_for_s: 60,
        },
    };
    let rp_of = |s: &u8, i: &u8| -> Option<RpId> {
        r.service(&svc(s))?
            .rps_in_order()
            .get(*i as usize)
            .map(|rp| rp.id.clone())
    };
    Some(match w {
        Write::Create(s) => Op::CreateService {
            service: svc(s),
            policy: policy(other),
            metadata: format!("m{s}"),
            slot: VmSlot {
                cmp_vm_id: format!("vm-{s}"),
                disks: vec![format!("vm-{s}-root")],
                active: true,
            },
        },
        Write::Metadata(s, v) => Op::SetMetadata {
            service: svc(s),
            metadata: format!("meta-{v}"),
        },
        Write::Policy(s, z) => Op::SetPolicy {
            service: svc(s),
            policy: policy(zone(ZONES[*z])),
        },
        Write::Slot(s, z, active) => Op::SetSlot {
            service: svc(s),
            zone: zone(ZONES[*z]),
            slot: Some(VmSlot {
                cmp_vm_id: format!("vm-{s}-{z}"),
                disks: vec![format!("vm-{s}-{z}-root")],
                active: *active,
            }),
        },
        Write::Delete(s) => Op::DeleteService { service: svc(s) },
        Write::TakeRp(s) => {
            let service = svc(s);
            let rp = RpId::for_origin(&me, &format!("{t}")).unwrap();
            Op::CreateRp {
                disks: vec![RpDisk {
                    volume: format!("vm-{s}-root"),
                    snapshot: names::rp_snapshot_name(&service, &rp, 0),
                    global_id: format!("a.b.c{t}"),
                }],
                service,
                rp,
                metadata: String::new(),
                taken: Hlc {
                    wall_ms: t,
                    logical: 0,
                },
            }
        }
        Write::Copy(s, i, deleted) => Op::SetCopy {
            service: svc(s),
            rp: rp_of(s, i)?,
            state: if *deleted {
                CopyState::Deleted
            } else {
                CopyState::Complete
            },
        },
        Write::Hold(s, i, hold) => Op::SetHold {
            service: svc(s),
            rp: rp_of(s, i)?,
            hold: *hold,
        },
        Write::Purge(s) => {
            let own: Vec<RpId> = r
                .service(&svc(s))?
                .rps
                .keys()
                .filter(|rp| rp.is_owned_by(&me))
                .take(1)
                .cloned()
                .collect();
            if own.is_empty() {
                return None;
            }
            Op::PurgeRps {
                service: svc(s),
                rps: own,
            }
        }
        Write::Message(z) => Op::Send {
            to: vec![zone(ZONES[*z])],
            broadcast: false,
            kind: "cmp.test".into(),
            service: None,
            body: format!("\"to {z}\""),
            ttl_ms: drengine::model::message::DEFAULT_MESSAGE_TTL_MS,
        },
        Write::Ack => {
            let m = r
                .state()
                .messages
                .values()
                .find(|m| m.is_for(&me) && !m.answers.contains_key(&me))?;
            if m.delivered.contains_key(&me) {
                Op::Answer {
                    message: m.id.clone(),
                    result: "true".into(),
                }
            } else {
                Op::Deliver {
                    message: m.id.clone(),
                }
            }
        }
        Write::Record(s) => {
            r.service(&svc(s))?;
            Op::Record {
                service: svc(s),
                action: "failover".into(),
                rp: None,
                summary: format!("recorded by {me}"),
            }
        }
    })
}

/// A delivery order: each event of `log` once, in the order of `keys`
/// (cycled), and some again (`dups` names positions to repeat).
fn shuffled(log: &[SignedEvent], keys: &[u32], dups: &[usize]) -> Vec<SignedEvent> {
    let mut order: Vec<(u32, usize)> = (0..log.len()).map(|i| (keys[i % keys.len()], i)).collect();
    order.sort();
    let mut out: Vec<SignedEvent> = order.iter().map(|(_, i)| log[*i].clone()).collect();
    for d in dups {
        if !log.is_empty() {
            let e = out[d % out.len()].clone();
            out.insert((d / 7) % (out.len() + 1), e);
        }
    }
    out
}

proptest! {
    #![proptest_config(config(64))]

    /// Any delivery order, duplicates included, gives the state of the
    /// history's own order: same digest, same conflicts.
    #[test]
    fn replicas_converge_for_any_delivery_order(
        steps in steps_s(40),
        keys in prop::collection::vec(any::<u32>(), 1..64),
        dups in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let h = History::run(&steps);
        let mut all = VersionVector::new();
        for r in &h.replicas {
            all.merge(r.vv());
        }
        let reference = h.reference("zone-c", &all);
        prop_assert_eq!(reference.vv(), &all);
        let mut r = Replica::new(zone("zone-c"), None, directory());
        for ev in shuffled(&h.log, &keys, &dups) {
            let got = r.receive(ev, NOW_MS);
            prop_assert!(!matches!(got, Received::Refused(_) | Received::BufferFull), "{:?}", got);
        }
        prop_assert_eq!(r.pending_len(), 0);
        prop_assert_eq!(r.digest(), reference.digest());
        prop_assert_eq!(r.conflicts(), reference.conflicts());
        // And every replica of the history is the reference of what it saw.
        for (i, x) in h.replicas.iter().enumerate() {
            let seen = h.reference(ZONES[i], x.vv());
            prop_assert_eq!(seen.digest(), x.digest());
        }
    }

    /// A snapshot round trips, proves exactly its sender's state, and an
    /// import into another replica gives the state of both histories.
    #[test]
    fn snapshots_round_trip_prove_their_state_and_merge_to_the_union(
        steps in steps_s(40),
        from in 0usize..3,
        into in 0usize..3,
    ) {
        let h = History::run(&steps);
        let snap = h.snapshot(from);
        let bytes = postcard::to_stdvec(&snap).unwrap();
        let back: Snapshot = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &snap);
        let proven = back.verify(&directory()).unwrap();
        prop_assert_eq!(&proven, h.replicas[from].state());

        let mut r = Replica::restore(
            zone(ZONES[into]),
            None,
            directory(),
            h.replicas[into].state().clone(),
            h.replicas[into].vv().clone(),
            h.replicas[into].clock(),
        );
        r.import_snapshot(&back, &h.live(into), NOW_MS).unwrap();
        let mut both = h.replicas[into].vv().clone();
        both.merge(h.replicas[from].vv());
        let union = h.reference(ZONES[into], &both);
        prop_assert_eq!(r.vv(), union.vv());
        prop_assert_eq!(r.digest(), union.digest());
    }
}

// ---- the register alone -----------------------------------------------

/// Writes to one register by three zones, each with the deps it had: zone
/// `z` writes (`Some`) or learns what zone `z2` has (`None`).
fn register_history(steps: &[(usize, Option<u16>, usize)]) -> Vec<(VersionVector, Dot, u16)> {
    let mut vvs: Vec<VersionVector> = vec![VersionVector::new(); 3];
    let mut writes = Vec::new();
    for (z, value, z2) in steps {
        match value {
            Some(v) => {
                let origin = zone(ZONES[*z]);
                let seq = vvs[*z].get(&origin) + 1;
                let deps = vvs[*z].clone();
                writes.push((
                    deps,
                    Dot {
                        origin: origin.clone(),
                        seq,
                    },
                    *v,
                ));
                vvs[*z].set(origin, seq);
            }
            None => {
                let theirs = vvs[*z2].clone();
                vvs[*z].merge(&theirs);
            }
        }
    }
    writes
}

/// The writes in a causal order: of those whose deps are all applied, the
/// one with the smallest key next.
fn causal_order(
    writes: &[(VersionVector, Dot, u16)],
    keys: &[u32],
) -> Vec<(VersionVector, Dot, u16)> {
    let mut done = VersionVector::new();
    let mut left: BTreeSet<usize> = (0..writes.len()).collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let next = *left
            .iter()
            .filter(|i| {
                let (deps, dot, _) = &writes[**i];
                done.dominates(deps) && done.get(&dot.origin) + 1 == dot.seq
            })
            .min_by_key(|i| (keys[**i % keys.len()], **i))
            .expect("a causal history always has a next write");
        left.remove(&next);
        let (_, dot, _) = &writes[next];
        done.set(dot.origin.clone(), dot.seq);
        out.push(writes[next].clone());
    }
    out
}

proptest! {
    #![proptest_config(config(256))]

    /// The multi-value register ends the same for any causal order of its
    /// writes, and keeps exactly the writes no other write has seen.
    #[test]
    fn the_register_converges_for_any_causal_order(
        steps in prop::collection::vec((0usize..3, prop::option::weighted(0.6, any::<u16>()), 0usize..3), 1..40),
        k1 in prop::collection::vec(any::<u32>(), 1..40),
        k2 in prop::collection::vec(any::<u32>(), 1..40),
    ) {
        let writes = register_history(&steps);
        let apply = |order: Vec<(VersionVector, Dot, u16)>| {
            let mut m: Mvr<u16> = Mvr::default();
            for (deps, dot, v) in order {
                m.write(&deps, dot, Hlc { wall_ms: 0, logical: 0 }, v);
            }
            m
        };
        let a = apply(causal_order(&writes, &k1));
        let b = apply(causal_order(&writes, &k2));
        prop_assert_eq!(&a, &b);
        // What stays: the writes whose dot no later write's deps cover.
        let mut expected: Vec<&Dot> = writes
            .iter()
            .map(|(_, d, _)| d)
            .filter(|d| !writes.iter().any(|(deps, _, _)| deps.covers(d)))
            .collect();
        expected.sort();
        let got: Vec<&Dot> = a.values().iter().map(|v| &v.dot).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(a.is_conflict(), a.values().len() > 1);
    }
}
