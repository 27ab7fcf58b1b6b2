//! The peer check: the active region's leader asks the other regions' replicas for their
//! status (`DrService.GetRegionStatus`, through the SDK so it follows the endpoints given)
//! every `[dr] peer_check_interval` and once before every takeover. A peer that is active
//! with a higher region epoch was promoted while this region was cut off or down: this
//! region demotes itself (see [`super::Dr::learn_from_peers`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use tandem_api::{Client, ClientConfig, ClientError, RegionStatus};

/// The longest one check waits for a peer (also bounding the check before a takeover).
pub const PEER_CHECK_BOUND: Duration = Duration::from_secs(2);

/// Clients of the peer regions, made on first use (they need a tokio runtime).
pub struct Peers {
    configured: BTreeMap<String, Vec<String>>,
    clients: OnceLock<Vec<(String, Result<Client, ClientError>)>>,
}

impl Peers {
    /// Peers with these replicas by region name.
    pub fn new(configured: BTreeMap<String, Vec<String>>) -> Peers {
        Peers {
            configured,
            clients: OnceLock::new(),
        }
    }

    /// Whether no peer is configured.
    pub fn is_empty(&self) -> bool {
        self.configured.is_empty()
    }

    fn clients(&self) -> &[(String, Result<Client, ClientError>)] {
        self.clients.get_or_init(|| {
            self.configured
                .iter()
                .map(|(name, endpoints)| {
                    let config = ClientConfig::with_endpoints(endpoints.iter().cloned())
                        .connect_timeout(PEER_CHECK_BOUND)
                        .request_timeout(PEER_CHECK_BOUND)
                        .failover_timeout(PEER_CHECK_BOUND);
                    let client = Client::connect_lazy(config);
                    if let Err(error) = &client {
                        tracing::error!(peer = %name, %error, "the `[dr] peers` entry of this region cannot be used; it is never asked");
                    }
                    (name.clone(), client)
                })
                .collect()
        })
    }

    /// Every peer's status, asked at once, each within [`PEER_CHECK_BOUND`]: `(configured
    /// name, status or why it could not be read)`.
    pub async fn statuses(&self) -> Vec<(String, Result<RegionStatus, ClientError>)> {
        let asks = self.clients().iter().map(|(name, client)| async move {
            let status = match client {
                Ok(client) => {
                    match tokio::time::timeout(PEER_CHECK_BOUND, client.region_status()).await {
                        Ok(status) => status,
                        Err(_) => Err(ClientError::Other {
                            code: tonic::Code::DeadlineExceeded,
                            message: format!(
                                "no status within {} ms",
                                PEER_CHECK_BOUND.as_millis()
                            ),
                            error_code: None,
                        }),
                    }
                }
                Err(error) => Err(error.clone()),
            };
            (name.clone(), status)
        });
        futures::future::join_all(asks).await
    }
}
