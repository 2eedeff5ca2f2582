//! Identifiers. Each is a validated string newtype: once constructed it is
//! known to be well formed, so the rest of the code never re-checks it.

use super::InvalidInput;
use serde::{Deserialize, Serialize};
use std::fmt;

fn check_chars(
    field: &'static str,
    s: &str,
    max_len: usize,
    extra: &[char],
) -> Result<(), InvalidInput> {
    if s.is_empty() {
        return Err(InvalidInput::field(field, "must not be empty"));
    }
    if s.len() > max_len {
        return Err(InvalidInput::field(
            field,
            format!("longer than {max_len} characters"),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(c)))
    {
        return Err(InvalidInput::field(
            field,
            format!("character {c:?} is not allowed in {s:?}"),
        ));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $extra:expr) => {
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
        )]
        $(#[$doc])*
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidInput> {
                let s = s.into();
                check_chars($field, &s, $max, $extra)?;
                Ok($name(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(s: String) -> Result<Self, InvalidInput> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                $name::new(s)
            }
        }
    };
}

string_id!(
    /// A zone (site): lower-case letters, digits and `-`, up to 63 characters.
    #[schema(pattern = "^[A-Za-z0-9-]{1,63}$")]
    ZoneId, "zone", 63, &['-']
);
string_id!(
    /// A DR service, the same in every zone. Letters, digits, `-`, `_`, `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    ServiceId, "service", 64, &['-', '_', '.']
);
string_id!(
    /// A recovery point of one service. Always `<origin zone>.<suffix>`, so
    /// that ids made by different zones can never collide and the owner of an
    /// RP can be read off its id alone.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    RpId, "rp", 128, &['-', '_', '.']
);
string_id!(
    /// A control message between CMPs: `<origin zone>.<seq>` of its event.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,96}$")]
    MessageId, "message", 96, &['-', '_', '.']
);

impl ZoneId {
    /// Zone ids are lower case so that they are safe in StorPool names and tags.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(InvalidInput::field("zone", "must be lower case"));
        }
        ZoneId::new(s)
    }
}

impl RpId {
    /// The RP id `<origin>.<suffix>`.
    pub fn for_origin(origin: &ZoneId, suffix: &str) -> Result<Self, InvalidInput> {
        RpId::new(format!("{origin}.{suffix}"))
    }

    /// True if `zone` is the owner named in this id.
    pub fn is_owned_by(&self, zone: &ZoneId) -> bool {
        self.0
            .strip_prefix(zone.as_str())
            .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
    }
}

/// Validates a StorPool volume name: `[A-Za-z0-9_\-.:]+`, under 200
/// characters, and not one of the reserved words.
pub fn validate_volume_name(name: &str) -> Result<(), InvalidInput> {
    check_chars("disks", name, 199, &['_', '-', '.', ':'])?;
    if name == "list" || name == "status" {
        return Err(InvalidInput::field(
            "disks",
            format!("{name:?} is reserved"),
        ));
    }
    Ok(())
}
