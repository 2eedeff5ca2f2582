//! Health, zone status and peers.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::types::{PeerList, ZoneStatus};
use super::ApiState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// `GET /healthz`: 200 while the node can write; 503 once storage failed.
pub async fn healthz(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    if state.db().is_poisoned() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage failed; the node refuses writes until it restarts",
        ));
    }
    Ok(Json(json!({"status": "ok", "zone": state.zone()})))
}

pub async fn zone_status(State(state): State<ApiState>, _c: Caller) -> Json<ZoneStatus> {
    let peers = state.0.peers.peers();
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
    })
}

pub async fn peers(State(state): State<ApiState>, _c: Caller) -> Json<PeerList> {
    Json(PeerList {
        peers: state.0.peers.peers(),
    })
}
