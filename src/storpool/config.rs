//! How to reach one StorPool API endpoint, and how patient to be with it.

use std::fmt;

use serde::Deserialize;

use super::error::StorPoolError;

/// StorPool's default API port (`SP_API_HTTP_PORT`).
pub const DEFAULT_API_PORT: u16 = 81;

/// Connection settings for the StorPool API of the local cluster.
///
/// It is embedded in the node's TOML configuration under `[storpool]`; every field
/// except `host` and `token` has a default, and the units are in the names so a
/// reader of the TOML never has to guess. Unknown keys are refused so a typo
/// (`timeout_s = 5`) is reported at start instead of being silently ignored.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorPoolConfig {
    /// Host name or IP address of the API (`SP_API_HTTP_HOST`).
    pub host: String,
    /// TCP port of the API (`SP_API_HTTP_PORT`, 81 by default).
    pub port: u16,
    /// API token (`SP_AUTH_TOKEN`); sent as `Authorization: Storpool v1:<token>`.
    pub token: String,
    /// Use the multi-cluster form of the calls that have one (`/ctrl/1.0/MultiCluster/<Call>`),
    /// for a zone whose StorPool is a multi-cluster.
    pub multicluster: bool,
    /// Deadline for one HTTP request, connect included.
    pub timeout_ms: u64,
    /// Deadline for establishing the TCP connection alone.
    pub connect_timeout_ms: u64,
    /// How many times a failed attempt is retried (so at most `max_retries + 1` attempts).
    /// Only transient failures are retried; see [`super::StorPoolClient`].
    pub max_retries: u32,
    /// Delay before the first retry; doubled on every further retry.
    pub backoff_initial_ms: u64,
    /// Upper bound for one retry delay.
    pub backoff_max_ms: u64,
}

impl Default for StorPoolConfig {
    fn default() -> Self {
        StorPoolConfig {
            host: "127.0.0.1".to_owned(),
            port: DEFAULT_API_PORT,
            token: String::new(),
            multicluster: false,
            timeout_ms: 30_000,
            connect_timeout_ms: 3_000,
            max_retries: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
        }
    }
}

// The token is a credential: never print it.
impl fmt::Debug for StorPoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorPoolConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("token", &"<redacted>")
            .field("multicluster", &self.multicluster)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .finish()
    }
}

impl StorPoolConfig {
    /// A configuration for `host:port` with `token` and defaults for everything else.
    pub fn new(host: impl Into<String>, port: u16, token: impl Into<String>) -> Self {
        StorPoolConfig {
            host: host.into(),
            port,
            token: token.into(),
            ..StorPoolConfig::default()
        }
    }

    /// Reads `SP_API_HTTP_HOST`, `SP_API_HTTP_PORT` (default 81) and `SP_AUTH_TOKEN`, the
    /// variables StorPool's own tools honour, so a node on a StorPool host needs no extra setup.
    pub fn from_env() -> Result<Self, StorPoolError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`StorPoolConfig::from_env`], over any source of variables (testable without
    /// touching the process environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, StorPoolError> {
        let host = get("SP_API_HTTP_HOST")
            .ok_or_else(|| StorPoolError::Config("SP_API_HTTP_HOST is not set".to_owned()))?;
        let port = match get("SP_API_HTTP_PORT") {
            None => DEFAULT_API_PORT,
            Some(p) => p.trim().parse().map_err(|_| {
                StorPoolError::Config(format!("SP_API_HTTP_PORT is not a port number: {p:?}"))
            })?,
        };
        let token = get("SP_AUTH_TOKEN")
            .ok_or_else(|| StorPoolError::Config("SP_AUTH_TOKEN is not set".to_owned()))?;
        let cfg = StorPoolConfig::new(host, port, token);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values; the message names the offending key.
    pub fn validate(&self) -> Result<(), StorPoolError> {
        let bad = |m: &str| Err(StorPoolError::Config(m.to_owned()));
        if self.host.trim().is_empty() {
            return bad("storpool.host must not be empty");
        }
        if self.port == 0 {
            return bad("storpool.port must not be 0");
        }
        if self.token.is_empty() || self.token.chars().any(|c| c.is_control() || c == ' ') {
            return bad(
                "storpool.token must be non-empty and contain no spaces or control characters",
            );
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return bad("storpool.timeout_ms and storpool.connect_timeout_ms must be positive");
        }
        if self.max_retries > 100 {
            return bad("storpool.max_retries must be at most 100");
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return bad("storpool.backoff_initial_ms must not exceed storpool.backoff_max_ms");
        }
        Ok(())
    }

    /// `http://host:port`, with IPv6 addresses bracketed.
    pub fn base_url(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_defaults_the_port_to_81() {
        let cfg = StorPoolConfig::from_lookup(|k| match k {
            "SP_API_HTTP_HOST" => Some("10.0.0.1".into()),
            "SP_AUTH_TOKEN" => Some("1234".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.port, 81);
        assert_eq!(cfg.base_url(), "http://10.0.0.1:81");
        assert!(!format!("{cfg:?}").contains("1234"));
    }

    #[test]
    fn env_rejects_a_bad_port_naming_the_variable() {
        let e = StorPoolConfig::from_lookup(|k| match k {
            "SP_API_HTTP_HOST" => Some("h".into()),
            "SP_API_HTTP_PORT" => Some("eighty".into()),
            "SP_AUTH_TOKEN" => Some("t".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(e.to_string().contains("SP_API_HTTP_PORT"));
    }
}
