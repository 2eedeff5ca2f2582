//! Errors the emulator answers, in StorPool's envelope.

use crate::storpool::error_names as names;

/// An error answer: HTTP status plus StorPool's `{"error": {"name", "descr", "transient"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: u16,
    /// StorPool's error name.
    pub name: &'static str,
    /// Human-readable description.
    pub descr: String,
    /// Whether the client may retry.
    pub transient: bool,
}

impl ApiError {
    fn new(status: u16, name: &'static str, descr: impl Into<String>, transient: bool) -> Self {
        ApiError {
            status,
            name,
            descr: descr.into(),
            transient,
        }
    }

    /// `objectDoesNotExist`.
    pub fn not_found(descr: impl Into<String>) -> Self {
        Self::new(404, names::OBJECT_DOES_NOT_EXIST, descr, false)
    }

    /// `objectExists`.
    pub fn exists(descr: impl Into<String>) -> Self {
        Self::new(409, names::OBJECT_EXISTS, descr, false)
    }

    /// `invalidParam`.
    pub fn invalid(descr: impl Into<String>) -> Self {
        Self::new(400, names::INVALID_PARAM, descr, false)
    }

    /// `busy`, transient: what fault injection answers.
    pub fn busy(descr: impl Into<String>) -> Self {
        Self::new(503, names::BUSY, descr, true)
    }

    /// `insufficientResources`.
    pub fn insufficient(descr: impl Into<String>) -> Self {
        Self::new(507, names::INSUFFICIENT_RESOURCES, descr, false)
    }

    /// `authError`: missing or wrong token.
    pub fn auth(descr: impl Into<String>) -> Self {
        Self::new(401, names::AUTH_ERROR, descr, false)
    }

    /// The JSON body of the answer.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {"name": self.name, "descr": self.descr, "transient": self.transient}
        })
    }
}

impl From<crate::storpool::names::NameError> for ApiError {
    fn from(e: crate::storpool::names::NameError) -> Self {
        ApiError::invalid(e.to_string())
    }
}
