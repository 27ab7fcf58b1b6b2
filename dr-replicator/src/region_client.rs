//! [`RegionClient`]: `DrService` calls to one region's replicas. Reads go to the first replica
//! that answers; the other calls go to the region's leader, following `not_leader` replies
//! (`tandem-leader-address`) and waiting out an election or a starting leader within
//! [`DrClientConfig::leader_timeout`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tandem_api::proto::dr_service_client::DrServiceClient;
use tandem_api::{Backoff, ClientError, proto};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

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

/// Most `not_leader` redirects one call follows in a row.
const MAX_REDIRECTS: usize = 8;

/// The replicas of one region and the `DrService` calls to them. Cheap to share by reference;
/// channels are opened on first use and kept.
#[derive(Debug)]
pub struct RegionClient {
    region: String,
    endpoints: Vec<String>,
    config: DrClientConfig,
    channels: Mutex<HashMap<String, Channel>>,
    /// The endpoint that last accepted a leader call.
    leader: Mutex<Option<String>>,
}

/// Which replicas may answer a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Any,
    Leader,
}

impl RegionClient {
    /// A client of region `region` whose replicas are `endpoints` (`http://host:port`, as
    /// [`crate::topology::RegionEntry::endpoints`] holds them).
    pub fn new(region: &str, endpoints: &[String], config: DrClientConfig) -> RegionClient {
        RegionClient {
            region: region.to_string(),
            endpoints: endpoints.to_vec(),
            config,
            channels: Mutex::new(HashMap::new()),
            leader: Mutex::new(None),
        }
    }

    /// The region's name.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `GetRegionStatus` from the first replica that answers.
    pub async fn status(&self) -> Result<RegionStatus, DrError> {
        self.call(Target::Any, "GetRegionStatus", |mut client| async move {
            client
                .get_region_status(proto::GetRegionStatusRequest {})
                .await
        })
        .await
    }

    /// `Promote` on the leader: makes this standby region active with `region_epoch`.
    pub async fn promote(&self, region_epoch: u64) -> Result<RegionStatus, DrError> {
        self.call(Target::Leader, "Promote", |mut client| async move {
            client.promote(proto::PromoteRequest { region_epoch }).await
        })
        .await
    }

    /// `Demote` on the leader: tells this region that `new_active` is active with
    /// `region_epoch`, forked from its log after `fork_position`.
    pub async fn demote(
        &self,
        new_active: &str,
        region_epoch: u64,
        fork_position: u64,
    ) -> Result<RegionStatus, DrError> {
        let request = proto::DemoteRequest {
            new_active: new_active.to_string(),
            region_epoch,
            fork_position,
        };
        self.call(Target::Leader, "Demote", |mut client| {
            let request = request.clone();
            async move { client.demote(request).await }
        })
        .await
    }

    /// `Rejoin` on the leader: makes this fenced (or standby) region a standby of
    /// `active_region`, archiving its tail.
    pub async fn rejoin(
        &self,
        active_region: &str,
        region_epoch: u64,
        fork_position: u64,
    ) -> Result<RegionStatus, DrError> {
        let request = proto::RejoinRequest {
            active_region: active_region.to_string(),
            region_epoch,
            fork_position,
        };
        self.call(Target::Leader, "Rejoin", |mut client| {
            let request = request.clone();
            async move { client.rejoin(request).await }
        })
        .await
    }

    fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|error| ClientError::InvalidEndpoint {
                endpoint: address.to_string(),
                message: error.to_string(),
            })?
            .connect_timeout(self.config.connect_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// The endpoints in the order a call tries them: the last known leader first for leader
    /// calls.
    fn order(&self, target: Target) -> Vec<String> {
        let mut order = self.endpoints.clone();
        if target == Target::Leader
            && let Some(leader) = self
                .leader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        {
            order.retain(|endpoint| endpoint != &leader);
            order.insert(0, leader);
        }
        order
    }

    /// One call: see the module docs for the routing rules. Calls are safe to send twice
    /// (a repeated `Demote`/`Rejoin` changes nothing; a repeated `Promote` is refused as
    /// `dr_role`, which `promote` checks against the region's status).
    async fn call<F, Fut>(
        &self,
        target: Target,
        name: &str,
        send: F,
    ) -> Result<RegionStatus, DrError>
    where
        F: Fn(DrServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<proto::RegionStatus>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.config.leader_timeout;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            let mut failures: Vec<String> = Vec::new();
            let mut answered = false;
            let mut queue: Vec<String> = self.order(target);
            queue.reverse();
            let mut redirects = 0;
            while let Some(address) = queue.pop() {
                let outcome = match self.channel(&address) {
                    Ok(channel) => {
                        let client = DrServiceClient::new(channel);
                        match tokio::time::timeout(self.config.request_timeout, send(client)).await
                        {
                            Ok(Ok(reply)) => Ok(reply.into_inner()),
                            Ok(Err(status)) => Err(ClientError::from(status).at(&address)),
                            Err(_) => Err(ClientError::Other {
                                code: tonic::Code::DeadlineExceeded,
                                message: format!(
                                    "no reply within {} ms",
                                    self.config.request_timeout.as_millis()
                                ),
                                error_code: None,
                            }),
                        }
                    }
                    Err(error) => Err(error),
                };
                let error = match outcome {
                    Ok(reply) => {
                        if target == Target::Leader {
                            *self
                                .leader
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                Some(address.clone());
                        }
                        return RegionStatus::from_wire(reply, &address).map_err(|detail| {
                            DrError::Protocol {
                                region: self.region.clone(),
                                call: name.to_string(),
                                endpoint: address.clone(),
                                detail,
                            }
                        });
                    }
                    Err(error) => error,
                };
                match &error {
                    ClientError::NotLeader {
                        leader: Some(leader),
                        ..
                    } if target == Target::Leader
                        && leader != &address
                        && redirects < MAX_REDIRECTS =>
                    {
                        answered = true;
                        redirects += 1;
                        queue.retain(|queued| queued != leader);
                        queue.push(leader.clone());
                    }
                    ClientError::NotLeader { .. } | ClientError::LeaderStarting { .. } => {
                        answered = true;
                    }
                    _ if is_connection_failure(&error) => {}
                    _ => {
                        return Err(DrError::Refused {
                            region: self.region.clone(),
                            call: name.to_string(),
                            endpoint: address,
                            error: Box::new(error),
                        });
                    }
                }
                failures.push(format!("{address}: {error}"));
            }
            let delay = backoff.next_delay();
            // Nothing answered at all: nothing runs there now, waiting would not help.
            if !answered || Instant::now() + delay >= deadline {
                if answered {
                    failures.push(format!(
                        "no leader accepted {name} within {} ms",
                        self.config.leader_timeout.as_millis()
                    ));
                }
                return Err(DrError::Unreachable {
                    region: self.region.clone(),
                    failures,
                });
            }
            tokio::time::sleep(delay).await;
        }
    }
}

/// True for a failure of the connection rather than an answer of a Tandem server (whose
/// errors always carry `tandem-error-code`).
pub(crate) fn is_connection_failure(error: &ClientError) -> bool {
    error.error_code().is_none()
        && matches!(
            error.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
        )
}
