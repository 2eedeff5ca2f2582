//! What the node itself does with control messages (`replica` holds them,
//! `api::messages` sends, lists and answers them):
//!
//! - delivers: a message to this zone that is here and not expired gets
//!   this zone's `Deliver` (the sender then sees `delivered`);
//! - acts on `drengine.request-rp`: takes an on-demand RP of the message's
//!   service (the engine refuses if the VM is not active here) and answers
//!   with its id, or with why not; a transient failure is tried again;
//! - prunes: a message this zone sent that is done (acked by every
//!   addressee, or expired) and older than `[messages] retention_s` is
//!   forgotten in every zone (`PruneMessages`), so state stops growing.
//!
//! `drengine.request-deactivate` needs the CMP's confirmation: the answer
//! itself (`replica::Command::Answer`) marks the VM inactive. Every other
//! kind is the CMP's. The worker wakes on every commit and every
//! `[messages] tick_ms`; each round writes a bounded number of events.

use super::config::MessagesConfig;
use crate::engine::{Engine, EngineError};
use crate::model::message::REQUEST_RP_KIND;
use crate::model::{MessageId, ServiceId, ZoneId};
use crate::replica::{Command, MessageState, Op, MAX_MESSAGES_PER_PRUNE};
use crate::store::{wall_ms, Db};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The node's actor name on the events it writes.
const NODE: &str = "node";
/// Most deliveries written in one round.
const MAX_DELIVERIES_PER_ROUND: usize = 256;
/// Most RP requests acted on in one round.
const MAX_REQUESTS_PER_ROUND: usize = 16;

/// The running worker.
pub struct MessageWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MessageWorker {
    pub fn start(db: Db, engine: Engine, config: MessagesConfig) -> MessageWorker {
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut commits = db.subscribe();
            let tick = Duration::from_millis(config.tick_ms);
            loop {
                round(&db, &engine, &config).await;
                tokio::select! {
                    _ = stop_rx.changed() => return,
                    _ = commits.recv() => {}
                    _ = tokio::time::sleep(tick) => {}
                }
            }
        });
        MessageWorker { stop, task }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What one round found to do.
#[derive(Default)]
struct Work {
    deliver: Vec<MessageId>,
    request_rp: Vec<(MessageId, Option<ServiceId>)>,
    prune: Vec<MessageId>,
}

fn find_work(db: &Db, zone: &ZoneId, config: &MessagesConfig, now: u64) -> Work {
    let retention_ms = config.retention_s.saturating_mul(1000);
    db.read(|r| {
        let mut w = Work::default();
        for m in r.state().messages.values() {
            if m.is_for(zone) {
                match m.state_for(zone, now) {
                    MessageState::Sent if w.deliver.len() < MAX_DELIVERIES_PER_ROUND => {
                        w.deliver.push(m.id.clone())
                    }
                    MessageState::Delivered
                        if m.kind == REQUEST_RP_KIND
                            && w.request_rp.len() < MAX_REQUESTS_PER_ROUND =>
                    {
                        w.request_rp.push((m.id.clone(), m.service.clone()))
                    }
                    _ => {}
                }
            }
            if &m.from == zone && w.prune.len() < MAX_MESSAGES_PER_PRUNE {
                if let Some(done) = m.done_at_ms(now) {
                    if done.saturating_add(retention_ms) < now {
                        w.prune.push(m.id.clone());
                    }
                }
            }
        }
        w
    })
}

async fn round(db: &Db, engine: &Engine, config: &MessagesConfig) {
    let zone = db.zone();
    let w = find_work(db, &zone, config, wall_ms());
    if !w.deliver.is_empty() {
        let ops = w
            .deliver
            .iter()
            .map(|m| Op::Deliver { message: m.clone() })
            .collect();
        match db.execute(Command::Ops(ops), NODE).await {
            Ok(_) => tracing::debug!(zone = %zone, n = w.deliver.len(), "messages delivered"),
            Err(e) => {
                tracing::warn!(zone = %zone, error = %e, "delivering messages failed; next round tries again")
            }
        }
    }
    for (id, service) in w.request_rp {
        let result = match &service {
            None => Some(serde_json::json!({ "error": "the request names no service" })),
            Some(s) => match engine.take_rp(s, NODE).await {
                Ok(rp) => Some(serde_json::json!({ "rp": rp })),
                Err(e) if transient(&e) => {
                    tracing::info!(zone = %zone, msg_id = %id, service_id = %s, error = %e, "RP request: transient failure, tried again");
                    None
                }
                Err(e) => Some(serde_json::json!({ "error": e.to_string() })),
            },
        };
        if let Some(result) = result {
            let cmd = Command::Answer {
                message: id.clone(),
                result,
            };
            if let Err(e) = db.execute(cmd, NODE).await {
                tracing::warn!(zone = %zone, msg_id = %id, error = %e, "answering an RP request failed");
            } else {
                tracing::info!(zone = %zone, msg_id = %id, "RP request answered");
            }
        }
    }
    if !w.prune.is_empty() {
        let n = w.prune.len();
        let op = Op::PruneMessages { messages: w.prune };
        match db.execute(Command::Ops(vec![op]), NODE).await {
            Ok(_) => tracing::info!(zone = %zone, n, "done messages pruned"),
            Err(e) => tracing::warn!(zone = %zone, error = %e, "pruning messages failed"),
        }
    }
}

/// Worth another try later rather than an answer now.
fn transient(e: &EngineError) -> bool {
    match e {
        EngineError::StorPool { transient, .. } => *transient,
        EngineError::Storage(_) | EngineError::Rebuilding => true,
        _ => false,
    }
}
