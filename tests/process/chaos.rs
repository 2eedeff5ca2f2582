//! Seeded process-level chaos: real `drengine run` processes (3 zones, or
//! `DRENGINE_CHAOS_ZONES` up to 5, control links in a ring) and the StorPool
//! emulator, several HTTP clients making real API calls with real tokens,
//! while a driver SIGKILLs and restarts nodes, cuts and heals links for
//! real (every link runs through a TCP fault proxy, `tests/chaos_support`)
//! and switches StorPool faults on and off. At the end everything is healed
//! and every node restarted, and the test checks:
//!
//! - every acknowledged write (2xx) is present in every zone, or superseded
//!   by a write to the same register acknowledged after it was sent, or
//!   unanswered and possibly committed after it was sent (see
//!   [`check_writes`] for exactly what each kind establishes);
//! - a value whose write was refused (any non-2xx answer) is nowhere;
//! - digests, version vectors and conflict lists are equal in every zone;
//! - no answer was a 5xx, except the documented `503 rebuilding` (a node
//!   just restarted) and `502 storpool` from a zone whose StorPool had a
//!   fault switched on at the time (a refused connection to a killed node is
//!   not an answer);
//! - once the engines settle (no copy transferring), in every cluster the
//!   live (not deleted) RP snapshots (`drrp:…`) are exactly the snapshots
//!   of the RP copies the state says are complete in that zone: none leaked
//!   (made, then left behind by a crash, a retention pass or a purge), none
//!   lost (a complete copy whose snapshot is gone), including snapshots of
//!   an RP the state no longer has at all (purged by its origin while this
//!   zone pulled it).
//!
//! `DRENGINE_CHAOS_SEED` (random by default, printed first) seeds every
//! choice: the driver's faults and timings and each client's operations.
//! The processes' own timing is not seeded, so a replay makes the same
//! choices, not the same interleaving. `DRENGINE_CHAOS_SECS` is how long
//! the chaos lasts (default [`DEFAULT_SECS`]).

use crate::harness::*;
use crate::proxy::Proxy;
use drengine::model::{names, RpId, ServiceId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds of chaos by default: a CI round.
const DEFAULT_SECS: u64 = 15;
/// Concurrent API clients.
const CLIENTS: usize = 4;
/// How long the healed net may take to converge, and the engines to settle.
const CONVERGE_WAIT: Duration = Duration::from_secs(120);
/// A `502 storpool` counts as caused by a fault window that ended at most
/// this long before the request was sent (the StorPool client's retries
/// and the engine's back-offs outlast the fault a little).
const FAULT_GRACE: Duration = Duration::from_secs(10);
/// Each client's timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long after its client gave up an unanswered write may still commit:
/// the node's own request timeout (`api.request_timeout_ms`) and a margin.
fn late_commit() -> Duration {
    let node = drengine::api::ApiConfig::default().request_timeout_ms;
    Duration::from_millis(node) + Duration::from_secs(5)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// What the clients record

/// A register of a service: what a write sets and a later one replaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reg {
    /// `metadata` (a string).
    Metadata,
    /// `policy`, compared by its `interval_s` (unique per write here).
    Policy,
    /// `slots.<zone>`, compared by `active`.
    Slot(String),
}

/// What an acknowledged write established.
#[derive(Debug, Clone)]
enum Est {
    Service(String),
    Reg {
        svc: String,
        reg: Reg,
        value: Value,
    },
    Rp {
        svc: String,
        rp: String,
    },
    /// A failover: its engine may retarget the policy at any later time.
    Failover(String),
    Message {
        id: String,
        body: String,
    },
    Acked(String),
}

#[derive(Debug, Clone)]
struct Write {
    kind: &'static str,
    zone: String,
    sent: Instant,
    /// When it was acknowledged; for an unanswered write, the latest time
    /// it may have committed.
    acked: Instant,
    /// False for a write that got no answer (node killed, timeout): it may
    /// or may not have committed, so it is never checked for presence, but
    /// it may have superseded another.
    answered: bool,
    est: Vec<Est>,
}

#[derive(Default)]
struct Record {
    writes: Vec<Write>,
    /// Values of writes answered with anything but 2xx (must be nowhere).
    refused_metadata: BTreeSet<String>,
    refused_intervals: BTreeSet<u64>,
    /// (operation, status) → count.
    answers: BTreeMap<(String, u16), u64>,
    /// Requests that got no answer (node killed, refused connection, timeout).
    unanswered: BTreeMap<String, u64>,
    /// 5xx answers the rules allow, by code.
    allowed_5xx: BTreeMap<String, u64>,
    /// 5xx answers the rules do not allow.
    bad_5xx: Vec<String>,
}

/// Per zone, when StorPool faults were on: (start, end or None while on).
#[derive(Default)]
struct FaultLog {
    windows: BTreeMap<String, Vec<(Instant, Option<Instant>)>>,
}

impl FaultLog {
    fn open(&mut self, zone: &str, at: Instant) {
        self.windows
            .entry(zone.to_string())
            .or_default()
            .push((at, None));
    }
    fn close(&mut self, zone: &str, at: Instant) {
        if let Some(w) = self
            .windows
            .get_mut(zone)
            .and_then(|ws| ws.iter_mut().rev().find(|w| w.1.is_none()))
        {
            w.1 = Some(at);
        }
    }
    /// Whether a request in `zone` sent at `sent` may have met a fault.
    fn overlaps(&self, zone: &str, sent: Instant, done: Instant) -> bool {
        self.windows.get(zone).is_some_and(|ws| {
            ws.iter()
                .any(|(s, e)| *s <= done && e.is_none_or(|e| e + FAULT_GRACE >= sent))
        })
    }
}

// ---------------------------------------------------------------------------
// The clients' view of the net: URLs only, so the driver may own the `Net`.

#[derive(Clone)]
struct Api {
    zones: Vec<String>,
    api: BTreeMap<String, String>,
    storpool: BTreeMap<String, String>,
    http: reqwest::Client,
    record: Arc<Mutex<Record>>,
    faults: Arc<Mutex<FaultLog>>,
    /// Services created so far: id → zone that created it.
    services: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    counter: Arc<AtomicU64>,
}

impl Api {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// One request; None if it got no answer. Every answer is classified
    /// (the 5xx rule) under `op`.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        op: &str,
        zone: &str,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Option<(Answer, Instant)> {
        let sent = Instant::now();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api[zone]))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = async {
            let res = req.send().await?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let text = res.text().await?;
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                text,
            })
        }
        .await;
        let done = Instant::now();
        let Ok(a) = res else {
            *self.record().unanswered.entry(op.to_string()).or_default() += 1;
            return None;
        };
        let mut r = self.record();
        *r.answers.entry((op.to_string(), a.status)).or_default() += 1;
        if a.status >= 500 {
            let code = a.error_code().unwrap_or("").to_string();
            let allowed = match (a.status, code.as_str()) {
                (503, "rebuilding") => a.header("retry-after").is_some(),
                (502, "storpool") => self
                    .faults
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .overlaps(zone, sent, done),
                _ => false,
            };
            if allowed {
                *r.allowed_5xx
                    .entry(format!("{} {code}", a.status))
                    .or_default() += 1;
            } else {
                r.bad_5xx
                    .push(format!("{op} in {zone} {path}: {} {}", a.status, a.text));
            }
        }
        drop(r);
        Some((a, sent))
    }

    fn acked(&self, kind: &'static str, zone: &str, sent: Instant, est: Vec<Est>) {
        self.record().writes.push(Write {
            kind,
            zone: zone.to_string(),
            sent,
            acked: Instant::now(),
            answered: true,
            est,
        });
    }

    /// A write that got no answer: what it would establish if it committed,
    /// which it may have done up to [`late_commit`] after its client gave up.
    fn unanswered(&self, kind: &'static str, zone: &str, est: Vec<Est>) {
        let now = Instant::now();
        self.record().writes.push(Write {
            kind,
            zone: zone.to_string(),
            sent: now,
            acked: now + late_commit(),
            answered: false,
            est,
        });
    }

    fn known_services(&self) -> Vec<String> {
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Creates a volume in the zone's cluster as the CMP would; false if
    /// the cluster did not answer (a fault).
    async fn create_volume(&self, zone: &str, name: &str) -> bool {
        let res = self
            .http
            .post(format!("{}/ctrl/1.0/VolumeCreate", self.storpool[zone]))
            .header("authorization", format!("Storpool v1:{SP_TOKEN}"))
            .json(&json!({ "name": name, "size": 1_048_576 }))
            .send()
            .await;
        let Ok(res) = res else { return false };
        let Ok(v) = res.json::<Value>().await else {
            return false;
        };
        v.get("error").is_none() || v["error"]["name"] == "objectExists"
    }

    async fn service(&self, op: &str, zone: &str, svc: &str) -> Option<Value> {
        let (a, _) = self
            .call(
                op,
                zone,
                Method::GET,
                &format!("/v1/services/{svc}"),
                READ_TOKEN,
                None,
                &[],
            )
            .await?;
        (a.status == 200).then_some(a.body)
    }
}

// ---------------------------------------------------------------------------
// The client operations

/// Protects a new VM of `zone` (recovery zone another one), with an
/// `Idempotency-Key`; retried with the same key when unanswered.
async fn op_create(api: &Api, rng: &mut StdRng, zone: &str, retries: &mut Vec<(String, Value)>) {
    let (zone, body) = if !retries.is_empty() && rng.gen_bool(0.5) {
        retries.swap_remove(0)
    } else {
        let n = api.next();
        let vm = format!("vm{n}");
        let disks = [format!("{vm}-d0"), format!("{vm}-d1")];
        for d in &disks {
            if !api.create_volume(zone, d).await {
                return;
            }
        }
        let recovery = api
            .zones
            .iter()
            .filter(|z| *z != zone)
            .collect::<Vec<_>>()
            .choose(rng)
            .map(|z| z.to_string())
            .expect("another zone");
        let body = json!({
            "cmp_vm_id": vm,
            "disks": disks,
            "metadata": format!("meta-{vm}"),
            "policy": {
                "interval_s": 3_600 + n,
                "recovery_zone": recovery,
                "local_retention": { "keep_last": 2, "keep_for_s": 0 },
                "remote_retention": { "keep_last": 2, "keep_for_s": 0 }
            }
        });
        (zone.to_string(), body)
    };
    let key = body["cmp_vm_id"].as_str().expect("vm").to_string();
    let Some((a, sent)) = api
        .call(
            "create",
            &zone,
            Method::POST,
            "/v1/services",
            CMP_TOKEN,
            Some(body.clone()),
            &[("idempotency-key", &key)],
        )
        .await
    else {
        retries.push((zone, body));
        return;
    };
    if !(200..300).contains(&a.status) {
        if a.status == 503 {
            retries.push((zone, body));
        }
        return;
    }
    let id = a.body["id"].as_str().expect("service id").to_string();
    api.services
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), zone.clone());
    api.acked(
        "create",
        &zone,
        sent,
        vec![
            Est::Service(id.clone()),
            Est::Reg {
                svc: id.clone(),
                reg: Reg::Metadata,
                value: body["metadata"].clone(),
            },
            Est::Reg {
                svc: id.clone(),
                reg: Reg::Policy,
                value: body["policy"]["interval_s"].clone(),
            },
            Est::Reg {
                svc: id,
                reg: Reg::Slot(zone.clone()),
                value: json!(true),
            },
        ],
    );
}

/// Reads a service and edits its metadata or its policy with `If-Match`.
async fn op_edit(api: &Api, rng: &mut StdRng, zone: &str, svc: &str, policy: bool) {
    let op = if policy { "policy" } else { "metadata" };
    let Some(view) = api.service(op, zone, svc).await else {
        return;
    };
    let version = view["version"].as_str().expect("version").to_string();
    let n = api.next();
    // Now and then an If-Match that is surely stale.
    let if_match = if rng.gen_bool(0.1) {
        "\"0000\"".to_string()
    } else {
        format!("\"{version}\"")
    };
    let (body, value) = if policy {
        let mut p = view["policy"].clone();
        if !p.is_object() {
            return;
        }
        p["interval_s"] = json!(3_600 + n);
        (json!({ "policy": p }), json!(3_600 + n))
    } else {
        let m = format!("meta-{n}");
        (json!({ "metadata": m }), json!(m))
    };
    let est = vec![Est::Reg {
        svc: svc.to_string(),
        reg: if policy { Reg::Policy } else { Reg::Metadata },
        value: value.clone(),
    }];
    let Some((a, sent)) = api
        .call(
            op,
            zone,
            Method::PATCH,
            &format!("/v1/services/{svc}"),
            CMP_TOKEN,
            Some(body),
            &[("if-match", &if_match)],
        )
        .await
    else {
        api.unanswered(op, zone, est);
        return;
    };
    if a.status == 200 {
        api.acked(op, zone, sent, est);
    } else {
        let mut r = api.record();
        match value {
            Value::String(s) => {
                r.refused_metadata.insert(s);
            }
            v => {
                r.refused_intervals.insert(v.as_u64().expect("interval"));
            }
        }
    }
}

/// Takes an RP now in a zone where the service is active.
async fn op_take_rp(api: &Api, rng: &mut StdRng, zone: &str, svc: &str) {
    let Some(view) = api.service("take_rp", zone, svc).await else {
        return;
    };
    let active: Vec<String> = view["active_zones"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|z| z.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let Some(at) = active.choose(rng).cloned() else {
        return;
    };
    let Some((a, sent)) = api
        .call(
            "take_rp",
            &at,
            Method::POST,
            &format!("/v1/services/{svc}/rps"),
            CMP_TOKEN,
            Some(json!({})),
            &[],
        )
        .await
    else {
        return;
    };
    if a.status == 201 {
        let rp = a.body["id"].as_str().expect("rp id").to_string();
        api.acked(
            "take_rp",
            &at,
            sent,
            vec![Est::Rp {
                svc: svc.to_string(),
                rp,
            }],
        );
    }
}

/// Fails the service over into its recovery zone.
async fn op_failover(api: &Api, zone: &str, svc: &str) {
    let Some(view) = api.service("failover", zone, svc).await else {
        return;
    };
    let Some(to) = view["policy"]["recovery_zone"].as_str().map(String::from) else {
        return;
    };
    let est = vec![
        Est::Reg {
            svc: svc.to_string(),
            reg: Reg::Slot(to.clone()),
            value: json!(true),
        },
        Est::Failover(svc.to_string()),
    ];
    let Some((a, sent)) = api
        .call(
            "failover",
            &to,
            Method::POST,
            &format!("/v1/services/{svc}/failover"),
            CMP_TOKEN,
            Some(json!({})),
            &[],
        )
        .await
    else {
        api.unanswered("failover", &to, est);
        return;
    };
    if a.status == 200 {
        api.acked("failover", &to, sent, est);
    }
}

/// The conflicts `zone` lists.
async fn conflicts(api: &Api, op: &str, zone: &str) -> Vec<Value> {
    match api
        .call(
            op,
            zone,
            Method::GET,
            "/v1/conflicts",
            READ_TOKEN,
            None,
            &[],
        )
        .await
    {
        Some((a, _)) if a.status == 200 => {
            a.body["conflicts"].as_array().cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Marks one of the active VMs of a service in two zones inactive.
async fn op_deactivate(api: &Api, rng: &mut StdRng, zone: &str) {
    let list = conflicts(api, "deactivate", zone).await;
    let two: Vec<&Value> = list.iter().filter(|c| c["kind"] == "active_vms").collect();
    let Some(c) = two.choose(rng) else { return };
    let svc = c["service"].as_str().expect("service").to_string();
    let sides = c["sides"].as_array().cloned().unwrap_or_default();
    let Some(off) = sides
        .choose(rng)
        .and_then(|s| s["zone"].as_str())
        .map(String::from)
    else {
        return;
    };
    let body = json!({ "zone": off });
    let est = vec![Est::Reg {
        svc: svc.clone(),
        reg: Reg::Slot(off),
        value: json!(false),
    }];
    let Some((a, sent)) = api
        .call(
            "deactivate",
            zone,
            Method::POST,
            &format!("/v1/services/{svc}/deactivate"),
            OP_TOKEN,
            Some(body),
            &[],
        )
        .await
    else {
        api.unanswered("deactivate", zone, est);
        return;
    };
    if a.status == 200 {
        api.acked("deactivate", zone, sent, est);
    }
}

/// Resolves one listed conflict, with the sides seen.
async fn op_resolve(api: &Api, rng: &mut StdRng, zone: &str) {
    let list = conflicts(api, "resolve", zone).await;
    let Some(c) = list.choose(rng) else { return };
    let svc = c["service"].as_str().expect("service").to_string();
    let sides = c["sides"].as_array().cloned().unwrap_or_default();
    let seen: Vec<Value> = sides.iter().map(|s| s["dot"].clone()).collect();
    let Some(side) = sides.choose(rng).cloned() else {
        return;
    };
    let (body, est) = if c["kind"] == "active_vms" {
        let keep = side["zone"].as_str().expect("zone").to_string();
        let est = sides
            .iter()
            .filter_map(|s| s["zone"].as_str())
            .filter(|z| *z != keep)
            .map(|z| Est::Reg {
                svc: svc.clone(),
                reg: Reg::Slot(z.to_string()),
                value: json!(false),
            })
            .collect();
        (
            json!({ "field": "active_vms", "keep_zone": keep, "seen": seen }),
            est,
        )
    } else {
        let field = c["field"].as_str().unwrap_or("").to_string();
        let (reg, value) = match field.as_str() {
            "metadata" => (Reg::Metadata, side["value"].clone()),
            "policy" => (Reg::Policy, side["value"]["interval_s"].clone()),
            f => match f.strip_prefix("slots.") {
                Some(z) => (Reg::Slot(z.to_string()), side["value"]["active"].clone()),
                None => return,
            },
        };
        (
            json!({ "field": field, "choose": side["dot"], "seen": seen }),
            vec![Est::Reg {
                svc: svc.clone(),
                reg,
                value,
            }],
        )
    };
    let Some((a, sent)) = api
        .call(
            "resolve",
            zone,
            Method::POST,
            &format!("/v1/services/{svc}/resolve"),
            OP_TOKEN,
            Some(body),
            &[],
        )
        .await
    else {
        api.unanswered("resolve", zone, est);
        return;
    };
    if a.status == 200 {
        api.acked("resolve", zone, sent, est);
    }
}

/// Sends a message to another zone's CMP.
async fn op_message(api: &Api, rng: &mut StdRng, zone: &str) {
    let to = api
        .zones
        .iter()
        .filter(|z| *z != zone)
        .collect::<Vec<_>>()
        .choose(rng)
        .map(|z| z.to_string())
        .expect("another zone");
    let body = format!("msg-{}", api.next());
    let Some((a, sent)) = api
        .call(
            "message",
            zone,
            Method::POST,
            "/v1/messages",
            CMP_TOKEN,
            Some(json!({ "to": to, "body": body })),
            &[],
        )
        .await
    else {
        return;
    };
    if a.status == 201 {
        let id = a.body["id"].as_str().expect("message id").to_string();
        api.acked("message", zone, sent, vec![Est::Message { id, body }]);
    }
}

/// Acknowledges a message in this zone's inbox.
async fn op_ack(api: &Api, rng: &mut StdRng, zone: &str) {
    let Some((a, _)) = api
        .call(
            "ack",
            zone,
            Method::GET,
            "/v1/messages?direction=inbox&acked=false",
            READ_TOKEN,
            None,
            &[],
        )
        .await
    else {
        return;
    };
    let msgs = a.body["messages"].as_array().cloned().unwrap_or_default();
    let Some(id) = msgs
        .choose(rng)
        .and_then(|m| m["id"].as_str())
        .map(String::from)
    else {
        return;
    };
    let Some((a, sent)) = api
        .call(
            "ack",
            zone,
            Method::POST,
            &format!("/v1/messages/{id}/ack"),
            CMP_TOKEN,
            Some(json!({})),
            &[],
        )
        .await
    else {
        return;
    };
    if a.status == 200 {
        api.acked("ack", zone, sent, vec![Est::Acked(id)]);
    }
}

/// One client: random operations in random zones until told to stop.
async fn client(api: Api, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut retries = Vec::new();
    while !api.stop.load(Ordering::Relaxed) {
        let zone = api.zones.choose(&mut rng).expect("a zone").clone();
        let known = api.known_services();
        let svc = known.choose(&mut rng).cloned();
        let roll = rng.gen_range(0..100);
        match (roll, svc) {
            (0..=14, _) | (_, None) => op_create(&api, &mut rng, &zone, &mut retries).await,
            (15..=34, Some(s)) => op_edit(&api, &mut rng, &zone, &s, false).await,
            (35..=44, Some(s)) => op_edit(&api, &mut rng, &zone, &s, true).await,
            (45..=59, Some(s)) => op_take_rp(&api, &mut rng, &zone, &s).await,
            (60..=65, Some(s)) => op_failover(&api, &zone, &s).await,
            (66..=72, _) => op_deactivate(&api, &mut rng, &zone).await,
            (73..=84, _) => op_resolve(&api, &mut rng, &zone).await,
            (85..=94, _) => op_message(&api, &mut rng, &zone).await,
            _ => op_ack(&api, &mut rng, &zone).await,
        }
        // Pacing, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..120))).await;
    }
}

// ---------------------------------------------------------------------------
// The driver's faults

/// A StorPool fault: what switches it on, and off.
fn storpool_fault(rng: &mut StdRng) -> (&'static str, Value, Value) {
    match rng.gen_range(0..6) {
        0 => (
            "transient",
            json!({ "transient_error_rate": 0.3, "seed": rng.gen::<u32>() }),
            json!({ "transient_error_rate": 0.0 }),
        ),
        1 => (
            "refuse",
            json!({ "down": "refuse" }),
            json!({ "down": "up" }),
        ),
        2 => ("hang", json!({ "down": "hang" }), json!({ "down": "up" })),
        3 => ("restart", json!({ "restart_ms": 1_500 }), json!({})),
        4 => ("stuck", json!({ "stuck": true }), json!({ "stuck": false })),
        _ => (
            "slow",
            json!({ "bandwidth_mbps": 1.0 }),
            json!({ "bandwidth_mbps": null }),
        ),
    }
}

/// Every StorPool fault off.
fn no_faults() -> Value {
    json!({ "transient_error_rate": 0.0, "down": "up", "stuck": false, "bandwidth_mbps": null })
}

#[derive(Default)]
struct Figures {
    kills: u64,
    clean_restarts: u64,
    link_cuts: u64,
    fault_windows: BTreeMap<&'static str, u64>,
}

/// The links of a ring of `zones` (for three, every pair).
fn ring(zones: &[String]) -> Vec<(String, String)> {
    let n = zones.len();
    (0..n)
        .map(|i| (zones[i].clone(), zones[(i + 1) % n].clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// The end state

/// One zone's view of every service, its RPs, its snapshots and conflicts.
struct ZoneView {
    services: BTreeMap<String, Value>,
    rps: BTreeMap<String, Vec<Value>>,
    digest: String,
    vv: Value,
    conflicts: Value,
}

async fn zone_view(net: &Net, zone: &str) -> ZoneView {
    let services = net.services(zone).await;
    let mut rps = BTreeMap::new();
    for id in services.keys() {
        let a = net.get(zone, &format!("/v1/services/{id}/rps")).await;
        a.expect(200);
        rps.insert(
            id.clone(),
            a.body["rps"].as_array().cloned().unwrap_or_default(),
        );
    }
    let status = net.status(zone).await;
    let c = net.get(zone, "/v1/conflicts").await;
    c.expect(200);
    ZoneView {
        services,
        rps,
        digest: status["digest"].as_str().unwrap_or("").to_string(),
        vv: status["vv"].clone(),
        conflicts: c.body["conflicts"].clone(),
    }
}

/// What the engines left in one cluster against what the state says.
#[derive(Debug, Default)]
struct SnapshotAudit {
    transferring: usize,
    pending: usize,
    complete: usize,
    live: usize,
    leaked: BTreeSet<String>,
    lost: BTreeSet<String>,
}

async fn audit(net: &Net, zone: &str, view: &ZoneView) -> SnapshotAudit {
    let mut a = SnapshotAudit::default();
    let mut complete = BTreeSet::new();
    for (svc, rps) in &view.rps {
        let sid = ServiceId::new(svc.clone()).expect("service id");
        for rp in rps {
            let rid: RpId = rp["id"].as_str().expect("rp id").parse().expect("rp id");
            match rp["copies"][zone]["state"].as_str() {
                Some("complete") => {
                    a.complete += 1;
                    let disks = rp["disks"].as_array().map_or(0, Vec::len);
                    for i in 0..disks {
                        complete.insert(names::rp_snapshot_name(&sid, &rid, i));
                    }
                }
                Some("transferring") => a.transferring += 1,
                Some("pending") => a.pending += 1,
                _ => {}
            }
        }
    }
    let live: BTreeSet<String> = net
        .storpool(zone, "SnapshotsList", None)
        .await
        .as_array()
        .expect("snapshots")
        .iter()
        .filter(|s| !s["deleted"].as_bool().unwrap_or(false))
        .filter_map(|s| s["name"].as_str())
        .filter(|n| n.starts_with("drrp:"))
        .map(String::from)
        .collect();
    a.live = live.len();
    a.leaked = live.difference(&complete).cloned().collect();
    a.lost = complete.difference(&live).cloned().collect();
    a
}

/// The values `view` holds for a register of a service: the one a read
/// answers and every side of a conflict on it.
fn reg_values(view: &Value, reg: &Reg) -> Vec<Value> {
    let (field, read) = match reg {
        Reg::Metadata => ("metadata".to_string(), view["metadata"].clone()),
        Reg::Policy => ("policy".to_string(), view["policy"]["interval_s"].clone()),
        Reg::Slot(z) => (format!("slots.{z}"), view["slots"][z]["active"].clone()),
    };
    let mut out = vec![read];
    for c in view["conflicts"].as_array().into_iter().flatten() {
        if c["kind"] == "concurrent_write" && c["field"] == field.as_str() {
            for s in c["sides"].as_array().into_iter().flatten() {
                out.push(match reg {
                    Reg::Metadata => s["value"].clone(),
                    Reg::Policy => s["value"]["interval_s"].clone(),
                    Reg::Slot(_) => s["value"]["active"].clone(),
                });
            }
        }
    }
    out
}

/// Every acknowledged write against every zone's end state; answers the
/// failures.
///
/// - create: the service is listed, not deleted, in every zone;
/// - a register write (create's metadata, policy and own slot; metadata and
///   policy edits; a failover's slot there; a deactivation's slot; a
///   resolve's chosen value, or for `active_vms` the other zones' slots
///   inactive): the value is among the register's values (read value or
///   conflict sides) in every zone, or another write to the same register
///   was acknowledged after this one was sent (the only writes that can
///   causally follow it), or got no answer and may have committed after
///   this one was sent (a node killed before it answered, a timeout). A
///   policy may also have been retargeted by the engine after any failover
///   of that service;
/// - message: listed with its body in every zone; ack: acknowledged in
///   every zone;
/// - RP take: not checked for presence (retention deletes and purges RPs);
///   its snapshots are covered by the snapshot audit.
fn check_writes(
    writes: &[Write],
    views: &BTreeMap<String, ZoneView>,
    messages: &BTreeMap<String, BTreeMap<String, Value>>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let failed_over: BTreeSet<&str> = writes
        .iter()
        .flat_map(|w| &w.est)
        .filter_map(|e| match e {
            Est::Failover(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    for (i, w) in writes.iter().enumerate().filter(|(_, w)| w.answered) {
        for e in &w.est {
            match e {
                Est::Service(id) => {
                    for (z, v) in views {
                        match v.services.get(id) {
                            Some(s) if s["deleted"] == false => {}
                            s => failures
                                .push(format!("{z}: service {id} created in {} is {s:?}", w.zone)),
                        }
                    }
                }
                Est::Reg { svc, reg, value } => {
                    let superseded = writes.iter().enumerate().any(|(j, w2)| {
                        j != i
                            && w2.acked > w.sent
                            && w2.est.iter().any(|e2| {
                                matches!(e2, Est::Reg { svc: s2, reg: r2, .. } if s2 == svc && r2 == reg)
                            })
                    }) || (*reg == Reg::Policy && failed_over.contains(svc.as_str()));
                    if superseded {
                        continue;
                    }
                    for (z, v) in views {
                        let Some(view) = v.services.get(svc) else {
                            failures.push(format!("{z}: no service {svc} for {} write", w.kind));
                            continue;
                        };
                        let values = reg_values(view, reg);
                        if !values.contains(value) {
                            failures.push(format!(
                                "{z}: {} in {} set {reg:?} of {svc} to {value}, not superseded, but {z} holds {values:?}",
                                w.kind, w.zone
                            ));
                        }
                    }
                }
                Est::Message { id, body } => {
                    for (z, m) in messages {
                        match m.get(id) {
                            Some(v) if v["body"] == body.as_str() => {}
                            v => failures.push(format!("{z}: message {id} is {v:?}")),
                        }
                    }
                }
                Est::Acked(id) => {
                    for (z, m) in messages {
                        if !m.get(id).is_some_and(|v| v["state"] == "acked") {
                            failures.push(format!("{z}: message {id} acked in {} is not", w.zone));
                        }
                    }
                }
                Est::Rp { .. } | Est::Failover(_) => {}
            }
        }
    }
    failures
}

/// The service an establishment is about ("" for messages).
fn est_service(e: &Est) -> &str {
    match e {
        Est::Service(s) | Est::Failover(s) | Est::Reg { svc: s, .. } | Est::Rp { svc: s, .. } => s,
        Est::Message { .. } | Est::Acked(_) => "",
    }
}

/// The messages `ids` as `zone` shows them (absent: not there).
async fn messages_in(net: &Net, zone: &str, ids: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for id in ids {
        let a = net.get(zone, &format!("/v1/messages/{id}")).await;
        assert!(
            a.status == 200 || a.status == 404,
            "GET message {id} in {zone}: {}",
            a.text
        );
        if a.status == 200 {
            out.insert(id.clone(), a.body);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_chaos_over_processes_loses_no_acknowledged_write() {
    let seed = env_u64("DRENGINE_CHAOS_SEED").unwrap_or_else(rand::random);
    let chaos_secs = env_u64("DRENGINE_CHAOS_SECS").unwrap_or(DEFAULT_SECS);
    let n_zones = env_u64("DRENGINE_CHAOS_ZONES").unwrap_or(3) as usize;
    println!(
        "chaos seed {seed} ({n_zones} zones, {chaos_secs}s); replay: DRENGINE_CHAOS_SEED={seed} DRENGINE_CHAOS_ZONES={n_zones} DRENGINE_CHAOS_SECS={chaos_secs} cargo test --release --test process chaos:: -- --nocapture"
    );
    assert!((3..=5).contains(&n_zones), "DRENGINE_CHAOS_ZONES is 3 to 5");
    let mut rng = StdRng::seed_from_u64(seed);

    // The net: a ring of control links, each direction through a proxy.
    let zones: Vec<String> = MORE_ZONES[..n_zones]
        .iter()
        .map(|z| z.to_string())
        .collect();
    let links = ring(&zones);
    let peers_of = |z: &str| -> Vec<String> {
        links
            .iter()
            .filter_map(|(a, b)| {
                if a == z {
                    Some(b.clone())
                } else if b == z {
                    Some(a.clone())
                } else {
                    None
                }
            })
            .collect()
    };
    let mut net = Net::with_zones(n_zones, |z, cfg| {
        let peers: Vec<toml::Value> = peers_of(z).into_iter().map(toml::Value::from).collect();
        table(cfg, "sync").insert("peers".into(), toml::Value::Array(peers));
    })
    .await;
    // (from, to) → the proxy `from` dials `to` through.
    let mut proxies: BTreeMap<(String, String), Proxy> = BTreeMap::new();
    for (a, b) in &links {
        for (from, to) in [(a, b), (b, a)] {
            let p = Proxy::start(net.sync_listen(to)).await.expect("proxy");
            net.set_peer_addr(from, to, &p.multiaddr());
            proxies.insert((from.clone(), to.clone()), p);
        }
    }
    for z in &zones {
        net.start_zone(z).await;
    }
    let zrefs: Vec<&str> = zones.iter().map(String::as_str).collect();
    net.wait_ready(&zrefs).await;
    for (a, b) in &links {
        net.wait_connected(a, b).await;
    }
    for (a, b) in &links {
        let through = proxies[&(a.clone(), b.clone())].forwarded()
            + proxies[&(b.clone(), a.clone())].forwarded();
        assert!(through > 0, "the link {a}-{b} runs through its proxies");
    }

    let api = Api {
        zones: zones.clone(),
        api: zones
            .iter()
            .map(|z| (z.clone(), net.api(z).to_string()))
            .collect(),
        storpool: zones
            .iter()
            .map(|z| (z.clone(), net.storpool_url(z).to_string()))
            .collect(),
        http: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("http client"),
        record: Arc::default(),
        faults: Arc::default(),
        services: Arc::default(),
        stop: Arc::new(AtomicBool::new(false)),
        counter: Arc::new(AtomicU64::new(1)),
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let seed = rng.gen::<u64>();
            tokio::spawn(client(api.clone(), seed))
        })
        .collect();

    // The driver: kills and restarts, link cuts and heals, StorPool faults.
    let mut figures = Figures::default();
    let max_down = (n_zones - 1) / 2;
    let mut down: BTreeMap<String, Instant> = BTreeMap::new();
    let mut cut: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut faulted: BTreeMap<String, (Instant, Value)> = BTreeMap::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(chaos_secs);
    while Instant::now() < end {
        let now = Instant::now();
        for z in down
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(z, _)| z.clone())
            .collect::<Vec<_>>()
        {
            net.start_zone(&z).await;
            down.remove(&z);
        }
        for l in cut
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(l, _)| *l)
            .collect::<Vec<_>>()
        {
            let (a, b) = &links[l];
            proxies[&(a.clone(), b.clone())].heal();
            proxies[&(b.clone(), a.clone())].heal();
            cut.remove(&l);
        }
        for z in faulted
            .iter()
            .filter(|(_, f)| f.0 <= now)
            .map(|(z, _)| z.clone())
            .collect::<Vec<_>>()
        {
            let (_, off) = faulted.remove(&z).expect("faulted");
            net.storpool_faults(&z, off).await;
            api.faults
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .close(&z, Instant::now());
        }
        // Pacing of the chaos, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..700))).await;
        let now = Instant::now();
        match rng.gen_range(0..10) {
            0..=2 => {
                let up: Vec<&String> = zones.iter().filter(|z| !down.contains_key(*z)).collect();
                if down.len() < max_down.max(1) {
                    let z = up.choose(&mut rng).expect("a running zone").to_string();
                    if rng.gen_bool(0.2) {
                        net.stop(&z).await;
                        figures.clean_restarts += 1;
                    } else {
                        net.kill(&z);
                        figures.kills += 1;
                    }
                    down.insert(z, now + Duration::from_millis(rng.gen_range(200..3_000)));
                }
            }
            3..=5 => {
                let l = rng.gen_range(0..links.len());
                if let Entry::Vacant(e) = cut.entry(l) {
                    let (a, b) = &links[l];
                    proxies[&(a.clone(), b.clone())].cut();
                    proxies[&(b.clone(), a.clone())].cut();
                    e.insert(now + Duration::from_millis(rng.gen_range(300..4_000)));
                    figures.link_cuts += 1;
                }
            }
            6..=7 => {
                let z = zones.choose(&mut rng).expect("a zone").clone();
                if let Entry::Vacant(e) = faulted.entry(z.clone()) {
                    let (kind, on, off) = storpool_fault(&mut rng);
                    api.faults
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .open(&z, now);
                    net.storpool_faults(&z, on).await;
                    let len = if kind == "restart" {
                        1_500
                    } else {
                        rng.gen_range(300..2_500)
                    };
                    e.insert((now + Duration::from_millis(len), off));
                    *figures.fault_windows.entry(kind).or_default() += 1;
                }
            }
            _ => {}
        }
    }

    // Heal everything, restart every node, and wait.
    api.stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let healed = Instant::now();
    for p in proxies.values() {
        p.heal();
    }
    for z in &zones {
        net.storpool_faults(z, no_faults()).await;
        api.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close(z, healed);
    }
    for z in &zones {
        if net.has_process(z) {
            net.stop(z).await;
        }
    }
    for z in &zones {
        net.start_zone(z).await;
    }
    let restarted = Instant::now();
    wait_until("every zone ready after the heal", CONVERGE_WAIT, || async {
        for z in &zones {
            match net
                .try_call(z, Method::GET, "/v1/status", Some(OP_TOKEN), None, &[])
                .await
            {
                Ok(a) if a.body["rebuild"]["state"] == "ready" => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    let converged = wait_for("equal digests after the heal", CONVERGE_WAIT, || async {
        let mut seen: Option<(Value, Value)> = None;
        for z in &zones {
            let a = net
                .try_call(z, Method::GET, "/v1/status", Some(OP_TOKEN), None, &[])
                .await
                .ok()?;
            let d = (a.body["digest"].clone(), a.body["vv"].clone());
            match &seen {
                None => seen = Some(d),
                Some(s) if *s == d => {}
                Some(_) => return None,
            }
        }
        Some(Instant::now())
    })
    .await;
    let to_converge = converged - restarted;
    let restart_took = restarted - healed;

    // The engines settle: nothing transferring, snapshots as the state says,
    // and (the engines having written) every zone equal again.
    let mut last: Option<BTreeMap<String, SnapshotAudit>> = None;
    let deadline = Instant::now() + CONVERGE_WAIT;
    let (views, audits) = loop {
        let mut views = BTreeMap::new();
        for z in &zones {
            views.insert(z.clone(), zone_view(&net, z).await);
        }
        let mut audits = BTreeMap::new();
        for z in &zones {
            audits.insert(z.clone(), audit(&net, z, &views[z]).await);
        }
        let first = views.values().next().expect("a zone");
        let equal = views
            .values()
            .all(|v| v.digest == first.digest && v.vv == first.vv);
        let clean = audits
            .values()
            .all(|a| a.transferring == 0 && a.leaked.is_empty() && a.lost.is_empty());
        if equal && clean {
            break (views, audits);
        }
        if Instant::now() > deadline {
            last = Some(audits);
            break (views, BTreeMap::new());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(audits) = last {
        panic!("seed {seed}: the engines did not settle within {CONVERGE_WAIT:?}: {audits:#?}");
    }
    let settled = Instant::now() - restarted;

    // The checks.
    let first = views.values().next().expect("a zone");
    for (z, v) in &views {
        assert_eq!(v.digest, first.digest, "seed {seed}: digest of {z}");
        assert_eq!(
            v.conflicts, first.conflicts,
            "seed {seed}: conflicts of {z}"
        );
    }
    let record = std::mem::take(&mut *api.record());
    let ids: BTreeSet<String> = record
        .writes
        .iter()
        .flat_map(|w| &w.est)
        .filter_map(|e| match e {
            Est::Message { id, .. } | Est::Acked(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let mut messages = BTreeMap::new();
    for z in &zones {
        messages.insert(z.clone(), messages_in(&net, z, &ids).await);
    }
    let failures = check_writes(&record.writes, &views, &messages);
    if !failures.is_empty() {
        // What the first zone's history says of each service involved, so
        // a failure names the writes that led there.
        let named = |svc: &str| !svc.is_empty() && failures.iter().any(|f| f.contains(svc));
        let involved: BTreeSet<&str> = record
            .writes
            .iter()
            .flat_map(|w| &w.est)
            .map(est_service)
            .filter(|svc| named(svc))
            .collect();
        let mut histories = Vec::new();
        for svc in &involved {
            let h = net
                .get(&zones[0], &format!("/v1/services/{svc}/history?limit=100"))
                .await;
            histories.push(format!("history of {svc} in {}: {}", zones[0], h.text));
        }
        let mine: Vec<String> = record
            .writes
            .iter()
            .filter(|w| w.est.iter().any(|e| involved.contains(est_service(e))))
            .map(|w| {
                format!(
                    "{} in {} answered={} {:?}",
                    w.kind, w.zone, w.answered, w.est
                )
            })
            .collect();
        panic!(
            "seed {seed}: acknowledged writes missing:\n{}\nthe clients' writes of those services:\n{}\n{}",
            failures.join("\n"),
            mine.join("\n"),
            histories.join("\n")
        );
    }
    for (z, v) in &views {
        for (id, s) in &v.services {
            for m in reg_values(s, &Reg::Metadata) {
                if let Some(m) = m.as_str() {
                    assert!(
                        !record.refused_metadata.contains(m),
                        "seed {seed}: {z}: {id} holds metadata {m} of a refused write"
                    );
                }
            }
            for p in reg_values(s, &Reg::Policy) {
                if let Some(p) = p.as_u64() {
                    assert!(
                        !record.refused_intervals.contains(&p),
                        "seed {seed}: {z}: {id} holds interval {p} of a refused write"
                    );
                }
            }
        }
    }
    assert!(
        record.bad_5xx.is_empty(),
        "seed {seed}: 5xx answers:\n{}",
        record.bad_5xx.join("\n")
    );

    // Figures.
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for w in record.writes.iter().filter(|w| w.answered) {
        *by_kind.entry(w.kind).or_default() += 1;
    }
    let answers: u64 = record.answers.values().sum();
    let unanswered: u64 = record.unanswered.values().sum();
    let rps: usize = first.rps.values().map(Vec::len).sum();
    let snaps: usize = audits.values().map(|a| a.live).sum();
    let pending: usize = audits.values().map(|a| a.pending).sum();
    println!("figure: chaos seed {seed}, {n_zones} zones, {chaos_secs}s, {CLIENTS} clients");
    println!(
        "figure: acknowledged writes {} by kind {by_kind:?}",
        by_kind.values().sum::<u64>()
    );
    println!(
        "figure: answers {answers}, unanswered {unanswered} {:?}",
        record.unanswered
    );
    println!("figure: allowed 5xx {:?}", record.allowed_5xx);
    println!(
        "figure: kills {} (SIGKILL), clean restarts {}, link cuts {}, StorPool fault windows {:?}",
        figures.kills, figures.clean_restarts, figures.link_cuts, figures.fault_windows
    );
    println!(
        "figure: connections through the proxies {}, refused while cut {}",
        proxies.values().map(Proxy::forwarded).sum::<u64>(),
        proxies.values().map(Proxy::refused).sum::<u64>()
    );
    println!(
        "figure: heal and restart of every node {}; then -> digests equal {}, -> engines settled {}",
        secs(restart_took),
        secs(to_converge),
        secs(settled)
    );
    let acked_rps: Vec<(&String, &String)> = record
        .writes
        .iter()
        .flat_map(|w| &w.est)
        .filter_map(|e| match e {
            Est::Rp { svc, rp } => Some((svc, rp)),
            _ => None,
        })
        .collect();
    let listed = acked_rps
        .iter()
        .filter(|(svc, rp)| {
            first
                .rps
                .get(*svc)
                .is_some_and(|rps| rps.iter().any(|r| r["id"] == rp.as_str()))
        })
        .count();
    println!(
        "figure: acknowledged RP takes still listed at the end {listed} of {} (retention deletes and purges the rest)",
        acked_rps.len()
    );
    println!(
        "figure: end state: {} services, {rps} RPs, {snaps} RP snapshots across clusters, {pending} copies pending, {} conflicts, digest {}",
        first.services.len(),
        first.conflicts.as_array().map_or(0, Vec::len),
        first.digest
    );
}
