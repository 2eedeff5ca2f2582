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
    pub listen: SocketAddr,
    pub tokens: Vec<TokenEntry>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// PEM certificate and key; both set means HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Most change-feed (SSE) clients connected at once; more answer 503.
    pub max_feed_clients: usize,
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
        }
    }
}
