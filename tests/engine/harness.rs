//! Test bench for the DR engine: a StorPool emulator in-process (one cluster
//! per zone, each the others' remote location), one redb-backed `Db` and one
//! `Engine` per zone, and a relay that carries events between zones' Dbs
//! directly (a zone is "stopped" by not relaying to or from it). Waits are
//! conditions with deadlines, never bare sleeps.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use crate::support::{now_ms, quick_engine, wait_for, wait_until, Deployment};
use drengine::emulator::EmulatorConfig;
use drengine::engine::{naming, Clock, Engine};
use drengine::model::{CopyState, Policy, Retention, RpId, ServiceId, VmSlot, ZoneId};
use drengine::node::config::{Config, EngineConfig};
use drengine::replica::{Op, Service};
use drengine::store::Db;
use drengine::storpool::{SnapshotInfo, StorPoolClient, VolumeCreate, VolumeInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const TOKEN: &str = crate::support::SP_TOKEN;
pub const MIB: u64 = 1024 * 1024;
/// How long [`Net::settle`] relays and steps engines before it gives up.
pub const SETTLE_WAIT: Duration = Duration::from_secs(30);

pub fn z(s: &str) -> ZoneId {
    ZoneId::new(s).unwrap()
}

pub fn svc(s: &str) -> ServiceId {
    ServiceId::new(s).unwrap()
}

/// A service id whose first scheduled RP (interval `interval_s`) is at least
/// ten minutes away, so that a test counting RPs meets only its own.
pub fn quiet_service(prefix: &str, interval_s: u64) -> ServiceId {
    let now = now_ms();
    (0..)
        .map(|i| svc(&format!("{prefix}{i}")))
        .find(|id| {
            drengine::engine::schedule::next_due_ms(id, interval_s, None, now, now) > now + 600_000
        })
        .unwrap()
}

/// A wall clock a test can move: the system clock plus an offset.
#[derive(Clone, Default)]
pub struct SkewedClock {
    offset_ms: Arc<AtomicI64>,
}

impl SkewedClock {
    /// Moves the clock to `offset_ms` from true time (0: right again).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    pub fn now_ms(&self) -> u64 {
        now_ms().saturating_add_signed(self.offset_ms.load(Ordering::SeqCst))
    }

    /// The engine clock that reads this one.
    pub fn clock(&self) -> Clock {
        let c = self.clone();
        Clock::from_fn(move || c.now_ms())
    }
}

/// One zone: its durable replica and its engine.
pub struct Node {
    pub zone: ZoneId,
    pub db: Db,
    pub engine: Engine,
}

pub struct Net {
    /// The zones, their keys and files, and the emulator.
    pub dep: Deployment,
    pub zones: Vec<ZoneId>,
    pub engine_cfg: EngineConfig,
    /// Zones whose engines read a clock of the test's instead of the
    /// system's (takes effect when the zone is opened or started).
    pub clocks: BTreeMap<ZoneId, Clock>,
    /// Retries of transient errors by the engines' StorPool clients (the
    /// engine backs off and retries on its own as well).
    pub engine_client_retries: u32,
    pub nodes: BTreeMap<ZoneId, Node>,
}

impl Net {
    /// Zones `names`, an emulator cluster for each (tweaked by `emu`), and
    /// a node per zone.
    pub async fn new(names: &[&str], emu: impl FnOnce(&mut EmulatorConfig)) -> Net {
        let dep = Deployment::with_emulator(names, emu).await;
        let zones = dep.zones();
        let mut net = Net {
            dep,
            zones: zones.clone(),
            engine_cfg: quick_engine(),
            clocks: BTreeMap::new(),
            engine_client_retries: 5,
            nodes: BTreeMap::new(),
        };
        for zone in &zones {
            net.open(zone).await;
        }
        net
    }

    pub fn config(&self, zone: &ZoneId) -> Config {
        let mut cfg = self.dep.config(zone.as_str());
        cfg.engine = EngineConfig {
            clock: self.clocks.get(zone).cloned().unwrap_or_default(),
            ..self.engine_cfg.clone()
        };
        cfg
    }

    /// A StorPool client of `zone`'s cluster that retries quickly.
    pub fn sp(&self, zone: &ZoneId) -> StorPoolClient {
        self.sp_with_retries(zone, 5)
    }

    fn sp_with_retries(&self, zone: &ZoneId, max_retries: u32) -> StorPoolClient {
        let mut cfg = self.dep.emulator().storpool_config(zone.as_str()).unwrap();
        cfg.backoff_initial_ms = 1;
        cfg.backoff_max_ms = 20;
        cfg.timeout_ms = 5_000;
        cfg.max_retries = max_retries;
        StorPoolClient::new(cfg).unwrap()
    }

    fn engine_sp(&self, zone: &ZoneId) -> StorPoolClient {
        self.sp_with_retries(zone, self.engine_client_retries)
    }

    /// Opens (or reopens, waiting for the old handle to let go of the file)
    /// the zone's redb database and a fresh engine over it.
    pub async fn open(&mut self, zone: &ZoneId) {
        self.nodes.remove(zone);
        let config = self.config(zone);
        let db = self.dep.open_db(&config).await;
        // These tests step zones one at a time, with no peer to confirm them.
        db.override_rebuild("test");
        let engine = Engine::open(db.clone(), self.engine_sp(zone), config.engine_setup()).unwrap();
        self.nodes.insert(
            zone.clone(),
            Node {
                zone: zone.clone(),
                db,
                engine,
            },
        );
    }

    /// Starts the background reconciler of `zone` (replacing the stepped engine).
    pub fn start(&mut self, zone: &ZoneId) {
        let config = self.config(zone);
        let sp = self.engine_sp(zone);
        let node = self.nodes.get_mut(zone).unwrap();
        node.engine = Engine::start(node.db.clone(), sp, config.engine_setup()).unwrap();
    }

    pub fn node(&self, zone: &ZoneId) -> &Node {
        &self.nodes[zone]
    }

    pub fn engine(&self, zone: &str) -> &Engine {
        &self.nodes[&z(zone)].engine
    }

    pub fn db(&self, zone: &str) -> &Db {
        &self.nodes[&z(zone)].db
    }

    pub fn service(&self, zone: &str, id: &ServiceId) -> Service {
        self.db(zone).read(|r| r.service(id).cloned()).unwrap()
    }

    /// Carries every event `from` has and `to` lacks, in causal order.
    pub async fn relay(&self, from: &ZoneId, to: &ZoneId) {
        let (a, b) = (&self.nodes[from].db, &self.nodes[to].db);
        loop {
            let theirs = b.read(|r| r.vv().clone());
            let ours = a.read(|r| r.vv().clone());
            let batch = a
                .store()
                .events_missing(&theirs, &ours, 256, 4 * MIB as usize)
                .unwrap();
            if batch.events.is_empty() {
                return;
            }
            let more = batch.more;
            b.ingest(batch.events, Some(from.clone())).await.unwrap();
            if !more {
                return;
            }
        }
    }

    /// Relays between every pair of `zones` until they hold the same events.
    pub async fn sync(&self, zones: &[&str]) {
        for _ in 0..4 {
            for a in zones {
                for b in zones {
                    if a != b {
                        self.relay(&z(a), &z(b)).await;
                    }
                }
            }
        }
    }

    /// Relays among `zones` and steps their engines until `cond` holds.
    pub async fn settle(&self, what: &str, zones: &[&str], cond: impl Fn(&Net) -> bool) {
        wait_until(what, SETTLE_WAIT, || async {
            self.sync(zones).await;
            if cond(self) {
                return true;
            }
            for zone in zones {
                // A failing pass backs the service off; the loop tries again.
                let _ = self.engine(zone).reconcile_once().await;
            }
            false
        })
        .await;
    }

    /// Creates volumes in `zone`'s cluster.
    pub async fn volumes(&self, zone: &str, names: &[&str]) {
        let c = self.sp(&z(zone));
        for n in names {
            c.volume_create(&VolumeCreate {
                name: Some(n.to_string()),
                size: Some(MIB),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    }

    /// Protects a VM with `disks` in `zone`, replicating to `recovery`.
    pub async fn protect(
        &self,
        zone: &str,
        id: &ServiceId,
        disks: &[&str],
        recovery: &str,
        interval_s: u64,
        keep_last: u32,
    ) {
        let keep = Retention {
            keep_last,
            keep_for_s: 0,
        };
        self.protect_keeping(zone, id, disks, recovery, interval_s, keep)
            .await;
    }

    /// [`Net::protect`] with `keep` as the retention in both zones.
    pub async fn protect_keeping(
        &self,
        zone: &str,
        id: &ServiceId,
        disks: &[&str],
        recovery: &str,
        interval_s: u64,
        keep: Retention,
    ) {
        self.volumes(zone, disks).await;
        self.db(zone)
            .write(
                Op::CreateService {
                    service: id.clone(),
                    policy: Policy {
                        interval_s,
                        recovery_zone: z(recovery),
                        local_retention: keep.clone(),
                        remote_retention: keep,
                    },
                    metadata: format!("vm config of {id}"),
                    slot: VmSlot {
                        cmp_vm_id: format!("cmp-{id}"),
                        disks: disks.iter().map(|d| d.to_string()).collect(),
                        active: true,
                    },
                },
                "cmp",
            )
            .await
            .unwrap();
    }

    /// True if `zone`'s own state says its copy of `rp` is deleted, or the
    /// RP is gone from its state altogether (purged once no copy was left).
    pub fn copy_gone(&self, zone: &str, id: &ServiceId, rp: &RpId) -> bool {
        self.db(zone).read(|r| {
            r.service(id)
                .and_then(|s| s.rps.get(rp))
                .is_none_or(|rp| rp.copy_state(&z(zone)) == Some(&CopyState::Deleted))
        })
    }

    /// True if `zone`'s state has `rp` no more.
    pub fn purged(&self, zone: &str, id: &ServiceId, rp: &RpId) -> bool {
        self.db(zone)
            .read(|r| r.service(id).is_some_and(|s| !s.rps.contains_key(rp)))
    }

    /// True if `zone`'s own state says its copy of `rp` is complete.
    pub fn complete_in(&self, zone: &str, id: &ServiceId, rp: &RpId) -> bool {
        self.db(zone)
            .read(|r| {
                r.service(id)
                    .and_then(|s| s.rps.get(rp).map(|rp| rp.is_complete_in(&z(zone))))
            })
            .unwrap_or(false)
    }

    /// Live (not pending deletion) snapshots the engine made in `zone`'s cluster.
    pub async fn rp_snapshots(&self, zone: &str) -> Vec<SnapshotInfo> {
        self.sp(&z(zone))
            .snapshots_list()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| {
                !s.deleted && s.tags.get(naming::TAG_KIND).map(String::as_str) == Some("rp")
            })
            .collect()
    }

    pub async fn volumes_list(&self, zone: &str) -> Vec<VolumeInfo> {
        self.sp(&z(zone)).volumes_list().await.unwrap()
    }

    /// StorPool agrees with what `zone` recorded: every RP snapshot in its
    /// cluster belongs to a copy it records as present (no leak), at most one
    /// per RP disk (no duplicate), and every copy it records as complete is
    /// there and complete (nothing lost). Its journal of intents is empty.
    pub async fn assert_consistent(&self, zone: &str) {
        let snaps = self.rp_snapshots(zone).await;
        let zid = z(zone);
        let mut seen = BTreeSet::new();
        for s in &snaps {
            let key = (
                s.tags[naming::TAG_SERVICE].clone(),
                s.tags[naming::TAG_RP].clone(),
                s.tags[naming::TAG_DISK].clone(),
            );
            assert!(
                seen.insert(key.clone()),
                "zone {zone}: duplicate snapshot for {key:?}"
            );
        }
        let present: BTreeMap<String, (ServiceId, RpId, bool)> = self.db(zone).read(|r| {
            let mut out = BTreeMap::new();
            for s in r.state().services.values() {
                for rp in s.rps.values() {
                    let state = rp.copy_state(&zid);
                    if matches!(state, Some(CopyState::Complete | CopyState::Transferring)) {
                        for d in &rp.disks {
                            out.insert(
                                d.global_id.clone(),
                                (s.id.clone(), rp.id.clone(), rp.is_complete_in(&zid)),
                            );
                        }
                    }
                }
            }
            out
        });
        let live: BTreeMap<String, &SnapshotInfo> =
            snaps.iter().map(|s| (s.global_id.clone(), s)).collect();
        for (gid, s) in &live {
            assert!(
                present.contains_key(gid),
                "zone {zone}: leaked snapshot {} ({gid}) not recorded as a copy here",
                s.name
            );
        }
        for (gid, (service, rp, complete)) in &present {
            let s = live.get(gid).unwrap_or_else(|| {
                panic!("zone {zone}: lost snapshot {gid} of {service} RP {rp} recorded as present")
            });
            if *complete {
                assert!(
                    !s.recovering_from_remote,
                    "zone {zone}: {gid} recorded complete but still arriving"
                );
            }
        }
        let intents = self
            .db(zone)
            .store()
            .local_scan("engine/")
            .unwrap()
            .into_iter()
            .filter(|(k, _)| {
                // A pull intent stays with its copy while it is here.
                let kept_copy = k.strip_prefix("engine/pull/").is_some_and(|rest| {
                    rest.split_once('/').is_some_and(|(s, rp)| {
                        self.db(zone).read(|r| {
                            r.state().services.values().any(|sv| {
                                sv.id.as_str() == s
                                    && sv.rps.values().any(|x| {
                                        x.id.as_str() == rp
                                            && matches!(
                                                x.copy_state(&zid),
                                                Some(CopyState::Complete | CopyState::Transferring)
                                            )
                                    })
                            })
                        })
                    })
                });
                k.starts_with("engine/take/")
                    || (k.starts_with("engine/pull/") && !kept_copy)
                    || k.starts_with("engine/vol/")
            })
            .map(|(k, _)| k)
            .collect::<Vec<_>>();
        assert!(
            intents.is_empty(),
            "zone {zone}: journal not empty: {intents:?}"
        );
    }
}
