//! DR actions: each calls one `Engine` method (failover, migration, revert,
//! test failover) or, for deactivate, writes a VM slot directly.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, PathParams};
use super::services::{read_service, view_of};
use super::types::{
    DeactivateRequest, FailoverOutcome, FailoverRequest, FailoverVolume, MigrateRequest,
    MigrationStarted, RevertRequest, ServiceView,
};
use super::ApiState;
use super::Role;
use crate::engine;
use crate::model::ServiceId;
use crate::replica::{Command, Outcome};
use axum::extract::State;
use axum::Json;

/// What the engine made, in the API's wire shape.
fn outcome_view(o: engine::FailoverOutcome) -> FailoverOutcome {
    FailoverOutcome {
        service: o.service,
        zone: o.zone,
        rp: o.rp,
        volumes: o
            .volumes
            .into_iter()
            .map(|v| FailoverVolume {
                disk: v.disk,
                volume: v.volume,
                from_snapshot: v.from_snapshot,
            })
            .collect(),
        metadata: o.metadata,
    }
}

fn started_view(m: engine::MigrationStarted) -> MigrationStarted {
    MigrationStarted {
        service: m.service,
        target: m.target,
        final_rp: m.final_rp,
    }
}

/// The service named in the path, checked to exist before the engine runs.
fn service(state: &ApiState, p: &PathParams) -> ApiResult<ServiceId> {
    let id: ServiceId = p.id("service")?;
    read_service(state, &id, |_| ())?;
    Ok(id)
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/failover",
    tag = "actions",
    summary = "Unplanned failover to this zone",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<FailoverRequest>,
    responses(
        (status = 200, description = "Volumes and metadata for the CMP", body = FailoverOutcome),
        super::openapi::ActionErrors,
    )
)]
pub async fn failover(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<FailoverRequest>,
) -> ApiResult<Json<FailoverOutcome>> {
    caller.require(Role::Cmp)?;
    let id = service(&state, &p)?;
    let out = state
        .engine()
        .failover(&id, req.rp.as_ref(), &caller.name)
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, actor = %caller.name, "failover");
    Ok(Json(outcome_view(out)))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/migrate",
    tag = "actions",
    summary = "Planned migration, first half: in the source zone, after the VM stopped",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<MigrateRequest>,
    responses(
        (status = 200, description = "The final RP", body = MigrationStarted),
        super::openapi::ActionErrors,
    )
)]
pub async fn start_migration(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<MigrateRequest>,
) -> ApiResult<Json<MigrationStarted>> {
    caller.require(Role::Cmp)?;
    let id = service(&state, &p)?;
    if &req.target == state.zone() {
        return Err(ApiError::invalid(
            "target",
            "the target must be another zone",
        ));
    }
    let out = state
        .engine()
        .start_migration(&id, &req.target, &caller.name)
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, target = %req.target, rp = %out.final_rp, actor = %caller.name, "migration started");
    Ok(Json(started_view(out)))
}

/// No arguments; the body may be empty or `{}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/migrate/complete",
    tag = "actions",
    summary = "Planned migration, second half: in the target zone",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<NoArgs>,
    responses(
        (status = 200, description = "Volumes and metadata for the CMP", body = FailoverOutcome),
        super::openapi::ActionErrors,
    )
)]
pub async fn complete_migration(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(NoArgs {}): JsonBody<NoArgs>,
) -> ApiResult<Json<FailoverOutcome>> {
    caller.require(Role::Cmp)?;
    let id = service(&state, &p)?;
    let out = state.engine().complete_migration(&id, &caller.name).await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, actor = %caller.name, "migration completed");
    Ok(Json(outcome_view(out)))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/revert",
    tag = "actions",
    summary = "Revert the VM's volumes here to an RP",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<RevertRequest>,
    responses(
        (status = 200, description = "The reverted volumes", body = FailoverOutcome),
        super::openapi::ActionErrors,
    )
)]
pub async fn revert(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<RevertRequest>,
) -> ApiResult<Json<FailoverOutcome>> {
    caller.require(Role::Cmp)?;
    let id = service(&state, &p)?;
    let out = state.engine().revert(&id, &req.rp, &caller.name).await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, actor = %caller.name, "reverted");
    Ok(Json(outcome_view(out)))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/test-failover",
    tag = "actions",
    summary = "Test failover: clones of an RP here, no activation",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<FailoverRequest>,
    responses(
        (status = 200, description = "The test volumes", body = FailoverOutcome),
        super::openapi::ActionErrors,
    )
)]
pub async fn test_failover(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<FailoverRequest>,
) -> ApiResult<Json<FailoverOutcome>> {
    caller.require(Role::Cmp)?;
    let id = service(&state, &p)?;
    let out = state
        .engine()
        .test_failover(&id, req.rp.as_ref(), &caller.name)
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, actor = %caller.name, "test failover");
    Ok(Json(outcome_view(out)))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/test-failover/cleanup",
    tag = "actions",
    summary = "Remove the volumes of a test failover",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<NoArgs>,
    responses(
        (status = 200, description = "The service", body = ServiceView),
        super::openapi::ActionErrors,
    )
)]
pub async fn cleanup_test_failover(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(NoArgs {}): JsonBody<NoArgs>,
) -> ApiResult<Json<ServiceView>> {
    caller.require(Role::Cmp)?;
    let id = service(&state, &p)?;
    state
        .engine()
        .cleanup_test_failover(&id, &caller.name)
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, actor = %caller.name, "test failover cleaned up");
    Ok(Json(view_of(&state, &id)?))
}

/// Marks a zone's VM inactive. The write has seen every value of that
/// zone's slot, so it also settles a concurrent-write conflict on it; run
/// for each extra active zone, it ends an active-VM conflict, from any zone.
#[utoipa::path(
    post,
    path = "/v1/services/{service}/deactivate",
    tag = "conflicts",
    summary = "Mark a zone's VM inactive (operator); ends an active-VM conflict",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<DeactivateRequest>,
    responses(
        (status = 200, description = "The service", body = ServiceView, headers(("ETag" = String, description = "The service's version token, quoted"))),
        super::openapi::WriteErrors,
    )
)]
pub async fn deactivate(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<DeactivateRequest>,
) -> ApiResult<Json<ServiceView>> {
    caller.require(Role::Operator)?;
    let id: ServiceId = p.id("service")?;
    let zone = req.zone.unwrap_or_else(|| state.zone().clone());
    let cmd = Command::Deactivate {
        service: id.clone(),
        zone: zone.clone(),
    };
    let done = state.db().execute(cmd, &caller.name).await?;
    if done.outcome == Outcome::Written {
        tracing::info!(zone = %state.zone(), service = %id, slot_zone = %zone, actor = %caller.name, "VM deactivated");
    }
    Ok(Json(view_of(&state, &id)?))
}
