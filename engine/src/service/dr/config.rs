//! The settings of a region that takes part in cross-region disaster recovery: `[dr]` and
//! `[replication]` of `region.toml` as one typed struct.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::replication::RegionRole;

/// How the active region's leader acknowledges its writes. Serialized as
/// [`ReplicationMode::as_str`] spells it (`async`, `sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationMode {
    /// A write is acknowledged once it is durable in this region's store; the standby
    /// catches up in the background (RPO: the replication lag).
    #[default]
    Async,
    /// A write is acknowledged (to the client or worker, and before the attempts it starts
    /// are dispatched) only once a standby acknowledged holding its position, waiting at
    /// most [`ReplicationConfig::sync_timeout`]; then the region degrades to async until the
    /// standby catches up (RPO 0 while not degraded).
    Sync,
}

impl ReplicationMode {
    /// `async` or `sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationMode::Async => "async",
            ReplicationMode::Sync => "sync",
        }
    }

    /// Parses [`ReplicationMode::as_str`]'s spelling.
    pub fn parse(text: &str) -> Option<ReplicationMode> {
        [ReplicationMode::Async, ReplicationMode::Sync]
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

impl fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[replication]`: how the active region ships its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// Async (default) or sync.
    pub mode: ReplicationMode,
    /// Sync mode: the longest a write waits for a standby's acknowledgement before the
    /// region degrades to async. Default 2 s.
    pub sync_timeout: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            mode: ReplicationMode::Async,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
        }
    }
}

/// Default [`ReplicationConfig::sync_timeout`].
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Default [`DrConfig::peer_check_interval`].
pub const DEFAULT_PEER_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `[dr]`: the region's place among the regions of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrConfig {
    /// The role the store records at first start, when it has none yet
    /// ([`crate::store::replication::ReplicationStore::init_region`]): `Active` or `Standby`.
    /// Once the store has a role, the store's role wins (promotions and demotions change
    /// it); this setting is then ignored.
    pub role: RegionRole,
    /// The region a standby follows at first start; the region itself when active.
    pub active_region: String,
    /// The other regions' replicas (`us-east` → `["http://127.0.0.1:7301", ...]`): the
    /// active region's leader asks them for their status to learn of a promotion elsewhere.
    pub peers: BTreeMap<String, Vec<String>>,
    /// How often the active region's leader asks its peers. Default 1 s.
    pub peer_check_interval: Duration,
    /// `[replication]`.
    pub replication: ReplicationConfig,
}

impl DrConfig {
    /// An active region with no peers, async replication and the default intervals.
    pub fn active(region: impl Into<String>) -> DrConfig {
        DrConfig {
            role: RegionRole::Active,
            active_region: region.into(),
            peers: BTreeMap::new(),
            peer_check_interval: DEFAULT_PEER_CHECK_INTERVAL,
            replication: ReplicationConfig::default(),
        }
    }

    /// A standby of `active_region` with no peers, async replication and the default
    /// intervals.
    pub fn standby(active_region: impl Into<String>) -> DrConfig {
        DrConfig {
            role: RegionRole::Standby,
            ..DrConfig::active(active_region)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_their_own_spelling_only() {
        for mode in [ReplicationMode::Async, ReplicationMode::Sync] {
            assert_eq!(ReplicationMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(ReplicationMode::parse("Sync"), None);
        assert_eq!(ReplicationMode::default(), ReplicationMode::Async);
    }

    #[test]
    fn modes_serialize_as_their_own_spelling() {
        for mode in [ReplicationMode::Async, ReplicationMode::Sync] {
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
            assert_eq!(
                serde_json::from_str::<ReplicationMode>(&json).unwrap(),
                mode
            );
        }
        assert!(serde_json::from_str::<ReplicationMode>("\"Sync\"").is_err());
    }

    #[test]
    fn constructors_set_the_role_and_the_active_region() {
        let active = DrConfig::active("eu-west");
        assert_eq!(active.role, RegionRole::Active);
        assert_eq!(active.active_region, "eu-west");
        let standby = DrConfig::standby("eu-west");
        assert_eq!(standby.role, RegionRole::Standby);
        assert_eq!(standby.active_region, "eu-west");
        assert_eq!(standby.replication.sync_timeout, DEFAULT_SYNC_TIMEOUT);
    }
}
