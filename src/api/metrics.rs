//! `/metrics` in the Prometheus text format (0.0.4), names
//! `drengine_<thing>_<unit>`, built and encoded with `prometheus-client`.
//!
//! Kept here between scrapes: API request latency (a histogram per method,
//! route template and status) and events applied (fed from the commit feed).
//! Everything else is read when scraped: RPO from the engine, sync lag from
//! the peer source, conflicts and services from the replica.
//!
//! Each scrape builds its own [`Registry`] ([`registry`], the one place that
//! names every metric): the kept metrics are registered as handles onto the
//! same counters, the rest as gauges and counters set from what was read. So
//! a deleted service or an unconfigured peer leaves no stale series behind,
//! and label sets stay bounded by what the node holds right now.

use super::ApiState;
use crate::store::Commit;
use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Upper bounds of the latency buckets, seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A request's labels: a bounded set, since routes are templates and
/// unknown methods count as `other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    /// `local` or `peer`.
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabels {
    level: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// `sent` or `received`: two series per sync counter, whatever the peers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// A counter family with one series per direction.
fn by_direction(sent: u64, received: u64) -> Family<DirectionLabels, Counter> {
    let f = Family::<DirectionLabels, Counter>::default();
    f.get_or_create(&DirectionLabels { direction: "sent" })
        .inc_by(sent);
    f.get_or_create(&DirectionLabels {
        direction: "received",
    })
    .inc_by(received);
    f
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

type Seconds = Gauge<f64, AtomicU64>;

/// The API's own metrics, kept between scrapes. Cheap to clone: every field
/// is a handle onto shared counters.
#[derive(Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    events_applied: Family<SourceLabels, Counter>,
    /// The `local` and `peer` series of `events_applied`, held so counting an
    /// event takes no lock.
    events_local: Counter,
    events_peer: Counter,
    feed_lagged: Counter,
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let events_applied = Family::<SourceLabels, Counter>::default();
        let source = |source| {
            events_applied
                .get_or_create(&SourceLabels { source })
                .clone()
        };
        let (events_local, events_peer) = (source("local"), source("peer"));
        Metrics {
            requests: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS_S)),
            events_applied,
            events_local,
            events_peer,
            feed_lagged: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Counts committed events until `shutdown` flips.
    pub fn follow(
        &self,
        mut rx: broadcast::Receiver<Arc<Commit>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break,
                    r = rx.recv() => match r {
                        Ok(c) => {
                            for (_, from) in &c.events {
                                let counter = if from.is_some() { &me.events_peer } else { &me.events_local };
                                counter.inc();
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            me.feed_lagged.inc_by(n);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
    }

    pub fn observe_request(
        &self,
        method: &Method,
        route: &str,
        status: StatusCode,
        took: Duration,
    ) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.to_string(),
            status: status.as_u16(),
        };
        self.requests
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}

/// A gauge holding `v` (saturating at `i64::MAX`).
fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// A counter holding `n`, for totals another module keeps.
fn counter(n: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(n);
    c
}

/// The registry one scrape encodes: every metric, its name, type and help.
/// Counters are registered without `_total`, which the encoder appends.
fn registry(state: &ApiState) -> Registry {
    let mut root = Registry::default();
    let m = state.metrics();
    root.register(
        "drengine_api_request_duration_seconds",
        "API request latency until the response head",
        m.requests.clone(),
    );

    let zone = state.zone().as_str().to_string();
    let r = root.sub_registry_with_label(("zone".into(), zone.into()));
    let (services, conflicts, pending) = state.db().read(|replica| {
        (
            replica
                .state()
                .services
                .values()
                .filter(|s| !s.is_deleted())
                .count(),
            replica.conflicts().len(),
            replica.pending_len(),
        )
    });
    r.register(
        "drengine_services_count",
        "Live DR services in the replica",
        gauge(services as u64),
    );
    r.register(
        "drengine_conflicts_count",
        "Conflicts visible in this zone",
        gauge(conflicts as u64),
    );
    r.register(
        "drengine_pending_events_count",
        "Received events waiting for their causal past",
        gauge(pending as u64),
    );
    r.register(
        "drengine_events_applied",
        "Events committed by this node, by source",
        m.events_applied.clone(),
    );
    r.register(
        "drengine_metrics_feed_lagged",
        "Commits the metrics counter missed by falling behind",
        m.feed_lagged.clone(),
    );

    if let Some(c) = state.0.peers.counters() {
        let dropped = Family::<ReasonLabels, Counter>::default();
        for (reason, n) in &c.dropped {
            let labels = ReasonLabels {
                reason: reason.clone(),
            };
            dropped.get_or_create(&labels).inc_by(*n);
        }
        r.register(
            "drengine_sync_dropped",
            "Input from peers dropped, by reason (forged, malformed, unsolicited, ...)",
            dropped,
        );
        r.register(
            "drengine_sync_snapshots_imported",
            "State snapshots imported from peers",
            counter(c.snapshots_imported),
        );
        r.register(
            "drengine_sync_snapshots_sent",
            "State snapshots sent to peers behind the compaction floor",
            counter(c.snapshots_sent),
        );
        r.register(
            "drengine_sync_bytes",
            "Sync frame bytes written to and read from peers (payload and framing)",
            by_direction(c.bytes_sent, c.bytes_received),
        );
        r.register(
            "drengine_sync_events",
            "Events sent to and received from peers in batches (before verification)",
            by_direction(c.events_sent, c.events_received),
        );
    }

    let rebuilding = state.db().rebuild_status().state == crate::replica::RebuildState::Rebuilding;
    r.register(
        "drengine_rebuilding_bool",
        "1 while the node refuses writes until it holds its zone's newest event",
        gauge(u64::from(rebuilding)),
    );
    r.register(
        "drengine_writer_failed_bool",
        "1 once a commit failed: the node refuses writes until it restarts",
        gauge(u64::from(state.db().is_poisoned())),
    );
    r.register(
        "drengine_engine_ticks_skipped",
        "Reconciler passes skipped because the node could not act (rebuilding)",
        counter(state.engine().ticks_skipped()),
    );

    // Per-service series only for services whose RPO is not `ok` or is
    // past its target: at 100,000 healthy services the scrape stays small
    // and the label cardinality is bounded by the services in trouble. The
    // counts by level cover every service.
    let rpo_age = Family::<ServiceLabels, Seconds>::default();
    let rpo_target = Family::<ServiceLabels, Gauge>::default();
    let past_rpo = Family::<ServiceLabels, Gauge>::default();
    let rpo_level = Family::<ServiceLabels, Gauge>::default();
    let by_level = Family::<LevelLabels, Gauge>::default();
    for l in crate::engine::RpoLevel::ALL {
        by_level
            .get_or_create(&LevelLabels { level: l.as_str() })
            .set(0);
    }
    for s in state.engine().rpo_all() {
        by_level
            .get_or_create(&LevelLabels {
                level: s.level.as_str(),
            })
            .inc();
        if s.level == crate::engine::RpoLevel::Ok && !s.past_rpo {
            continue;
        }
        let labels = ServiceLabels {
            service: s.service.as_str().to_string(),
        };
        if let Some(age) = s.rpo_age_s {
            rpo_age.get_or_create(&labels).set(age);
        }
        let target = i64::try_from(s.rpo_target_s).unwrap_or(i64::MAX);
        rpo_target.get_or_create(&labels).set(target);
        past_rpo.get_or_create(&labels).set(i64::from(s.past_rpo));
        rpo_level.get_or_create(&labels).set(s.level as i64);
    }
    r.register(
        "drengine_services_by_rpo_level",
        "Services this zone protects or receives, by RPO level (paused, ok, warning, critical)",
        by_level,
    );
    r.register(
        "drengine_service_rpo_level",
        "RPO level of a service not ok: -1 paused by an operator, 1 warning (older than 2 intervals), 2 critical (3, or unknown)",
        rpo_level,
    );
    r.register(
        "drengine_service_rpo_seconds",
        "Age of the newest RP complete in the recovery zone (services not ok or past their RPO)",
        rpo_age,
    );
    r.register(
        "drengine_service_rpo_target_seconds",
        "The policy interval: the RPO target",
        rpo_target,
    );
    r.register(
        "drengine_service_past_rpo_bool",
        "1 if the service is past its RPO target",
        past_rpo,
    );
    r.register(
        "drengine_storpool_errors",
        "StorPool API errors met by the engine",
        counter(state.engine().storpool_errors_total()),
    );
    if let Some((engine, storpool)) = state.engine().metrics() {
        r.register(
            "drengine_rps_taken",
            "Recovery points this zone took (scheduled, on demand, final)",
            engine.rps_taken,
        );
        r.register(
            "drengine_rps_failed",
            "Attempts to take a recovery point that failed (StorPool or the database)",
            engine.rps_failed,
        );
        r.register(
            "drengine_copy_transfer_seconds",
            "From an RP being taken to its copy being complete in this zone",
            engine.copy_transfer,
        );
        r.register(
            "drengine_storpool_call_duration_seconds",
            "StorPool API call latency by call (every attempt)",
            storpool.calls,
        );
        r.register(
            "drengine_storpool_call_errors",
            "Failed StorPool API attempts by call and StorPool error name (at most 32 names; then other)",
            storpool.errors,
        );
    }

    let connected = Family::<PeerLabels, Gauge>::default();
    let behind = Family::<PeerLabels, Gauge>::default();
    let ahead = Family::<PeerLabels, Gauge>::default();
    let rtt = Family::<PeerLabels, Seconds>::default();
    for p in state.0.peers.peers() {
        let labels = PeerLabels {
            peer: p.zone.as_str().to_string(),
        };
        connected.get_or_create(&labels).set(i64::from(p.connected));
        behind
            .get_or_create(&labels)
            .set(i64::try_from(p.behind_events).unwrap_or(i64::MAX));
        ahead
            .get_or_create(&labels)
            .set(i64::try_from(p.ahead_events).unwrap_or(i64::MAX));
        if let Some(ms) = p.rtt_ms {
            rtt.get_or_create(&labels).set(ms / 1000.0);
        }
    }
    r.register(
        "drengine_peer_connected_bool",
        "1 if the control link to the peer is up",
        connected,
    );
    r.register(
        "drengine_peer_behind_events",
        "Events we have that the peer is not known to have",
        behind,
    );
    r.register(
        "drengine_peer_ahead_events",
        "Events the peer has that we lack",
        ahead,
    );
    r.register(
        "drengine_peer_rtt_seconds",
        "Round-trip time to the peer",
        rtt,
    );
    root
}

/// Renders every metric in the Prometheus text format.
pub fn render(state: &ApiState) -> String {
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry(state))
        .expect("the encoder fails only when its writer does, and a String takes any write");
    out
}

pub async fn handler(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        render(&state),
    )
        .into_response()
}
