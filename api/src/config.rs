//! [`ClientConfig`]: the servers of a region to talk to, and the timeouts of the calls.

use std::str::FromStr;
use std::time::Duration;

use tonic::transport::Endpoint;

use crate::error::ClientError;

/// How to reach a Tandem region: one or more of its servers (`tandem serve` replicas), and
/// the timeouts of the calls.
///
/// With several endpoints, [`crate::Client`] and [`crate::Worker`] send calls that need the
/// leader to the replica that leads (following the `not_leader` replies of the others), try
/// the next endpoint when one cannot be reached, and give up after the failover timeout.
///
/// ```
/// use std::time::Duration;
/// let config = tandem_api::ClientConfig::new("http://127.0.0.1:7233")
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(10));
/// assert_eq!(config.endpoint(), "http://127.0.0.1:7233");
///
/// let region: tandem_api::ClientConfig = "10.0.0.1:7233, 10.0.0.2:7233".parse()?;
/// assert_eq!(region.endpoints(), ["http://10.0.0.1:7233", "http://10.0.0.2:7233"]);
/// # Ok::<(), tandem_api::ClientError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    endpoints: Vec<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    failover_timeout: Duration,
}

impl ClientConfig {
    /// Default time to establish a TCP connection: 5 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default time to wait for the reply of a unary call: 30 s. Long polls add their own
    /// wait on top; a watch stream is limited only until its first reply.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default time a call may spend finding the leader (following `not_leader` replies,
    /// trying other endpoints, waiting for a `leader_starting` leader): 30 s, longer than an
    /// election after a leader's lease expires (5 s by default) plus the new leader's start.
    pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

    /// A config for the server at `endpoint`: `http://host:port`, or `host:port` (taken as
    /// `http://host:port`). The address is checked when connecting (or by
    /// [`ClientConfig::check`]). For a comma-separated list use [`ClientConfig::parse`].
    pub fn new(endpoint: impl Into<String>) -> ClientConfig {
        ClientConfig::with_endpoints([endpoint])
    }

    /// A config for several servers of one region, in order of preference (the first one is
    /// tried first). Each is `http://host:port` or `host:port`; repeats are dropped. The
    /// addresses are checked when connecting (or by [`ClientConfig::check`]); an empty list is
    /// refused there.
    pub fn with_endpoints<I, S>(endpoints: I) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = Vec::new();
        for endpoint in endpoints {
            let endpoint = normalize(endpoint.into().trim());
            if !list.contains(&endpoint) {
                list.push(endpoint);
            }
        }
        ClientConfig {
            endpoints: list,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            failover_timeout: Self::DEFAULT_FAILOVER_TIMEOUT,
        }
    }

    /// A config for a comma-separated list of servers (`--server` / `TANDEM_SERVER`), with the
    /// default timeouts; see [`parse_endpoints`] for the rules and errors.
    pub fn parse(list: &str) -> Result<ClientConfig, ClientError> {
        Ok(ClientConfig::with_endpoints(parse_endpoints(list)?))
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

    /// Sets how long one call may spend finding the leader (see
    /// [`ClientConfig::DEFAULT_FAILOVER_TIMEOUT`]).
    pub fn failover_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.failover_timeout = timeout;
        self
    }

    /// The first server's address, `http://host:port` (empty for an empty list).
    pub fn endpoint(&self) -> &str {
        self.endpoints.first().map_or("", String::as_str)
    }

    /// Every server's address, `http://host:port`, in order of preference.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The TCP connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The timeout of each unary call.
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// How long one call may spend finding the leader.
    pub fn get_failover_timeout(&self) -> Duration {
        self.failover_timeout
    }

    /// Checks the addresses without connecting: [`ClientError::InvalidEndpoint`] for an empty
    /// list or the first unusable address.
    pub fn check(&self) -> Result<(), ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                message: "expected at least one server address (http://host:port)".to_string(),
            });
        }
        for endpoint in &self.endpoints {
            self.tonic_endpoint(endpoint)?;
        }
        Ok(())
    }

    /// The tonic endpoint of `address` with this config's settings; refuses addresses that
    /// are not `http://host[:port]`.
    pub(crate) fn tonic_endpoint(&self, address: &str) -> Result<Endpoint, ClientError> {
        let invalid = |message: String| ClientError::InvalidEndpoint {
            endpoint: address.to_string(),
            message,
        };
        if address.contains(',') {
            return Err(invalid(
                "expected one address http://host:port, found a comma-separated list (ClientConfig::parse takes a list)"
                    .to_string(),
            ));
        }
        let endpoint = Endpoint::from_shared(address.to_string())
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

impl FromStr for ClientConfig {
    type Err = ClientError;

    /// [`ClientConfig::parse`]: a comma-separated list of servers.
    fn from_str(list: &str) -> Result<ClientConfig, ClientError> {
        ClientConfig::parse(list)
    }
}

/// Splits a comma-separated list of server addresses (`--server` / `TANDEM_SERVER`) into
/// `http://host:port` addresses, in order, without repeats. Spaces around entries are ignored;
/// `host:port` gets the `http://` scheme.
///
/// Errors ([`ClientError::InvalidEndpoint`], naming the list and the entry by position from 1):
/// an empty list, an empty entry (`a,,b`, a trailing comma), or an unusable address (not
/// `http://host[:port]`, a path, TLS).
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, ClientError> {
    let invalid = |message: String| ClientError::InvalidEndpoint {
        endpoint: list.to_string(),
        message,
    };
    if list.trim().is_empty() {
        return Err(invalid(
            "expected a comma-separated list of server addresses (http://host:port), found nothing"
                .to_string(),
        ));
    }
    let check = ClientConfig::with_endpoints(Vec::<String>::new());
    let mut endpoints: Vec<String> = Vec::new();
    for (index, entry) in list.split(',').enumerate() {
        let entry = entry.trim();
        let position = index + 1;
        if entry.is_empty() {
            return Err(invalid(format!(
                "entry {position} is empty: expected addresses separated by single commas (http://host:port,http://host:port)"
            )));
        }
        let endpoint = normalize(entry);
        if let Err(ClientError::InvalidEndpoint { message, .. }) = check.tonic_endpoint(&endpoint) {
            return Err(invalid(format!("entry {position} `{entry}`: {message}")));
        }
        if !endpoints.contains(&endpoint) {
            endpoints.push(endpoint);
        }
    }
    Ok(endpoints)
}

/// `host:port` as `http://host:port`; an address with a scheme is kept as it is.
pub(crate) fn normalize(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
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

    #[test]
    fn a_list_keeps_its_order_and_drops_repeats() {
        let config = ClientConfig::with_endpoints(["b:2", "http://a:1", "http://b:2"]);
        assert_eq!(config.endpoints(), ["http://b:2", "http://a:1"]);
        assert_eq!(config.endpoint(), "http://b:2");
        assert_eq!(
            config.get_failover_timeout(),
            ClientConfig::DEFAULT_FAILOVER_TIMEOUT
        );
        let config = config.failover_timeout(Duration::from_secs(3));
        assert_eq!(config.get_failover_timeout(), Duration::from_secs(3));
    }

    #[test]
    fn parses_comma_separated_lists() {
        assert_eq!(parse_endpoints("http://a:1").expect("one"), ["http://a:1"]);
        assert_eq!(
            parse_endpoints(" a:1 , http://b:2,a:1 ").expect("three, one repeated"),
            ["http://a:1", "http://b:2"]
        );
        let config: ClientConfig = "a:1,b:2".parse().expect("a list");
        assert_eq!(config.endpoints(), ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn refuses_bad_lists_naming_the_entry() {
        for (list, expected) in [
            ("", "found nothing"),
            ("  ", "found nothing"),
            ("a:1,,b:2", "entry 2 is empty"),
            ("a:1,", "entry 2 is empty"),
            (",a:1", "entry 1 is empty"),
            (
                "a:1,https://b:2",
                "entry 2 `https://b:2`: expected the scheme http://",
            ),
            ("a:1,b:2/x", "entry 2 `b:2/x`: expected no path"),
        ] {
            match parse_endpoints(list) {
                Err(ClientError::InvalidEndpoint { endpoint, message }) => {
                    assert_eq!(endpoint, list);
                    assert!(message.contains(expected), "{list}: {message}");
                }
                other => panic!("{list}: expected InvalidEndpoint, found {other:?}"),
            }
        }
    }

    #[test]
    fn check_refuses_unusable_addresses() {
        for (endpoint, expected) in [
            ("https://example.com:443", "TLS"),
            ("http://host:7233/some/path", "no path"),
            ("http://", "http://host:port"),
            ("http://bad host:1", "http://host:port"),
            ("a:1,b:2", "ClientConfig::parse"),
        ] {
            match ClientConfig::new(endpoint).check() {
                Err(ClientError::InvalidEndpoint { message, .. }) => {
                    assert!(message.contains(expected), "{endpoint}: {message}")
                }
                other => panic!("{endpoint}: expected InvalidEndpoint, found {other:?}"),
            }
        }
        let empty = ClientConfig::with_endpoints(Vec::<String>::new());
        assert!(
            matches!(empty.check(), Err(ClientError::InvalidEndpoint { message, .. }) if message.contains("at least one")),
        );
        assert!(
            ClientConfig::with_endpoints(["a:1", "b:2"]).check().is_ok(),
            "two good addresses"
        );
    }
}
