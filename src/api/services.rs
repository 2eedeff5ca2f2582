//! DR services: protect (idempotent create), list with filters, show, edit
//! with a version token, delete.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::types::{CreateService, ServiceList, ServiceView, UpdateService};
use super::ApiState;
use crate::model::{ServiceId, VmSlot, ZoneId};
use crate::node::Role;
use crate::replica::{service_conflicts, Op, Replica, Service, WriteError};
use crate::store::{Check, DbError, LocalMutation};
use axum::extract::State;
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
/// Most services in one page of a list.
pub const MAX_PAGE: usize = 1000;

/// The local row that remembers the request a service was created from.
fn idem_key(id: &ServiceId) -> String {
    format!("api/create/{id}")
}

/// The version token of a service: a hash of the events that wrote its
/// editable fields' current values. Any write to them changes it.
pub fn version_token(s: &Service) -> String {
    let mut dots = Vec::new();
    let mut tag = |t: &str, d: &crate::replica::Dot| {
        dots.push(format!("{t}:{}:{}", d.origin, d.seq));
    };
    s.created.iter().for_each(|d| tag("c", d));
    s.policy.values().iter().for_each(|v| tag("p", &v.dot));
    s.metadata.values().iter().for_each(|v| tag("m", &v.dot));
    s.deleted.values().iter().for_each(|v| tag("d", &v.dot));
    for (z, r) in &s.slots {
        r.values()
            .iter()
            .for_each(|v| tag(&format!("s.{z}"), &v.dot));
    }
    let h = blake3::hash(dots.join(",").as_bytes());
    hex::encode(&h.as_bytes()[..12])
}

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
        active_zones: s.active_zones(),
        conflicts: service_conflicts(s),
        rp_count: s.rps.len(),
        newest_recoverable_rp: recovery_zone
            .and_then(|z| s.newest_complete_rp(&z).map(|rp| rp.id.clone())),
        rpo: None,
        last_error: None,
    }
}

/// Adds what this zone's engine knows (RPO, last error). Called with the
/// replica unlocked, since the engine reads it too.
fn add_engine_status(state: &ApiState, v: &mut ServiceView) {
    if let Some(st) = state.engine().status(&v.id) {
        v.rpo = Some(st.rpo);
        v.last_error = st.last_error;
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
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Option<Vec<String>>);

impl IfMatch {
    pub fn from_headers(headers: &HeaderMap) -> ApiResult<IfMatch> {
        let Some(h) = headers.get(IF_MATCH) else {
            return Ok(IfMatch(None));
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
        Ok(IfMatch(Some(tokens)))
    }

    pub fn accepts(&self, current: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t == "*" || t == current))
    }

    /// The check a conditional write of service `id` makes in the writer
    /// thread, so no other write slips in between the compare and the write.
    /// A missing service passes: the write itself then says so.
    pub fn check(self, id: ServiceId) -> Check {
        Box::new(move |r: &Replica| match r.service(&id) {
            Some(s) => {
                let current = version_token(s);
                if self.accepts(&current) {
                    Ok(())
                } else {
                    Err(current)
                }
            }
            None => Ok(()),
        })
    }
}

pub async fn list(
    State(state): State<ApiState>,
    _c: Caller,
    mut q: Params,
) -> ApiResult<Json<ServiceList>> {
    let in_conflict = q.take_bool("in_conflict")?;
    let past_rpo = q.take_bool("past_rpo")?;
    let deleted = q.take_bool("deleted")?;
    let zone = q.take_parsed("zone", ZoneId::parse)?;
    let after = q.take_parsed("after", |s| s.parse::<ServiceId>())?;
    let limit = q.take_limit("limit", MAX_PAGE)?.unwrap_or(MAX_PAGE);
    q.finish()?;
    // Ask the engine before taking the replica's read lock: it reads the
    // replica too.
    let past: Option<std::collections::BTreeSet<ServiceId>> = past_rpo.map(|_| {
        state
            .engine()
            .rpo_all()
            .into_iter()
            .filter(|r| r.past_rpo)
            .map(|r| r.service)
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

/// A fingerprint of a create request, to tell a retry from a different request.
fn fingerprint(id: &ServiceId, req: &CreateService) -> Vec<u8> {
    let mut req = req.clone();
    req.id = Some(id.clone());
    let bytes = serde_json::to_vec(&req).unwrap_or_default();
    blake3::hash(&bytes).as_bytes().to_vec()
}

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
    let slot = VmSlot {
        cmp_vm_id: req.cmp_vm_id.clone(),
        disks: req.disks.clone(),
        active: true,
    };
    // Validate before looking for a retry, so a bad body is 4xx either way.
    slot.validate()?;
    // Two rounds: a concurrent identical create may win the race.
    for _ in 0..2 {
        let existing = state.db().read(|r| {
            r.service(&id).map(|s| {
                (s.policy.get() == Some(&req.policy)
                    && s.metadata.get() == Some(&req.metadata)
                    && s.slot(&zone) == Some(&slot),)
            })
        });
        if let Some((same_fields,)) = existing {
            let same = match state.db().store().local_get(&idem_key(&id))? {
                Some(stored) => stored == print,
                None => same_fields,
            };
            if same {
                return Ok(with_etag(StatusCode::OK, view_of(&state, &id)?));
            }
            return Err(ApiError::conflict(
                "idempotency_mismatch",
                format!("service {id} exists and was created from a different request"),
            )
            .field(if req.id.is_some() {
                "id"
            } else {
                "Idempotency-Key"
            }));
        }
        let op = Op::CreateService {
            service: id.clone(),
            policy: req.policy.clone(),
            metadata: req.metadata.clone(),
            slot: slot.clone(),
        };
        let local = vec![LocalMutation::Put(idem_key(&id), print.clone())];
        match state.db().write_with_local(op, &caller.name, local).await {
            Ok(_) => {
                tracing::info!(zone = %zone, service = %id, actor = %caller.name, "service created");
                let v = view_of(&state, &id)?;
                let mut res = with_etag(StatusCode::CREATED, v);
                if let Ok(loc) = HeaderValue::from_str(&format!("/v1/services/{id}")) {
                    res.headers_mut().insert(LOCATION, loc);
                }
                return Ok(res);
            }
            Err(DbError::Write(WriteError::Exists(_))) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict("exists", format!("service {id} exists")))
}

pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    headers: HeaderMap,
    JsonBody(req): JsonBody<UpdateService>,
) -> ApiResult<Response> {
    caller.require(Role::Cmp)?;
    let id: ServiceId = p.id("service")?;
    if req.policy.is_none() && req.metadata.is_none() && req.slot.is_none() {
        return Err(ApiError::invalid(
            "body",
            "nothing to change: give policy, metadata or slot",
        ));
    }
    if let Some(slot) = &req.slot {
        slot.validate()?;
    }
    if let Some(m) = &req.metadata {
        if m.len() > crate::model::MAX_METADATA_BYTES {
            return Err(ApiError::invalid("metadata", "too long"));
        }
    }
    // Bad input is refused before the version is compared: 4xx for the
    // body first, 412 only for a valid but stale edit. (The writer checks
    // the policy again, with the version, when it writes.)
    let policy_ok = state.db().read(|r| {
        let s = r.service(&id)?;
        Some(match &req.policy {
            Some(p) => p.validate(&s.active_zones(), |z| r.directory().contains(z)),
            None => Ok(()),
        })
    });
    policy_ok.unwrap_or(Ok(()))?;
    let if_match = IfMatch::from_headers(&headers)?;
    let zone = state.zone().clone();
    let mut ops = Vec::new();
    if let Some(policy) = req.policy {
        ops.push(Op::SetPolicy {
            service: id.clone(),
            policy,
        });
    }
    if let Some(metadata) = req.metadata {
        ops.push(Op::SetMetadata {
            service: id.clone(),
            metadata,
        });
    }
    if let Some(slot) = req.slot {
        ops.push(Op::SetSlot {
            service: id.clone(),
            zone: zone.clone(),
            slot: Some(slot),
        });
    }
    // One commit for every field, made only if the version still matches.
    let kinds: Vec<&str> = ops.iter().map(Op::kind).collect();
    state
        .db()
        .write_all_if(ops, &caller.name, if_match.check(id.clone()))
        .await?;
    tracing::info!(zone = %zone, service = %id, actor = %caller.name, ops = ?kinds, "service updated");
    let v = view_of(&state, &id)?;
    Ok(with_etag(StatusCode::OK, v))
}

pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let id: ServiceId = p.id("service")?;
    let if_match = IfMatch::from_headers(&headers)?;
    state
        .db()
        .write_all_if(
            vec![Op::DeleteService {
                service: id.clone(),
            }],
            &caller.name,
            if_match.check(id.clone()),
        )
        .await?;
    tracing::info!(zone = %state.zone(), service = %id, actor = %caller.name, "service deleted");
    let v = view_of(&state, &id)?;
    Ok(with_etag(StatusCode::OK, v))
}
