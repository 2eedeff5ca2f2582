//! The CLI's HTTP client: one call per command, every failure turned into
//! an exit code that means something (see `ExitCode`).

use crate::api::error::ErrorBody;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// Exit codes of every `drengine` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// The server refused or failed the request (any other 4xx or 5xx).
    Server = 1,
    /// Bad command line (clap's own code for usage errors).
    Usage = 2,
    /// The service, recovery point or message does not exist (404, 410).
    NotFound = 3,
    /// Conflict with the current state or a stale version (409, 412).
    Conflict = 4,
    /// The node could not be reached.
    Unreachable = 5,
}

impl ExitCode {
    pub fn for_status(s: StatusCode) -> ExitCode {
        match s.as_u16() {
            200..=299 => ExitCode::Ok,
            404 | 410 => ExitCode::NotFound,
            409 | 412 => ExitCode::Conflict,
            _ => ExitCode::Server,
        }
    }
}

/// Why a command failed, and the exit code that says so.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
    /// The server's JSON error body, if it sent one.
    pub body: Option<Value>,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: ExitCode::Usage,
            message: message.into(),
            body: None,
        }
    }
    pub fn other(message: impl Into<String>) -> Self {
        CliError {
            code: ExitCode::Server,
            message: message.into(),
            body: None,
        }
    }
}

/// How long one request may take (DR actions drive StorPool, so this is generous).
const REQUEST_TIMEOUT_MS: u64 = 300_000;
const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// A node's API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Client, CliError> {
        let mut b =
            reqwest::Client::builder().connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| CliError::usage(format!("--ca-cert {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::usage(format!("--ca-cert {}: {e}", path.display())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| CliError::other(format!("HTTP client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    fn unreachable(&self, e: reqwest::Error) -> CliError {
        CliError {
            code: ExitCode::Unreachable,
            message: format!("cannot reach {}: {e}", self.base),
            body: None,
        }
    }

    /// Sends a request; answers the JSON body of a 2xx, or the error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let mut req = self
            .request(method, path)
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
        if let Some(b) = body {
            req = req.json(b);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| self.unreachable(e))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = match serde_json::from_value::<ErrorBody>(json.clone()) {
            Ok(e) => match e.error.field {
                Some(f) => format!("{} ({}, field {f})", e.error.message, e.error.code),
                None => format!("{} ({})", e.error.message, e.error.code),
            },
            Err(_) => format!("HTTP {status}: {text}"),
        };
        Err(CliError {
            code: ExitCode::for_status(status),
            message,
            body: Some(json).filter(|j| !j.is_null()),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    /// Opens the change feed; the caller reads it with `chunk()`.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        let res = self
            .request(Method::GET, path)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let text = res.text().await.unwrap_or_default();
        Err(CliError {
            code: ExitCode::for_status(status),
            message: format!("HTTP {status}: {text}"),
            body: serde_json::from_str(&text).ok(),
        })
    }
}
