//! `--failback`: the way back to the old active region after a drill's promotion, with the
//! operations of `tandem dr` ([`crate::rejoin()`], [`crate::switchover()`]):
//!
//! 1. rejoin the old region: its tail is archived in `dr_tail` and it becomes a standby of
//!    the new active region;
//! 2. wait until it has caught up: it applied the new active's latest position as read
//!    after the rejoin (lag 0);
//! 3. switch over back to it (planned, lossless);
//! 4. every canary run is still intact there: the same state and attempt counts, task by
//!    task, as at the end of the verification (runs lost in the tail are not checked).

use std::time::Duration;

use serde::Serialize;
use tandem_api::{Client, ClientError};
use tandem_engine::checkpoint::{UnixMillis, now_millis};
use tandem_engine::store::replication::RegionRole;
use tokio::time::Instant;

use super::verify::{CanaryCheck, RunSnapshot, TaskChange, differences};
use crate::rejoin::{RejoinOutcome, rejoin};
use crate::status::Regions;
use crate::switchover::{SwitchoverOptions, SwitchoverOutcome, switchover};

/// How one canary run looked after the failback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intact {
    /// Every task has the same state and attempts as at the end of the verification.
    Intact,
    /// Something differs (see `changes`).
    Changed,
    /// The region back in charge does not have it.
    Missing,
    /// It could not be read.
    Unreadable,
    /// Not checked: the new active region never had it (lost in the tail).
    NotChecked,
}

/// One canary run after the failback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAfterFailback {
    /// The run id.
    pub run_id: String,
    /// The verdict.
    pub verdict: Intact,
    /// What differs from the end of the verification.
    pub changes: Vec<TaskChange>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// What the failback did.
#[derive(Debug, Clone, Serialize)]
pub struct FailbackReport {
    /// The rejoin of the old active region.
    pub rejoin: Option<RejoinOutcome>,
    /// The position it had to apply to have caught up.
    pub catch_up_target: Option<u64>,
    /// How long it took to get there, ms.
    pub catch_up_ms: Option<u64>,
    /// The switchover back.
    pub switchover: Option<SwitchoverOutcome>,
    /// Each canary run afterwards.
    pub runs: Vec<RunAfterFailback>,
}

/// Runs the failback of `old` (the region active before the drill) from `new` (promoted by
/// the drill); `checks` are the verification's results and `client_of_old` a client of the
/// old region's replicas. Returns the report and a one-line outcome: `Ok` when every step
/// was done and every checked run is intact.
pub async fn run(
    regions: &Regions,
    old: &str,
    new: &str,
    checks: &[CanaryCheck],
    client_of_old: &Client,
    timeout: Duration,
) -> (FailbackReport, Result<String, String>) {
    let mut report = FailbackReport {
        rejoin: None,
        catch_up_target: None,
        catch_up_ms: None,
        switchover: None,
        runs: Vec::new(),
    };
    let rejoined = match rejoin(regions, old).await {
        Ok(outcome) => outcome,
        Err(error) => return (report, Err(format!("rejoin of {old} failed: {error}"))),
    };
    let archived = rejoined.archived_checkpoints;
    report.rejoin = Some(rejoined);
    let started = Instant::now();
    let target = match caught_up(regions, old, new, timeout).await {
        Ok(target) => target,
        Err(error) => return (report, Err(error)),
    };
    report.catch_up_target = Some(target);
    report.catch_up_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    let options = SwitchoverOptions {
        timeout,
        ..SwitchoverOptions::new(old)
    };
    let switched = match switchover(regions, &options, &mut |_| {}).await {
        Ok(outcome) => outcome,
        Err(error) => {
            return (
                report,
                Err(format!("switchover back to {old} failed: {error}")),
            );
        }
    };
    let paused = switched.writes_paused_ms;
    report.switchover = Some(switched);
    for check in checks {
        report.runs.push(after_failback(client_of_old, check).await);
    }
    let bad: Vec<String> = report
        .runs
        .iter()
        .filter(|run| {
            matches!(
                run.verdict,
                Intact::Changed | Intact::Missing | Intact::Unreadable
            )
        })
        .map(|run| match run.verdict {
            Intact::Changed => format!(
                "run {} changed: {}",
                run.run_id,
                run.changes
                    .iter()
                    .take(5)
                    .map(TaskChange::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            _ => format!(
                "run {} is {}: {}",
                run.run_id,
                if run.verdict == Intact::Missing {
                    "missing"
                } else {
                    "unreadable"
                },
                run.error.as_deref().unwrap_or("")
            ),
        })
        .collect();
    if !bad.is_empty() {
        return (report, Err(bad.join("; ")));
    }
    let intact = report
        .runs
        .iter()
        .filter(|run| run.verdict == Intact::Intact)
        .count();
    (
        report,
        Ok(format!(
            "{old} rejoined ({archived} tail checkpoint(s) archived), caught up, switched over back (writes paused {paused} ms); {intact} canary run(s) intact in {old}"
        )),
    )
}

/// Waits until `old` is a standby of `new` that applied `new`'s latest position as read
/// once it follows `new`; returns that position.
async fn caught_up(
    regions: &Regions,
    old: &str,
    new: &str,
    timeout: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let old_client = regions.client(old).map_err(|error| error.to_string())?;
    let new_client = regions.client(new).map_err(|error| error.to_string())?;
    let target = new_client
        .status()
        .await
        .map_err(|error| format!("cannot read {new}'s latest position: {error}"))?
        .latest_position;
    loop {
        let last = match old_client.status().await {
            Ok(status)
                if status.role == RegionRole::Standby
                    && status.active_region == new
                    && status.applied_position >= target =>
            {
                return Ok(target);
            }
            Ok(status) => format!(
                "{} following {}, applied position {} of {target}",
                status.role, status.active_region, status.applied_position
            ),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{old} did not catch up with {new} within {} s (expected a standby that applied position {target}; last: {last})",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn after_failback(client: &Client, check: &CanaryCheck) -> RunAfterFailback {
    let result = |verdict, changes, error| RunAfterFailback {
        run_id: check.run_id.clone(),
        verdict,
        changes,
        error,
    };
    let Some(expected) = &check.at_end else {
        return result(Intact::NotChecked, Vec::new(), None);
    };
    match client.get_run(check.run_id.clone()).await {
        Ok(run) => {
            let now: UnixMillis = now_millis();
            let changes = compare(expected, &RunSnapshot::of(&run, now));
            if changes.is_empty() {
                result(Intact::Intact, changes, None)
            } else {
                result(Intact::Changed, changes, None)
            }
        }
        Err(error @ ClientError::NotFound { .. }) => {
            result(Intact::Missing, Vec::new(), Some(error.to_string()))
        }
        Err(error) => result(Intact::Unreadable, Vec::new(), Some(error.to_string())),
    }
}

/// Task changes between the end of the verification and after the failback; a changed run
/// state counts as a change of a pseudo task `(run)`.
fn compare(expected: &RunSnapshot, now: &RunSnapshot) -> Vec<TaskChange> {
    let mut changes = differences(expected, now);
    if expected.state != now.state {
        changes.insert(
            0,
            TaskChange {
                task_id: format!("(run {} → {})", expected.state, now.state),
                before: (tandem_api::TaskState::Succeeded, 0),
                after: None,
            },
        );
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::verify::{CanaryVerdict, TaskSnapshot};
    use tandem_api::{RunState, TaskState};

    fn snapshot(state: RunState, attempts: u32) -> RunSnapshot {
        RunSnapshot {
            run_id: "r".into(),
            state,
            read_at_ms: 0,
            tasks: vec![TaskSnapshot {
                task_id: "a".into(),
                state: TaskState::Succeeded,
                attempts,
            }],
        }
    }

    #[test]
    fn an_identical_run_has_no_changes_and_a_different_one_does() {
        let end = snapshot(RunState::Succeeded, 1);
        assert!(compare(&end, &end.clone()).is_empty());
        assert_eq!(compare(&end, &snapshot(RunState::Succeeded, 2)).len(), 1);
        let changed = compare(&end, &snapshot(RunState::Failed, 1));
        assert_eq!(changed.len(), 1);
        assert!(
            changed[0].task_id.contains("succeeded → failed"),
            "{changed:?}"
        );
    }

    #[tokio::test]
    async fn runs_lost_in_the_tail_are_not_checked() {
        let client =
            Client::connect_lazy(tandem_api::ClientConfig::new("http://127.0.0.1:9")).unwrap();
        let check = CanaryCheck {
            index: 1,
            run_id: "r".into(),
            at_promotion: None,
            at_end: None,
            reruns: Vec::new(),
            verdict: CanaryVerdict::LostInTail,
            detail: String::new(),
        };
        assert_eq!(
            after_failback(&client, &check).await.verdict,
            Intact::NotChecked
        );
    }
}
