//! Counters of the sync layer, for `/metrics` and tests: what was dropped
//! and why, and how much went over the wire.

use crate::replica::EventError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why input from the network was dropped. Every drop is logged with its
/// reason and counted here; none of them closes a healthy connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// A connection from a peer id that is not a zone of the directory.
    UnknownPeer,
    /// A connection or stream from a zone blocked by the partition switch.
    Blocked,
    /// A frame over `max_message_bytes`.
    Oversized,
    /// A frame that does not decode.
    Malformed,
    /// A frame of another protocol version.
    Version,
    /// A message that makes no sense where it came (a Hello naming another
    /// zone, an answer nobody asked for).
    Unexpected,
    /// An event whose signature does not verify (forged, altered, unsigned).
    BadSignature,
    /// An event from a zone not in the directory.
    UnknownOrigin,
    /// An event that verifies but is malformed (seq 0, bad deps).
    MalformedEvent,
    /// An event that does not decode or is over the event size limit.
    EventDecode,
    /// An authentic event whose op the ownership rules refuse. It is still
    /// delivered (the seq moves on) but changes nothing.
    Rejected,
    /// An event we already had (replayed or sent twice).
    Duplicate,
    /// An early event that found the waiting buffer full.
    BufferFull,
    /// A snapshot that does not decode.
    SnapshotMalformed,
    /// A snapshot we did not ask for: we were not behind the sender's
    /// compaction floor (as its Hello on that stream said).
    SnapshotUnsolicited,
    /// A snapshot that does not prove itself: an event not signed by its
    /// origin, a vector entry not backed by its zone's own event, a value
    /// the rules refuse.
    SnapshotForged,
    /// A snapshot part over `max_snapshot_bytes`, or over the bytes the
    /// peer (`max_snapshot_bytes_per_peer`) or all peers
    /// (`max_snapshot_bytes_total`) may have in reassembly.
    SnapshotOverBudget,
    /// A stream that stopped inside a frame or a snapshot for longer than
    /// `read_timeout_ms`: closed, and what it held dropped.
    Stalled,
}

impl DropReason {
    pub const ALL: [DropReason; 18] = [
        DropReason::UnknownPeer,
        DropReason::Blocked,
        DropReason::Oversized,
        DropReason::Malformed,
        DropReason::Version,
        DropReason::Unexpected,
        DropReason::BadSignature,
        DropReason::UnknownOrigin,
        DropReason::MalformedEvent,
        DropReason::EventDecode,
        DropReason::Rejected,
        DropReason::Duplicate,
        DropReason::BufferFull,
        DropReason::SnapshotMalformed,
        DropReason::SnapshotUnsolicited,
        DropReason::SnapshotForged,
        DropReason::SnapshotOverBudget,
        DropReason::Stalled,
    ];

    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Blocked => "blocked",
            DropReason::Oversized => "oversized",
            DropReason::Malformed => "malformed",
            DropReason::Version => "version",
            DropReason::Unexpected => "unexpected",
            DropReason::BadSignature => "bad_signature",
            DropReason::UnknownOrigin => "unknown_origin",
            DropReason::MalformedEvent => "malformed_event",
            DropReason::EventDecode => "event_decode",
            DropReason::Rejected => "rejected",
            DropReason::Duplicate => "duplicate",
            DropReason::BufferFull => "buffer_full",
            DropReason::SnapshotMalformed => "snapshot_malformed",
            DropReason::SnapshotUnsolicited => "snapshot_unsolicited",
            DropReason::SnapshotForged => "snapshot_forged",
            DropReason::SnapshotOverBudget => "snapshot_over_budget",
            DropReason::Stalled => "stalled",
        }
    }

    /// The reason an event was refused by the replica.
    pub fn of_event_error(e: &EventError) -> DropReason {
        match e {
            EventError::UnknownOrigin(_) => DropReason::UnknownOrigin,
            EventError::BadSignature(_) => DropReason::BadSignature,
            EventError::Malformed(..) => DropReason::MalformedEvent,
            EventError::Decode(_) | EventError::TooLarge(_) => DropReason::EventDecode,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The live counters, shared by every task of the sync layer.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    dropped: [AtomicU64; DropReason::ALL.len()],
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    events_sent: AtomicU64,
    events_received: AtomicU64,
    snapshots_sent: AtomicU64,
    snapshots_imported: AtomicU64,
}

impl Stats {
    pub fn drop(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Ordering::Relaxed);
    }
    pub fn sent(&self, bytes: usize, events: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.events_sent.fetch_add(events as u64, Ordering::Relaxed);
    }
    pub fn received(&self, bytes: usize, events: usize) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.events_received
            .fetch_add(events as u64, Ordering::Relaxed);
    }
    pub fn snapshot_sent(&self) {
        self.snapshots_sent.fetch_add(1, Ordering::Relaxed);
    }
    pub fn snapshot_imported(&self) {
        self.snapshots_imported.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> SyncCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SyncCounters {
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), get(&self.dropped[r.index()])))
                .collect(),
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            events_sent: get(&self.events_sent),
            events_received: get(&self.events_received),
            snapshots_sent: get(&self.snapshots_sent),
            snapshots_imported: get(&self.snapshots_imported),
        }
    }
}

/// A reading of the sync counters (monotonic since start), for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounters {
    /// Input dropped, per reason label (every reason is present).
    pub dropped: BTreeMap<String, u64>,
    /// Frame bytes written to / read from sync streams (payload and framing,
    /// not noise/yamux/TCP overhead).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Events sent in batches / received in batches (before verification).
    pub events_sent: u64,
    pub events_received: u64,
    pub snapshots_sent: u64,
    pub snapshots_imported: u64,
}

impl SyncCounters {
    /// The count for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.as_str()).copied().unwrap_or(0)
    }
}
