//! The audit history: what happened, newest first, from this zone's audit
//! table (`store::audit`; one row per event this zone applied, kept across
//! compaction and restarts, bounded by `[history]`).

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{Params, PathParams};
use super::services::read_service;
use super::types::{parse_rfc3339_ms, rfc3339_ms, HistoryEntryView, HistoryList};
use super::ApiState;
use crate::model::{ServiceId, ZoneId, MAX_ACTOR_BYTES};
use crate::replica::audit;
use crate::store::{
    HistoryCursor, HistoryEntry, HistoryQuery, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT,
};
use axum::extract::State;
use axum::Json;

/// The filters and page both routes take (`service` only on the whole
/// zone's); anything else is refused.
fn query(mut q: Params, service: Option<ServiceId>) -> ApiResult<HistoryQuery> {
    let service = match service {
        Some(s) => Some(s),
        None => q.take_parsed("service", |s| s.parse::<ServiceId>())?,
    };
    let zone = q.take_parsed("zone", |s| s.parse::<ZoneId>())?;
    let actor = q.take_parsed("actor", |s| {
        if s.is_empty() || s.len() > MAX_ACTOR_BYTES {
            Err(format!("must be 1 to {MAX_ACTOR_BYTES} bytes"))
        } else {
            Ok(s.to_string())
        }
    })?;
    let action = q.take_parsed("action", |s| {
        if audit::is_action(s) {
            Ok(s.to_string())
        } else {
            let all: Vec<&str> = audit::actions().collect();
            Err(format!("not an action; one of {}", all.join(", ")))
        }
    })?;
    let since_ms = q.take_parsed("since", parse_rfc3339_ms)?;
    let until_ms = q.take_parsed("until", parse_rfc3339_ms)?;
    if let (Some(s), Some(u)) = (since_ms, until_ms) {
        if s > u {
            return Err(ApiError::bad_request("until", "is before since"));
        }
    }
    let before = q.take_parsed("before", HistoryCursor::parse)?;
    let limit = q
        .take_limit("limit", MAX_HISTORY_LIMIT)?
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    q.finish()?;
    Ok(HistoryQuery {
        service,
        zone,
        actor,
        action,
        since_ms,
        until_ms,
        before,
        limit,
    })
}

fn entry_view(e: HistoryEntry) -> HistoryEntryView {
    HistoryEntryView {
        at: rfc3339_ms(e.at_ms),
        zone: e.zone,
        actor: e.actor,
        action: e.action,
        service: e.service,
        rp: e.rp,
        summary: e.summary,
    }
}

/// Reads a page off the async threads: a page looks at up to
/// `store::MAX_SCAN_ROWS` rows.
async fn page(state: &ApiState, q: HistoryQuery) -> ApiResult<HistoryList> {
    let db = state.db().clone();
    let page = tokio::task::spawn_blocking(move || db.store().history(&q))
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("history read failed: {e}"),
            )
        })??;
    Ok(HistoryList {
        entries: page.entries.into_iter().map(entry_view).collect(),
        next_before: page.next_before.map(|c| c.token()),
    })
}

/// The filters and page of both routes, for the OpenAPI document only:
/// [`query`] parses them (and refuses any other key).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Filters {
    /// Only events from this zone
    zone: Option<ZoneId>,
    /// Only this actor's (a token name, or node)
    actor: Option<String>,
    /// Only this action (failover, revert, rp-taken, ...)
    action: Option<String>,
    /// At or after this RFC 3339 time
    #[param(format = DateTime)]
    since: Option<String>,
    /// At or before this RFC 3339 time
    #[param(format = DateTime)]
    until: Option<String>,
    /// The previous page's next_before
    before: Option<String>,
    /// Most entries (default 100)
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/history",
    tag = "history",
    summary = "What happened in the deployment, newest first (this zone's audit history)",
    params(
        ("service" = Option<ServiceId>, Query, description = "Only this service's entries"),
        Filters,
    ),
    responses(
        (status = 200, description = "Entries, newest first", body = HistoryList),
        super::openapi::ListErrors,
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _c: Caller,
    q: Params,
) -> ApiResult<Json<HistoryList>> {
    let q = query(q, None)?;
    Ok(Json(page(&state, q).await?))
}

#[utoipa::path(
    get,
    path = "/v1/services/{service}/history",
    tag = "history",
    summary = "What happened to a service, newest first",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        Filters,
    ),
    responses(
        (status = 200, description = "Entries, newest first", body = HistoryList),
        super::openapi::ReadErrors,
    )
)]
pub async fn service(
    State(state): State<ApiState>,
    _c: Caller,
    p: PathParams,
    q: Params,
) -> ApiResult<Json<HistoryList>> {
    let id: ServiceId = p.id("service")?;
    // A deleted service's tombstone stays: its history is readable.
    read_service(&state, &id, |_| ())?;
    let q = query(q, Some(id))?;
    Ok(Json(page(&state, q).await?))
}
