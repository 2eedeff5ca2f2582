//! `/metrics` in the Prometheus text format, names `drengine_<thing>_<unit>`.
//!
//! Counters kept here: API request latency (a histogram per method, route
//! template and status) and events applied (fed from the commit feed).
//! Everything else is read when scraped: RPO from the engine, sync lag from
//! the peer source, conflicts and services from the replica.

use super::ApiState;
use crate::store::Commit;
use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Upper bounds of the latency buckets, seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

#[derive(Default)]
struct Inner {
    /// Keyed by (method, route template, status): a bounded set, since
    /// routes are templates and unknown methods count as `other`.
    requests: Mutex<BTreeMap<(&'static str, String, u16), Histogram>>,
    events_local: AtomicU64,
    events_remote: AtomicU64,
    feed_lagged: AtomicU64,
}

/// The API's own counters. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

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
                                let counter = if from.is_some() { &me.0.events_remote } else { &me.0.events_local };
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            me.0.feed_lagged.fetch_add(n, Ordering::Relaxed);
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
        let s = took.as_secs_f64();
        let mut map = self.0.requests.lock().unwrap_or_else(|p| p.into_inner());
        let h = map
            .entry((method_label(method), route.to_string(), status.as_u16()))
            .or_default();
        for (i, le) in LATENCY_BUCKETS_S.iter().enumerate() {
            if s <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum_s += s;
    }

    fn write_requests(&self, out: &mut String) {
        let name = "drengine_api_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} API request latency until the response head."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let map = self.0.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((method, route, status), h) in map.iter() {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                escape(route)
            );
            for (i, le) in LATENCY_BUCKETS_S.iter().enumerate() {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_s);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
    }
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric.
pub fn render(state: &ApiState) -> String {
    let mut out = String::new();
    let zone = escape(state.zone().as_str());
    let (services, conflicts, pending) = state.db().read(|r| {
        (
            r.state()
                .services
                .values()
                .filter(|s| !s.is_deleted())
                .count(),
            r.conflicts().len(),
            r.pending_len(),
        )
    });
    family(
        &mut out,
        "drengine_services_count",
        "gauge",
        "Live DR services in the replica.",
    );
    let _ = writeln!(out, "drengine_services_count{{zone=\"{zone}\"}} {services}");
    family(
        &mut out,
        "drengine_conflicts_count",
        "gauge",
        "Conflicts visible in this zone.",
    );
    let _ = writeln!(
        out,
        "drengine_conflicts_count{{zone=\"{zone}\"}} {conflicts}"
    );
    family(
        &mut out,
        "drengine_pending_events_count",
        "gauge",
        "Received events waiting for their causal past.",
    );
    let _ = writeln!(
        out,
        "drengine_pending_events_count{{zone=\"{zone}\"}} {pending}"
    );

    family(
        &mut out,
        "drengine_events_applied_total",
        "counter",
        "Events committed by this node, by source.",
    );
    let m = &state.metrics().0;
    let _ = writeln!(
        out,
        "drengine_events_applied_total{{zone=\"{zone}\",source=\"local\"}} {}",
        m.events_local.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "drengine_events_applied_total{{zone=\"{zone}\",source=\"peer\"}} {}",
        m.events_remote.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "drengine_metrics_feed_lagged_total",
        "counter",
        "Commits the metrics counter missed by falling behind.",
    );
    let _ = writeln!(
        out,
        "drengine_metrics_feed_lagged_total{{zone=\"{zone}\"}} {}",
        m.feed_lagged.load(Ordering::Relaxed)
    );

    if let Some(c) = state.0.peers.counters() {
        family(
            &mut out,
            "drengine_sync_dropped_total",
            "counter",
            "Input from peers dropped, by reason (forged, malformed, unsolicited, ...)",
        );
        for (reason, n) in &c.dropped {
            let _ = writeln!(
                out,
                "drengine_sync_dropped_total{{zone=\"{zone}\",reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
        family(
            &mut out,
            "drengine_sync_snapshots_imported_total",
            "counter",
            "State snapshots imported from peers",
        );
        let _ = writeln!(
            out,
            "drengine_sync_snapshots_imported_total{{zone=\"{zone}\"}} {}",
            c.snapshots_imported
        );
    }
    let rebuild = state.db().rebuild_status();
    family(
        &mut out,
        "drengine_rebuilding_bool",
        "gauge",
        "1 while the node refuses writes until it holds its zone's newest event",
    );
    let _ = writeln!(
        out,
        "drengine_rebuilding_bool{{zone=\"{zone}\"}} {}",
        u8::from(rebuild.state == crate::replica::RebuildState::Rebuilding)
    );
    family(
        &mut out,
        "drengine_writer_failed_bool",
        "gauge",
        "1 once a commit failed: the node refuses writes until it restarts",
    );
    let _ = writeln!(
        out,
        "drengine_writer_failed_bool{{zone=\"{zone}\"}} {}",
        u8::from(state.db().is_poisoned())
    );
    family(
        &mut out,
        "drengine_engine_ticks_skipped_total",
        "counter",
        "Reconciler passes skipped because the node could not act (rebuilding)",
    );
    let _ = writeln!(
        out,
        "drengine_engine_ticks_skipped_total{{zone=\"{zone}\"}} {}",
        state.engine().ticks_skipped()
    );
    let rpo = state.engine().rpo_all();
    family(
        &mut out,
        "drengine_service_rpo_seconds",
        "gauge",
        "Age of the newest RP complete in the recovery zone.",
    );
    for r in &rpo {
        if let Some(age) = r.rpo_age_s {
            let _ = writeln!(
                out,
                "drengine_service_rpo_seconds{{zone=\"{zone}\",service=\"{}\"}} {age}",
                escape(r.service.as_str())
            );
        }
    }
    family(
        &mut out,
        "drengine_service_rpo_target_seconds",
        "gauge",
        "The policy interval: the RPO target.",
    );
    for r in &rpo {
        let _ = writeln!(
            out,
            "drengine_service_rpo_target_seconds{{zone=\"{zone}\",service=\"{}\"}} {}",
            escape(r.service.as_str()),
            r.rpo_target_s
        );
    }
    family(
        &mut out,
        "drengine_service_past_rpo_bool",
        "gauge",
        "1 if the service is past its RPO target.",
    );
    for r in &rpo {
        let _ = writeln!(
            out,
            "drengine_service_past_rpo_bool{{zone=\"{zone}\",service=\"{}\"}} {}",
            escape(r.service.as_str()),
            u8::from(r.past_rpo)
        );
    }
    family(
        &mut out,
        "drengine_storpool_errors_total",
        "counter",
        "StorPool API errors met by the engine.",
    );
    let _ = writeln!(
        out,
        "drengine_storpool_errors_total{{zone=\"{zone}\"}} {}",
        state.engine().storpool_errors_total()
    );

    let peers = state.0.peers.peers();
    family(
        &mut out,
        "drengine_peer_connected_bool",
        "gauge",
        "1 if the control link to the peer is up.",
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "drengine_peer_connected_bool{{zone=\"{zone}\",peer=\"{}\"}} {}",
            escape(p.zone.as_str()),
            u8::from(p.connected)
        );
    }
    family(
        &mut out,
        "drengine_peer_behind_events",
        "gauge",
        "Events we have that the peer is not known to have.",
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "drengine_peer_behind_events{{zone=\"{zone}\",peer=\"{}\"}} {}",
            escape(p.zone.as_str()),
            p.behind_events
        );
    }
    family(
        &mut out,
        "drengine_peer_ahead_events",
        "gauge",
        "Events the peer has that we lack.",
    );
    for p in &peers {
        let _ = writeln!(
            out,
            "drengine_peer_ahead_events{{zone=\"{zone}\",peer=\"{}\"}} {}",
            escape(p.zone.as_str()),
            p.ahead_events
        );
    }
    family(
        &mut out,
        "drengine_peer_rtt_seconds",
        "gauge",
        "Round-trip time to the peer.",
    );
    for p in &peers {
        if let Some(ms) = p.rtt_ms {
            let _ = writeln!(
                out,
                "drengine_peer_rtt_seconds{{zone=\"{zone}\",peer=\"{}\"}} {}",
                escape(p.zone.as_str()),
                ms / 1000.0
            );
        }
    }
    state.metrics().write_requests(&mut out);
    out
}

pub async fn handler(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
        .into_response()
}
