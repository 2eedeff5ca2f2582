//! Zone-to-zone sync over libp2p.
//!
//! Each node is a libp2p peer whose identity is its zone's ed25519 key (the
//! key that signs its events), so a connection's authenticated peer id names
//! the zone at the other end. Transport: TCP + noise + yamux; identify and
//! ping for liveness and RTT; and our own protocol on streams (`wire`).
//!
//! The code map:
//! - `wire`: the frames and messages, with version and size limit.
//! - `link`: the sending half of a link as a plain state machine (what to
//!   send, one request at a time, never what the peer is known to have).
//! - `session`: the tokio shell that runs a link over a stream, and the
//!   receiving half (ingest, import snapshots, acknowledge).
//! - `net`: the swarm: who may connect (zones of the directory only), who is
//!   dialled and redialled with backoff, and the partition switch.
//!
//! How an event travels: a commit (local write or ingested batch) wakes
//! every outbound session; each asks the store for the events its peer lacks
//! and sends them at once. Every batch carries the sender's version vector,
//! so the receiver knows not to send those events back; the relay onward is
//! the receiver's own commit waking its other sessions.
//!
//! Architecture invariant: nothing here changes state except through `Db`
//! (ingest, import_snapshot); every event is verified there before it is
//! stored, applied or relayed.

mod assembly;
mod config;
mod link;
mod net;
mod session;
mod stats;
pub mod wire;

pub use config::{SyncConfig, SyncSetup, SyncZone};
pub use link::{needs_snapshot, Known, Outbound, Step, Unexpected};
pub use stats::{DropReason, SyncCounters};

use crate::model::ZoneId;
use crate::replica::VersionVector;
use crate::store::Db;
use ed25519_dalek::SigningKey;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use stats::Stats;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

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
    /// The peer's own control links, as its last Hello reported them
    /// (none yet: empty).
    pub links: Vec<wire::LinkReport>,
    /// Milliseconds since that report.
    pub links_reported_ms_ago: Option<u64>,
}

/// Why the sync layer could not start or carry out a request.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error("the signing key does not match zone {zone}'s public key in the directory")]
    KeyMismatch { zone: ZoneId },
    #[error("libp2p: {0}")]
    Transport(String),
    #[error("zone {0} is not in the directory")]
    UnknownZone(ZoneId),
    #[error("zone {0} is not connected")]
    NotConnected(ZoneId),
    #[error("stream to {zone}: {message}")]
    Stream { zone: ZoneId, message: String },
    #[error("the sync layer has stopped")]
    Stopped,
}

fn config_err(key: &str, message: impl ToString) -> SyncError {
    SyncError::Config {
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// Most sync streams one peer may have open to us at once. A well-behaved
/// peer has one (plus a short overlap when it reconnects).
const MAX_INBOUND_STREAMS_PER_PEER: usize = 4;

/// What this node knows about one zone of the directory.
#[derive(Debug, Clone)]
pub(crate) struct PeerEntry {
    peer_id: PeerId,
    /// In `sync.peers` or given an address: we dial it.
    dialled: bool,
    connected: bool,
    rtt_ms: Option<f64>,
    last_seen: Option<Instant>,
    /// What the peer is known to have: from handshakes, acks, and the
    /// version vectors on the batches it sends us.
    known: VersionVector,
    /// The peer's control links as its last Hello reported them, and when.
    links: Option<(Instant, Vec<wire::LinkReport>)>,
}

/// State shared by the swarm task, the sessions and the handle.
pub(crate) struct Shared {
    zone: ZoneId,
    local_peer_id: PeerId,
    db: Db,
    cfg: SyncConfig,
    zones_by_peer: HashMap<PeerId, ZoneId>,
    book: Mutex<BTreeMap<ZoneId, PeerEntry>>,
    blocked: RwLock<BTreeSet<ZoneId>>,
    /// Bumped when our version vector moved without a commit on the feed
    /// (a snapshot import), to wake the outbound sessions.
    changed: watch::Sender<u64>,
    stats: Stats,
    listen_addrs: Mutex<Vec<Multiaddr>>,
    inbound: Mutex<Vec<(ZoneId, JoinHandle<()>)>>,
    /// Bytes of snapshots in reassembly, per peer and in total.
    snapshot_budget: Arc<assembly::Budget>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn zone_of(&self, peer: &PeerId) -> Option<&ZoneId> {
        self.zones_by_peer.get(peer)
    }

    fn is_blocked(&self, zone: &ZoneId) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(zone)
    }

    /// Our control links, for our Hello: every peer we dial or that is
    /// connected.
    fn own_links(&self) -> Vec<wire::LinkReport> {
        lock(&self.book)
            .iter()
            .filter(|(_, e)| e.dialled || e.connected)
            .map(|(zone, e)| wire::LinkReport {
                zone: zone.clone(),
                connected: e.connected,
                rtt_us: e
                    .rtt_ms
                    .filter(|ms| ms.is_finite() && *ms >= 0.0)
                    .map(|ms| (ms * 1000.0).min(f64::from(u32::MAX)) as u32),
            })
            .collect()
    }

    /// Keeps what `zone`'s Hello said of its links: only links to other
    /// zones of the directory, each once, so a peer's report is bounded by
    /// the directory whatever it sends.
    fn note_links(&self, zone: &ZoneId, links: Vec<wire::LinkReport>) {
        let mut book = lock(&self.book);
        let mut kept: Vec<wire::LinkReport> = Vec::new();
        for l in links {
            if kept.len() > book.len() {
                break;
            }
            let known = l.zone == self.zone || book.contains_key(&l.zone);
            if known && &l.zone != zone && !kept.iter().any(|k| k.zone == l.zone) {
                kept.push(l);
            }
        }
        if let Some(e) = book.get_mut(zone) {
            e.links = Some((Instant::now(), kept));
        }
    }

    fn known(&self, zone: &ZoneId) -> VersionVector {
        lock(&self.book)
            .get(zone)
            .map(|e| e.known.clone())
            .unwrap_or_default()
    }

    /// Records what a peer has, for our sends and for compaction.
    fn learn(&self, zone: &ZoneId, update: Known) {
        let vv = {
            let mut book = lock(&self.book);
            let Some(e) = book.get_mut(zone) else { return };
            update.apply(&mut e.known);
            e.last_seen = Some(Instant::now());
            e.known.clone()
        };
        self.db.note_peer_vv(zone, &vv);
    }

    fn update_entry(&self, zone: &ZoneId, f: impl FnOnce(&mut PeerEntry)) {
        if let Some(e) = lock(&self.book).get_mut(zone) {
            f(e);
        }
    }

    /// Our compaction floor. Read from the store each time (a short read
    /// transaction), since anything holding the `Db` may compact.
    fn floor(&self) -> Result<VersionVector, crate::store::StoreError> {
        self.db.store().floor()
    }

    /// Our version vector as the disk has it: all a peer is ever told.
    fn ours(&self) -> VersionVector {
        self.db.durable_vv()
    }

    /// Our durable vector and what we know every zone has (our own entry
    /// the durable vector too), for Hello and Welcome.
    fn vv_and_known(&self) -> (VersionVector, wire::KnownMap) {
        let vv = self.db.durable_vv();
        let mut known = self.db.read(|r| r.known());
        known.insert(self.zone.clone(), vv.clone());
        (vv, known)
    }

    /// Inbound sessions still running, per zone.
    fn inbound_count(&self, zone: &ZoneId) -> usize {
        let mut inbound = lock(&self.inbound);
        inbound.retain(|(_, h)| !h.is_finished());
        inbound.iter().filter(|(z, _)| z == zone).count()
    }
}

/// Commands from the handle to the swarm task.
enum Command {
    SetPeerAddr {
        zone: ZoneId,
        addr: Multiaddr,
        done: oneshot::Sender<()>,
    },
    Block {
        zones: Vec<ZoneId>,
        done: oneshot::Sender<()>,
    },
    Unblock {
        zones: Vec<ZoneId>,
        done: oneshot::Sender<()>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Commands waiting for the swarm task.
const COMMAND_QUEUE_LEN: usize = 64;

/// How long `start` waits for the listener to be bound.
const LISTEN_TIMEOUT_MS: u64 = 5_000;

/// The running sync layer: a cloneable handle for the API, metrics, the
/// node and tests.
#[derive(Clone)]
pub struct SyncHandle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
}

/// The entry point of the sync layer.
pub struct Sync;

impl Sync {
    /// Starts the node's networking: listens on `sync.listen`, dials the
    /// configured peers, accepts the zones of the directory, and keeps every
    /// connected peer in sync with `db`. Returns once the listener is bound,
    /// so [`SyncHandle::listen_addrs`] gives the real port.
    pub async fn start(
        setup: &SyncSetup,
        key: SigningKey,
        db: Db,
    ) -> Result<SyncHandle, SyncError> {
        let cfg = setup.config.clone();
        let zone = setup.zone.clone();
        let mut zones_by_peer = HashMap::new();
        let mut book = BTreeMap::new();
        let mut local_peer_id = None;
        for (i, z) in setup.zones.iter().enumerate() {
            let key_name = format!("zones[{i}].public_key");
            let vk = z.public_key;
            let peer_id = peer_id_of(&vk).map_err(|m| config_err(&key_name, m))?;
            if z.id == zone {
                if vk != key.verifying_key() {
                    return Err(SyncError::KeyMismatch { zone });
                }
                local_peer_id = Some(peer_id);
                continue;
            }
            zones_by_peer.insert(peer_id, z.id.clone());
            book.insert(
                z.id.clone(),
                PeerEntry {
                    peer_id,
                    dialled: cfg.peers.contains(&z.id),
                    connected: false,
                    rtt_ms: None,
                    last_seen: None,
                    known: VersionVector::new(),
                    links: None,
                },
            );
        }
        let local_peer_id = local_peer_id.ok_or_else(|| config_err("zone", "not in [[zones]]"))?;
        let mut addrs = BTreeMap::new();
        for (i, z) in setup.zones.iter().enumerate() {
            if let (true, Some(a)) = (cfg.peers.contains(&z.id), &z.sync_addr) {
                let addr: Multiaddr = a
                    .parse()
                    .map_err(|e| config_err(&format!("zones[{i}].sync_addr"), e))?;
                addrs.insert(z.id.clone(), addr);
            }
        }
        let listen: Multiaddr = cfg
            .listen
            .parse()
            .map_err(|e| config_err("sync.listen", e))?;
        let shared = Arc::new(Shared {
            zone,
            local_peer_id,
            db,
            zones_by_peer,
            book: Mutex::new(book),
            blocked: RwLock::new(BTreeSet::new()),
            changed: watch::channel(0).0,
            stats: Stats::default(),
            listen_addrs: Mutex::new(Vec::new()),
            inbound: Mutex::new(Vec::new()),
            snapshot_budget: assembly::Budget::new(
                cfg.max_snapshot_bytes_per_peer,
                cfg.max_snapshot_bytes_total,
            ),
            cfg,
        });
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_LEN);
        let control = net::start(shared.clone(), &key, listen, addrs, rx).await?;
        Ok(SyncHandle {
            shared,
            commands,
            control,
        })
    }
}

/// The libp2p peer id of a zone's public key.
pub fn peer_id_of(key: &ed25519_dalek::VerifyingKey) -> Result<PeerId, String> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

impl SyncHandle {
    /// This node's libp2p peer id (derived from the zone's key).
    pub fn local_peer_id(&self) -> PeerId {
        self.shared.local_peer_id
    }

    /// The addresses the node listens on, with the real port when the
    /// configuration asked for port 0.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        lock(&self.shared.listen_addrs).clone()
    }

    /// Every peer we dial or are connected to, with how far it is behind
    /// or ahead of us.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let ours = self.shared.ours();
        let now = Instant::now();
        lock(&self.shared.book)
            .iter()
            .filter(|(_, e)| e.dialled || e.connected || e.last_seen.is_some())
            .map(|(zone, e)| PeerStatus {
                zone: zone.clone(),
                connected: e.connected,
                rtt_ms: e.rtt_ms,
                their_vv: e.known.clone(),
                behind_events: e.known.missing_from(&ours),
                ahead_events: ours.missing_from(&e.known),
                last_seen_ms_ago: e
                    .last_seen
                    .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                links: e.links.as_ref().map(|(_, l)| l.clone()).unwrap_or_default(),
                links_reported_ms_ago: e
                    .links
                    .as_ref()
                    .map(|(t, _)| now.saturating_duration_since(*t).as_millis() as u64),
            })
            .collect()
    }

    /// The sync counters (drops per reason, bytes, events), for metrics.
    pub fn counters(&self) -> SyncCounters {
        self.shared.stats.read()
    }

    async fn command(
        &self,
        make: impl FnOnce(oneshot::Sender<()>) -> Command,
    ) -> Result<(), SyncError> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(make(done))
            .await
            .map_err(|_| SyncError::Stopped)?;
        rx.await.map_err(|_| SyncError::Stopped)
    }

    /// Sets the address `zone` is dialled at and dials it (and redials it
    /// from then on). For nodes whose peers listen on ports known only at
    /// run time: tests and the devnet.
    pub async fn set_peer_addr(&self, zone: &ZoneId, addr: Multiaddr) -> Result<(), SyncError> {
        if !lock(&self.shared.book).contains_key(zone) {
            return Err(SyncError::UnknownZone(zone.clone()));
        }
        let zone = zone.clone();
        self.command(|done| Command::SetPeerAddr { zone, addr, done })
            .await
    }

    /// The partition switch (for tests and drills): disconnects `zones`,
    /// refuses their connections and stops dialling them until unblocked.
    pub async fn block(&self, zones: &[ZoneId]) -> Result<(), SyncError> {
        let zones = zones.to_vec();
        self.command(|done| Command::Block { zones, done }).await
    }

    /// Ends a [`SyncHandle::block`]: the zones are dialled and accepted again.
    pub async fn unblock(&self, zones: &[ZoneId]) -> Result<(), SyncError> {
        let zones = zones.to_vec();
        self.command(|done| Command::Unblock { zones, done }).await
    }

    /// Stops every task of the sync layer and closes its connections. When
    /// it returns no sync task runs; the `Db` is released once the clones
    /// of this handle are dropped too.
    pub async fn shutdown(&self) {
        // Already stopped is fine: shutdown is idempotent.
        let _ = self.command(|done| Command::Shutdown { done }).await;
    }

    /// Opens a fresh sync stream to `zone` and hands it over as it is, to
    /// write and read anything, at any pace. For tests of how peers treat
    /// streams that stall.
    #[doc(hidden)]
    pub async fn open_raw(&self, zone: &ZoneId) -> Result<libp2p::Stream, SyncError> {
        let peer_id = lock(&self.shared.book)
            .get(zone)
            .map(|e| e.peer_id)
            .ok_or_else(|| SyncError::UnknownZone(zone.clone()))?;
        let mut control = self.control.clone();
        control
            .open_stream(peer_id, net::protocol())
            .await
            .map_err(|e| SyncError::Stream {
                zone: zone.clone(),
                message: e.to_string(),
            })
    }

    /// Opens a fresh sync stream to `zone`, writes each of `frames` (raw
    /// bytes, framing included, so anything can be sent) and reads one
    /// answer after each. For tests of how peers treat bad input.
    #[doc(hidden)]
    pub async fn exchange_raw(
        &self,
        zone: &ZoneId,
        frames: Vec<Vec<u8>>,
    ) -> Result<Vec<wire::Msg>, SyncError> {
        let peer_id = lock(&self.shared.book)
            .get(zone)
            .map(|e| e.peer_id)
            .ok_or_else(|| SyncError::UnknownZone(zone.clone()))?;
        let stream_err = |e: &dyn std::fmt::Display| SyncError::Stream {
            zone: zone.clone(),
            message: e.to_string(),
        };
        let mut control = self.control.clone();
        let mut stream = control
            .open_stream(peer_id, net::protocol())
            .await
            .map_err(|e| stream_err(&e))?;
        let timeout = Duration::from_millis(self.shared.cfg.ack_timeout_ms);
        let mut answers = Vec::new();
        for frame in frames {
            wire::write_raw(&mut stream, &frame)
                .await
                .map_err(|e| stream_err(&e))?;
            let read = tokio::time::timeout(
                timeout,
                wire::read_frame(&mut stream, self.shared.cfg.max_message_bytes),
            )
            .await
            .map_err(|e| stream_err(&e))?
            .map_err(|e| stream_err(&e))?;
            match read {
                wire::Read::Msg { msg, .. } => answers.push(msg),
                wire::Read::Bad { error, .. } => return Err(stream_err(&error)),
                wire::Read::Eof => return Err(stream_err(&"stream closed")),
            }
        }
        Ok(answers)
    }
}
