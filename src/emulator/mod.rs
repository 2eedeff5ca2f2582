//! StorPool API emulator: one process serving several emulated clusters over StorPool's HTTP API.
//!
//! No real StorPool is reachable from CI or a laptop, so every test of the StorPool driver
//! talks real HTTP to this emulator. Each cluster listens on its own port and sees every
//! other cluster as a remote location named after it. Volumes, snapshots (with globalIds
//! and tags), exports, backups and remote copies behave as StorPool's bindings describe
//! them; copies between clusters take time at a configurable bandwidth; faults (transient
//! errors, slow or stuck links, clusters that stop answering) can be injected at start or
//! at run time. State is kept in memory only.
//!
//! * [`state`] — the clusters as plain data (no I/O, time is an input).
//! * `http` — the axum shell: path and auth parsing, fault injection, the envelope.
//! * `listener` — the TCP listener that can refuse or reset connections.
//! * [`faults`] — what can be injected.
//!
//! Architecture invariant: the emulator depends on `crate::storpool` only for the wire types
//! and naming rules (so the client and the emulator agree by construction), never on its client.
//!
//! Admin endpoints, on every cluster's port (no authentication; bind to loopback):
//! `GET /_emulator/state`, `GET|POST /_emulator/faults`, `GET /_emulator/stats`,
//! `POST /_emulator/stats/reset`.
//!
//! Choices where StorPool's documentation is silent or only implied:
//! * Errors use StorPool's envelope and names; HTTP statuses are 400 `invalidParam`,
//!   401 `authError` (missing or wrong token), 404 `objectDoesNotExist`, 409 `objectExists`,
//!   503 `busy` (transient), 507 `insufficientResources`. Clients look at the envelope.
//! * `SnapshotDelete` of a snapshot that volumes or snapshots still depend on (or that is
//!   still being sent) succeeds; the snapshot is marked `deleted`, shown as `*<name>` (its
//!   name is free again), still found by `~<globalId>`, and removed with its last dependent.
//!   Deleting a copy that is still being received drops the transfer.
//! * A copy keeps its globalId, tags and creation time; it is based on the receiver's copy
//!   of the source's parent when there is one. Transfers always move the full size.
//! * A received copy is named like the source when that name is free, else `<name>@<n>`;
//!   backups' local snapshots are anonymous (`<volume>@<n>`), as StorPool names them.
//! * `SnapshotUnexport` is refused while the location is still receiving, unless `force`,
//!   which drops the partial copy. `SnapshotsRemoteUnexport` is refused for a copy in flight.
//! * `VolumeRevert` accepts any live snapshot of the cluster (`revertSize` takes its size).
//! * Injected transient errors are answered before the call runs, so they have no effect.

mod error;
pub mod faults;
mod http;
mod listener;
pub mod state;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::ApiError;
pub use faults::FaultUpdate;
pub use listener::DownMode;

use crate::storpool::StorPoolConfig;
use faults::ClusterFaults;
use http::{ClusterRt, Shared};
use state::{LinkFault, World};

/// How long [`EmulatorHandle::shutdown`] waits for open requests before cutting them off.
const SHUTDOWN_GRACE_MS: u64 = 3_000;

/// One emulated cluster: its name (also its location name for the others) and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Cluster and location name.
    pub name: String,
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
}

impl FromStr for ClusterSpec {
    type Err = String;

    /// Parses `name=host:port`, the form of `--cluster`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=ADDRESS:PORT, got {s:?}"))?;
        let addr = addr
            .parse()
            .map_err(|e| format!("invalid address {addr:?} for cluster {name}: {e}"))?;
        Ok(ClusterSpec {
            name: name.to_owned(),
            addr,
        })
    }
}

/// Everything needed to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The clusters; at least one, names unique.
    pub clusters: Vec<ClusterSpec>,
    /// The API token every cluster accepts.
    pub token: String,
    /// Default bandwidth of every link between two clusters, Mbit/s.
    pub bandwidth_mbps: f64,
    /// Share of API calls (0.0–1.0) answered with a transient `busy` error.
    pub transient_error_rate: f64,
    /// Seed of the fault RNG; random (and logged) when absent.
    pub seed: Option<u64>,
    /// Start with every link stuck.
    pub stuck_transfers: bool,
    /// Capacity of every cluster in bytes (beyond it: `insufficientResources`); unlimited when absent.
    pub capacity_bytes: Option<u64>,
}

impl EmulatorConfig {
    /// Clusters `names` on loopback, free ports, 1 Gbit/s links, no faults: what tests and
    /// `drengine devnet` want.
    pub fn local(names: &[&str], token: &str) -> Self {
        EmulatorConfig {
            clusters: names
                .iter()
                .map(|n| ClusterSpec {
                    name: (*n).to_owned(),
                    addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                })
                .collect(),
            token: token.to_owned(),
            bandwidth_mbps: 1_000.0,
            transient_error_rate: 0.0,
            seed: None,
            stuck_transfers: false,
            capacity_bytes: None,
        }
    }

    fn validate(&self) -> Result<(), EmulatorError> {
        let bad = |m: String| Err(EmulatorError::Config(m));
        if self.clusters.is_empty() {
            return bad("at least one cluster is needed".into());
        }
        for (i, c) in self.clusters.iter().enumerate() {
            if let Err(e) = crate::storpool::names::validate_location_name(&c.name) {
                return bad(format!("cluster name: {e}"));
            }
            if self.clusters[..i].iter().any(|o| o.name == c.name) {
                return bad(format!("cluster {} given twice", c.name));
            }
        }
        if self.token.is_empty() || self.token.chars().any(|c| c.is_control() || c == ' ') {
            return bad("token must be non-empty, without spaces".into());
        }
        if !(self.bandwidth_mbps.is_finite() && self.bandwidth_mbps > 0.0) {
            return bad("bandwidth_mbps must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.transient_error_rate) {
            return bad("transient_error_rate must be between 0 and 1".into());
        }
        Ok(())
    }
}

/// Why the emulator could not start or a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The configuration is unusable.
    #[error("emulator configuration: {0}")]
    Config(String),
    /// A cluster's address could not be bound.
    #[error("cannot listen on {addr} for cluster {cluster}: {source}")]
    Bind {
        /// The cluster.
        cluster: String,
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A fault change was refused.
    #[error("fault change refused: {0}")]
    Faults(String),
}

/// Entry point of the emulator library.
pub struct Emulator;

impl Emulator {
    /// Binds every cluster's port and starts serving; returns once all are listening.
    pub async fn start(cfg: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        cfg.validate()?;
        let seed = cfg.seed.unwrap_or_else(rand::random);
        tracing::info!(
            seed,
            "storpool emulator starting (state is kept in memory only)"
        );

        let mut listeners = Vec::new();
        for c in &cfg.clusters {
            let l = TcpListener::bind(c.addr)
                .await
                .map_err(|source| EmulatorError::Bind {
                    cluster: c.name.clone(),
                    addr: c.addr,
                    source,
                })?;
            listeners.push(l);
        }
        let names: Vec<String> = cfg.clusters.iter().map(|c| c.name.clone()).collect();
        let mut world = World::new(&names, cfg.bandwidth_mbps);
        for ci in 0..names.len() {
            world.set_capacity(ci, cfg.capacity_bytes);
            if cfg.stuck_transfers {
                for cj in 0..names.len() {
                    if ci != cj {
                        world.set_link_fault(
                            ci,
                            cj,
                            LinkFault {
                                bandwidth_mbps: None,
                                stuck: true,
                                ..Default::default()
                            },
                            0,
                        );
                    }
                }
            }
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut clusters = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let (down_tx, _) = watch::channel(DownMode::Up);
            clusters.push(ClusterRt {
                name: name.clone(),
                down_tx,
                open_connections: Arc::new(AtomicU64::new(0)),
                faults: Mutex::new(ClusterFaults::new(
                    seed.wrapping_add(i as u64),
                    cfg.transient_error_rate,
                )),
                stats: Mutex::new(Default::default()),
            });
        }
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            started: Instant::now(),
            token: cfg.token.clone(),
            clusters,
            shutdown: shutdown_rx,
        });

        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for (ci, l) in listeners.into_iter().enumerate() {
            let rt = &shared.clusters[ci];
            let addr = l.local_addr().map_err(|source| EmulatorError::Bind {
                cluster: rt.name.clone(),
                addr: cfg.clusters[ci].addr,
                source,
            })?;
            let listener = listener::ClusterListener::new(
                l,
                rt.down_tx.subscribe(),
                rt.open_connections.clone(),
            )
            .map_err(|source| EmulatorError::Bind {
                cluster: rt.name.clone(),
                addr,
                source,
            })?;
            tracing::info!(cluster = %rt.name, %addr, "emulated cluster listening");
            addrs.push((rt.name.clone(), addr));
            let app = http::router(shared.clone(), ci);
            let mut stop = shared.shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let signal = async move {
                    while !*stop.borrow_and_update() {
                        if stop.changed().await.is_err() {
                            break;
                        }
                    }
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
                {
                    tracing::error!(error = %e, "emulated cluster stopped");
                }
            }));
        }
        Ok(EmulatorHandle {
            shared,
            addrs,
            tasks,
            shutdown_tx,
            seed,
        })
    }
}

/// A running emulator: where its clusters listen, control over faults, and shutdown.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addrs: Vec<(String, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
    shutdown_tx: watch::Sender<bool>,
    seed: u64,
}

impl EmulatorHandle {
    /// The clusters and the addresses they actually listen on.
    pub fn clusters(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// The address cluster `name` listens on.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// The seed of the fault RNG (print it in a failing test to replay it).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A client configuration for cluster `name`, with the emulator's token.
    pub fn storpool_config(&self, name: &str) -> Option<StorPoolConfig> {
        self.addr(name)
            .map(|a| StorPoolConfig::new(a.ip().to_string(), a.port(), self.shared.token.clone()))
    }

    /// Changes faults of cluster `name` (or of `update.cluster` if set), as `POST /_emulator/faults` does.
    pub fn set_faults(&self, name: &str, update: &FaultUpdate) -> Result<(), EmulatorError> {
        let ci = self
            .shared
            .cluster_idx(name)
            .ok_or_else(|| EmulatorError::Faults(format!("no cluster named {name:?}")))?;
        self.shared
            .apply_faults(ci, update)
            .map_err(EmulatorError::Faults)
    }

    /// Current faults, as `GET /_emulator/faults` shows them.
    pub fn faults(&self) -> serde_json::Value {
        self.shared.faults_json()
    }

    /// API calls received by cluster `name` so far (every attempt, including failed ones).
    pub fn api_calls(&self, name: &str) -> u64 {
        self.shared
            .cluster_idx(name)
            .map(|ci| {
                self.shared.clusters[ci]
                    .stats
                    .lock()
                    .map(|s| s.total)
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Connections currently open to cluster `name`'s port.
    pub fn open_connections(&self, name: &str) -> u64 {
        self.shared
            .cluster_idx(name)
            .map(|ci| {
                self.shared.clusters[ci]
                    .open_connections
                    .load(Ordering::SeqCst)
            })
            .unwrap_or(0)
    }

    /// Per-cluster call counters, as `GET /_emulator/stats` shows them.
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats_json()
    }

    /// Zeroes the call counters.
    pub fn reset_stats(&self) {
        self.shared.reset_stats()
    }

    /// All state, as `GET /_emulator/state` shows it.
    pub fn state(&self) -> serde_json::Value {
        self.shared.state_json()
    }

    /// Stops serving: held requests are released, open connections closed, ports freed.
    pub async fn shutdown(self) {
        self.shutdown_tx.send_replace(true);
        let grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(grace, t).await.is_err() {
                abort.abort();
            }
        }
    }
}
