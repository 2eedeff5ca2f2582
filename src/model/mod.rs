//! Domain types of the DR service: zones, services, policies, VM slots and
//! recovery points, with the validation every write goes through.
//!
//! Architecture invariant: this module is plain data and pure functions. It
//! does no I/O, reads no clock and knows nothing of events or storage.

mod ids;
pub mod message;
pub mod names;
mod service;

pub use ids::{validate_volume_name, MessageId, RpId, ServiceId, ZoneId};
pub use service::{CopyState, Pause, Policy, Retention, RpDisk, VmSlot, MAX_PAUSE_REASON_BYTES};

/// Longest VM metadata text a service may hold (bytes). The metadata is
/// copied into every recovery point, so it has to stay small.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Most disks one VM may have.
pub const MAX_DISKS_PER_VM: usize = 64;
/// Longest body of a control message between CMPs (bytes).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Longest actor name recorded with an event.
pub const MAX_ACTOR_BYTES: usize = 128;

/// Why a domain value was refused. Each variant names the field at fault so
/// the API can answer a 4xx that points at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl InvalidInput {
    pub fn field(field: &'static str, reason: impl Into<String>) -> Self {
        InvalidInput::Field {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the field at fault.
    pub fn field_name(&self) -> &'static str {
        match self {
            InvalidInput::Field { field, .. } => field,
        }
    }
}
