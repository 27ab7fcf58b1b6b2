//! [`cluster_status`]: a region's members, its leader and the leader's lease, read from etcd
//! by anyone (no election needed).

use std::time::Duration;

use etcd_client::KeyValue;

use super::error::LeadershipError;
use super::etcd::{Etcd, is_no_leader};
use super::members::{self, Member};
use super::role::LeaderInfo;
use super::{config, keys};

/// A region's election as etcd sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The region.
    pub region: String,
    /// Its registered members (replicas whose lease is alive), by member id.
    pub members: Vec<Member>,
    /// Its leader, when one is elected.
    pub leader: Option<LeaderInfo>,
    /// The TTL the leader's lease was granted with.
    pub lease_ttl: Option<Duration>,
    /// The time left before the leader's lease expires unless renewed (whole seconds, as
    /// etcd reports it; at most `lease_ttl`).
    pub lease_ttl_left: Option<Duration>,
}

/// Reads `region`'s members (`/tandem/<region>/members/*`), its leader (the election's
/// leader key: campaign value and create revision) and the TTL left on the leader's lease
/// (`LeaseTimeToLive`), all within `timeout`.
///
/// Errors: [`LeadershipError::InvalidConfig`] for an empty region or one holding `/`;
/// [`LeadershipError::Timeout`] when etcd does not answer within `timeout`;
/// [`LeadershipError::Etcd`] when it refuses; [`LeadershipError::Decode`] naming a key that
/// holds something else than this version writes.
pub async fn cluster_status(
    endpoints: &[String],
    region: &str,
    timeout: Duration,
) -> Result<ClusterStatus, LeadershipError> {
    if !config::is_key_segment(region) {
        return Err(LeadershipError::InvalidConfig {
            field: "region".into(),
            expected: "a non-empty name without `/`, spaces or control characters".into(),
            found: format!("{region:?}"),
        });
    }
    let doing = format!("reading the status of region {region}");
    let reading = async {
        let etcd = Etcd::connect(endpoints, timeout).await?;
        let members = members::list(&etcd, region).await?;
        let leader_kv = current_leader(&etcd, region).await?;
        let leader = leader_kv.as_ref().map(LeaderInfo::from_kv).transpose()?;
        let (lease_ttl, lease_ttl_left) = match leader_kv.map(|kv| kv.lease()) {
            Some(lease) if lease != 0 => lease_times(&etcd, lease).await?,
            _ => (None, None),
        };
        Ok(ClusterStatus {
            region: region.to_string(),
            members,
            leader,
            lease_ttl,
            lease_ttl_left,
        })
    };
    match tokio::time::timeout(timeout, reading).await {
        Ok(result) => result,
        Err(_) => Err(LeadershipError::Timeout {
            doing,
            endpoints: endpoints.join(","),
            after: timeout,
        }),
    }
}

/// The leader key of `region`'s election (`Leader` of the election API), `None` when no
/// member leads.
pub(super) async fn current_leader(
    etcd: &Etcd,
    region: &str,
) -> Result<Option<KeyValue>, LeadershipError> {
    let name = keys::election_name(region);
    let mut client = etcd.client.election_client();
    let doing = format!("reading the leader of {name}");
    match tokio::time::timeout(etcd.timeout, client.leader(name.as_str())).await {
        Ok(Ok(response)) => Ok(response.kv().cloned()),
        Ok(Err(error)) if is_no_leader(&error) => Ok(None),
        Ok(Err(error)) => Err(etcd.error(&doing, error)),
        Err(_) => Err(LeadershipError::Timeout {
            doing,
            endpoints: etcd.endpoints.clone(),
            after: etcd.timeout,
        }),
    }
}

/// The granted TTL and the TTL left of `lease`; `(None, None)` when it has just expired.
async fn lease_times(
    etcd: &Etcd,
    lease: i64,
) -> Result<(Option<Duration>, Option<Duration>), LeadershipError> {
    let mut client = etcd.client.clone();
    let response = etcd
        .run(
            &format!("reading the time to live of lease {lease:x}"),
            client.lease_time_to_live(lease, None),
        )
        .await?;
    if response.ttl() < 0 {
        return Ok((None, None));
    }
    Ok((
        Some(Duration::from_secs(response.granted_ttl().unsigned_abs())),
        Some(Duration::from_secs(response.ttl().unsigned_abs())),
    ))
}
