//! Helpers for the sync tests: zones with real redb files in a tempdir and
//! real libp2p on loopback (port 0), and waiting on conditions with deadlines.
#![allow(dead_code)]

use drengine::model::{Policy, Retention, ServiceId, VmSlot, ZoneId};
use drengine::node::config::{Config, EngineConfig, SyncConfig, ZoneEntry};
use drengine::replica::{Op, Replica};
use drengine::store::{Db, Store};
use drengine::sync::{Sync, SyncHandle};
use ed25519_dalek::SigningKey;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn zone(s: &str) -> ZoneId {
    ZoneId::new(s).unwrap()
}

pub fn service(s: &str) -> ServiceId {
    ServiceId::new(s).unwrap()
}

/// Logs to the test output when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Compacts `node`'s log until every event is below the floor (every zone
/// has every event) and only the events its state still holds (which a
/// snapshot carries) are left, failing after `timeout`.
pub async fn wait_compacted(node: &Node, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        node.db.compact().await.expect("compact");
        let (vv, kept) = node.db.read(|r| {
            let (mut keep, heads) = r.snapshot_dots();
            keep.extend(heads);
            (r.vv().clone(), keep.len() as u64)
        });
        let floor = node.db.store().floor().expect("floor");
        if floor == vv && node.db.store().log_len().expect("log length") == kept {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for the log to compact away");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A deployment: the directory of zones with their keys, and a tempdir.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub zones: Vec<(ZoneId, SigningKey)>,
}

impl Deployment {
    pub fn new(names: &[&str]) -> Self {
        let zones = names
            .iter()
            .map(|n| (zone(n), SigningKey::generate(&mut rand::rngs::OsRng)))
            .collect();
        Deployment {
            dir: tempfile::tempdir().unwrap(),
            zones,
        }
    }

    pub fn key(&self, z: &str) -> SigningKey {
        self.zones
            .iter()
            .find(|(id, _)| id.as_str() == z)
            .unwrap()
            .1
            .clone()
    }

    pub fn db_path(&self, z: &str) -> PathBuf {
        self.dir.path().join(format!("{z}.redb"))
    }

    /// The config of zone `z` dialling `peers`, with sync limits `tweak`ed.
    pub fn config(&self, z: &str, peers: &[&str], tweak: impl FnOnce(&mut SyncConfig)) -> Config {
        let all: Vec<&str> = self.zones.iter().map(|(id, _)| id.as_str()).collect();
        self.config_in(z, peers, &all, tweak)
    }

    /// Like `config`, with a directory of only the zones `directory`.
    pub fn config_in(
        &self,
        z: &str,
        peers: &[&str],
        directory: &[&str],
        tweak: impl FnOnce(&mut SyncConfig),
    ) -> Config {
        let mut sync = SyncConfig {
            listen: "/ip4/127.0.0.1/tcp/0".into(),
            peers: peers.iter().map(|p| zone(p)).collect(),
            anti_entropy_interval_ms: 500,
            redial_initial_ms: 50,
            redial_max_ms: 500,
            ..SyncConfig::default()
        };
        tweak(&mut sync);
        let cfg = Config {
            zone: zone(z),
            data_dir: self.dir.path().to_path_buf(),
            key_file: self.dir.path().join(format!("{z}.key")),
            zones: self
                .zones
                .iter()
                .filter(|(id, _)| directory.contains(&id.as_str()))
                .map(|(id, key)| ZoneEntry {
                    id: id.clone(),
                    public_key: drengine::node::config::PublicKey(key.verifying_key()),
                    sync_addr: None,
                    storpool_location: None,
                })
                .collect(),
            api: Default::default(),
            sync,
            engine: EngineConfig {
                enabled: false,
                ..Default::default()
            },
            storpool: Default::default(),
        };
        cfg.validate().unwrap();
        cfg
    }

    /// Opens zone `z`'s database (retrying while a previous owner of the
    /// file is still closing it).
    pub async fn open_db(&self, cfg: &Config) -> Db {
        let path = self.db_path(cfg.zone.as_str());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Store::open(&path, &cfg.zone) {
                Ok(store) => {
                    let replica = Replica::new(
                        cfg.zone.clone(),
                        Some(self.key(cfg.zone.as_str())),
                        cfg.directory(),
                    );
                    return Db::open(store, replica).unwrap();
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot open {}: {e}", path.display()),
            }
        }
    }

    /// Starts zone `z`: its database and its sync layer. The node signs
    /// at once (an operator override of the rebuild wait): these tests are
    /// about sync, and some write before any peer could confirm them.
    pub async fn start(&self, cfg: Config) -> Node {
        let node = self.start_unproven(cfg).await;
        node.db.override_rebuild("test");
        node
    }

    /// Starts zone `z` as a node really starts: it signs nothing until a
    /// peer confirmed it holds its zone's newest event.
    pub async fn start_unproven(&self, cfg: Config) -> Node {
        let db = self.open_db(&cfg).await;
        let sync = Sync::start(&cfg.sync_setup(), self.key(cfg.zone.as_str()), db.clone())
            .await
            .unwrap();
        Node { cfg, db, sync }
    }
}

/// One running zone.
pub struct Node {
    pub cfg: Config,
    pub db: Db,
    pub sync: SyncHandle,
}

impl Node {
    pub fn zone(&self) -> &ZoneId {
        &self.cfg.zone
    }

    pub fn addr(&self) -> libp2p::Multiaddr {
        self.sync.listen_addrs()[0].clone()
    }

    /// Tells this node where `other` listens (and so dials it).
    pub async fn dial(&self, other: &Node) {
        self.sync
            .set_peer_addr(other.zone(), other.addr())
            .await
            .unwrap();
    }

    pub fn digest(&self) -> String {
        self.db.read(|r| r.digest())
    }

    pub fn has_service(&self, s: &str) -> bool {
        let id = service(s);
        self.db.read(|r| r.service(&id).is_some())
    }

    pub fn metadata(&self, s: &str) -> Vec<String> {
        let id = service(s);
        self.db.read(|r| {
            r.service(&id)
                .map(|svc| {
                    svc.metadata
                        .values()
                        .iter()
                        .map(|v| v.value.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    pub fn connected_to(&self, z: &str) -> bool {
        self.sync
            .peers()
            .iter()
            .any(|p| p.zone.as_str() == z && p.connected)
    }

    /// Stops sync and closes the database (the file can be reopened).
    pub async fn stop(self) {
        self.sync.shutdown().await;
        drop(self.db);
    }
}

/// A policy protecting to `recovery`.
pub fn policy(recovery: &str) -> Policy {
    Policy {
        interval_s: 60,
        recovery_zone: zone(recovery),
        local_retention: Retention {
            keep_last: 2,
            keep_for_s: 3600,
        },
        remote_retention: Retention {
            keep_last: 2,
            keep_for_s: 3600,
        },
    }
}

pub fn slot(vm: &str, active: bool) -> VmSlot {
    VmSlot {
        cmp_vm_id: vm.into(),
        disks: vec![format!("{vm}-disk0")],
        active,
    }
}

/// Creates service `s` on `node` with its VM active there.
pub async fn create_service(node: &Node, s: &str, recovery: &str) {
    node.db
        .write(
            Op::CreateService {
                service: service(s),
                policy: policy(recovery),
                metadata: format!("{s} v0"),
                slot: slot(&format!("{s}-vm"), true),
            },
            "test",
        )
        .await
        .unwrap();
}

pub async fn set_metadata(node: &Node, s: &str, metadata: &str) {
    node.db
        .write(
            Op::SetMetadata {
                service: service(s),
                metadata: metadata.into(),
            },
            "test",
        )
        .await
        .unwrap();
}
