//! DR services: protect (idempotent create), list with filters, show, edit
//! with a version token, delete.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::types::{
    CreateService, RpoLevel, RpoStatus, ServiceAnswer, ServiceList, ServiceView, UpdateService,
    ZoneProtection,
};
use super::ApiState;
use super::Role;
use crate::model::{ServiceId, VmSlot, ZoneId};
use crate::replica::{service_conflicts, Command, Expect, Outcome, Service, WriteError};
use crate::store::DbError;
use axum::extract::State;
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// Most services in one page of a list.
pub const MAX_PAGE: usize = 1000;

pub use crate::replica::version_token;

/// The replicated part of a service's view. Pure: safe to call while the
/// replica is read-locked.
pub fn base_view(s: &Service) -> ServiceView {
    let recovery_zone = s.policy.get().map(|p| p.recovery_zone.clone());
    ServiceView {
        id: s.id.clone(),
        version: version_token(s),
        created_by: s.created.iter().map(|d| d.origin.clone()).collect(),
        deleted: s.is_deleted(),
        policy: s.policy.get().cloned(),
        metadata: s.metadata.get().cloned().unwrap_or_default(),
        slots: s
            .slots
            .keys()
            .filter_map(|z| Some((z.clone(), s.slot(z)?.clone())))
            .collect(),
        protection: s
            .active_zones()
            .into_iter()
            .map(|zone| ZoneProtection {
                rps_go_to: crate::engine::rpo::replicated_to(s, &zone),
                zone,
            })
            .collect(),
        active_zones: s.active_zones(),
        conflicts: service_conflicts(s),
        rp_count: s.rps.len(),
        newest_recoverable_rp: recovery_zone
            .and_then(|z| s.newest_complete_rp(&z).map(|rp| rp.id.clone())),
        rpo: None,
        last_error: None,
        retention_frozen_since: None,
        paused: s.pause().and_then(|v| {
            let p = v.value.as_ref()?;
            Some(super::types::PauseView {
                by: p.by.clone(),
                reason: p.reason.clone(),
                since: super::types::rfc3339_ms(v.hlc.wall_ms),
            })
        }),
    }
}

/// Adds what this zone's engine knows (RPO, last error). Called with the
/// replica unlocked, since the engine reads it too.
fn add_engine_status(state: &ApiState, v: &mut ServiceView) {
    if let Some(st) = state.engine().status(&v.id) {
        v.rpo = Some(rpo_view(st.rpo));
        v.last_error = st.last_error;
        v.retention_frozen_since = st.retention_frozen_since_ms.map(super::types::rfc3339_ms);
    }
}

/// The engine's RPO of a service in the API's wire shape.
fn rpo_view(r: crate::engine::RpoStatus) -> RpoStatus {
    RpoStatus {
        service: r.service,
        rpo_age_s: r.rpo_age_s,
        rpo_target_s: r.rpo_target_s,
        past_rpo: r.past_rpo,
        level: level_view(r.level),
        kept_only_in: r.kept_only_in,
    }
}

/// The engine's RPO level in the API's wire shape.
pub(crate) fn level_view(l: crate::engine::RpoLevel) -> RpoLevel {
    match l {
        crate::engine::RpoLevel::Paused => RpoLevel::Paused,
        crate::engine::RpoLevel::Ok => RpoLevel::Ok,
        crate::engine::RpoLevel::Warning => RpoLevel::Warning,
        crate::engine::RpoLevel::Critical => RpoLevel::Critical,
    }
}

/// The full view of one service, or 404.
pub fn view_of(state: &ApiState, id: &ServiceId) -> ApiResult<ServiceView> {
    let mut v = read_service(state, id, base_view)?;
    add_engine_status(state, &mut v);
    Ok(v)
}

/// A service answer with its version as the `ETag`.
fn with_etag(status: StatusCode, v: ServiceView) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", v.version)).ok();
    let mut res = (status, Json(v)).into_response();
    if let Some(etag) = etag {
        res.headers_mut().insert(ETAG, etag);
    }
    res
}

/// Reads a live or deleted service, or 404.
pub fn read_service<R>(
    state: &ApiState,
    id: &ServiceId,
    f: impl FnOnce(&Service) -> R,
) -> ApiResult<R> {
    state
        .db()
        .read(|r| r.service(id).map(f))
        .ok_or_else(|| ApiError::not_found("service", format!("service {id} does not exist")))
}

/// The versions an `If-Match` header accepts; none sent accepts any.
fn if_match(headers: &HeaderMap) -> ApiResult<Expect> {
    let Some(h) = headers.get(IF_MATCH) else {
        return Ok(Expect::Any);
    };
    let h = h
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match", "not ASCII"))?;
    let tokens = h
        .split(',')
        .map(|t| {
            let t = t.trim();
            t.strip_prefix("W/")
                .unwrap_or(t)
                .trim_matches('"')
                .to_string()
        })
        .collect();
    Ok(Expect::OneOf(tokens))
}

#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "services",
    summary = "List DR services",
    params(
        ("in_conflict" = Option<bool>, Query, description = "Only services with (true) or without (false) a conflict"),
        ("past_rpo" = Option<bool>, Query, description = "Only services past (true) or within (false) their RPO"),
        ("rpo" = Option<RpoLevel>, Query, description = "Only services whose RPO level is this or worse"),
        ("deleted" = Option<bool>, Query, description = "List deleted services instead of live ones"),
        ("zone" = Option<ZoneId>, Query, description = "Only services with a VM in, or recovering to, this zone"),
        ("after" = Option<ServiceId>, Query, description = "Start after this id (from next_after)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size"),
    ),
    responses(
        (status = 200, description = "A page of services", body = ServiceList),
        super::openapi::ListErrors,
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _c: Caller,
    mut q: Params,
) -> ApiResult<Json<ServiceList>> {
    let in_conflict = q.take_bool("in_conflict")?;
    let past_rpo = q.take_bool("past_rpo")?;
    let rpo_at_least = q.take_parsed("rpo", RpoLevel::parse)?;
    let deleted = q.take_bool("deleted")?;
    let zone = q.take_parsed("zone", ZoneId::parse)?;
    let after = q.take_parsed("after", |s| s.parse::<ServiceId>())?;
    let limit = q.take_limit("limit", MAX_PAGE)?.unwrap_or(MAX_PAGE);
    q.finish()?;
    // Ask the engine before taking the replica's read lock: it reads the
    // replica too.
    let rpo_all = (past_rpo.is_some() || rpo_at_least.is_some()).then(|| state.engine().rpo_all());
    let past: Option<std::collections::BTreeSet<ServiceId>> =
        past_rpo.and(rpo_all.as_ref()).map(|all| {
            all.iter()
                .filter(|r| r.past_rpo)
                .map(|r| r.service.clone())
                .collect()
        });
    // `rpo=L`: services this zone's engine grades L or worse (it grades the
    // services it protects or receives; others have no RPO here).
    let graded: Option<std::collections::BTreeSet<ServiceId>> =
        rpo_at_least.zip(rpo_all.as_ref()).map(|(min, all)| {
            all.iter()
                .filter(|r| level_view(r.level) >= min)
                .map(|r| r.service.clone())
                .collect()
        });
    let (mut services, more) = state.db().read(|r| {
        let mut out: Vec<ServiceView> = Vec::new();
        let mut more = None;
        let start = match &after {
            Some(a) => std::ops::Bound::Excluded(a.clone()),
            None => std::ops::Bound::Unbounded,
        };
        for (id, s) in r
            .state()
            .services
            .range((start, std::ops::Bound::Unbounded))
        {
            if s.is_deleted() != deleted.unwrap_or(false) {
                continue;
            }
            if let Some(want) = in_conflict {
                if service_conflicts(s).is_empty() == want {
                    continue;
                }
            }
            if let Some(z) = &zone {
                let has_slot = s.slot(z).is_some();
                let recovers = s.policy.get().is_some_and(|p| &p.recovery_zone == z);
                if !has_slot && !recovers {
                    continue;
                }
            }
            if let (Some(want), Some(past)) = (past_rpo, &past) {
                if past.contains(id) != want {
                    continue;
                }
            }
            if graded.as_ref().is_some_and(|g| !g.contains(id)) {
                continue;
            }
            if out.len() == limit {
                more = out.last().map(|v| v.id.clone());
                break;
            }
            out.push(base_view(s));
        }
        (out, more)
    });
    for v in &mut services {
        add_engine_status(&state, v);
    }
    Ok(Json(ServiceList {
        services,
        next_after: more,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/services/{service}",
    tag = "services",
    summary = "Show a service",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
    ),
    responses(
        (status = 200, description = "The service", body = ServiceView, headers(("ETag" = String, description = "The service's version token, quoted"))),
        super::openapi::ReadErrors,
    )
)]
pub async fn show(State(state): State<ApiState>, _c: Caller, p: PathParams) -> ApiResult<Response> {
    let id: ServiceId = p.id("service")?;
    let v = view_of(&state, &id)?;
    Ok(with_etag(StatusCode::OK, v))
}

/// Reads the `Idempotency-Key` header, if sent.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(h) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = h
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key", "not ASCII"))?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(ApiError::bad_request(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} characters"),
        ));
    }
    Ok(Some(key.to_string()))
}

/// The service id for a create: given, derived from zone and key, or random.
fn make_id(zone: &ZoneId, given: Option<ServiceId>, key: Option<&str>) -> ApiResult<ServiceId> {
    if let Some(id) = given {
        return Ok(id);
    }
    let suffix = match key {
        Some(k) => {
            let h = blake3::hash(format!("drengine/idempotency/v1\0{zone}\0{k}").as_bytes());
            hex::encode(&h.as_bytes()[..10])
        }
        None => hex::encode(rand::random::<[u8; 10]>()),
    };
    let with_zone = format!("{zone}-{suffix}");
    let id = if with_zone.len() <= 64 {
        with_zone
    } else {
        format!("s-{suffix}")
    };
    Ok(ServiceId::new(id)?)
}

/// Refuses a recovery zone this zone's StorPool cluster has no link to
/// (`engine::links`, the one place for that rule).
async fn require_link(state: &ApiState, zone: &ZoneId) -> ApiResult<()> {
    const FIELD: &str = "policy.recovery_zone";
    Ok(state.engine().require_storage_link(zone, FIELD).await?)
}

/// A fingerprint of a create request, to tell a retry from a different request.
fn fingerprint(id: &ServiceId, req: &CreateService) -> Vec<u8> {
    let mut req = req.clone();
    req.id = Some(id.clone());
    let bytes = serde_json::to_vec(&req).unwrap_or_default();
    blake3::hash(&bytes).as_bytes().to_vec()
}

#[utoipa::path(
    post,
    path = "/v1/services",
    tag = "services",
    summary = "Protect a VM of this zone (idempotent with Idempotency-Key or id)",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 128, description = "Repeats with the same key and body answer the same service"),
    ),
    request_body(content = CreateService, example = json!({
        "cmp_vm_id": "vm-1", "disks": ["vm-1-root", "vm-1-data"], "metadata": "<vm/>",
        "policy": { "interval_s": 300, "recovery_zone": "zone-b",
                    "local_retention": { "keep_last": 3, "keep_for_s": 86400 },
                    "remote_retention": { "keep_last": 3, "keep_for_s": 86400 } }
    })),
    responses(
        (status = 201, description = "Created", body = ServiceView, headers(("ETag" = String, description = "The service's version token, quoted"))),
        (status = 200, description = "Already created by the same request", body = ServiceView, headers(("ETag" = String, description = "The service's version token, quoted"))),
        super::openapi::WriteErrors,
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateService>,
) -> ApiResult<Response> {
    caller.require(Role::Cmp)?;
    let key = idempotency_key(&headers)?;
    let zone = state.zone().clone();
    let id = make_id(&zone, req.id.clone(), key.as_deref())?;
    let print = fingerprint(&id, &req);
    // The VM is in this zone: its RPs go from this zone's cluster.
    require_link(&state, &req.policy.recovery_zone).await?;
    let slot = VmSlot {
        cmp_vm_id: req.cmp_vm_id.clone(),
        disks: req.disks.clone(),
        active: true,
    };
    let cmd = Command::Protect {
        service: id.clone(),
        policy: req.policy.clone(),
        metadata: req.metadata.clone(),
        slot,
        fingerprint: print,
    };
    let done = state
        .db()
        .execute(cmd, &caller.name)
        .await
        .map_err(|e| match e {
            DbError::Write(w @ WriteError::IdempotencyMismatch(_)) => {
                ApiError::from(w).field(if req.id.is_some() {
                    "id"
                } else {
                    "Idempotency-Key"
                })
            }
            e => e.into(),
        })?;
    let v = view_of(&state, &id)?;
    if done.outcome == Outcome::Existing {
        return Ok(with_etag(StatusCode::OK, v));
    }
    tracing::info!(zone = %zone, service = %id, actor = %caller.name, "service created");
    let mut res = with_etag(StatusCode::CREATED, v);
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/services/{id}")) {
        res.headers_mut().insert(LOCATION, loc);
    }
    Ok(res)
}

#[utoipa::path(
    patch,
    path = "/v1/services/{service}",
    tag = "services",
    summary = "Change policy, metadata or this zone's VM slot",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The version (ETag) the change is based on; a stale one answers 412"),
    ),
    request_body = UpdateService,
    responses(
        (status = 200, description = "Updated", body = ServiceView, headers(("ETag" = String, description = "The service's version token, quoted"))),
        super::openapi::CheckedWriteErrors,
    )
)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    headers: HeaderMap,
    JsonBody(req): JsonBody<UpdateService>,
) -> ApiResult<Response> {
    caller.require(Role::Cmp)?;
    let id: ServiceId = p.id("service")?;
    let expect = if_match(&headers)?;
    let zone = state.zone().clone();
    let kinds: Vec<&str> = [
        req.policy.as_ref().map(|_| "policy"),
        req.metadata.as_ref().map(|_| "metadata"),
        req.slot.as_ref().map(|_| "slot"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(policy) = &req.policy {
        // Checked where this zone's cluster is the one that sends.
        let sends_here = state.db().read(|r| {
            r.service(&id)
                .is_some_and(|s| s.active_zones().contains(&zone))
        });
        if sends_here {
            require_link(&state, &policy.recovery_zone).await?;
        }
    }
    // One commit for every field, made only if the version still matches
    // (bad input is refused first: 412 only for a valid but stale edit).
    let cmd = Command::Edit {
        service: id.clone(),
        expect,
        policy: req.policy,
        metadata: req.metadata,
        slot: req.slot,
    };
    state.db().execute(cmd, &caller.name).await?;
    tracing::info!(zone = %zone, service = %id, actor = %caller.name, fields = ?kinds, "service updated");
    let v = view_of(&state, &id)?;
    Ok(with_etag(StatusCode::OK, v))
}

#[utoipa::path(
    delete,
    path = "/v1/services/{service}",
    tag = "services",
    summary = "Delete a service (operator)",
    params(
        ("service" = ServiceId, Path, description = "The service id"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The version (ETag) the change is based on; a stale one answers 412"),
        ("dry_run" = Option<bool>, Query, description = "Answer what the action would do (a Preflight) and change nothing"),
    ),
    responses(
        (status = 200, description = "Deleted (tombstone), or with dry_run the Preflight (no ETag)", body = ServiceAnswer, headers(("ETag" = String, description = "The service's version token, quoted"))),
        super::openapi::DeleteErrors,
    )
)]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    q: Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let dry = super::actions::dry_run(q)?;
    let id: ServiceId = p.id("service")?;
    let expect = if_match(&headers)?;
    let cmd = Command::Delete {
        service: id.clone(),
        expect,
    };
    if dry {
        let pre = super::actions::command_preflight(
            &state,
            crate::engine::preflight::Action::Delete,
            &id,
            &cmd,
        )?;
        return Ok(Json(pre).into_response());
    }
    state.db().execute(cmd, &caller.name).await?;
    tracing::info!(zone = %state.zone(), service = %id, actor = %caller.name, "service deleted");
    let v = view_of(&state, &id)?;
    Ok(with_etag(StatusCode::OK, v))
}
