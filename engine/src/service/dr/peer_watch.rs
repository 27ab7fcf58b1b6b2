//! The peer check: the active region's leader asks the other regions' replicas for their
//! status (`DrService.GetRegionStatus`, through the SDK so it follows the endpoints given)
//! every `[dr] peer_check_interval` and once before every takeover. A peer that is active
//! with a higher region epoch was promoted while this region was cut off or down: this
//! region demotes itself (see [`super::Dr::learn_from_peers`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tandem_api::{Client, ClientConfig, ClientError, RegionStatus};

use super::Dr;
use crate::service::region::Region;
use crate::service::replica::ReplicaRole;
use crate::store::replication::{RegionRole, RegionState};

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

impl Dr {
    /// Asks the peers every `[dr] peer_check_interval` while this replica leads an active
    /// region (until [`Dr::stop`]).
    pub(super) fn spawn_peer_checks(&self, region: &Region) {
        if self.peers.is_empty() {
            return;
        }
        let region = region.clone();
        let interval = self.config.peer_check_interval;
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(dr) = region.dr() else {
                    return;
                };
                let leads = matches!(
                    region.role(),
                    ReplicaRole::Leading { .. } | ReplicaRole::Starting { .. }
                );
                if leads && dr.watch.get().role == RegionRole::Active {
                    dr.learn_from_peers().await;
                }
            }
        });
        self.keep(task.abort_handle());
    }

    /// Asks the peers for their status (when this region is active); when one is active
    /// with a higher region epoch, demotes this region to it (standby without a tail,
    /// fenced with its tail logged at ERROR) and publishes the new state. Returns the new
    /// state when it demoted the region. Unreachable peers are logged at DEBUG only: a lost
    /// peer is the normal case of a disaster.
    pub(crate) async fn learn_from_peers(&self) -> Option<RegionState> {
        if self.peers.is_empty() {
            return None;
        }
        let own = match self.watch.refresh(self.store.as_ref()).await {
            Ok(own) => own,
            Err(error) => {
                tracing::warn!(%error, "cannot read this region's role to compare it with its peers'");
                return None;
            }
        };
        if own.role != RegionRole::Active {
            return None;
        }
        let mut newest: Option<tandem_api::RegionStatus> = None;
        for (name, status) in self.peers.statuses().await {
            let status = match status {
                Ok(status) => status,
                Err(error) => {
                    tracing::debug!(peer = %name, %error, "peer region did not answer");
                    continue;
                }
            };
            if status.region != name {
                tracing::warn!(peer = %name, answered = %status.region, "a `[dr] peers` entry reaches a region of another name");
            }
            if status.role != tandem_api::RegionRole::Active {
                continue;
            }
            if status.region_epoch == own.region_epoch
                && self.reported_twin.swap(own.region_epoch, Ordering::SeqCst) != own.region_epoch
            {
                tracing::error!(region = %own.region, peer = %status.region, region_epoch = own.region_epoch, "another region is active with this region's epoch: two regions accept writes; demote one of them (`tandem dr demote`)");
            }
            if status.region_epoch > own.region_epoch
                && newest
                    .as_ref()
                    .is_none_or(|newest| status.region_epoch > newest.region_epoch)
            {
                newest = Some(status);
            }
        }
        let peer = newest?;
        let fork = peer.promoted_at_position.unwrap_or(0);
        tracing::error!(region = %own.region, region_epoch = own.region_epoch, peer = %peer.region, peer_epoch = peer.region_epoch, fork_position = fork, "region {} was promoted with a higher region epoch: this region stops scheduling and refuses writes", peer.region);
        match self
            .store
            .demote(&peer.region, peer.region_epoch, fork)
            .await
        {
            Ok(state) => {
                self.watch.publish(state.clone());
                self.report_tail(&state).await;
                Some(state)
            }
            Err(error) => {
                tracing::error!(%error, peer = %peer.region, "cannot record the higher region epoch of the peer; asking again at the next check");
                None
            }
        }
    }
}
