//! Bearer tokens and roles. A token's `name` is the actor recorded in every
//! event written with it, so the event log says who did what.

use super::error::ApiError;
use super::ApiState;
use super::{Role, TokenEntry};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

/// The configured tokens, kept as hashes so that comparing a presented
/// token takes the same time whichever byte differs.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(blake3::Hash, Caller)>,
}

impl Tokens {
    pub fn new(entries: &[TokenEntry]) -> Self {
        Tokens {
            entries: entries
                .iter()
                .map(|t| {
                    (
                        blake3::hash(t.token.as_bytes()),
                        Caller {
                            name: t.name.clone(),
                            role: t.role,
                        },
                    )
                })
                .collect(),
        }
    }

    fn find(&self, token: &str) -> Option<&Caller> {
        let h = blake3::hash(token.as_bytes());
        // blake3::Hash compares in constant time.
        self.entries.iter().find(|(t, _)| *t == h).map(|(_, c)| c)
    }
}

/// Who made the request, from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The actor recorded with every write.
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuses (403) unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token {:?} has role {}, this needs {}",
                self.name,
                role_name(self.role),
                role_name(role)
            )))
        }
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Read => "read",
        Role::Cmp => "cmp",
        Role::Operator => "operator",
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| ApiError::unauthorized("expected \"Authorization: Bearer <token>\""))?;
        state
            .tokens()
            .find(token)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }
}

/// May read `/metrics` (which names every service, its RPO and the peer
/// topology): anyone when `api.metrics_public`, otherwise a caller with a
/// token of any role (read is enough).
pub struct MetricsReader;

impl FromRequestParts<ApiState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.metrics_public() {
            return Ok(MetricsReader);
        }
        Caller::from_request_parts(parts, state)
            .await?
            .require(Role::Read)?;
        Ok(MetricsReader)
    }
}
