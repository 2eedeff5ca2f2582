//! The API's one error shape and the one place where every error kind of the
//! layers below is given its HTTP status.
//!
//! Every answer that is not 2xx is `{"error": {"code", "message", "field"?}}`.
//! Bad input always answers 4xx naming the field; 5xx is kept for the node's
//! own failures (storage, a stopped writer, StorPool).

use crate::engine::EngineError;
use crate::model::InvalidInput;
use crate::replica::{Rejected, WriteError};
use crate::store::{DbError, StoreError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    #[schema(inline)]
    pub error: ErrorDetail,
}

/// What went wrong, for people (`message`) and programs (`code`, `field`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable kind, e.g. `invalid_input`, `not_found`.
    pub code: String,
    pub message: String,
    /// The request field at fault (a JSON path, header or parameter name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// An error answer: a status and the JSON body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Sent as `Retry-After` (seconds) with a 503 that will pass.
    pub retry_after_s: Option<u32>,
}

/// What a client is told to wait before retrying a write refused while the
/// node rebuilds.
pub const REBUILD_RETRY_AFTER_S: u32 = 1;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
        }
    }

    /// The node cannot sign yet (it is rebuilding after a data loss or a
    /// restart): 503, retry shortly.
    pub fn rebuilding(message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "rebuilding", message);
        e.retry_after_s = Some(REBUILD_RETRY_AFTER_S);
        e
    }

    /// Names the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Malformed request: JSON syntax, wrong types, unknown fields, bad ids.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).field(field)
    }

    /// Well-formed but refused by validation.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message).field(field)
    }

    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message).field(field)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// The version token in `If-Match` is not the current one.
    pub fn stale(current: &str) -> Self {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!("the service changed; its version is now {current}"),
        )
        .field("If-Match")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).field("Authorization")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).field("Authorization")
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, error = %self.message, "request failed");
        }
        let mut res = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(s) = self.retry_after_s {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        res
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::invalid(e.field_name(), e.to_string())
    }
}

impl From<Rejected> for ApiError {
    fn from(e: Rejected) -> Self {
        match e {
            Rejected::UnknownService(_) => ApiError::not_found("service", e.to_string()),
            Rejected::UnknownMessage(_) => ApiError::not_found("message", e.to_string()),
            Rejected::NotOwner { .. } => ApiError::conflict("not_owner", e.to_string()),
            Rejected::Exists(_) => ApiError::conflict("exists", e.to_string()),
            Rejected::Expired(_) => ApiError::conflict("expired", e.to_string()),
            Rejected::Invalid(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                e.to_string(),
            ),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid(i) => i.into(),
            WriteError::NoSuchService(_) => ApiError::not_found("service", e.to_string()),
            WriteError::Deleted(_) => {
                ApiError::new(StatusCode::GONE, "deleted", e.to_string()).field("service")
            }
            WriteError::NoSuchRp(_) => ApiError::not_found("rp", e.to_string()),
            WriteError::NoSuchMessage(_) => ApiError::not_found("message", e.to_string()),
            WriteError::NotAddressee { .. } => ApiError::conflict("not_addressee", e.to_string()),
            WriteError::Answered(_) => ApiError::conflict("already_acked", e.to_string()),
            WriteError::Exists(_) => ApiError::conflict("exists", e.to_string()),
            WriteError::Rejected(r) => r.into(),
            WriteError::Rebuilding { .. } => ApiError::rebuilding(e.to_string()),
            WriteError::IdempotencyMismatch(_) => {
                ApiError::conflict("idempotency_mismatch", e.to_string()).field("id")
            }
            WriteError::Stale { current } => ApiError::stale(&current),
            WriteError::Changed(_) => ApiError::conflict("changed", e.to_string()),
            WriteError::NoVm { .. } => ApiError::conflict("no_vm", e.to_string()).field("zone"),
            WriteError::NoConflict { .. } => {
                ApiError::conflict("no_conflict", e.to_string()).field("field")
            }
            WriteError::SidesChanged => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                e.to_string(),
            )
            .field("seen"),
            WriteError::NoKey => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "read_only",
                "this node has no signing key and cannot write",
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Write(w) => w.into(),
            DbError::Store(s) => s.into(),
            DbError::Snapshot(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            }
            DbError::Poisoned | DbError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            EngineError::Precondition(m) => ApiError::conflict("precondition", m),
            EngineError::Invalid(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", m)
            }
            EngineError::InvalidInput(i) => ApiError::from(i),
            EngineError::StorPool { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "storpool", e.to_string())
            }
            EngineError::NotRunning => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_not_running",
                e.to_string(),
            ),
            EngineError::Storage(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", m),
            EngineError::Rebuilding => ApiError::rebuilding(e.to_string()),
        }
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
