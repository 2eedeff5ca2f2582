//! Control messages between CMPs: send to another zone's CMP (carried as a
//! signed event over sync, waiting out partitions), list, acknowledge.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, Params, PathParams};
use super::types::{Ack, MessageList, MessageView, SendMessage};
use super::ApiState;
use super::Role;
use crate::model::{MessageId, MAX_MESSAGE_BYTES};
use crate::replica::{message_id, Message, Op};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// Most messages in one answer.
pub const MAX_MESSAGES_PER_PAGE: usize = 1000;

pub fn message_view(m: &Message) -> MessageView {
    MessageView {
        id: m.id.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        actor: m.actor.clone(),
        sent: m.sent,
        body: m.body.clone(),
        acked: m.acked.as_ref().map(|a| Ack {
            by: a.value.clone(),
            at: a.hlc,
        }),
    }
}

fn read_message(state: &ApiState, id: &MessageId) -> ApiResult<MessageView> {
    state
        .db()
        .read(|r| r.state().messages.get(id).map(message_view))
        .ok_or_else(|| ApiError::not_found("message", format!("message {id} does not exist")))
}

/// `direction`: `inbox` (to this zone, the default), `outbox` (from this
/// zone) or `all`; `acked=false` for the ones still waiting.
#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    summary = "Control messages of this zone",
    params(
        ("direction" = inline(Option<super::openapi::Direction>), Query, description = "inbox (to this zone, default), outbox or all"),
        ("acked" = Option<bool>, Query, description = "Only acknowledged (true) or waiting (false) messages"),
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
    let direction = q.take("direction").unwrap_or_else(|| "inbox".into());
    if !["inbox", "outbox", "all"].contains(&direction.as_str()) {
        return Err(ApiError::bad_request(
            "direction",
            "one of inbox, outbox, all",
        ));
    }
    let acked = q.take_bool("acked")?;
    let limit = q
        .take_limit("limit", MAX_MESSAGES_PER_PAGE)?
        .unwrap_or(MAX_MESSAGES_PER_PAGE);
    q.finish()?;
    let zone = state.zone().clone();
    let mut messages: Vec<MessageView> = state.db().read(|r| {
        r.state()
            .messages
            .values()
            .filter(|m| match direction.as_str() {
                "inbox" => m.to == zone,
                "outbox" => m.from == zone,
                _ => true,
            })
            .filter(|m| acked.is_none_or(|a| m.acked.is_some() == a))
            .map(message_view)
            .collect()
    });
    // Newest last; keep the newest `limit`.
    messages.sort_by(|a, b| (a.sent, &a.id).cmp(&(b.sent, &b.id)));
    let skip = messages.len().saturating_sub(limit);
    messages.drain(..skip);
    Ok(Json(MessageList { messages }))
}

#[utoipa::path(
    get,
    path = "/v1/messages/{message}",
    tag = "messages",
    summary = "Show a message",
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
    summary = "Send a message to another zone's CMP",
    request_body(content = SendMessage, example = json!({ "to": "zone-b", "body": "stop vm-1: it failed over to zone-b" })),
    responses(
        (status = 201, description = "Sent", body = MessageView),
        super::openapi::WriteErrors,
    )
)]
pub async fn send(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(req): JsonBody<SendMessage>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    caller.require(Role::Cmp)?;
    if req.body.len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::invalid(
            "body",
            format!("longer than {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    if &req.to == state.zone() {
        return Err(ApiError::invalid(
            "to",
            "a message goes to another zone's CMP",
        ));
    }
    let ev = state
        .db()
        .write(
            Op::SendMessage {
                to: req.to.clone(),
                body: req.body,
            },
            &caller.name,
        )
        .await?;
    let id = message_id(&ev.dot());
    tracing::info!(zone = %state.zone(), msg_id = %id, to = %req.to, actor = %caller.name, "message sent");
    Ok((StatusCode::CREATED, Json(read_message(&state, &id)?)))
}

#[utoipa::path(
    post,
    path = "/v1/messages/{message}/ack",
    tag = "messages",
    summary = "Acknowledge a message addressed to this zone",
    params(
        ("message" = MessageId, Path, description = "The message id"),
    ),
    responses(
        (status = 200, description = "Acknowledged", body = MessageView),
        super::openapi::WriteErrors,
    )
)]
pub async fn ack(
    State(state): State<ApiState>,
    caller: Caller,
    p: PathParams,
) -> ApiResult<Json<MessageView>> {
    caller.require(Role::Cmp)?;
    let id: MessageId = p.id("message")?;
    let m = read_message(&state, &id)?;
    if &m.to != state.zone() {
        return Err(ApiError::conflict(
            "not_addressee",
            format!("message {id} is for zone {}; acknowledge it there", m.to),
        ));
    }
    if m.acked.is_some() {
        return Ok(Json(m));
    }
    state
        .db()
        .write(
            Op::AckMessage {
                message: id.clone(),
            },
            &caller.name,
        )
        .await?;
    tracing::info!(zone = %state.zone(), msg_id = %id, actor = %caller.name, "message acknowledged");
    Ok(Json(read_message(&state, &id)?))
}
