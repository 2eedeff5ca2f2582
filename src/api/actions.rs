//! DR actions: each calls one `Engine` method (failover, migration, revert,
//! test failover) or, for deactivate, writes a VM slot directly.
//!
//! Each (but the test failover's clean-up) takes `?dry_run=true`: then it
//! answers a `Preflight` from the engine's `preview_*` (the action's own
//! plan) or `Db::decide` (the write's own decision), and changes nothing.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::services::{read_service, view_of};
use super::types::{
    DeactivateRequest, FailoverAnswer, FailoverOutcome, FailoverRequest, FailoverVolume,
    MigrateRequest, MigrationAnswer, MigrationStarted, Preflight, PreflightProtection, PreflightRp,
    PreflightZone, RevertRequest, ServiceAnswer, ServiceView, TestFailoverRequest,
};
use super::ApiState;
use super::Role;
use crate::engine;
use crate::engine::preflight::{Action, Peers};
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
        volumes: volume_views(o.volumes),
        metadata: o.metadata,
    }
}

fn volume_views(v: Vec<engine::FailoverVolume>) -> Vec<FailoverVolume> {
    v.into_iter()
        .map(|v| FailoverVolume {
            disk: v.disk,
            volume: v.volume,
            from_snapshot: v.from_snapshot,
        })
        .collect()
}

/// A preflight in the API's wire shape.
pub(crate) fn preflight_view(p: engine::preflight::Preflight) -> Preflight {
    let rp = |r: engine::preflight::RpSummary| PreflightRp {
        id: r.id,
        origin: r.origin,
        taken: super::types::rfc3339_ms(r.taken.wall_ms),
        age_s: r.age_s,
        complete_in: r.complete_in,
    };
    Preflight {
        action: p.action.as_str().to_string(),
        service: p.service,
        zone: p.zone,
        rp: p.rp.map(rp),
        newest_rp: p.newest_rp.map(rp),
        takes_rp: p.takes_rp,
        data_loss_s: p.data_loss_s,
        active_after: p.active_after,
        conflict: p.conflict_after,
        other_zones: p
            .other_zones
            .into_iter()
            .map(|z| PreflightZone {
                zone: z.zone,
                active_now: z.active_now,
                active_after: z.active_after,
                reachable: z.reachable,
            })
            .collect(),
        creates: volume_views(p.creates),
        reverts: volume_views(p.reverts),
        changes_nothing: p.changes_nothing,
        protection: p.protection.map(|p| PreflightProtection {
            rps_go_to: p.rps_go_to,
            storage_link: p.storage_link,
        }),
        warnings: p.warnings,
    }
}

/// This zone's sync peers and whether each is connected now, as
/// `/v1/status` shows them: what a preflight says of other zones.
pub(crate) fn peers(state: &ApiState) -> Peers {
    state
        .0
        .peers
        .peers()
        .into_iter()
        .map(|p| (p.zone, p.connected))
        .collect()
}

/// `?dry_run=true|false` (false when absent); no other parameter.
pub(crate) fn dry_run(mut q: Params) -> ApiResult<bool> {
    let dry = q.take_bool("dry_run")?.unwrap_or(false);
    q.finish()?;
    Ok(dry)
}

/// The preflight of a writer command: the write's own decision
/// (`Db::decide`), refused as the write would be, applied nowhere.
pub(crate) fn command_preflight(
    state: &ApiState,
    action: Action,
    id: &ServiceId,
    cmd: &Command,
) -> ApiResult<Preflight> {
    let peers = peers(state);
    let zone = state.zone();
    let p = state.db().decide(cmd, |r, decision| {
        r.service(id)
            .map(|s| engine::preflight::of_command(action, s, zone, decision, &peers))
    })?;
    let p = p.ok_or_else(|| {
        super::error::ApiError::not_found("service", format!("service {id} does not exist"))
    })?;
    Ok(preflight_view(p))
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
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    request_body = Option<FailoverRequest>,
    responses(
        (status = 200, description = "Volumes and metadata for the CMP, or with dry_run the Preflight", body = FailoverAnswer),
        super::openapi::ActionErrors,
    )
)]
pub async fn failover(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    JsonBody(req): JsonBody<FailoverRequest>,
) -> ApiResult<Json<FailoverAnswer>> {
    caller.require(Role::Cmp)?;
    let dry = dry_run(q)?;
    let id = service(&state, &p)?;
    if dry {
        let pre = state.engine().preview_failover(
            &id,
            req.rp.as_ref(),
            req.recovery_zone.as_ref(),
            &peers(&state),
        )?;
        return Ok(Json(FailoverAnswer::Preflight(Box::new(preflight_view(
            pre,
        )))));
    }
    let out = state
        .engine()
        .failover(
            &id,
            req.rp.as_ref(),
            req.recovery_zone.as_ref(),
            &caller.name,
        )
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, recovery_zone = ?req.recovery_zone, actor = %caller.name, "failover");
    Ok(Json(FailoverAnswer::Done(outcome_view(out))))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/migrate",
    tag = "actions",
    summary = "Planned migration, first half: in the source zone, after the VM stopped",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    request_body = Option<MigrateRequest>,
    responses(
        (status = 200, description = "The final RP, or with dry_run the Preflight", body = MigrationAnswer),
        super::openapi::ActionErrors,
    )
)]
pub async fn start_migration(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    JsonBody(req): JsonBody<MigrateRequest>,
) -> ApiResult<Json<MigrationAnswer>> {
    caller.require(Role::Cmp)?;
    let dry = dry_run(q)?;
    let id = service(&state, &p)?;
    if &req.target == state.zone() {
        return Err(ApiError::invalid(
            "target",
            "the target must be another zone",
        ));
    }
    if dry {
        let pre = state
            .engine()
            .preview_migration(&id, &req.target, &peers(&state))?;
        return Ok(Json(MigrationAnswer::Preflight(Box::new(preflight_view(
            pre,
        )))));
    }
    let out = state
        .engine()
        .start_migration(&id, &req.target, &caller.name)
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, target = %req.target, rp = %out.final_rp, actor = %caller.name, "migration started");
    Ok(Json(MigrationAnswer::Started(started_view(out))))
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
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    request_body = Option<NoArgs>,
    responses(
        (status = 200, description = "Volumes and metadata for the CMP, or with dry_run the Preflight", body = FailoverAnswer),
        super::openapi::ActionErrors,
    )
)]
pub async fn complete_migration(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    JsonBody(NoArgs {}): JsonBody<NoArgs>,
) -> ApiResult<Json<FailoverAnswer>> {
    caller.require(Role::Cmp)?;
    let dry = dry_run(q)?;
    let id = service(&state, &p)?;
    if dry {
        let pre = state
            .engine()
            .preview_complete_migration(&id, &peers(&state))?;
        return Ok(Json(FailoverAnswer::Preflight(Box::new(preflight_view(
            pre,
        )))));
    }
    let out = state.engine().complete_migration(&id, &caller.name).await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, actor = %caller.name, "migration completed");
    Ok(Json(FailoverAnswer::Done(outcome_view(out))))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/revert",
    tag = "actions",
    summary = "Revert the VM's volumes here to an RP",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    request_body = Option<RevertRequest>,
    responses(
        (status = 200, description = "The reverted volumes, or with dry_run the Preflight", body = FailoverAnswer),
        super::openapi::ActionErrors,
    )
)]
pub async fn revert(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    JsonBody(req): JsonBody<RevertRequest>,
) -> ApiResult<Json<FailoverAnswer>> {
    caller.require(Role::Cmp)?;
    let dry = dry_run(q)?;
    let id = service(&state, &p)?;
    if dry {
        let pre = state
            .engine()
            .preview_revert(&id, &req.rp, &peers(&state))?;
        return Ok(Json(FailoverAnswer::Preflight(Box::new(preflight_view(
            pre,
        )))));
    }
    let out = state.engine().revert(&id, &req.rp, &caller.name).await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, actor = %caller.name, "reverted");
    Ok(Json(FailoverAnswer::Done(outcome_view(out))))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/test-failover",
    tag = "actions",
    summary = "Test failover: clones of an RP here, no activation",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    request_body = Option<TestFailoverRequest>,
    responses(
        (status = 200, description = "The test volumes, or with dry_run the Preflight", body = FailoverAnswer),
        super::openapi::ActionErrors,
    )
)]
pub async fn test_failover(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    JsonBody(req): JsonBody<TestFailoverRequest>,
) -> ApiResult<Json<FailoverAnswer>> {
    caller.require(Role::Cmp)?;
    let dry = dry_run(q)?;
    let id = service(&state, &p)?;
    if dry {
        let pre = state
            .engine()
            .preview_test_failover(&id, req.rp.as_ref(), &peers(&state))?;
        return Ok(Json(FailoverAnswer::Preflight(Box::new(preflight_view(
            pre,
        )))));
    }
    let out = state
        .engine()
        .test_failover(&id, req.rp.as_ref(), &caller.name)
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %out.rp, actor = %caller.name, "test failover");
    Ok(Json(FailoverAnswer::Done(outcome_view(out))))
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
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    request_body = Option<DeactivateRequest>,
    responses(
        (status = 200, description = "The service, or with dry_run the Preflight (no ETag)", body = ServiceAnswer, headers(("ETag" = String, description = "The service's version token, quoted"))),
        super::openapi::WriteErrors,
    )
)]
pub async fn deactivate(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    JsonBody(req): JsonBody<DeactivateRequest>,
) -> ApiResult<Json<ServiceAnswer>> {
    caller.require(Role::Operator)?;
    let dry = dry_run(q)?;
    let id: ServiceId = p.id("service")?;
    let zone = req.zone.unwrap_or_else(|| state.zone().clone());
    let cmd = Command::Deactivate {
        service: id.clone(),
        zone: zone.clone(),
    };
    if dry {
        let pre = command_preflight(&state, Action::Deactivate, &id, &cmd)?;
        return Ok(Json(ServiceAnswer::Preflight(pre)));
    }
    let done = state.db().execute(cmd, &caller.name).await?;
    if done.outcome == Outcome::Written {
        tracing::info!(zone = %state.zone(), service = %id, slot_zone = %zone, actor = %caller.name, "VM deactivated");
    }
    Ok(Json(ServiceAnswer::Service(view_of(&state, &id)?)))
}
