//! `[dr]` and `[replication]` of `region.toml` (cross-region disaster recovery), their flags
//! and `TANDEM_*` env vars, merged into the engine's [`DrConfig`].
//!
//! ```toml
//! [dr]
//! role = "active"            # the role recorded at first start: active | standby
//! active_region = "eu-west"  # a standby's active region at first start
//! peers = { us-east = "http://127.0.0.1:7301,http://127.0.0.1:7302" }  # other regions
//! peer_check_interval = "1s"
//!
//! [replication]
//! mode = "async"             # async | sync
//! sync_timeout = "2s"
//! ```
//!
//! Without `[dr]` (and without any `--dr-*` flag or env var) the server runs without
//! disaster recovery, as before; `[replication]` alone is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};
use tandem_engine::service::dr::config::{DEFAULT_PEER_CHECK_INTERVAL, DEFAULT_SYNC_TIMEOUT};
use tandem_engine::service::{DrConfig, ReplicationConfig, ReplicationMode};
use tandem_engine::store::replication::RegionRole;

use super::{DurationText, Failure, parse_duration_arg};

/// `[dr]` as written. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrSection {
    role: Option<RoleText>,
    active_region: Option<String>,
    peers: Option<BTreeMap<String, PeerList>>,
    peer_check_interval: Option<DurationText>,
}

/// `[replication]` as written. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplicationSection {
    mode: Option<ModeText>,
    sync_timeout: Option<DurationText>,
}

/// Flags of `tandem serve` for disaster recovery (each also read from its `TANDEM_*` env
/// var). Any `--dr-*` value turns disaster recovery on, like a `[dr]` section.
#[derive(Debug, Default, Args)]
pub struct DrArgs {
    /// The region's role recorded at first start, when its database has none yet: active or
    /// standby [default: active].
    #[arg(long, env = "TANDEM_DR_ROLE", value_name = "ROLE", value_parser = parse_role)]
    pub dr_role: Option<RegionRole>,
    /// The active region a standby follows at first start.
    #[arg(long, env = "TANDEM_DR_ACTIVE_REGION", value_name = "NAME")]
    pub dr_active_region: Option<String>,
    /// The other regions' replicas: `us-east=http://h1:7301,http://h2:7302;ap-south=...`.
    #[arg(long, env = "TANDEM_DR_PEERS", value_name = "PEERS")]
    pub dr_peers: Option<String>,
    /// How often the active region's leader asks its peers for their status [default: 1s].
    #[arg(long, env = "TANDEM_DR_PEER_CHECK_INTERVAL", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub dr_peer_check_interval: Option<Duration>,
    /// Replication mode of the active region: async or sync [default: async].
    #[arg(long, env = "TANDEM_REPLICATION_MODE", value_name = "MODE", value_parser = parse_mode)]
    pub replication_mode: Option<ReplicationMode>,
    /// Sync mode: the longest a write waits for the standby before the region degrades to
    /// async [default: 2s].
    #[arg(long, env = "TANDEM_SYNC_TIMEOUT", value_name = "DURATION", value_parser = parse_duration_arg)]
    pub sync_timeout: Option<Duration>,
}

impl DrArgs {
    fn any_dr(&self) -> bool {
        self.dr_role.is_some()
            || self.dr_active_region.is_some()
            || self.dr_peers.is_some()
            || self.dr_peer_check_interval.is_some()
    }

    fn any_replication(&self) -> bool {
        self.replication_mode.is_some() || self.sync_timeout.is_some()
    }
}

fn parse_role(text: &str) -> Result<RegionRole, String> {
    match RegionRole::parse(text.trim()) {
        Some(RegionRole::Fenced) | None => {
            Err(format!("expected `active` or `standby`, found `{text}`"))
        }
        Some(role) => Ok(role),
    }
}

fn parse_mode(text: &str) -> Result<ReplicationMode, String> {
    ReplicationMode::parse(text.trim())
        .ok_or_else(|| format!("expected `async` or `sync`, found `{text}`"))
}

/// A role, checked while reading (errors carry the line).
#[derive(Debug, Clone, Copy)]
struct RoleText(RegionRole);

impl<'de> Deserialize<'de> for RoleText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_role(&text).map(RoleText).map_err(de::Error::custom)
    }
}

/// A replication mode, checked while reading.
#[derive(Debug, Clone, Copy)]
struct ModeText(ReplicationMode);

impl<'de> Deserialize<'de> for ModeText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_mode(&text).map(ModeText).map_err(de::Error::custom)
    }
}

/// A peer's replicas: a comma-separated string or a list of strings, checked while
/// reading.
#[derive(Debug, Clone)]
struct PeerList(Vec<String>);

impl<'de> Deserialize<'de> for PeerList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Endpoints;
        impl<'de> Visitor<'de> for Endpoints {
            type Value = PeerList;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the region's replica addresses: a comma-separated string (\"http://h1:7301,http://h2:7302\") or a list of strings")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<PeerList, E> {
                endpoints(text).map(PeerList).map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PeerList, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    entries.push(entry);
                }
                endpoints(&entries.join(","))
                    .map(PeerList)
                    .map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(Endpoints)
    }
}

fn endpoints(list: &str) -> Result<Vec<String>, String> {
    tandem_api::parse_endpoints(list).map_err(|error| match error {
        tandem_api::ClientError::InvalidEndpoint { message, .. } => message,
        other => other.to_string(),
    })
}

/// Parses `--dr-peers`: `name=URLS;name=URLS`.
fn parse_peers(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut peers = BTreeMap::new();
    for (index, entry) in text.split(';').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (name, list) = entry.split_once('=').ok_or_else(|| {
            format!(
                "entry {} `{entry}`: expected REGION=URL[,URL...] (like us-east=http://127.0.0.1:7301)",
                index + 1
            )
        })?;
        let name = name.trim();
        let list = endpoints(list).map_err(|error| format!("region `{name}`: {error}"))?;
        if peers.insert(name.to_string(), list).is_some() {
            return Err(format!("region `{name}` is given twice"));
        }
    }
    Ok(peers)
}

/// A region name as a peer or an active region: 1 to 128 characters without `/`.
fn check_region_name(origin: &str, key: &str, name: &str) -> Result<(), Failure> {
    if name.is_empty() || name.contains('/') || name.len() > 128 {
        return Err(Failure::invalid(format!(
            "{origin}: `{key}`: expected a region name of 1 to 128 characters without `/`, found `{name}`"
        )));
    }
    Ok(())
}

/// Merges `args` over the file's sections for region `region`; `None` when disaster
/// recovery is off. `origin` names the file (or `settings`) in errors.
pub(super) fn dr_settings(
    origin: &str,
    region: &str,
    args: DrArgs,
    dr: Option<DrSection>,
    replication: Option<ReplicationSection>,
) -> Result<Option<DrConfig>, Failure> {
    let enabled = dr.is_some() || args.any_dr();
    if !enabled {
        if replication.is_some() || args.any_replication() {
            return Err(Failure::invalid(format!(
                "{origin}: `[replication]` (or --replication-mode / --sync-timeout) is set without `[dr]`: replication needs the region's disaster-recovery settings (`[dr] role`, `active_region`, `peers`)"
            )));
        }
        return Ok(None);
    }
    let dr = dr.unwrap_or_default();
    let replication = replication.unwrap_or_default();
    let role = args
        .dr_role
        .or(dr.role.map(|role| role.0))
        .unwrap_or(RegionRole::Active);
    let active_region = args.dr_active_region.or(dr.active_region);
    let active_region = match (role, active_region) {
        (RegionRole::Standby, None) => {
            return Err(Failure::invalid(format!(
                "{origin}: `dr.active_region`: a standby region needs the region it follows (--dr-active-region / TANDEM_DR_ACTIVE_REGION)"
            )));
        }
        (RegionRole::Standby, Some(active)) if active == region => {
            return Err(Failure::invalid(format!(
                "{origin}: `dr.active_region`: a standby follows another region, found its own name `{region}`"
            )));
        }
        (RegionRole::Standby, Some(active)) => {
            check_region_name(origin, "dr.active_region", &active)?;
            active
        }
        (_, Some(active)) if active != region => {
            return Err(Failure::invalid(format!(
                "{origin}: `dr.active_region`: an active region is its own active region (`{region}`), found `{active}`"
            )));
        }
        (_, _) => region.to_string(),
    };
    let peers = match args.dr_peers {
        Some(text) => parse_peers(&text)
            .map_err(|error| Failure::invalid(format!("--dr-peers / TANDEM_DR_PEERS: {error}")))?,
        None => dr
            .peers
            .unwrap_or_default()
            .into_iter()
            .map(|(name, list)| (name, list.0))
            .collect(),
    };
    for name in peers.keys() {
        check_region_name(origin, &format!("dr.peers.{name}"), name)?;
        if name == region {
            return Err(Failure::invalid(format!(
                "{origin}: `dr.peers`: lists this region `{region}` itself; peers are the other regions"
            )));
        }
    }
    let peer_check_interval = args
        .dr_peer_check_interval
        .or(dr.peer_check_interval.map(|interval| interval.0))
        .unwrap_or(DEFAULT_PEER_CHECK_INTERVAL);
    if peer_check_interval < Duration::from_millis(100) {
        return Err(Failure::invalid(format!(
            "{origin}: `dr.peer_check_interval`: expected at least 100ms, found {}",
            humantime::format_duration(peer_check_interval)
        )));
    }
    let sync_timeout = args
        .sync_timeout
        .or(replication.sync_timeout.map(|timeout| timeout.0))
        .unwrap_or(DEFAULT_SYNC_TIMEOUT);
    if sync_timeout.is_zero() {
        return Err(Failure::invalid(format!(
            "{origin}: `replication.sync_timeout`: expected more than 0s (how long a write may wait for the standby)"
        )));
    }
    Ok(Some(DrConfig {
        role,
        active_region,
        peers,
        peer_check_interval,
        replication: ReplicationConfig {
            mode: args
                .replication_mode
                .or(replication.mode.map(|mode| mode.0))
                .unwrap_or_default(),
            sync_timeout,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_flag_lists_regions_and_their_replicas() {
        let peers =
            parse_peers("us-east=http://127.0.0.1:7301,127.0.0.1:7302; ap-south=http://h:1")
                .unwrap();
        assert_eq!(
            peers["us-east"],
            vec!["http://127.0.0.1:7301", "http://127.0.0.1:7302"]
        );
        assert_eq!(peers["ap-south"], vec!["http://h:1"]);
        let error = parse_peers("us-east").unwrap_err();
        assert!(error.contains("REGION=URL"), "{error}");
        let error = parse_peers("us-east=http://a:1;us-east=http://b:1").unwrap_err();
        assert!(error.contains("twice"), "{error}");
        let error = parse_peers("us-east=").unwrap_err();
        assert!(error.contains("us-east"), "{error}");
    }

    #[test]
    fn flags_alone_turn_dr_on_and_replication_alone_is_refused() {
        let args = DrArgs {
            dr_role: Some(RegionRole::Standby),
            dr_active_region: Some("eu-west".into()),
            replication_mode: Some(ReplicationMode::Sync),
            ..DrArgs::default()
        };
        let dr = dr_settings("settings", "us-east", args, None, None)
            .unwrap()
            .expect("dr on");
        assert_eq!(dr.role, RegionRole::Standby);
        assert_eq!(dr.active_region, "eu-west");
        assert_eq!(dr.replication.mode, ReplicationMode::Sync);
        assert_eq!(dr.replication.sync_timeout, DEFAULT_SYNC_TIMEOUT);
        let args = DrArgs {
            sync_timeout: Some(Duration::from_secs(1)),
            ..DrArgs::default()
        };
        let failure = dr_settings("settings", "us-east", args, None, None).unwrap_err();
        assert!(
            failure.message.contains("without `[dr]`"),
            "{}",
            failure.message
        );
        assert!(
            dr_settings("settings", "us-east", DrArgs::default(), None, None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn roles_need_a_consistent_active_region() {
        let standby = |active: Option<&str>| DrArgs {
            dr_role: Some(RegionRole::Standby),
            dr_active_region: active.map(str::to_string),
            ..DrArgs::default()
        };
        let failure = dr_settings("f", "us-east", standby(None), None, None).unwrap_err();
        assert!(
            failure.message.contains("dr.active_region"),
            "{}",
            failure.message
        );
        let failure =
            dr_settings("f", "us-east", standby(Some("us-east")), None, None).unwrap_err();
        assert!(failure.message.contains("own name"), "{}", failure.message);
        let active = DrArgs {
            dr_role: Some(RegionRole::Active),
            dr_active_region: Some("eu-west".into()),
            ..DrArgs::default()
        };
        let failure = dr_settings("f", "us-east", active, None, None).unwrap_err();
        assert!(
            failure.message.contains("its own active region"),
            "{}",
            failure.message
        );
        assert!(parse_role("fenced").is_err());
    }
}
