//! Deterministic StorPool names and tags for everything the engine creates.
//!
//! Every snapshot and volume the engine makes is named and tagged from the
//! service id, the RP id and the disk's index alone. A retried or resumed
//! call therefore asks for the very same name, StorPool answers
//! `objectExists`, and the engine knows the object is its own; a clean-up
//! finds its objects by tag. Nothing here does I/O.

use crate::model::{RpId, ServiceId, ZoneId};
use crate::storpool::Tags;

/// Tag naming the DR service an object belongs to.
pub const TAG_SERVICE: &str = "drengine.svc";
/// Tag naming the recovery point an object was made for or from.
pub const TAG_RP: &str = "drengine.rp";
/// Tag with the index of the VM disk the object stands for.
pub const TAG_DISK: &str = "drengine.disk";
/// Tag saying what the object is (see [`Kind`]).
pub const TAG_KIND: &str = "drengine.kind";

/// The error a copy is recorded `Failed` with, and a refusal shown with,
/// when an RP names a snapshot that the engine did not make for that
/// service and RP (see [`is_rp_snapshot`]).
pub const FOREIGN_SNAPSHOT: &str = "foreignSnapshot";

pub use crate::model::names::{object_name, rp_snapshot_name, Kind};

/// The tags of an object of `kind` made for disk `disk` of `rp`.
pub fn tags(kind: Kind, service: &ServiceId, rp: &RpId, disk: usize) -> Tags {
    let mut t = Tags::new();
    t.insert(TAG_SERVICE.into(), service.to_string());
    t.insert(TAG_RP.into(), rp.to_string());
    t.insert(TAG_DISK.into(), disk.to_string());
    t.insert(TAG_KIND.into(), kind.as_str().into());
    t
}

/// True if `tags` mark an object of `kind` made for `service` (and `rp`, if given).
pub fn is_ours(tags: &Tags, kind: Kind, service: &ServiceId, rp: Option<&RpId>) -> bool {
    tags.get(TAG_KIND).map(String::as_str) == Some(kind.as_str())
        && tags.get(TAG_SERVICE).map(String::as_str) == Some(service.as_str())
        && rp.is_none_or(|rp| tags.get(TAG_RP).map(String::as_str) == Some(rp.as_str()))
}

/// True if a snapshot called `name` and tagged `tags` is disk `disk` of
/// `rp` of `service` exactly as the engine makes it, in the zone that took
/// it or in a copy: the deterministic name (or `*<name>`, as StorPool shows
/// a snapshot being deleted) and every tag. Anything else is not the
/// engine's to delete, revert to, clone, export or count as a copy.
pub fn is_rp_snapshot(
    name: &str,
    tags: &Tags,
    service: &ServiceId,
    rp: &RpId,
    disk: usize,
) -> bool {
    let name = name.strip_prefix('*').unwrap_or(name);
    name == rp_snapshot_name(service, rp, disk)
        && is_ours(tags, Kind::Rp, service, Some(rp))
        && tags.get(TAG_DISK).map(String::as_str) == Some(disk.to_string().as_str())
}

/// A fresh RP id of `zone`, `<zone>.<ms>`, made unique against `taken` by
/// stepping the millisecond. The id only has to be unique per service; the
/// journal keeps it across a crash, so it is never made twice.
pub fn new_rp_id(zone: &ZoneId, now_ms: u64, taken: impl Fn(&RpId) -> bool) -> RpId {
    let mut ms = now_ms;
    loop {
        // A zone id, a dot and digits are always a valid RP id.
        if let Ok(id) = RpId::for_origin(zone, &ms.to_string()) {
            if !taken(&id) {
                return id;
            }
        }
        ms += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storpool::names::{validate_snapshot_name, validate_tag, validate_volume_name};

    fn svc(s: &str) -> ServiceId {
        ServiceId::new(s).unwrap()
    }

    #[test]
    fn names_are_deterministic_valid_and_distinct_per_kind() {
        let s = svc("web-1.prod_a");
        let rp = RpId::new("zone-a.1717000000123").unwrap();
        let a = rp_snapshot_name(&s, &rp, 0);
        assert_eq!(a, rp_snapshot_name(&s, &rp, 0));
        assert_eq!(a, "drrp:web-1.prod_a:zone-a.1717000000123:0");
        assert_ne!(a, rp_snapshot_name(&s, &rp, 1));
        let vm = object_name(Kind::Vm, &s, &rp, 0);
        let test = object_name(Kind::Test, &s, &rp, 0);
        assert_ne!(a, vm);
        assert_ne!(vm, test);
        validate_snapshot_name(&a).unwrap();
        validate_volume_name(&vm).unwrap();
        validate_volume_name(&test).unwrap();
        for (k, v) in tags(Kind::Rp, &s, &rp, 3) {
            validate_tag(&k, &v).unwrap();
        }
    }

    #[test]
    fn overlong_ids_are_hashed_within_the_limit() {
        let s = svc(&"s".repeat(64));
        let rp = RpId::new(format!("z.{}", "r".repeat(120))).unwrap();
        let n = object_name(Kind::Test, &s, &rp, 63);
        assert!(n.len() < crate::model::names::NAME_LIMIT_CHARS);
        validate_volume_name(&n).unwrap();
        assert_eq!(n, object_name(Kind::Test, &s, &rp, 63));
        assert_ne!(n, object_name(Kind::Test, &s, &rp, 62));
    }

    #[test]
    fn rp_ids_step_past_taken_ones() {
        let z = ZoneId::new("a").unwrap();
        let first = new_rp_id(&z, 1000, |_| false);
        assert_eq!(first.as_str(), "a.1000");
        let second = new_rp_id(&z, 1000, |id| id == &first);
        assert_eq!(second.as_str(), "a.1001");
        assert!(second.is_owned_by(&z));
    }

    #[test]
    fn ownership_by_tags() {
        let s = svc("x");
        let rp = RpId::new("a.1").unwrap();
        let t = tags(Kind::Test, &s, &rp, 0);
        assert!(is_ours(&t, Kind::Test, &s, None));
        assert!(is_ours(&t, Kind::Test, &s, Some(&rp)));
        assert!(!is_ours(&t, Kind::Vm, &s, None));
        assert!(!is_ours(&t, Kind::Test, &svc("y"), None));
    }

    #[test]
    fn an_rp_snapshot_is_ours_only_by_name_and_every_tag() {
        let (s, rp) = (svc("x"), RpId::new("a.1").unwrap());
        let name = rp_snapshot_name(&s, &rp, 1);
        let t = tags(Kind::Rp, &s, &rp, 1);
        assert!(is_rp_snapshot(&name, &t, &s, &rp, 1));
        assert!(is_rp_snapshot(&format!("*{name}"), &t, &s, &rp, 1));
        assert!(!is_rp_snapshot("backup-of-db", &t, &s, &rp, 1));
        assert!(!is_rp_snapshot(&name, &Tags::new(), &s, &rp, 1));
        assert!(!is_rp_snapshot(
            &name,
            &tags(Kind::Rp, &s, &rp, 0),
            &s,
            &rp,
            1
        ));
        let other = RpId::new("a.2").unwrap();
        assert!(!is_rp_snapshot(&name, &t, &s, &other, 1));
    }
}
