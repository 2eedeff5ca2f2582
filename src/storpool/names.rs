//! StorPool's naming rules, in one place.
//!
//! The client checks names before sending them (a bad name becomes a typed error
//! instead of a confusing answer from the cluster, and can never smuggle a `/`
//! into a request path); the emulator uses the very same functions to decide what
//! to refuse with `invalidParam`. The rules follow StorPool's Python bindings
//! (`sptypes.py`): volume names `[A-Za-z0-9_\-.:]+`, snapshot names may also
//! contain `@`, fewer than 200 characters, `list` and `status` reserved, and
//! `~<globalId>` accepted wherever an existing object is named.

use std::fmt;

/// Names must be shorter than this many characters (StorPool's `VOLUME_NAME_SIZE`).
pub const NAME_SIZE_CHARS: usize = 200;

/// Remote location names must be shorter than this (StorPool's `REMOTE_LOCATION_NAME_SIZE`).
pub const LOCATION_NAME_SIZE_CHARS: usize = 64;

/// Names StorPool reserves for its own CLI verbs.
const RESERVED: [&str; 2] = ["list", "status"];

/// Why a name was refused; the text is meant for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// What kind of name was checked (e.g. "volume name").
    pub kind: &'static str,
    /// The offending value.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.kind, self.value, self.reason)
    }
}

impl std::error::Error for NameError {}

fn err(kind: &'static str, value: &str, reason: &'static str) -> NameError {
    NameError {
        kind,
        value: value.to_owned(),
        reason,
    }
}

fn is_base_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn check_name(
    kind: &'static str,
    value: &str,
    extra: &[char],
    size: usize,
) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(err(kind, value, "must not be empty"));
    }
    if !value.chars().all(|c| is_base_char(c) || extra.contains(&c)) {
        return Err(err(
            kind,
            value,
            "contains a character outside [A-Za-z0-9_-.:]",
        ));
    }
    if RESERVED.contains(&value) {
        return Err(err(kind, value, "is reserved (list, status)"));
    }
    if value.chars().count() >= size {
        return Err(err(kind, value, "is too long (199 characters at most)"));
    }
    Ok(())
}

/// True when `s` is a StorPool globalId: `loc.cluster.serial`, lower-case letters and digits.
/// (The rule lives in [`crate::model::names`], which the replica's rules use too.)
pub fn is_global_id(s: &str) -> bool {
    crate::model::names::is_global_id(s)
}

/// The `~<globalId>` form that StorPool accepts wherever a volume or snapshot name is expected.
///
/// The DR engine uses it to address a snapshot copy in any cluster without knowing
/// the local name it got there.
pub fn global_id_ref(global_id: &str) -> String {
    debug_assert!(is_global_id(global_id), "not a globalId: {global_id}");
    format!("~{global_id}")
}

/// If `s` is a `~<globalId>` reference, the globalId inside it.
pub fn as_global_id_ref(s: &str) -> Option<&str> {
    s.strip_prefix('~').filter(|g| is_global_id(g))
}

/// Checks a name for a new volume.
pub fn validate_volume_name(name: &str) -> Result<(), NameError> {
    check_name("volume name", name, &[], NAME_SIZE_CHARS)
}

/// Checks a name for a new snapshot (volume characters plus `@`).
pub fn validate_snapshot_name(name: &str) -> Result<(), NameError> {
    check_name("snapshot name", name, &['@'], NAME_SIZE_CHARS)
}

/// Checks a reference to an existing volume: a name or `~<globalId>`.
pub fn validate_volume_ref(r: &str) -> Result<(), NameError> {
    if as_global_id_ref(r).is_some() {
        return Ok(());
    }
    let plain = r.strip_prefix('#').unwrap_or(r);
    check_name("volume name", plain, &[], NAME_SIZE_CHARS)
}

/// Checks a reference to an existing snapshot: a name (possibly `*`-prefixed, as StorPool
/// shows snapshots pending deletion) or `~<globalId>`.
pub fn validate_snapshot_ref(r: &str) -> Result<(), NameError> {
    if as_global_id_ref(r).is_some() {
        return Ok(());
    }
    let plain = r.strip_prefix('*').unwrap_or(r);
    check_name("snapshot name", plain, &['@'], NAME_SIZE_CHARS)
}

/// Checks a remote location name.
pub fn validate_location_name(name: &str) -> Result<(), NameError> {
    check_name("location name", name, &[], LOCATION_NAME_SIZE_CHARS)
}

/// Checks one tag: the key like a volume name, the value the same characters but possibly empty
/// (an empty value removes the tag in an update).
pub fn validate_tag(key: &str, value: &str) -> Result<(), NameError> {
    if key.is_empty() || !key.chars().all(is_base_char) || key.chars().count() >= NAME_SIZE_CHARS {
        return Err(err(
            "tag name",
            key,
            "must be 1-199 characters of [A-Za-z0-9_-.:]",
        ));
    }
    if !value.chars().all(is_base_char) || value.chars().count() >= NAME_SIZE_CHARS {
        return Err(err(
            "tag value",
            value,
            "must be 0-199 characters of [A-Za-z0-9_-.:]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_storpool_rules() {
        assert!(validate_volume_name("svc-1.disk:0_a").is_ok());
        assert!(validate_volume_name("a@b").is_err());
        assert!(validate_snapshot_name("a@b").is_ok());
        assert!(validate_volume_name("list").is_err());
        assert!(validate_snapshot_name("status").is_err());
        assert!(validate_volume_name("").is_err());
        assert!(validate_volume_name("a/b").is_err());
        assert!(validate_volume_name(&"x".repeat(199)).is_ok());
        assert!(validate_volume_name(&"x".repeat(200)).is_err());
    }

    #[test]
    fn global_id_refs_are_accepted_as_names() {
        assert!(is_global_id("b1x.a.9z"));
        assert!(!is_global_id("B1x.a.9z"));
        assert!(!is_global_id("a.b"));
        assert!(validate_volume_ref("~b1x.a.9z").is_ok());
        assert!(validate_snapshot_ref("~b1x.a.9z").is_ok());
        assert!(validate_snapshot_ref("*deleted@1").is_ok());
        assert_eq!(as_global_id_ref("~b1x.a.9z"), Some("b1x.a.9z"));
        assert_eq!(global_id_ref("b1x.a.9z"), "~b1x.a.9z");
    }

    #[test]
    fn tags_may_have_empty_values() {
        assert!(validate_tag("drengine.rp", "").is_ok());
        assert!(validate_tag("", "x").is_err());
        assert!(validate_tag("k", "a b").is_err());
    }
}
