//! `tandem dr status`: every region of the topology as its replicas answer
//! `GetRegionStatus` (asked at once), with the lag of standbys; unreachable regions are
//! reported as such. [`Regions`] holds one [`RegionClient`] per region and is what the other
//! operations take.

use std::collections::BTreeMap;

use serde::Serialize;
use tandem_engine::checkpoint::{UnixMillis, now_millis};
use tandem_engine::store::replication::RegionRole;

use crate::error::DrError;
use crate::region_client::{DrClientConfig, RegionClient};
use crate::region_status::{Lag, RegionStatus};
use crate::topology::{Topology, TopologyError};

/// The regions of a topology and a client for each.
#[derive(Debug)]
pub struct Regions {
    topology: Topology,
    clients: BTreeMap<String, RegionClient>,
}

impl Regions {
    /// Clients for every region of `topology` (no connection is opened yet).
    pub fn new(topology: Topology, config: DrClientConfig) -> Regions {
        let clients = topology
            .regions
            .iter()
            .map(|(name, entry)| {
                (
                    name.clone(),
                    RegionClient::new(name, &entry.endpoints, config),
                )
            })
            .collect();
        Regions { topology, clients }
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The client of region `name`; [`DrError::Topology`] when the topology lacks it.
    pub fn client(&self, name: &str) -> Result<&RegionClient, DrError> {
        self.topology.region(name)?;
        self.clients.get(name).ok_or_else(|| {
            DrError::Topology(TopologyError::UnknownRegion {
                name: name.to_string(),
                path: self.topology.path.display().to_string(),
                known: self.topology.names().join(", "),
            })
        })
    }

    /// Asks every region for its status, all at once.
    pub async fn status(&self) -> DrStatus {
        let asks = self
            .clients
            .iter()
            .map(|(name, client)| async move { (name.clone(), client.status().await) });
        let answers = futures::future::join_all(asks).await;
        let checked_at_ms = now_millis();
        let regions = answers
            .into_iter()
            .map(|(name, answer)| {
                let endpoints = self
                    .topology
                    .regions
                    .get(&name)
                    .map(|entry| entry.endpoints.clone())
                    .unwrap_or_default();
                RegionReport::new(name, endpoints, answer, checked_at_ms)
            })
            .collect();
        DrStatus {
            checked_at_ms,
            regions,
        }
    }
}

/// Every region's state at one moment (`tandem dr status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrStatus {
    /// When the answers were in (ms since the Unix epoch); lags are computed at this time.
    pub checked_at_ms: UnixMillis,
    /// One report per region of the topology, in name order.
    pub regions: Vec<RegionReport>,
}

/// One region in a [`DrStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionReport {
    /// The region's name (from the topology).
    pub region: String,
    /// Its replicas (from the topology).
    pub endpoints: Vec<String>,
    /// Whether a replica answered.
    pub reachable: bool,
    /// Its status when a replica answered.
    pub status: Option<RegionStatus>,
    /// A standby's lag at `checked_at_ms`.
    pub lag: Option<Lag>,
    /// Why there is no status (every replica unreachable, or an error answer).
    pub error: Option<String>,
}

impl RegionReport {
    /// The report of `region` from its answer.
    pub fn new(
        region: String,
        endpoints: Vec<String>,
        answer: Result<RegionStatus, DrError>,
        now_ms: UnixMillis,
    ) -> RegionReport {
        match answer {
            Ok(status) => RegionReport {
                region,
                endpoints,
                reachable: true,
                lag: status.lag(now_ms),
                status: Some(status),
                error: None,
            },
            Err(error) => RegionReport {
                region,
                endpoints,
                reachable: false,
                status: None,
                lag: None,
                error: Some(error.to_string()),
            },
        }
    }
}

impl DrStatus {
    /// The report of region `name`.
    pub fn region(&self, name: &str) -> Option<&RegionReport> {
        self.regions.iter().find(|report| report.region == name)
    }

    /// The status of region `name` when it answered.
    pub fn answered(&self, name: &str) -> Option<&RegionStatus> {
        self.region(name).and_then(|report| report.status.as_ref())
    }

    /// The regions that answered as active, highest region epoch first.
    pub fn active(&self) -> Vec<&RegionStatus> {
        let mut active: Vec<&RegionStatus> = self
            .regions
            .iter()
            .filter_map(|report| report.status.as_ref())
            .filter(|status| status.role == RegionRole::Active)
            .collect();
        active.sort_by_key(|status| std::cmp::Reverse(status.region_epoch));
        active
    }

    /// The highest region epoch any answering region reported (0 when none answered).
    pub fn max_epoch(&self) -> u64 {
        self.regions
            .iter()
            .filter_map(|report| report.status.as_ref())
            .map(|status| status.region_epoch)
            .max()
            .unwrap_or(0)
    }

    /// True when every region answered, exactly one is active, and every other one is a
    /// standby of it.
    pub fn healthy(&self) -> bool {
        let active = self.active();
        let [active] = active.as_slice() else {
            return false;
        };
        self.regions.iter().all(|report| match &report.status {
            None => false,
            Some(status) if status.region == active.region => true,
            Some(status) => {
                status.role == RegionRole::Standby && status.active_region == active.region
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::region_status::ReplicationMode;

    /// A status of `region` with `role`, following `active_region`.
    pub(crate) fn status(region: &str, role: RegionRole, epoch: u64, active: &str) -> RegionStatus {
        RegionStatus {
            region: region.into(),
            role,
            region_epoch: epoch,
            active_region: active.into(),
            latest_position: 10,
            applied_position: 10,
            applied_at_ms: None,
            applied_recorded_at_ms: None,
            source_latest_position: 10,
            promoted_at_position: None,
            tail: None,
            tail_runs: vec![],
            replication_mode: ReplicationMode::Async,
            sync_degraded_since_ms: None,
            standby_acked_position: None,
            standby_region: None,
            leader_member: None,
            leader_epoch: None,
            archived_tail_checkpoints: 0,
            promoted_at_ms: None,
            first_dispatch_at_ms: None,
            answered_by: format!("http://{region}:1"),
        }
    }

    fn report(answer: Result<RegionStatus, DrError>, name: &str) -> RegionReport {
        RegionReport::new(name.into(), vec![], answer, 0)
    }

    fn unreachable(name: &str) -> RegionReport {
        report(
            Err(DrError::Unreachable {
                region: name.into(),
                failures: vec!["http://x:1: refused".into()],
            }),
            name,
        )
    }

    #[test]
    fn finds_the_active_region_and_the_highest_epoch() {
        let dr = DrStatus {
            checked_at_ms: 0,
            regions: vec![
                report(Ok(status("a", RegionRole::Active, 1, "a")), "a"),
                report(Ok(status("b", RegionRole::Active, 2, "b")), "b"),
                unreachable("c"),
            ],
        };
        assert_eq!(dr.active()[0].region, "b");
        assert_eq!(dr.max_epoch(), 2);
        assert!(!dr.healthy());
        assert!(
            dr.region("c")
                .unwrap()
                .error
                .as_deref()
                .unwrap()
                .contains("refused")
        );
        assert_eq!(dr.answered("c"), None);
    }

    #[test]
    fn healthy_means_one_active_and_its_standbys() {
        let healthy = DrStatus {
            checked_at_ms: 0,
            regions: vec![
                report(Ok(status("a", RegionRole::Active, 1, "a")), "a"),
                report(Ok(status("b", RegionRole::Standby, 1, "a")), "b"),
            ],
        };
        assert!(healthy.healthy());
        let mut lost = healthy.clone();
        lost.regions[1] = unreachable("b");
        assert!(!lost.healthy());
        let mut fenced = healthy;
        fenced.regions[1] = report(Ok(status("b", RegionRole::Fenced, 0, "a")), "b");
        assert!(!fenced.healthy());
    }
}
