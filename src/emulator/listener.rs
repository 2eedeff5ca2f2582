//! A TCP listener that can stop answering, for the "cluster is down" faults.
//!
//! * `Refuse`: the listening socket is closed, so new connections are refused by the
//!   kernel; connections already open are reset on their next read or write.
//! * `Hang`: connections are accepted and requests are held (see the API handler).
//!
//! When the cluster is enabled again the socket is bound anew on the same address.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Whether a cluster answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownMode {
    /// Normal service.
    #[default]
    Up,
    /// Accept connections but never answer API requests (until back up).
    Hang,
    /// Refuse connections and reset open ones (until back up).
    Refuse,
}

/// Accepts connections for one cluster, honouring its [`DownMode`].
pub struct ClusterListener {
    addr: SocketAddr,
    inner: Option<TcpListener>,
    down: watch::Receiver<DownMode>,
    /// Bumped every time the cluster starts refusing; streams from an older epoch are reset.
    epoch: Arc<AtomicU64>,
}

impl ClusterListener {
    /// Wraps a bound listener.
    pub fn new(
        inner: TcpListener,
        down: watch::Receiver<DownMode>,
        epoch: Arc<AtomicU64>,
    ) -> io::Result<Self> {
        Ok(ClusterListener {
            addr: inner.local_addr()?,
            inner: Some(inner),
            down,
            epoch,
        })
    }
}

async fn changed_or_pending(rx: &mut watch::Receiver<DownMode>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl axum::serve::Listener for ClusterListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let mode = *self.down.borrow_and_update();
            if mode == DownMode::Refuse {
                if self.inner.take().is_some() {
                    tracing::info!(addr = %self.addr, "cluster refusing connections");
                }
                changed_or_pending(&mut self.down).await;
                continue;
            }
            let listener = match &self.inner {
                Some(l) => l,
                None => match TcpListener::bind(self.addr).await {
                    Ok(l) => {
                        tracing::info!(addr = %self.addr, "cluster accepting connections again");
                        self.inner.insert(l)
                    }
                    Err(e) => {
                        tracing::warn!(addr = %self.addr, error = %e, "cannot re-bind, retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let epoch = self.epoch.load(Ordering::SeqCst);
                        return (KillableStream { inner: stream, epoch, current: self.epoch.clone() }, peer);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = changed_or_pending(&mut self.down) => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A TCP stream that fails with `ConnectionReset` once its cluster has started refusing.
pub struct KillableStream {
    inner: TcpStream,
    epoch: u64,
    current: Arc<AtomicU64>,
}

impl KillableStream {
    fn killed(&self) -> bool {
        self.current.load(Ordering::SeqCst) != self.epoch
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "emulated cluster is down")
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed() {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
