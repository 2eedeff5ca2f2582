//! The change feed: every event this node commits (its own writes and those
//! received from peers), as server-sent events, so a CMP need not poll.
//!
//! Each SSE event is named `event` with a `FeedEvent` JSON as data and the
//! event's dot as id. A client that falls more than the commit buffer behind
//! gets one `resync` event (`Resync` JSON) and should re-read what it
//! follows; the feed then goes on from the present.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::Params;
use super::types::{FeedEvent, Resync};
use super::ApiState;
use crate::model::ServiceId;
use crate::replica::{message_id, Op, SignedEvent};
use crate::store::Commit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often an idle feed sends a comment, so proxies keep it open.
const KEEPALIVE_MS: u64 = super::config::FEED_KEEPALIVE_MS;

/// The feed's view of one event.
pub fn feed_event(ev: &SignedEvent, from_peer: Option<&crate::model::ZoneId>) -> FeedEvent {
    let e = &ev.event;
    let (rp, to, message) = match &e.op {
        Op::CreateRp { rp, .. } | Op::SetCopy { rp, .. } | Op::SetHold { rp, .. } => {
            (Some(rp.clone()), None, None)
        }
        Op::SendMessage { to, .. } => (None, Some(to.clone()), Some(message_id(&e.dot()))),
        Op::AckMessage { message } | Op::Deliver { message } | Op::Answer { message, .. } => {
            (None, None, Some(message.clone()))
        }
        Op::Send { to, .. } => {
            let one = if to.len() == 1 {
                to.first().cloned()
            } else {
                None
            };
            (None, one, Some(message_id(&e.dot())))
        }
        _ => (None, None, None),
    };
    FeedEvent {
        origin: e.origin.clone(),
        seq: e.seq,
        hlc: e.hlc,
        actor: e.actor.clone(),
        op: e.op.kind().to_string(),
        service: e.op.service().cloned(),
        rp,
        to,
        message,
        from_peer: from_peer.cloned(),
    }
}

fn sse_events(commit: &Commit, service: Option<&ServiceId>) -> Vec<Result<Event, Infallible>> {
    commit
        .events
        .iter()
        .filter(|(ev, _)| service.is_none_or(|s| ev.event.op.service() == Some(s)))
        .filter_map(|(ev, from)| {
            let fe = feed_event(ev, from.as_ref());
            Event::default()
                .event("event")
                .id(format!("{}:{}", fe.origin, fe.seq))
                .json_data(&fe)
                .ok()
        })
        .map(Ok)
        .collect()
}

/// `GET /v1/events[?service=ID]`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "feed",
    summary = "Change feed (server-sent events): `event` with a FeedEvent, `resync` after a gap",
    params(
        ("service" = Option<ServiceId>, Query, description = "Only this service's events"),
    ),
    responses(
        (status = 200, description = "text/event-stream of FeedEvent JSON", body = String, content_type = "text/event-stream"),
        super::openapi::FeedErrors,
    )
)]
pub async fn events(
    State(state): State<ApiState>,
    _c: Caller,
    mut q: Params,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let service = q.take_parsed("service", |s| s.parse::<ServiceId>())?;
    q.finish()?;
    let permit = state
        .0
        .feed_clients
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_feed_clients",
                "the change feed has as many clients as api.max_feed_clients allows",
            )
        })?;
    let rx = state.db().subscribe();
    let shutdown = state.0.shutdown.clone();
    let start = stream::iter(vec![Ok(Event::default().comment("drengine change feed"))]);
    let feed = stream::unfold(
        (rx, shutdown, service, permit),
        |(mut rx, mut shutdown, service, permit)| async move {
            let batch = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return None,
                r = rx.recv() => match r {
                    Ok(commit) => sse_events(&Arc::clone(&commit), service.as_ref()),
                    Err(RecvError::Lagged(n)) => {
                        let data = Resync { skipped_commits: n };
                        vec![Ok(Event::default().event("resync").json_data(&data).unwrap_or_default())]
                    }
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((stream::iter(batch), (rx, shutdown, service, permit)))
        },
    )
    .flatten();
    Ok(Sse::new(start.chain(feed))
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(KEEPALIVE_MS))))
}
