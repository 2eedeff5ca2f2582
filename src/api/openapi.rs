//! The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`.
//!
//! Derived, not written: the schemas come from the wire types (`types`,
//! `error::ErrorBody` and the `model` / `replica` values they embed, via
//! `utoipa::ToSchema`), the operations from the `#[utoipa::path]` attribute
//! on each handler. This file only lists the handlers, holds the few
//! schemas no Rust type has (a volume name, the string enums that travel as
//! `String`, the flattened `Conflict`), the error answers each kind of
//! operation can give, and names operations and links them.
//!
//! Two checks keep it true: a test that every (method, path) of the router
//! is documented and nothing else is, and schemathesis
//! (`scripts/api-schema.sh`), which sends generated requests and checks
//! every answer against these schemas.

use super::error::ErrorBody;
use super::types::FeedEvent;
use crate::model::{ServiceId, ZoneId};
use crate::replica::ConflictSide;
use axum::Json;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, Array, ArrayBuilder, ObjectBuilder, Schema, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "drengine API",
        description = "Disaster recovery for one zone: DR services, recovery points, failover, conflicts, CMP messages. Errors are {\"error\": {\"code\", \"message\", \"field\"}}."
    ),
    servers((url = "/")),
    security(("bearer" = [])),
    paths(
        super::status::healthz,
        metrics_doc,
        handler,
        super::status::zone_status,
        super::status::override_rebuild,
        super::status::peers,
        super::services::list,
        super::services::create,
        super::services::show,
        super::services::update,
        super::services::delete,
        super::history::service,
        super::rps::list,
        super::rps::take,
        super::rps::show,
        super::rps::hold,
        super::rps::release,
        super::pause::pause,
        super::pause::resume,
        super::actions::failover,
        super::actions::start_migration,
        super::actions::complete_migration,
        super::actions::revert,
        super::actions::test_failover,
        super::actions::cleanup_test_failover,
        super::actions::deactivate,
        super::conflicts::resolve,
        super::conflicts::list,
        super::history::list,
        super::messages::list,
        super::messages::send,
        super::messages::show,
        super::messages::ack,
        super::feed::events,
    ),
    // What no operation names directly: the error body (named by the error
    // answers below), the volume name (named by `disk_list`) and the feed's
    // event (inside a text/event-stream).
    components(schemas(ErrorBody, Volume, FeedEvent)),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// The bearer security scheme every operation but the public ones needs.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from [api] tokens: role read (GET only), cmp or operator",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
        // Serialising utoipa's own types cannot fail; say so if it ever does.
        json!({ "openapi": "3.1.0", "info": { "title": format!("unserialisable: {e}"), "version": "" }, "paths": {} })
    });
    close_objects_and_unsign(&mut doc["components"]["schemas"]);
    close_objects_and_unsign(&mut doc["paths"]);
    optional_bodies_are_not_null(&mut doc["paths"]);
    name_operations_and_link(&mut doc["paths"]);
    doc
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "node",
    summary = "This document",
    security(()),
    responses((status = 200, description = "OpenAPI 3 document", body = Object))
)]
pub async fn handler() -> Json<Value> {
    Json(document())
}

/// `GET /metrics` (served by `metrics::handler`; documented here so that
/// file stays the metrics' own).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "node",
    summary = "Prometheus metrics (a token with the read role)",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        Unauthenticated
    )
)]
#[allow(dead_code)]
fn metrics_doc() {}

/// Every object of the API is closed: requests refuse unknown fields
/// (`deny_unknown_fields`) and answers carry only what is documented, so
/// every object schema that lists properties says `additionalProperties:
/// false` (utoipa writes it only for the `deny_unknown_fields` ones). And
/// unsigned integers carry no signed format.
fn close_objects_and_unsign(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // utoipa gives u32 / u64 the formats int32 / int64, whose
            // signed ranges schemathesis enforces (it would call 2^31 an
            // invalid keep_last); an unsigned field's range is its
            // minimum and maximum.
            let unsigned = m.get("type") == Some(&json!("integer"))
                && m.get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|x| x >= 0.0);
            if unsigned
                && matches!(
                    m.get("format").and_then(Value::as_str),
                    Some("int32" | "int64")
                )
            {
                m.remove("format");
            }
            if m.get("type") == Some(&json!("object"))
                && m.contains_key("properties")
                && !m.contains_key("additionalProperties")
            {
                m.insert("additionalProperties".into(), json!(false));
            }
            for (_, child) in m.iter_mut() {
                close_objects_and_unsign(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects_and_unsign),
        _ => {}
    }
}

/// A body an action may leave out is `Option<T>` in its `#[utoipa::path]`
/// (so utoipa marks it not required) and reads as `{}` when absent
/// (`extract::JsonBody`); it is never `null`, which utoipa's nullable
/// rendering of the `Option` would invite. Says `required: false` and keeps
/// `T`'s schema alone.
fn optional_bodies_are_not_null(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for op in paths.values_mut().filter_map(Value::as_object_mut) {
        for body in op.values_mut().filter_map(|o| o.get_mut("requestBody")) {
            if body.get("required").is_some() {
                continue;
            }
            body["required"] = json!(false);
            let Some(content) = body.get_mut("content").and_then(Value::as_object_mut) else {
                continue;
            };
            for media in content.values_mut() {
                let inner = match media["schema"]["oneOf"].as_array() {
                    Some(alts) if alts.len() == 2 && alts[0] == json!({ "type": "null" }) => {
                        alts[1].clone()
                    }
                    _ => continue,
                };
                media["schema"] = inner;
            }
        }
    }
}

/// A StorPool volume name, as the VM's disks are given (`String` in Rust).
pub struct Volume;

impl PartialSchema for Volume {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_.:-]{1,199}$"))
            .description(Some("A StorPool volume name (not list or status)"))
            .into()
    }
}

impl ToSchema for Volume {}

/// `CreateService.disks`: 1 to 64 distinct volume names.
pub fn disk_list() -> Array {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("Volume"))
        .min_items(Some(1))
        .max_items(Some(crate::model::MAX_DISKS_PER_VM))
        .unique_items(true)
        .description(Some("The VM's disks as StorPool volume names"))
        .build()
}

fn string_enum(values: &[&str], description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .into()
}

/// `CopyView.state` (`CopyState` on the wire).
pub fn copy_state_name() -> Schema {
    string_enum(
        &["pending", "transferring", "complete", "failed", "deleted"],
        "The copy's state",
    )
}

/// `Preflight.action`.
pub fn preflight_action_name() -> Schema {
    string_enum(
        &[
            "failover",
            "migrate",
            "migrate/complete",
            "revert",
            "test-failover",
            "deactivate",
            "resolve",
            "delete",
        ],
        "The DR action the preflight is of",
    )
}

/// `RebuildView.state`.
pub fn rebuild_state_name() -> Schema {
    string_enum(
        &["rebuilding", "ready", "overridden"],
        "rebuilding (writes answer 503 rebuilding), ready, or overridden",
    )
}

/// `GET /v1/messages?direction=`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Direction {
    Inbox,
    Outbox,
    All,
}

/// Where a message stands (`GET /v1/messages?state=`).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum MessageStateParam {
    Sent,
    Delivered,
    Acked,
    Expired,
}

/// `replica::Conflict` flattens its internally tagged kind into the
/// object, which utoipa's derive renders as an `allOf` that a closed object
/// cannot describe; this is the flat shape the JSON has.
impl PartialSchema for crate::replica::Conflict {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property("service", ServiceId::schema_ref())
            .required("service")
            .property(
                "kind",
                string_enum(&["concurrent_write", "active_vms"], "The kind of conflict"),
            )
            .required("kind")
            .property(
                "field",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("For concurrent_write: the register")),
            )
            .property(
                "sides",
                ArrayBuilder::new().items(ConflictSide::schema_ref()),
            )
            .required("sides")
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
            .into()
    }
}

impl ToSchema for crate::replica::Conflict {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Conflict")
    }

    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((ServiceId::name().into(), ServiceId::schema()));
        out.push((ConflictSide::name().into(), ConflictSide::schema()));
        <ConflictSide as ToSchema>::schemas(out);
        out.push((ZoneId::name().into(), ZoneId::schema()));
    }
}

/// A type's schema as a `$ref` to its component.
trait SchemaRef: ToSchema {
    fn schema_ref() -> Ref {
        Ref::from_schema_name(Self::name())
    }
}

impl<T: ToSchema> SchemaRef for T {}

/// What each error status means, the same for every operation.
fn error_meaning(code: u16) -> &'static str {
    match code {
        400 => "Malformed request (JSON syntax, types, unknown fields, bad ids)",
        401 => "Missing or unknown bearer token",
        403 => "The token's role may not do this",
        404 => "No such service, recovery point, message or path",
        409 => "Conflicts with the current state",
        410 => "The service is deleted",
        412 => "The version token in If-Match is stale",
        413 => "The request body is too large",
        415 => "The body is not JSON",
        422 => "Well-formed but invalid input",
        502 => "StorPool answered an error",
        503 => "The DR engine or storage is not available, or the node is rebuilding (Retry-After)",
        _ => "Error",
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
        .into()
}

/// The error answers `codes`, plus `default` for any other.
fn error_responses(codes: &[u16]) -> BTreeMap<String, RefOr<Response>> {
    let mut m: BTreeMap<String, RefOr<Response>> = codes
        .iter()
        .map(|c| (c.to_string(), error_response(error_meaning(*c))))
        .collect();
    m.insert("default".into(), error_response("Any other error"));
    m
}

/// A set of error answers an operation lists in its `responses(...)`.
macro_rules! error_set {
    ($($(#[$doc:meta])* $name:ident = [$($code:literal),*];)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    error_responses(&[$($code),*])
                }
            }
        )*
    };
}

error_set! {
    /// A read of one resource named in the path.
    ReadErrors = [400, 401, 404];
    /// A read of a list (filters in the query).
    ListErrors = [400, 401];
    /// A write through the replica.
    WriteErrors = [400, 401, 403, 404, 409, 410, 413, 415, 422, 503];
    /// A write that sends `If-Match` or `seen` (a stale one answers 412).
    CheckedWriteErrors = [400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 503];
    /// `DELETE /v1/services/{service}`.
    DeleteErrors = [400, 401, 403, 404, 410, 412, 503];
    /// A DR action run by the engine (which may meet StorPool errors).
    ActionErrors = [400, 401, 403, 404, 409, 410, 413, 415, 422, 502, 503];
    /// Needs a token, takes nothing else.
    Unauthenticated = [401];
    /// Needs the operator's token.
    OperatorErrors = [401, 403];
    /// `/healthz`: the node cannot write.
    Unavailable = [503];
    /// The change feed.
    FeedErrors = [400, 401, 503];
}

/// Gives every operation an `operationId` (method + path) and links the
/// answers that create a service, RP or message to the operations that take
/// its id, so generated request sequences can reach existing resources.
fn name_operations_and_link(paths: &mut Value) {
    let op_id = |method: &str, path: &str| {
        let mut id = method.to_string();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != "v1") {
            id.push('_');
            id.push_str(&part.replace(['{', '}'], "").replace(['-', '.'], "_"));
        }
        id
    };
    let Some(map) = paths.as_object_mut() else {
        return;
    };
    let mut takes: Vec<(String, &'static str)> = Vec::new();
    for (path, item) in map.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if method == "parameters" {
                continue;
            }
            let id = op_id(method, path);
            op["operationId"] = json!(id);
            // What a link must supply: the most specific id in the path.
            let needs = if path.contains("{rp}") {
                Some("rp")
            } else if path.contains("{service}") {
                Some("service")
            } else if path.contains("{message}") {
                Some("message")
            } else {
                None
            };
            if let Some(n) = needs {
                takes.push((id, n));
            }
        }
    }
    let link = |target: &str, params: Value| json!({ "operationId": target, "parameters": params });
    let mut add = |path: &str, method: &str, status: &str, param: &'static str, expr: Value| {
        let mut links = Map::new();
        for (target, p) in &takes {
            if *p == param {
                links.insert(target.clone(), link(target, expr.clone()));
            }
        }
        if let Some(resp) = map
            .get_mut(path)
            .and_then(|i| i.get_mut(method))
            .and_then(|o| o.get_mut("responses"))
            .and_then(|r| r.get_mut(status))
        {
            resp["links"] = Value::Object(links);
        }
    };
    add(
        "/v1/services",
        "post",
        "201",
        "service",
        json!({ "service": "$response.body#/id" }),
    );
    add(
        "/v1/services/{service}/rps",
        "post",
        "201",
        "rp",
        json!({ "service": "$response.body#/service", "rp": "$response.body#/id" }),
    );
    add(
        "/v1/messages",
        "post",
        "201",
        "message",
        json!({ "message": "$response.body#/id" }),
    );
}
