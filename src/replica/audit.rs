//! The audit vocabulary: what an applied event means to an operator reading
//! the history. A pure function of the event (its op, actor and origin):
//! the store keeps one row per applied event with what [`describe`] says,
//! so every zone that applied an event shows it alike.
//!
//! Two kinds of rows: the DR actions an operator or the CMP asked for
//! (`Op::Record`: failover, revert, ...), and one row per write (protect,
//! edit-policy, rp-taken, copy-complete, ...). The engine's routine work
//! (copy states, its scheduled RPs, purges) is marked `routine`, so the
//! store can bound it apart and it never pushes operator actions out.

use super::{Event, Op};
use crate::model::{CopyState, InvalidInput, RpId, ServiceId};

/// Longest summary, in bytes (a row's and a `Op::Record`'s).
pub const MAX_SUMMARY_BYTES: usize = 200;

/// The actor of the engine's own writes.
pub const NODE_ACTOR: &str = "node";

/// The actions an `Op::Record` may name: the DR actions.
pub const RECORDED_ACTIONS: &[&str] = &[
    "failover",
    "migrate",
    "migrate-complete",
    "revert",
    "test-failover",
    "test-cleanup",
    "deactivate",
    "resolve",
    "delete",
];

/// The actions of the rows for plain writes, one per kind of write.
pub const WRITE_ACTIONS: &[&str] = &[
    "protect",
    "edit-policy",
    "edit-metadata",
    "activate",
    "stop",
    "clear-slot",
    "mark-deleted",
    "rp-taken",
    "copy-pending",
    "copy-transferring",
    "copy-complete",
    "copy-failed",
    "copy-deleted",
    "hold",
    "release",
    "purge",
    "message",
    "delivered",
    "ack",
    "prune-messages",
    "pause",
    "resume",
];

/// Every action a history row may show: the recorded actions, then the
/// writes'.
pub fn actions() -> impl Iterator<Item = &'static str> {
    RECORDED_ACTIONS.iter().chain(WRITE_ACTIONS).copied()
}

/// Whether a history row may show `action` (for filters to check against).
pub fn is_action(action: &str) -> bool {
    actions().any(|a| a == action)
}

/// What a history row says of one event (its time, zone and actor are the
/// event's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub action: String,
    pub service: Option<ServiceId>,
    pub rp: Option<RpId>,
    /// Short (at most [`MAX_SUMMARY_BYTES`]), with control characters of
    /// anything a peer wrote escaped.
    pub summary: String,
    /// The engine's routine work, bounded apart from operator actions.
    pub routine: bool,
}

/// Refuses an `Op::Record` this build does not know or that is too long
/// (the local check; `rules::authorize` asks the same).
pub fn check_record(action: &str, summary: &str) -> Result<(), InvalidInput> {
    if !RECORDED_ACTIONS.contains(&action) {
        return Err(InvalidInput::field(
            "action",
            format!("{:?} is not a recorded action", clip(action, 40)),
        ));
    }
    if summary.len() > MAX_SUMMARY_BYTES {
        return Err(InvalidInput::field(
            "summary",
            format!("longer than {MAX_SUMMARY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// `text` with control characters escaped, cut to at most `max` bytes (on
/// a character boundary, `…` marking the cut).
pub fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if out.len() + piece.len() > max {
            let ellipsis = "…";
            while out.len() + ellipsis.len() > max {
                out.pop();
            }
            out.push_str(ellipsis);
            return out;
        }
        out.push_str(&piece);
    }
    out
}

/// What `ev` means in the history.
pub fn describe(ev: &Event) -> Entry {
    let node = ev.actor == NODE_ACTOR;
    let entry = |action: &str, service: &ServiceId, rp: Option<&RpId>, summary: String| Entry {
        action: action.to_string(),
        service: Some(service.clone()),
        rp: rp.cloned(),
        summary: clip(&summary, MAX_SUMMARY_BYTES),
        routine: false,
    };
    match &ev.op {
        Op::CreateService {
            service,
            policy,
            slot,
            ..
        } => entry(
            "protect",
            service,
            None,
            format!(
                "VM {} protected in {}: RPs every {}s to {}",
                clip(&slot.cmp_vm_id, 64),
                ev.origin,
                policy.interval_s,
                policy.recovery_zone
            ),
        ),
        Op::SetPolicy { service, policy } => entry(
            "edit-policy",
            service,
            None,
            format!(
                "RPs every {}s to {}",
                policy.interval_s, policy.recovery_zone
            ),
        ),
        Op::SetMetadata { service, metadata } => entry(
            "edit-metadata",
            service,
            None,
            format!("VM metadata set ({} bytes)", metadata.len()),
        ),
        Op::SetSlot {
            service,
            zone,
            slot,
        } => match slot {
            Some(s) if s.active => entry(
                "activate",
                service,
                None,
                format!(
                    "VM {} active in {zone} on {} disk(s)",
                    clip(&s.cmp_vm_id, 64),
                    s.disks.len()
                ),
            ),
            Some(s) => entry(
                "stop",
                service,
                None,
                format!("VM {} stopped in {zone}", clip(&s.cmp_vm_id, 64)),
            ),
            None => entry("clear-slot", service, None, format!("no VM in {zone}")),
        },
        Op::DeleteService { service } => {
            entry("mark-deleted", service, None, "service deleted".into())
        }
        Op::CreateRp {
            service, rp, disks, ..
        } => Entry {
            routine: node,
            ..entry(
                "rp-taken",
                service,
                Some(rp),
                format!("RP taken in {} of {} disk(s)", ev.origin, disks.len()),
            )
        },
        Op::SetCopy { service, rp, state } => {
            let (action, what) = match state {
                CopyState::Pending => ("copy-pending", "pending".to_string()),
                CopyState::Transferring => ("copy-transferring", "transferring".to_string()),
                CopyState::Complete => ("copy-complete", "complete".to_string()),
                CopyState::Failed { error } => {
                    ("copy-failed", format!("failed: {}", clip(error, 120)))
                }
                CopyState::Deleted => ("copy-deleted", "deleted".to_string()),
            };
            Entry {
                routine: true,
                ..entry(
                    action,
                    service,
                    Some(rp),
                    format!("copy in {}: {what}", ev.origin),
                )
            }
        }
        Op::SetHold { service, rp, hold } => {
            let (action, what) = if *hold {
                ("hold", "put on hold")
            } else {
                ("release", "released from hold")
            };
            entry(action, service, Some(rp), format!("RP {what}"))
        }
        Op::SetPaused { service, pause } => match pause {
            Some(p) if p.reason.is_empty() => {
                entry("pause", service, None, "protection paused".into())
            }
            Some(p) => entry(
                "pause",
                service,
                None,
                format!("protection paused: {}", clip(&p.reason, 200)),
            ),
            None => entry("resume", service, None, "protection resumed".into()),
        },
        Op::PurgeRps { service, rps } => Entry {
            routine: true,
            ..entry(
                "purge",
                service,
                None,
                format!("{} RP(s) with no copy left forgotten", rps.len()),
            )
        },
        Op::SendMessage { to, body } => Entry {
            action: "message".into(),
            service: None,
            rp: None,
            summary: format!("message to {to} ({} bytes)", body.len()),
            routine: false,
        },
        Op::AckMessage { message } => Entry {
            action: "ack".into(),
            service: None,
            rp: None,
            summary: clip(
                &format!("message {message} acknowledged"),
                MAX_SUMMARY_BYTES,
            ),
            routine: false,
        },
        Op::Record {
            service,
            action,
            rp,
            summary,
        } => entry(action, service, rp.as_ref(), summary.clone()),
        Op::Send {
            to,
            broadcast,
            kind,
            service,
            ..
        } => {
            let zones = if *broadcast {
                "every zone".to_string()
            } else {
                to.iter().map(|z| z.as_str()).collect::<Vec<_>>().join(", ")
            };
            Entry {
                action: "message".into(),
                service: service.clone(),
                rp: None,
                summary: clip(&format!("{kind} to {zones}"), MAX_SUMMARY_BYTES),
                routine: false,
            }
        }
        Op::Deliver { message } => Entry {
            action: "delivered".into(),
            service: None,
            rp: None,
            summary: clip(&format!("message {message} delivered"), MAX_SUMMARY_BYTES),
            routine: true,
        },
        Op::Answer { message, .. } => Entry {
            action: "ack".into(),
            service: None,
            rp: None,
            summary: clip(&format!("message {message} answered"), MAX_SUMMARY_BYTES),
            routine: false,
        },
        Op::PruneMessages { messages } => Entry {
            action: "prune-messages".into(),
            service: None,
            rp: None,
            summary: format!("{} done message(s) forgotten", messages.len()),
            routine: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Policy, Retention, VmSlot, ZoneId};
    use crate::replica::{Hlc, VersionVector};

    fn zone(z: &str) -> ZoneId {
        z.parse().unwrap()
    }

    fn svc() -> ServiceId {
        "svc-1".parse().unwrap()
    }

    fn ev(actor: &str, op: Op) -> Event {
        Event {
            origin: zone("zone-a"),
            seq: 1,
            deps: VersionVector::new(),
            hlc: Hlc {
                wall_ms: 1,
                logical: 0,
            },
            actor: actor.into(),
            op,
        }
    }

    fn keep() -> Retention {
        Retention {
            keep_last: 1,
            keep_for_s: 0,
        }
    }

    fn slot(active: bool) -> VmSlot {
        VmSlot {
            cmp_vm_id: "vm-1".into(),
            disks: vec!["d0".into(), "d1".into()],
            active,
        }
    }

    #[test]
    fn every_write_has_its_word() {
        let rp: RpId = "zone-a.1".parse().unwrap();
        let policy = Policy {
            interval_s: 300,
            recovery_zone: zone("zone-b"),
            local_retention: keep(),
            remote_retention: keep(),
        };
        let cases = [
            (
                Op::CreateService {
                    service: svc(),
                    policy: policy.clone(),
                    metadata: String::new(),
                    slot: slot(true),
                },
                "protect",
            ),
            (
                Op::SetPolicy {
                    service: svc(),
                    policy,
                },
                "edit-policy",
            ),
            (
                Op::SetMetadata {
                    service: svc(),
                    metadata: "x".into(),
                },
                "edit-metadata",
            ),
            (
                Op::SetSlot {
                    service: svc(),
                    zone: zone("zone-b"),
                    slot: Some(slot(true)),
                },
                "activate",
            ),
            (
                Op::SetSlot {
                    service: svc(),
                    zone: zone("zone-b"),
                    slot: Some(slot(false)),
                },
                "stop",
            ),
            (
                Op::SetSlot {
                    service: svc(),
                    zone: zone("zone-b"),
                    slot: None,
                },
                "clear-slot",
            ),
            (Op::DeleteService { service: svc() }, "mark-deleted"),
            (
                Op::SetCopy {
                    service: svc(),
                    rp: rp.clone(),
                    state: CopyState::Complete,
                },
                "copy-complete",
            ),
            (
                Op::SetCopy {
                    service: svc(),
                    rp: rp.clone(),
                    state: CopyState::Failed {
                        error: "boom".into(),
                    },
                },
                "copy-failed",
            ),
            (
                Op::SetHold {
                    service: svc(),
                    rp: rp.clone(),
                    hold: true,
                },
                "hold",
            ),
            (
                Op::PurgeRps {
                    service: svc(),
                    rps: vec![rp.clone()],
                },
                "purge",
            ),
            (
                Op::SendMessage {
                    to: zone("zone-b"),
                    body: "hi".into(),
                },
                "message",
            ),
            (
                Op::Record {
                    service: svc(),
                    action: "failover".into(),
                    rp: Some(rp.clone()),
                    summary: "VM active in zone-b".into(),
                },
                "failover",
            ),
        ];
        for (op, word) in cases {
            let e = describe(&ev("alice", op));
            assert_eq!(e.action, word);
            assert!(is_action(&e.action), "{word} not listed");
            assert!(e.summary.len() <= MAX_SUMMARY_BYTES);
        }
        let failover = describe(&ev(
            "alice",
            Op::Record {
                service: svc(),
                action: "failover".into(),
                rp: Some(rp.clone()),
                summary: "s".into(),
            },
        ));
        assert_eq!(failover.rp, Some(rp));
        assert_eq!(failover.service, Some(svc()));
        assert!(!failover.routine);
    }

    #[test]
    fn the_engines_copies_and_scheduled_rps_are_routine_an_operators_rp_is_not() {
        let rp: RpId = "zone-a.1".parse().unwrap();
        let take = Op::CreateRp {
            service: svc(),
            rp: rp.clone(),
            disks: Vec::new(),
            metadata: String::new(),
            taken: Hlc::default(),
        };
        assert!(describe(&ev(NODE_ACTOR, take.clone())).routine);
        assert!(!describe(&ev("alice", take)).routine);
        let copy = Op::SetCopy {
            service: svc(),
            rp,
            state: CopyState::Transferring,
        };
        assert!(describe(&ev(NODE_ACTOR, copy)).routine);
        let failover = Op::Record {
            service: svc(),
            action: "failover".into(),
            rp: None,
            summary: String::new(),
        };
        assert!(!describe(&ev(NODE_ACTOR, failover)).routine);
    }

    #[test]
    fn summaries_are_bounded_and_escape_what_a_peer_wrote() {
        let long = Op::SetCopy {
            service: svc(),
            rp: "zone-a.1".parse().unwrap(),
            state: CopyState::Failed {
                error: format!("\u{1b}[31mred\n{}", "é".repeat(500)),
            },
        };
        let e = describe(&ev(NODE_ACTOR, long));
        assert!(e.summary.len() <= MAX_SUMMARY_BYTES, "{}", e.summary);
        assert!(!e.summary.chars().any(char::is_control), "{:?}", e.summary);
        assert!(e.summary.contains("\\u{1b}[31mred\\n"), "{}", e.summary);
        assert!(e.summary.ends_with('…'));
        assert_eq!(clip("short", 200), "short");
        assert_eq!(clip("abcdef", 4), "a…");
    }

    #[test]
    fn records_of_unknown_actions_or_too_long_are_refused() {
        assert!(check_record("failover", "fine").is_ok());
        assert_eq!(
            check_record("reboot", "").unwrap_err().field_name(),
            "action"
        );
        assert_eq!(
            check_record("revert", &"x".repeat(MAX_SUMMARY_BYTES + 1))
                .unwrap_err()
                .field_name(),
            "summary"
        );
        for a in RECORDED_ACTIONS {
            assert!(is_action(a));
            assert!(!WRITE_ACTIONS.contains(a), "{a} is listed twice");
        }
    }
}
