//! [`ClientError`]: every way a call to a Tandem server can fail, built once from
//! [`tonic::Status`].

use std::error::Error as _;

/// Metadata key carrying the server's stable snake_case error code on every error status
/// (see `api/proto/tandem/v1/common.proto`).
pub const ERROR_CODE_KEY: &str = "tandem-error-code";

/// A failed call to a Tandem server.
///
/// Variants follow the gRPC status codes the API documents; `error_code` is the server's stable
/// snake_case code from the `tandem-error-code` metadata key, when it sent one. Transport
/// failures (connection refused, server down, broken connection) are [`ClientError::Unavailable`]
/// and name the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// `NOT_FOUND`: an unknown run, workflow or lease.
    #[error("not found: {message}")]
    NotFound {
        /// The server's message.
        message: String,
        /// The `tandem-error-code` metadata value, if any.
        error_code: Option<String>,
    },
    /// `INVALID_ARGUMENT`: the server refused the request; the message names the field path and
    /// the limit (for a workflow, every error with file:line:column).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The server's message.
        message: String,
        /// The `tandem-error-code` metadata value, if any.
        error_code: Option<String>,
    },
    /// `FAILED_PRECONDITION`: the request is valid but the state does not allow it (e.g.
    /// completing an attempt that already timed out).
    #[error("failed precondition: {message}")]
    FailedPrecondition {
        /// The server's message.
        message: String,
        /// The `tandem-error-code` metadata value, if any.
        error_code: Option<String>,
    },
    /// `ALREADY_EXISTS`.
    #[error("already exists: {message}")]
    AlreadyExists {
        /// The server's message.
        message: String,
        /// The `tandem-error-code` metadata value, if any.
        error_code: Option<String>,
    },
    /// `UNAVAILABLE`: the server cannot be reached (connection refused, server down, broken
    /// connection) or reported itself unavailable (its store is unreachable). Retrying later
    /// may succeed.
    #[error("the Tandem server at {endpoint} is unavailable: {message}")]
    Unavailable {
        /// The server's address (`http://host:port`), empty if unknown.
        endpoint: String,
        /// What failed (transport error chain or the server's message).
        message: String,
        /// The `tandem-error-code` metadata value, if any.
        error_code: Option<String>,
    },
    /// Any other status (`INTERNAL`, `DEADLINE_EXCEEDED`, `CANCELLED`, ...).
    #[error("{} ({code:?}): {message}", code.description())]
    Other {
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's (or transport's) message.
        message: String,
        /// The `tandem-error-code` metadata value, if any.
        error_code: Option<String>,
    },
    /// The endpoint is not a usable `http://host:port` address (checked before any call).
    #[error("invalid server address `{endpoint}`: {message}")]
    InvalidEndpoint {
        /// The address as given.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },
    /// The server answered with something this client cannot interpret (e.g. a run state it
    /// does not know: a newer server), or broke the API's contract.
    #[error("unexpected reply from the Tandem server at {endpoint}: {message}")]
    Protocol {
        /// The server's address.
        endpoint: String,
        /// What was expected and what was found.
        message: String,
    },
}

impl ClientError {
    /// The gRPC code this error corresponds to (`Unavailable` for transport failures,
    /// `InvalidArgument` for a bad endpoint, `Internal` for protocol errors).
    pub fn code(&self) -> tonic::Code {
        match self {
            ClientError::NotFound { .. } => tonic::Code::NotFound,
            ClientError::InvalidArgument { .. } | ClientError::InvalidEndpoint { .. } => {
                tonic::Code::InvalidArgument
            }
            ClientError::FailedPrecondition { .. } => tonic::Code::FailedPrecondition,
            ClientError::AlreadyExists { .. } => tonic::Code::AlreadyExists,
            ClientError::Unavailable { .. } => tonic::Code::Unavailable,
            ClientError::Other { code, .. } => *code,
            ClientError::Protocol { .. } => tonic::Code::Internal,
        }
    }

    /// The server's stable snake_case error code (`tandem-error-code` metadata), if it sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ClientError::NotFound { error_code, .. }
            | ClientError::InvalidArgument { error_code, .. }
            | ClientError::FailedPrecondition { error_code, .. }
            | ClientError::AlreadyExists { error_code, .. }
            | ClientError::Unavailable { error_code, .. }
            | ClientError::Other { error_code, .. } => error_code.as_deref(),
            ClientError::InvalidEndpoint { .. } | ClientError::Protocol { .. } => None,
        }
    }

    /// True for failures where the same call may succeed later without any change: the server
    /// is unreachable or overloaded, or the call was cut off (`UNAVAILABLE`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`, `ABORTED`, `CANCELLED`, `UNKNOWN` — the latter is what a broken
    /// HTTP/2 connection surfaces as).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::ResourceExhausted
                | tonic::Code::Aborted
                | tonic::Code::Cancelled
                | tonic::Code::Unknown
        ) && !matches!(self, ClientError::Protocol { .. })
    }

    /// Fills in the server's address of an [`ClientError::Unavailable`] or
    /// [`ClientError::Protocol`] error built without one (as [`From<tonic::Status>`] does).
    pub fn at(mut self, address: &str) -> ClientError {
        match &mut self {
            ClientError::Unavailable { endpoint, .. } | ClientError::Protocol { endpoint, .. }
                if endpoint.is_empty() =>
            {
                *endpoint = address.to_string();
            }
            _ => {}
        }
        self
    }

    /// A transport error of `endpoint` (connecting failed, ...), as [`ClientError::Unavailable`].
    pub(crate) fn transport(endpoint: &str, error: &tonic::transport::Error) -> ClientError {
        ClientError::Unavailable {
            endpoint: endpoint.to_string(),
            message: error_chain(error),
            error_code: None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    /// Maps a status by its code. The endpoint of `Unavailable` is left empty; the SDK's calls
    /// fill it in with [`ClientError::at`].
    fn from(status: tonic::Status) -> ClientError {
        let error_code = status
            .metadata()
            .get(ERROR_CODE_KEY)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let message = status_message(&status);
        match status.code() {
            tonic::Code::NotFound => ClientError::NotFound {
                message,
                error_code,
            },
            tonic::Code::InvalidArgument => ClientError::InvalidArgument {
                message,
                error_code,
            },
            tonic::Code::FailedPrecondition => ClientError::FailedPrecondition {
                message,
                error_code,
            },
            tonic::Code::AlreadyExists => ClientError::AlreadyExists {
                message,
                error_code,
            },
            tonic::Code::Unavailable => ClientError::Unavailable {
                endpoint: String::new(),
                message,
                error_code,
            },
            code => ClientError::Other {
                code,
                message,
                error_code,
            },
        }
    }
}

/// The status message followed by the messages of its source chain that add something (a
/// transport status says "tcp connect error"; its source says "Connection refused").
fn status_message(status: &tonic::Status) -> String {
    let mut message = status.message().to_string();
    let mut source = status.source();
    while let Some(error) = source {
        let text = error.to_string();
        if !is_filler(&text) && !message.contains(&text) {
            if message.is_empty() {
                message = text;
            } else {
                message = format!("{message}: {text}");
            }
        }
        source = error.source();
    }
    if message.is_empty() {
        message = status.code().description().to_string();
    }
    message
}

/// An error's message followed by those of its sources, `: `-separated, without repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut next = Some(error);
    while let Some(inner) = next {
        let text = inner.to_string();
        if !is_filler(&text) && !message.contains(&text) {
            if message.is_empty() {
                message = text;
            } else {
                message = format!("{message}: {text}");
            }
        }
        next = inner.source();
    }
    if message.is_empty() {
        message = error.to_string();
    }
    message
}

/// Texts of wrapping errors that say nothing (tonic's "transport error").
fn is_filler(text: &str) -> bool {
    text.is_empty() || text == "transport error"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_code(mut status: tonic::Status, code: &str) -> tonic::Status {
        status.metadata_mut().insert(
            ERROR_CODE_KEY,
            code.parse().expect("an ASCII metadata value"),
        );
        status
    }

    #[test]
    fn maps_each_documented_code() {
        let cases = [
            (
                tonic::Status::not_found("run r1 not found"),
                tonic::Code::NotFound,
            ),
            (
                tonic::Status::invalid_argument("params: too many"),
                tonic::Code::InvalidArgument,
            ),
            (
                tonic::Status::failed_precondition("attempt timed out"),
                tonic::Code::FailedPrecondition,
            ),
            (
                tonic::Status::already_exists("dup"),
                tonic::Code::AlreadyExists,
            ),
            (
                tonic::Status::unavailable("store down"),
                tonic::Code::Unavailable,
            ),
            (tonic::Status::internal("boom"), tonic::Code::Internal),
        ];
        for (status, code) in cases {
            let message = status.message().to_string();
            let error = ClientError::from(status);
            assert_eq!(error.code(), code, "{error:?}");
            assert!(error.to_string().contains(&message), "{error}");
        }
    }

    #[test]
    fn not_found_keeps_message_and_error_code() {
        let status = with_code(tonic::Status::not_found("no run 0190"), "run_not_found");
        let error = ClientError::from(status);
        assert_eq!(
            error,
            ClientError::NotFound {
                message: "no run 0190".to_string(),
                error_code: Some("run_not_found".to_string()),
            }
        );
        assert_eq!(error.error_code(), Some("run_not_found"));
    }

    #[test]
    fn unavailable_names_the_endpoint_once_known() {
        let error = ClientError::from(tonic::Status::unavailable("tcp connect error"))
            .at("http://127.0.0.1:7233");
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert!(error.is_transient());
        assert_eq!(
            error.to_string(),
            "the Tandem server at http://127.0.0.1:7233 is unavailable: tcp connect error"
        );
        // An endpoint already known is not replaced.
        let again = error.clone().at("http://other:1");
        assert_eq!(again, error);
    }

    #[test]
    fn other_codes_keep_the_code() {
        let error = ClientError::from(with_code(
            tonic::Status::permission_denied("no"),
            "forbidden",
        ));
        assert_eq!(
            error,
            ClientError::Other {
                code: tonic::Code::PermissionDenied,
                message: "no".to_string(),
                error_code: Some("forbidden".to_string()),
            }
        );
        assert!(!error.is_transient());
        assert!(
            error.to_string().contains("permission"),
            "the code is described: {error}"
        );
    }

    #[test]
    fn transient_codes() {
        assert!(ClientError::from(tonic::Status::deadline_exceeded("slow")).is_transient());
        assert!(ClientError::from(tonic::Status::unknown("h2 protocol error")).is_transient());
        assert!(!ClientError::from(tonic::Status::invalid_argument("bad")).is_transient());
        assert!(!ClientError::from(tonic::Status::not_found("gone")).is_transient());
        let protocol = ClientError::Protocol {
            endpoint: "http://x:1".to_string(),
            message: "unknown run state 9".to_string(),
        };
        assert!(!protocol.is_transient());
    }

    #[test]
    fn source_chain_is_appended() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let mut status = tonic::Status::unavailable("tcp connect error");
        status = tonic::Status::from_error(Box::new(WithSource {
            status: status.message().to_string(),
            source: io,
        }));
        let message = status_message(&status);
        assert!(message.contains("Connection refused"), "{message}");
    }

    #[derive(Debug)]
    struct WithSource {
        status: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for WithSource {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.status)
        }
    }

    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn empty_message_gets_the_code_description() {
        let error = ClientError::from(tonic::Status::new(tonic::Code::Internal, ""));
        match error {
            ClientError::Other { message, .. } => assert!(!message.is_empty()),
            other => panic!("expected Other, found {other:?}"),
        }
    }
}
