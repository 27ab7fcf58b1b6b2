//! `tandem dr rejoin --region R`: makes the old active region R (fenced after a promotion
//! elsewhere) a standby of the active region: its unreplicated tail is archived in `dr_tail`
//! (kept, never dropped silently), its log is cut back to the fork position, and its
//! replicator starts pulling from the active region.
//!
//! 1. Every region's status is read; R must answer; the active region is the other region
//!    that answers as active with the highest region epoch.
//! 2. An R that still believes it is active (it has not learned of the promotion yet) with a
//!    lower region epoch is demoted first.
//! 3. `Rejoin(active region, its region epoch, its promoted_at_position)` on R's leader.

use serde::Serialize;
use tandem_engine::store::replication::{RegionRole, TailRange, TailRun};

use crate::error::DrError;
use crate::promote::answering;
use crate::region_status::RegionStatus;
use crate::status::Regions;

/// What a rejoin did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejoinOutcome {
    /// The rejoined region.
    pub region: String,
    /// The active region it now follows.
    pub active_region: String,
    /// The active region's epoch.
    pub region_epoch: u64,
    /// Where its log was cut back to (the active region's `promoted_at_position`).
    pub fork_position: u64,
    /// Whether it still answered as active and was demoted first.
    pub demoted_first: bool,
    /// Its unreplicated tail before the rejoin (now archived), if it had one.
    pub tail: Option<TailRange>,
    /// The runs with checkpoints in that tail.
    pub tail_runs: Vec<TailRun>,
    /// Checkpoints this rejoin moved to the archive `dr_tail`.
    pub archived_checkpoints: u64,
    /// Its status after the rejoin.
    pub status: RegionStatus,
}

/// Rejoins `region` as a standby of the active region (see the module docs).
///
/// Errors: [`DrError::Topology`]; [`DrError::Precondition`] when the region does not answer,
/// no other region answers as active, or the region is itself the active region with the
/// highest epoch; the errors of `Demote` and `Rejoin`.
pub async fn rejoin(regions: &Regions, region: &str) -> Result<RejoinOutcome, DrError> {
    let client = regions.client(region)?;
    let before = regions.status().await;
    let mut target = answering(&before, region, "rejoin")?.clone();
    let Some(active) = before
        .active()
        .into_iter()
        .find(|status| status.region != region)
        .cloned()
    else {
        let seen: Vec<String> = before
            .regions
            .iter()
            .filter(|report| report.region != region)
            .map(|report| match &report.status {
                Some(status) => format!("{}: {}", report.region, status.role),
                None => format!("{}: unreachable", report.region),
            })
            .collect();
        return Err(DrError::Precondition(format!(
            "cannot rejoin region {region}: no other region answers as active ({}); rejoin needs the active region's epoch and fork position",
            if seen.is_empty() {
                "the topology has no other region".to_string()
            } else {
                seen.join(", ")
            }
        )));
    };
    let fork_position = active.promoted_at_position.unwrap_or(0);
    let mut demoted_first = false;
    if target.role == RegionRole::Active {
        if target.region_epoch >= active.region_epoch {
            return Err(DrError::Precondition(format!(
                "region {region} is active with region epoch {}, not lower than {}'s {}: it is not the old active region; promote or switch over instead",
                target.region_epoch, active.region, active.region_epoch
            )));
        }
        tracing::info!(%region, active = %active.region, "demoting before the rejoin: it has not learned of the promotion yet");
        target = client
            .demote(&active.region, active.region_epoch, fork_position)
            .await?;
        demoted_first = true;
    }
    let archived_before = target.archived_tail_checkpoints;
    tracing::info!(%region, active = %active.region, region_epoch = active.region_epoch, fork_position, "rejoining");
    let status = client
        .rejoin(&active.region, active.region_epoch, fork_position)
        .await?;
    Ok(RejoinOutcome {
        region: region.to_string(),
        active_region: active.region.clone(),
        region_epoch: active.region_epoch,
        fork_position,
        demoted_first,
        tail: target.tail,
        tail_runs: target.tail_runs,
        archived_checkpoints: status
            .archived_tail_checkpoints
            .saturating_sub(archived_before),
        status,
    })
}
