//! The StorPool names a recovery point's objects must have, derived from
//! the service id, the RP id and the disk index alone, and the shape of a
//! StorPool globalId.
//!
//! Both sides need them: the engine names what it creates with them, and
//! the replica's rules refuse an RP whose disks name anything else (an RP
//! event is a claim about StorPool objects, and a peer must not be able to
//! point another zone's engine at objects it did not make). Pure.

use super::{RpId, ServiceId};

/// StorPool names must be shorter than this.
pub const NAME_LIMIT_CHARS: usize = 200;

/// Longest globalId accepted in a recovery point (StorPool's are a few
/// dozen characters; this only bounds what a peer may send).
pub const MAX_GLOBAL_ID_CHARS: usize = 96;

/// What an object made by the engine is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A snapshot of a recovery point (in the zone that took it or a copy).
    Rp,
    /// A volume a VM runs on after a failover or a migration.
    Vm,
    /// A clone made by a test failover, removed by its clean-up.
    Test,
}

impl Kind {
    /// The value of the kind tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rp => "rp",
            Kind::Vm => "vm",
            Kind::Test => "test",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Rp => "drrp",
            Kind::Vm => "drvm",
            Kind::Test => "drtest",
        }
    }
}

/// The name of disk `disk` of `rp`'s object of `kind`:
/// `<prefix>:<service>:<rp>:<disk>`. Ids too long to fit StorPool's limit
/// are replaced by a hash of both, which is just as deterministic.
pub fn object_name(kind: Kind, service: &ServiceId, rp: &RpId, disk: usize) -> String {
    let name = format!("{}:{service}:{rp}:{disk}", kind.prefix());
    if name.len() < NAME_LIMIT_CHARS {
        return name;
    }
    let mut h = blake3::Hasher::new();
    h.update(service.as_str().as_bytes());
    h.update(&[0]);
    h.update(rp.as_str().as_bytes());
    let hex = h.finalize().to_hex();
    format!("{}:h{}:{disk}", kind.prefix(), &hex[..40])
}

/// The snapshot of disk `disk` of `rp`: the same name in the zone that took
/// it and in every zone that holds a copy.
pub fn rp_snapshot_name(service: &ServiceId, rp: &RpId, disk: usize) -> String {
    object_name(Kind::Rp, service, rp, disk)
}

/// True when `s` is a StorPool globalId: `loc.cluster.serial`, three parts
/// of lower-case letters and digits.
pub fn is_global_id(s: &str) -> bool {
    let mut parts = 0;
    let well_formed = s.split('.').all(|p| {
        parts += 1;
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    well_formed && parts == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_have_three_lower_case_parts() {
        assert!(is_global_id("b1x.a.9z"));
        assert!(!is_global_id("B1x.a.9z"));
        assert!(!is_global_id("a.b"));
        assert!(!is_global_id("a.b.c.d"));
        assert!(!is_global_id("a..c"));
        assert!(!is_global_id("a.b.c-"));
        assert!(!is_global_id(""));
    }
}
