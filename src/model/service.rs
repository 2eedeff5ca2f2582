//! The values a DR service is made of.

use super::{validate_volume_name, InvalidInput, ZoneId, MAX_ACTOR_BYTES, MAX_DISKS_PER_VM};
use serde::{Deserialize, Serialize};

/// How long recovery points are kept in one zone. An RP is kept while it is
/// among the newest `keep_last` or younger than `keep_for_s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[schema(minimum = 1, maximum = 4294967295u32)]
    pub keep_last: u32,
    #[schema(maximum = 18446744073709551615u64)]
    pub keep_for_s: u64,
}

/// The DR policy of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// How often a recovery point is taken.
    #[schema(minimum = 1, maximum = 604800)]
    pub interval_s: u64,
    /// Where recovery points are replicated and where the VM fails over to.
    pub recovery_zone: ZoneId,
    /// Retention of the copies in the zone where the VM runs.
    pub local_retention: Retention,
    /// Retention of the copies in the recovery zone.
    pub remote_retention: Retention,
}

/// Longest allowed policy interval: one week.
pub const MAX_INTERVAL_S: u64 = 7 * 24 * 3600;

impl Policy {
    /// Checks the policy on its own and against the zones the VM runs in.
    pub fn validate(
        &self,
        vm_zones: &[ZoneId],
        known_zone: impl Fn(&ZoneId) -> bool,
    ) -> Result<(), InvalidInput> {
        if self.interval_s == 0 {
            return Err(InvalidInput::field(
                "policy.interval_s",
                "must be at least 1",
            ));
        }
        if self.interval_s > MAX_INTERVAL_S {
            return Err(InvalidInput::field(
                "policy.interval_s",
                format!("must be at most {MAX_INTERVAL_S}"),
            ));
        }
        if !known_zone(&self.recovery_zone) {
            return Err(InvalidInput::field(
                "policy.recovery_zone",
                format!("unknown zone {}", self.recovery_zone),
            ));
        }
        if vm_zones.contains(&self.recovery_zone) {
            return Err(InvalidInput::field(
                "policy.recovery_zone",
                format!("must differ from the VM's zone {}", self.recovery_zone),
            ));
        }
        for (field, r) in [
            ("policy.local_retention.keep_last", &self.local_retention),
            ("policy.remote_retention.keep_last", &self.remote_retention),
        ] {
            if r.keep_last == 0 {
                return Err(InvalidInput::field(field, "must keep at least 1"));
            }
        }
        Ok(())
    }
}

/// Why, and by whom, a service's protection is paused: while it is, no RP
/// is scheduled and retention deletes none of its copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// The caller that paused it.
    pub by: String,
    /// What the operator said (maintenance, a storage migration, ...).
    pub reason: String,
}

/// Longest pause reason, in bytes.
pub const MAX_PAUSE_REASON_BYTES: usize = 1024;

impl Pause {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.by.is_empty() || self.by.len() > MAX_ACTOR_BYTES {
            return Err(InvalidInput::field(
                "by",
                format!("must be 1 to {MAX_ACTOR_BYTES} bytes"),
            ));
        }
        if self.reason.len() > MAX_PAUSE_REASON_BYTES {
            return Err(InvalidInput::field(
                "reason",
                format!("at most {MAX_PAUSE_REASON_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

/// The VM that stands for a service in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSlot {
    /// The CMP's id of the VM.
    pub cmp_vm_id: String,
    /// The VM's disks, as StorPool volume names, in the CMP's order.
    pub disks: Vec<String>,
    /// Whether this VM is running (the service's data is written here).
    pub active: bool,
}

impl VmSlot {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.cmp_vm_id.is_empty() || self.cmp_vm_id.len() > 256 {
            return Err(InvalidInput::field(
                "slot.cmp_vm_id",
                "must be 1 to 256 bytes",
            ));
        }
        if self.disks.is_empty() {
            return Err(InvalidInput::field("disks", "a VM needs at least one disk"));
        }
        if self.disks.len() > MAX_DISKS_PER_VM {
            return Err(InvalidInput::field(
                "disks",
                format!("at most {MAX_DISKS_PER_VM} disks"),
            ));
        }
        for d in &self.disks {
            validate_volume_name(d)?;
        }
        let mut sorted: Vec<&String> = self.disks.iter().collect();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(InvalidInput::field("disks", "a disk is listed twice"));
        }
        Ok(())
    }
}

/// One disk of a recovery point: the VM's volume and the snapshot taken of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RpDisk {
    pub volume: String,
    pub snapshot: String,
    /// StorPool's globalId of the snapshot; the same in every cluster it is
    /// copied to, so `~<global_id>` names the copy everywhere.
    pub global_id: String,
}

/// The state of one zone's copy of a recovery point. Written by that zone only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CopyState {
    /// Expected, not yet seen in the zone's cluster.
    Pending,
    /// Being received (`recoveringFromRemote`).
    Transferring,
    /// Every disk is present and complete.
    Complete,
    /// The copy could not be made; `error` is StorPool's error name.
    Failed { error: String },
    /// Removed by retention or by an operator.
    Deleted,
}

impl CopyState {
    pub fn is_complete(&self) -> bool {
        matches!(self, CopyState::Complete)
    }
}
