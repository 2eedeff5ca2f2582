//! What a command's failure means to the shell: every `ClientError` (and
//! every local mistake) turned into one of the documented exit codes.

use super::client::ClientError;
use reqwest::StatusCode;
use serde_json::Value;

/// Exit codes of every `drengine` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// The server refused or failed the request (any other 4xx or 5xx).
    Server = 1,
    /// Bad command line (clap's own code for usage errors).
    Usage = 2,
    /// The service, recovery point or message does not exist (404, 410).
    NotFound = 3,
    /// Conflict with the current state or a stale version (409, 412).
    Conflict = 4,
    /// The node could not be reached.
    Unreachable = 5,
}

impl ExitCode {
    pub fn for_status(s: StatusCode) -> ExitCode {
        match s.as_u16() {
            200..=299 => ExitCode::Ok,
            404 | 410 => ExitCode::NotFound,
            409 | 412 => ExitCode::Conflict,
            _ => ExitCode::Server,
        }
    }
}

/// Why a command failed, and the exit code that says so.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: ExitCode,
    pub message: String,
    /// The server's JSON error answer as sent, if it sent one: `--json`
    /// prints it.
    pub body: Option<Value>,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: ExitCode::Usage,
            message: message.into(),
            body: None,
        }
    }
    pub fn other(message: impl Into<String>) -> Self {
        CliError {
            code: ExitCode::Server,
            message: message.into(),
            body: None,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::CaCert { .. } => ExitCode::Usage,
            ClientError::Unreachable { .. } | ClientError::FeedBroke(_) => ExitCode::Unreachable,
            ClientError::Api { status, .. } => ExitCode::for_status(*status),
            ClientError::Build(_)
            | ClientError::Encode(_)
            | ClientError::Decode { .. }
            | ClientError::FeedOversized => ExitCode::Server,
        };
        let body = match &e {
            ClientError::Api { text, .. } => serde_json::from_str::<Value>(text)
                .ok()
                .filter(|j| !j.is_null()),
            _ => None,
        };
        let message = match &e {
            ClientError::CaCert { .. } => format!("--ca-cert {e}"),
            _ => e.to_string(),
        };
        CliError {
            code,
            message,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::{ErrorBody, ErrorDetail};

    fn api(status: u16, text: &str) -> CliError {
        ClientError::from_answer(StatusCode::from_u16(status).unwrap(), text.to_string()).into()
    }

    #[test]
    fn each_status_has_its_documented_exit_code() {
        let body = r#"{"error":{"code":"x","message":"m"}}"#;
        let codes: Vec<ExitCode> = [404, 410, 409, 412, 400, 401, 403, 422, 500, 502, 503]
            .iter()
            .map(|s| api(*s, body).code)
            .collect();
        use ExitCode::*;
        assert_eq!(
            codes,
            [
                NotFound, NotFound, Conflict, Conflict, Server, Server, Server, Server, Server,
                Server, Server
            ]
        );
    }

    #[test]
    fn the_api_error_body_is_kept_and_told() {
        let sent = ErrorBody {
            error: ErrorDetail {
                code: "precondition_failed".into(),
                message: "the service changed".into(),
                field: Some("If-Match".into()),
            },
        };
        let text = serde_json::to_string(&sent).unwrap();
        let e = ClientError::from_answer(StatusCode::PRECONDITION_FAILED, text);
        match &e {
            ClientError::Api { status, body, .. } => {
                assert_eq!(*status, StatusCode::PRECONDITION_FAILED);
                assert_eq!(body.as_ref(), Some(&sent));
            }
            other => panic!("{other:?}"),
        }
        let cli = CliError::from(e);
        assert_eq!(cli.code, ExitCode::Conflict);
        assert_eq!(
            cli.message,
            "the service changed (precondition_failed, field If-Match)"
        );
        assert_eq!(cli.body, Some(serde_json::to_value(&sent).unwrap()));
    }

    #[test]
    fn an_answer_that_is_not_an_api_error_is_shown_as_sent() {
        let cli = api(502, "bad gateway");
        assert_eq!(cli.code, ExitCode::Server);
        assert_eq!(cli.message, "HTTP 502 Bad Gateway: bad gateway");
        assert_eq!(cli.body, None);
    }

    #[tokio::test]
    async fn a_node_nobody_listens_for_is_unreachable() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let c = super::super::Client::new(&base, None, None).unwrap();
        let e = CliError::from(c.status().await.unwrap_err());
        assert_eq!(e.code, ExitCode::Unreachable);
        assert!(e.message.starts_with("cannot reach"), "{}", e.message);
    }
}
