//! The swarm: transport, who may connect, dialling with backoff, the
//! partition switch, and the tasks of the sync layer.
//!
//! One task owns the swarm and reacts to its events and to the handle's
//! commands. It starts one outbound session per connected zone; a second
//! task accepts the peers' streams and starts their inbound sessions.

use super::session;
use super::stats::DropReason;
use super::{lock, Command, Shared, SyncError, LISTEN_TIMEOUT_MS, MAX_INBOUND_STREAMS_PER_PEER};
use crate::model::ZoneId;
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use libp2p::core::{transport::PortUse, Endpoint};
use libp2p::swarm::{
    dial_opts::{DialOpts, PeerCondition},
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, SwarmEvent, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{identify, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Connections stay open while idle this long; our sessions are long-lived
/// and ping keeps checking them.
const IDLE_CONNECTION_TIMEOUT_MS: u64 = 3_600_000;

/// The protocol string identify announces.
const IDENTIFY_PROTOCOL: &str = "/drengine/id/1";

pub(crate) fn protocol() -> StreamProtocol {
    StreamProtocol::new(super::wire::PROTOCOL)
}

/// Refuses every connection from or to a peer id that is not a zone of the
/// directory, or that the partition switch blocks. It decides on the
/// authenticated peer id, so no byte of our protocol reaches a stranger.
struct Gate {
    shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("peer {0} is not a zone of the directory")]
    Unknown(PeerId),
    #[error("zone {0} is blocked")]
    Blocked(ZoneId),
}

impl Gate {
    fn check(&self, peer: PeerId, addr: &Multiaddr) -> Result<(), ConnectionDenied> {
        let shared = &self.shared;
        match shared.zone_of(&peer) {
            None => {
                tracing::warn!(zone = %shared.zone, %peer, %addr, "refused a connection from a peer not in the zone directory");
                shared.stats.drop(DropReason::UnknownPeer, 1);
                Err(ConnectionDenied::new(Refused::Unknown(peer)))
            }
            Some(z) if shared.is_blocked(z) => {
                tracing::info!(zone = %shared.zone, peer_zone = %z, %addr, "refused a connection: zone is blocked");
                shared.stats.drop(DropReason::Blocked, 1);
                Err(ConnectionDenied::new(Refused::Blocked(z.clone())))
            }
            Some(_) => Ok(()),
        }
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer, remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(z) = peer.as_ref().and_then(|p| self.shared.zone_of(p)) {
            if self.shared.is_blocked(z) {
                return Err(ConnectionDenied::new(Refused::Blocked(z.clone())));
            }
        }
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer, addr)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    gate: Gate,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// Dialling state of one peer.
struct Dial {
    addr: Option<Multiaddr>,
    backoff_ms: u64,
    next_at: Option<Instant>,
}

/// Builds the swarm, binds the listener, starts the tasks. Returns the
/// stream control the handle uses.
pub(crate) async fn start(
    shared: Arc<Shared>,
    key: &SigningKey,
    listen: Multiaddr,
    addrs: BTreeMap<ZoneId, Multiaddr>,
    commands: mpsc::Receiver<Command>,
) -> Result<libp2p_stream::Control, SyncError> {
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(key.to_bytes())
        .map_err(|e| SyncError::Transport(format!("zone key: {e}")))?;
    let cfg = &shared.cfg;
    let ping_interval = Duration::from_millis(cfg.ping_interval_ms);
    let gate_shared = shared.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SyncError::Transport(e.to_string()))?
        .with_dns()
        .map_err(|e| SyncError::Transport(e.to_string()))?
        .with_behaviour(|key| Behaviour {
            gate: Gate {
                shared: gate_shared,
            },
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.to_string(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(ping_interval)),
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(|e| SyncError::Transport(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_millis(IDLE_CONNECTION_TIMEOUT_MS))
        })
        .build();
    swarm
        .listen_on(listen.clone())
        .map_err(|e| SyncError::Transport(format!("listen on {listen}: {e}")))?;
    // Wait for the bound address, so callers can hand it to peers.
    let deadline = Instant::now() + Duration::from_millis(LISTEN_TIMEOUT_MS);
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => {
                lock(&shared.listen_addrs).push(address);
                break;
            }
            Ok(SwarmEvent::ListenerError { error, .. }) => {
                return Err(SyncError::Transport(format!("listen on {listen}: {error}")))
            }
            Ok(SwarmEvent::ListenerClosed { reason, .. }) => {
                return Err(SyncError::Transport(format!(
                    "listen on {listen}: closed: {reason:?}"
                )))
            }
            Ok(_) => {}
            Err(_) => {
                return Err(SyncError::Transport(format!(
                    "listen on {listen}: no address after {LISTEN_TIMEOUT_MS} ms"
                )))
            }
        }
    }
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(protocol())
        .map_err(|e| SyncError::Transport(e.to_string()))?;
    let acceptor = tokio::spawn(accept_loop(shared.clone(), incoming));
    let compactor = tokio::spawn(compact_loop(shared.clone()));
    let now = Instant::now();
    let dials: BTreeMap<ZoneId, Dial> = lock(&shared.book)
        .iter()
        .filter(|(_, e)| e.dialled)
        .map(|(z, _)| {
            let addr = addrs.get(z).cloned();
            let next_at = addr.as_ref().map(|_| now);
            (
                z.clone(),
                Dial {
                    addr,
                    backoff_ms: cfg.redial_initial_ms,
                    next_at,
                },
            )
        })
        .collect();
    tracing::info!(zone = %shared.zone, peer_id = %shared.local_peer_id, addrs = ?lock(&shared.listen_addrs), "sync listening");
    for (z, d) in &dials {
        if d.addr.is_none() {
            tracing::warn!(zone = %shared.zone, peer_zone = %z, "configured peer has no sync_addr; waiting for it to dial us");
        }
    }
    let net = Net {
        shared,
        swarm,
        control: control.clone(),
        dials,
        outbound: BTreeMap::new(),
        background: vec![acceptor, compactor],
    };
    tokio::spawn(net.run(commands));
    Ok(control)
}

struct Net {
    shared: Arc<Shared>,
    swarm: Swarm<Behaviour>,
    control: libp2p_stream::Control,
    dials: BTreeMap<ZoneId, Dial>,
    outbound: BTreeMap<ZoneId, JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Net {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let next_dial = self.dials.values().filter_map(|d| d.next_at).min();
            let sleep = async {
                match next_dial {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown { done }) => {
                        self.stop().await;
                        // The caller may have gone; nothing to tell then.
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.stop().await;
                        return;
                    }
                },
                _ = sleep => self.dial_due(),
            }
        }
    }

    async fn stop(&mut self) {
        tracing::info!(zone = %self.shared.zone, "sync stopping");
        let mut handles: Vec<JoinHandle<()>> = std::mem::take(&mut self.background);
        handles.extend(std::mem::take(&mut self.outbound).into_values());
        handles.extend(lock(&self.shared.inbound).drain(..).map(|(_, h)| h));
        for h in &handles {
            h.abort();
        }
        for h in handles {
            // An aborted task ends with a cancellation error: expected.
            let _ = h.await;
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SetPeerAddr { zone, addr, done } => {
                self.shared.update_entry(&zone, |e| e.dialled = true);
                let initial = self.shared.cfg.redial_initial_ms;
                let d = self.dials.entry(zone).or_insert(Dial {
                    addr: None,
                    backoff_ms: initial,
                    next_at: None,
                });
                d.addr = Some(addr);
                d.backoff_ms = initial;
                d.next_at = Some(Instant::now());
                let _ = done.send(());
            }
            Command::Block { zones, done } => {
                {
                    let mut blocked = self
                        .shared
                        .blocked
                        .write()
                        .unwrap_or_else(|p| p.into_inner());
                    blocked.extend(zones.iter().cloned());
                }
                for z in &zones {
                    tracing::info!(zone = %self.shared.zone, peer_zone = %z, "blocking peer");
                    self.end_sessions(z);
                    if let Some(pid) = self.peer_id(z) {
                        let _ = self.swarm.disconnect_peer_id(pid);
                    }
                    if let Some(d) = self.dials.get_mut(z) {
                        d.next_at = None;
                    }
                }
                let _ = done.send(());
            }
            Command::Unblock { zones, done } => {
                {
                    let mut blocked = self
                        .shared
                        .blocked
                        .write()
                        .unwrap_or_else(|p| p.into_inner());
                    for z in &zones {
                        blocked.remove(z);
                    }
                }
                let initial = self.shared.cfg.redial_initial_ms;
                for z in &zones {
                    tracing::info!(zone = %self.shared.zone, peer_zone = %z, "unblocking peer");
                    if let Some(d) = self.dials.get_mut(z) {
                        d.backoff_ms = initial;
                        if d.addr.is_some() {
                            d.next_at = Some(Instant::now());
                        }
                    }
                }
                let _ = done.send(());
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn peer_id(&self, zone: &ZoneId) -> Option<PeerId> {
        lock(&self.shared.book).get(zone).map(|e| e.peer_id)
    }

    /// Aborts every session with `zone`.
    fn end_sessions(&mut self, zone: &ZoneId) {
        if let Some(h) = self.outbound.remove(zone) {
            h.abort();
        }
        for (z, h) in lock(&self.shared.inbound).iter() {
            if z == zone {
                h.abort();
            }
        }
    }

    fn dial_due(&mut self) {
        let now = Instant::now();
        let due: Vec<ZoneId> = self
            .dials
            .iter()
            .filter(|(_, d)| d.next_at.is_some_and(|t| t <= now))
            .map(|(z, _)| z.clone())
            .collect();
        for zone in due {
            let Some(d) = self.dials.get_mut(&zone) else {
                continue;
            };
            d.next_at = None;
            let Some(addr) = d.addr.clone() else { continue };
            if self.shared.is_blocked(&zone) {
                continue;
            }
            let Some(peer) = lock(&self.shared.book).get(&zone).map(|e| e.peer_id) else {
                continue;
            };
            if self.swarm.is_connected(&peer) {
                continue;
            }
            tracing::debug!(zone = %self.shared.zone, peer_zone = %zone, %addr, "dialling");
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(zone = %self.shared.zone, peer_zone = %zone, error = %e, "dial not started");
                self.schedule_redial(&zone);
            }
        }
    }

    /// Plans the next dial of `zone` after the current backoff, and doubles
    /// the backoff (up to `redial_max_ms`).
    fn schedule_redial(&mut self, zone: &ZoneId) {
        if self.shared.is_blocked(zone) {
            return;
        }
        let max = self.shared.cfg.redial_max_ms;
        if let Some(d) = self.dials.get_mut(zone) {
            if d.addr.is_none() || d.next_at.is_some() {
                return;
            }
            d.next_at = Some(Instant::now() + Duration::from_millis(d.backoff_ms));
            d.backoff_ms = (d.backoff_ms.saturating_mul(2)).min(max.max(1));
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        let local = self.shared.zone.clone();
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                lock(&self.shared.listen_addrs).push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let Some(zone) = self.shared.zone_of(&peer_id).cloned() else {
                    return;
                };
                tracing::info!(zone = %local, peer_zone = %zone, addr = %endpoint.get_remote_address(), "connected");
                self.shared.update_entry(&zone, |e| {
                    e.connected = true;
                    e.last_seen = Some(std::time::Instant::now());
                });
                if let Some(d) = self.dials.get_mut(&zone) {
                    d.backoff_ms = self.shared.cfg.redial_initial_ms;
                    d.next_at = None;
                }
                let running = self.outbound.get(&zone).is_some_and(|h| !h.is_finished());
                if !running {
                    let h = tokio::spawn(session::run_outbound(
                        self.shared.clone(),
                        zone.clone(),
                        peer_id,
                        self.control.clone(),
                    ));
                    self.outbound.insert(zone, h);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                let Some(zone) = self.shared.zone_of(&peer_id).cloned() else {
                    return;
                };
                if num_established > 0 {
                    return;
                }
                tracing::info!(zone = %local, peer_zone = %zone, cause = ?cause, "disconnected");
                self.shared.update_entry(&zone, |e| {
                    e.connected = false;
                    e.rtt_ms = None;
                });
                self.end_sessions(&zone);
                self.schedule_redial(&zone);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                let Some(zone) = peer_id.and_then(|p| self.shared.zone_of(&p).cloned()) else {
                    return;
                };
                tracing::debug!(zone = %local, peer_zone = %zone, error = %error, "dial failed");
                if let Some(p) = peer_id {
                    if self.swarm.is_connected(&p) {
                        return;
                    }
                }
                self.schedule_redial(&zone);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(zone = %local, addr = %send_back_addr, error = %error, "incoming connection failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                let Some(zone) = self.shared.zone_of(&peer).cloned() else {
                    return;
                };
                match result {
                    Ok(rtt) => self.shared.update_entry(&zone, |e| {
                        e.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                        e.last_seen = Some(std::time::Instant::now());
                    }),
                    Err(ping::Failure::Timeout) => {
                        // A link that stopped answering is as good as gone:
                        // close it, so the redial (and its backoff) starts.
                        tracing::warn!(zone = %local, peer_zone = %zone, "ping timed out; closing the connection");
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                    Err(e) => {
                        tracing::debug!(zone = %local, peer_zone = %zone, error = %e, "ping failed")
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != IDENTIFY_PROTOCOL {
                    tracing::warn!(zone = %local, peer = %peer_id, version = %info.protocol_version, "peer speaks another identify protocol version");
                } else {
                    tracing::debug!(zone = %local, peer = %peer_id, agent = %info.agent_version, "identified");
                }
            }
            _ => {}
        }
    }
}

/// Accepts the peers' sync streams and starts an inbound session for each.
async fn accept_loop(shared: Arc<Shared>, mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((peer, stream)) = incoming.next().await {
        let Some(zone) = shared.zone_of(&peer).cloned() else {
            // The gate refuses such connections; a stream cannot get here.
            shared.stats.drop(DropReason::UnknownPeer, 1);
            continue;
        };
        if shared.is_blocked(&zone) {
            shared.stats.drop(DropReason::Blocked, 1);
            continue;
        }
        if shared.inbound_count(&zone) >= MAX_INBOUND_STREAMS_PER_PEER {
            tracing::warn!(zone = %shared.zone, peer_zone = %zone, "too many sync streams from peer; dropping one");
            shared.stats.drop(DropReason::Unexpected, 1);
            continue;
        }
        let h = tokio::spawn(session::run_inbound(shared.clone(), zone.clone(), stream));
        lock(&shared.inbound).push((zone, h));
    }
}

/// Compacts the log every `compact_interval_ms`.
async fn compact_loop(shared: Arc<Shared>) {
    let period = Duration::from_millis(shared.cfg.compact_interval_ms);
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match shared.db.compact().await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(zone = %shared.zone, events = n, "compacted the event log");
                }
            }
            Err(e) => tracing::warn!(zone = %shared.zone, error = %e, "compaction failed"),
        }
    }
}
