//! [`ClusterStatus`]: the replicas of a region and its leader (reply of
//! [`crate::Client::cluster_status`]), in Rust forms: enums instead of `i32`, [`Duration`]
//! instead of milliseconds, `Option` instead of unset fields.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::proto;

/// Role of a replica in its region (`tandem.v1.MemberRole` without `UNSPECIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// It holds the leader key: it schedules and writes.
    Leader,
    /// Another member leads, or no leader is known yet.
    Follower,
    /// It runs without leader election (no etcd configured): it leads alone, epoch 0.
    Standalone,
}

impl MemberRole {
    /// The snake_case spelling (`leader`, `follower`, `standalone`).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Leader => "leader",
            MemberRole::Follower => "follower",
            MemberRole::Standalone => "standalone",
        }
    }

    /// The role of a proto enum number; `None` for `UNSPECIFIED` and numbers this client does
    /// not know.
    pub fn from_proto(value: i32) -> Option<MemberRole> {
        match proto::MemberRole::try_from(value).ok()? {
            proto::MemberRole::Unspecified => None,
            proto::MemberRole::Leader => Some(MemberRole::Leader),
            proto::MemberRole::Follower => Some(MemberRole::Follower),
            proto::MemberRole::Standalone => Some(MemberRole::Standalone),
        }
    }
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One replica of the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterMember {
    /// Unique per replica (`tandem serve` defaults it to `<host>-<pid>`).
    pub member_id: String,
    /// The address clients use for it, `http://host:port`.
    pub address: String,
    /// When it started, milliseconds since the Unix epoch.
    pub started_at_unix_ms: i64,
    /// Its Tandem version.
    pub version: String,
    /// True for the member that holds the leader key.
    pub is_leader: bool,
}

/// The member that leads the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterLeader {
    /// Its member id.
    pub member_id: String,
    /// The address clients use for it, `http://host:port`.
    pub address: String,
    /// Its leader epoch (the leader key's create revision in etcd); only grows.
    pub epoch: u64,
}

/// The replicas of a region and its leader, as the answering replica read them from etcd.
/// Serialized (for `--output json`) with durations in milliseconds (`lease_ttl_ms`,
/// `lease_ttl_left_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The region's name.
    pub region: String,
    /// The member id of the replica that answered.
    pub answered_by: String,
    /// The address the answer came from, `http://host:port`.
    pub endpoint: String,
    /// The answering replica's role.
    pub role: MemberRole,
    /// Every live member, ordered by member id.
    pub members: Vec<ClusterMember>,
    /// The leader; `None` while no leader is known (an election is under way).
    pub leader: Option<ClusterLeader>,
    /// TTL of the leader's lease; `None` when no leader is known.
    #[serde(rename = "lease_ttl_ms", serialize_with = "millis")]
    pub lease_ttl: Option<Duration>,
    /// Time left on the leader's lease (etcd counts whole seconds); `None` when no leader is
    /// known.
    #[serde(rename = "lease_ttl_left_ms", serialize_with = "millis")]
    pub lease_ttl_left: Option<Duration>,
}

impl ClusterStatus {
    /// The status of a reply received from `endpoint`. Errors (a message naming the field) when
    /// the role is unset or unknown to this client.
    pub fn from_proto(
        reply: proto::GetClusterStatusResponse,
        endpoint: &str,
    ) -> Result<ClusterStatus, String> {
        let role = MemberRole::from_proto(reply.role).ok_or_else(|| {
            format!(
                "GetClusterStatusResponse.role: expected a member role (1..=3), found {}",
                reply.role
            )
        })?;
        let mut members: Vec<ClusterMember> = reply
            .members
            .into_iter()
            .map(|member| ClusterMember {
                member_id: member.member_id,
                address: member.address,
                started_at_unix_ms: member.started_at_unix_ms,
                version: member.version,
                is_leader: member.is_leader,
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Ok(ClusterStatus {
            region: reply.region,
            answered_by: reply.answered_by,
            endpoint: endpoint.to_string(),
            role,
            members,
            leader: reply.leader.map(|leader| ClusterLeader {
                member_id: leader.member_id,
                address: leader.address,
                epoch: leader.epoch,
            }),
            lease_ttl: reply.lease_ttl_ms.map(Duration::from_millis),
            lease_ttl_left: reply.lease_ttl_left_ms.map(Duration::from_millis),
        })
    }
}

/// A duration as whole milliseconds (`null` when unknown).
fn millis<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => {
            serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
        }
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> proto::GetClusterStatusResponse {
        proto::GetClusterStatusResponse {
            region: "eu-west".to_string(),
            role: proto::MemberRole::Follower as i32,
            members: vec![
                proto::ClusterMember {
                    member_id: "b".to_string(),
                    address: "http://10.0.0.2:7233".to_string(),
                    started_at_unix_ms: 2,
                    version: "0.1.0".to_string(),
                    is_leader: true,
                },
                proto::ClusterMember {
                    member_id: "a".to_string(),
                    address: "http://10.0.0.1:7233".to_string(),
                    started_at_unix_ms: 1,
                    version: "0.1.0".to_string(),
                    is_leader: false,
                },
            ],
            leader: Some(proto::ClusterLeader {
                member_id: "b".to_string(),
                address: "http://10.0.0.2:7233".to_string(),
                epoch: 42,
            }),
            lease_ttl_ms: Some(5000),
            lease_ttl_left_ms: Some(4000),
            answered_by: "a".to_string(),
        }
    }

    #[test]
    fn converts_every_field() {
        let status = ClusterStatus::from_proto(reply(), "http://10.0.0.1:7233").expect("valid");
        assert_eq!(status.role, MemberRole::Follower);
        assert_eq!(status.answered_by, "a");
        assert_eq!(status.endpoint, "http://10.0.0.1:7233");
        let ids: Vec<&str> = status
            .members
            .iter()
            .map(|m| m.member_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"], "ordered by member id");
        assert_eq!(
            status.leader,
            Some(ClusterLeader {
                member_id: "b".to_string(),
                address: "http://10.0.0.2:7233".to_string(),
                epoch: 42,
            })
        );
        assert_eq!(status.lease_ttl, Some(Duration::from_secs(5)));
        assert_eq!(status.lease_ttl_left, Some(Duration::from_secs(4)));
    }

    #[test]
    fn json_has_durations_in_milliseconds() {
        let mut without_leader = reply();
        without_leader.leader = None;
        without_leader.lease_ttl_ms = None;
        without_leader.lease_ttl_left_ms = None;
        let status = ClusterStatus::from_proto(without_leader, "http://x:1").expect("valid");
        let json = serde_json::to_value(&status).expect("serializable");
        assert_eq!(json["role"], "follower");
        assert!(json["leader"].is_null());
        assert!(json["lease_ttl_ms"].is_null());
        let status = ClusterStatus::from_proto(reply(), "http://x:1").expect("valid");
        let json = serde_json::to_value(&status).expect("serializable");
        assert_eq!(json["lease_ttl_ms"], 5000);
        assert_eq!(json["lease_ttl_left_ms"], 4000);
        assert_eq!(json["leader"]["epoch"], 42);
        assert_eq!(json["members"][1]["is_leader"], true);
    }

    #[test]
    fn an_unknown_role_is_refused() {
        for role in [0, 9] {
            let mut bad = reply();
            bad.role = role;
            let error = ClusterStatus::from_proto(bad, "http://x:1").expect_err("no role");
            assert!(error.contains(&format!("found {role}")), "{error}");
        }
    }
}
