//! Wires the pieces of one zone's node together: configuration, the durable
//! replica, sync, the DR engine and the API.
//!
//! `Node::start` opens the redb store in `data_dir`, builds the `Db`, starts
//! sync, the engine and the API server, and hands back a `NodeHandle` that
//! stops them all, in reverse order, on `shutdown`.

pub mod config;
#[cfg(feature = "devnet")]
pub mod devnet;
pub mod messages;

pub use config::{Config, Role};

use crate::api::{ApiContext, ApiServer, PeerSource};
use crate::engine::Engine;
use crate::model::ZoneId;
use crate::replica::Replica;
use crate::store::{Db, Store, StoreError};
use crate::storpool::StorPoolClient;
use crate::sync::{PeerStatus, Sync, SyncError, SyncHandle};
use messages::MessageWorker;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The database file inside `data_dir`.
pub const DB_FILE: &str = "drengine.redb";
/// How long start waits for a previous holder of the database in this
/// process (a node just shut down) to let go of it.
const DB_REOPEN_WAIT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("data_dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] crate::api::StartError),
    #[error("sync: {0}")]
    Sync(#[from] SyncError),
    #[error("engine: {0}")]
    Engine(String),
}

/// The API reads peer status straight from sync.
impl PeerSource for SyncHandle {
    fn peers(&self) -> Vec<PeerStatus> {
        SyncHandle::peers(self)
    }
    fn running(&self) -> bool {
        true
    }
    fn counters(&self) -> Option<crate::sync::SyncCounters> {
        Some(SyncHandle::counters(self))
    }
}

/// Starts nodes.
pub struct Node;

impl Node {
    /// Starts every part of the node described by `config`.
    pub async fn start(config: Config) -> Result<NodeHandle, NodeError> {
        let span = tracing::info_span!("node", zone = %config.zone);
        Self::start_inner(config).instrument(span).await
    }

    async fn start_inner(config: Config) -> Result<NodeHandle, NodeError> {
        config.validate()?;
        let key = config::read_signing_key(&config.key_file)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let path = config.data_dir.join(DB_FILE);
        let store = open_store(&path, &config.zone)
            .await?
            .with_history(config.history.clone());
        let replica = Replica::new(config.zone.clone(), Some(key.clone()), config.directory());
        let db = Db::open(store, replica)?;
        tracing::info!(path = %path.display(), "replica opened");

        let sync = Sync::start(&config.sync_setup(), key.clone(), db.clone()).await?;
        tracing::info!(peer_id = %sync.local_peer_id(), "sync started");

        let engine = if config.engine.enabled {
            let started = StorPoolClient::new(config.storpool.clone())
                .map_err(|e| NodeError::Engine(e.to_string()))
                .and_then(|client| {
                    Engine::start(db.clone(), client, config.engine_setup())
                        .map_err(|e| NodeError::Engine(e.to_string()))
                });
            match started {
                Ok(engine) => engine,
                Err(e) => {
                    sync.shutdown().await;
                    return Err(e);
                }
            }
        } else {
            tracing::info!("DR engine disabled by configuration; DR actions answer 503");
            Engine::disabled()
        };
        let engine_running = config.engine.enabled;
        let peers: Arc<dyn PeerSource> = Arc::new(sync.clone());

        let api = match ApiServer::start(
            &config.api,
            ApiContext {
                db: db.clone(),
                engine: engine.clone(),
                engine_running,
                peers,
            },
        )
        .await
        {
            Ok(api) => api,
            Err(e) => {
                engine.shutdown().await;
                sync.shutdown().await;
                return Err(e.into());
            }
        };
        let messages = MessageWorker::start(db.clone(), engine.clone(), config.messages.clone());
        tracing::info!(api = %api.url(), "node started");
        Ok(NodeHandle {
            zone: config.zone.clone(),
            db,
            sync,
            engine,
            messages,
            api,
            config,
        })
    }
}

/// Opens the store, waiting a bounded time if this process still holds it
/// (a node of the same data dir that was just shut down).
async fn open_store(path: &std::path::Path, zone: &ZoneId) -> Result<Store, StoreError> {
    let deadline = Instant::now() + Duration::from_millis(DB_REOPEN_WAIT_MS);
    loop {
        match Store::open(path, zone) {
            Err(StoreError::Redb { source, .. })
                if matches!(*source, redb::Error::DatabaseAlreadyOpen)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// A running node.
pub struct NodeHandle {
    zone: ZoneId,
    db: Db,
    sync: SyncHandle,
    engine: Engine,
    messages: MessageWorker,
    api: ApiServer,
    config: Config,
}

impl NodeHandle {
    pub fn zone(&self) -> &ZoneId {
        &self.zone
    }

    /// The address the API is bound to (the real port when configured as 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// `http://…` or `https://…`.
    pub fn api_url(&self) -> String {
        self.api.url()
    }

    /// What the API's connection layer did (accepted, replaced, refused).
    pub fn api_conn_stats(&self) -> &crate::api::ConnStats {
        self.api.conn_stats()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The DR engine (disabled when the configuration says so).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Zone-to-zone sync (peer status; the partition switch in tests).
    pub fn sync(&self) -> &SyncHandle {
        &self.sync
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops the API (ending change feeds), then the engine and sync, then
    /// lets the database close.
    pub async fn shutdown(self) {
        let span = tracing::info_span!("node", zone = %self.zone);
        async move {
            self.api.shutdown().await;
            self.messages.shutdown().await;
            self.engine.shutdown().await;
            self.sync.shutdown().await;
            drop(self.db);
            tracing::info!("node stopped");
        }
        .instrument(span)
        .await
    }
}
