//! A TCP listener that can stop answering, for the "cluster is down" faults.
//!
//! * `Refuse`: the listening socket is closed, so new connections are refused by the
//!   kernel, and connections already open are shut down.
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
use tokio::sync::{oneshot, watch};

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
    open: Arc<AtomicU64>,
}

impl ClusterListener {
    /// Wraps a bound listener; `open` counts the connections currently open.
    pub fn new(
        inner: TcpListener,
        down: watch::Receiver<DownMode>,
        open: Arc<AtomicU64>,
    ) -> io::Result<Self> {
        Ok(ClusterListener {
            addr: inner.local_addr()?,
            inner: Some(inner),
            down,
            open,
        })
    }
}

async fn changed_or_pending(rx: &mut watch::Receiver<DownMode>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Returns once the cluster is in `Refuse` mode.
async fn refusing(mut rx: watch::Receiver<DownMode>) {
    while *rx.borrow_and_update() != DownMode::Refuse {
        changed_or_pending(&mut rx).await;
    }
}

/// Wraps an accepted connection so that it is shut down as soon as its cluster starts refusing,
/// as if the API process had died: idle keep-alive connections close at once, in-flight
/// requests get no answer.
fn watch_connection(
    stream: TcpStream,
    down: watch::Receiver<DownMode>,
    open: Arc<AtomicU64>,
) -> io::Result<WatchedStream> {
    let std_stream = stream.into_std()?;
    let killer = std_stream.try_clone()?;
    let stream = TcpStream::from_std(std_stream)?;
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            // The connection ended normally: its sender was dropped.
            _ = closed_rx => {}
            _ = refusing(down) => { let _ = killer.shutdown(std::net::Shutdown::Both); }
        }
    });
    open.fetch_add(1, Ordering::SeqCst);
    Ok(WatchedStream {
        inner: stream,
        _closed: closed_tx,
        open,
    })
}

impl axum::serve::Listener for ClusterListener {
    type Io = WatchedStream;
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
                        match watch_connection(stream, self.down.clone(), self.open.clone()) {
                            Ok(s) => return (s, peer),
                            Err(e) => tracing::warn!(error = %e, "cannot watch a connection; dropped"),
                        }
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

/// An accepted connection; dropping it ends its watcher.
pub struct WatchedStream {
    inner: TcpStream,
    _closed: oneshot::Sender<()>,
    open: Arc<AtomicU64>,
}

impl Drop for WatchedStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
