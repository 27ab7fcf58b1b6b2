//! [`ClientError`]: every way a call to a Tandem server can fail, built once from
//! [`tonic::Status`].

use std::error::Error as _;

/// Metadata key carrying the server's stable snake_case error code on every error status
/// (see `api/proto/tandem/v1/common.proto`).
pub const ERROR_CODE_KEY: &str = "tandem-error-code";

/// Metadata key of a follower's `not_leader` refusal carrying the leader's address
/// (`http://host:port`), when the follower knows the leader.
pub const LEADER_ADDRESS_KEY: &str = "tandem-leader-address";

/// `tandem-error-code` of a call that needs the leader sent to a follower (gRPC
/// `UNAVAILABLE`): nothing was done; send it again to the leader ([`LEADER_ADDRESS_KEY`]).
pub const NOT_LEADER: &str = "not_leader";

/// `tandem-error-code` of a call that needs the leader sent to a leader still resuming its
/// region's runs (gRPC `UNAVAILABLE`): nothing was done; send it again to the same server
/// shortly.
pub const LEADER_STARTING: &str = "leader_starting";

/// `tandem-error-code` of a call that needs an active region sent to a replica of a standby
/// or fenced region (gRPC `FAILED_PRECONDITION`): nothing was done; the active region is named
/// in [`ACTIVE_REGION_KEY`].
pub const REGION_NOT_ACTIVE: &str = "region_not_active";

/// Metadata key of a `region_not_active` refusal carrying the active region's name.
pub const ACTIVE_REGION_KEY: &str = "tandem-active-region";

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
    /// `UNAVAILABLE` with `tandem-error-code: not_leader`: the server is a follower of its
    /// region and refused a call that needs the leader; nothing was done. The SDK follows
    /// `leader` on its own: this error is returned only when the leader could not be reached
    /// within the failover timeout.
    #[error("the Tandem server at {endpoint} does not lead its region{}: {message}", leader.as_ref().map(|leader| format!(" (the leader is {leader})")).unwrap_or_default())]
    NotLeader {
        /// The follower's address (`http://host:port`), empty if unknown.
        endpoint: String,
        /// The leader's address from the `tandem-leader-address` metadata; `None` when the
        /// follower knows no leader (an election is under way).
        leader: Option<String>,
        /// The server's message (it names the region, the member and the leader).
        message: String,
    },
    /// `UNAVAILABLE` with `tandem-error-code: leader_starting`: the server leads its region
    /// but is still resuming the region's runs; nothing was done. The SDK retries it on its
    /// own: this error is returned only when the failover timeout ran out.
    #[error(
        "the Tandem server at {endpoint} leads its region but is still resuming its runs: {message}"
    )]
    LeaderStarting {
        /// The leader's address (`http://host:port`), empty if unknown.
        endpoint: String,
        /// The server's message.
        message: String,
    },
    /// `FAILED_PRECONDITION` with `tandem-error-code: region_not_active`: the server belongs
    /// to a region that is not active (a standby or a fenced ex-active region) and refused a
    /// call that starts, cancels or runs work; nothing was done. The SDK tries its other
    /// endpoints (a client given the replicas of several regions follows a promotion): this
    /// error is returned only when none of them accepted the call.
    #[error("the Tandem server at {endpoint} belongs to a region that is not active{}: {message}", active_region.as_ref().map(|region| format!(" (the active region is {region})")).unwrap_or_default())]
    RegionNotActive {
        /// The server's address (`http://host:port`), empty if unknown.
        endpoint: String,
        /// The active region's name from the `tandem-active-region` metadata, when sent.
        active_region: Option<String>,
        /// The server's message (it names the region, its role and the active region).
        message: String,
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
            ClientError::FailedPrecondition { .. } | ClientError::RegionNotActive { .. } => {
                tonic::Code::FailedPrecondition
            }
            ClientError::AlreadyExists { .. } => tonic::Code::AlreadyExists,
            ClientError::Unavailable { .. }
            | ClientError::NotLeader { .. }
            | ClientError::LeaderStarting { .. } => tonic::Code::Unavailable,
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
            ClientError::NotLeader { .. } => Some(NOT_LEADER),
            ClientError::LeaderStarting { .. } => Some(LEADER_STARTING),
            ClientError::RegionNotActive { .. } => Some(REGION_NOT_ACTIVE),
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

    /// The leader's address a follower named in a [`ClientError::NotLeader`] refusal.
    pub fn leader_address(&self) -> Option<&str> {
        match self {
            ClientError::NotLeader { leader, .. } => leader.as_deref(),
            _ => None,
        }
    }

    /// The active region a replica of a standby or fenced region named in a
    /// [`ClientError::RegionNotActive`] refusal.
    pub fn active_region(&self) -> Option<&str> {
        match self {
            ClientError::RegionNotActive { active_region, .. } => active_region.as_deref(),
            _ => None,
        }
    }

    /// Fills in the server's address of an error built without one (as
    /// [`From<tonic::Status>`] does): [`ClientError::Unavailable`], [`ClientError::NotLeader`],
    /// [`ClientError::LeaderStarting`], [`ClientError::RegionNotActive`] and
    /// [`ClientError::Protocol`].
    pub fn at(mut self, address: &str) -> ClientError {
        match &mut self {
            ClientError::Unavailable { endpoint, .. }
            | ClientError::NotLeader { endpoint, .. }
            | ClientError::LeaderStarting { endpoint, .. }
            | ClientError::RegionNotActive { endpoint, .. }
            | ClientError::Protocol { endpoint, .. }
                if endpoint.is_empty() =>
            {
                *endpoint = address.to_string();
            }
            _ => {}
        }
        self
    }

    /// True for a failure of the connection rather than a reply of a Tandem server: the
    /// server could not be reached, the connection broke, or no reply came in time
    /// (`UNAVAILABLE`, `UNKNOWN`, `CANCELLED` or `DEADLINE_EXCEEDED` without a
    /// `tandem-error-code`, which every reply of a Tandem server carries).
    pub(crate) fn is_connection_failure(&self) -> bool {
        self.error_code().is_none()
            && matches!(
                self,
                ClientError::Unavailable { .. } | ClientError::Other { .. }
            )
            && matches!(
                self.code(),
                tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
            )
    }

    /// Appends `note` to the message (e.g. how long the SDK looked for the leader).
    pub(crate) fn with_note(mut self, note: &str) -> ClientError {
        match &mut self {
            ClientError::NotFound { message, .. }
            | ClientError::InvalidArgument { message, .. }
            | ClientError::FailedPrecondition { message, .. }
            | ClientError::AlreadyExists { message, .. }
            | ClientError::Unavailable { message, .. }
            | ClientError::NotLeader { message, .. }
            | ClientError::LeaderStarting { message, .. }
            | ClientError::RegionNotActive { message, .. }
            | ClientError::Other { message, .. }
            | ClientError::InvalidEndpoint { message, .. }
            | ClientError::Protocol { message, .. } => {
                message.push_str(" (");
                message.push_str(note);
                message.push(')');
            }
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
            tonic::Code::FailedPrecondition if error_code.as_deref() == Some(REGION_NOT_ACTIVE) => {
                let active_region = status
                    .metadata()
                    .get(ACTIVE_REGION_KEY)
                    .and_then(|value| value.to_str().ok())
                    .map(str::trim)
                    .filter(|region| !region.is_empty())
                    .map(str::to_string);
                ClientError::RegionNotActive {
                    endpoint: String::new(),
                    active_region,
                    message,
                }
            }
            tonic::Code::FailedPrecondition => ClientError::FailedPrecondition {
                message,
                error_code,
            },
            tonic::Code::AlreadyExists => ClientError::AlreadyExists {
                message,
                error_code,
            },
            tonic::Code::Unavailable if error_code.as_deref() == Some(NOT_LEADER) => {
                let leader = status
                    .metadata()
                    .get(LEADER_ADDRESS_KEY)
                    .and_then(|value| value.to_str().ok())
                    .map(str::trim)
                    .filter(|address| !address.is_empty())
                    .map(crate::config::normalize);
                ClientError::NotLeader {
                    endpoint: String::new(),
                    leader,
                    message,
                }
            }
            tonic::Code::Unavailable if error_code.as_deref() == Some(LEADER_STARTING) => {
                ClientError::LeaderStarting {
                    endpoint: String::new(),
                    message,
                }
            }
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

    fn unavailable_with(code: &str, leader: Option<&str>) -> tonic::Status {
        let mut status = with_code(
            tonic::Status::unavailable("member b of region eu-west does not lead"),
            code,
        );
        if let Some(leader) = leader {
            status.metadata_mut().insert(
                LEADER_ADDRESS_KEY,
                leader.parse().expect("an ASCII metadata value"),
            );
        }
        status
    }

    #[test]
    fn not_leader_carries_the_leader_address() {
        let error = ClientError::from(unavailable_with(NOT_LEADER, Some("10.0.0.1:7233")))
            .at("http://10.0.0.2:7233");
        assert_eq!(
            error,
            ClientError::NotLeader {
                endpoint: "http://10.0.0.2:7233".to_string(),
                leader: Some("http://10.0.0.1:7233".to_string()),
                message: "member b of region eu-west does not lead".to_string(),
            }
        );
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert_eq!(error.error_code(), Some(NOT_LEADER));
        assert_eq!(error.leader_address(), Some("http://10.0.0.1:7233"));
        assert!(error.is_transient());
        assert!(!error.is_connection_failure());
        let text = error.to_string();
        assert!(
            text.contains(
                "http://10.0.0.2:7233 does not lead its region (the leader is http://10.0.0.1:7233)"
            ),
            "{text}"
        );
    }

    #[test]
    fn not_leader_without_a_known_leader() {
        for leader in [None, Some(""), Some("  ")] {
            let error = ClientError::from(unavailable_with(NOT_LEADER, leader));
            assert!(
                matches!(error, ClientError::NotLeader { leader: None, .. }),
                "{leader:?}: {error:?}"
            );
            assert_eq!(error.leader_address(), None);
            assert!(!error.to_string().contains("the leader is"), "{error}");
        }
    }

    #[test]
    fn leader_starting_is_its_own_error() {
        let error = ClientError::from(unavailable_with(LEADER_STARTING, Some("http://x:1")))
            .at("http://10.0.0.1:7233");
        assert_eq!(
            error,
            ClientError::LeaderStarting {
                endpoint: "http://10.0.0.1:7233".to_string(),
                message: "member b of region eu-west does not lead".to_string(),
            }
        );
        assert_eq!(error.error_code(), Some(LEADER_STARTING));
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert!(error.is_transient());
        assert!(!error.is_connection_failure());
    }

    #[test]
    fn other_unavailable_codes_stay_unavailable() {
        let error = ClientError::from(unavailable_with("store_unavailable", None));
        assert!(
            matches!(error, ClientError::Unavailable { .. }),
            "{error:?}"
        );
        assert_eq!(error.error_code(), Some("store_unavailable"));
        assert!(!error.is_connection_failure(), "a server's reply");
        // A leader address on another code means nothing.
        let error = ClientError::from(unavailable_with("run_paused", Some("http://x:1")));
        assert_eq!(error.leader_address(), None);
    }

    #[test]
    fn connection_failures_are_code_less_transport_statuses() {
        for status in [
            tonic::Status::unavailable("tcp connect error"),
            tonic::Status::unknown("h2 protocol error: connection reset"),
            tonic::Status::cancelled("operation was canceled"),
            tonic::Status::deadline_exceeded("timeout expired"),
        ] {
            let error = ClientError::from(status);
            assert!(error.is_connection_failure(), "{error:?}");
        }
        for status in [
            tonic::Status::internal("bug"),
            tonic::Status::not_found("gone"),
            with_code(
                tonic::Status::unavailable("store down"),
                "store_unavailable",
            ),
        ] {
            let error = ClientError::from(status);
            assert!(!error.is_connection_failure(), "{error:?}");
        }
    }

    #[test]
    fn a_note_is_appended_to_the_message() {
        let error = ClientError::from(unavailable_with(NOT_LEADER, None))
            .with_note("no leader found within 30000 ms");
        assert!(
            error
                .to_string()
                .ends_with("does not lead (no leader found within 30000 ms)"),
            "{error}"
        );
    }

    #[test]
    fn region_not_active_names_the_active_region() {
        let mut status = with_code(
            tonic::Status::failed_precondition("region us-east is standby, not active"),
            REGION_NOT_ACTIVE,
        );
        status.metadata_mut().insert(
            ACTIVE_REGION_KEY,
            "eu-west".parse().expect("an ASCII metadata value"),
        );
        let error = ClientError::from(status).at("http://10.0.0.3:7233");
        assert_eq!(
            error,
            ClientError::RegionNotActive {
                endpoint: "http://10.0.0.3:7233".to_string(),
                active_region: Some("eu-west".to_string()),
                message: "region us-east is standby, not active".to_string(),
            }
        );
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        assert_eq!(error.error_code(), Some(REGION_NOT_ACTIVE));
        assert_eq!(error.active_region(), Some("eu-west"));
        assert!(!error.is_transient());
        assert!(!error.is_connection_failure());
        assert!(
            error.to_string().contains("(the active region is eu-west)"),
            "{error}"
        );
        // Another failed precondition stays what it was.
        let other = ClientError::from(with_code(
            tonic::Status::failed_precondition("lease ended"),
            "lease_ended",
        ));
        assert!(matches!(other, ClientError::FailedPrecondition { .. }));
        assert_eq!(other.active_region(), None);
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
