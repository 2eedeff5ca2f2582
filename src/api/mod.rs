//! The HTTP JSON API under `/v1` for the CMP and operators, plus `/healthz`,
//! `/metrics`, the OpenAPI document and the read-only dashboard (`ui`, at
//! `/ui/`).
//!
//! A request crosses three files at most: the extractors (`auth`, `extract`)
//! turn the request into typed values or a 4xx, one handler file per
//! resource (`services`, `rps`, `actions`, `conflicts`, `history`,
//! `messages`, `feed`, `status`) reads the replica or writes through `Db` / `Engine`, and
//! `error` maps whatever failed to one status and JSON shape.
//!
//! Architecture invariant: the API never changes state except through
//! `Db::write*` (which signs, applies and makes it durable before answering)
//! or an `Engine` action; a 2xx answer to a write means durable.

pub mod auth;
mod config;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod types;

mod actions;
mod conflicts;
mod feed;
mod history;
pub mod messages;
mod pause;
mod rps;
mod serve;
mod services;
mod status;
mod ui;

use crate::engine::Engine;
use crate::model::ZoneId;
use crate::store::Db;
use crate::sync::PeerStatus;
use auth::Tokens;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
pub use config::{ApiConfig, Role, TokenEntry};
use error::ApiError;
use metrics::Metrics;
pub use serve::ConnStats;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where the API learns about peers. The sync layer implements it; a node
/// without sync lists its configured peers as not connected.
pub trait PeerSource: Send + Sync + 'static {
    fn peers(&self) -> Vec<PeerStatus>;
    /// True if zone-to-zone sync runs in this node.
    fn running(&self) -> bool;
    /// The sync layer's counters (drops by reason, bytes, snapshots), if
    /// sync runs.
    fn counters(&self) -> Option<crate::sync::SyncCounters> {
        None
    }
}

/// The configured peers, none connected: what a node shows before (or
/// without) sync.
pub struct StaticPeers(pub Vec<ZoneId>);

impl PeerSource for StaticPeers {
    fn peers(&self) -> Vec<PeerStatus> {
        self.0
            .iter()
            .map(|z| PeerStatus {
                zone: z.clone(),
                connected: false,
                rtt_ms: None,
                their_vv: Default::default(),
                behind_events: 0,
                ahead_events: 0,
                last_seen_ms_ago: None,
                links: Vec::new(),
                links_reported_ms_ago: None,
            })
            .collect()
    }
    fn running(&self) -> bool {
        false
    }
}

/// What the API is built from.
pub struct ApiContext {
    pub db: Db,
    pub engine: Engine,
    /// False when the node runs without the DR engine: actions answer 503.
    pub engine_running: bool,
    pub peers: Arc<dyn PeerSource>,
}

/// The state every handler sees. Cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Shared>);

struct Shared {
    zone: ZoneId,
    db: Db,
    engine: Engine,
    engine_running: bool,
    peers: Arc<dyn PeerSource>,
    tokens: Tokens,
    metrics: Metrics,
    /// Flips to true when the server shuts down; ends change feeds.
    shutdown: watch::Receiver<bool>,
    /// Change-feed clients now connected, against `max_feed_clients`.
    feed_clients: Arc<tokio::sync::Semaphore>,
    /// `/metrics` without a token (`api.metrics_public`).
    metrics_public: bool,
}

impl ApiState {
    pub fn new(cfg: &ApiConfig, ctx: ApiContext, shutdown: watch::Receiver<bool>) -> Self {
        let metrics = Metrics::new();
        metrics.follow(ctx.db.subscribe(), shutdown.clone());
        ApiState(Arc::new(Shared {
            zone: ctx.db.zone(),
            db: ctx.db,
            engine: ctx.engine,
            engine_running: ctx.engine_running,
            peers: ctx.peers,
            tokens: Tokens::new(&cfg.tokens),
            metrics,
            shutdown,
            feed_clients: Arc::new(tokio::sync::Semaphore::new(cfg.max_feed_clients)),
            metrics_public: cfg.metrics_public,
        }))
    }
    pub fn zone(&self) -> &ZoneId {
        &self.0.zone
    }
    pub fn db(&self) -> &Db {
        &self.0.db
    }
    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }
    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    /// True if `/metrics` answers without a token.
    pub fn metrics_public(&self) -> bool {
        self.0.metrics_public
    }
}

/// The router being built, with the table of (method, path) it serves; the
/// table is what the OpenAPI test checks against, so no route can be added
/// without the test seeing it.
pub struct Routes {
    router: Router<ApiState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    fn add(mut self, method: Method, path: &'static str, mr: MethodRouter<ApiState>) -> Self {
        self.table.push((method, path));
        self.router = self.router.route(path, mr);
        self
    }

    fn get<H: Handler<T, ApiState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, path, axum::routing::get(h))
    }
    fn post<H: Handler<T, ApiState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::POST, path, axum::routing::post(h))
    }
    fn patch<H: Handler<T, ApiState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::PATCH, path, axum::routing::patch(h))
    }
    fn delete<H: Handler<T, ApiState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::DELETE, path, axum::routing::delete(h))
    }
}

fn routes() -> Routes {
    Routes::new()
        .get("/healthz", status::healthz)
        .get("/metrics", guarded_metrics)
        .get("/v1/openapi.json", openapi::handler)
        .get("/v1/status", status::zone_status)
        .get("/v1/peers", status::peers)
        .post("/v1/rebuild/override", status::override_rebuild)
        .get("/v1/services", services::list)
        .post("/v1/services", services::create)
        .get("/v1/services/{service}", services::show)
        .patch("/v1/services/{service}", services::update)
        .delete("/v1/services/{service}", services::delete)
        .get("/v1/services/{service}/history", history::service)
        .get("/v1/services/{service}/rps", rps::list)
        .post("/v1/services/{service}/rps", rps::take)
        .get("/v1/services/{service}/rps/{rp}", rps::show)
        .post("/v1/services/{service}/rps/{rp}/hold", rps::hold)
        .post("/v1/services/{service}/rps/{rp}/release", rps::release)
        .post("/v1/services/{service}/pause", pause::pause)
        .post("/v1/services/{service}/resume", pause::resume)
        .post("/v1/services/{service}/failover", actions::failover)
        .post("/v1/services/{service}/migrate", actions::start_migration)
        .post(
            "/v1/services/{service}/migrate/complete",
            actions::complete_migration,
        )
        .post("/v1/services/{service}/revert", actions::revert)
        .post(
            "/v1/services/{service}/test-failover",
            actions::test_failover,
        )
        .post(
            "/v1/services/{service}/test-failover/cleanup",
            actions::cleanup_test_failover,
        )
        .post("/v1/services/{service}/deactivate", actions::deactivate)
        .post("/v1/services/{service}/resolve", conflicts::resolve)
        .get("/v1/conflicts", conflicts::list)
        .get("/v1/history", history::list)
        .get("/v1/messages", messages::list)
        .post("/v1/messages", messages::send)
        .get("/v1/messages/{message}", messages::show)
        .post("/v1/messages/{message}/ack", messages::ack)
        .get("/v1/events", feed::events)
}

/// Every (method, path) the API serves, as written in the router.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().table
}

/// `/metrics` for a caller with a token (any role), or anyone when
/// `api.metrics_public`: it names every service, its RPO and the peers.
async fn guarded_metrics(_: auth::MetricsReader, state: State<ApiState>) -> Response {
    metrics::handler(state).await
}

/// The whole application: routes, limits, metrics and JSON fallbacks.
pub fn app(cfg: &ApiConfig, state: ApiState) -> Router {
    let zone = state.zone().clone();
    let request_timeout = Duration::from_millis(cfg.request_timeout_ms);
    routes()
        .router
        // The dashboard's static files: not API operations, so not in `routes()`.
        .merge(ui::router())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            deadline(request_timeout, req, next)
        }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                move |req: &Request| {
                    tracing::info_span!("api", zone = %zone, method = %req.method(), path = %req.uri().path())
                },
            ),
        )
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such path; see /v1/openapi.json",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path; see /v1/openapi.json",
    )
}

/// Answers 503 `timeout` when a request takes longer than
/// `api.request_timeout_ms` to produce its answer's head.
async fn deadline(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "no answer within api.request_timeout_ms ({} ms); a write may still be applied: \
                 retry with the same Idempotency-Key",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// Records each request's latency under its route template.
async fn track(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let res = next.run(req).await;
    state
        .metrics()
        .observe_request(&method, &route, res.status(), start.elapsed());
    res
}

/// Why the API server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("api.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("api.tls_cert / api.tls_key: {0}")]
    Tls(String),
}

/// How long shutdown waits for requests in flight before dropping them.
const SHUTDOWN_GRACE_MS: u64 = 5_000;

/// A running API server.
pub struct ApiServer {
    addr: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<ConnStats>,
}

/// The TLS acceptor from the configured PEM certificate chain and key:
/// aws-lc-rs, TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        StartError::Tls(format!("{}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

impl ApiServer {
    /// Binds `cfg.listen` (port 0 picks a free port) and serves, over TLS
    /// when a certificate and key are configured, with the connection cap
    /// and timeouts of `cfg` (see `serve.rs`).
    pub async fn start(cfg: &ApiConfig, ctx: ApiContext) -> Result<ApiServer, StartError> {
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let (stop, stopped) = watch::channel(false);
        let state = ApiState::new(cfg, ctx, stopped.clone());
        let zone = state.zone().clone();
        let app = app(cfg, state);
        let bind_err = |source| StartError::Bind {
            addr: cfg.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let limits = serve::Limits {
            max_connections: cfg.max_connections,
            header_read: Duration::from_millis(cfg.header_read_timeout_ms),
            idle: Duration::from_millis(cfg.idle_timeout_ms),
            grace: Duration::from_millis(SHUTDOWN_GRACE_MS),
        };
        let stats = Arc::new(ConnStats::default());
        let is_tls = tls.is_some();
        let task = tokio::spawn(serve::run(
            listener,
            tls,
            app,
            limits,
            stopped,
            zone.clone(),
            stats.clone(),
        ));
        tracing::info!(
            zone = %zone,
            %addr,
            scheme = if is_tls { "https" } else { "http" },
            max_connections = cfg.max_connections,
            header_read_timeout_ms = cfg.header_read_timeout_ms,
            idle_timeout_ms = cfg.idle_timeout_ms,
            request_timeout_ms = cfg.request_timeout_ms,
            "API listening"
        );
        Ok(ApiServer {
            addr,
            tls: is_tls,
            stop,
            task,
            stats,
        })
    }

    /// What the connection layer did so far.
    pub fn conn_stats(&self) -> &ConnStats {
        &self.stats
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, ends change feeds, waits a bounded time for requests
    /// in flight.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
