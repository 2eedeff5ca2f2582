//! Health, zone status and peers.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::types::{
    Health, PeerLink, PeerList, PeerStatus, RebuildView, StorageLinksView, ZoneStatus,
};
use super::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// `GET /healthz`: 200 while the node can write; 503 with the reason once
/// storage failed (until the node restarts).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "node",
    summary = "Liveness: 200 while the node can write",
    security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        super::openapi::Unavailable,
    )
)]
pub async fn healthz(State(state): State<ApiState>) -> ApiResult<Json<Health>> {
    if state.db().is_poisoned() {
        let why = state
            .db()
            .failure()
            .unwrap_or_else(|| "storage failed".into());
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{why}; the node refuses writes until it restarts"),
        ));
    }
    Ok(Json(Health {
        status: "ok".to_string(),
        zone: state.zone().clone(),
    }))
}

/// What the sync layer knows of a peer, in the API's wire shape.
fn peer_view(p: crate::sync::PeerStatus) -> PeerStatus {
    PeerStatus {
        zone: p.zone,
        connected: p.connected,
        rtt_ms: p.rtt_ms,
        their_vv: p.their_vv,
        behind_events: p.behind_events,
        ahead_events: p.ahead_events,
        last_seen_ms_ago: p.last_seen_ms_ago,
        links: p
            .links
            .into_iter()
            .map(|l| PeerLink {
                zone: l.zone,
                connected: l.connected,
                rtt_ms: l.rtt_us.map(|us| f64::from(us) / 1000.0),
            })
            .collect(),
        links_reported_ms_ago: p.links_reported_ms_ago,
    }
}

fn peer_views(state: &ApiState) -> Vec<PeerStatus> {
    state.0.peers.peers().into_iter().map(peer_view).collect()
}

#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "node",
    summary = "This zone's node: version vector, digest, counts, peers",
    responses(
        (status = 200, description = "Status", body = ZoneStatus),
        super::openapi::Unauthenticated,
    )
)]
pub async fn zone_status(State(state): State<ApiState>, _c: Caller) -> Json<ZoneStatus> {
    let peers = peer_views(&state);
    let (vv, digest, services, conflicts, pending) = state.db().read(|r| {
        (
            r.vv().clone(),
            r.digest(),
            r.state()
                .services
                .values()
                .filter(|s| !s.is_deleted())
                .count(),
            r.conflicts().len(),
            r.pending_len(),
        )
    });
    Json(ZoneStatus {
        zone: state.zone().clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        vv,
        digest,
        services,
        conflicts,
        pending_events: pending,
        engine_running: state.0.engine_running,
        sync_running: state.0.peers.running(),
        peers,
        rebuild: state.db().rebuild_status().into(),
        storage_links: state.engine().storage_links().map(|l| StorageLinksView {
            reachable: l.reachable.into_iter().collect(),
            unreachable: l.unreachable.into_iter().collect(),
            checked_ms_ago: l.checked_ms_ago,
        }),
    })
}

/// `POST /v1/rebuild/override` (operator): lets a rebuilding node sign
/// writes without a peer's proof that it holds its zone's newest event —
/// for a zone whose peers are all gone. Logged with the actor. It may sign
/// a sequence number its zone already used, if the zone got further than
/// this node's data; that is the risk the operator takes.
#[utoipa::path(
    post,
    path = "/v1/rebuild/override",
    tag = "node",
    summary = "Let a rebuilding node write without a peer's proof (operator; logged)",
    responses(
        (status = 200, description = "The rebuild state", body = RebuildView),
        super::openapi::OperatorErrors,
    )
)]
pub async fn override_rebuild(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<RebuildView>> {
    caller.require(super::Role::Operator)?;
    Ok(Json(state.db().override_rebuild(&caller.name).into()))
}

#[utoipa::path(
    get,
    path = "/v1/peers",
    tag = "node",
    summary = "Configured peers and their sync state",
    responses(
        (status = 200, description = "Peers", body = PeerList),
        super::openapi::Unauthenticated,
    )
)]
pub async fn peers(State(state): State<ApiState>, _c: Caller) -> Json<PeerList> {
    Json(PeerList {
        peers: peer_views(&state),
    })
}
