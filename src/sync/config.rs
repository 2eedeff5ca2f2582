//! Sync's configuration (the `[sync]` table) and what it needs of the
//! deployment, which the node assembles.

use crate::model::ZoneId;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

/// What sync needs to start: this zone, the zones of the directory (each
/// key parsed already) and the settings.
#[derive(Debug, Clone)]
pub struct SyncSetup {
    pub zone: ZoneId,
    pub zones: Vec<SyncZone>,
    pub config: SyncConfig,
}

/// A zone of the directory as sync sees it.
#[derive(Debug, Clone)]
pub struct SyncZone {
    pub id: ZoneId,
    pub public_key: VerifyingKey,
    /// Its libp2p multiaddr, needed for zones this node dials.
    pub sync_addr: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// libp2p listen multiaddr.
    pub listen: String,
    /// Zones this node keeps a control link to (dials and accepts).
    pub peers: Vec<ZoneId>,
    pub anti_entropy_interval_ms: u64,
    pub redial_initial_ms: u64,
    pub redial_max_ms: u64,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
    pub max_message_bytes: usize,
    /// How often the log is compacted below what every zone has.
    pub compact_interval_ms: u64,
    /// How long a sync request (a batch, a snapshot) may wait for its
    /// answer before the session is restarted.
    pub ack_timeout_ms: u64,
    /// How often peers are pinged (liveness and RTT).
    pub ping_interval_ms: u64,
    /// Largest state snapshot sent to or accepted from a peer (it travels
    /// in parts of `max_batch_bytes`).
    pub max_snapshot_bytes: usize,
    /// Most bytes of snapshots in reassembly one peer may make this node
    /// hold, across all its streams. A part beyond it is refused
    /// (`snapshot_over_budget`) and that snapshot dropped.
    pub max_snapshot_bytes_per_peer: usize,
    /// Most bytes of snapshots in reassembly from all peers together.
    pub max_snapshot_bytes_total: usize,
    /// How long a peer's inbound stream may stall: a frame, once begun,
    /// must be whole within it, and while a snapshot is being reassembled
    /// its next part must begin within it. Past it the stream is closed and
    /// what it held dropped (`stalled`); the sender's session reopens.
    pub read_timeout_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            listen: "/ip4/127.0.0.1/tcp/7200".into(),
            peers: Vec::new(),
            anti_entropy_interval_ms: 5_000,
            redial_initial_ms: 200,
            redial_max_ms: 10_000,
            max_batch_events: 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            compact_interval_ms: 60_000,
            ack_timeout_ms: 30_000,
            ping_interval_ms: 2_000,
            max_snapshot_bytes: 1 << 30,
            max_snapshot_bytes_per_peer: 1 << 30,
            max_snapshot_bytes_total: 1 << 30,
            read_timeout_ms: 30_000,
        }
    }
}
