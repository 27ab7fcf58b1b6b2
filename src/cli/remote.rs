//! What the client commands of a Tandem server share: its address, the connection, and how
//! client errors map to exit codes.

use std::time::Duration;

use tandem_api::{Client, ClientConfig, ClientError, RunState};

use super::{Failure, exit};

/// The server address used when neither `--server` nor `TANDEM_SERVER` is given (the default
/// listen address of `tandem serve`).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7233";

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server to talk to: `--server` / `TANDEM_SERVER`, else [`DEFAULT_SERVER`].
pub fn server_address(server: Option<&str>) -> &str {
    server.unwrap_or(DEFAULT_SERVER)
}

/// Connects to `server` now (inside a tokio runtime). Unreachable: exit 3 naming the address.
pub async fn connect(server: &str) -> Result<Client, Failure> {
    let config = ClientConfig::new(server).connect_timeout(CONNECT_TIMEOUT);
    Client::connect_with(config).await.map_err(Failure::from)
}

impl From<ClientError> for Failure {
    /// Unknown run or workflow, a refused request or a malformed address: exit 2 (bad input,
    /// as for a local unknown run id). Unreachable server and everything else: exit 3.
    fn from(error: ClientError) -> Failure {
        match error {
            ClientError::NotFound { .. }
            | ClientError::InvalidArgument { .. }
            | ClientError::AlreadyExists { .. }
            | ClientError::InvalidEndpoint { .. } => Failure::invalid(error),
            ClientError::Unavailable { .. } => Failure::system(format!(
                "{error}\nis `tandem serve` running there? Give its address with --server URL or TANDEM_SERVER"
            )),
            ClientError::FailedPrecondition { .. }
            | ClientError::Other { .. }
            | ClientError::Protocol { .. } => Failure::system(error),
        }
    }
}

/// The exit code of a finished run, as `tandem run` uses them.
pub fn exit_code(state: RunState) -> u8 {
    match state {
        RunState::Succeeded => exit::OK,
        RunState::Failed => exit::FAILED,
        RunState::TimedOut => exit::TIMED_OUT,
        RunState::Cancelled => exit::CANCELLED,
        // Not final: only asked for runs that ended; the caller still waits.
        RunState::Running => exit::SYSTEM,
    }
}

/// The snake_case spelling of a client-side run state filter (`tandem runs --status`).
pub fn parse_run_state(text: &str) -> Result<RunState, Failure> {
    RunState::parse(text).ok_or_else(|| {
        Failure::invalid(format!(
            "expected one of running, succeeded, failed, cancelled, timed_out; found `{text}`"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_server_is_a_system_failure_naming_the_address() {
        let failure = Failure::from(ClientError::Unavailable {
            endpoint: "http://10.1.2.3:7233".to_string(),
            message: "tcp connect error: Connection refused".to_string(),
            error_code: None,
        });
        assert_eq!(failure.code, exit::SYSTEM);
        assert!(
            failure.message.contains("http://10.1.2.3:7233"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("--server"), "{}", failure.message);
    }

    #[test]
    fn unknown_runs_and_bad_requests_are_bad_input() {
        for error in [
            ClientError::NotFound {
                message: "run x".to_string(),
                error_code: None,
            },
            ClientError::InvalidArgument {
                message: "params.k".to_string(),
                error_code: None,
            },
            ClientError::InvalidEndpoint {
                endpoint: "https://x".to_string(),
                message: "TLS".to_string(),
            },
        ] {
            assert_eq!(Failure::from(error).code, exit::INVALID);
        }
        let internal = ClientError::Other {
            code: tonic::Code::Internal,
            message: "bug".to_string(),
            error_code: None,
        };
        assert_eq!(Failure::from(internal).code, exit::SYSTEM);
    }

    #[test]
    fn final_states_map_to_the_run_exit_codes() {
        assert_eq!(exit_code(RunState::Succeeded), exit::OK);
        assert_eq!(exit_code(RunState::Failed), exit::FAILED);
        assert_eq!(exit_code(RunState::TimedOut), exit::TIMED_OUT);
        assert_eq!(exit_code(RunState::Cancelled), exit::CANCELLED);
    }

    #[test]
    fn server_address_defaults_to_the_serve_default() {
        assert_eq!(server_address(None), DEFAULT_SERVER);
        assert_eq!(server_address(Some("http://h:1")), "http://h:1");
        assert!(parse_run_state("timed_out").is_ok());
        assert_eq!(
            parse_run_state("done").err().map(|failure| failure.code),
            Some(exit::INVALID)
        );
    }
}
