//! What the client commands of a Tandem server share: its address (or the comma-separated
//! addresses of a region's replicas), the connection, and how client errors map to exit codes.

use std::time::Duration;

use tandem_api::{Client, ClientConfig, ClientError, RunState};

use super::{Failure, exit};

/// The server address used when neither `--server` nor `TANDEM_SERVER` is given (the default
/// listen address of `tandem serve`).
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7233";

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server(s) to talk to: `--server` / `TANDEM_SERVER` (one address or a comma-separated
/// list of a region's replicas), else [`DEFAULT_SERVER`].
pub fn server_address(server: Option<&str>) -> &str {
    server.unwrap_or(DEFAULT_SERVER)
}

/// The client configuration of `server`: one address or a comma-separated list (the client
/// follows the region's leader across them). A malformed list is exit 2 naming the entry.
pub fn config(server: &str) -> Result<ClientConfig, Failure> {
    let config = ClientConfig::parse(server).map_err(Failure::from)?;
    Ok(config.connect_timeout(CONNECT_TIMEOUT))
}

/// Connects to `server` now (inside a tokio runtime): to its addresses in order until one
/// answers. None reachable: exit 3 naming the addresses.
pub async fn connect(server: &str) -> Result<Client, Failure> {
    Client::connect_with(config(server)?)
        .await
        .map_err(Failure::from)
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
                "{error}\nis `tandem serve` running there? Give its address with --server URL or TANDEM_SERVER (a region's replicas: URL,URL,...)"
            )),
            ClientError::NotLeader { .. } | ClientError::LeaderStarting { .. } => {
                Failure::system(format!(
                    "{error}\nno replica of the region accepted the request in time; `tandem cluster status` shows its members and leader"
                ))
            }
            ClientError::RegionNotActive { .. } => Failure::system(format!(
                "{error}\ngive the active region's servers with --server (a list may name several regions' replicas); `tandem dr status` shows the roles"
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
    fn server_lists_parse_and_bad_ones_are_bad_input() {
        let config = config("h1:7233, http://h2:7233").expect("a list");
        assert_eq!(config.endpoints(), ["http://h1:7233", "http://h2:7233"]);
        assert_eq!(config.get_connect_timeout(), CONNECT_TIMEOUT);
        let failure = config_failure("h1:7233,,h2:7233");
        assert_eq!(failure.code, exit::INVALID);
        assert!(
            failure.message.contains("entry 2 is empty"),
            "{}",
            failure.message
        );
        let failure = config_failure("https://h1:7233");
        assert_eq!(failure.code, exit::INVALID);
        assert!(failure.message.contains("TLS"), "{}", failure.message);
    }

    fn config_failure(server: &str) -> Failure {
        match config(server) {
            Ok(config) => panic!("{server}: expected a failure, found {config:?}"),
            Err(failure) => failure,
        }
    }

    #[test]
    fn no_leader_in_time_is_a_system_failure() {
        let failure = Failure::from(ClientError::NotLeader {
            endpoint: "http://h2:7233".to_string(),
            leader: None,
            message: "member h2 of region eu-west knows no leader".to_string(),
        });
        assert_eq!(failure.code, exit::SYSTEM);
        assert!(
            failure.message.contains("tandem cluster status"),
            "{}",
            failure.message
        );
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
