//! Shared by the API and CLI tests: a real node on a free port with a fresh
//! data directory, tokens of every role, and a small HTTP client.
#![allow(dead_code)]

use drengine::node::config::{Config, Role, TokenEntry};
use drengine::node::{Node, NodeHandle};
use drengine::replica::{Directory, Replica};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
#[allow(unused_imports)]
pub use crate::support::{now_ms, open_store, wait_for, wait_until, Deployment};

pub const READ_TOKEN: &str = "read-token";
pub const CMP_TOKEN: &str = "cmp-token";
pub const OP_TOKEN: &str = "op-token";

/// A running node and what the tests need next to it.
pub struct TestNode {
    pub node: NodeHandle,
    pub url: String,
    /// Every zone's keys and files; tests play other zones' replicas with it.
    pub dep: Deployment,
    pub http: reqwest::Client,
}

pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// One token of every role, named `reader`, `cmp-1` and `alice` (the actor
/// of their writes).
pub fn tokens() -> Vec<TokenEntry> {
    [
        ("reader", READ_TOKEN, Role::Read),
        ("cmp-1", CMP_TOKEN, Role::Cmp),
        ("alice", OP_TOKEN, Role::Operator),
    ]
    .into_iter()
    .map(|(name, token, role)| TokenEntry {
        name: name.into(),
        token: token.into(),
        role,
    })
    .collect()
}

/// Starts `zone`'s node of `dep` on HTTP with [`tokens`], its config
/// changed by `tweak`. It signs at once (an operator override of the
/// rebuild wait): no peer runs here to confirm it.
pub async fn start_zone(
    dep: &Deployment,
    zone: &str,
    tweak: impl FnOnce(&mut Config),
) -> NodeHandle {
    let mut config = dep.config(zone);
    config.api.tokens = tokens();
    tweak(&mut config);
    config.validate().unwrap();
    let node = Node::start(config).await.unwrap();
    node.db().override_rebuild("test");
    node
}

/// Starts zone-a's node (engine off; zone-a linked to zone-b, which never
/// runs) with its config changed by `tweak`.
pub async fn start_node_with(tweak: impl FnOnce(&mut Config)) -> TestNode {
    let dep = Deployment::new(&ZONES).link("zone-a", "zone-b");
    let node = start_zone(&dep, "zone-a", tweak).await;
    TestNode::new(node, dep)
}

pub async fn start_node() -> TestNode {
    start_node_with(|_| {}).await
}

/// An answer: status, headers and JSON body (Null if not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `field` of a JSON error answer.
    pub fn error_field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
    /// Panics unless this is a JSON error with a code and message.
    pub fn assert_error(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert!(
            self.body["error"]["code"].is_string(),
            "no error code: {}",
            self.body
        );
        assert!(
            self.body["error"]["message"].is_string(),
            "no message: {}",
            self.body
        );
        self
    }
}

impl TestNode {
    pub fn new(node: NodeHandle, dep: Deployment) -> TestNode {
        TestNode {
            url: node.api_url(),
            node,
            dep,
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    /// Sends raw bytes as the body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Answer {
        let res = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// Protects a VM of zone-a; returns the service view.
    pub async fn protect(&self, vm: &str) -> Value {
        let a = self.post("/v1/services", CMP_TOKEN, create_body(vm)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body
    }

    /// A replica of another zone that can sign events, knowing every zone.
    pub fn replica(&self, zone: &str) -> Replica {
        self.dep.replica(zone)
    }

    pub fn directory(&self) -> Directory {
        self.dep.directory()
    }

    /// Feeds every event of this node into `other` (as if synced).
    pub fn sync_into(&self, other: &mut Replica) {
        let ours = self.node.db().read(|r| r.vv().clone());
        let batch = self
            .node
            .db()
            .store()
            .events_missing(other.vv(), &ours, 100_000, usize::MAX)
            .unwrap();
        for ev in batch.events {
            other.receive(ev, now_ms());
        }
    }
}

pub fn policy() -> Value {
    json!({
        "interval_s": 300,
        "recovery_zone": "zone-b",
        "local_retention": { "keep_last": 3, "keep_for_s": 86400 },
        "remote_retention": { "keep_last": 3, "keep_for_s": 86400 }
    })
}

pub fn create_body(vm: &str) -> Value {
    json!({
        "cmp_vm_id": vm,
        "disks": [format!("{vm}-disk0"), format!("{vm}-disk1")],
        "metadata": format!("<vm name='{vm}'/>"),
        "policy": policy()
    })
}

/// Reads server-sent events from a streaming answer.
pub struct SseReader {
    res: reqwest::Response,
    buf: String,
}

/// One server-sent event: its name and data.
#[derive(Debug)]
pub struct Sse {
    pub event: String,
    pub data: String,
}

impl SseReader {
    pub fn new(res: reqwest::Response) -> Self {
        SseReader {
            res,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), or None when the stream ends or
    /// `timeout` passes.
    pub async fn next(&mut self, timeout: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if !data.is_empty() {
                    return Some(Sse {
                        event,
                        data: data.join("\n"),
                    });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .ok()?;
            match chunk {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}
