//! [`Connection`]: the gRPC channel to one server, and how one call on it failed (including
//! whether the request can have reached the server).

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;

use crate::config::ClientConfig;
use crate::error::ClientError;

/// Largest message the SDK accepts from a server (a `GetRun` of a big run with outputs).
pub const MAX_DECODING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A channel to one server, with the settings its calls need.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) channel: Channel,
    pub(crate) endpoint: String,
    pub(crate) request_timeout: Duration,
}

/// A call that failed on one connection.
#[derive(Debug)]
pub(crate) struct CallFailure {
    /// The error, naming the endpoint.
    pub(crate) error: ClientError,
    /// True when the request certainly did not reach the server: connecting failed. Otherwise
    /// the server may have received it and acted on it (the reply may have been lost).
    pub(crate) not_sent: bool,
}

impl Connection {
    /// Connects to `address` now: fails with [`ClientError::Unavailable`] when the server
    /// cannot be reached.
    pub(crate) async fn connect(
        config: &ClientConfig,
        address: &str,
    ) -> Result<Connection, ClientError> {
        let channel = config
            .tonic_endpoint(address)?
            .connect()
            .await
            .map_err(|error| ClientError::transport(address, &error))?;
        Ok(Connection::with_channel(config, address, channel))
    }

    /// A connection to `address` made on first use (and again after it breaks); only checks
    /// the address. Needs a tokio runtime.
    pub(crate) fn lazy(config: &ClientConfig, address: &str) -> Result<Connection, ClientError> {
        let channel = config.tonic_endpoint(address)?.connect_lazy();
        Ok(Connection::with_channel(config, address, channel))
    }

    fn with_channel(config: &ClientConfig, address: &str, channel: Channel) -> Connection {
        Connection {
            channel,
            endpoint: address.to_string(),
            request_timeout: config.get_request_timeout(),
        }
    }

    /// Runs one call with the request timeout plus `extra` (a long poll's wait), mapping its
    /// status to a [`ClientError`] that names this endpoint.
    pub(crate) async fn send<T>(
        &self,
        extra: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<tonic::Response<T>, CallFailure> {
        let limit = self.request_timeout + extra;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(status)) => {
                let not_sent = is_connect_error(&status);
                Err(CallFailure {
                    error: ClientError::from(status).at(&self.endpoint),
                    not_sent,
                })
            }
            Err(_) => Err(CallFailure {
                error: ClientError::Other {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!(
                        "no reply from {} within {} ms",
                        self.endpoint,
                        limit.as_millis()
                    ),
                    error_code: None,
                },
                not_sent: false,
            }),
        }
    }
}

/// True when the status comes from failing to connect (tonic wraps those in
/// [`tonic::ConnectError`]): the request was never sent.
fn is_connect_error(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if error.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use crate::proto::workflow_service_client::WorkflowServiceClient;

    /// An address where nothing listens: bind then drop a listener.
    pub(crate) fn closed_port_address() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        format!("http://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable_and_names_the_endpoint() {
        let endpoint = closed_port_address();
        let error = Connection::connect(&ClientConfig::new(&endpoint), &endpoint)
            .await
            .expect_err("nothing listens");
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
        assert!(error.to_string().contains(&endpoint), "{error}");
    }

    #[tokio::test]
    async fn a_call_that_cannot_connect_was_not_sent() {
        let endpoint = closed_port_address();
        let connection =
            Connection::lazy(&ClientConfig::new(&endpoint), &endpoint).expect("a valid address");
        let mut client = WorkflowServiceClient::new(connection.channel.clone());
        let failure = connection
            .send(
                Duration::ZERO,
                client.get_run(proto::GetRunRequest {
                    run_id: "r".to_string(),
                }),
            )
            .await
            .expect_err("nothing listens");
        assert!(failure.not_sent, "{failure:?}");
        assert!(failure.error.is_connection_failure(), "{failure:?}");
        assert!(failure.error.to_string().contains(&endpoint), "{failure:?}");
    }

    #[test]
    fn a_status_from_a_server_may_have_been_acted_on() {
        assert!(!is_connect_error(&tonic::Status::unavailable(
            "tcp connect error"
        )));
        let wrapped = tonic::Status::from_error(Box::new(tonic::ConnectError(Box::new(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        ))));
        assert!(is_connect_error(&wrapped));
    }
}
