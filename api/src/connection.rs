//! [`ClientConfig`] and the gRPC channel to a Tandem server that [`crate::Client`] and
//! [`crate::Worker`] share.

use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;

/// Largest message the SDK accepts from a server (a `GetRun` of a big run with outputs).
pub const MAX_DECODING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How to reach a Tandem server.
///
/// ```
/// use std::time::Duration;
/// let config = tandem_api::ClientConfig::new("http://127.0.0.1:7233")
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(10));
/// assert_eq!(config.endpoint(), "http://127.0.0.1:7233");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    endpoint: String,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl ClientConfig {
    /// Default time to establish a TCP connection: 5 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default time to wait for the reply of a unary call: 30 s. Long polls add their own
    /// wait on top; a watch stream is limited only until its first reply.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// A config for the server at `endpoint`: `http://host:port`, or `host:port` (taken as
    /// `http://host:port`). The address is checked when connecting.
    pub fn new(endpoint: impl Into<String>) -> ClientConfig {
        let endpoint = endpoint.into();
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else {
            format!("http://{endpoint}")
        };
        ClientConfig {
            endpoint,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Sets the TCP connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the timeout of each unary call (see [`ClientConfig::DEFAULT_REQUEST_TIMEOUT`]).
    pub fn request_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.request_timeout = timeout;
        self
    }

    /// The server's address, `http://host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The TCP connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The timeout of each unary call.
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Checks the address without connecting ([`ClientError::InvalidEndpoint`] if unusable).
    pub fn check(&self) -> Result<(), ClientError> {
        self.tonic_endpoint().map(|_| ())
    }

    /// The tonic endpoint; refuses addresses that are not `http://host[:port]`.
    fn tonic_endpoint(&self) -> Result<Endpoint, ClientError> {
        let invalid = |message: String| ClientError::InvalidEndpoint {
            endpoint: self.endpoint.clone(),
            message,
        };
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|error| invalid(format!("expected http://host:port ({error})")))?;
        let uri = endpoint.uri();
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(invalid(format!(
                    "expected the scheme http://, found {other}:// (this client does not speak TLS)"
                )));
            }
            None => return Err(invalid("expected http://host:port".to_string())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("expected a host in http://host:port".to_string()));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(invalid(format!(
                "expected no path after host:port, found `{}`",
                uri.path()
            )));
        }
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true))
    }
}

impl From<&str> for ClientConfig {
    /// [`ClientConfig::new`] with the default timeouts.
    fn from(endpoint: &str) -> ClientConfig {
        ClientConfig::new(endpoint)
    }
}

impl From<String> for ClientConfig {
    /// [`ClientConfig::new`] with the default timeouts.
    fn from(endpoint: String) -> ClientConfig {
        ClientConfig::new(endpoint)
    }
}

/// A channel to one server, with the settings its calls need.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) channel: Channel,
    pub(crate) endpoint: String,
    pub(crate) request_timeout: Duration,
}

impl Connection {
    /// Connects now: fails with [`ClientError::Unavailable`] when the server cannot be reached.
    pub(crate) async fn connect(config: &ClientConfig) -> Result<Connection, ClientError> {
        let endpoint = config.tonic_endpoint()?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| ClientError::transport(config.endpoint(), &error))?;
        Ok(Connection::with_channel(config, channel))
    }

    /// Connects on first use (and again after the connection breaks); only checks the address.
    pub(crate) fn lazy(config: &ClientConfig) -> Result<Connection, ClientError> {
        let channel = config.tonic_endpoint()?.connect_lazy();
        Ok(Connection::with_channel(config, channel))
    }

    fn with_channel(config: &ClientConfig, channel: Channel) -> Connection {
        Connection {
            channel,
            endpoint: config.endpoint().to_string(),
            request_timeout: config.request_timeout,
        }
    }

    /// Runs one call with the request timeout plus `extra` (a long poll's wait), mapping its
    /// status to a [`ClientError`] that names this endpoint.
    pub(crate) async fn call<T>(
        &self,
        extra: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ClientError> {
        let limit = self.request_timeout + extra;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(ClientError::from(status).at(&self.endpoint)),
            Err(_) => Err(ClientError::Other {
                code: tonic::Code::DeadlineExceeded,
                message: format!(
                    "no reply from {} within {} ms",
                    self.endpoint,
                    limit.as_millis()
                ),
                error_code: None,
            }),
        }
    }

    /// Like [`Connection::call`] but keeps the response metadata.
    pub(crate) async fn call_with_metadata<T>(
        &self,
        extra: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<(tonic::metadata::MetadataMap, T), ClientError> {
        let wrapped = async {
            call.await
                .map(|response| tonic::Response::new(response.into_parts()))
        };
        let (metadata, message, _) = self.call(extra, wrapped).await?;
        Ok((metadata, message))
    }

    /// A [`ClientError::Protocol`] naming this endpoint.
    pub(crate) fn protocol(&self, message: String) -> ClientError {
        ClientError::Protocol {
            endpoint: self.endpoint.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_gets_the_http_scheme() {
        assert_eq!(
            ClientConfig::new("localhost:7233").endpoint(),
            "http://localhost:7233"
        );
        assert_eq!(
            ClientConfig::new("http://10.0.0.1:80").endpoint(),
            "http://10.0.0.1:80"
        );
    }

    fn lazy_error(endpoint: &str) -> ClientError {
        // `connect_lazy` needs a runtime to spawn the connection's background task.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime
            .block_on(async { Connection::lazy(&ClientConfig::new(endpoint)) })
            .expect_err("an invalid endpoint")
    }

    #[test]
    fn refuses_unusable_addresses() {
        for (endpoint, expected) in [
            ("https://example.com:443", "TLS"),
            ("http://host:7233/some/path", "no path"),
            ("http://", "http://host:port"),
            ("http://bad host:1", "http://host:port"),
        ] {
            match lazy_error(endpoint) {
                ClientError::InvalidEndpoint { message, .. } => {
                    assert!(message.contains(expected), "{endpoint}: {message}")
                }
                other => panic!("{endpoint}: expected InvalidEndpoint, found {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable_and_names_the_endpoint() {
        // Bind then drop a listener: its port is free and nothing accepts on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let error = Connection::connect(&ClientConfig::new(&endpoint))
            .await
            .expect_err("nothing listens");
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
        assert!(error.to_string().contains(&endpoint), "{error}");
    }
}
