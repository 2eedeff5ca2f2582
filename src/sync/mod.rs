//! Zone-to-zone sync over libp2p. See the submodules for the protocol.

use crate::model::ZoneId;
use crate::replica::VersionVector;
use serde::{Deserialize, Serialize};

/// What the API shows about one configured peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub zone: ZoneId,
    pub connected: bool,
    /// Round-trip time from libp2p ping, milliseconds.
    pub rtt_ms: Option<f64>,
    /// The peer's version vector as last reported.
    pub their_vv: VersionVector,
    /// Events we have that the peer is not known to have.
    pub behind_events: u64,
    /// Events the peer has that we lack.
    pub ahead_events: u64,
    /// Milliseconds since we last heard from the peer.
    pub last_seen_ms_ago: Option<u64>,
}
