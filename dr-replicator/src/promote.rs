//! `tandem dr promote --region R [--force]`: makes standby region R active after the loss of
//! the active region.
//!
//! 1. Every region's status is read. R must answer and be a standby.
//! 2. Without `force`, the promotion is refused while another region answers as active
//!    (two active regions would both accept writes): the error names it and how it
//!    answered, and points at `switchover` for a planned hand-over.
//! 3. `Promote(region_epoch = highest known + 1)` on R's leader.
//! 4. Best effort: every other region is told (`Demote(new_active = R, epoch, fork = R's
//!    promoted_at_position)`); a region that cannot be reached learns the epoch from R when
//!    it returns (its leader asks its peers).

use std::time::Instant;

use serde::Serialize;
use tandem_engine::store::replication::RegionRole;

use crate::error::DrError;
use crate::region_status::{Lag, RegionStatus};
use crate::status::{DrStatus, Regions};

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromoteOutcome {
    /// The promoted region.
    pub region: String,
    /// Its new region epoch.
    pub region_epoch: u64,
    /// Whether `--force` was given.
    pub forced: bool,
    /// The region it followed before (its `active_region` as a standby).
    pub previous_active: String,
    /// Its lag when it was promoted, as read just before (what the promotion may have lost
    /// if the old active region is gone for good).
    pub lag_before: Option<Lag>,
    /// Its status after the promotion.
    pub status: RegionStatus,
    /// The other regions, told of the promotion (best effort).
    pub demotions: Vec<Demotion>,
    /// Every region's status before the promotion.
    pub before: DrStatus,
    /// Time from the status read to the end of the demotions (ms).
    pub took_ms: u64,
}

/// The outcome of telling one other region of a promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Demotion {
    /// The region told.
    pub region: String,
    /// Its status after `Demote`, when it answered.
    pub status: Option<RegionStatus>,
    /// Why it could not be told.
    pub error: Option<String>,
}

/// Promotes `region` (see the module docs).
///
/// Errors: [`DrError::Topology`] for a region missing from the topology;
/// [`DrError::Precondition`] when the region does not answer, is not a standby, or (without
/// `force`) another region answers as active; the call's errors from `Promote`.
pub async fn promote(
    regions: &Regions,
    region: &str,
    force: bool,
) -> Result<PromoteOutcome, DrError> {
    let started = Instant::now();
    let client = regions.client(region)?;
    let before = regions.status().await;
    let target = answering(&before, region, "promote")?;
    match target.role {
        RegionRole::Standby => {}
        RegionRole::Active => {
            return Err(DrError::Precondition(format!(
                "region {region} is active already (region epoch {}): nothing to promote",
                target.region_epoch
            )));
        }
        RegionRole::Fenced => {
            return Err(DrError::Precondition(format!(
                "region {region} is fenced: it was active and holds an unreplicated tail (positions {}): make it a standby with `tandem dr rejoin --region {region}`, then hand over with `tandem dr switchover --to {region}`",
                tail_text(target)
            )));
        }
    }
    let others_active: Vec<&RegionStatus> = before
        .active()
        .into_iter()
        .filter(|status| status.region != region)
        .collect();
    if !force && !others_active.is_empty() {
        let described: Vec<String> = others_active
            .iter()
            .map(|status| describe_active(status))
            .collect();
        let names: Vec<&str> = others_active
            .iter()
            .map(|status| status.region.as_str())
            .collect();
        return Err(DrError::Precondition(format!(
            "refusing to promote {region}: {} still answers as active ({}); promoting now would leave two active regions. For a planned, lossless hand-over use `tandem dr switchover --to {region}`; add --force only if {} is to be abandoned (it is then told to step down)",
            names.join(" and "),
            described.join("; "),
            names.join(" and ")
        )));
    }
    let region_epoch = before.max_epoch() + 1;
    let lag_before = before.region(region).and_then(|report| report.lag);
    let previous_active = target.active_region.clone();
    tracing::info!(%region, region_epoch, force, "promoting");
    let status = client.promote(region_epoch).await?;
    let fork = status
        .promoted_at_position
        .unwrap_or(target.applied_position);
    let demotions = demote_others(regions, region, region_epoch, fork).await;
    Ok(PromoteOutcome {
        region: region.to_string(),
        region_epoch,
        forced: force,
        previous_active,
        lag_before,
        status,
        demotions,
        before,
        took_ms: started.elapsed().as_millis() as u64,
    })
}

/// Tells every region but `new_active` that it is active with `region_epoch` since `fork`.
pub(crate) async fn demote_others(
    regions: &Regions,
    new_active: &str,
    region_epoch: u64,
    fork: u64,
) -> Vec<Demotion> {
    let mut demotions = Vec::new();
    for name in regions.topology().names() {
        if name == new_active {
            continue;
        }
        let outcome = match regions.client(&name) {
            Ok(client) => client.demote(new_active, region_epoch, fork).await,
            Err(error) => Err(error),
        };
        match &outcome {
            Ok(status) => {
                tracing::info!(region = %name, role = %status.role, "told of the promotion of {new_active}")
            }
            // Reported in the outcome; the region learns the epoch when it answers again.
            Err(error) => {
                tracing::info!(region = %name, "could not tell of the promotion of {new_active}: {error}")
            }
        }
        demotions.push(match outcome {
            Ok(status) => Demotion {
                region: name,
                status: Some(status),
                error: None,
            },
            Err(error) => Demotion {
                region: name,
                status: None,
                error: Some(error.to_string()),
            },
        });
    }
    demotions
}

/// The status of `region` in `dr`, or a [`DrError::Precondition`] saying why `action` needs
/// it to answer.
pub(crate) fn answering<'a>(
    dr: &'a DrStatus,
    region: &str,
    action: &str,
) -> Result<&'a RegionStatus, DrError> {
    let report = dr
        .region(region)
        .ok_or_else(|| DrError::Precondition(format!("region {region} is not in the topology")))?;
    report.status.as_ref().ok_or_else(|| {
        DrError::Precondition(format!(
            "cannot {action} region {region}: it does not answer ({})",
            report.error.as_deref().unwrap_or("no reply")
        ))
    })
}

/// `eu-west: region epoch 3, leader eu-west-1, latest position 1234, answered at http://...`.
fn describe_active(status: &RegionStatus) -> String {
    format!(
        "{}: region epoch {}, leader {}, latest position {}, answered at {}",
        status.region,
        status.region_epoch,
        status.leader_member.as_deref().unwrap_or("none known"),
        status.latest_position,
        status.answered_by
    )
}

/// `91..=95` or `none`.
pub(crate) fn tail_text(status: &RegionStatus) -> String {
    match status.tail {
        Some(tail) => format!("{}..={}", tail.from, tail.to),
        None => "none".to_string(),
    }
}
