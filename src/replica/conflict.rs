//! Conflict detection: the one place that decides what counts as a conflict.
//!
//! Two kinds (DESIGN §1): concurrent writes left side by side in a register,
//! and a service with active VMs in more than one zone. Both are listed with
//! every side's value and origin; nothing here resolves anything.

use super::{Dot, Hlc, Mvr, Service, State};
use crate::model::{InvalidInput, RpId, ServiceId, ZoneId};
use serde::{Deserialize, Serialize};

/// Serde as the wire name (`Display` / `FromStr`), for the conflict types.
macro_rules! serde_as_name {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_name!(ConflictField);
serde_as_name!(ConflictTarget);

/// A register of a service that concurrent writes can leave with several
/// values. On the wire it is the name operators see: `policy`, `metadata`,
/// `deleted`, `slots.<zone>`, `rps.<rp>.hold`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConflictField {
    Policy,
    Metadata,
    Deleted,
    Slot(ZoneId),
    Hold(RpId),
}

impl std::fmt::Display for ConflictField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConflictField::Policy => f.write_str("policy"),
            ConflictField::Metadata => f.write_str("metadata"),
            ConflictField::Deleted => f.write_str("deleted"),
            ConflictField::Slot(z) => write!(f, "slots.{z}"),
            ConflictField::Hold(rp) => write!(f, "rps.{rp}.hold"),
        }
    }
}

impl std::str::FromStr for ConflictField {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Ok(match s {
            "policy" => ConflictField::Policy,
            "metadata" => ConflictField::Metadata,
            "deleted" => ConflictField::Deleted,
            _ => {
                if let Some(z) = s.strip_prefix("slots.") {
                    ConflictField::Slot(ZoneId::parse(z)?)
                } else if let Some(rp) =
                    s.strip_prefix("rps.").and_then(|r| r.strip_suffix(".hold"))
                {
                    ConflictField::Hold(rp.parse()?)
                } else {
                    return Err(InvalidInput::field(
                        "field",
                        format!("{s:?} is not a field: policy, metadata, deleted, slots.<zone> or rps.<rp>.hold"),
                    ));
                }
            }
        })
    }
}

/// What a resolve names: one register's concurrent values, or the active
/// VMs of several zones. On the wire: the field's name, or `active_vms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictTarget {
    Field(ConflictField),
    ActiveVms,
}

impl std::fmt::Display for ConflictTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConflictTarget::Field(field) => field.fmt(f),
            ConflictTarget::ActiveVms => f.write_str("active_vms"),
        }
    }
}

impl std::str::FromStr for ConflictTarget {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        match s {
            "active_vms" => Ok(ConflictTarget::ActiveVms),
            _ => s.parse().map(ConflictTarget::Field),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConflictKind {
    /// Two or more zones wrote `field` without seeing each other's write.
    ConcurrentWrite { field: ConflictField },
    /// The service has an active VM in more than one zone.
    ActiveVms,
}

impl ConflictKind {
    /// What a resolve of this conflict names.
    pub fn target(&self) -> ConflictTarget {
        match self {
            ConflictKind::ConcurrentWrite { field } => ConflictTarget::Field(field.clone()),
            ConflictKind::ActiveVms => ConflictTarget::ActiveVms,
        }
    }
}

/// One side of a conflict: a value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    let mut push = |field: ConflictField, sides: Vec<ConflictSide>| {
        out.push(Conflict {
            service: s.id.clone(),
            kind: ConflictKind::ConcurrentWrite { field },
            sides,
        })
    };
    if s.policy.is_conflict() {
        push(ConflictField::Policy, register_sides(&s.policy));
    }
    if s.metadata.is_conflict() {
        push(ConflictField::Metadata, register_sides(&s.metadata));
    }
    if s.deleted.is_conflict() {
        push(ConflictField::Deleted, register_sides(&s.deleted));
    }
    for (zone, slot) in &s.slots {
        if slot.is_conflict() {
            push(ConflictField::Slot(zone.clone()), register_sides(slot));
        }
    }
    for (id, rp) in &s.rps {
        if rp.hold.is_conflict() {
            push(ConflictField::Hold(id.clone()), register_sides(&rp.hold));
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
