//! The HTTP shell of the emulator: one router per cluster port.
//!
//! A request crosses three steps, like a mini-redis command: parse (path, auth, body),
//! apply (one method of [`World`] under its lock, after [`World::advance`]), answer (StorPool's
//! envelope). Fault injection sits in front of the apply step, so an injected error never
//! has a side effect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::error::ApiError;
use super::faults::{ClusterFaults, FaultUpdate};
use super::listener::DownMode;
use super::state::{parse_body, ClusterIdx, LinkFault, Now, World};

/// Per-cluster counters of API calls, for benchmarks (calls per recovery point).
#[derive(Debug, Default)]
pub(crate) struct CallStats {
    pub total: u64,
    pub by_call: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

/// Run-time parts of one cluster that live outside the world.
pub(crate) struct ClusterRt {
    pub name: String,
    pub down_tx: watch::Sender<DownMode>,
    /// Connections currently open to this cluster's port.
    pub open_connections: Arc<std::sync::atomic::AtomicU64>,
    pub faults: Mutex<ClusterFaults>,
    pub stats: Mutex<CallStats>,
}

/// Everything the handlers of every cluster share.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub started: Instant,
    pub token: String,
    pub clusters: Vec<ClusterRt>,
    pub shutdown: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock is a bug; keep serving the state as it is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn now(&self) -> Now {
        let unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Now {
            mono_ms: self.started.elapsed().as_millis() as u64,
            unix_s,
        }
    }

    pub fn cluster_idx(&self, name: &str) -> Option<ClusterIdx> {
        self.clusters.iter().position(|c| c.name == name)
    }

    /// Applies a fault change; `default_ci` is the cluster the change is about unless it names one.
    pub fn apply_faults(
        self: &Arc<Self>,
        default_ci: ClusterIdx,
        u: &FaultUpdate,
    ) -> Result<(), String> {
        let ci = match &u.cluster {
            Some(n) => self
                .cluster_idx(n)
                .ok_or_else(|| format!("no cluster named {n:?}"))?,
            None => default_ci,
        };
        let peers: Vec<ClusterIdx> = match &u.peer {
            Some(p) => {
                let pi = self
                    .cluster_idx(p)
                    .ok_or_else(|| format!("no cluster named {p:?}"))?;
                if pi == ci {
                    return Err("peer must be another cluster".into());
                }
                vec![pi]
            }
            None => (0..self.clusters.len()).filter(|&i| i != ci).collect(),
        };
        if let Some(r) = u.transient_error_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err("transient_error_rate must be between 0 and 1".into());
            }
        }
        if let Some(Some(b)) = u.bandwidth_mbps {
            if !(b.is_finite() && b > 0.0) {
                return Err("bandwidth_mbps must be positive (use stuck for no progress)".into());
            }
        }
        let rt = &self.clusters[ci];
        {
            let mut f = lock(&rt.faults);
            if let Some(r) = u.transient_error_rate {
                f.transient_error_rate = r;
            }
            if let Some(s) = u.seed {
                f.reseed(s);
            }
        }
        let link_change = u.bandwidth_mbps.is_some() || u.stuck.is_some() || u.unlinked.is_some();
        if link_change || u.capacity_bytes.is_some() {
            let now = self.now();
            let mut w = lock(&self.world);
            w.advance(now);
            if let Some(cap) = u.capacity_bytes {
                w.set_capacity(ci, cap);
            }
            if link_change {
                for &p in &peers {
                    for (from, to) in [(ci, p), (p, ci)] {
                        let mut f: LinkFault = w.link_fault(from, to);
                        if let Some(b) = u.bandwidth_mbps {
                            f.bandwidth_mbps = b;
                        }
                        if let Some(s) = u.stuck {
                            f.stuck = s;
                        }
                        if let Some(x) = u.unlinked {
                            f.unlinked = x;
                        }
                        w.set_link_fault(from, to, f, now.mono_ms);
                    }
                }
            }
        }
        if u.down.is_some() && u.restart_ms.is_some() {
            return Err("down and restart_ms are mutually exclusive".into());
        }
        if let Some(d) = u.down {
            self.set_down(ci, d);
        }
        if let Some(ms) = u.restart_ms {
            let Ok(rt_handle) = tokio::runtime::Handle::try_current() else {
                return Err("restart_ms needs a running tokio runtime".into());
            };
            self.set_down(ci, DownMode::Refuse);
            let shared = self.clone();
            rt_handle.spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                // Only end the restart if nobody changed the mode meanwhile.
                if *shared.clusters[ci].down_tx.borrow() == DownMode::Refuse {
                    shared.set_down(ci, DownMode::Up);
                    tracing::info!(cluster = %shared.clusters[ci].name, "restart finished");
                }
            });
        }
        tracing::info!(cluster = %rt.name, update = ?u, "faults changed");
        Ok(())
    }

    fn set_down(&self, ci: ClusterIdx, d: DownMode) {
        self.clusters[ci].down_tx.send_replace(d);
    }

    pub fn faults_json(&self) -> Value {
        let mut clusters = serde_json::Map::new();
        for rt in &self.clusters {
            let f = lock(&rt.faults);
            clusters.insert(
                rt.name.clone(),
                json!({
                    "transient_error_rate": f.transient_error_rate,
                    "seed": f.seed,
                    "down": *rt.down_tx.borrow(),
                }),
            );
        }
        let w = lock(&self.world);
        let links: Vec<Value> = w
            .link_faults()
            .into_iter()
            .map(|(from, to, f)| json!({"from": from, "to": to, "bandwidth_mbps": f.bandwidth_mbps, "stuck": f.stuck, "unlinked": f.unlinked}))
            .collect();
        json!({"clusters": clusters, "links": links})
    }

    pub fn stats_json(&self) -> Value {
        let mut clusters = serde_json::Map::new();
        for rt in &self.clusters {
            let s = lock(&rt.stats);
            clusters.insert(
                rt.name.clone(),
                json!({
                    "total": s.total,
                    "calls": s.by_call,
                    "errors": s.errors,
                    "open_connections": rt.open_connections.load(std::sync::atomic::Ordering::SeqCst),
                }),
            );
        }
        json!({"clusters": clusters})
    }

    pub fn reset_stats(&self) {
        for rt in &self.clusters {
            *lock(&rt.stats) = CallStats::default();
        }
    }

    pub fn state_json(&self) -> Value {
        let now = self.now();
        let mut w = lock(&self.world);
        w.advance(now);
        w.dump(now)
    }
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    ci: ClusterIdx,
}

/// The router serving cluster `ci`: the StorPool API under `/ctrl/1.0/` and the admin endpoints.
pub(crate) fn router(shared: Arc<Shared>, ci: ClusterIdx) -> Router {
    Router::new()
        .route("/_emulator/state", get(admin_state))
        .route(
            "/_emulator/faults",
            get(admin_faults_get).post(admin_faults_post),
        )
        .route("/_emulator/stats", get(admin_stats))
        .route("/_emulator/stats/reset", post(admin_stats_reset))
        .fallback(api)
        .with_state(AppState { shared, ci })
}

async fn admin_state(State(st): State<AppState>) -> Json<Value> {
    Json(st.shared.state_json())
}

async fn admin_faults_get(State(st): State<AppState>) -> Json<Value> {
    Json(st.shared.faults_json())
}

async fn admin_faults_post(State(st): State<AppState>, body: Bytes) -> Response {
    let update: FaultUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    };
    match st.shared.apply_faults(st.ci, &update) {
        Ok(()) => Json(st.shared.faults_json()).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

async fn admin_stats(State(st): State<AppState>) -> Json<Value> {
    Json(st.shared.stats_json())
}

async fn admin_stats_reset(State(st): State<AppState>) -> Json<Value> {
    st.shared.reset_stats();
    Json(st.shared.stats_json())
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(e.to_json())).into_response()
}

/// Decodes `%XX` escapes in a path segment (names never need them, but clients may send them).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Holds the request while the cluster is in `hang` mode; false if the emulator is shutting down.
async fn wait_while_hanging(st: &AppState) -> bool {
    let rt = &st.shared.clusters[st.ci];
    let mut down = rt.down_tx.subscribe();
    let mut shutdown = st.shared.shutdown.clone();
    loop {
        if *shutdown.borrow_and_update() {
            return false;
        }
        if *down.borrow_and_update() != DownMode::Hang {
            return true;
        }
        tokio::select! {
            r = down.changed() => if r.is_err() { return false },
            r = shutdown.changed() => if r.is_err() { return false },
        }
    }
}

async fn api(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &st.shared;
    let rt = &shared.clusters[st.ci];
    let Some(rest) = uri
        .path()
        .strip_prefix(crate::storpool::API_PREFIX)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return error_response(&ApiError::not_found(format!("no such path {}", uri.path())));
    };
    let (multicluster, rest) = match rest.strip_prefix("MultiCluster/") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (call, arg) = match rest.split_once('/') {
        Some((c, a)) => (c, Some(a)),
        None => (rest, None),
    };
    {
        let mut s = lock(&rt.stats);
        s.total += 1;
        *s.by_call.entry(call.to_owned()).or_default() += 1;
    }
    if !wait_while_hanging(&st).await {
        return error_response(&ApiError::busy("the emulator is shutting down"));
    }
    let result = serve_call(&st, &method, call, arg, &headers, &body, multicluster);
    match result {
        Ok(data) => {
            let generation = lock(&shared.world).generation(st.ci);
            tracing::debug!(cluster = %rt.name, call, arg, "ok");
            Json(json!({"generation": generation, "data": data})).into_response()
        }
        Err(e) => {
            *lock(&rt.stats).errors.entry(e.name.to_owned()).or_default() += 1;
            tracing::debug!(cluster = %rt.name, call, arg, error = e.name, descr = %e.descr, "error");
            error_response(&e)
        }
    }
}

fn serve_call(
    st: &AppState,
    method: &Method,
    call: &str,
    arg: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    mc: bool,
) -> Result<Value, ApiError> {
    let shared = &st.shared;
    let expected = format!("Storpool v1:{}", shared.token);
    match headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|h| h.as_bytes())
    {
        Some(h) if h == expected.as_bytes() => {}
        Some(_) => return Err(ApiError::auth("invalid authorization token")),
        None => return Err(ApiError::auth("missing Authorization header")),
    }
    if lock(&shared.clusters[st.ci].faults).roll_transient() {
        return Err(ApiError::busy(format!(
            "{call}: cluster is busy (injected transient error), try again"
        )));
    }
    let arg = match arg {
        None => None,
        Some(a) => Some(
            percent_decode(a).ok_or_else(|| ApiError::invalid("malformed escape in the path"))?,
        ),
    };
    let now = shared.now();
    let mut w = lock(&shared.world);
    w.advance(now);
    dispatch(&mut w, st.ci, method, call, arg.as_deref(), body, mc, now)
}

/// Routes one call to the world. Names are taken from the path as StorPool's bindings send them.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    w: &mut World,
    ci: ClusterIdx,
    method: &Method,
    call: &str,
    arg: Option<&str>,
    body: &[u8],
    mc: bool,
    now: Now,
) -> Result<Value, ApiError> {
    let want = |m: Method, takes_arg: bool| -> Result<(), ApiError> {
        if *method != m {
            return Err(ApiError {
                status: 405,
                ..ApiError::invalid(format!("{call} must be called with {m}"))
            });
        }
        match (takes_arg, arg) {
            (true, None) | (true, Some("")) => Err(ApiError::invalid(format!(
                "{call} needs a name in the path"
            ))),
            (false, Some(_)) => Err(ApiError::not_found(format!(
                "{call} takes no argument in the path"
            ))),
            (true, Some(a)) if a.contains('/') => {
                Err(ApiError::invalid(format!("invalid name {a:?}")))
            }
            _ => Ok(()),
        }
    };
    let a = || arg.unwrap_or_default();
    match call {
        "VolumesList" => want(Method::GET, false).map(|_| w.volumes_list(ci, mc)),
        "Volume" => want(Method::GET, true).and_then(|_| w.volume(ci, a(), mc)),
        "VolumeDescribe" => want(Method::GET, true).and_then(|_| w.volume_describe(ci, a(), mc)),
        "VolumeListSnapshots" => {
            want(Method::GET, true).and_then(|_| w.volume_list_snapshots(ci, a()))
        }
        "VolumeCreate" => {
            want(Method::POST, false).and_then(|_| w.volume_create(ci, parse_body(body)?, now))
        }
        "VolumeUpdate" => {
            want(Method::POST, true).and_then(|_| w.volume_update(ci, a(), parse_body(body)?))
        }
        "VolumeDelete" => want(Method::POST, true).and_then(|_| w.volume_delete(ci, a())),
        "VolumeRevert" => {
            want(Method::POST, true).and_then(|_| w.volume_revert(ci, a(), parse_body(body)?))
        }
        "VolumeSnapshot" => want(Method::POST, true).and_then(|_| {
            // The bindings send no body when no option is given.
            let req = if body.iter().all(u8::is_ascii_whitespace) {
                Default::default()
            } else {
                parse_body(body)?
            };
            w.volume_snapshot(ci, a(), req, now)
        }),
        "VolumesGroupSnapshot" => {
            want(Method::POST, false).and_then(|_| w.group_snapshot(ci, parse_body(body)?, now))
        }
        "VolumeBackup" => {
            want(Method::POST, false).and_then(|_| w.volume_backup(ci, parse_body(body)?, now))
        }
        "VolumesGroupBackup" => {
            want(Method::POST, false).and_then(|_| w.group_backup(ci, parse_body(body)?, now))
        }
        "SnapshotsList" => want(Method::GET, false).map(|_| w.snapshots_list(ci, mc)),
        "Snapshot" => want(Method::GET, true).and_then(|_| w.snapshot(ci, a(), mc)),
        "SnapshotDescribe" => {
            want(Method::GET, true).and_then(|_| w.snapshot_describe(ci, a(), mc))
        }
        "SnapshotUpdate" => want(Method::POST, true)
            .and_then(|_| w.snapshot_update(ci, a(), parse_body(body)?, now)),
        "SnapshotDelete" => want(Method::POST, true).and_then(|_| w.snapshot_delete(ci, a(), now)),
        "SnapshotDeleteById" => {
            want(Method::POST, true).and_then(|_| w.snapshot_delete_by_id(ci, a(), now))
        }
        "SnapshotExport" => {
            want(Method::POST, false).and_then(|_| w.snapshot_export(ci, parse_body(body)?))
        }
        "SnapshotUnexport" => {
            want(Method::POST, false).and_then(|_| w.snapshot_unexport(ci, parse_body(body)?, now))
        }
        "ExportsList" => want(Method::GET, false).map(|_| w.exports_list(ci)),
        "SnapshotFromRemote" => want(Method::POST, false)
            .and_then(|_| w.snapshot_from_remote(ci, parse_body(body)?, now)),
        "SnapshotsRemoteList" => want(Method::GET, false).map(|_| w.snapshots_remote_list(ci)),
        "SnapshotsRemoteUnexport" => want(Method::POST, false)
            .and_then(|_| w.snapshots_remote_unexport(ci, parse_body(body)?, now)),
        "LocationsList" => want(Method::GET, false).map(|_| w.locations_list(ci)),
        _ => Err(ApiError::not_found(format!(
            "unknown API call {call} (not emulated)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b").as_deref(), Some("a@b"));
        assert_eq!(percent_decode("~x.y.z").as_deref(), Some("~x.y.z"));
        assert_eq!(percent_decode("%4"), None);
    }
}
