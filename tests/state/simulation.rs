//! Deterministic simulation of the replicated state core.
//!
//! 3–7 zones on a random sparse topology make random writes while the
//! simulated network loses, duplicates and reorders messages, partitions and
//! heals links, nodes crash and restart from their real redb files, any zone
//! loses its database entirely (wipe) or comes back from an older copy of
//! its redb file (saved at random moments while it was stopped), nodes'
//! clocks jump an hour or a day forward or back for a while, and forged and
//! replayed events and tampered snapshots are injected. Every start is
//! unproven (`require_rebuild_proof`, as a node starts): a node signs again
//! only once a peer's handshake showed it holds its zone's newest event.
//! The five invariants of DESIGN.md §2 are checked:
//! 1. convergence (equal digests, and equal to a reference replica that
//!    applied every honest, not lost event in another causal order),
//! 2. no acknowledged write lost: every acknowledged event that reached
//!    another zone's store is in every zone at the end. An event lost with
//!    the only data that held it (it never left its zone before that zone
//!    was wiped or restored) may be lost; such events are counted
//!    (`Stats::lost`), and their dot may be signed again (nobody can hold
//!    both),
//! 3. every conflict listed identically everywhere,
//! 4. no forged or replayed event, and no tampered snapshot (vector entry
//!    without a head, event signed by another zone's key, head dropped,
//!    superseded event added), changed state: `import_snapshot` refuses it
//!    and the receiver's digest is unchanged; but the creation of an RP its
//!    origin purged, added back, proves itself (a purge leaves no live
//!    event): merged by a receiver that saw the purge it must change
//!    nothing the honest export would not, and one that did not see it is
//!    counted (`purged_rp_resurrected`, an omission no snapshot can show),
//! 5. no dot is signed twice: checked at every acknowledged local write
//!    against every event ever signed.
//!
//! Seeds come from `DRENGINE_SIM_SEEDS=START..END`, plus the fixed
//! `REGRESSION_SEEDS` that once failed, which always run; a failure prints
//! the seed, and `DRENGINE_SIM_SEEDS=N..N+1` replays it alone.

use drengine::model::{CopyState, Policy, Retention, RpDisk, RpId, ServiceId, VmSlot, ZoneId};
use drengine::replica::{
    decide, merge, service_conflicts, version_token, Choice, Command, ConflictKind, Directory, Dot,
    Expect, Op, Outcome, Received, Replica, SignedEvent, Snapshot, VersionVector, WriteError,
};
use drengine::store::Store;
use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const FORGER: &str = "forger";

/// Seeds that once found a bug, run on every test run whatever the range,
/// so the bug cannot come back unnoticed:
/// - 900854: a snapshot import dropped the importer's log of every origin
///   the snapshot covered, even those it added nothing to. z1 imported its
///   own state relayed back by the hub z2 and lost the log of its own
///   events that z0 still lacked; z2, wiped and rebuilt from z0's
///   snapshot, and z1 then each stood behind the other's floor and each
///   refused the other's snapshot for ever.
/// - 89: z0 lost its data while its event z0:5 waited, unapplied, in z1's
///   buffer of early events. Nobody reported seq 5 (only applied events
///   counted), so rebuilt z0 signed another z0:5; z1 then applied the old
///   one when its causal past came and the zones never agreed again. A
///   buffered event now counts as evidence of what its origin signed.
/// - 1630: two neighbouring zones, both wiped, were each rebuilt by
///   snapshot from a different side: their vectors were incomparable and
///   each stood behind the other's floor (at its vector), so each needed a
///   snapshot from the other, and an import refused any snapshot that did
///   not cover the importer's vector; the two sides never met. An import
///   now merges: the state of the join of both histories, keeping an event
///   of either side only if every side whose vector covers it holds it.
const REGRESSION_SEEDS: &[u64] = &[89, 900854, 1630];

/// What a run exercised, summed over seeds, so a reader can see the
/// simulation reaches the paths it claims to.
#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    writes: u64,
    /// Commands decided (`replica::decide`) and, of those, refused as they
    /// must be (stale versions, sides that changed, other requests for an
    /// existing id).
    commands: u64,
    commands_refused: u64,
    purges: u64,
    /// Local writes refused because the node was rebuilding.
    rebuilding: u64,
    refused: u64,
    snapshots: u64,
    compacted: u64,
    crashes: u64,
    /// Databases lost entirely.
    wipes: u64,
    /// Older copies of a database saved while its node was stopped, and
    /// put back later.
    copies: u64,
    restores: u64,
    /// Acknowledged events lost because no zone's store held them any more
    /// (they never left their zone before it lost its data).
    lost: u64,
    /// Of those, events that had reached another zone, which then lost its
    /// data too.
    lost_after_leaving: u64,
    /// Lost events that came back: a peer still held one in memory.
    revived: u64,
    /// Dots of lost events signed again by their rebuilt zone.
    resigned: u64,
    /// Nodes still rebuilding at the end (they saw their zone signed an
    /// event nobody holds any more: only an operator's override helps).
    stuck: u64,
    /// Tampered snapshots refused (and of them, how many the receiver
    /// would have taken by vector: a refusal by proof, not by coverage).
    forged_snapshots: u64,
    forged_snapshots_dominating: u64,
    /// Tampered snapshots that prove themselves by carrying back the
    /// creation of an RP its origin had purged (a purge leaves no live
    /// event). Merged by a receiver that had seen the purge, the RP stays
    /// purged (checked: the merge equals that of the honest export)...
    purged_rp_kept_purged: u64,
    /// ... but a receiver that had not (wiped, or not yet told) cannot tell
    /// the omission from an RP never purged: the known gap, counted (such
    /// snapshots are not imported).
    purged_rp_resurrected: u64,
    clock_jumps: u64,
    conflicts: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.writes += o.writes;
        self.commands += o.commands;
        self.commands_refused += o.commands_refused;
        self.purges += o.purges;
        self.rebuilding += o.rebuilding;
        self.refused += o.refused;
        self.snapshots += o.snapshots;
        self.compacted += o.compacted;
        self.crashes += o.crashes;
        self.wipes += o.wipes;
        self.copies += o.copies;
        self.restores += o.restores;
        self.lost += o.lost;
        self.lost_after_leaving += o.lost_after_leaving;
        self.resigned += o.resigned;
        self.revived += o.revived;
        self.stuck += o.stuck;
        self.forged_snapshots += o.forged_snapshots;
        self.forged_snapshots_dominating += o.forged_snapshots_dominating;
        self.purged_rp_kept_purged += o.purged_rp_kept_purged;
        self.purged_rp_resurrected += o.purged_rp_resurrected;
        self.clock_jumps += o.clock_jumps;
        self.conflicts += o.conflicts;
    }
}

struct SimNode {
    zone: ZoneId,
    key: SigningKey,
    path: PathBuf,
    replica: Option<Replica>,
    store: Option<Store>,
    /// The version vector each neighbour last told us it has.
    peer_vv: BTreeMap<ZoneId, VersionVector>,
    /// The version vector of the last durable commit in `path` (kept while
    /// the node is stopped): what this zone's store holds.
    disk_vv: VersionVector,
    /// Older copies of the database file, with the vector each holds.
    copies: Vec<(PathBuf, VersionVector)>,
    /// This node's clock minus the simulation's (a clock that jumped).
    clock_offset_ms: i64,
    /// Dots this running node was given early and may hold in memory.
    buffered: BTreeSet<Dot>,
}

struct Msg {
    from: usize,
    to: usize,
    payload: Payload,
}

enum Payload {
    Event(Box<SignedEvent>),
    Vv(VersionVector, BTreeMap<ZoneId, VersionVector>),
}

struct Sim {
    rng: StdRng,
    now_ms: u64,
    directory: Directory,
    nodes: Vec<SimNode>,
    links: BTreeSet<(usize, usize)>,
    cut: BTreeSet<(usize, usize)>,
    flight: Vec<Msg>,
    /// Every event a zone acknowledged (committed) by dot, except those
    /// lost with the only data that held them.
    acked: BTreeMap<Dot, SignedEvent>,
    /// Every event ever signed, by dot: a second, different event with one
    /// of these dots breaks invariant 5 (unless the first was lost).
    signed: BTreeMap<Dot, SignedEvent>,
    /// Acknowledged events that no zone's store holds any more.
    lost: BTreeSet<Dot>,
    /// Acknowledged events some zone other than their origin committed.
    left: BTreeSet<Dot>,
    /// The first broken invariant seen during the run (checked as it runs).
    failure: Option<String>,
    forged_sent: usize,
    stats: Stats,
    service_ids: Vec<ServiceId>,
    /// Zones that never write.
    readers: BTreeSet<usize>,
    /// True while the network heals at the end of a round: no more crashes.
    settling: bool,
    _dir: tempfile::TempDir,
}

fn zone(i: usize) -> ZoneId {
    ZoneId::new(format!("z{i}")).expect("zone id")
}

fn link(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(3..=7);
        // Real redb files; on tmpfs where there is one, so that hundreds of
        // seeds' fsyncs cost memory speed (a simulated crash drops the
        // process's handles, it does not pull the power).
        let dir = match std::path::Path::new("/dev/shm") {
            shm if shm.is_dir() => tempfile::tempdir_in(shm),
            _ => tempfile::tempdir(),
        }
        .expect("tempdir");
        let keys: Vec<SigningKey> = (0..n)
            .map(|_| SigningKey::from_bytes(&rng.gen::<[u8; 32]>()))
            .collect();
        let directory =
            Directory::new((0..n).map(|i| (zone(i), keys[i].verifying_key())).collect());
        // A random spanning tree plus a few extra edges: sparse, connected.
        let mut links = BTreeSet::new();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for i in 1..n {
            let parent = order[rng.gen_range(0..i)];
            links.insert(link(order[i], parent));
        }
        for _ in 0..rng.gen_range(0..n) {
            let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
            if a != b {
                links.insert(link(a, b));
            }
        }
        let mut nodes = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let path = dir.path().join(format!("z{i}.redb"));
            nodes.push(SimNode {
                zone: zone(i),
                key,
                path,
                replica: None,
                store: None,
                peer_vv: BTreeMap::new(),
                disk_vv: VersionVector::new(),
                copies: Vec::new(),
                clock_offset_ms: 0,
                buffered: BTreeSet::new(),
            });
        }
        let mut sim = Sim {
            rng,
            now_ms: 1_700_000_000_000,
            directory,
            nodes,
            links,
            cut: BTreeSet::new(),
            flight: Vec::new(),
            acked: BTreeMap::new(),
            signed: BTreeMap::new(),
            lost: BTreeSet::new(),
            left: BTreeSet::new(),
            failure: None,
            forged_sent: 0,
            stats: Stats::default(),
            service_ids: Vec::new(),
            readers: BTreeSet::new(),
            settling: false,
            _dir: dir,
        };
        if sim.rng.gen_bool(0.5) {
            sim.readers.insert(sim.rng.gen_range(0..n));
        }
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    /// Node `i`'s wall clock, which may have jumped.
    fn now(&self, i: usize) -> u64 {
        self.now_ms
            .saturating_add_signed(self.nodes[i].clock_offset_ms)
    }

    fn start(&mut self, i: usize) {
        // State rows are checkpointed every few events, so restarts replay
        // log tails of every length (a node runs the default of thousands).
        let every = self.rng.gen_range(1..24);
        let now = self.now(i);
        let node = &mut self.nodes[i];
        let store = Store::open(&node.path, &node.zone).expect("open store");
        store.set_checkpoint_every(every);
        let mut replica = store
            .load_replica(
                node.zone.clone(),
                Some(node.key.clone()),
                self.directory.clone(),
                now,
            )
            .expect("load");
        // As a node starts: no new dot until a peer reported how far this
        // zone got (writes are refused until then).
        replica.require_rebuild_proof();
        assert_eq!(
            replica.vv(),
            &node.disk_vv,
            "a restart loads the last commit"
        );
        node.replica = Some(replica);
        node.store = Some(store);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].replica = None;
        self.nodes[i].store = None;
        self.nodes[i].buffered.clear();
        self.stats.crashes += 1;
    }

    /// While node `i` is stopped: save a copy of its database, lose it
    /// entirely, or put an older copy back.
    fn disk_fault(&mut self, i: usize) {
        debug_assert!(!self.alive(i));
        let node = &mut self.nodes[i];
        match self.rng.gen_range(0..5) {
            0 | 1 => {
                if !node.path.exists() {
                    return;
                }
                let copy = node
                    .path
                    .with_extension(format!("copy{}", node.copies.len()));
                std::fs::copy(&node.path, &copy).expect("copy");
                node.copies.push((copy, node.disk_vv.clone()));
                self.stats.copies += 1;
            }
            2 => {
                if node.path.exists() {
                    std::fs::remove_file(&node.path).expect("wipe");
                }
                node.disk_vv = VersionVector::new();
                self.stats.wipes += 1;
                self.data_lost();
            }
            _ => {
                if node.copies.is_empty() {
                    return;
                }
                let (copy, vv) = node.copies[self.rng.gen_range(0..node.copies.len())].clone();
                std::fs::copy(&copy, &node.path).expect("restore");
                node.disk_vv = vv;
                self.stats.restores += 1;
                self.data_lost();
            }
        }
    }

    /// After a zone lost data: every acknowledged event no zone's store
    /// holds any more is lost. Nobody can ever hold both it and another
    /// event with its dot, so its dot may be signed again. It is lost from
    /// the network too (what the dead node had queued goes with it), and
    /// copies of databases that hold it are never put back: they would
    /// bring back a dot its zone may have signed again since.
    fn data_lost(&mut self) {
        let gone: Vec<Dot> = self
            .acked
            .keys()
            .filter(|d| !self.nodes.iter().any(|n| n.disk_vv.covers(d)))
            .cloned()
            .collect();
        if gone.is_empty() {
            return;
        }
        for d in &gone {
            self.acked.remove(d);
            self.lost.insert(d.clone());
            self.stats.lost += 1;
            if self.left.contains(d) {
                self.stats.lost_after_leaving += 1;
            }
        }
        self.flight.retain(|m| match &m.payload {
            Payload::Event(ev) => !gone.contains(&ev.dot()),
            Payload::Vv(..) => true,
        });
        for node in &mut self.nodes {
            node.copies.retain(|(path, vv)| {
                let keep = !gone.iter().any(|d| vv.covers(d));
                if !keep {
                    let _ = std::fs::remove_file(path);
                }
                keep
            });
        }
    }

    /// Sometimes a node's clock jumps (an hour or a day, either way) and
    /// later comes back.
    fn clock_jump(&mut self, i: usize) {
        const HOUR_MS: i64 = 3_600_000;
        let jumps = [0, 0, HOUR_MS, -HOUR_MS, 24 * HOUR_MS, -24 * HOUR_MS, 90_000];
        self.nodes[i].clock_offset_ms = jumps[self.rng.gen_range(0..jumps.len())];
        self.stats.clock_jumps += 1;
    }

    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].replica.is_some()
    }

    fn neighbours(&self, i: usize) -> Vec<usize> {
        self.links
            .iter()
            .filter_map(|&(a, b)| {
                if a == i {
                    Some(b)
                } else if b == i {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }

    fn send(&mut self, from: usize, to: usize, payload: Payload) {
        self.flight.push(Msg { from, to, payload });
    }

    /// Commits what a replica just applied and pushes it on to neighbours.
    fn commit_and_push(&mut self, i: usize, events: Vec<SignedEvent>, from: Option<usize>) {
        let node = &mut self.nodes[i];
        let (Some(replica), Some(store)) = (node.replica.as_mut(), node.store.as_ref()) else {
            return;
        };
        store.commit(replica, &events, &[]).expect("commit");
        node.disk_vv = replica.vv().clone();
        let zone = node.zone.clone();
        for ev in &events {
            let dot = ev.dot();
            if ev.event.origin != zone {
                self.left.insert(dot.clone());
            }
            if self.signed.get(&dot) != Some(ev) {
                self.failure.get_or_insert(format!(
                    "{zone} committed {dot}, which its origin signed again since"
                ));
            } else if self.lost.remove(&dot) {
                // Lost with every store that held it, but a peer still had
                // it in memory (waiting for its causal past): it is back.
                self.acked.insert(dot, ev.clone());
                self.stats.lost -= 1;
                self.stats.revived += 1;
            }
        }
        for n in self.neighbours(i) {
            if Some(n) == from {
                continue;
            }
            for ev in &events {
                self.send(i, n, Payload::Event(Box::new(ev.clone())));
            }
        }
    }

    fn random_op(&mut self, i: usize) -> Option<Op> {
        let me = self.nodes[i].zone.clone();
        let n = self.nodes.len();
        let other = zone((i + self.rng.gen_range(1..n)) % n);
        let replica = self.nodes[i].replica.as_ref()?;
        let services: Vec<ServiceId> = replica
            .state()
            .services
            .values()
            .filter(|s| !s.is_deleted())
            .map(|s| s.id.clone())
            .collect();
        let policy = |rng: &mut StdRng, rz: ZoneId| Policy {
            interval_s: rng.gen_range(1..600),
            recovery_zone: rz,
            local_retention: Retention {
                keep_last: rng.gen_range(1..5),
                keep_for_s: 3600,
            },
            remote_retention: Retention {
                keep_last: rng.gen_range(1..5),
                keep_for_s: 3600,
            },
        };
        let slot = |rng: &mut StdRng, active: bool| VmSlot {
            cmp_vm_id: format!("vm-{}", rng.gen_range(0..1000)),
            disks: vec![format!("disk-{}", rng.gen_range(0..1000))],
            active,
        };
        let roll = self.rng.gen_range(0..100);
        if services.is_empty() || roll < 12 {
            // Sometimes two zones pick the same id: a concurrent create.
            let id = if !self.service_ids.is_empty() && self.rng.gen_bool(0.1) {
                self.service_ids[self.rng.gen_range(0..self.service_ids.len())].clone()
            } else {
                let id = ServiceId::new(format!("svc-{}", self.service_ids.len())).ok()?;
                self.service_ids.push(id.clone());
                id
            };
            return Some(Op::CreateService {
                service: id,
                policy: policy(&mut self.rng, other),
                metadata: format!("meta-{}", self.rng.gen::<u16>()),
                slot: slot(&mut self.rng, true),
            });
        }
        let s = services[self.rng.gen_range(0..services.len())].clone();
        let svc = replica.service(&s)?;
        let rps: Vec<RpId> = svc.rps.keys().cloned().collect();
        Some(match roll {
            12..=24 => Op::SetPolicy {
                service: s,
                policy: policy(&mut self.rng, other),
            },
            25..=37 => Op::SetMetadata {
                service: s,
                metadata: format!("meta-{}", self.rng.gen::<u16>()),
            },
            38..=52 => {
                // Failover-style activation here, or deactivation anywhere.
                let z = if self.rng.gen_bool(0.5) {
                    me.clone()
                } else {
                    other
                };
                let active = self.rng.gen_bool(0.5);
                Op::SetSlot {
                    service: s,
                    zone: z,
                    slot: Some(slot(&mut self.rng, active)),
                }
            }
            53..=55 => Op::DeleteService { service: s },
            56..=70 => {
                let seq = replica.vv().get(&me) + 1;
                let rp = RpId::for_origin(&me, &format!("rp{seq}")).ok()?;
                // The rules accept only the engine's own snapshot names and
                // well-formed globalIds (`loc.cluster.serial`).
                let loc: String = me
                    .as_str()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect();
                Op::CreateRp {
                    disks: vec![RpDisk {
                        volume: "disk-1".into(),
                        snapshot: drengine::model::names::rp_snapshot_name(&s, &rp, 0),
                        global_id: format!("{loc}.a.{seq}"),
                    }],
                    service: s,
                    rp,
                    metadata: "m".into(),
                    taken: replica.clock(),
                }
            }
            71..=82 if !rps.is_empty() => Op::SetCopy {
                service: s,
                rp: rps[self.rng.gen_range(0..rps.len())].clone(),
                state: [
                    CopyState::Transferring,
                    CopyState::Complete,
                    CopyState::Deleted,
                    CopyState::Failed {
                        error: "busy".into(),
                    },
                ][self.rng.gen_range(0..4)]
                .clone(),
            },
            83..=84 if !rps.is_empty() => Op::SetHold {
                service: s,
                rp: rps[self.rng.gen_range(0..rps.len())].clone(),
                hold: self.rng.gen_bool(0.5),
            },
            85..=88 => {
                // The origin forgets some of its RPs, racing copy updates
                // and holds from other zones.
                let mine: Vec<RpId> = rps
                    .iter()
                    .filter(|rp| rp.is_owned_by(&me) && self.rng.gen_bool(0.5))
                    .cloned()
                    .collect();
                if mine.is_empty() {
                    return None;
                }
                Op::PurgeRps {
                    service: s,
                    rps: mine,
                }
            }
            89..=91 => Op::Send {
                to: vec![other],
                broadcast: false,
                kind: "cmp.keep-stopped".into(),
                service: Some(s),
                body: "\"stop vm\"".into(),
                ttl_ms: drengine::model::message::DEFAULT_MESSAGE_TTL_MS,
            },
            // A DR action's record: changes no state, takes a dot.
            92..=93 => Op::Record {
                service: s,
                action: ["failover", "revert", "test-failover"][self.rng.gen_range(0..3)].into(),
                rp: rps.first().cloned(),
                summary: "sim".into(),
            },
            _ => {
                // A message to this zone: delivered, then answered; or one
                // this zone sent and had answered: pruned.
                let msgs = &replica.state().messages;
                if let Some(m) = msgs
                    .values()
                    .find(|m| m.is_for(&me) && !m.answers.contains_key(&me))
                {
                    if m.delivered.contains_key(&me) {
                        Op::Answer {
                            message: m.id.clone(),
                            result: "{\"ok\":true}".into(),
                        }
                    } else {
                        Op::Deliver {
                            message: m.id.clone(),
                        }
                    }
                } else {
                    let done: Vec<_> = msgs
                        .values()
                        .filter(|m| m.from == me && m.to.iter().all(|z| m.answers.contains_key(z)))
                        .map(|m| m.id.clone())
                        .take(4)
                        .collect();
                    if done.is_empty() {
                        return None;
                    }
                    Op::PruneMessages { messages: done }
                }
            }
        })
    }

    /// A random command as a client or the engine would send it, decided
    /// against the replica as it is (what the writer does), with what the
    /// rules of `decide` promise checked on the spot: a stale version or a
    /// changed set of sides is refused and writes nothing; a retry of a
    /// create writes nothing; a resolve or deactivation that passes leaves
    /// no conflict on what it named.
    fn command_write(&mut self, i: usize) {
        if !self.alive(i) || self.readers.contains(&i) {
            return;
        }
        self.now_ms += self.rng.gen_range(0..50);
        let me = self.nodes[i].zone.clone();
        let Some(replica) = self.nodes[i].replica.as_ref() else {
            return;
        };
        let services: Vec<drengine::replica::Service> = replica
            .state()
            .services
            .values()
            .filter(|s| !s.is_deleted())
            .cloned()
            .collect();
        let Some(s) = services.choose(&mut self.rng).cloned() else {
            return;
        };
        let version = version_token(&s);
        let stale = self.rng.gen_bool(0.3);
        // What the command must come to, when it is sure.
        enum Want {
            Refused,
            Settled(ConflictKind),
            Inactive(ZoneId),
            Nothing,
            Any,
        }
        let (cmd, want) = match self.rng.gen_range(0..5) {
            0 => {
                // A create retried: the same fields answer the service as it
                // is; other fields are another request for the id.
                let (Some(policy), Some(metadata), Some(slot)) =
                    (s.policy.get(), s.metadata.get(), s.slot(&me))
                else {
                    return;
                };
                let same = !stale;
                let metadata = if same {
                    metadata.clone()
                } else {
                    format!("{metadata}-other")
                };
                let want = if same && !s.policy.is_conflict() && !s.metadata.is_conflict() {
                    Want::Nothing
                } else if same {
                    Want::Any
                } else {
                    Want::Refused
                };
                (
                    Command::Protect {
                        service: s.id.clone(),
                        policy: policy.clone(),
                        metadata,
                        slot: slot.clone(),
                        fingerprint: Vec::new(),
                    },
                    want,
                )
            }
            1 => (
                // An edit with If-Match: a version read before another
                // write is stale.
                Command::Edit {
                    service: s.id.clone(),
                    expect: Expect::OneOf(vec![if stale { "0000".into() } else { version }]),
                    policy: None,
                    metadata: Some(format!("edit-{}", self.rng.gen::<u16>())),
                    slot: None,
                },
                if stale { Want::Refused } else { Want::Any },
            ),
            2 => {
                let zones: Vec<ZoneId> = s.slots.keys().cloned().collect();
                let Some(z) = zones.choose(&mut self.rng).cloned() else {
                    return;
                };
                let has_vm = s.slots[&z].values().iter().any(|v| v.value.is_some());
                (
                    Command::Deactivate {
                        service: s.id.clone(),
                        zone: z.clone(),
                    },
                    if has_vm { Want::Inactive(z) } else { Want::Any },
                )
            }
            _ => {
                let conflicts = service_conflicts(&s);
                let Some(c) = conflicts.choose(&mut self.rng).cloned() else {
                    return;
                };
                let mut seen: Vec<Dot> = c.sides.iter().map(|x| x.dot.clone()).collect();
                if stale {
                    seen.pop();
                }
                let side = c.sides.choose(&mut self.rng).cloned();
                let Some(side) = side else { return };
                let choice = match &c.kind {
                    ConflictKind::ActiveVms => Choice::KeepZone(side.zone.clone()),
                    ConflictKind::ConcurrentWrite { .. } => Choice::Side(side.dot.clone()),
                };
                let deleted = matches!(
                    &c.kind,
                    ConflictKind::ConcurrentWrite {
                        field: drengine::replica::ConflictField::Deleted
                    }
                );
                let want = if stale {
                    Want::Refused
                } else if deleted {
                    Want::Any
                } else {
                    Want::Settled(c.kind.clone())
                };
                (
                    Command::Resolve {
                        service: s.id.clone(),
                        target: c.kind.target(),
                        choice,
                        seen: Some(seen),
                    },
                    want,
                )
            }
        };
        self.stats.commands += 1;
        let now = self.now(i);
        let replica = self.nodes[i].replica.as_mut().expect("alive");
        if replica.check_can_sign().is_err() {
            self.stats.rebuilding += 1;
            return;
        }
        let decided = decide(replica, &cmd, &|_| None);
        let decision = match (decided, &want) {
            (Err(_), Want::Refused) => {
                self.stats.commands_refused += 1;
                return;
            }
            (Ok(d), Want::Refused) => {
                return self.fail(format!("{me}: {cmd:?} must be refused, got {d:?}"));
            }
            // The side chosen may no longer be a valid value (a policy
            // whose recovery zone now runs the VM): refused by the checks.
            (Err(WriteError::Invalid(_)), Want::Settled(_)) => {
                self.stats.commands_refused += 1;
                return;
            }
            (Err(e), Want::Settled(_) | Want::Inactive(_) | Want::Nothing) => {
                return self.fail(format!("{me}: {cmd:?} refused: {e}"));
            }
            (Err(_), Want::Any) => {
                self.stats.commands_refused += 1;
                return;
            }
            (Ok(d), _) => d,
        };
        if matches!(want, Want::Nothing)
            && !(decision.ops.is_empty() && decision.outcome == Outcome::Existing)
        {
            return self.fail(format!("{me}: a create retry wrote {decision:?}"));
        }
        let mut events = Vec::new();
        for op in decision.ops {
            match replica.local_write(op, "sim-cmd", now) {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    return self.fail(format!("{me}: {cmd:?}: a decided op was refused: {e}"))
                }
            }
        }
        let after = replica.service(&s.id).cloned();
        match (&want, after) {
            (Want::Settled(kind), Some(after))
                if service_conflicts(&after).iter().any(|c| &c.kind == kind) =>
            {
                return self.fail(format!("{me}: {cmd:?} left its conflict"));
            }
            (Want::Inactive(z), Some(after)) => {
                let values = after
                    .slots
                    .get(z)
                    .map(|m| m.values().to_vec())
                    .unwrap_or_default();
                if values.len() > 1
                    || values
                        .iter()
                        .any(|v| v.value.as_ref().is_some_and(|x| x.active))
                {
                    return self.fail(format!("{me}: {cmd:?} left {values:?}"));
                }
            }
            _ => {}
        }
        for ev in &events {
            self.stats.writes += 1;
            let dot = ev.dot();
            if self.signed.get(&dot).is_some_and(|first| first != ev) && !self.lost.remove(&dot) {
                return self.fail(format!("{me} signed {dot} twice (command)"));
            }
            self.signed.insert(dot.clone(), ev.clone());
            self.acked.insert(dot, ev.clone());
        }
        if !events.is_empty() {
            self.commit_and_push(i, events, None);
        }
    }

    fn local_write(&mut self, i: usize) {
        if !self.alive(i) || self.readers.contains(&i) {
            return;
        }
        self.now_ms += self.rng.gen_range(0..50);
        let Some(op) = self.random_op(i) else { return };
        let now = self.now(i);
        let replica = self.nodes[i].replica.as_mut().expect("alive");
        let ev = match replica.local_write(op, "sim", now) {
            Ok(ev) => ev,
            Err(WriteError::Rebuilding { .. }) => {
                self.stats.rebuilding += 1;
                return;
            }
            // Refused writes change nothing; that is checked by the digest.
            Err(_) => return,
        };
        self.stats.writes += 1;
        if matches!(ev.event.op, Op::PurgeRps { .. }) {
            self.stats.purges += 1;
        }
        // 5. No dot is signed twice (a lost event's may be: nobody has it).
        let dot = ev.dot();
        match self.signed.get(&dot) {
            Some(first) if first != &ev => {
                if self.lost.remove(&dot) {
                    self.stats.resigned += 1;
                } else {
                    let held: Vec<String> = self
                        .nodes
                        .iter()
                        .filter(|n| n.disk_vv.covers(&dot))
                        .map(|n| n.zone.to_string())
                        .collect();
                    self.fail(format!(
                        "{} signed {dot} twice (the first is held by {held:?})",
                        self.nodes[i].zone
                    ));
                }
            }
            _ => {}
        }
        self.signed.insert(dot, ev.clone());
        self.acked.insert(ev.dot(), ev.clone());
        self.commit_and_push(i, vec![ev], None);
    }

    fn deliver(&mut self, idx: usize) {
        let msg = if self.rng.gen_bool(0.1) {
            // Duplicate: deliver a copy, leave the original in flight.
            let m = &self.flight[idx];
            Msg {
                from: m.from,
                to: m.to,
                payload: match &m.payload {
                    Payload::Event(e) => Payload::Event(e.clone()),
                    Payload::Vv(v, k) => Payload::Vv(v.clone(), k.clone()),
                },
            }
        } else {
            self.flight.swap_remove(idx)
        };
        if self.cut.contains(&link(msg.from, msg.to)) || !self.alive(msg.to) {
            return;
        }
        if self.rng.gen_bool(0.05) {
            return; // lost
        }
        let to = msg.to;
        match msg.payload {
            Payload::Event(ev) => self.receive(to, *ev, Some(msg.from)),
            Payload::Vv(theirs, known) => self.answer_vv(to, msg.from, theirs, known),
        }
    }

    fn receive(&mut self, i: usize, ev: SignedEvent, from: Option<usize>) {
        let now = self.now(i);
        let dot = ev.dot();
        let replica = self.nodes[i].replica.as_mut().expect("alive");
        match replica.receive(ev, now) {
            Received::Applied(applied) => {
                let events = applied.into_iter().map(|a| a.event).collect();
                self.commit_and_push(i, events, from);
            }
            Received::Refused(_) => self.stats.refused += 1,
            Received::Buffered => {
                self.nodes[i].buffered.insert(dot);
            }
            _ => {}
        }
    }

    /// Anti-entropy: `i` got `j`'s version vector; it sends what `j` lacks
    /// (a snapshot first if `j` is behind `i`'s compacted log) and its own
    /// vector back so `j` can do the same.
    fn answer_vv(
        &mut self,
        i: usize,
        j: usize,
        theirs: VersionVector,
        known: BTreeMap<ZoneId, VersionVector>,
    ) {
        let zj = self.nodes[j].zone.clone();
        if !self.alive(i) {
            return;
        }
        self.nodes[i].peer_vv.insert(zj.clone(), theirs.clone());
        let node = &mut self.nodes[i];
        let (Some(replica), Some(store)) = (node.replica.as_mut(), node.store.as_ref()) else {
            return;
        };
        replica.peer_report(&zj, &theirs, &known);
        let ours = replica.vv().clone();
        let our_known = replica.known();
        if store.needs_snapshot(&theirs).expect("floor") {
            let snap = store.export_snapshot(replica).expect("export");
            // Delivered directly (the sync layer sends it as one message).
            if self.alive(j) && !self.cut.contains(&link(i, j)) {
                self.import(j, snap);
            }
            return;
        }
        let batch = store
            .events_missing(&theirs, &ours, 64, 1 << 20)
            .expect("events_missing");
        for ev in batch.events {
            self.send(i, j, Payload::Event(Box::new(ev)));
        }
        if ours.missing_from(&theirs) > 0 && self.rng.gen_bool(0.5) {
            self.send(i, j, Payload::Vv(ours, our_known));
        }
    }

    fn import(&mut self, j: usize, snap: Snapshot) {
        let now = self.now(j);
        let node = &mut self.nodes[j];
        let (Some(replica), Some(store)) = (node.replica.as_mut(), node.store.as_ref()) else {
            return;
        };
        let own = store.live_events(replica).expect("live events");
        if let Ok(applied) = replica.import_snapshot(&snap, &own, now) {
            let events: Vec<SignedEvent> = applied.into_iter().map(|a| a.event).collect();
            store
                .replace_state(replica, &snap, &own, &events)
                .expect("replace");
            node.disk_vv = replica.vv().clone();
            let zone = node.zone.clone();
            for d in snap.events.iter().chain(&snap.heads).chain(&events) {
                if d.event.origin != zone {
                    self.left.insert(d.dot());
                }
            }
            self.stats.snapshots += 1;
            // A crash right after the import: what it applied is on disk.
            if !self.settling && self.rng.gen_bool(0.1) {
                self.crash(j);
                return;
            }
            // Logged already; committed again (the same rows) and pushed on.
            self.commit_and_push(j, events, None);
        }
    }

    fn anti_entropy(&mut self, a: usize, b: usize) {
        if !self.alive(a) {
            return;
        }
        let r = self.nodes[a].replica.as_ref().expect("alive");
        let (vv, known) = (r.vv().clone(), r.known());
        self.send(a, b, Payload::Vv(vv, known));
    }

    /// Compacts, after a checkpoint half of the time (the node always takes
    /// one first; without it compaction must stop at the last checkpoint).
    fn compact(&mut self, i: usize) {
        let checkpoint = self.rng.gen_bool(0.5);
        let node = &mut self.nodes[i];
        if let (Some(r), Some(s)) = (node.replica.as_mut(), node.store.as_ref()) {
            if checkpoint {
                s.checkpoint(r).expect("checkpoint");
            }
            let (mut keep, heads) = r.snapshot_dots();
            keep.extend(heads);
            self.stats.compacted += s.compact(&r.stable_vv(), &keep).expect("compact");
        }
    }

    /// A forged event (bad signature or altered content) or a replay of an
    /// honest one with a changed payload, injected into a random node.
    fn inject_forgery(&mut self, i: usize) {
        if !self.alive(i) || self.acked.is_empty() {
            return;
        }
        let dots: Vec<&Dot> = self.acked.keys().collect();
        let dot = dots[self.rng.gen_range(0..dots.len())].clone();
        let mut ev = self.acked[&dot].clone();
        match self.rng.gen_range(0..3) {
            0 => {
                // Altered after signing.
                ev.event.actor = FORGER.into();
            }
            1 => {
                // Signed by the wrong key, claiming the next seq of its origin.
                let origin = ev.event.origin.clone();
                ev.event.actor = FORGER.into();
                ev.event.seq = self.nodes[i]
                    .replica
                    .as_ref()
                    .expect("alive")
                    .vv()
                    .get(&origin)
                    + 1;
                ev.event.deps.set(origin, ev.event.seq - 1);
                let wrong = SigningKey::from_bytes(&self.rng.gen::<[u8; 32]>());
                ev = ev.event.sign(&wrong);
            }
            _ => {
                // A replay: the honest event again, unchanged.
            }
        }
        self.forged_sent += 1;
        self.receive(i, ev, None);
    }

    /// A hostile peer's snapshot: a genuine export of `src`, tampered, fed
    /// to `dst`. It must not prove itself, and `dst` must refuse it whole.
    fn inject_forged_snapshot(&mut self, src: usize, dst: usize) {
        if !self.alive(src) || !self.alive(dst) {
            return;
        }
        let node = &self.nodes[src];
        let (Some(replica), Some(store)) = (node.replica.as_ref(), node.store.as_ref()) else {
            return;
        };
        let snap = store.export_snapshot(replica).expect("export");
        let mut bad = snap.clone();
        let zones: Vec<ZoneId> = self.directory.zones().cloned().collect();
        let what = match self.rng.gen_range(0..4) {
            0 => {
                let z = zones[self.rng.gen_range(0..zones.len())].clone();
                bad.vv.set(z, u64::MAX);
                "a vector entry raised without a head"
            }
            1 => {
                let total = bad.events.len() + bad.heads.len();
                if total == 0 {
                    return;
                }
                let k = self.rng.gen_range(0..total);
                let ev = if k < bad.events.len() {
                    &mut bad.events[k]
                } else {
                    &mut bad.heads[k - bad.events.len()]
                };
                let signers: Vec<usize> = (0..self.nodes.len())
                    .filter(|&z| self.nodes[z].zone != ev.event.origin)
                    .collect();
                let signer = signers[self.rng.gen_range(0..signers.len())];
                *ev = ev.event.clone().sign(&self.nodes[signer].key);
                "an event signed by another zone's key"
            }
            2 => {
                if bad.heads.is_empty() {
                    return;
                }
                bad.heads.remove(self.rng.gen_range(0..bad.heads.len()));
                "a head dropped"
            }
            _ => {
                let carried: BTreeSet<Dot> = bad.events.iter().map(|e| e.dot()).collect();
                let superseded: Vec<&SignedEvent> = self
                    .acked
                    .values()
                    .filter(|e| bad.vv.covers(&e.dot()) && !carried.contains(&e.dot()))
                    .collect();
                if superseded.is_empty() {
                    return;
                }
                let ev = superseded[self.rng.gen_range(0..superseded.len())].clone();
                bad.events.push(ev);
                "a superseded event added"
            }
        };
        if bad == snap {
            return;
        }
        if bad.verify(&self.directory).is_ok() {
            // A purge leaves no live event, so the creation of an RP its
            // origin purged, added back, proves itself.
            let purged = what == "a superseded event added"
                && bad.events.last().is_some_and(|e| match &e.event.op {
                    Op::CreateRp { service, rp, .. } => !replica
                        .service(service)
                        .is_some_and(|s| s.rps.contains_key(rp)),
                    _ => false,
                });
            if purged {
                self.purged_rp_merged(dst, &snap, &bad);
                return;
            }
            let extra = bad.events.last().map(|e| format!("{:?}", e.event));
            self.fail(format!(
                "a snapshot with {what} proves itself: {extra:?}, vv {:?}",
                bad.vv
            ));
            return;
        }
        let now = self.now(dst);
        let node = &mut self.nodes[dst];
        let (Some(replica), Some(store)) = (node.replica.as_mut(), node.store.as_ref()) else {
            return;
        };
        let own = store.live_events(replica).expect("live events");
        let before = replica.digest();
        let dominating = snap.vv.dominates(replica.vv());
        if replica.import_snapshot(&bad, &own, now).is_ok() {
            self.fail(format!("z{dst} imported a snapshot with {what}"));
            return;
        }
        if replica.digest() != before {
            self.fail(format!("a refused snapshot with {what} changed z{dst}"));
            return;
        }
        self.stats.forged_snapshots += 1;
        if dominating {
            self.stats.forged_snapshots_dominating += 1;
        }
    }

    /// `bad` is the honest export `snap` with the creation of an RP its
    /// origin purged added back. A receiver that saw the purge (its vector
    /// covers the creation, which it no longer holds) merges it to exactly
    /// what it merges the honest export to: the RP stays purged. One that
    /// did not see it cannot tell it from an RP never purged: counted.
    fn purged_rp_merged(&mut self, dst: usize, snap: &Snapshot, bad: &Snapshot) {
        let node = &self.nodes[dst];
        let (Some(replica), Some(store)) = (node.replica.as_ref(), node.store.as_ref()) else {
            return;
        };
        let creation = bad.events.last().expect("the added creation").dot();
        let own = store.live_events(replica).expect("live events");
        let saw_purge = replica.vv().covers(&creation) && !own.iter().any(|e| e.dot() == creation);
        if !saw_purge {
            self.stats.purged_rp_resurrected += 1;
            return;
        }
        let merged = |s: &Snapshot| merge(&self.directory, replica.zone(), replica.vv(), &own, s);
        if merged(bad) != merged(snap) {
            let why = format!(
                "z{dst} saw {creation} purged, but a snapshot carrying it back brings it back"
            );
            self.fail(why);
            return;
        }
        self.stats.purged_rp_kept_purged += 1;
    }

    fn step(&mut self) {
        let n = self.nodes.len();
        let roll = self.rng.gen_range(0..102);
        match roll {
            0..=29 => {
                let i = self.rng.gen_range(0..n);
                if self.rng.gen_bool(0.3) {
                    self.command_write(i);
                } else {
                    self.local_write(i);
                }
            }
            30..=74 if !self.flight.is_empty() => {
                // Reordering: any message in flight may go next.
                let idx = self.rng.gen_range(0..self.flight.len());
                self.deliver(idx);
            }
            75..=84 => {
                let links: Vec<_> = self.links.iter().copied().collect();
                let (a, b) = links[self.rng.gen_range(0..links.len())];
                if self.rng.gen_bool(0.5) {
                    self.anti_entropy(a, b)
                } else {
                    self.anti_entropy(b, a)
                }
            }
            85..=88 => {
                let links: Vec<_> = self.links.iter().copied().collect();
                let l = links[self.rng.gen_range(0..links.len())];
                if !self.cut.remove(&l) {
                    self.cut.insert(l);
                }
            }
            89..=92 => {
                let i = self.rng.gen_range(0..n);
                if self.alive(i) {
                    self.crash(i);
                    if self.rng.gen_bool(0.3) {
                        self.disk_fault(i);
                    }
                } else if self.rng.gen_bool(0.5) {
                    // Stopped: a copy of its database is saved, or it is
                    // lost, or an older copy is put back.
                    self.disk_fault(i);
                } else {
                    self.start(i);
                }
            }
            93..=94 => {
                let i = self.rng.gen_range(0..n);
                self.inject_forgery(i);
            }
            95..=99 => {
                let i = self.rng.gen_range(0..n);
                self.compact(i);
            }
            100 => {
                let i = self.rng.gen_range(0..n);
                self.clock_jump(i);
            }
            _ => {
                let (src, dst) = (self.rng.gen_range(0..n), self.rng.gen_range(0..n));
                if src != dst {
                    self.inject_forged_snapshot(src, dst);
                }
            }
        }
    }

    /// Heals everything and runs anti-entropy until nothing moves.
    fn settle(&mut self) {
        self.settling = true;
        self.cut.clear();
        for i in 0..self.nodes.len() {
            if !self.alive(i) {
                self.start(i);
            }
        }
        for _round in 0..200 {
            while !self.flight.is_empty() {
                let idx = self.flight.len() - 1;
                let msg = self.flight.swap_remove(idx);
                match msg.payload {
                    Payload::Event(ev) => self.receive(msg.to, *ev, Some(msg.from)),
                    Payload::Vv(v, k) => self.answer_vv(msg.to, msg.from, v, k),
                }
            }
            let before: Vec<VersionVector> = self.vvs();
            let links: Vec<_> = self.links.iter().copied().collect();
            for (a, b) in links {
                self.anti_entropy(a, b);
                self.anti_entropy(b, a);
            }
            if self
                .flight
                .iter()
                .all(|m| matches!(m.payload, Payload::Vv(..)))
            {
                // Only vectors in flight: deliver them; if nobody sends events, done.
                for msg in std::mem::take(&mut self.flight) {
                    if let Payload::Vv(v, k) = msg.payload {
                        self.answer_vv(msg.to, msg.from, v, k);
                    }
                }
                if self.flight.is_empty() && before == self.vvs() && self.all_equal_vv() {
                    return;
                }
            }
        }
    }

    fn vvs(&self) -> Vec<VersionVector> {
        self.nodes
            .iter()
            .map(|n| n.replica.as_ref().expect("alive").vv().clone())
            .collect()
    }

    fn all_equal_vv(&self) -> bool {
        let v = self.vvs();
        v.windows(2).all(|w| w[0] == w[1])
    }
}

fn run(seed: u64) -> Result<Stats, String> {
    let mut sim = Sim::new(seed);
    // Two rounds of faults; between them a full sync and compaction, so
    // that the second round meets compacted logs (and a wiped or restored
    // zone is rebuilt from a snapshot).
    for _round in 0..2 {
        let steps = sim.rng.gen_range(75..200);
        for _ in 0..steps {
            sim.step();
            // 4 (snapshots) and 5 are checked as the run goes.
            if let Some(e) = sim.failure.take() {
                return Err(e);
            }
        }
        sim.settle();
        sim.settling = false;
        for i in 0..sim.nodes.len() {
            sim.compact(i);
        }
    }
    sim.stats.stuck += sim
        .nodes
        .iter()
        .filter(|n| !n.replica.as_ref().expect("alive").can_sign())
        .count() as u64;

    // 1. Convergence.
    let digests: Vec<String> = sim
        .nodes
        .iter()
        .map(|n| n.replica.as_ref().expect("alive").digest())
        .collect();
    if digests.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("digests differ: {digests:?}; vvs {:?}", sim.vvs()));
    }
    // ... and equal to a reference replica fed every honest event in a
    // shuffled order (it buffers until causal order allows).
    let mut reference = Replica::new(zone(99), None, sim.directory.clone());
    let mut all: Vec<SignedEvent> = sim.acked.values().cloned().collect();
    all.shuffle(&mut sim.rng);
    for ev in all {
        reference.receive(ev, sim.now_ms);
    }
    if reference.digest() != digests[0] {
        return Err(format!(
            "reference replica differs: pending {}, vv {:?} vs {:?}",
            reference.pending_len(),
            reference.vv(),
            sim.vvs()[0]
        ));
    }
    // A state restored from disk equals the one in memory.
    for i in 0..sim.nodes.len() {
        let before = sim.nodes[i].replica.as_ref().expect("alive").digest();
        sim.crash(i);
        sim.start(i);
        let after = sim.nodes[i].replica.as_ref().expect("alive").digest();
        if before != after {
            return Err(format!("zone {i}: state after restart differs"));
        }
    }

    // 2. No acknowledged write lost (but those lost with the only data
    // that held them, which `acked` no longer lists).
    for node in &sim.nodes {
        let vv = node.replica.as_ref().expect("alive").vv();
        if let Some(dot) = sim.acked.keys().find(|d| !vv.covers(d)) {
            return Err(format!(
                "{} lacks acknowledged event {dot} (it had left its zone: {})",
                node.zone,
                sim.left.contains(dot)
            ));
        }
        // Every acknowledged event is covered, and nothing more.
        let total: u128 = vv.total();
        if total != sim.acked.len() as u128 {
            return Err(format!(
                "{} counts {total} events, {} were acknowledged",
                node.zone,
                sim.acked.len()
            ));
        }
    }

    // 3. Every conflict listed identically everywhere, with every side.
    let lists: Vec<String> = sim
        .nodes
        .iter()
        .map(|n| {
            serde_json::to_string(&n.replica.as_ref().expect("alive").conflicts()).expect("json")
        })
        .collect();
    if lists.windows(2).any(|w| w[0] != w[1]) {
        return Err("conflict lists differ".into());
    }
    let r = sim.nodes[0].replica.as_ref().expect("alive");
    sim.stats.conflicts += r.conflicts().len() as u64;
    for c in r.conflicts() {
        if c.sides.len() < 2 {
            return Err(format!("conflict with fewer than two sides: {c:?}"));
        }
    }
    for s in r.state().services.values() {
        let active = s.active_zones().len();
        let listed = r
            .conflicts()
            .iter()
            .any(|c| c.service == s.id && c.kind == drengine::replica::ConflictKind::ActiveVms);
        if (active > 1 && !s.is_deleted()) != listed {
            return Err(format!(
                "service {}: {active} active zones, listed {listed}",
                s.id
            ));
        }
    }

    // 4. No forged or replayed event changed anything: no stored event or
    // state value carries the forger's mark, and every stored event is the
    // honest one with its dot.
    for node in &sim.nodes {
        let store = node.store.as_ref().expect("alive");
        for z in sim.directory.zones() {
            for ev in store.events_of(z, 0, usize::MAX).expect("log") {
                if sim.acked.get(&ev.dot()) != Some(&ev) {
                    return Err(format!("{} stores a foreign event {}", node.zone, ev.dot()));
                }
            }
        }
        let state =
            serde_json::to_string(node.replica.as_ref().expect("alive").state()).expect("json");
        if state.contains(FORGER) {
            return Err(format!("{} applied a forged event", node.zone));
        }
    }
    Ok(sim.stats)
}

fn seed_range() -> std::ops::Range<u64> {
    let spec = std::env::var("DRENGINE_SIM_SEEDS").unwrap_or_else(|_| "0..40".into());
    let (a, b) = spec
        .split_once("..")
        .unwrap_or_else(|| panic!("DRENGINE_SIM_SEEDS must be START..END, got {spec:?}"));
    let a: u64 = a.trim().parse().expect("DRENGINE_SIM_SEEDS start");
    let b: u64 = b.trim().parse().expect("DRENGINE_SIM_SEEDS end");
    a..b
}

#[test]
fn simulation_converges_under_faults() {
    let range = seed_range();
    let extra: Vec<u64> = REGRESSION_SEEDS
        .iter()
        .copied()
        .filter(|s| !range.contains(s))
        .collect();
    let count = range.end.saturating_sub(range.start) + extra.len() as u64;
    let mut failures = Vec::new();
    let mut total = Stats::default();
    for seed in range.clone().chain(extra.iter().copied()) {
        let result = std::panic::catch_unwind(|| run(seed))
            .unwrap_or_else(|p| Err(format!("panicked: {:?}", p.downcast_ref::<String>())));
        if let Ok(stats) = result {
            total += stats;
        }
        if let Err(e) = result {
            eprintln!(
                "seed {seed} FAILED: {e}\n  replay: DRENGINE_SIM_SEEDS={seed}..{}",
                seed + 1
            );
            failures.push(seed);
        }
    }
    eprintln!(
        "simulation: {count} seeds ({range:?} and regression seeds {extra:?}), {} failed; {total:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    if count >= 20 {
        assert!(
            total.commands > 0 && total.commands_refused > 0,
            "the run decided no commands, or refused none: {total:?}"
        );
    }
}
