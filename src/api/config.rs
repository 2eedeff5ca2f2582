//! The API's configuration (the `[api]` table) and its roles.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A bearer token and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Recorded as the actor of every write made with the token.
    pub name: String,
    pub token: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Read,
    /// The CMP: protect VMs, edit them, take RPs, fail over.
    Cmp,
    /// Operators: all of the above plus resolve conflicts and delete.
    Operator,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the API listens. Plain HTTP (no `tls_cert`) must be on a
    /// loopback address unless `allow_plain_http` says otherwise.
    pub listen: SocketAddr,
    pub tokens: Vec<TokenEntry>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// PEM certificate and key; both set means HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Most change-feed (SSE) clients connected at once; more answer 503.
    pub max_feed_clients: usize,
    /// Serve plain HTTP on a non-loopback address (e.g. behind a TLS
    /// terminating proxy on a private network). Off: such a listen address
    /// is refused at start.
    pub allow_plain_http: bool,
    /// Serve `/metrics` without a token (for a Prometheus scraper on the
    /// same host). Only accepted with a loopback `listen`. Off: `/metrics`
    /// needs a token of any role (read is enough).
    pub metrics_public: bool,
    /// Most client connections open at once (TLS or not). At the cap, a new
    /// connection replaces the oldest one that has not yet sent a complete
    /// request head; if every connection has, the new one is closed at once.
    /// Keep it well under the process's open-file limit (the node raises
    /// its soft limit to the hard limit at start and warns if the cap is
    /// above half of it).
    pub max_connections: usize,
    /// Time a connection has to complete its TLS handshake and then each
    /// request's head (line and headers), counted from when the connection
    /// opens or its previous response was sent. A slow or silent client is
    /// closed after it.
    pub header_read_timeout_ms: u64,
    /// A connection with no bytes read or written for this long is closed:
    /// a keep-alive connection between requests, or a client that stopped
    /// reading its answer. Longer than `request_timeout_ms` and than the
    /// change feed's 15 s keep-alive.
    pub idle_timeout_ms: u64,
    /// Longest a request may take from its head to its answer's head (the
    /// body of a change feed streams on after that); a request past it
    /// answers 503 `timeout`. A write cut off this way may still become
    /// durable: retry with the same `Idempotency-Key`.
    pub request_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7100)),
            tokens: Vec::new(),
            max_body_bytes: 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            max_feed_clients: 64,
            allow_plain_http: false,
            metrics_public: false,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            request_timeout_ms: 30_000,
        }
    }
}

/// The change feed's keep-alive interval (see `feed.rs`): an idle timeout
/// must leave room for it.
pub(super) const FEED_KEEPALIVE_MS: u64 = 15_000;

impl ApiConfig {
    /// True if the API serves HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// Checks the `[api]` table: the key that is wrong and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token.len() < 4 {
                return Err((
                    format!("api.tokens[{i}].token"),
                    "at least 4 characters".into(),
                ));
            }
        }
        self.validate_limits()
            .map_err(|(key, message)| (key.to_string(), message))
    }

    fn validate_limits(&self) -> Result<(), (&'static str, String)> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(("api.tls_cert", "tls_cert and tls_key go together".into()));
        }
        let loopback = self.listen.ip().is_loopback();
        if !self.tls() && !loopback && !self.allow_plain_http {
            return Err((
                "api.listen",
                format!(
                    "{} is not a loopback address and the API has no TLS: set api.tls_cert and \
                     api.tls_key, or api.allow_plain_http = true if a TLS proxy fronts it",
                    self.listen
                ),
            ));
        }
        if self.metrics_public && !loopback {
            return Err((
                "api.metrics_public",
                format!(
                    "only with a loopback api.listen ({} is not); a remote scraper sends a read token",
                    self.listen
                ),
            ));
        }
        for (key, v) in [
            ("api.max_feed_clients", self.max_feed_clients as u64),
            ("api.max_body_bytes", self.max_body_bytes as u64),
            ("api.max_connections", self.max_connections as u64),
            ("api.header_read_timeout_ms", self.header_read_timeout_ms),
            ("api.request_timeout_ms", self.request_timeout_ms),
        ] {
            if v == 0 {
                return Err((key, "must be positive".into()));
            }
        }
        // A semaphore holds at most this many permits.
        if self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(("api.max_connections", "too large".into()));
        }
        if self.idle_timeout_ms <= self.request_timeout_ms.max(FEED_KEEPALIVE_MS) {
            return Err((
                "api.idle_timeout_ms",
                format!(
                    "must exceed api.request_timeout_ms and the change feed's {FEED_KEEPALIVE_MS} ms keep-alive"
                ),
            ));
        }
        Ok(())
    }
}
