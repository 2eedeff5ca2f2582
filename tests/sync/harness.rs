//! Helpers for the sync tests: zones with real redb files in a tempdir and
//! real libp2p on loopback (port 0), and waiting on conditions with deadlines.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use crate::support::{now_ms, wait_for, wait_until, Deployment};
use drengine::model::{Policy, Retention, ServiceId, VmSlot, ZoneId};
use drengine::node::config::{Config, SyncConfig};
use drengine::replica::Op;
use drengine::store::Db;
use drengine::sync::Sync;
use drengine::sync::SyncHandle;
use std::time::Duration;

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

/// Compacts `node`'s log until every event is below the floor (every zone
/// has every event) and only the events its state still holds (which a
/// snapshot carries) are left, failing after `timeout`.
pub async fn wait_compacted(node: &Node, timeout: Duration) {
    wait_until("the log to compact away", timeout, || async {
        node.db.compact().await.expect("compact");
        let (vv, kept) = node.db.read(|r| {
            let (mut keep, heads) = r.snapshot_dots();
            keep.extend(heads);
            (r.vv().clone(), keep.len() as u64)
        });
        let floor = node.db.store().floor().expect("floor");
        floor == vv && node.db.store().log_len().expect("log length") == kept
    })
    .await;
}

/// What the sync tests do with a [`Deployment`]: configs with explicit
/// peers and sync limits, and zones started as a database and its sync
/// layer (no API, no engine).
#[allow(async_fn_in_trait)]
pub trait SyncDeployment {
    /// The config of zone `z` dialling `peers`, with sync limits `tweak`ed.
    fn config_with(&self, z: &str, peers: &[&str], tweak: impl FnOnce(&mut SyncConfig)) -> Config;
    /// Like `config_with`, with a directory of only the zones `directory`.
    fn config_in(
        &self,
        z: &str,
        peers: &[&str],
        directory: &[&str],
        tweak: impl FnOnce(&mut SyncConfig),
    ) -> Config;
    /// Starts zone `z`: its database and its sync layer. The node signs
    /// at once (an operator override of the rebuild wait): these tests are
    /// about sync, and some write before any peer could confirm them.
    async fn start(&self, cfg: Config) -> Node;
    /// Starts zone `z` as a node really starts: it signs nothing until a
    /// peer confirmed it holds its zone's newest event.
    async fn start_unproven(&self, cfg: Config) -> Node;
}

impl SyncDeployment for Deployment {
    fn config_with(&self, z: &str, peers: &[&str], tweak: impl FnOnce(&mut SyncConfig)) -> Config {
        let all: Vec<String> = self.zones().iter().map(|id| id.to_string()).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.config_in(z, peers, &all, tweak)
    }

    fn config_in(
        &self,
        z: &str,
        peers: &[&str],
        directory: &[&str],
        tweak: impl FnOnce(&mut SyncConfig),
    ) -> Config {
        let mut cfg = self.config(z);
        cfg.sync.peers = peers.iter().map(|p| zone(p)).collect();
        tweak(&mut cfg.sync);
        cfg.zones.retain(|e| directory.contains(&e.id.as_str()));
        cfg.validate().unwrap();
        cfg
    }

    async fn start(&self, cfg: Config) -> Node {
        let node = self.start_unproven(cfg).await;
        node.db.override_rebuild("test");
        node
    }

    async fn start_unproven(&self, cfg: Config) -> Node {
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
