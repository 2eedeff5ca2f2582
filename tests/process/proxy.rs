//! A TCP fault proxy for the process chaos test: it sits between two zones'
//! sync ports, so a link can be cut and healed for real.
//!
//! Peers authenticate by their libp2p noise keys, so a transparent proxy is
//! invisible to them: a zone's `[[zones]]` entry for a peer names the
//! proxy's port, and the proxy forwards every byte to the peer's real
//! listener. [`Proxy::cut`] closes every forwarded connection at once and
//! refuses new ones (accepted and closed at once, as a dead link answers a
//! handshake) until [`Proxy::heal`].
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One directed TCP forwarder: `listen` → `target`.
pub struct Proxy {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    cut: AtomicBool,
    /// Bumped at every cut: forwarded connections watch it and close.
    epoch: watch::Sender<u64>,
    /// Connections forwarded, and connections refused while cut.
    forwarded: AtomicU64,
    refused: AtomicU64,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let (epoch, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            epoch,
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if s.cut.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::Relaxed);
                    drop(inbound);
                    continue;
                }
                let s = s.clone();
                tokio::spawn(async move { forward(s, inbound, target).await });
            }
        });
        Ok(Proxy {
            listen,
            target,
            shared,
            task,
        })
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Connections forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// The listen address as a libp2p multiaddr, for a zone's config.
    pub fn multiaddr(&self) -> String {
        format!("/ip4/{}/tcp/{}", self.listen.ip(), self.listen.port())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Copies both ways until either side closes or the link is cut.
async fn forward(s: Arc<Shared>, mut inbound: TcpStream, target: SocketAddr) {
    let mut epoch = s.epoch.subscribe();
    epoch.mark_unchanged();
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    // A cut while connecting: do not forward.
    if s.cut.load(Ordering::SeqCst) {
        s.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    s.forwarded.fetch_add(1, Ordering::Relaxed);
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = epoch.changed() => {}
    }
    // Dropping both streams closes them: the peers see the link die.
}
