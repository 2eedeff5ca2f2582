//! The node's configuration: one typed struct read from one TOML file per
//! zone, with every default in this file and validation that names the key.

pub use crate::api::{ApiConfig, Role, TokenEntry};
pub use crate::engine::{EngineConfig, EngineSetup};
pub use crate::store::HistoryConfig;
pub use crate::sync::{SyncConfig, SyncSetup, SyncZone};

use crate::model::ZoneId;
use crate::replica::Directory;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// One zone's node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's zone; must be in `zones`.
    pub zone: ZoneId,
    /// Where the redb database lives (put it on replicated storage).
    pub data_dir: PathBuf,
    /// The zone's ed25519 secret key (hex, from `drengine keygen`). It signs
    /// events and is the node's libp2p identity. Relative to the config file.
    pub key_file: PathBuf,
    /// Every zone of the deployment: the directory of public keys.
    pub zones: Vec<ZoneEntry>,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    /// The local StorPool cluster's API (see `crate::storpool`).
    #[serde(default)]
    pub storpool: crate::storpool::StorPoolConfig,
    /// How much audit history the zone keeps (see `crate::store`).
    #[serde(default)]
    pub history: HistoryConfig,
    /// Control messages: how long done ones are kept (see `node::messages`).
    #[serde(default)]
    pub messages: MessagesConfig,
}

/// The `[messages]` section: how the node handles control messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Seconds a message this zone sent is kept once it is done (acked by
    /// every addressee, or expired), before it is pruned in every zone.
    pub retention_s: u64,
    /// How often (ms) the node looks for messages to deliver, act on,
    /// expire or prune when no write wakes it.
    pub tick_ms: u64,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            retention_s: 7 * 24 * 3600,
            tick_ms: 1000,
        }
    }
}

/// An ed25519 public key, written in hex in the configuration and parsed
/// once, when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_public_key(&s)
            .map(PublicKey)
            .map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.to_bytes()))
    }
}

/// A zone of the directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneEntry {
    pub id: ZoneId,
    /// ed25519 public key, hex; parsed when the file is read.
    pub public_key: PublicKey,
    /// The zone's sync address, a libp2p multiaddr such as
    /// `/ip4/127.0.0.1/tcp/7201`. Needed for zones this node dials.
    #[serde(default)]
    pub sync_addr: Option<String>,
    /// The name of the zone's StorPool cluster as a remote location in the
    /// other zones' clusters (defaults to the zone id).
    #[serde(default)]
    pub storpool_location: Option<String>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// [`Config::load`] of a file's text already read: parses, resolves
    /// relative paths against `path`'s directory and validates. The fuzz
    /// target `config` calls it so that it needs no file per input.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Relative paths are relative to the file, as an operator expects.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.data_dir, &mut cfg.key_file]
            .into_iter()
            .chain(cfg.api.tls_cert.as_mut())
            .chain(cfg.api.tls_key.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: cross references and limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeMap::new();
        for (i, z) in self.zones.iter().enumerate() {
            if seen.insert(z.id.clone(), i).is_some() {
                return Err(invalid(
                    format!("zones[{i}].id"),
                    format!("{} listed twice", z.id),
                ));
            }
        }
        if !seen.contains_key(&self.zone) {
            return Err(invalid(
                "zone",
                format!("{} is not in [[zones]]", self.zone),
            ));
        }
        for (i, p) in self.sync.peers.iter().enumerate() {
            if !seen.contains_key(p) {
                return Err(invalid(
                    format!("sync.peers[{i}]"),
                    format!("{p} is not in [[zones]]"),
                ));
            }
            if p == &self.zone {
                return Err(invalid(
                    format!("sync.peers[{i}]"),
                    "a zone is not its own peer",
                ));
            }
        }
        self.api
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        if self.sync.max_batch_events == 0 || self.sync.max_batch_bytes == 0 {
            return Err(invalid(
                "sync.max_batch_events",
                "batch limits must be positive",
            ));
        }
        if self.engine.enabled {
            self.storpool
                .validate()
                .map_err(|e| invalid("storpool", e.to_string()))?;
        }
        // A full batch (at least one largest event) plus its message's own
        // fields must fit in a message.
        let batch_bytes = self
            .sync
            .max_batch_bytes
            .max(crate::replica::MAX_EVENT_BYTES);
        if batch_bytes.saturating_add(64 * 1024) > self.sync.max_message_bytes {
            return Err(invalid(
                "sync.max_message_bytes",
                "must exceed sync.max_batch_bytes (and the 256 KiB event limit) by 64 KiB",
            ));
        }
        for (key, v) in [
            (
                "sync.anti_entropy_interval_ms",
                self.sync.anti_entropy_interval_ms,
            ),
            ("sync.redial_initial_ms", self.sync.redial_initial_ms),
            ("sync.compact_interval_ms", self.sync.compact_interval_ms),
            ("sync.ack_timeout_ms", self.sync.ack_timeout_ms),
            ("sync.ping_interval_ms", self.sync.ping_interval_ms),
            ("sync.read_timeout_ms", self.sync.read_timeout_ms),
            (
                "sync.max_snapshot_bytes_per_peer",
                self.sync.max_snapshot_bytes_per_peer as u64,
            ),
            (
                "sync.max_snapshot_bytes_total",
                self.sync.max_snapshot_bytes_total as u64,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        let e = &self.engine;
        for (key, v) in [
            ("engine.tick_ms", e.tick_ms),
            ("engine.max_concurrent_calls", e.max_concurrent_calls as u64),
            ("engine.max_queued_services", e.max_queued_services as u64),
            ("engine.retry_initial_ms", e.retry_initial_ms),
            ("engine.copy_poll_initial_ms", e.copy_poll_initial_ms),
            ("engine.dep_check_interval_ms", e.dep_check_interval_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if e.retry_max_ms < e.retry_initial_ms {
            return Err(invalid(
                "engine.retry_max_ms",
                "must be at least engine.retry_initial_ms",
            ));
        }
        if e.copy_poll_max_ms < e.copy_poll_initial_ms {
            return Err(invalid(
                "engine.copy_poll_max_ms",
                "must be at least engine.copy_poll_initial_ms",
            ));
        }
        if !(e.rpo_warning_factor.is_finite() && e.rpo_warning_factor >= 1.0) {
            return Err(invalid(
                "engine.rpo_warning_factor",
                "must be a number of intervals, at least 1",
            ));
        }
        if !(e.rpo_critical_factor.is_finite() && e.rpo_critical_factor >= e.rpo_warning_factor) {
            return Err(invalid(
                "engine.rpo_critical_factor",
                "must be a number of intervals, at least engine.rpo_warning_factor",
            ));
        }
        self.history
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        if self.messages.retention_s > 365 * 24 * 3600 {
            return Err(invalid("messages.retention_s", "must be at most a year"));
        }
        if !(10..=60_000).contains(&self.messages.tick_ms) {
            return Err(invalid("messages.tick_ms", "must be from 10 to 60000"));
        }
        Ok(())
    }

    /// The directory of zone public keys.
    pub fn directory(&self) -> Directory {
        Directory::new(
            self.zones
                .iter()
                .map(|z| (z.id.clone(), z.public_key.0))
                .collect(),
        )
    }

    pub fn zone_entry(&self, zone: &ZoneId) -> Option<&ZoneEntry> {
        self.zones.iter().find(|z| &z.id == zone)
    }

    /// What sync needs of the deployment: this zone, every zone's key and
    /// address, and the sync settings.
    pub fn sync_setup(&self) -> SyncSetup {
        SyncSetup {
            zone: self.zone.clone(),
            zones: self
                .zones
                .iter()
                .map(|z| SyncZone {
                    id: z.id.clone(),
                    public_key: z.public_key.0,
                    sync_addr: z.sync_addr.clone(),
                })
                .collect(),
            config: self.sync.clone(),
        }
    }

    /// What the engine needs of the deployment: this zone, every zone's
    /// StorPool location, and the engine settings.
    pub fn engine_setup(&self) -> EngineSetup {
        EngineSetup {
            zone: self.zone.clone(),
            locations: self
                .zones
                .iter()
                .map(|z| (z.id.clone(), self.storpool_location(&z.id)))
                .collect(),
            config: self.engine.clone(),
        }
    }

    /// The StorPool location name of `zone` (its cluster as seen remotely).
    pub fn storpool_location(&self, zone: &ZoneId) -> String {
        self.zone_entry(zone)
            .and_then(|z| z.storpool_location.clone())
            .unwrap_or_else(|| zone.to_string())
    }
}

/// Parses a hex ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .map_err(|e| format!("not hex: {e}"))?
        .try_into()
        .map_err(|_| "must be 32 bytes (64 hex digits)".to_string())?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not a valid key: {e}"))
}

/// Reads a hex ed25519 secret key file (as written by `drengine keygen`).
pub fn read_signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("key_file", format!("{}: not 64 hex digits", path.display())))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&bytes))
}

/// A fresh secret key, hex encoded, and its public key.
pub fn generate_key() -> (String, String) {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    (
        hex::encode(key.to_bytes()),
        hex::encode(key.verifying_key().to_bytes()),
    )
}
