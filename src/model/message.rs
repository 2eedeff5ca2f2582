//! Control messages between zones: the shape rules every zone checks alike.

use super::InvalidInput;

/// Longest message kind (bytes).
pub const MAX_KIND_BYTES: usize = 64;
/// How long a message waits for its answer when the sender gives no ttl.
pub const DEFAULT_MESSAGE_TTL_MS: u64 = 24 * 3600 * 1000;
/// Shortest ttl a message may have.
pub const MIN_MESSAGE_TTL_MS: u64 = 1000;
/// Longest ttl a message may have.
pub const MAX_MESSAGE_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// The kind of the free-text messages of the first message format.
pub const TEXT_KIND: &str = "cmp.text";
/// Asks the addressee's node for an on-demand RP of the message's service.
pub const REQUEST_RP_KIND: &str = "drengine.request-rp";
/// Asks the addressee to mark its VM of the message's service inactive,
/// once its CMP confirms (`{"confirm": true}`).
pub const REQUEST_DEACTIVATE_KIND: &str = "drengine.request-deactivate";
/// The prefix of the kinds the node itself acts on.
pub const NODE_KIND_PREFIX: &str = "drengine.";

/// A kind is a short dotted name: at least two parts of lowercase letters,
/// digits and `-`, e.g. `cmp.keep-stopped`.
pub fn check_kind(kind: &str) -> Result<(), InvalidInput> {
    let parts: Vec<&str> = kind.split('.').collect();
    let part_ok = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if kind.len() > MAX_KIND_BYTES || parts.len() < 2 || !parts.iter().all(part_ok) {
        return Err(InvalidInput::field(
            "kind",
            format!(
                "a dotted name of lowercase letters, digits and '-', at most {MAX_KIND_BYTES} bytes (e.g. cmp.keep-stopped)"
            ),
        ));
    }
    Ok(())
}

/// A ttl within [`MIN_MESSAGE_TTL_MS`]..=[`MAX_MESSAGE_TTL_MS`].
pub fn check_ttl_ms(ttl_ms: u64) -> Result<(), InvalidInput> {
    if !(MIN_MESSAGE_TTL_MS..=MAX_MESSAGE_TTL_MS).contains(&ttl_ms) {
        return Err(InvalidInput::field(
            "ttl_s",
            format!(
                "from {} to {} seconds",
                MIN_MESSAGE_TTL_MS / 1000,
                MAX_MESSAGE_TTL_MS / 1000
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_short_dotted_names() {
        for ok in ["cmp.keep-stopped", "drengine.request-rp", "a.b", "x1.y-2.z"] {
            assert!(check_kind(ok).is_ok(), "{ok}");
        }
        let long = format!("cmp.{}", "a".repeat(MAX_KIND_BYTES));
        for bad in [
            "",
            "cmp",
            "cmp.",
            ".x",
            "Cmp.x",
            "cmp..x",
            "cmp.x y",
            long.as_str(),
        ] {
            assert_eq!(check_kind(bad).unwrap_err().field_name(), "kind", "{bad:?}");
        }
    }

    #[test]
    fn ttls_are_bounded() {
        assert!(check_ttl_ms(DEFAULT_MESSAGE_TTL_MS).is_ok());
        assert!(check_ttl_ms(MIN_MESSAGE_TTL_MS - 1).is_err());
        assert!(check_ttl_ms(MAX_MESSAGE_TTL_MS + 1).is_err());
        assert!(check_ttl_ms(u64::MAX).is_err());
    }
}
