//! `tandem.v1.ClusterService`: the region's members and leader, answered by every replica
//! from etcd (or, without leader election, from this replica alone).

use std::time::Duration;

use tandem_api::proto::{self, cluster_service_server::ClusterService};
use tonic::{Request, Response, Status};

use super::error::ServiceError;
use super::region::Region;
use super::replica::ReplicaRole;
use crate::checkpoint::now_millis;
use crate::leadership::{self, ClusterStatus};

/// The handlers of `ClusterService` over a [`Region`] replica.
#[derive(Clone)]
pub struct ClusterApi {
    region: Region,
    started_at_unix_ms: i64,
}

impl ClusterApi {
    /// Handlers for `region`.
    pub fn new(region: Region) -> Self {
        ClusterApi {
            region,
            started_at_unix_ms: now_millis(),
        }
    }

    /// Without leader election: this replica alone, leading with epoch 0.
    fn standalone(&self) -> proto::GetClusterStatusResponse {
        let config = self.region.config();
        proto::GetClusterStatusResponse {
            region: config.region.clone(),
            role: proto::MemberRole::Standalone as i32,
            members: vec![proto::ClusterMember {
                member_id: config.member_id.clone(),
                address: config.advertise.clone(),
                started_at_unix_ms: self.started_at_unix_ms,
                version: env!("CARGO_PKG_VERSION").to_string(),
                is_leader: true,
            }],
            leader: Some(proto::ClusterLeader {
                member_id: config.member_id.clone(),
                address: config.advertise.clone(),
                epoch: 0,
            }),
            lease_ttl_ms: None,
            lease_ttl_left_ms: None,
            answered_by: config.member_id.clone(),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn response(
    status: ClusterStatus,
    role: &ReplicaRole,
    answered_by: &str,
) -> proto::GetClusterStatusResponse {
    let leader_id = status
        .leader
        .as_ref()
        .map(|leader| leader.member_id.clone());
    // `cluster_status` lists the members ordered by member id.
    let members: Vec<proto::ClusterMember> = status
        .members
        .into_iter()
        .map(|member| proto::ClusterMember {
            is_leader: leader_id.as_deref() == Some(member.member_id.as_str()),
            member_id: member.member_id,
            address: member.address,
            started_at_unix_ms: member.started_at,
            version: member.version,
        })
        .collect();
    let role = match role {
        ReplicaRole::Leading { .. }
        | ReplicaRole::Starting { .. }
        | ReplicaRole::Standby { .. } => proto::MemberRole::Leader,
        ReplicaRole::Following { .. } => proto::MemberRole::Follower,
    };
    proto::GetClusterStatusResponse {
        region: status.region,
        role: role as i32,
        members,
        leader: status.leader.map(|leader| proto::ClusterLeader {
            member_id: leader.member_id,
            address: leader.address,
            epoch: leader.epoch,
        }),
        lease_ttl_ms: status.lease_ttl.map(millis),
        lease_ttl_left_ms: status.lease_ttl_left.map(millis),
        answered_by: answered_by.to_string(),
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn get_cluster_status(
        &self,
        _request: Request<proto::GetClusterStatusRequest>,
    ) -> Result<Response<proto::GetClusterStatusResponse>, Status> {
        let config = self.region.config();
        if config.etcd_endpoints.is_empty() {
            return Ok(Response::new(self.standalone()));
        }
        let status =
            leadership::cluster_status(&config.etcd_endpoints, &config.region, config.etcd_timeout)
                .await
                .map_err(|error| ServiceError::EtcdUnavailable {
                    endpoints: config.etcd_endpoints.join(","),
                    detail: error.to_string(),
                })?;
        Ok(Response::new(response(
            status,
            &self.region.role(),
            &config.member_id,
        )))
    }
}
