//! Commands: what a client or the engine asks of the replica, decided in
//! one place.
//!
//! A command names an intent (protect this VM, edit this service if it is
//! still at the version I read, resolve this conflict whose sides I saw,
//! retarget this policy if nobody changed it). [`decide`] is a pure
//! function of the replica: it answers the ops that carry the intent out,
//! or why not. The durable writer (`store::Db::execute`) decides, applies
//! and commits a command in one step of its batch, so nothing can land
//! between the look and the write: no lock elsewhere guards a rule.

use super::{ConflictField, ConflictKind, ConflictTarget, Dot, Op, Replica, Service, WriteError};
use crate::model::message::REQUEST_DEACTIVATE_KIND;
use crate::model::{InvalidInput, MessageId, Policy, RpId, ServiceId, VmSlot, ZoneId};

/// A write asked of the replica; see [`decide`].
#[derive(Debug, Clone)]
pub enum Command {
    /// Ops as they are: checked by the local checks and the replicated
    /// rules only (RPs, copy states, messages, the engine's own writes).
    Ops(Vec<Op>),
    /// An idempotent create. A retry of the same request (same
    /// `fingerprint`, or the same fields if none was kept) answers the
    /// service as it is; another request for an existing id is refused.
    Protect {
        service: ServiceId,
        policy: Policy,
        metadata: String,
        slot: VmSlot,
        fingerprint: Vec<u8>,
    },
    /// Changes some of a service's fields (the slot is this zone's), in one
    /// commit, if its version is one of `expect`.
    Edit {
        service: ServiceId,
        expect: Expect,
        policy: Option<Policy>,
        metadata: Option<String>,
        slot: Option<VmSlot>,
    },
    /// Marks a service deleted, if its version is one of `expect`.
    Delete { service: ServiceId, expect: Expect },
    /// Marks `zone`'s VM inactive. The write has seen every value of that
    /// zone's slot, so it settles a concurrent write on it too.
    Deactivate { service: ServiceId, zone: ZoneId },
    /// Settles a conflict by a write that has seen all its sides.
    Resolve {
        service: ServiceId,
        target: ConflictTarget,
        choice: Choice,
        /// The sides the caller looked at; other sides now refuse it.
        seen: Option<Vec<Dot>>,
    },
    /// Runs the VM in the writer's zone: its slot becomes `slot`, and with
    /// `recovery_zone` the policy's recovery zone becomes that zone in the
    /// same commit (a failover that protects the new VM at once). The
    /// policy changed is the one there now; refused while zones disagree
    /// on it.
    Activate {
        service: ServiceId,
        slot: VmSlot,
        recovery_zone: Option<ZoneId>,
        /// Written last, with the rest: the action's history entry.
        record: Option<Op>,
    },
    /// This zone's answer to a message addressed to it. Answering a
    /// `drengine.request-deactivate` with `{"confirm": true}` also marks
    /// this zone's VM of the message's service inactive, in the same
    /// commit, and the answer written says whether it was
    /// (`"deactivated"`).
    Answer {
        message: MessageId,
        result: serde_json::Value,
    },
    /// The engine's reversal of replication: the recovery zone becomes
    /// `recovery_zone`, only if the policy is still `expected` (an
    /// operator's edit in between wins).
    Retarget {
        service: ServiceId,
        expected: Policy,
        recovery_zone: ZoneId,
    },
}

/// The versions a conditional write accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Expect {
    /// Whatever the service's version is.
    #[default]
    Any,
    /// One of these version tokens (`*` matches any).
    OneOf(Vec<String>),
}

impl Expect {
    pub fn accepts(&self, current: &str) -> bool {
        match self {
            Expect::Any => true,
            Expect::OneOf(ts) => ts.iter().any(|t| t == "*" || t == current),
        }
    }
}

/// How a resolve settles its conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Keep the value of the side written by this event.
    Side(Dot),
    /// Write this new value (of the field's type).
    Value(FieldValue),
    /// For active VMs: the one zone whose VM stays active.
    KeepZone(ZoneId),
}

/// A new value for a field a conflict names.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Policy(Policy),
    Metadata(String),
    Slot(Option<VmSlot>),
    Hold(bool),
}

/// What a decided command did, besides its ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its ops were written.
    Written,
    /// A `Protect` made the service.
    Created,
    /// A `Protect` was a retry: the service already was as asked.
    Existing,
    /// Nothing needed writing (a VM already inactive).
    Unchanged,
}

/// The decision on a command: the ops to write and what they mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub ops: Vec<Op>,
    pub outcome: Outcome,
    /// A created service's request fingerprint, to keep (in local rows)
    /// with the ops, so that a retry is told from another request.
    pub keep_fingerprint: Option<(ServiceId, Vec<u8>)>,
}

impl Decision {
    fn write(ops: Vec<Op>) -> Decision {
        Decision {
            ops,
            outcome: Outcome::Written,
            keep_fingerprint: None,
        }
    }

    fn nothing(outcome: Outcome) -> Decision {
        Decision {
            ops: Vec::new(),
            outcome,
            keep_fingerprint: None,
        }
    }
}

/// The version token of a service: a hash of the events that wrote its
/// editable fields' current values. Any write to them changes it.
pub fn version_token(s: &Service) -> String {
    let mut dots = Vec::new();
    let mut tag = |t: &str, d: &Dot| {
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

/// Decides `cmd` against the replica as it is now. `fingerprint_of` reads
/// the fingerprint kept for a created service (local rows, not replicated).
/// Bad input is refused before a version is compared, so a caller hears of
/// a bad body first and of a stale version only for a valid edit.
pub fn decide(
    r: &Replica,
    cmd: &Command,
    fingerprint_of: &dyn Fn(&ServiceId) -> Option<Vec<u8>>,
) -> Result<Decision, WriteError> {
    match cmd {
        Command::Ops(ops) => Ok(Decision::write(ops.clone())),
        Command::Protect {
            service,
            policy,
            metadata,
            slot,
            fingerprint,
        } => {
            slot.validate()?;
            let Some(s) = r.service(service) else {
                return Ok(Decision {
                    ops: vec![Op::CreateService {
                        service: service.clone(),
                        policy: policy.clone(),
                        metadata: metadata.clone(),
                        slot: slot.clone(),
                    }],
                    outcome: Outcome::Created,
                    keep_fingerprint: Some((service.clone(), fingerprint.clone())),
                });
            };
            let same = match fingerprint_of(service) {
                Some(kept) => &kept == fingerprint,
                None => {
                    s.policy.get() == Some(policy)
                        && s.metadata.get() == Some(metadata)
                        && s.slot(r.zone()) == Some(slot)
                }
            };
            if same {
                Ok(Decision::nothing(Outcome::Existing))
            } else {
                Err(WriteError::IdempotencyMismatch(service.clone()))
            }
        }
        Command::Edit {
            service,
            expect,
            policy,
            metadata,
            slot,
        } => {
            let mut ops = Vec::new();
            if let Some(policy) = policy {
                ops.push(Op::SetPolicy {
                    service: service.clone(),
                    policy: policy.clone(),
                });
            }
            if let Some(metadata) = metadata {
                ops.push(Op::SetMetadata {
                    service: service.clone(),
                    metadata: metadata.clone(),
                });
            }
            if let Some(slot) = slot {
                ops.push(Op::SetSlot {
                    service: service.clone(),
                    zone: r.zone().clone(),
                    slot: Some(slot.clone()),
                });
            }
            if ops.is_empty() {
                return Err(InvalidInput::field(
                    "body",
                    "nothing to change: give policy, metadata or slot",
                )
                .into());
            }
            for op in &ops {
                r.check_local(op)?;
            }
            check_version(r, service, expect)?;
            Ok(Decision::write(ops))
        }
        Command::Delete { service, expect } => {
            let op = Op::DeleteService {
                service: service.clone(),
            };
            r.check_local(&op)?;
            check_version(r, service, expect)?;
            Ok(Decision::write(vec![
                op,
                record(
                    service,
                    "delete",
                    None,
                    "service deleted in every zone".into(),
                ),
            ]))
        }
        Command::Answer { message, result } => {
            let m = r
                .state()
                .messages
                .get(message)
                .ok_or_else(|| WriteError::NoSuchMessage(message.clone()))?;
            let mut ops = Vec::new();
            let mut result = result.clone();
            let confirmed = result.get("confirm") == Some(&serde_json::Value::Bool(true));
            if m.kind == REQUEST_DEACTIVATE_KIND && confirmed && m.is_for(r.zone()) {
                let Some(service) = m.service.clone() else {
                    return Err(InvalidInput::field(
                        "result",
                        "the request names no service to deactivate",
                    )
                    .into());
                };
                let deactivate = Command::Deactivate {
                    service,
                    zone: r.zone().clone(),
                };
                let (deactivated, note) = match decide(r, &deactivate, fingerprint_of) {
                    Ok(d) => {
                        ops.extend(d.ops);
                        (true, None)
                    }
                    Err(
                        e @ (WriteError::NoVm { .. }
                        | WriteError::Deleted(_)
                        | WriteError::NoSuchService(_)),
                    ) => (false, Some(e.to_string())),
                    Err(e) => return Err(e),
                };
                if let Some(obj) = result.as_object_mut() {
                    obj.insert("deactivated".into(), deactivated.into());
                    if let Some(n) = note {
                        obj.insert("reason".into(), n.into());
                    }
                }
            }
            let answer = Op::Answer {
                message: message.clone(),
                result: result.to_string(),
            };
            r.check_local(&answer)?;
            ops.push(answer);
            Ok(Decision::write(ops))
        }
        Command::Deactivate { service, zone } => {
            let s = live(r, service)?;
            let values = s.slots.get(zone).map(|m| m.values()).unwrap_or_default();
            let any_active = values
                .iter()
                .any(|v| v.value.as_ref().is_some_and(|s| s.active));
            let base = s
                .slot(zone)
                .cloned()
                .or_else(|| values.iter().find_map(|v| v.value.clone()));
            let Some(slot) = base else {
                return Err(WriteError::NoVm {
                    service: service.clone(),
                    zone: zone.clone(),
                });
            };
            if !any_active && values.len() <= 1 {
                return Ok(Decision::nothing(Outcome::Unchanged));
            }
            Ok(Decision::write(vec![
                Op::SetSlot {
                    service: service.clone(),
                    zone: zone.clone(),
                    slot: Some(VmSlot {
                        active: false,
                        ..slot
                    }),
                },
                record(
                    service,
                    "deactivate",
                    None,
                    format!("the VM in {zone} marked inactive"),
                ),
            ]))
        }
        Command::Resolve {
            service,
            target,
            choice,
            seen,
        } => resolve(r, service, target, choice, seen.as_deref()),
        Command::Activate {
            service,
            slot,
            recovery_zone,
            record,
        } => {
            let s = live(r, service)?;
            let mut ops = vec![Op::SetSlot {
                service: service.clone(),
                zone: r.zone().clone(),
                slot: Some(slot.clone()),
            }];
            if let Some(rz) = recovery_zone {
                let policy = match s.policy.get() {
                    Some(p) if !s.policy.is_conflict() => p,
                    _ => {
                        return Err(WriteError::Changed(format!(
                            "zones disagree on the policy of service {service}: resolve that first, or fail over without a recovery_zone"
                        )))
                    }
                };
                if &policy.recovery_zone != rz {
                    ops.push(Op::SetPolicy {
                        service: service.clone(),
                        policy: Policy {
                            recovery_zone: rz.clone(),
                            ..policy.clone()
                        },
                    });
                }
            }
            ops.extend(record.iter().cloned());
            Ok(Decision::write(ops))
        }
        Command::Retarget {
            service,
            expected,
            recovery_zone,
        } => {
            let s = live(r, service)?;
            if s.policy.is_conflict() || s.policy.get() != Some(expected) {
                return Err(WriteError::Changed(format!(
                    "the policy of service {service} changed since it was read"
                )));
            }
            let policy = Policy {
                recovery_zone: recovery_zone.clone(),
                ..expected.clone()
            };
            Ok(Decision::write(vec![Op::SetPolicy {
                service: service.clone(),
                policy,
            }]))
        }
    }
}

fn live<'a>(r: &'a Replica, id: &ServiceId) -> Result<&'a Service, WriteError> {
    let s = r
        .service(id)
        .ok_or_else(|| WriteError::NoSuchService(id.clone()))?;
    if s.is_deleted() {
        return Err(WriteError::Deleted(id.clone()));
    }
    Ok(s)
}

/// Refuses a conditional write to a service whose version moved on. A
/// missing service passes: the write itself then says so.
fn check_version(r: &Replica, id: &ServiceId, expect: &Expect) -> Result<(), WriteError> {
    match r.service(id) {
        Some(s) => {
            let current = version_token(s);
            if expect.accepts(&current) {
                Ok(())
            } else {
                Err(WriteError::Stale { current })
            }
        }
        None => Ok(()),
    }
}

fn resolve(
    r: &Replica,
    id: &ServiceId,
    target: &ConflictTarget,
    choice: &Choice,
    seen: Option<&[Dot]>,
) -> Result<Decision, WriteError> {
    let s = r
        .service(id)
        .ok_or_else(|| WriteError::NoSuchService(id.clone()))?;
    let conflicts = super::service_conflicts(s);
    let c = conflicts
        .iter()
        .find(|c| &c.kind.target() == target)
        .ok_or_else(|| WriteError::NoConflict {
            service: id.clone(),
            target: target.to_string(),
        })?;
    let sides: Vec<&Dot> = c.sides.iter().map(|s| &s.dot).collect();
    let side_of = |dot: &Dot| -> Result<usize, WriteError> {
        sides.iter().position(|d| *d == dot).ok_or_else(|| {
            InvalidInput::field("choose", format!("{dot} is not a side of this conflict")).into()
        })
    };
    if let Some(seen) = seen {
        let mut now = sides.clone();
        let mut seen: Vec<&Dot> = seen.iter().collect();
        now.sort();
        now.dedup();
        seen.sort();
        seen.dedup();
        if now != seen {
            return Err(WriteError::SidesChanged);
        }
    }
    let service = id.clone();
    let mut ops = match (&c.kind, choice) {
        (ConflictKind::ActiveVms, _) => {
            let keep = match choice {
                Choice::Side(dot) => c.sides[side_of(dot)?].zone.clone(),
                Choice::KeepZone(z) => z.clone(),
                Choice::Value(_) => {
                    return Err(InvalidInput::field(
                        "keep_zone",
                        "give keep_zone (or choose) for active_vms",
                    )
                    .into())
                }
            };
            if !c.sides.iter().any(|s| s.zone == keep) {
                return Err(InvalidInput::field(
                    "keep_zone",
                    format!("zone {keep} has no active VM"),
                )
                .into());
            }
            let mut ops = Vec::new();
            for side in c.sides.iter().filter(|side| side.zone != keep) {
                let slot = s
                    .slots
                    .get(&side.zone)
                    .and_then(|m| m.values().iter().find(|v| v.dot == side.dot))
                    .and_then(|v| v.value.clone());
                if let Some(slot) = slot {
                    ops.push(Op::SetSlot {
                        service: service.clone(),
                        zone: side.zone.clone(),
                        slot: Some(VmSlot {
                            active: false,
                            ..slot
                        }),
                    });
                }
            }
            ops
        }
        (ConflictKind::ConcurrentWrite { .. }, Choice::KeepZone(_)) => {
            return Err(InvalidInput::field("keep_zone", "only for active_vms").into())
        }
        (ConflictKind::ConcurrentWrite { field }, Choice::Side(dot)) => {
            side_of(dot)?;
            vec![field_write(s, &service, field, FieldChoice::Side(dot))?]
        }
        (ConflictKind::ConcurrentWrite { field }, Choice::Value(v)) => {
            vec![field_write(s, &service, field, FieldChoice::Value(v))?]
        }
    };
    let how = match choice {
        Choice::KeepZone(z) => format!("keeping the VM in {z}"),
        Choice::Side(dot) => format!("keeping the value of {dot}"),
        Choice::Value(_) => "with a new value".to_string(),
    };
    let rp = match target {
        ConflictTarget::Field(ConflictField::Hold(rp)) => Some(rp.clone()),
        _ => None,
    };
    ops.push(record(
        id,
        "resolve",
        rp,
        format!("conflict on {target} resolved, {how}"),
    ));
    for op in &ops {
        r.check_local(op)?;
    }
    Ok(Decision::write(ops))
}

/// The history's record of a DR action decided here, written with its ops.
fn record(service: &ServiceId, action: &str, rp: Option<RpId>, summary: String) -> Op {
    Op::Record {
        service: service.clone(),
        action: action.to_string(),
        rp,
        summary: super::audit::clip(&summary, super::audit::MAX_SUMMARY_BYTES),
    }
}

enum FieldChoice<'a> {
    Side(&'a Dot),
    Value(&'a FieldValue),
}

/// The write of `field` that keeps the side's value or sets a new one.
fn field_write(
    s: &Service,
    service: &ServiceId,
    field: &ConflictField,
    choice: FieldChoice<'_>,
) -> Result<Op, WriteError> {
    let service = service.clone();
    let wrong = |want: &str| -> WriteError {
        InvalidInput::field(
            "value",
            format!("not a valid value for {field}: want {want}"),
        )
        .into()
    };
    fn pick<T: Clone>(m: &super::Mvr<T>, dot: &Dot) -> Option<T> {
        m.values()
            .iter()
            .find(|v| &v.dot == dot)
            .map(|v| v.value.clone())
    }
    let missing = || -> WriteError {
        InvalidInput::field("choose", "that side is no longer a value of the field").into()
    };
    Ok(match field {
        ConflictField::Policy => {
            let policy = match choice {
                FieldChoice::Side(d) => pick(&s.policy, d).ok_or_else(missing)?,
                FieldChoice::Value(FieldValue::Policy(p)) => p.clone(),
                FieldChoice::Value(_) => return Err(wrong("a policy")),
            };
            Op::SetPolicy { service, policy }
        }
        ConflictField::Metadata => {
            let metadata = match choice {
                FieldChoice::Side(d) => pick(&s.metadata, d).ok_or_else(missing)?,
                FieldChoice::Value(FieldValue::Metadata(m)) => m.clone(),
                FieldChoice::Value(_) => return Err(wrong("a string")),
            };
            Op::SetMetadata { service, metadata }
        }
        ConflictField::Slot(zone) => {
            let slot = match choice {
                FieldChoice::Side(d) => s
                    .slots
                    .get(zone)
                    .and_then(|m| pick(m, d))
                    .ok_or_else(missing)?,
                FieldChoice::Value(FieldValue::Slot(slot)) => slot.clone(),
                FieldChoice::Value(_) => return Err(wrong("a VM slot or null")),
            };
            Op::SetSlot {
                service,
                zone: zone.clone(),
                slot,
            }
        }
        ConflictField::Hold(rp) => {
            let hold = match choice {
                FieldChoice::Side(d) => s
                    .rps
                    .get(rp)
                    .and_then(|p| pick(&p.hold, d))
                    .ok_or_else(missing)?,
                FieldChoice::Value(FieldValue::Hold(h)) => *h,
                FieldChoice::Value(_) => return Err(wrong("true or false")),
            };
            Op::SetHold {
                service,
                rp: rp.clone(),
                hold,
            }
        }
        // Both sides say deleted: there is nothing to choose.
        ConflictField::Deleted => {
            return Err(InvalidInput::field(
                "field",
                format!("{field} cannot be resolved by a write"),
            )
            .into())
        }
    })
}

/// The type of value a resolve of `field` writes, to parse a client's value.
pub fn parse_field_value(
    field: &ConflictField,
    v: serde_json::Value,
) -> Result<FieldValue, InvalidInput> {
    let bad = |e: serde_json::Error| {
        InvalidInput::field("value", format!("not a valid value for {field}: {e}"))
    };
    Ok(match field {
        ConflictField::Policy => FieldValue::Policy(serde_json::from_value(v).map_err(bad)?),
        ConflictField::Metadata => FieldValue::Metadata(serde_json::from_value(v).map_err(bad)?),
        ConflictField::Slot(_) => FieldValue::Slot(serde_json::from_value(v).map_err(bad)?),
        ConflictField::Hold(_) => FieldValue::Hold(serde_json::from_value(v).map_err(bad)?),
        ConflictField::Deleted => {
            return Err(InvalidInput::field(
                "field",
                format!("{field} cannot be resolved by a write"),
            ))
        }
    })
}
