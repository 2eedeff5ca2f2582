//! The one error type of the StorPool client.

use super::names::NameError;

/// StorPool error names the DR engine branches on (as StorPool spells them).
pub mod names {
    /// The named volume, snapshot, location or export does not exist.
    pub const OBJECT_DOES_NOT_EXIST: &str = "objectDoesNotExist";
    /// The object already exists (a retried create, or a repeated `SnapshotFromRemote`).
    pub const OBJECT_EXISTS: &str = "objectExists";
    /// The request was malformed or not allowed in the current state.
    pub const INVALID_PARAM: &str = "invalidParam";
    /// The cluster is busy; StorPool marks it transient.
    pub const BUSY: &str = "busy";
    /// Out of space or another resource.
    pub const INSUFFICIENT_RESOURCES: &str = "insufficientResources";
    /// The API token was missing or wrong.
    pub const AUTH_ERROR: &str = "authError";
}

/// Everything that can go wrong when talking to StorPool.
///
/// A StorPool error answer keeps StorPool's own `name` and `descr`, so the engine can
/// branch on the name (`objectExists` on a retried create means "already done") and
/// show the description on the service unchanged.
#[derive(Debug, thiserror::Error)]
pub enum StorPoolError {
    /// StorPool answered with an error envelope.
    #[error("StorPool {call}: {name}: {descr}")]
    Api {
        /// The API call, e.g. `VolumeCreate`.
        call: &'static str,
        /// StorPool's error name, e.g. `objectDoesNotExist`.
        name: String,
        /// StorPool's human-readable description.
        descr: String,
        /// Whether StorPool marked the error as transient (worth retrying).
        transient: bool,
        /// The HTTP status of the answer.
        http_status: u16,
    },
    /// The request did not get an answer: connection refused or reset, or timed out.
    #[error("StorPool {call}: no answer from {url}: {source}")]
    Transport {
        /// The API call.
        call: &'static str,
        /// The URL that was requested.
        url: String,
        /// The underlying HTTP client error.
        #[source]
        source: reqwest::Error,
    },
    /// An answer came, but not in StorPool's envelope or not in the expected shape.
    #[error("StorPool {call}: unexpected answer (HTTP {http_status}): {detail}")]
    Decode {
        /// The API call.
        call: &'static str,
        /// The HTTP status of the answer.
        http_status: u16,
        /// What did not parse.
        detail: String,
    },
    /// A name or tag given to the client breaks StorPool's rules; nothing was sent.
    #[error("StorPool {call}: {source}")]
    InvalidName {
        /// The API call.
        call: &'static str,
        /// What is wrong with the name.
        #[source]
        source: NameError,
    },
    /// The client configuration is unusable.
    #[error("StorPool configuration: {0}")]
    Config(String),
}

impl StorPoolError {
    /// StorPool's error name, if StorPool answered with an error.
    pub fn api_name(&self) -> Option<&str> {
        match self {
            StorPoolError::Api { name, .. } => Some(name),
            _ => None,
        }
    }

    /// True for `objectDoesNotExist`: the thing looked up or acted on is not there.
    pub fn is_not_found(&self) -> bool {
        self.api_name() == Some(names::OBJECT_DOES_NOT_EXIST)
    }

    /// True for `objectExists`: a create that was already done (a retry treats it as success).
    pub fn is_exists(&self) -> bool {
        self.api_name() == Some(names::OBJECT_EXISTS)
    }

    /// True when trying again later may succeed: StorPool said `transient`, or no answer came.
    pub fn is_transient(&self) -> bool {
        match self {
            StorPoolError::Api { transient, .. } => *transient,
            StorPoolError::Transport { .. } => true,
            _ => false,
        }
    }
}
