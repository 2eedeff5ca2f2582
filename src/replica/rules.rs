//! Who may write what. The one place the ownership rules live: the local
//! write path asks here before it signs, and every node asks here before it
//! applies a received event, so all nodes accept and reject alike.
//!
//! Every check depends only on the event and on events in its causal past
//! (which every node has applied before it), never on concurrent events:
//! that is what keeps the verdict equal on every node.

use super::event::{MAX_MESSAGES_PER_PRUNE, MAX_RPS_PER_PURGE};
use super::state::message_dot;
use super::{Directory, Event, Op, State};
use crate::model::message::{check_kind, check_ttl_ms};
use crate::model::MessageId;
use crate::model::{
    names, validate_volume_name, RpDisk, RpId, ServiceId, MAX_ACTOR_BYTES, MAX_DISKS_PER_VM,
    MAX_MESSAGE_BYTES, MAX_METADATA_BYTES,
};
use std::collections::BTreeSet;

/// Why an authentic event is refused. It still counts as delivered (the
/// origin's seq moves on), but it changes no field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("service {0} was not seen by the writer")]
    UnknownService(String),
    #[error("message {0} was not seen by the writer")]
    UnknownMessage(String),
    #[error("zone {writer} may not write {what}")]
    NotOwner { writer: String, what: String },
    #[error("{0} already exists")]
    Exists(String),
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("message {0} expired before this answer")]
    Expired(String),
}

/// Decides whether `ev` may change `state`.
pub fn authorize(state: &State, directory: &Directory, ev: &Event) -> Result<(), Rejected> {
    if ev.actor.len() > MAX_ACTOR_BYTES {
        return Err(Rejected::Invalid("actor too long".into()));
    }
    let seen_service = |id: &crate::model::ServiceId| {
        state
            .services
            .get(id)
            .filter(|s| s.seen_by(&ev.deps))
            .ok_or_else(|| Rejected::UnknownService(id.to_string()))
    };
    match &ev.op {
        Op::CreateService {
            policy,
            metadata,
            slot,
            ..
        } => {
            check_metadata(metadata)?;
            slot.validate()
                .map_err(|e| Rejected::Invalid(e.to_string()))?;
            if !directory.contains(&policy.recovery_zone) || policy.interval_s == 0 {
                return Err(Rejected::Invalid("policy".into()));
            }
            Ok(())
        }
        Op::SetPolicy { service, policy } => {
            seen_service(service)?;
            if !directory.contains(&policy.recovery_zone) || policy.interval_s == 0 {
                return Err(Rejected::Invalid("policy".into()));
            }
            Ok(())
        }
        Op::SetMetadata { service, metadata } => {
            seen_service(service)?;
            check_metadata(metadata)
        }
        Op::SetSlot {
            service,
            zone,
            slot,
        } => {
            seen_service(service)?;
            if !directory.contains(zone) {
                return Err(Rejected::Invalid(format!("unknown zone {zone}")));
            }
            if let Some(slot) = slot {
                slot.validate()
                    .map_err(|e| Rejected::Invalid(e.to_string()))?;
            }
            Ok(())
        }
        Op::DeleteService { service } => seen_service(service).map(|_| ()),
        Op::CreateRp {
            service,
            rp,
            disks,
            metadata,
            ..
        } => {
            let s = seen_service(service)?;
            if !rp.is_owned_by(&ev.origin) {
                return Err(Rejected::NotOwner {
                    writer: ev.origin.to_string(),
                    what: format!("recovery point {rp}"),
                });
            }
            // The origin's own events are totally ordered, so an earlier RP
            // with this id is in the causal past on every node.
            if s.rps.contains_key(rp) {
                return Err(Rejected::Exists(format!("recovery point {rp}")));
            }
            check_rp_disks(service, rp, disks)?;
            check_metadata(metadata)
        }
        // Whether the RP is still there may depend on a concurrent purge,
        // so it is not part of the verdict: `State::apply` writes a copy
        // state or hold only to an RP it has whose creation the writer saw.
        Op::SetCopy { service, .. } | Op::SetHold { service, .. } => {
            seen_service(service).map(|_| ())
        }
        Op::PurgeRps { service, rps } => {
            seen_service(service)?;
            if rps.is_empty() || rps.len() > MAX_RPS_PER_PURGE {
                return Err(Rejected::Invalid("purge list".into()));
            }
            match rps.iter().find(|rp| !rp.is_owned_by(&ev.origin)) {
                Some(rp) => Err(Rejected::NotOwner {
                    writer: ev.origin.to_string(),
                    what: format!("recovery point {rp}"),
                }),
                None => Ok(()),
            }
        }
        Op::SendMessage { to, body } => {
            if !directory.contains(to) {
                return Err(Rejected::Invalid(format!("unknown zone {to}")));
            }
            if body.len() > MAX_MESSAGE_BYTES {
                return Err(Rejected::Invalid("message body too long".into()));
            }
            Ok(())
        }
        Op::Record {
            service,
            action,
            summary,
            ..
        } => {
            // The tombstone of a service deleted in the same batch stays
            // in the state, so a record of the deletion passes this too.
            seen_service(service)?;
            super::audit::check_record(action, summary)
                .map_err(|e| Rejected::Invalid(e.to_string()))
        }
        Op::Send {
            to,
            kind,
            body,
            ttl_ms,
            ..
        } => {
            if to.is_empty() || to.len() > directory.len() {
                return Err(Rejected::Invalid("message addressees".into()));
            }
            let distinct: BTreeSet<_> = to.iter().collect();
            if distinct.len() != to.len()
                || to.iter().any(|z| *z == ev.origin || !directory.contains(z))
            {
                return Err(Rejected::Invalid("message addressees".into()));
            }
            check_kind(kind).map_err(|e| Rejected::Invalid(e.to_string()))?;
            check_ttl_ms(*ttl_ms).map_err(|e| Rejected::Invalid(e.to_string()))?;
            check_json(body, "message body")
        }
        Op::Deliver { message } => seen_message(state, ev, message, None),
        Op::Answer { message, result } => {
            check_json(result, "answer")?;
            seen_message(state, ev, message, Some(true))
        }
        Op::PruneMessages { messages } => {
            if messages.is_empty() || messages.len() > MAX_MESSAGES_PER_PRUNE {
                return Err(Rejected::Invalid("messages to prune".into()));
            }
            for id in messages {
                match message_dot(id) {
                    Some(d) if d.origin == ev.origin && ev.deps.covers(&d) => {}
                    _ => {
                        return Err(Rejected::NotOwner {
                            writer: ev.origin.to_string(),
                            what: format!("the pruning of message {id}"),
                        })
                    }
                }
            }
            Ok(())
        }
        // The first format's acknowledgement: no deadline was kept then.
        Op::AckMessage { message } => seen_message(state, ev, message, Some(false)),
        Op::SetPaused { service, pause } => {
            seen_service(service)?;
            match pause {
                Some(p) => p.validate().map_err(|e| Rejected::Invalid(e.to_string())),
                None => Ok(()),
            }
        }
    }
}

/// An RP event is a claim about StorPool objects: every zone that copies,
/// deletes, reverts to or clones the RP acts on the objects its disks name.
/// So its disks must name only what the engine makes for this RP: volume
/// names StorPool accepts (each once), snapshots under the deterministic
/// name of this service, RP and disk index, and well-formed globalIds, each
/// once. (Whether a globalId is really the origin's cannot be told from the
/// event: the zone → StorPool location mapping is local configuration. The
/// engine checks the objects themselves before it acts on them.)
fn check_rp_disks(service: &ServiceId, rp: &RpId, disks: &[RpDisk]) -> Result<(), Rejected> {
    if disks.is_empty() || disks.len() > MAX_DISKS_PER_VM {
        return Err(Rejected::Invalid("recovery point disks".into()));
    }
    let mut gids = BTreeSet::new();
    let mut volumes = BTreeSet::new();
    for (i, d) in disks.iter().enumerate() {
        validate_volume_name(&d.volume)
            .map_err(|e| Rejected::Invalid(format!("recovery point disk {i}: {e}")))?;
        if !volumes.insert(d.volume.as_str()) {
            return Err(Rejected::Invalid(format!(
                "recovery point disk {i}: volume {} listed twice",
                d.volume
            )));
        }
        if d.snapshot != names::rp_snapshot_name(service, rp, i) {
            return Err(Rejected::Invalid(format!(
                "recovery point disk {i}: snapshot {:?} is not the RP's own name",
                d.snapshot
            )));
        }
        if d.global_id.len() > names::MAX_GLOBAL_ID_CHARS || !names::is_global_id(&d.global_id) {
            return Err(Rejected::Invalid(format!(
                "recovery point disk {i}: {:?} is not a StorPool globalId",
                d.global_id
            )));
        }
        if !gids.insert(d.global_id.as_str()) {
            return Err(Rejected::Invalid(format!(
                "recovery point disk {i}: globalId {} listed twice",
                d.global_id
            )));
        }
    }
    Ok(())
}

fn check_metadata(metadata: &str) -> Result<(), Rejected> {
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(Rejected::Invalid("metadata too long".into()));
    }
    Ok(())
}

/// A delivery (`answer` None) or answer of message `id` by the event's
/// origin: the writer saw the message, and the origin is an addressee; an
/// answer comes once per zone and (`Some(true)`) not after the deadline. A message the writer
/// saw that is gone here was pruned (by a concurrent event): the write
/// changes nothing, so it is taken alike everywhere.
fn seen_message(
    state: &State,
    ev: &Event,
    id: &MessageId,
    answer: Option<bool>,
) -> Result<(), Rejected> {
    let unknown = || Rejected::UnknownMessage(id.to_string());
    let dot = message_dot(id).ok_or_else(unknown)?;
    if !ev.deps.covers(&dot) {
        return Err(unknown());
    }
    let Some(m) = state.messages.get(id) else {
        return Ok(());
    };
    if !m.is_for(&ev.origin) {
        return Err(Rejected::NotOwner {
            writer: ev.origin.to_string(),
            what: format!("message {id} to {}", join_zones(&m.to)),
        });
    }
    if let Some(by_deadline) = answer {
        if m.answers.contains_key(&ev.origin) {
            return Err(Rejected::Exists(format!("an answer to message {id}")));
        }
        if by_deadline && ev.hlc.wall_ms > m.deadline_ms {
            return Err(Rejected::Expired(id.to_string()));
        }
    }
    Ok(())
}

fn join_zones(zones: &[crate::model::ZoneId]) -> String {
    zones
        .iter()
        .map(|z| z.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// JSON text of at most [`MAX_MESSAGE_BYTES`].
fn check_json(text: &str, what: &str) -> Result<(), Rejected> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Rejected::Invalid(format!("{what} too long")));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|_| Rejected::Invalid(format!("{what} is not JSON")))
}
