//! [`RegionClient`]: `DrService` calls to one region's replicas through the SDK's
//! [`tandem_api::Client`] (its DR methods): reads go to any replica that answers; promote,
//! demote and rejoin go to the region's leader, following `not_leader` replies and waiting
//! out an election or a starting leader within [`DrClientConfig::leader_timeout`]. When no
//! replica can be reached the call fails at once.

use std::sync::OnceLock;
use std::time::Duration;

use tandem_api::{Client, ClientConfig, ClientError};

use crate::error::DrError;
use crate::region_status::RegionStatus;

/// Timeouts of DR calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrClientConfig {
    /// Time to open a TCP connection to one replica. Default 2 s.
    pub connect_timeout: Duration,
    /// Time for one replica's reply. Default 10 s.
    pub request_timeout: Duration,
    /// How long a leader call may spend finding the leader (following `not_leader`, waiting
    /// for an election or a starting leader). Default 15 s.
    pub leader_timeout: Duration,
}

impl Default for DrClientConfig {
    fn default() -> Self {
        DrClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            leader_timeout: Duration::from_secs(15),
        }
    }
}

/// The replicas of one region and the `DrService` calls to them. Share it by reference; the
/// connections are opened on first use and kept.
#[derive(Debug)]
pub struct RegionClient {
    region: String,
    config: ClientConfig,
    /// Made on the first call (making it needs a tokio runtime).
    client: OnceLock<Result<Client, ClientError>>,
}

impl RegionClient {
    /// A client of region `region` whose replicas are `endpoints` (`http://host:port`, as
    /// [`crate::topology::RegionEntry::endpoints`] holds them). Nothing is checked or
    /// connected here: a bad address fails the first call.
    pub fn new(region: &str, endpoints: &[String], config: DrClientConfig) -> RegionClient {
        RegionClient {
            region: region.to_string(),
            config: ClientConfig::with_endpoints(endpoints.iter().cloned())
                .connect_timeout(config.connect_timeout)
                .request_timeout(config.request_timeout)
                .failover_timeout(config.leader_timeout),
            client: OnceLock::new(),
        }
    }

    /// The region's name.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `GetRegionStatus` from the first replica that answers.
    pub async fn status(&self) -> Result<RegionStatus, DrError> {
        let client = self.client("GetRegionStatus")?;
        let answer = client.region_status().await;
        self.convert("GetRegionStatus", client, answer)
    }

    /// `Promote` on the leader: makes this standby region active with `region_epoch`.
    pub async fn promote(&self, region_epoch: u64) -> Result<RegionStatus, DrError> {
        let client = self.client("Promote")?;
        let answer = client.promote(region_epoch).await;
        self.convert("Promote", client, answer)
    }

    /// `Demote` on the leader: tells this region that `new_active` is active with
    /// `region_epoch`, forked from its log after `fork_position`.
    pub async fn demote(
        &self,
        new_active: &str,
        region_epoch: u64,
        fork_position: u64,
    ) -> Result<RegionStatus, DrError> {
        let client = self.client("Demote")?;
        let answer = client.demote(new_active, region_epoch, fork_position).await;
        self.convert("Demote", client, answer)
    }

    /// `Rejoin` on the leader: makes this fenced (or standby) region a standby of
    /// `active_region`, archiving its tail.
    pub async fn rejoin(
        &self,
        active_region: &str,
        region_epoch: u64,
        fork_position: u64,
    ) -> Result<RegionStatus, DrError> {
        let client = self.client("Rejoin")?;
        let answer = client
            .rejoin(active_region, region_epoch, fork_position)
            .await;
        self.convert("Rejoin", client, answer)
    }

    fn client(&self, call: &str) -> Result<&Client, DrError> {
        self.client
            .get_or_init(|| Client::connect_lazy(self.config.clone()))
            .as_ref()
            .map_err(|error| DrError::Unreachable {
                region: self.region.clone(),
                failures: vec![format!("{call} not sent: {error}")],
            })
    }

    /// The answer of `call` as a [`RegionStatus`], or its error: no replica reached (or none
    /// leading within the timeout) is [`DrError::Unreachable`], an error answer
    /// [`DrError::Refused`], an unreadable answer [`DrError::Protocol`].
    fn convert(
        &self,
        call: &str,
        client: &Client,
        answer: Result<tandem_api::RegionStatus, ClientError>,
    ) -> Result<RegionStatus, DrError> {
        match answer {
            Ok(status) => {
                let endpoint = status.endpoint.clone();
                RegionStatus::from_sdk(status).map_err(|detail| DrError::Protocol {
                    region: self.region.clone(),
                    call: call.to_string(),
                    endpoint,
                    detail,
                })
            }
            Err(error) if unreachable(&error) => Err(DrError::Unreachable {
                region: self.region.clone(),
                failures: vec![error.to_string()],
            }),
            Err(ClientError::Protocol { endpoint, message }) => Err(DrError::Protocol {
                region: self.region.clone(),
                call: call.to_string(),
                endpoint,
                detail: message,
            }),
            Err(error) => Err(DrError::Refused {
                region: self.region.clone(),
                call: call.to_string(),
                endpoint: client.endpoint(),
                error: Box::new(error),
            }),
        }
    }
}

/// True when no replica of the region took the call: none could be reached, the connection
/// broke or timed out (no `tandem-error-code`, which every answer of a Tandem server carries),
/// or none led within the timeout.
fn unreachable(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::NotLeader { .. } | ClientError::LeaderStarting { .. }
    ) || (error.error_code().is_none()
        && matches!(
            error.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
        ))
}
