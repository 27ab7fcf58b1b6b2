//! The members registry: one key per running replica, on the replica's lease.

use etcd_client::{GetOptions, KeyValue, PutOptions};
use serde::{Deserialize, Serialize};

use super::error::LeadershipError;
use super::etcd::Etcd;
use super::keys;
use super::role::decode_json;
use crate::checkpoint::UnixMillis;

/// One replica of a region, as registered under `/tandem/<region>/members/<member_id>`
/// (JSON, on the replica's lease: it disappears within a TTL of the replica's death).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Unique per replica.
    pub member_id: String,
    /// The address clients use to reach it.
    pub address: String,
    /// When its election started (ms since the Unix epoch).
    pub started_at: UnixMillis,
    /// The `tandem-engine` version it runs.
    pub version: String,
}

/// Puts `member` under its key on `lease` (again after every new lease).
pub(super) async fn register(
    etcd: &Etcd,
    region: &str,
    member: &Member,
    lease: i64,
) -> Result<(), LeadershipError> {
    let key = keys::member_key(region, &member.member_id);
    let value = serde_json::json!({
        "member_id": member.member_id,
        "address": member.address,
        "started_at": member.started_at,
        "version": member.version,
    })
    .to_string();
    let mut client = etcd.client.clone();
    etcd.run(
        &format!("registering member {key}"),
        client.put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        ),
    )
    .await
    .map(drop)
}

/// The registered members of `region`, by member id.
///
/// Errors: [`LeadershipError::Etcd`] / [`LeadershipError::Timeout`] when etcd does not
/// answer; [`LeadershipError::Decode`] naming a key whose value is not a member.
pub(super) async fn list(etcd: &Etcd, region: &str) -> Result<Vec<Member>, LeadershipError> {
    let prefix = keys::members_prefix(region);
    let mut client = etcd.client.clone();
    let response = etcd
        .run(
            &format!("reading the members of region {region} ({prefix}*)"),
            client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
    let mut members = response
        .kvs()
        .iter()
        .map(decode)
        .collect::<Result<Vec<Member>, LeadershipError>>()?;
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    Ok(members)
}

fn decode(kv: &KeyValue) -> Result<Member, LeadershipError> {
    decode_json(
        kv,
        r#"a member {"member_id", "address", "started_at" (ms), "version"}"#,
    )
}
