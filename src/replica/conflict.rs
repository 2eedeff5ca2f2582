//! Conflict detection: the one place that decides what counts as a conflict.
//!
//! Two kinds (DESIGN §1): concurrent writes left side by side in a register,
//! and a service with active VMs in more than one zone. Both are listed with
//! every side's value and origin; nothing here resolves anything.

use super::{Dot, Hlc, Mvr, Service, State};
use crate::model::{ServiceId, ZoneId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConflictKind {
    /// Two or more zones wrote `field` without seeing each other's write.
    ConcurrentWrite { field: String },
    /// The service has an active VM in more than one zone.
    ActiveVms,
}

/// One side of a conflict: a value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictSide {
    /// The zone the side is about (for active VMs) or that wrote it.
    pub zone: ZoneId,
    /// The event that wrote this value.
    pub dot: Dot,
    pub hlc: Hlc,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub service: ServiceId,
    #[serde(flatten)]
    pub kind: ConflictKind,
    pub sides: Vec<ConflictSide>,
}

fn register_sides<T: Serialize>(r: &Mvr<T>) -> Vec<ConflictSide> {
    r.values()
        .iter()
        .map(|v| ConflictSide {
            zone: v.dot.origin.clone(),
            dot: v.dot.clone(),
            hlc: v.hlc,
            value: serde_json::to_value(&v.value).unwrap_or(serde_json::Value::Null),
        })
        .collect()
}

/// Every conflict of one service, in a fixed order.
pub fn service_conflicts(s: &Service) -> Vec<Conflict> {
    let mut out = Vec::new();
    let mut push = |field: String, sides: Vec<ConflictSide>| {
        out.push(Conflict {
            service: s.id.clone(),
            kind: ConflictKind::ConcurrentWrite { field },
            sides,
        })
    };
    if s.policy.is_conflict() {
        push("policy".into(), register_sides(&s.policy));
    }
    if s.metadata.is_conflict() {
        push("metadata".into(), register_sides(&s.metadata));
    }
    if s.deleted.is_conflict() {
        push("deleted".into(), register_sides(&s.deleted));
    }
    for (zone, slot) in &s.slots {
        if slot.is_conflict() {
            push(format!("slots.{zone}"), register_sides(slot));
        }
    }
    for (id, rp) in &s.rps {
        if rp.hold.is_conflict() {
            push(format!("rps.{id}.hold"), register_sides(&rp.hold));
        }
    }
    let active = s.active_zones();
    if active.len() > 1 && !s.is_deleted() {
        let sides = active
            .iter()
            .filter_map(|z| {
                let r = s.slots.get(z)?;
                let v = r
                    .values()
                    .iter()
                    .filter(|v| v.value.as_ref().is_some_and(|s| s.active))
                    .max_by_key(|v| v.hlc)?;
                Some(ConflictSide {
                    zone: z.clone(),
                    dot: v.dot.clone(),
                    hlc: v.hlc,
                    value: serde_json::to_value(&v.value).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect();
        out.push(Conflict {
            service: s.id.clone(),
            kind: ConflictKind::ActiveVms,
            sides,
        });
    }
    out
}

/// Every conflict in the state, ordered by service.
pub fn conflicts(state: &State) -> Vec<Conflict> {
    state
        .services
        .values()
        .flat_map(service_conflicts)
        .collect()
}
