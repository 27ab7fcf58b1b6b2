//! `tandem dr switchover --to R [--timeout 60s]`: a planned, lossless hand-over from the
//! active region A to its standby R.
//!
//! 1. Every region's status is read. Exactly one region answers as active (A ≠ R); R is a
//!    standby of A and replicating now (A reports it as its streaming standby, or R applied a
//!    batch within the last 3 s; checked for up to 5 s).
//! 2. `Demote(A, new_active = R, epoch E + 1, fork = A's latest position)`, E being the
//!    highest known region epoch: A stops writing at once. Its reply's latest position L is
//!    final. Writes that committed between the status read and the demotion leave A
//!    `fenced` with a tail that R still receives (A keeps serving its log).
//! 3. Wait until R applied L (progress reported through a callback).
//! 4. `Promote(R, P)` with P = E + 1, or E + 2 when A was left fenced or R's store already
//!    holds E + 1 (applying a batch raises a standby's epoch to the batch's, and A's batches
//!    carry E + 1 once demoted); then, when P > E + 1, `Demote(A, R, P, L)` again so that A
//!    becomes a plain standby of R (nothing after L) at R's epoch. A's replicator then
//!    follows R.
//!
//! When R does not catch up within the timeout, or its promotion fails, the hand-over is
//! undone: A is made active again with a higher epoch (demoted to a standby at L first when
//! it was fenced), so the deployment is not left without an active region.

use std::time::{Duration, Instant};

use serde::Serialize;
use tandem_engine::checkpoint::{UnixMillis, now_millis};
use tandem_engine::store::replication::RegionRole;

use crate::error::DrError;
use crate::promote::answering;
use crate::region_client::RegionClient;
use crate::region_status::RegionStatus;
use crate::status::{DrStatus, Regions};

/// How long the standby may take to show it is replicating before the switchover starts.
const CONNECTED_WAIT: Duration = Duration::from_secs(5);
/// A standby that applied a batch this recently is replicating (heartbeats come every second).
const RECENT_BATCH_MS: UnixMillis = 3_000;
/// `tandem-error-code` of a promotion refused because its region epoch is not higher than
/// the region's.
const STALE_EPOCH: &str = "replication_epoch";

/// Settings of a switchover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchoverOptions {
    /// The standby region to make active.
    pub to: String,
    /// How long the standby may take to catch up after the active region stopped writing.
    /// Default 60 s.
    pub timeout: Duration,
    /// How often the standby's applied position is read while waiting. Default 100 ms.
    pub poll_interval: Duration,
}

impl SwitchoverOptions {
    /// Defaults for a switchover to `to`.
    pub fn new(to: impl Into<String>) -> SwitchoverOptions {
        SwitchoverOptions {
            to: to.into(),
            timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// The standby's progress while the switchover waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CatchUp {
    /// Its applied position when the wait began.
    pub start_position: u64,
    /// Its applied position now.
    pub applied_position: u64,
    /// The position it must reach (the old active region's last).
    pub target_position: u64,
    /// Time waited so far (ms).
    pub waited_ms: u64,
}

/// What a switchover did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchoverOutcome {
    /// The region that was active.
    pub from: String,
    /// The region that is active now.
    pub to: String,
    /// The new active region's epoch.
    pub region_epoch: u64,
    /// The old active region's last position, which the new one holds (nothing was lost).
    pub fork_position: u64,
    /// Whether writes that slipped in before the demotion left the old active region fenced
    /// for a moment (it was then made a plain standby at `fork_position`).
    pub was_fenced: bool,
    /// How long no region accepted writes: from the demotion to the promotion (ms).
    pub writes_paused_ms: u64,
    /// How long the standby took to catch up (ms).
    pub catch_up_ms: u64,
    /// The whole switchover, status reads included (ms).
    pub took_ms: u64,
    /// Every region's status before.
    pub before: DrStatus,
    /// The old active region's status at the end.
    pub from_status: RegionStatus,
    /// The new active region's status at the end.
    pub to_status: RegionStatus,
}

/// Runs a switchover (see the module docs); `progress` is called after each read of the
/// standby's position while waiting.
///
/// Errors: [`DrError::Topology`]; [`DrError::Precondition`] (nothing was changed) when the
/// regions are not in a state to hand over; [`DrError::TimedOut`] when the standby did not
/// catch up in time (the message says whether the old active region was made active again);
/// the DR calls' errors.
pub async fn switchover(
    regions: &Regions,
    options: &SwitchoverOptions,
    progress: &mut (dyn FnMut(&CatchUp) + Send),
) -> Result<SwitchoverOutcome, DrError> {
    let started = Instant::now();
    let to = options.to.as_str();
    let to_client = regions.client(to)?;
    let before = regions.status().await;
    let target = answering(&before, to, "switch over to")?.clone();
    let active = the_active(&before, to)?.clone();
    let from = active.region.clone();
    let from_client = regions.client(&from)?;
    if target.role != RegionRole::Standby || target.active_region != from {
        return Err(DrError::Precondition(format!(
            "cannot switch over to {to}: it is {} (active region {}), expected a standby of {from}{}",
            target.role,
            target.active_region,
            if target.role == RegionRole::Fenced {
                format!(": run `tandem dr rejoin --region {to}` first")
            } else {
                String::new()
            }
        )));
    }
    wait_connected(from_client, to_client, &active, &target, options).await?;
    let base_epoch = before.max_epoch();
    let demote_epoch = base_epoch + 1;
    tracing::info!(%from, %to, region_epoch = demote_epoch, "switchover: demoting the active region");
    let demoted_at = Instant::now();
    let demoted = from_client
        .demote(to, demote_epoch, active.latest_position)
        .await?;
    if demoted.role == RegionRole::Active {
        return Err(DrError::Precondition(format!(
            "cannot switch over: {from} ignored the demotion to region epoch {demote_epoch} (it reports region epoch {}); nothing was changed",
            demoted.region_epoch
        )));
    }
    let fork_position = demoted.latest_position;
    let was_fenced = demoted.role == RegionRole::Fenced;
    // Undoes the hand-over (see `roll_back`) after `problem`.
    let undo = |problem: String| {
        roll_back(
            from_client,
            to,
            &from,
            demote_epoch,
            fork_position,
            was_fenced,
            problem,
        )
    };
    let catch_up_started = Instant::now();
    let caught_up = wait_caught_up(to_client, fork_position, options, progress).await;
    let caught_up = match caught_up {
        Ok(status) => status,
        Err(problem) => return Err(undo(problem).await),
    };
    let catch_up_ms = catch_up_started.elapsed().as_millis() as u64;
    let (promote_epoch, to_status) = match promote_standby(
        to_client,
        demote_epoch,
        was_fenced,
        &caught_up,
        fork_position,
    )
    .await
    {
        Ok(promoted) => promoted,
        Err(error) => return Err(undo(format!("promoting {to} failed: {error}")).await),
    };
    let writes_paused_ms = demoted_at.elapsed().as_millis() as u64;
    let from_status = if promote_epoch > demote_epoch {
        from_client.demote(to, promote_epoch, fork_position).await?
    } else {
        demoted
    };
    Ok(SwitchoverOutcome {
        from,
        to: to.to_string(),
        region_epoch: promote_epoch,
        fork_position,
        was_fenced,
        writes_paused_ms,
        catch_up_ms,
        took_ms: started.elapsed().as_millis() as u64,
        before,
        from_status,
        to_status,
    })
}

/// Promotes the caught-up standby: with `demote_epoch` (E + 1) when it still holds a lower
/// epoch and the old active region was left a plain standby; else (the old active region is
/// fenced, or the standby already applied a batch carrying E + 1, which raises its epoch)
/// with one more than both. A refusal of E + 1 as stale (a batch raised the standby's epoch
/// between its status read and the promotion) is retried once with the higher epoch.
async fn promote_standby(
    client: &RegionClient,
    demote_epoch: u64,
    was_fenced: bool,
    caught_up: &RegionStatus,
    fork_position: u64,
) -> Result<(u64, RegionStatus), DrError> {
    let higher = |standby_epoch: u64| (demote_epoch + 1).max(standby_epoch + 1);
    let epoch = if was_fenced || caught_up.region_epoch >= demote_epoch {
        higher(caught_up.region_epoch)
    } else {
        demote_epoch
    };
    tracing::info!(region = %client.region(), region_epoch = epoch, fork_position, "switchover: promoting the standby");
    match client.promote(epoch).await {
        Ok(status) => Ok((epoch, status)),
        Err(error) if epoch == demote_epoch && error.error_code() == Some(STALE_EPOCH) => {
            let now = client.status().await?;
            let epoch = higher(now.region_epoch);
            tracing::info!(region = %client.region(), region_epoch = epoch, "switchover: the standby's epoch moved; promoting with a higher one");
            Ok((epoch, client.promote(epoch).await?))
        }
        Err(error) => Err(error),
    }
}

/// The one region other than `to` that answers as active.
fn the_active<'a>(dr: &'a DrStatus, to: &str) -> Result<&'a RegionStatus, DrError> {
    let active = dr.active();
    match active.as_slice() {
        [one] if one.region == to => Err(DrError::Precondition(format!(
            "region {to} is the active region already (region epoch {})",
            one.region_epoch
        ))),
        [one] => Ok(one),
        [] => Err(DrError::Precondition(format!(
            "cannot switch over to {to}: no region answers as active (a switchover hands over from a live active region; after losing it, use `tandem dr promote --region {to}`)"
        ))),
        several => Err(DrError::Precondition(format!(
            "cannot switch over to {to}: several regions answer as active ({}); fix that first (`tandem dr status`)",
            several
                .iter()
                .map(|status| format!(
                    "{} with region epoch {}",
                    status.region, status.region_epoch
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Waits (up to [`CONNECTED_WAIT`]) until `target` is replicating from `active`.
async fn wait_connected(
    from_client: &RegionClient,
    to_client: &RegionClient,
    active: &RegionStatus,
    target: &RegionStatus,
    options: &SwitchoverOptions,
) -> Result<(), DrError> {
    let deadline = Instant::now() + CONNECTED_WAIT.min(options.timeout);
    let (mut active, mut target) = (active.clone(), target.clone());
    loop {
        if replicating(&active, &target, now_millis()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DrError::Precondition(format!(
                "cannot switch over to {}: it is not replicating from {} now ({} reports {}; {} last applied a batch {}): check that `tandem replicate` runs in {}; nothing was changed",
                target.region,
                active.region,
                active.region,
                match &active.standby_region {
                    Some(standby) => format!("standby {standby} streaming"),
                    None => "no standby streaming".to_string(),
                },
                target.region,
                match target.applied_at_ms {
                    Some(at) => format!("{} ms ago", now_millis().saturating_sub(at)),
                    None => "never".to_string(),
                },
                target.region
            )));
        }
        tokio::time::sleep(options.poll_interval).await;
        active = from_client.status().await?;
        target = to_client.status().await?;
    }
}

/// True when `target` streams from `active` now.
fn replicating(active: &RegionStatus, target: &RegionStatus, now_ms: UnixMillis) -> bool {
    active.standby_region.as_deref() == Some(target.region.as_str())
        || target
            .applied_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) <= RECENT_BATCH_MS)
}

/// Polls the standby until it applied `target_position`; `Err` says why it did not.
async fn wait_caught_up(
    client: &RegionClient,
    target_position: u64,
    options: &SwitchoverOptions,
    progress: &mut (dyn FnMut(&CatchUp) + Send),
) -> Result<RegionStatus, String> {
    let started = Instant::now();
    let mut start_position = None;
    loop {
        let last_error = match client.status().await {
            Ok(status) => {
                let start = *start_position.get_or_insert(status.applied_position);
                progress(&CatchUp {
                    start_position: start,
                    applied_position: status.applied_position,
                    target_position,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
                if status.role != RegionRole::Standby {
                    return Err(format!(
                        "{} became {} while catching up",
                        client.region(),
                        status.role
                    ));
                }
                if status.applied_position >= target_position {
                    return Ok(status);
                }
                format!(
                    "it applied position {} of {target_position}",
                    status.applied_position
                )
            }
            Err(error) => format!("it did not answer: {error}"),
        };
        if started.elapsed() >= options.timeout {
            return Err(format!(
                "{} did not catch up within {} ms: {}",
                client.region(),
                options.timeout.as_millis(),
                last_error
            ));
        }
        tokio::time::sleep(options.poll_interval).await;
    }
}

/// Makes `from` active again after a failed catch-up; the error says what happened.
async fn roll_back(
    from_client: &RegionClient,
    to: &str,
    from: &str,
    demote_epoch: u64,
    fork_position: u64,
    was_fenced: bool,
    problem: String,
) -> DrError {
    tracing::warn!(%from, %to, "switchover: {problem}; making {from} active again");
    let mut epoch = demote_epoch + 1;
    if was_fenced {
        // A fenced region cannot be promoted: first a standby at its own last position.
        if let Err(error) = from_client.demote(to, epoch, fork_position).await {
            return DrError::TimedOut(format!(
                "switchover aborted: {problem}. Making {from} active again failed ({error}): no region is active now; run `tandem dr promote --region {from} --force`"
            ));
        }
        epoch += 1;
    }
    match from_client.promote(epoch).await {
        Ok(status) => DrError::TimedOut(format!(
            "switchover aborted: {problem}. {from} is active again with region epoch {} (it lost nothing; {to} stays its standby)",
            status.region_epoch
        )),
        Err(error) => DrError::TimedOut(format!(
            "switchover aborted: {problem}. Making {from} active again failed ({error}): no region is active now; run `tandem dr promote --region {from} --force`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::RegionReport;
    use crate::status::tests::status;

    fn dr(statuses: Vec<RegionStatus>) -> DrStatus {
        DrStatus {
            checked_at_ms: 0,
            regions: statuses
                .into_iter()
                .map(|status| RegionReport::new(status.region.clone(), vec![], Ok(status), 0))
                .collect(),
        }
    }

    #[test]
    fn needs_exactly_one_other_active_region() {
        let one = dr(vec![
            status("a", RegionRole::Active, 1, "a"),
            status("b", RegionRole::Standby, 1, "a"),
        ]);
        assert_eq!(the_active(&one, "b").unwrap().region, "a");
        let error = the_active(&one, "a").unwrap_err().to_string();
        assert!(error.contains("active region already"), "{error}");
        let none = dr(vec![status("b", RegionRole::Standby, 1, "a")]);
        let error = the_active(&none, "b").unwrap_err().to_string();
        assert!(error.contains("promote --region b"), "{error}");
        let two = dr(vec![
            status("a", RegionRole::Active, 1, "a"),
            status("c", RegionRole::Active, 2, "c"),
            status("b", RegionRole::Standby, 1, "a"),
        ]);
        let error = the_active(&two, "b").unwrap_err().to_string();
        assert!(
            error.contains("c with region epoch 2, a with region epoch 1"),
            "{error}"
        );
    }

    #[test]
    fn a_standby_replicates_when_named_by_the_active_or_recently_applied() {
        let mut active = status("a", RegionRole::Active, 1, "a");
        let mut standby = status("b", RegionRole::Standby, 1, "a");
        assert!(!replicating(&active, &standby, 10_000));
        standby.applied_at_ms = Some(7_500);
        assert!(replicating(&active, &standby, 10_000));
        assert!(!replicating(&active, &standby, 10_501));
        active.standby_region = Some("b".into());
        assert!(replicating(&active, &standby, 99_999));
    }
}
