//! The drill's preflight ([`check`], rules in [`evaluate`]): every region of the topology
//! answers `GetRegionStatus` under its own name; exactly one is active; the standby to
//! promote follows it and its replication is connected (a batch, heartbeats included,
//! applied within [`CONNECTED_WITHIN`]); its lag is reported.

use std::time::Duration;

use serde::Serialize;
use tandem_engine::checkpoint::{UnixMillis, now_millis};
use tandem_engine::store::replication::RegionRole;

use crate::error::DrError;
use crate::region_client::{DrClientConfig, RegionClient};
use crate::region_status::{Lag, RegionStatus};
use crate::topology::Topology;

/// Longest age of the standby's last applied batch for its replication to count as
/// connected (the active region sends a batch, at worst a heartbeat, at least every second).
pub const CONNECTED_WITHIN: Duration = Duration::from_secs(5);

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preflight {
    /// The active region.
    pub active: String,
    /// The standby the drill promotes.
    pub standby: String,
    /// Every region's status, in the topology's order.
    pub regions: Vec<RegionStatus>,
    /// The standby's lag when read.
    pub lag: Lag,
    /// How long before the read the standby applied its last batch, ms.
    pub applied_age_ms: u64,
    /// When the statuses were read, ms since the Unix epoch.
    pub read_at_ms: UnixMillis,
}

/// Reads every region's status (concurrently) and applies [`evaluate`]. `standby` names the
/// standby to promote when there are several. Errors: a text saying what is wrong and where.
pub async fn check(
    topology: &Topology,
    standby: Option<&str>,
    config: DrClientConfig,
) -> Result<Preflight, String> {
    let clients: Vec<RegionClient> = topology
        .regions
        .iter()
        .map(|(name, entry)| RegionClient::new(name, &entry.endpoints, config))
        .collect();
    let answers = futures::future::join_all(clients.iter().map(RegionClient::status)).await;
    let answers = clients
        .iter()
        .map(|client| client.region().to_string())
        .zip(answers)
        .collect();
    evaluate(answers, standby, now_millis())
}

/// The preflight's rules over each region's answer (topology name → status or error) read
/// at `now_ms`; `standby` names the standby to promote (needed when several follow the
/// active region).
pub fn evaluate(
    answers: Vec<(String, Result<RegionStatus, DrError>)>,
    standby: Option<&str>,
    now_ms: UnixMillis,
) -> Result<Preflight, String> {
    let mut failures: Vec<String> = Vec::new();
    let mut regions: Vec<RegionStatus> = Vec::new();
    for (name, answer) in answers {
        match answer {
            Ok(status) if status.region != name => failures.push(format!(
                "the topology's region {name} answered as region {} (at {}): its endpoints point at another region",
                status.region, status.answered_by
            )),
            Ok(status) => regions.push(status),
            Err(error) => failures.push(error.to_string()),
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "every region must answer GetRegionStatus before a drill: {}",
            failures.join("; ")
        ));
    }
    let roles = || {
        regions
            .iter()
            .map(|status| {
                format!(
                    "{} {} (epoch {})",
                    status.region, status.role, status.region_epoch
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let active: Vec<&RegionStatus> = regions
        .iter()
        .filter(|status| status.role == RegionRole::Active)
        .collect();
    let active = match active.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(format!(
                "expected exactly one active region, found none: {}",
                roles()
            ));
        }
        _ => {
            return Err(format!(
                "expected exactly one active region, found {}: {} (resolve it with `tandem dr status` and `tandem dr rejoin` before a drill)",
                active.len(),
                roles()
            ));
        }
    };
    let chosen: &RegionStatus = match standby {
        Some(name) => regions
            .iter()
            .find(|status| status.region == name)
            .ok_or_else(|| {
                format!(
                    "--standby {name}: no such region in the topology (regions: {})",
                    regions
                        .iter()
                        .map(|status| status.region.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?,
        None => {
            let standbys: Vec<&RegionStatus> = regions
                .iter()
                .filter(|status| status.role == RegionRole::Standby)
                .collect();
            match standbys.as_slice() {
                [one] => one,
                [] => {
                    return Err(format!(
                        "expected a standby region to promote, found none: {}{}",
                        roles(),
                        fenced_hint(&regions)
                    ));
                }
                several => {
                    return Err(format!(
                        "several standby regions ({}): choose the one to promote with --standby",
                        several
                            .iter()
                            .map(|status| status.region.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    };
    if chosen.role != RegionRole::Standby {
        return Err(format!(
            "region {} is {}, expected a standby to promote{}",
            chosen.region,
            chosen.role,
            fenced_hint(&regions)
        ));
    }
    if chosen.active_region != active.region {
        return Err(format!(
            "standby {} follows {}, expected the active region {}",
            chosen.region, chosen.active_region, active.region
        ));
    }
    let connected_ms = u64::try_from(CONNECTED_WITHIN.as_millis()).unwrap_or(u64::MAX);
    let applied_age_ms = match chosen.applied_at_ms {
        None => {
            return Err(format!(
                "standby {}'s replication is not connected: it never applied a batch from {} (is `tandem replicate` running in {}?)",
                chosen.region, active.region, chosen.region
            ));
        }
        Some(at) => u64::try_from(now_ms - at).unwrap_or(0),
    };
    if applied_age_ms > connected_ms {
        return Err(format!(
            "standby {}'s replication is not connected: its last batch from {} was applied {} ms ago, expected within {} ms (is `tandem replicate` running in {}, and can it reach {}?)",
            chosen.region,
            active.region,
            applied_age_ms,
            connected_ms,
            chosen.region,
            active.region
        ));
    }
    let lag = chosen.lag(now_ms).unwrap_or(Lag {
        positions: 0,
        millis: None,
    });
    Ok(Preflight {
        active: active.region.clone(),
        standby: chosen.region.clone(),
        lag,
        applied_age_ms,
        read_at_ms: now_ms,
        regions,
    })
}

fn fenced_hint(regions: &[RegionStatus]) -> String {
    let fenced: Vec<&str> = regions
        .iter()
        .filter(|status| status.role == RegionRole::Fenced)
        .map(|status| status.region.as_str())
        .collect();
    if fenced.is_empty() {
        String::new()
    } else {
        format!(
            " ({} is fenced with an unreplicated tail from an earlier failover: `tandem dr rejoin --region {}` makes it a standby)",
            fenced.join(", "),
            fenced[0]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_status::ReplicationMode;

    fn status(region: &str, role: RegionRole, active: &str) -> RegionStatus {
        RegionStatus {
            region: region.into(),
            role,
            region_epoch: 1,
            active_region: active.into(),
            latest_position: 100,
            applied_position: 90,
            applied_at_ms: Some(9_800),
            applied_recorded_at_ms: Some(9_500),
            source_latest_position: 100,
            promoted_at_position: None,
            tail: None,
            tail_runs: Vec::new(),
            replication_mode: ReplicationMode::Async,
            sync_degraded_since_ms: None,
            standby_acked_position: None,
            standby_region: None,
            leader_member: None,
            leader_epoch: None,
            archived_tail_checkpoints: 0,
            promoted_at_ms: None,
            first_dispatch_at_ms: None,
            answered_by: "http://h:1".into(),
        }
    }

    fn pair() -> Vec<(String, Result<RegionStatus, DrError>)> {
        vec![
            (
                "eu-west".into(),
                Ok(status("eu-west", RegionRole::Active, "eu-west")),
            ),
            (
                "us-east".into(),
                Ok(status("us-east", RegionRole::Standby, "eu-west")),
            ),
        ]
    }

    #[test]
    fn a_healthy_pair_passes_with_the_lag() {
        let found = evaluate(pair(), None, 10_000).unwrap();
        assert_eq!(found.active, "eu-west");
        assert_eq!(found.standby, "us-east");
        assert_eq!(found.lag.positions, 10);
        assert_eq!(found.lag.millis, Some(500));
        assert_eq!(found.applied_age_ms, 200);
        assert_eq!(found.regions.len(), 2);
    }

    #[test]
    fn an_unreachable_or_misnamed_region_fails() {
        let mut answers = pair();
        answers[1].1 = Err(DrError::Unreachable {
            region: "us-east".into(),
            failures: vec!["http://h:2: connection refused".into()],
        });
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(error.contains("region us-east is unreachable"), "{error}");
        let mut answers = pair();
        answers[1].0 = "ap-south".into();
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(
            error.contains("region ap-south answered as region us-east"),
            "{error}"
        );
    }

    #[test]
    fn exactly_one_active_region() {
        let mut answers = pair();
        answers[1].1 = Ok(status("us-east", RegionRole::Active, "us-east"));
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(error.contains("found 2"), "{error}");
        let mut answers = pair();
        answers[0].1 = Ok(status("eu-west", RegionRole::Fenced, "us-east"));
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(error.contains("found none"), "{error}");
    }

    #[test]
    fn the_standby_must_follow_the_active_region_and_be_connected() {
        let mut answers = pair();
        answers[1].1 = Ok(status("us-east", RegionRole::Standby, "ap-south"));
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(error.contains("follows ap-south"), "{error}");

        let mut stale = status("us-east", RegionRole::Standby, "eu-west");
        stale.applied_at_ms = Some(1_000);
        let mut answers = pair();
        answers[1].1 = Ok(stale);
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(error.contains("applied 9000 ms ago"), "{error}");

        let mut never = status("us-east", RegionRole::Standby, "eu-west");
        never.applied_at_ms = None;
        let mut answers = pair();
        answers[1].1 = Ok(never);
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(error.contains("never applied"), "{error}");
    }

    #[test]
    fn several_standbys_need_a_choice_and_a_fenced_one_is_named() {
        let mut answers = pair();
        answers.push((
            "ap-south".into(),
            Ok(status("ap-south", RegionRole::Standby, "eu-west")),
        ));
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(error.contains("--standby"), "{error}");
        let mut answers = pair();
        answers.push((
            "ap-south".into(),
            Ok(status("ap-south", RegionRole::Standby, "eu-west")),
        ));
        assert_eq!(
            evaluate(answers, Some("ap-south"), 10_000).unwrap().standby,
            "ap-south"
        );

        let mut answers = pair();
        answers[1].1 = Ok(status("us-east", RegionRole::Fenced, "eu-west"));
        let error = evaluate(answers, None, 10_000).unwrap_err();
        assert!(
            error.contains("tandem dr rejoin --region us-east"),
            "{error}"
        );
        let error = evaluate(pair(), Some("eu-west"), 10_000).unwrap_err();
        assert!(
            error.contains("region eu-west is active, expected a standby"),
            "{error}"
        );
    }
}
