//! Conflicts: list them with every side, resolve one with a write that has
//! seen all sides (so it replaces every value it names).

use super::actions::{command_preflight, dry_run};
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::services::view_of;
use super::types::{ConflictList, ResolveRequest, ServiceAnswer};
use super::ApiState;
use super::Role;
use crate::engine::preflight::Action;
use crate::model::ServiceId;
use crate::replica::{parse_field_value, service_conflicts, Choice, Command, ConflictTarget};
use axum::extract::State;
use axum::Json;

#[utoipa::path(
    get,
    path = "/v1/conflicts",
    tag = "conflicts",
    summary = "Every conflict visible in this zone, with all sides",
    params(
        ("service" = Option<ServiceId>, Query, description = "Only this service's"),
    ),
    responses(
        (status = 200, description = "Conflicts", body = ConflictList),
        super::openapi::ListErrors,
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _c: Caller,
    mut q: Params,
) -> ApiResult<Json<ConflictList>> {
    let service = q.take_parsed("service", |s| s.parse::<ServiceId>())?;
    q.finish()?;
    let conflicts = state.db().read(|r| match &service {
        Some(id) => r.service(id).map(service_conflicts).unwrap_or_default(),
        None => r.conflicts(),
    });
    Ok(Json(ConflictList { conflicts }))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/resolve",
    tag = "conflicts",
    summary = "Resolve a conflict with a write that has seen every side (operator)",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "The service, or with dry_run the Preflight (no ETag)", body = ServiceAnswer, headers(("ETag" = String, description = "The service's version token, quoted"))),
        super::openapi::CheckedWriteErrors,
    )
)]
pub async fn resolve(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    JsonBody(req): JsonBody<ResolveRequest>,
) -> ApiResult<Json<ServiceAnswer>> {
    caller.require(Role::Operator)?;
    let dry = dry_run(q)?;
    let id: ServiceId = p.id("service")?;
    let choice = match (req.choose, req.value, req.keep_zone) {
        (Some(dot), None, None) => Choice::Side(dot),
        (None, None, Some(zone)) => Choice::KeepZone(zone),
        (None, Some(v), None) => match &req.field {
            ConflictTarget::Field(field) => Choice::Value(parse_field_value(field, v)?),
            ConflictTarget::ActiveVms => {
                return Err(ApiError::invalid(
                    "keep_zone",
                    "give keep_zone (or choose) for active_vms",
                ))
            }
        },
        _ => {
            return Err(ApiError::invalid(
                "choose",
                "give exactly one of choose, value and keep_zone",
            ))
        }
    };
    let cmd = Command::Resolve {
        service: id.clone(),
        target: req.field.clone(),
        choice,
        seen: req.seen,
    };
    if dry {
        let pre = command_preflight(&state, Action::Resolve, &id, &cmd)?;
        return Ok(Json(ServiceAnswer::Preflight(pre)));
    }
    state.db().execute(cmd, &caller.name).await?;
    tracing::info!(zone = %state.zone(), service = %id, field = %req.field, actor = %caller.name, "conflict resolved");
    Ok(Json(ServiceAnswer::Service(view_of(&state, &id)?)))
}
