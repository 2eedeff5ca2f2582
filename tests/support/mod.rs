//! Test support shared by every test target: one way to wait for a
//! condition, one clock reading, one way to build a deployment.
//!
//! - [`wait_until`] / [`wait_for`]: poll a condition (or a value) with a
//!   deadline; on timeout panic naming what was awaited and how long it
//!   took. Tests never sleep to wait for something.
//! - [`now_ms`]: the system clock in Unix ms.
//! - [`Deployment`]: N zones with their keys (written to key files), one
//!   tempdir, the sync links between them, optionally an in-process StorPool
//!   emulator with a cluster per zone, and each zone's [`Config`] built from
//!   all of that. The API, sync, engine and CLI test benches build their
//!   nodes from it; what is specific to them (a node on HTTP, a sync node,
//!   a stepped engine) stays in their own `harness` module.
//!
//! Each test binary (`tests/*/main.rs`) includes it once, as
//! `#[path = "../support/mod.rs"] mod support;`; its harness re-exports
//! what its tests use.
#![allow(dead_code)]

use drengine::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use drengine::model::ZoneId;
use drengine::node::config::{Config, EngineConfig, PublicKey, SyncConfig, ZoneEntry};
use drengine::replica::{Directory, Replica};
use drengine::store::{Db, Store};
use ed25519_dalek::SigningKey;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a wait looks at its condition again.
const POLL: Duration = Duration::from_millis(10);

/// The StorPool API token of a deployment's emulator.
pub const SP_TOKEN: &str = "4242";

/// Polls `cond` every few ms until it holds. Panics naming `what`, with
/// the time waited, once `timeout` passed. Returns how long it took.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    wait_for(what, timeout, || {
        let fut = cond();
        async move { fut.await.then_some(()) }
    })
    .await;
    start.elapsed()
}

/// Polls `cond` every few ms until it gives a value. Panics naming `what`,
/// with the time waited, once `timeout` passed.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        let waited = start.elapsed();
        if waited > timeout {
            panic!("timed out after {waited:?} (deadline {timeout:?}) waiting for: {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The system clock in Unix ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

pub fn zone_id(s: &str) -> ZoneId {
    ZoneId::new(s).expect("a zone id")
}

/// Engine settings that make tests quick: short ticks and back-offs.
pub fn quick_engine() -> EngineConfig {
    EngineConfig {
        tick_ms: 20,
        retry_initial_ms: 20,
        retry_max_ms: 200,
        copy_poll_initial_ms: 10,
        copy_poll_max_ms: 100,
        dep_check_interval_ms: 50,
        shutdown_grace_ms: 2_000,
        ..EngineConfig::default()
    }
}

/// Sync settings that make tests quick: loopback on a free port, short
/// anti-entropy and redial intervals.
pub fn quick_sync() -> SyncConfig {
    SyncConfig {
        listen: "/ip4/127.0.0.1/tcp/0".into(),
        anti_entropy_interval_ms: 500,
        redial_initial_ms: 50,
        redial_max_ms: 500,
        ..SyncConfig::default()
    }
}

/// Zones, their keys and links, a tempdir holding their files, and
/// optionally an emulated StorPool cluster per zone.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    zones: Vec<(ZoneId, SigningKey)>,
    links: Vec<(ZoneId, ZoneId)>,
    emulator: Option<EmulatorHandle>,
}

impl Deployment {
    /// Zones `names`, each with a fresh key written to `<dir>/<zone>.key`.
    pub fn new(names: &[&str]) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        let zones: Vec<(ZoneId, SigningKey)> = names
            .iter()
            .map(|n| (zone_id(n), SigningKey::generate(&mut rand::rngs::OsRng)))
            .collect();
        for (zone, key) in &zones {
            std::fs::write(
                dir.path().join(format!("{zone}.key")),
                hex::encode(key.to_bytes()),
            )
            .expect("write key file");
        }
        Deployment {
            dir,
            zones,
            links: Vec::new(),
            emulator: None,
        }
    }

    /// Like [`Deployment::new`], with an emulator (one cluster per zone,
    /// each the others' remote location) configured by `tweak`; every
    /// zone's config points at its cluster and enables the engine.
    pub async fn with_emulator(names: &[&str], tweak: impl FnOnce(&mut EmulatorConfig)) -> Self {
        let mut dep = Deployment::new(names);
        let mut cfg = EmulatorConfig::local(names, SP_TOKEN);
        tweak(&mut cfg);
        let emu = Emulator::start(cfg).await.expect("emulator starts");
        eprintln!("emulator seed {}", emu.seed());
        dep.emulator = Some(emu);
        dep
    }

    /// A sync link between `a` and `b`: each lists the other as a peer.
    pub fn link(mut self, a: &str, b: &str) -> Self {
        self.links.push((zone_id(a), zone_id(b)));
        self
    }

    pub fn zones(&self) -> Vec<ZoneId> {
        self.zones.iter().map(|(z, _)| z.clone()).collect()
    }

    pub fn key(&self, zone: &str) -> SigningKey {
        self.zones
            .iter()
            .find(|(z, _)| z.as_str() == zone)
            .unwrap_or_else(|| panic!("no zone {zone} in the deployment"))
            .1
            .clone()
    }

    /// The directory of every zone's public key.
    pub fn directory(&self) -> Directory {
        Directory::new(
            self.zones
                .iter()
                .map(|(z, k)| (z.clone(), k.verifying_key()))
                .collect(),
        )
    }

    /// An in-memory replica of `zone` that signs with its key: a peer a
    /// test plays, whose events it feeds to a node.
    pub fn replica(&self, zone: &str) -> Replica {
        Replica::new(zone_id(zone), Some(self.key(zone)), self.directory())
    }

    pub fn emulator(&self) -> &EmulatorHandle {
        self.emulator
            .as_ref()
            .expect("a deployment with an emulator (Deployment::with_emulator)")
    }

    /// The zones `zone` has a sync link to.
    pub fn peers(&self, zone: &str) -> Vec<ZoneId> {
        self.links
            .iter()
            .filter_map(|(a, b)| match (a.as_str() == zone, b.as_str() == zone) {
                (true, _) => Some(b.clone()),
                (_, true) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    /// Zone `zone`'s data directory.
    pub fn data_dir(&self, zone: &str) -> PathBuf {
        self.dir.path().join(zone)
    }

    /// Zone `zone`'s database file (what `drengine run` opens).
    pub fn db_path(&self, zone: &str) -> PathBuf {
        self.data_dir(zone).join(drengine::node::DB_FILE)
    }

    /// The config of `zone`: its key file and data directory here, the
    /// directory of every zone, its sync links ([`quick_sync`]), the API on
    /// a free loopback port with no tokens, and with an emulator the
    /// engine ([`quick_engine`]) on its cluster; without one the engine is
    /// off. Tests change the fields they care about.
    pub fn config(&self, zone: &str) -> Config {
        let api = drengine::node::config::ApiConfig {
            listen: "127.0.0.1:0".parse().expect("an address"),
            ..Default::default()
        };
        let (engine, storpool) = match &self.emulator {
            Some(emu) => (
                quick_engine(),
                emu.storpool_config(zone).expect("a cluster per zone"),
            ),
            None => (
                EngineConfig {
                    enabled: false,
                    ..EngineConfig::default()
                },
                Default::default(),
            ),
        };
        let cfg = Config {
            zone: zone_id(zone),
            data_dir: self.data_dir(zone),
            key_file: self.dir.path().join(format!("{zone}.key")),
            zones: self
                .zones
                .iter()
                .map(|(id, key)| ZoneEntry {
                    id: id.clone(),
                    public_key: PublicKey(key.verifying_key()),
                    sync_addr: None,
                    storpool_location: None,
                })
                .collect(),
            api,
            sync: SyncConfig {
                peers: self.peers(zone),
                ..quick_sync()
            },
            engine,
            storpool,
            history: Default::default(),
            messages: Default::default(),
        };
        cfg.validate().expect("a valid config");
        cfg
    }

    /// Opens the database of `cfg`'s zone (retrying while a previous owner
    /// of the file is still closing it), with a replica that signs with the
    /// zone's key and knows `cfg`'s directory.
    pub async fn open_db(&self, cfg: &Config) -> Db {
        let store = open_store(&cfg.data_dir.join(drengine::node::DB_FILE), &cfg.zone).await;
        let replica = Replica::new(
            cfg.zone.clone(),
            Some(self.key(cfg.zone.as_str())),
            cfg.directory(),
        );
        Db::open(store, replica).expect("open the Db")
    }
}

/// Opens the redb store at `path`, retrying for a while as a previous
/// owner of the file may still be closing it.
pub async fn open_store(path: &Path, zone: &ZoneId) -> Store {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the data directory");
    }
    let start = Instant::now();
    loop {
        match Store::open(path, zone) {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "cannot open {}: {e}",
                    path.display()
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }
}
