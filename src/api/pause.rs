//! Pause and resume the protection of a service: while paused no RP is
//! scheduled, no zone deletes any of its copies, and its RPO level reads
//! `paused` (nothing alerts). Resuming takes an RP at once.
//!
//! The handlers only write `Op::SetPaused`: what a pause means is decided
//! by the engine's plan and retention, reading the one replicated register.

use super::auth::Caller;
use super::error::ApiResult;
use super::extract::{JsonBody, PathParams};
use super::services::{read_service, view_of};
use super::types::ServiceView;
use super::ApiState;
use super::Role;
use crate::model::{Pause, ServiceId};
use crate::replica::Op;
use axum::extract::State;
use axum::Json;

/// Why protection is paused (optional, at most 1024 bytes); the body may be
/// empty or `{}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

async fn set_paused(
    state: &ApiState,
    caller: &Caller,
    p: &PathParams,
    pause: Option<Pause>,
) -> ApiResult<Json<ServiceView>> {
    caller.require(Role::Cmp)?;
    let id: ServiceId = p.id("service")?;
    // Bad input is refused before anything is looked up.
    if let Some(p) = &pause {
        p.validate()?;
    }
    read_service(state, &id, |_| ())?;
    let paused = pause.is_some();
    state
        .db()
        .write(
            Op::SetPaused {
                service: id.clone(),
                pause,
            },
            &caller.name,
        )
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, paused, actor = %caller.name, "protection paused or resumed");
    Ok(Json(view_of(state, &id)?))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/pause",
    tag = "services",
    summary = "Pause protection: no new RPs, every copy kept, RPO level `paused`",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<PauseRequest>,
    responses(
        (status = 200, description = "Paused", body = ServiceView),
        super::openapi::WriteErrors,
    )
)]
pub async fn pause(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<PauseRequest>,
) -> ApiResult<Json<ServiceView>> {
    let pause = Pause {
        by: caller.name.clone(),
        reason: req.reason.unwrap_or_default(),
    };
    set_paused(&state, &caller, &p, Some(pause)).await
}

/// No arguments; the body may be empty or `{}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NoArgs)]
pub struct ResumeRequest {}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/resume",
    tag = "services",
    summary = "Resume protection: an RP is taken at once",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    request_body = Option<ResumeRequest>,
    responses(
        (status = 200, description = "Resumed", body = ServiceView),
        super::openapi::WriteErrors,
    )
)]
pub async fn resume(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(ResumeRequest {}): JsonBody<ResumeRequest>,
) -> ApiResult<Json<ServiceView>> {
    set_paused(&state, &caller, &p, None).await
}
