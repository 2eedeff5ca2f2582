//! A typed client of a node's API: one method per endpoint, each answering
//! the `api::types` value the server writes, or a `ClientError` that
//! carries the API's error body and HTTP status. The CLI is its first user;
//! nothing here prints or knows about exit codes (see `error.rs`).

use crate::api::error::ErrorBody;
use crate::api::types::{
    AckMessage, ConflictList, CreateService, DeactivateRequest, FailoverOutcome, FailoverRequest,
    FeedEvent, HistoryList, MessageList, MessageView, MigrateRequest, MigrationStarted, PeerList,
    Preflight, RebuildView, ResolveRequest, Resync, RevertRequest, RpList, RpView, SendMessage,
    ServiceList, ServiceView, TestFailoverRequest, UpdateService, ZoneStatus,
};
use crate::model::{MessageId, RpId, ServiceId, ZoneId};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA certificate to trust could not be read or parsed.
    #[error("{}: {message}", path.display())]
    CaCert { path: PathBuf, message: String },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Build(reqwest::Error),
    /// The node could not be reached, or the connection broke.
    #[error("cannot reach {base}: {source}")]
    Unreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error status. `body` is its error answer
    /// (`code`, `message`, `field`) when it sent one; `text` is what it sent.
    #[error("{}", api_message(*status, body.as_ref(), text))]
    Api {
        status: StatusCode,
        body: Option<ErrorBody>,
        text: String,
    },
    /// A request body that could not be written as JSON.
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    /// A 2xx answer that is not the type the API documents.
    #[error("unexpected answer to {path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The change feed broke off.
    #[error("the change feed broke: {0}")]
    FeedBroke(reqwest::Error),
    /// The change feed sent an event longer than `MAX_SSE_BLOCK_BYTES`.
    #[error("the change feed sent an oversized event")]
    FeedOversized,
}

fn api_message(status: StatusCode, body: Option<&ErrorBody>, text: &str) -> String {
    match body {
        Some(ErrorBody { error: e }) => match &e.field {
            Some(f) => format!("{} ({}, field {f})", e.message, e.code),
            None => format!("{} ({})", e.message, e.code),
        },
        None => format!("HTTP {status}: {text}"),
    }
}

impl ClientError {
    /// The error for a non-2xx answer: its status and body.
    pub fn from_answer(status: StatusCode, text: String) -> Self {
        ClientError::Api {
            status,
            body: serde_json::from_str(&text).ok(),
            text,
        }
    }
}

/// How long one request may take (DR actions drive StorPool, so this is generous).
const REQUEST_TIMEOUT_MS: u64 = 300_000;
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Longest SSE block the feed buffers before giving up on the stream.
const MAX_SSE_BLOCK_BYTES: usize = 1024 * 1024;

/// `GET /v1/services` filters; the defaults list every live service.
#[derive(Debug, Clone, Default)]
pub struct ServiceFilter {
    /// Only services with a conflict.
    pub in_conflict: bool,
    /// Only services past their RPO.
    pub past_rpo: bool,
    /// Only services whose RPO level is this or worse.
    pub rpo: Option<crate::api::types::RpoLevel>,
    /// Deleted services instead of live ones.
    pub deleted: bool,
    /// Only services with a VM in, or recovering to, this zone.
    pub zone: Option<ZoneId>,
    pub limit: Option<usize>,
    /// Start after this service id (`ServiceList::next_after`).
    pub after: Option<ServiceId>,
}

/// `GET /v1/messages` filters.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// `inbox` (the server's default), `outbox` or `all`.
    pub direction: Option<String>,
    /// `Some(false)`: only messages not yet acknowledged.
    pub acked: Option<bool>,
    /// `sent`, `delivered`, `acked` or `expired`.
    pub state: Option<String>,
    pub kind: Option<String>,
    pub service: Option<ServiceId>,
}

/// `GET /v1/history` (or a service's) filters and page.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// One service's history (`/v1/services/{service}/history`).
    pub service: Option<ServiceId>,
    pub zone: Option<ZoneId>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// RFC 3339 times, sent as given (the server checks them).
    pub since: Option<String>,
    pub until: Option<String>,
    /// A previous page's `next_before`.
    pub before: Option<String>,
    pub limit: Option<usize>,
}

/// A DR action with its request, as [`Client::preflight`] previews it.
#[derive(Debug, Clone)]
pub enum DrAction {
    Failover(FailoverRequest),
    Migrate(MigrateRequest),
    CompleteMigration,
    Revert(RevertRequest),
    TestFailover(TestFailoverRequest),
    Deactivate(DeactivateRequest),
    Resolve(ResolveRequest),
    Delete { if_match: Option<String> },
}

/// One item of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Event(Box<FeedEvent>),
    /// The client fell behind and commits were skipped: re-read.
    Resync(Resync),
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&…` of the pairs that have a value, or nothing.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// An `If-Match` header value for a version token.
fn if_match_value(version: &str) -> String {
    format!("\"{}\"", version.trim_matches('"'))
}

/// A request body.
fn json(body: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(ClientError::Encode)
}

/// The body of a POST that takes no arguments.
#[derive(Serialize)]
struct NoArgs {}

/// A node's API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:7101`), with a
    /// bearer token and, for https, a CA certificate to trust.
    pub fn new(
        base: &str,
        token: Option<String>,
        ca_cert: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let mut b =
            reqwest::Client::builder().connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        if let Some(path) = ca_cert {
            let bad = |e: &dyn std::fmt::Display| ClientError::CaCert {
                path: path.to_path_buf(),
                message: e.to_string(),
            };
            let pem = std::fs::read(path).map_err(|e| bad(&e))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| bad(&e))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(ClientError::Build)?;
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

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            base: self.base.clone(),
            source,
        }
    }

    /// Sends a request; answers the 2xx body as `T`, or the error.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let mut req = self
            .request(method, path)
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(ClientError::from_answer(status, text));
        }
        serde_json::from_str(&text).map_err(|source| ClientError::Decode {
            path: path.to_string(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None, &[]).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(json(body)?), &[]).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<ZoneStatus, ClientError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/peers`.
    pub async fn peers(&self) -> Result<PeerList, ClientError> {
        self.get("/v1/peers").await
    }

    /// `POST /v1/rebuild/override` (operator).
    pub async fn rebuild_override(&self) -> Result<RebuildView, ClientError> {
        self.post("/v1/rebuild/override", &NoArgs {}).await
    }

    /// `GET /v1/services`: one page.
    pub async fn services(&self, f: &ServiceFilter) -> Result<ServiceList, ClientError> {
        let flag = |b: bool| b.then(|| "true".to_string());
        let q = query(&[
            ("in_conflict", flag(f.in_conflict)),
            ("past_rpo", flag(f.past_rpo)),
            ("rpo", f.rpo.map(|l| l.to_string())),
            ("deleted", flag(f.deleted)),
            ("zone", f.zone.as_ref().map(ZoneId::to_string)),
            ("limit", f.limit.map(|l| l.to_string())),
            ("after", f.after.as_ref().map(ServiceId::to_string)),
        ]);
        self.get(&format!("/v1/services{q}")).await
    }

    /// `GET /v1/services/{service}`.
    pub async fn service(&self, id: &ServiceId) -> Result<ServiceView, ClientError> {
        self.get(&format!("/v1/services/{}", enc(id.as_str())))
            .await
    }

    /// `POST /v1/services`; a retry with the same `idempotency_key` answers
    /// the same service.
    pub async fn create_service(
        &self,
        req: &CreateService,
        idempotency_key: Option<&str>,
    ) -> Result<ServiceView, ClientError> {
        let headers: Vec<(&str, String)> = idempotency_key
            .map(|k| vec![("idempotency-key", k.to_string())])
            .unwrap_or_default();
        self.call(Method::POST, "/v1/services", Some(json(req)?), &headers)
            .await
    }

    /// `PATCH /v1/services/{service}`, refused (412) unless the service is
    /// still at version `if_match` when one is given.
    pub async fn update_service(
        &self,
        id: &ServiceId,
        req: &UpdateService,
        if_match: Option<&str>,
    ) -> Result<ServiceView, ClientError> {
        let headers: Vec<(&str, String)> = if_match
            .map(|v| vec![("if-match", if_match_value(v))])
            .unwrap_or_default();
        self.call(
            Method::PATCH,
            &format!("/v1/services/{}", enc(id.as_str())),
            Some(json(req)?),
            &headers,
        )
        .await
    }

    /// `DELETE /v1/services/{service}` (operator).
    pub async fn delete_service(
        &self,
        id: &ServiceId,
        if_match: Option<&str>,
    ) -> Result<ServiceView, ClientError> {
        let headers: Vec<(&str, String)> = if_match
            .map(|v| vec![("if-match", if_match_value(v))])
            .unwrap_or_default();
        self.call(
            Method::DELETE,
            &format!("/v1/services/{}", enc(id.as_str())),
            None,
            &headers,
        )
        .await
    }

    /// `GET /v1/services/{service}/rps`, oldest first.
    pub async fn rps(
        &self,
        service: &ServiceId,
        complete_in: Option<&ZoneId>,
    ) -> Result<RpList, ClientError> {
        let q = query(&[("complete_in", complete_in.map(ZoneId::to_string))]);
        self.get(&format!("/v1/services/{}/rps{q}", enc(service.as_str())))
            .await
    }

    /// `GET /v1/services/{service}/rps/{rp}`.
    pub async fn rp(&self, service: &ServiceId, rp: &RpId) -> Result<RpView, ClientError> {
        self.get(&format!(
            "/v1/services/{}/rps/{}",
            enc(service.as_str()),
            enc(rp.as_str())
        ))
        .await
    }

    /// `POST /v1/services/{service}/rps`: take an RP now.
    pub async fn take_rp(&self, service: &ServiceId) -> Result<RpView, ClientError> {
        self.post(
            &format!("/v1/services/{}/rps", enc(service.as_str())),
            &NoArgs {},
        )
        .await
    }

    /// `POST …/rps/{rp}/hold` or `…/release`.
    pub async fn set_hold(
        &self,
        service: &ServiceId,
        rp: &RpId,
        hold: bool,
    ) -> Result<RpView, ClientError> {
        let what = if hold { "hold" } else { "release" };
        let path = format!(
            "/v1/services/{}/rps/{}/{what}",
            enc(service.as_str()),
            enc(rp.as_str())
        );
        self.call(Method::POST, &path, None, &[]).await
    }

    /// `POST /v1/services/{id}/pause` with `reason` (`Some`), or
    /// `/resume` (`None`).
    pub async fn set_paused(
        &self,
        service: &ServiceId,
        reason: Option<String>,
    ) -> Result<ServiceView, ClientError> {
        let (what, body) = match reason {
            Some(r) => ("pause", serde_json::json!({ "reason": r })),
            None => ("resume", serde_json::json!({})),
        };
        let path = format!("/v1/services/{}/{what}", enc(service.as_str()));
        let body = serde_json::to_vec(&body).unwrap_or_default();
        self.call(Method::POST, &path, Some(body), &[]).await
    }

    /// `GET /v1/conflicts`, of one service or all.
    pub async fn conflicts(
        &self,
        service: Option<&ServiceId>,
    ) -> Result<ConflictList, ClientError> {
        let q = query(&[("service", service.map(ServiceId::to_string))]);
        self.get(&format!("/v1/conflicts{q}")).await
    }

    /// `POST /v1/services/{service}/resolve` (operator).
    pub async fn resolve(
        &self,
        service: &ServiceId,
        req: &ResolveRequest,
    ) -> Result<ServiceView, ClientError> {
        self.post(&self.action(service, "resolve"), req).await
    }

    fn action(&self, service: &ServiceId, what: &str) -> String {
        format!("/v1/services/{}/{what}", enc(service.as_str()))
    }

    /// `POST /v1/services/{service}/failover`.
    pub async fn failover(
        &self,
        service: &ServiceId,
        req: &FailoverRequest,
    ) -> Result<FailoverOutcome, ClientError> {
        self.post(&self.action(service, "failover"), req).await
    }

    /// `POST /v1/services/{service}/migrate`, in the source zone.
    pub async fn migrate(
        &self,
        service: &ServiceId,
        req: &MigrateRequest,
    ) -> Result<MigrationStarted, ClientError> {
        self.post(&self.action(service, "migrate"), req).await
    }

    /// `POST /v1/services/{service}/migrate/complete`, in the target zone.
    pub async fn complete_migration(
        &self,
        service: &ServiceId,
    ) -> Result<FailoverOutcome, ClientError> {
        self.post(&self.action(service, "migrate/complete"), &NoArgs {})
            .await
    }

    /// `POST /v1/services/{service}/revert`.
    pub async fn revert(
        &self,
        service: &ServiceId,
        req: &RevertRequest,
    ) -> Result<FailoverOutcome, ClientError> {
        self.post(&self.action(service, "revert"), req).await
    }

    /// `POST /v1/services/{service}/test-failover`.
    pub async fn test_failover(
        &self,
        service: &ServiceId,
        req: &TestFailoverRequest,
    ) -> Result<FailoverOutcome, ClientError> {
        self.post(&self.action(service, "test-failover"), req).await
    }

    /// `POST /v1/services/{service}/test-failover/cleanup`.
    pub async fn cleanup_test_failover(
        &self,
        service: &ServiceId,
    ) -> Result<ServiceView, ClientError> {
        self.post(&self.action(service, "test-failover/cleanup"), &NoArgs {})
            .await
    }

    /// `POST /v1/services/{service}/deactivate` (operator).
    pub async fn deactivate(
        &self,
        service: &ServiceId,
        req: &DeactivateRequest,
    ) -> Result<ServiceView, ClientError> {
        self.post(&self.action(service, "deactivate"), req).await
    }

    /// The dry run (`?dry_run=true`) of a DR action: what it would do, or
    /// the error the action itself would answer. Changes nothing.
    pub async fn preflight(
        &self,
        service: &ServiceId,
        action: &DrAction,
    ) -> Result<Preflight, ClientError> {
        let (method, path, body) = match action {
            DrAction::Failover(req) => (Method::POST, self.action(service, "failover"), json(req)?),
            DrAction::Migrate(req) => (Method::POST, self.action(service, "migrate"), json(req)?),
            DrAction::CompleteMigration => (
                Method::POST,
                self.action(service, "migrate/complete"),
                json(&NoArgs {})?,
            ),
            DrAction::Revert(req) => (Method::POST, self.action(service, "revert"), json(req)?),
            DrAction::TestFailover(req) => (
                Method::POST,
                self.action(service, "test-failover"),
                json(req)?,
            ),
            DrAction::Deactivate(req) => {
                (Method::POST, self.action(service, "deactivate"), json(req)?)
            }
            DrAction::Resolve(req) => (Method::POST, self.action(service, "resolve"), json(req)?),
            DrAction::Delete { if_match } => {
                let headers: Vec<(&str, String)> = if_match
                    .as_deref()
                    .map(|v| vec![("if-match", if_match_value(v))])
                    .unwrap_or_default();
                let path = format!("/v1/services/{}?dry_run=true", enc(service.as_str()));
                return self.call(Method::DELETE, &path, None, &headers).await;
            }
        };
        self.call(method, &format!("{path}?dry_run=true"), Some(body), &[])
            .await
    }

    /// `GET /v1/history`, or `GET /v1/services/{service}/history` when the
    /// filter names a service: one page, newest first.
    pub async fn history(&self, f: &HistoryFilter) -> Result<HistoryList, ClientError> {
        let q = query(&[
            ("zone", f.zone.as_ref().map(ZoneId::to_string)),
            ("actor", f.actor.clone()),
            ("action", f.action.clone()),
            ("since", f.since.clone()),
            ("until", f.until.clone()),
            ("before", f.before.clone()),
            ("limit", f.limit.map(|l| l.to_string())),
        ]);
        match &f.service {
            Some(id) => {
                self.get(&format!("/v1/services/{}/history{q}", enc(id.as_str())))
                    .await
            }
            None => self.get(&format!("/v1/history{q}")).await,
        }
    }

    /// `GET /v1/messages`.
    pub async fn messages(&self, f: &MessageFilter) -> Result<MessageList, ClientError> {
        let q = query(&[
            ("direction", f.direction.clone()),
            ("acked", f.acked.map(|a| a.to_string())),
            ("state", f.state.clone()),
            ("kind", f.kind.clone()),
            ("service", f.service.as_ref().map(ServiceId::to_string)),
        ]);
        self.get(&format!("/v1/messages{q}")).await
    }

    /// `POST /v1/messages`.
    pub async fn send_message(&self, req: &SendMessage) -> Result<MessageView, ClientError> {
        self.post("/v1/messages", req).await
    }

    /// `POST /v1/messages/{id}/ack`, in the addressee's zone.
    pub async fn ack(&self, id: &MessageId, req: &AckMessage) -> Result<MessageView, ClientError> {
        self.post(&format!("/v1/messages/{}/ack", enc(id.as_str())), req)
            .await
    }

    /// `GET /v1/events`: opens the change feed, of one service or all.
    pub async fn events(&self, service: Option<&ServiceId>) -> Result<Feed, ClientError> {
        let q = query(&[("service", service.map(ServiceId::to_string))]);
        let path = format!("/v1/events{q}");
        let res = self
            .request(Method::GET, &path)
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(ClientError::from_answer(status, text));
        }
        Ok(Feed {
            res,
            path,
            buf: String::new(),
        })
    }
}

/// An open change feed; `next` answers its items in order.
pub struct Feed {
    res: reqwest::Response,
    path: String,
    buf: String,
}

impl Feed {
    /// The next event or resync; `None` once the server ends the feed.
    pub async fn next(&mut self) -> Result<Option<FeedItem>, ClientError> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(item) = self.parse(&block)? {
                    return Ok(Some(item));
                }
            }
            if self.buf.len() > MAX_SSE_BLOCK_BYTES {
                return Err(ClientError::FeedOversized);
            }
            match self.res.chunk().await {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) => return Ok(None),
                Err(e) => return Err(ClientError::FeedBroke(e)),
            }
        }
    }

    /// One SSE block: an item, or nothing for a comment or keep-alive.
    fn parse(&self, block: &str) -> Result<Option<FeedItem>, ClientError> {
        let mut resync = false;
        let mut data = String::new();
        for l in block.lines() {
            if let Some(v) = l.strip_prefix("event:") {
                resync = v.trim() == "resync";
            } else if let Some(v) = l.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if data.is_empty() {
            return Ok(None);
        }
        let decode = |source| ClientError::Decode {
            path: self.path.clone(),
            source,
        };
        Ok(Some(if resync {
            FeedItem::Resync(serde_json::from_str(&data).map_err(decode)?)
        } else {
            FeedItem::Event(Box::new(serde_json::from_str(&data).map_err(decode)?))
        }))
    }
}
