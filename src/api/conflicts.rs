//! Conflicts: list them with every side, resolve one with a write that has
//! seen all sides (so it replaces every value it names).

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::services::{read_service, view_of};
use super::types::{ConflictList, ResolveRequest, ServiceView};
use super::ApiState;
use crate::model::{Policy, RpId, ServiceId, VmSlot, ZoneId};
use crate::node::Role;
use crate::replica::{service_conflicts, Conflict, ConflictKind, Dot, Op};
use axum::extract::State;
use axum::Json;
use serde::de::DeserializeOwned;

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

/// The value of the side `dot`, or of `value`, as a `T`.
fn chosen<T: DeserializeOwned>(c: &Conflict, req: &ResolveRequest) -> ApiResult<T> {
    let v = match (&req.choose, &req.value) {
        (Some(dot), None) => c
            .sides
            .iter()
            .find(|s| &s.dot == dot)
            .map(|s| s.value.clone())
            .ok_or_else(|| {
                ApiError::invalid("choose", format!("{dot} is not a side of this conflict"))
            })?,
        (None, Some(v)) => v.clone(),
        _ => {
            return Err(ApiError::invalid(
                "choose",
                "give exactly one of choose and value",
            ))
        }
    };
    serde_json::from_value(v).map_err(|e| {
        ApiError::invalid("value", format!("not a valid value for {}: {e}", req.field))
    })
}

pub async fn resolve(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<ResolveRequest>,
) -> ApiResult<Json<ServiceView>> {
    caller.require(Role::Operator)?;
    let id: ServiceId = p.id("service")?;
    let _edit = state.0.edit_lock.lock().await;
    let conflicts = read_service(&state, &id, service_conflicts)?;
    let c = conflicts
        .iter()
        .find(|c| match &c.kind {
            ConflictKind::ConcurrentWrite { field } => field == &req.field,
            ConflictKind::ActiveVms => req.field == "active_vms",
        })
        .ok_or_else(|| {
            ApiError::conflict(
                "no_conflict",
                format!("service {id} has no conflict on {:?}", req.field),
            )
            .field("field")
        })?;
    if let Some(seen) = &req.seen {
        let mut now: Vec<&Dot> = c.sides.iter().map(|s| &s.dot).collect();
        let mut seen: Vec<&Dot> = seen.iter().collect();
        now.sort();
        seen.sort();
        if now != seen {
            return Err(ApiError::new(
                axum::http::StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the conflict's sides changed since they were read",
            )
            .field("seen"));
        }
    }
    let ops = ops_for(&id, c, &req)?;
    for op in ops {
        state.db().write(op, &caller.name).await?;
    }
    tracing::info!(zone = %state.zone(), service = %id, field = %req.field, actor = %caller.name, "conflict resolved");
    Ok(Json(view_of(&state, &id)?))
}

/// The writes that settle conflict `c` as the request asks.
fn ops_for(id: &ServiceId, c: &Conflict, req: &ResolveRequest) -> ApiResult<Vec<Op>> {
    let service = id.clone();
    if req.keep_zone.is_some() && !matches!(c.kind, ConflictKind::ActiveVms) {
        return Err(ApiError::invalid("keep_zone", "only for active_vms"));
    }
    let field = req.field.as_str();
    match &c.kind {
        ConflictKind::ActiveVms => {
            let keep: ZoneId = match (&req.keep_zone, &req.choose) {
                (Some(z), None) => z.clone(),
                (None, Some(dot)) => c
                    .sides
                    .iter()
                    .find(|s| &s.dot == dot)
                    .map(|s| s.zone.clone())
                    .ok_or_else(|| {
                        ApiError::invalid("choose", format!("{dot} is not a side of this conflict"))
                    })?,
                _ => {
                    return Err(ApiError::invalid(
                        "keep_zone",
                        "give keep_zone (or choose) for active_vms",
                    ))
                }
            };
            if !c.sides.iter().any(|s| s.zone == keep) {
                return Err(ApiError::invalid(
                    "keep_zone",
                    format!("zone {keep} has no active VM"),
                ));
            }
            let mut ops = Vec::new();
            for side in c.sides.iter().filter(|s| s.zone != keep) {
                let slot: Option<VmSlot> = serde_json::from_value(side.value.clone())
                    .map_err(|e| ApiError::invalid("field", e.to_string()))?;
                if let Some(slot) = slot {
                    ops.push(Op::SetSlot {
                        service: service.clone(),
                        zone: side.zone.clone(),
                        slot: Some(VmSlot {
                            active: false,
                            ..slot
                        }),
                    });
                }
            }
            Ok(ops)
        }
        ConflictKind::ConcurrentWrite { .. } => {
            if field == "policy" {
                let policy: Policy = chosen(c, req)?;
                Ok(vec![Op::SetPolicy { service, policy }])
            } else if field == "metadata" {
                let metadata: String = chosen(c, req)?;
                Ok(vec![Op::SetMetadata { service, metadata }])
            } else if let Some(z) = field.strip_prefix("slots.") {
                let zone =
                    ZoneId::parse(z).map_err(|e| ApiError::invalid("field", e.to_string()))?;
                let slot: Option<VmSlot> = chosen(c, req)?;
                if let Some(s) = &slot {
                    s.validate()?;
                }
                Ok(vec![Op::SetSlot {
                    service,
                    zone,
                    slot,
                }])
            } else if let Some(rp) = field
                .strip_prefix("rps.")
                .and_then(|r| r.strip_suffix(".hold"))
            {
                let rp: RpId = rp.parse().map_err(|e: crate::model::InvalidInput| {
                    ApiError::invalid("field", e.to_string())
                })?;
                let hold: bool = chosen(c, req)?;
                Ok(vec![Op::SetHold { service, rp, hold }])
            } else {
                // `deleted`: both sides say deleted; there is nothing to choose.
                Err(ApiError::invalid(
                    "field",
                    format!("{field} cannot be resolved by a write"),
                ))
            }
        }
    }
}
