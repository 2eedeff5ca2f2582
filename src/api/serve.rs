//! The API's connections: one accept loop, for plain HTTP and TLS alike,
//! that caps how many are open, gives each a deadline for its TLS handshake
//! and every request head, and closes it when no byte moved for a while.
//! (Each request's own deadline is a layer of [`super::app`].)
//!
//! Why not `axum::serve`: it has no cap and no timeouts, so a client holding
//! a few thousand half-sent requests takes every file descriptor of the
//! process, and sync and the StorPool client fail with the API.
//!
//! At the cap, a new connection replaces the oldest one that has not yet
//! sent a complete request head (a slow or silent client: exactly what a
//! flood of half-sent requests is made of), so a client that sends its
//! request at once still gets in. If every open connection has sent one,
//! the new connection is closed at once. HTTP/1.1 only.

use crate::model::ZoneId;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// How long the accept loop waits for a replaced connection to free its slot.
const EVICT_WAIT_MS: u64 = 1_000;
/// Pause after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;
/// Least time between two warnings that the cap is reached.
const CAP_WARN_INTERVAL_MS: u64 = 10_000;

/// The connection limits, from `ApiConfig`.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    pub max_connections: usize,
    pub header_read: Duration,
    pub idle: Duration,
    /// How long shutdown waits for a connection's request in flight.
    pub grace: Duration,
}

/// What the connection layer did, for logs and tests.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections closed to make room for a new one.
    pub replaced: AtomicU64,
    /// New connections closed at once: the cap was reached by connections
    /// that had all sent a request.
    pub refused: AtomicU64,
}

/// The open connections: a permit each, and those that have not sent a
/// complete request head yet, oldest first, each with the bell that closes it.
struct Slots {
    permits: Arc<Semaphore>,
    fresh: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

impl Slots {
    fn fresh(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        // The map stays consistent whatever panicked while holding it.
        self.fresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: a free one, or the one of the oldest
    /// connection without a request head; None if there is neither.
    async fn acquire(&self, stats: &ConnStats) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        let oldest = self.fresh().pop_first();
        let Some((_, bell)) = oldest else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        bell.notify_one();
        stats.replaced.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(
            Duration::from_millis(EVICT_WAIT_MS),
            self.permits.clone().acquire_owned(),
        )
        .await
        .ok()?
        .ok()
    }

    /// The connection sent a request head: it is no longer replaceable.
    fn used(&self, id: u64) {
        self.fresh().remove(&id);
    }
}

/// Accepts and serves connections until `stop` turns true, then waits (each
/// connection bounded by `limits.grace`) for the open ones to finish.
pub(super) async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    zone: ZoneId,
    stats: Arc<ConnStats>,
) {
    let limits = Arc::new(limits);
    let slots = Arc::new(Slots {
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        fresh: Mutex::new(BTreeMap::new()),
    });
    let mut next_id: u64 = 0;
    let mut last_cap_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = until_stopped(&mut stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                tracing::warn!(zone = %zone, error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        let Some(permit) = slots.acquire(&stats).await else {
            drop(stream);
            if last_cap_warning
                .is_none_or(|t| t.elapsed().as_millis() >= CAP_WARN_INTERVAL_MS as u128)
            {
                last_cap_warning = Some(Instant::now());
                tracing::warn!(
                    zone = %zone,
                    max_connections = limits.max_connections,
                    refused = stats.refused.load(Ordering::Relaxed),
                    replaced = stats.replaced.load(Ordering::Relaxed),
                    "API connection cap reached: new connections are closed"
                );
            }
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        next_id += 1;
        let id = next_id;
        let bell = Arc::new(Notify::new());
        slots.fresh().insert(id, bell.clone());
        let conn = Conn {
            id,
            app: app.clone(),
            limits: limits.clone(),
            slots: slots.clone(),
            bell,
            stop: stop.clone(),
            zone: zone.clone(),
        };
        tokio::spawn(conn.serve(stream, tls.clone(), permit));
    }
    drop(listener);
    // Every permit back means every connection closed.
    let _ = slots
        .permits
        .acquire_many(limits.max_connections as u32)
        .await;
}

/// Returns once `stop` is true (or its sender is gone).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One accepted connection and what it needs.
struct Conn {
    id: u64,
    app: Router,
    limits: Arc<Limits>,
    slots: Arc<Slots>,
    /// Rung when a new connection takes this one's slot.
    bell: Arc<Notify>,
    stop: watch::Receiver<bool>,
    zone: ZoneId,
}

impl Conn {
    async fn serve(
        self,
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        _permit: OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
        };
        match tls {
            None => self.drive(io, &activity).await,
            Some(acceptor) => {
                let handshake = tokio::select! {
                    r = tokio::time::timeout(self.limits.header_read, acceptor.accept(io)) => r,
                    _ = self.bell.notified() => {
                        tracing::debug!(zone = %self.zone, "API connection replaced during its TLS handshake");
                        self.slots.used(self.id);
                        return;
                    }
                };
                match handshake {
                    Ok(Ok(stream)) => self.drive(stream, &activity).await,
                    Ok(Err(e)) => {
                        tracing::debug!(zone = %self.zone, error = %e, "API TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::debug!(zone = %self.zone, "API TLS handshake timed out")
                    }
                }
            }
        }
        self.slots.used(self.id);
    }

    /// Serves HTTP/1.1 on `io` until the client closes, a limit closes it,
    /// or shutdown.
    async fn drive<IO>(&self, io: IO, activity: &Activity)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let slots = self.slots.clone();
        let id = self.id;
        let app = self.app.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                slots.used(id);
                let mut app = app.clone();
                async move { tower::Service::call(&mut app, req).await }
            });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stop = self.stop.clone();
        let mut idle_check = tokio::time::interval(self.limits.idle / 4);
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(zone = %self.zone, error = %e, "API connection ended");
                    }
                    return;
                }
                _ = self.bell.notified() => {
                    tracing::debug!(zone = %self.zone, "API connection replaced before it sent a request");
                    return;
                }
                _ = idle_check.tick() => {
                    if activity.idle_for() >= self.limits.idle {
                        tracing::debug!(zone = %self.zone, "API connection idle: closed");
                        return;
                    }
                }
                _ = until_stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(self.limits.grace, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte either way.
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.since.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A TCP stream that records in [`Activity`] every read or write that moved
/// bytes.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
