//! Recovery points: list with per-zone copies, take one now, hold and release.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::services::read_service;
use super::types::{CopyView, RpList, RpView};
use super::ApiState;
use super::Role;
use crate::model::{RpId, ServiceId, ZoneId};
use crate::replica::{Op, RecoveryPoint};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

pub fn rp_view(service: &ServiceId, rp: &RecoveryPoint) -> RpView {
    RpView {
        id: rp.id.clone(),
        service: service.clone(),
        origin: rp.origin.clone(),
        taken: rp.taken,
        disks: rp.disks.clone(),
        metadata: rp.metadata.clone(),
        held: rp.is_held(),
        copies: rp
            .copies
            .iter()
            .map(|(z, v)| (z.clone(), CopyView::from(&v.value)))
            .collect(),
        complete_in: rp
            .copies
            .iter()
            .filter(|(_, v)| v.value.is_complete())
            .map(|(z, _)| z.clone())
            .collect(),
    }
}

fn read_rp(state: &ApiState, service: &ServiceId, rp: &RpId) -> ApiResult<RpView> {
    read_service(state, service, |s| {
        s.rps.get(rp).map(|r| rp_view(service, r))
    })?
    .ok_or_else(|| ApiError::not_found("rp", format!("recovery point {rp} does not exist")))
}

#[utoipa::path(
    get,
    path = "/v1/services/{service}/rps",
    tag = "recovery points",
    summary = "Recovery points with their copy in each zone",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("complete_in" = Option<ZoneId>, Query, description = "Only RPs complete in this zone"),
        ("held" = Option<bool>, Query, description = "Only held (true) or not held (false) RPs"),
    ),
    responses(
        (status = 200, description = "Recovery points, oldest first", body = RpList),
        super::openapi::ReadErrors,
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _c: Caller,
    p: PathParams,
    mut q: Params,
) -> ApiResult<Json<RpList>> {
    let id: ServiceId = p.id("service")?;
    let complete_in = q.take_parsed("complete_in", ZoneId::parse)?;
    let held = q.take_bool("held")?;
    q.finish()?;
    // Oldest first, in the one RP order (causal per origin), not by raw `taken`.
    let rps = read_service(&state, &id, |s| {
        s.rps_in_order()
            .into_iter()
            .filter(|rp| complete_in.as_ref().is_none_or(|z| rp.is_complete_in(z)))
            .filter(|rp| held.is_none_or(|h| rp.is_held() == h))
            .map(|rp| rp_view(&id, rp))
            .collect::<Vec<_>>()
    })?;
    Ok(Json(RpList { rps }))
}

#[utoipa::path(
    get,
    path = "/v1/services/{service}/rps/{rp}",
    tag = "recovery points",
    summary = "Show a recovery point",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("rp" = RpId, Path, description = "The recovery point id"),
    ),
    responses(
        (status = 200, description = "The RP", body = RpView),
        super::openapi::ReadErrors,
    )
)]
pub async fn show(
    State(state): State<ApiState>,
    _c: Caller,
    p: PathParams,
) -> ApiResult<Json<RpView>> {
    let id: ServiceId = p.id("service")?;
    let rp: RpId = p.id("rp")?;
    Ok(Json(read_rp(&state, &id, &rp)?))
}

/// No arguments yet; the body may be empty or `{}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NoArgs)]
pub struct TakeRp {}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/rps",
    tag = "recovery points",
    summary = "Take a recovery point now",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<TakeRp>,
    responses(
        (status = 201, description = "Taken", body = RpView),
        super::openapi::ActionErrors,
    )
)]
pub async fn take(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(TakeRp {}): JsonBody<TakeRp>,
) -> ApiResult<(StatusCode, Json<RpView>)> {
    caller.require(Role::Cmp)?;
    let id: ServiceId = p.id("service")?;
    read_service(&state, &id, |_| ())?;
    let rp = state.engine().take_rp(&id, &caller.name).await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %rp, actor = %caller.name, "recovery point taken");
    Ok((StatusCode::CREATED, Json(read_rp(&state, &id, &rp)?)))
}

async fn set_hold(
    state: ApiState,
    caller: Caller,
    p: PathParams,
    hold: bool,
) -> ApiResult<Json<RpView>> {
    caller.require(Role::Cmp)?;
    let id: ServiceId = p.id("service")?;
    let rp: RpId = p.id("rp")?;
    read_rp(&state, &id, &rp)?;
    state
        .db()
        .write(
            Op::SetHold {
                service: id.clone(),
                rp: rp.clone(),
                hold,
            },
            &caller.name,
        )
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, rp = %rp, hold, actor = %caller.name, "hold set");
    Ok(Json(read_rp(&state, &id, &rp)?))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/rps/{rp}/hold",
    tag = "recovery points",
    summary = "Hold an RP: retention keeps it in every zone",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("rp" = RpId, Path, description = "The recovery point id"),
    ),
    responses(
        (status = 200, description = "Held", body = RpView),
        super::openapi::WriteErrors,
    )
)]
pub async fn hold(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
) -> ApiResult<Json<RpView>> {
    set_hold(state, caller, p, true).await
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/rps/{rp}/release",
    tag = "recovery points",
    summary = "Release a hold",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("rp" = RpId, Path, description = "The recovery point id"),
    ),
    responses(
        (status = 200, description = "Released", body = RpView),
        super::openapi::WriteErrors,
    )
)]
pub async fn release(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
) -> ApiResult<Json<RpView>> {
    set_hold(state, caller, p, false).await
}
