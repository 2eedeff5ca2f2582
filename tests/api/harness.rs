//! Shared by the API and CLI tests: a real node on a free port with a fresh
//! data directory, tokens of every role, and a small HTTP client.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use crate::support::{now_ms, open_store, wait_for, wait_until, Deployment};
use drengine::model::ZoneId;
use drengine::node::config::{Config, Role, TokenEntry};
use drengine::node::{Node, NodeHandle};
use drengine::replica::{Directory, Replica};
use drengine::storpool::{StorPoolClient, VolumeCreate};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

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

/// One node's API as a client sees it (status and JSON body, Null if not
/// JSON).
pub struct Api {
    pub url: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(node: &NodeHandle) -> Api {
        Api {
            url: node.api_url(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GET as the reader; must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, READ_TOKEN, None, &[]).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }
}

/// Two real nodes, zone-a and zone-b, synced over libp2p, each with its
/// engine on its own cluster of one in-process StorPool emulator, and one
/// service protected from zone-a towards zone-b: its disks made in zone-a's
/// cluster, created by the CMP (actor cmp-1) on a daily schedule, and its
/// first RP, taken by the CMP, complete in zone-b.
pub struct ProtectedPair {
    pub dep: Deployment,
    pub node_a: NodeHandle,
    pub node_b: NodeHandle,
    pub a: Api,
    pub b: Api,
    /// The first RP's id.
    pub rp1: String,
}

pub async fn protected_pair(
    service: &str,
    vm: &str,
    disks: &[&str],
    wait: Duration,
) -> ProtectedPair {
    let dep = Deployment::with_emulator(&["zone-a", "zone-b"], |_| {})
        .await
        .link("zone-a", "zone-b");
    let node_a = start_zone(&dep, "zone-a", |_| {}).await;
    let node_b = start_zone(&dep, "zone-b", |_| {}).await;
    let addr = wait_for("zone-a's sync listen address", wait, || async {
        node_a.sync().listen_addrs().first().cloned()
    })
    .await;
    let zone_a: ZoneId = "zone-a".parse().unwrap();
    node_b.sync().set_peer_addr(&zone_a, addr).await.unwrap();
    let (a, b) = (Api::new(&node_a), Api::new(&node_b));

    let sp_a = StorPoolClient::new(dep.emulator().storpool_config("zone-a").unwrap()).unwrap();
    for d in disks {
        sp_a.volume_create(&VolumeCreate {
            name: Some(d.to_string()),
            size: Some(1 << 20),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut body = json!({
        "id": service,
        "cmp_vm_id": vm,
        "disks": disks,
        "metadata": "<vm/>",
        "policy": policy(),
    });
    body["policy"]["interval_s"] = json!(86_400);
    let (status, created) = a
        .call(Method::POST, "/v1/services", CMP_TOKEN, Some(body), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, rp1) = a
        .call(
            Method::POST,
            &format!("/v1/services/{service}/rps"),
            CMP_TOKEN,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rp1}");
    let rp1 = rp1["id"].as_str().unwrap().to_string();
    wait_until(
        "RP 1 complete in zone-b, as zone-b sees it",
        wait,
        || async {
            let (s, v) = b
                .call(
                    Method::GET,
                    &format!("/v1/services/{service}/rps/{rp1}"),
                    READ_TOKEN,
                    None,
                    &[],
                )
                .await;
            s == StatusCode::OK && v["copies"]["zone-b"]["state"] == "complete"
        },
    )
    .await;
    ProtectedPair {
        dep,
        node_a,
        node_b,
        a,
        b,
        rp1,
    }
}
