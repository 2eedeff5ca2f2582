//! The OpenAPI 3 document of the API, served at `/v1/openapi.json`.
//!
//! Written by hand next to the types it describes. Two checks keep it true:
//! a test that every (method, path) of the router is documented and nothing
//! else is, and schemathesis (`scripts/api-schema.sh`), which sends
//! generated requests and checks every answer against these schemas.

use axum::Json;
use serde_json::{json, Map, Value};

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn nullable(name: &str) -> Value {
    json!({ "allOf": [r(name)], "nullable": true })
}

fn error_response(desc: &str) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": r("Error") } } })
}

fn json_response(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

/// The error answers an operation can give, plus its success answers.
fn responses(ok: &[(u16, Value)], errors: &[u16]) -> Value {
    let mut m = Map::new();
    for (code, v) in ok {
        m.insert(code.to_string(), v.clone());
    }
    for code in errors {
        let desc = match code {
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
            503 => {
                "The DR engine or storage is not available, or the node is rebuilding (Retry-After)"
            }
            _ => "Error",
        };
        m.insert(code.to_string(), error_response(desc));
    }
    m.insert("default".into(), error_response("Any other error"));
    Value::Object(m)
}

const READ_ERRORS: &[u16] = &[400, 401, 404];
const WRITE_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 410, 413, 415, 422, 503];
const ACTION_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 410, 413, 415, 422, 502, 503];

fn path_param(name: &str, schema: &str, desc: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": desc, "schema": r(schema) })
}

fn query_param(name: &str, schema: Value, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": desc, "schema": schema })
}

fn service_param() -> Value {
    path_param("service", "ServiceId", "The service id")
}

fn rp_param() -> Value {
    path_param("rp", "RpId", "The recovery point id")
}

fn body(schema: &str, required: bool) -> Value {
    json!({ "required": required, "content": { "application/json": { "schema": r(schema) } } })
}

fn service_response(desc: &str) -> Value {
    json!({
        "description": desc,
        "headers": { "ETag": { "description": "The service's version token, quoted", "schema": { "type": "string" } } },
        "content": { "application/json": { "schema": r("ServiceView") } }
    })
}

fn if_match() -> Value {
    json!({ "name": "If-Match", "in": "header", "required": false,
            "description": "The version (ETag) the change is based on; a stale one answers 412",
            "schema": { "type": "string" } })
}

fn action(summary: &str, req: Option<&str>, ok: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "tags": ["actions"],
        "parameters": [service_param()],
        "responses": responses(&[(200, ok)], ACTION_ERRORS),
    });
    if let Some(req) = req {
        op["requestBody"] = body(req, false);
    }
    op
}

fn u64_schema() -> Value {
    json!({ "type": "integer", "minimum": 0, "maximum": 18446744073709551615u64 })
}

/// An optional request field: absent and `null` both mean "not given".
fn optional(name: &str) -> Value {
    nullable(name)
}

fn object(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props, "additionalProperties": false })
}

fn schemas() -> Value {
    // In parts: one json! this size passes the macro recursion limit.
    let mut parts = Vec::new();
    parts.push(json!({
        "Error": object(&["error"], json!({
            "error": object(&["code", "message"], json!({
                "code": { "type": "string" },
                "message": { "type": "string" },
                "field": { "type": "string", "description": "The request field at fault" }
            }))
        })),
        "ZoneId": { "type": "string", "pattern": "^[A-Za-z0-9-]{1,63}$" },
        "ServiceId": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
        "RpId": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$",
                  "description": "Always <origin zone>.<suffix>" },
        "MessageId": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,96}$" },
        "Hlc": object(&["wall_ms", "logical"], json!({
            "wall_ms": u64_schema(), "logical": { "type": "integer", "minimum": 0 }
        })),
        "Dot": object(&["origin", "seq"], json!({ "origin": r("ZoneId"), "seq": u64_schema() })),
        "VersionVector": { "type": "object", "additionalProperties": u64_schema(),
                           "description": "Per zone, the highest contiguous event seq applied" },
        "Retention": object(&["keep_last", "keep_for_s"], json!({
            "keep_last": { "type": "integer", "minimum": 1, "maximum": 4294967295u64 },
            "keep_for_s": u64_schema()
        })),
        "Policy": object(&["interval_s", "recovery_zone", "local_retention", "remote_retention"], json!({
            "interval_s": { "type": "integer", "minimum": 1, "maximum": 604800 },
            "recovery_zone": r("ZoneId"),
            "local_retention": r("Retention"),
            "remote_retention": r("Retention")
        })),
        "VmSlot": object(&["cmp_vm_id", "disks", "active"], json!({
            "cmp_vm_id": { "type": "string" },
            "disks": { "type": "array", "items": { "type": "string" } },
            "active": { "type": "boolean" }
        })),
        "Volume": { "type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,199}$",
                    "description": "A StorPool volume name (not list or status)" },
        "CreateService": object(&["cmp_vm_id", "disks", "policy"], json!({
            "id": optional("ServiceId"),
            "cmp_vm_id": { "type": "string", "minLength": 1, "maxLength": 256 },
            "disks": { "type": "array", "items": r("Volume"), "minItems": 1, "maxItems": 64, "uniqueItems": true },
            "metadata": { "type": "string", "maxLength": 65536 },
            "policy": r("Policy")
        })),
        "UpdateService": object(&[], json!({
            "policy": optional("Policy"),
            "metadata": { "type": "string", "maxLength": 65536, "nullable": true },
            "slot": optional("VmSlot")
        })),
    }));
    parts.push(json!({
        "ConflictSide": object(&["zone", "dot", "hlc", "value"], json!({
            "zone": r("ZoneId"), "dot": r("Dot"), "hlc": r("Hlc"), "value": {}
        })),
        "Conflict": object(&["service", "kind", "sides"], json!({
            "service": r("ServiceId"),
            "kind": { "type": "string", "enum": ["concurrent_write", "active_vms"] },
            "field": { "type": "string", "description": "For concurrent_write: the register" },
            "sides": { "type": "array", "items": r("ConflictSide") }
        })),
        "ConflictList": object(&["conflicts"], json!({
            "conflicts": { "type": "array", "items": r("Conflict") }
        })),
        "RpoStatus": object(&["service", "rpo_age_s", "rpo_target_s", "past_rpo", "level"], json!({
            "service": r("ServiceId"),
            "rpo_age_s": { "type": "number", "nullable": true },
            "rpo_target_s": u64_schema(),
            "past_rpo": { "type": "boolean" },
            "level": r("RpoLevel")
        })),
        "RpoLevel": { "type": "string", "enum": ["ok", "warning", "critical"] },
        "ServiceView": object(&["id", "version", "created_by", "deleted", "policy", "metadata", "slots",
                               "active_zones", "conflicts", "rp_count", "newest_recoverable_rp", "rpo", "last_error"], json!({
            "id": r("ServiceId"),
            "version": { "type": "string" },
            "created_by": { "type": "array", "items": r("ZoneId") },
            "deleted": { "type": "boolean" },
            "policy": nullable("Policy"),
            "metadata": { "type": "string" },
            "slots": { "type": "object", "additionalProperties": r("VmSlot") },
            "active_zones": { "type": "array", "items": r("ZoneId") },
            "conflicts": { "type": "array", "items": r("Conflict") },
            "rp_count": u64_schema(),
            "newest_recoverable_rp": nullable("RpId"),
            "rpo": nullable("RpoStatus"),
            "last_error": { "type": "string", "nullable": true }
        })),
        "ServiceList": object(&["services", "next_after"], json!({
            "services": { "type": "array", "items": r("ServiceView") },
            "next_after": nullable("ServiceId")
        })),
    }));
    parts.push(json!({
        "RpDisk": object(&["volume", "snapshot", "global_id"], json!({
            "volume": { "type": "string" }, "snapshot": { "type": "string" }, "global_id": { "type": "string" }
        })),
        "CopyState": object(&["state"], json!({
            "state": { "type": "string", "enum": ["pending", "transferring", "complete", "failed", "deleted"] },
            "error": { "type": "string", "description": "For failed: StorPool's error name" }
        })),
        "RpView": object(&["id", "service", "origin", "taken", "disks", "metadata", "held", "copies", "complete_in"], json!({
            "id": r("RpId"),
            "service": r("ServiceId"),
            "origin": r("ZoneId"),
            "taken": r("Hlc"),
            "disks": { "type": "array", "items": r("RpDisk") },
            "metadata": { "type": "string" },
            "held": { "type": "boolean" },
            "copies": { "type": "object", "additionalProperties": r("CopyState") },
            "complete_in": { "type": "array", "items": r("ZoneId") }
        })),
        "RpList": object(&["rps"], json!({ "rps": { "type": "array", "items": r("RpView") } })),
        "FailoverRequest": object(&[], json!({ "rp": optional("RpId") })),
        "MigrateRequest": object(&["target"], json!({ "target": r("ZoneId") })),
        "RevertRequest": object(&["rp"], json!({ "rp": r("RpId") })),
        "DeactivateRequest": object(&[], json!({ "zone": optional("ZoneId") })),
        "NoArgs": object(&[], json!({})),
        "ResolveRequest": object(&["field"], json!({
            "field": { "type": "string", "description": "policy, metadata, slots.<zone>, rps.<rp>.hold or active_vms" },
            "choose": optional("Dot"),
            "value": {},
            "keep_zone": optional("ZoneId"),
            "seen": { "type": "array", "items": r("Dot"), "nullable": true }
        })),
        "FailoverVolume": object(&["disk", "volume", "from_snapshot"], json!({
            "disk": { "type": "string" }, "volume": { "type": "string" }, "from_snapshot": { "type": "string" }
        })),
        "FailoverOutcome": object(&["service", "zone", "rp", "volumes", "metadata"], json!({
            "service": r("ServiceId"), "zone": r("ZoneId"), "rp": r("RpId"),
            "volumes": { "type": "array", "items": r("FailoverVolume") },
            "metadata": { "type": "string" }
        })),
        "MigrationStarted": object(&["service", "target", "final_rp"], json!({
            "service": r("ServiceId"), "target": r("ZoneId"), "final_rp": r("RpId")
        })),
    }));
    parts.push(json!({
        "SendMessage": object(&["to", "body"], json!({ "to": r("ZoneId"), "body": { "type": "string", "maxLength": 16384 } })),
        "Ack": object(&["by", "at"], json!({ "by": { "type": "string" }, "at": r("Hlc") })),
        "MessageView": object(&["id", "from", "to", "actor", "sent", "body", "acked"], json!({
            "id": r("MessageId"), "from": r("ZoneId"), "to": r("ZoneId"),
            "actor": { "type": "string" }, "sent": r("Hlc"), "body": { "type": "string" },
            "acked": nullable("Ack")
        })),
        "MessageList": object(&["messages"], json!({ "messages": { "type": "array", "items": r("MessageView") } })),
        "PeerStatus": object(&["zone", "connected", "rtt_ms", "their_vv", "behind_events", "ahead_events", "last_seen_ms_ago"], json!({
            "zone": r("ZoneId"),
            "connected": { "type": "boolean" },
            "rtt_ms": { "type": "number", "nullable": true },
            "their_vv": r("VersionVector"),
            "behind_events": u64_schema(),
            "ahead_events": u64_schema(),
            "last_seen_ms_ago": { "type": "integer", "minimum": 0, "nullable": true }
        })),
        "PeerList": object(&["peers"], json!({ "peers": { "type": "array", "items": r("PeerStatus") } })),
        "ZoneStatus": object(&["zone", "version", "vv", "digest", "services", "conflicts", "pending_events",
                              "engine_running", "sync_running", "peers", "rebuild"], json!({
            "zone": r("ZoneId"),
            "version": { "type": "string" },
            "vv": r("VersionVector"),
            "digest": { "type": "string" },
            "services": u64_schema(),
            "conflicts": u64_schema(),
            "pending_events": u64_schema(),
            "engine_running": { "type": "boolean" },
            "sync_running": { "type": "boolean" },
            "peers": { "type": "array", "items": r("PeerStatus") },
            "rebuild": r("RebuildView")
        })),
        "RebuildView": object(&["state", "own_seq", "signed_seq", "confirmed_by"], json!({
            "state": { "type": "string", "enum": ["rebuilding", "ready", "overridden"] },
            "own_seq": u64_schema(), "signed_seq": u64_schema(),
            "confirmed_by": { "type": "array", "items": r("ZoneId") }
        })),
        "Health": object(&["status", "zone"], json!({
            "status": { "type": "string" }, "zone": r("ZoneId")
        })),
        "FeedEvent": object(&["origin", "seq", "hlc", "actor", "op"], json!({
            "origin": r("ZoneId"), "seq": u64_schema(), "hlc": r("Hlc"),
            "actor": { "type": "string" }, "op": { "type": "string" },
            "service": r("ServiceId"), "rp": r("RpId"), "to": r("ZoneId"),
            "message": r("MessageId"), "from_peer": r("ZoneId")
        }))
    }));
    let mut all = Map::new();
    for p in parts {
        if let Value::Object(m) = p {
            all.extend(m);
        }
    }
    Value::Object(all)
}

/// The document.
pub fn document() -> Value {
    let bool_q = |name: &str, desc: &str| query_param(name, json!({ "type": "boolean" }), desc);
    let public = json!([]);
    let paths = json!({
        "/healthz": { "get": {
            "summary": "Liveness: 200 while the node can write", "tags": ["node"], "security": public,
            "responses": responses(&[(200, json_response("Healthy", r("Health")))], &[503])
        }},
        "/metrics": { "get": {
            "summary": "Prometheus metrics", "tags": ["node"], "security": public,
            "responses": { "200": { "description": "Prometheus text format",
                                    "content": { "text/plain": { "schema": { "type": "string" } } } } }
        }},
        "/v1/openapi.json": { "get": {
            "summary": "This document", "tags": ["node"], "security": public,
            "responses": { "200": { "description": "OpenAPI 3 document",
                                    "content": { "application/json": { "schema": { "type": "object" } } } } }
        }},
        "/v1/status": { "get": {
            "summary": "This zone's node: version vector, digest, counts, peers", "tags": ["node"],
            "responses": responses(&[(200, json_response("Status", r("ZoneStatus")))], &[401])
        }},
        "/v1/rebuild/override": { "post": {
            "summary": "Let a rebuilding node write without a peer's proof (operator; logged)", "tags": ["node"],
            "responses": responses(&[(200, json_response("The rebuild state", r("RebuildView")))], &[401, 403])
        }},
        "/v1/peers": { "get": {
            "summary": "Configured peers and their sync state", "tags": ["node"],
            "responses": responses(&[(200, json_response("Peers", r("PeerList")))], &[401])
        }},
        "/v1/services": {
            "get": {
                "summary": "List DR services", "tags": ["services"],
                "parameters": [
                    bool_q("in_conflict", "Only services with (true) or without (false) a conflict"),
                    bool_q("past_rpo", "Only services past (true) or within (false) their RPO"),
                    query_param("rpo", r("RpoLevel"), "Only services whose RPO level is this or worse"),
                    bool_q("deleted", "List deleted services instead of live ones"),
                    query_param("zone", r("ZoneId"), "Only services with a VM in, or recovering to, this zone"),
                    query_param("after", r("ServiceId"), "Start after this id (from next_after)"),
                    query_param("limit", json!({ "type": "integer", "minimum": 1, "maximum": 1000 }), "Page size")
                ],
                "responses": responses(&[(200, json_response("A page of services", r("ServiceList")))], &[400, 401])
            },
            "post": {
                "summary": "Protect a VM of this zone (idempotent with Idempotency-Key or id)", "tags": ["services"],
                "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": false,
                                 "description": "Repeats with the same key and body answer the same service",
                                 "schema": { "type": "string", "minLength": 1, "maxLength": 128 } }],
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": r("CreateService"),
                    "example": {
                        "cmp_vm_id": "vm-1", "disks": ["vm-1-root", "vm-1-data"], "metadata": "<vm/>",
                        "policy": { "interval_s": 300, "recovery_zone": "zone-b",
                                    "local_retention": { "keep_last": 3, "keep_for_s": 86400 },
                                    "remote_retention": { "keep_last": 3, "keep_for_s": 86400 } }
                    }
                } } },
                "responses": responses(&[
                    (201, service_response("Created")),
                    (200, service_response("Already created by the same request"))
                ], WRITE_ERRORS)
            }
        },
        "/v1/services/{service}": {
            "parameters": [service_param()],
            "get": {
                "summary": "Show a service", "tags": ["services"],
                "responses": responses(&[(200, service_response("The service"))], READ_ERRORS)
            },
            "patch": {
                "summary": "Change policy, metadata or this zone's VM slot", "tags": ["services"],
                "parameters": [if_match()],
                "requestBody": body("UpdateService", true),
                "responses": responses(&[(200, service_response("Updated"))],
                                       &[400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 503])
            },
            "delete": {
                "summary": "Delete a service (operator)", "tags": ["services"],
                "parameters": [if_match()],
                "responses": responses(&[(200, service_response("Deleted (tombstone)"))],
                                       &[400, 401, 403, 404, 410, 412, 503])
            }
        },
        "/v1/services/{service}/rps": {
            "parameters": [service_param()],
            "get": {
                "summary": "Recovery points with their copy in each zone", "tags": ["recovery points"],
                "parameters": [
                    query_param("complete_in", r("ZoneId"), "Only RPs complete in this zone"),
                    bool_q("held", "Only held (true) or not held (false) RPs")
                ],
                "responses": responses(&[(200, json_response("Recovery points, oldest first", r("RpList")))], READ_ERRORS)
            },
            "post": {
                "summary": "Take a recovery point now", "tags": ["recovery points"],
                "requestBody": body("NoArgs", false),
                "responses": responses(&[(201, json_response("Taken", r("RpView")))], ACTION_ERRORS)
            }
        },
        "/v1/services/{service}/rps/{rp}": {
            "parameters": [service_param(), rp_param()],
            "get": {
                "summary": "Show a recovery point", "tags": ["recovery points"],
                "responses": responses(&[(200, json_response("The RP", r("RpView")))], READ_ERRORS)
            }
        },
        "/v1/services/{service}/rps/{rp}/hold": {
            "parameters": [service_param(), rp_param()],
            "post": {
                "summary": "Hold an RP: retention keeps it in every zone", "tags": ["recovery points"],
                "responses": responses(&[(200, json_response("Held", r("RpView")))], WRITE_ERRORS)
            }
        },
        "/v1/services/{service}/rps/{rp}/release": {
            "parameters": [service_param(), rp_param()],
            "post": {
                "summary": "Release a hold", "tags": ["recovery points"],
                "responses": responses(&[(200, json_response("Released", r("RpView")))], WRITE_ERRORS)
            }
        },
        "/v1/services/{service}/failover": { "post": action(
            "Unplanned failover to this zone", Some("FailoverRequest"),
            json_response("Volumes and metadata for the CMP", r("FailoverOutcome"))) },
        "/v1/services/{service}/migrate": { "post": action(
            "Planned migration, first half: in the source zone, after the VM stopped", Some("MigrateRequest"),
            json_response("The final RP", r("MigrationStarted"))) },
        "/v1/services/{service}/migrate/complete": { "post": action(
            "Planned migration, second half: in the target zone", Some("NoArgs"),
            json_response("Volumes and metadata for the CMP", r("FailoverOutcome"))) },
        "/v1/services/{service}/revert": { "post": action(
            "Revert the VM's volumes here to an RP", Some("RevertRequest"),
            json_response("The reverted volumes", r("FailoverOutcome"))) },
        "/v1/services/{service}/test-failover": { "post": action(
            "Test failover: clones of an RP here, no activation", Some("FailoverRequest"),
            json_response("The test volumes", r("FailoverOutcome"))) },
        "/v1/services/{service}/test-failover/cleanup": { "post": action(
            "Remove the volumes of a test failover", Some("NoArgs"),
            json_response("The service", r("ServiceView"))) },
        "/v1/services/{service}/deactivate": { "post": {
            "summary": "Mark a zone's VM inactive (operator); ends an active-VM conflict", "tags": ["conflicts"],
            "parameters": [service_param()],
            "requestBody": body("DeactivateRequest", false),
            "responses": responses(&[(200, service_response("The service"))], WRITE_ERRORS)
        }},
        "/v1/services/{service}/resolve": { "post": {
            "summary": "Resolve a conflict with a write that has seen every side (operator)", "tags": ["conflicts"],
            "parameters": [service_param()],
            "requestBody": body("ResolveRequest", true),
            "responses": responses(&[(200, service_response("The service"))],
                                   &[400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 503])
        }},
        "/v1/conflicts": { "get": {
            "summary": "Every conflict visible in this zone, with all sides", "tags": ["conflicts"],
            "parameters": [query_param("service", r("ServiceId"), "Only this service's")],
            "responses": responses(&[(200, json_response("Conflicts", r("ConflictList")))], &[400, 401])
        }},
        "/v1/messages": {
            "get": {
                "summary": "Control messages of this zone", "tags": ["messages"],
                "parameters": [
                    query_param("direction", json!({ "type": "string", "enum": ["inbox", "outbox", "all"] }),
                                "inbox (to this zone, default), outbox or all"),
                    bool_q("acked", "Only acknowledged (true) or waiting (false) messages"),
                    query_param("limit", json!({ "type": "integer", "minimum": 1, "maximum": 1000 }), "Newest this many")
                ],
                "responses": responses(&[(200, json_response("Messages, oldest first", r("MessageList")))], &[400, 401])
            },
            "post": {
                "summary": "Send a message to another zone's CMP", "tags": ["messages"],
                "requestBody": { "required": true, "content": { "application/json": {
                    "schema": r("SendMessage"),
                    "example": { "to": "zone-b", "body": "stop vm-1: it failed over to zone-b" }
                } } },
                "responses": responses(&[(201, json_response("Sent", r("MessageView")))], WRITE_ERRORS)
            }
        },
        "/v1/messages/{message}": {
            "parameters": [path_param("message", "MessageId", "The message id")],
            "get": {
                "summary": "Show a message", "tags": ["messages"],
                "responses": responses(&[(200, json_response("The message", r("MessageView")))], READ_ERRORS)
            }
        },
        "/v1/messages/{message}/ack": {
            "parameters": [path_param("message", "MessageId", "The message id")],
            "post": {
                "summary": "Acknowledge a message addressed to this zone", "tags": ["messages"],
                "responses": responses(&[(200, json_response("Acknowledged", r("MessageView")))], WRITE_ERRORS)
            }
        },
        "/v1/events": { "get": {
            "summary": "Change feed (server-sent events): `event` with a FeedEvent, `resync` after a gap",
            "tags": ["feed"],
            "parameters": [query_param("service", r("ServiceId"), "Only this service's events")],
            "responses": responses(&[(200, json!({ "description": "text/event-stream of FeedEvent JSON",
                "content": { "text/event-stream": { "schema": { "type": "string" } } } }))], &[400, 401, 503])
        }}
    });
    let mut paths = paths;
    name_operations_and_link(&mut paths);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "drengine API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Disaster recovery for one zone: DR services, recovery points, failover, conflicts, CMP messages. Errors are {\"error\": {\"code\", \"message\", \"field\"}}."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "A token from [api] tokens: role read (GET only), cmp or operator" } },
            "schemas": schemas()
        }
    })
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

pub async fn handler() -> Json<Value> {
    Json(document())
}
