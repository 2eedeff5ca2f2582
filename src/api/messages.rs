//! Control messages between zones: send (to one zone or `*`), list with
//! filters, show, answer. Carried as signed events over sync, so a message
//! waits out partitions; its states (`sent`, `delivered`, `acked`,
//! `expired`) are the same in every zone that has its events. The kinds
//! the node acts on itself are handled by `node::messages`.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::types::{
    rfc3339_ms, AckMessage, MessageList, MessageRecipient, MessageStep, MessageView, SendMessage,
};
use super::ApiState;
use super::Role;
use crate::model::message::{DEFAULT_MESSAGE_TTL_MS, TEXT_KIND};
use crate::model::{MessageId, ServiceId, ZoneId};
use crate::replica::{message_id, Command, Message, MessageState, Op, Step};
use crate::store::wall_ms;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// Most messages in one answer.
pub const MAX_MESSAGES_PER_PAGE: usize = 1000;

fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

fn step_view(s: &Step) -> MessageStep {
    MessageStep {
        at: rfc3339_ms(s.at.wall_ms),
        by: s.by.clone(),
    }
}

pub fn message_view(m: &Message, now_ms: u64) -> MessageView {
    MessageView {
        id: m.id.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        broadcast: m.broadcast,
        kind: m.kind.clone(),
        service: m.service.clone(),
        actor: m.actor.clone(),
        sent_at: rfc3339_ms(m.sent.wall_ms),
        expires_at: rfc3339_ms(m.deadline_ms),
        state: m.state(now_ms).as_str().into(),
        body: json_of(&m.body),
        recipients: m
            .to
            .iter()
            .map(|z| {
                let answer = m.answers.get(z);
                MessageRecipient {
                    zone: z.clone(),
                    state: m.state_for(z, now_ms).as_str().into(),
                    delivered: m.delivered.get(z).map(step_view),
                    acked: answer.map(|a| step_view(&a.step)),
                    result: answer.map(|a| json_of(&a.result)).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// Where `m` stands as `zone` sees its part: its own state if it is an
/// addressee, the message's as a whole otherwise.
fn state_seen_from(m: &Message, zone: &ZoneId, now_ms: u64) -> MessageState {
    if m.is_for(zone) {
        m.state_for(zone, now_ms)
    } else {
        m.state(now_ms)
    }
}

fn read_message(state: &ApiState, id: &MessageId) -> ApiResult<MessageView> {
    let now = wall_ms();
    state
        .db()
        .read(|r| r.state().messages.get(id).map(|m| message_view(m, now)))
        .ok_or_else(|| ApiError::not_found("message", format!("message {id} does not exist")))
}

/// Filters: `direction` (`inbox`, to this zone, the default unless `to` or
/// `from` is given; `outbox`; `all`), `to`, `from`, `kind`, `service`,
/// `state` (this zone's part of a message addressed to it, the whole
/// message's otherwise: the inbox is `?state=delivered`), `acked`.
#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    summary = "Control messages of this zone",
    params(
        ("direction" = inline(Option<super::openapi::Direction>), Query, description = "inbox (to this zone; the default unless to or from is given), outbox or all"),
        ("to" = Option<ZoneId>, Query, description = "Only messages to this zone"),
        ("from" = Option<ZoneId>, Query, description = "Only messages from this zone"),
        ("kind" = Option<String>, Query, description = "Only this kind"),
        ("service" = Option<ServiceId>, Query, description = "Only messages about this service"),
        ("state" = inline(Option<super::openapi::MessageStateParam>), Query, description = "sent, delivered, acked or expired (this zone's part of a message to it)"),
        ("acked" = Option<bool>, Query, description = "Only acknowledged (true) or not yet acknowledged (false) messages"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Newest this many"),
    ),
    responses(
        (status = 200, description = "Messages, oldest first", body = MessageList),
        super::openapi::ListErrors,
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _c: Caller,
    mut q: Params,
) -> ApiResult<Json<MessageList>> {
    let to = q.take_parsed("to", |s| s.parse::<ZoneId>())?;
    let from = q.take_parsed("from", |s| s.parse::<ZoneId>())?;
    let default_direction = if to.is_some() || from.is_some() {
        "all"
    } else {
        "inbox"
    };
    let direction = q
        .take("direction")
        .unwrap_or_else(|| default_direction.into());
    if !["inbox", "outbox", "all"].contains(&direction.as_str()) {
        return Err(ApiError::bad_request(
            "direction",
            "one of inbox, outbox, all",
        ));
    }
    let kind = q.take("kind");
    let service = q.take_parsed("service", |s| s.parse::<ServiceId>())?;
    let wanted = q.take_parsed("state", |s| match s {
        "sent" => Ok(MessageState::Sent),
        "delivered" => Ok(MessageState::Delivered),
        "acked" => Ok(MessageState::Acked),
        "expired" => Ok(MessageState::Expired),
        _ => Err("one of sent, delivered, acked, expired"),
    })?;
    let acked = q.take_bool("acked")?;
    let limit = q
        .take_limit("limit", MAX_MESSAGES_PER_PAGE)?
        .unwrap_or(MAX_MESSAGES_PER_PAGE);
    q.finish()?;
    let zone = state.zone().clone();
    let now = wall_ms();
    let mut messages: Vec<MessageView> = state.db().read(|r| {
        r.state()
            .messages
            .values()
            .filter(|m| match direction.as_str() {
                "inbox" => m.is_for(&zone),
                "outbox" => m.from == zone,
                _ => true,
            })
            .filter(|m| to.as_ref().is_none_or(|z| m.is_for(z)))
            .filter(|m| from.as_ref().is_none_or(|z| &m.from == z))
            .filter(|m| kind.as_ref().is_none_or(|k| &m.kind == k))
            .filter(|m| service.is_none() || m.service == service)
            .filter(|m| {
                let seen = state_seen_from(m, &zone, now);
                wanted.is_none_or(|w| seen == w)
                    && acked.is_none_or(|a| (seen == MessageState::Acked) == a)
            })
            .map(|m| message_view(m, now))
            .collect()
    });
    // Oldest first; keep the newest `limit`.
    messages.sort_by(|a, b| (&a.sent_at, &a.id).cmp(&(&b.sent_at, &b.id)));
    let skip = messages.len().saturating_sub(limit);
    messages.drain(..skip);
    Ok(Json(MessageList { messages }))
}

#[utoipa::path(
    get,
    path = "/v1/messages/{message}",
    tag = "messages",
    summary = "Show a message and where it stands in every addressee",
    params(
        ("message" = MessageId, Path, description = "The message id"),
    ),
    responses(
        (status = 200, description = "The message", body = MessageView),
        super::openapi::ReadErrors,
    )
)]
pub async fn show(
    State(state): State<ApiState>,
    _c: Caller,
    p: PathParams,
) -> ApiResult<Json<MessageView>> {
    let id: MessageId = p.id("message")?;
    Ok(Json(read_message(&state, &id)?))
}

#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    summary = "Send a message to another zone (or every other zone, to = *)",
    request_body(content = SendMessage, example = json!({ "to": "zone-a", "kind": "cmp.keep-stopped", "service": "svc-1", "body": { "reason": "failed over to zone-b" } })),
    responses(
        (status = 201, description = "Sent: its id and state, at once, even while the addressee is unreachable", body = MessageView),
        super::openapi::WriteErrors,
    )
)]
pub async fn send(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(req): JsonBody<SendMessage>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    caller.require(Role::Cmp)?;
    let here = state.zone().clone();
    let to = req.to.clone();
    let op = send_op(req, || {
        state.db().read(|r| {
            r.directory()
                .zones()
                .filter(|z| **z != here)
                .cloned()
                .collect()
        })
    })?;
    let ev = state.db().write(op, &caller.name).await?;
    let id = message_id(&ev.dot());
    let view = read_message(&state, &id)?;
    tracing::info!(zone = %here, msg_id = %id, to = %to, kind = %view.kind, actor = %caller.name, "message sent");
    Ok((StatusCode::CREATED, Json(view)))
}

/// The write a send request asks for: one addressee, or every zone
/// `others` names for `*`; the default kind and ttl filled in, the ttl
/// checked before it is multiplied. The size and kind rules are the
/// replicated ones the writer applies. Pure, so the fuzz target runs it.
pub fn send_op(req: SendMessage, others: impl FnOnce() -> Vec<ZoneId>) -> ApiResult<Op> {
    let (to, broadcast) = if req.to == "*" {
        (others(), true)
    } else {
        let z: ZoneId = req
            .to
            .parse()
            .map_err(|e| ApiError::invalid("to", format!("a zone id or *: {e}")))?;
        (vec![z], false)
    };
    let ttl_ms = match req.ttl_s {
        None => DEFAULT_MESSAGE_TTL_MS,
        Some(s) => s
            .checked_mul(1000)
            .ok_or_else(|| ApiError::invalid("ttl_s", "too large"))?,
    };
    Ok(Op::Send {
        to,
        broadcast,
        kind: req.kind.unwrap_or_else(|| TEXT_KIND.into()),
        service: req.service,
        body: req.body.to_string(),
        ttl_ms,
    })
}

#[utoipa::path(
    post,
    path = "/v1/messages/{message}/ack",
    tag = "messages",
    summary = "Answer a message addressed to this zone",
    params(
        ("message" = MessageId, Path, description = "The message id"),
    ),
    request_body(content = AckMessage, example = json!({ "result": { "confirm": true } })),
    responses(
        (status = 200, description = "Acknowledged", body = MessageView),
        super::openapi::WriteErrors,
    )
)]
pub async fn ack(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
    JsonBody(req): JsonBody<AckMessage>,
) -> ApiResult<Json<MessageView>> {
    caller.require(Role::Cmp)?;
    let id: MessageId = p.id("message")?;
    let cmd = Command::Answer {
        message: id.clone(),
        result: req.result,
    };
    state.db().execute(cmd, &caller.name).await?;
    tracing::info!(zone = %state.zone(), msg_id = %id, actor = %caller.name, "message acknowledged");
    Ok(Json(read_message(&state, &id)?))
}
