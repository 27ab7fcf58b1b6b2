//! [`Role`] and [`LeaderInfo`]: what an [`Election`](super::Election) publishes, and the
//! campaign value that names a leader.

use etcd_client::KeyValue;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::LeadershipError;

/// The member that leads a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    /// Its member id.
    pub member_id: String,
    /// The address clients use to reach it, e.g. `http://10.0.0.7:7233`.
    pub address: String,
    /// Its epoch: the create revision of its leader key in etcd. Every later leader of the
    /// region has a higher one.
    pub epoch: u64,
}

/// This replica's part in its region's election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not leading: another member leads (`leader`), or none is known (etcd unreachable,
    /// election under way).
    Follower {
        /// The current leader, when known.
        leader: Option<LeaderInfo>,
    },
    /// This replica leads with `epoch` (its leader key's create revision) and may dispatch
    /// until `valid_until` (last successful keep-alive's send time + TTL − safety margin)
    /// unless renewed. The election publishes `Follower` no later than `valid_until` when
    /// no renewal arrives, whether or not etcd answers.
    Leader {
        /// The leader epoch: the create revision of this replica's leader key.
        epoch: u64,
        /// When the role lapses unless a keep-alive is answered before.
        valid_until: Instant,
    },
}

impl Role {
    /// Whether this is [`Role::Leader`].
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader { .. })
    }

    /// The epoch of the leader this role knows of: its own when leading, the followed
    /// leader's when following one, `None` when no leader is known.
    pub fn leader_epoch(&self) -> Option<u64> {
        match self {
            Role::Leader { epoch, .. } => Some(*epoch),
            Role::Follower { leader } => leader.as_ref().map(|leader| leader.epoch),
        }
    }
}

/// The value a member campaigns with (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Candidate {
    pub member_id: String,
    pub address: String,
}

impl Candidate {
    /// The campaign value: `{"member_id":"…","address":"…"}`.
    pub fn encode(&self) -> String {
        serde_json::json!({ "member_id": self.member_id, "address": self.address }).to_string()
    }
}

impl LeaderInfo {
    /// The leader named by its election key: the campaign value's member and address, the
    /// key's create revision as epoch.
    ///
    /// Errors: [`LeadershipError::Decode`] when the value is not a campaign value.
    pub(super) fn from_kv(kv: &KeyValue) -> Result<LeaderInfo, LeadershipError> {
        let candidate: Candidate =
            decode_json(kv, r#"a campaign value {"member_id": "…", "address": "…"}"#)?;
        Ok(LeaderInfo {
            member_id: candidate.member_id,
            address: candidate.address,
            epoch: kv.create_revision().unsigned_abs(),
        })
    }
}

/// Parses the JSON value of `kv`, naming the key, what was expected and what was found.
pub(super) fn decode_json<T: for<'de> Deserialize<'de>>(
    kv: &KeyValue,
    expected: &str,
) -> Result<T, LeadershipError> {
    serde_json::from_slice(kv.value()).map_err(|error| {
        let text = String::from_utf8_lossy(kv.value());
        let shown: String = text.chars().take(120).collect();
        let ellipsis = if text.chars().count() > 120 {
            "…"
        } else {
            ""
        };
        LeadershipError::Decode {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            expected: expected.to_string(),
            found: format!("`{shown}{ellipsis}` ({error})"),
        }
    })
}
