//! Verification of the canary runs in the new active region: a [`RunSnapshot`] of each right
//! after the promotion, then [`wait_all`] until each ends, and the rules
//! ([`reruns`], [`differences`]):
//!
//! - a run must end `succeeded`;
//! - every task that was `succeeded` in the snapshot must still be `succeeded` with the same
//!   attempt count at the end (a succeeded task never runs again);
//! - a run the new active region does not know (`NotFound`: created in the lost tail) is
//!   reported as [`CanaryVerdict::LostInTail`], not failed.

use std::time::Duration;

use serde::Serialize;
use tandem_api::{Client, ClientError, Run, RunState, TaskState};
use tandem_engine::checkpoint::{UnixMillis, now_millis};
use tokio::time::Instant;

use super::canary::CanaryRun;

/// How often the canary runs are read while waiting.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A task of a run as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSnapshot {
    /// Task instance id.
    pub task_id: String,
    /// Its state.
    pub state: TaskState,
    /// Attempts made so far.
    pub attempts: u32,
}

/// A run as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSnapshot {
    /// The run id.
    pub run_id: String,
    /// Its state.
    pub state: RunState,
    /// When it was read, ms since the Unix epoch.
    pub read_at_ms: UnixMillis,
    /// Its tasks in file order.
    pub tasks: Vec<TaskSnapshot>,
}

impl RunSnapshot {
    /// The snapshot of `run` read at `read_at_ms`.
    pub fn of(run: &Run, read_at_ms: UnixMillis) -> RunSnapshot {
        RunSnapshot {
            run_id: run.run_id.clone(),
            state: run.state,
            read_at_ms,
            tasks: run
                .tasks
                .iter()
                .map(|task| TaskSnapshot {
                    task_id: task.task_id.clone(),
                    state: task.state,
                    attempts: task.attempts,
                })
                .collect(),
        }
    }

    /// Tasks in `state`.
    pub fn count(&self, state: TaskState) -> usize {
        self.tasks.iter().filter(|task| task.state == state).count()
    }

    /// Attempts of every task together.
    pub fn attempts(&self) -> u64 {
        self.tasks.iter().map(|task| u64::from(task.attempts)).sum()
    }

    fn task(&self, task_id: &str) -> Option<&TaskSnapshot> {
        self.tasks.iter().find(|task| task.task_id == task_id)
    }
}

/// A task whose state or attempt count differs between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskChange {
    /// Task instance id.
    pub task_id: String,
    /// State and attempts before.
    pub before: (TaskState, u32),
    /// State and attempts after; `None`: the task is missing after.
    pub after: Option<(TaskState, u32)>,
}

impl TaskChange {
    fn between(before: &TaskSnapshot, after: Option<&TaskSnapshot>) -> TaskChange {
        TaskChange {
            task_id: before.task_id.clone(),
            before: (before.state, before.attempts),
            after: after.map(|task| (task.state, task.attempts)),
        }
    }

    /// `task: succeeded after 1 attempt → succeeded after 2 attempts`.
    pub fn describe(&self) -> String {
        let side = |(state, attempts): (TaskState, u32)| {
            format!(
                "{state} after {attempts} attempt{}",
                if attempts == 1 { "" } else { "s" }
            )
        };
        format!(
            "{}: {} → {}",
            self.task_id,
            side(self.before),
            self.after.map_or("missing".to_string(), side)
        )
    }
}

/// Tasks `succeeded` in `before` that are not `succeeded` with the same attempt count in
/// `after` (a succeeded task that ran again, or vanished).
pub fn reruns(before: &RunSnapshot, after: &RunSnapshot) -> Vec<TaskChange> {
    before
        .tasks
        .iter()
        .filter(|task| task.state == TaskState::Succeeded)
        .filter_map(|task| {
            let later = after.task(&task.task_id);
            let same = later.is_some_and(|later| {
                later.state == TaskState::Succeeded && later.attempts == task.attempts
            });
            (!same).then(|| TaskChange::between(task, later))
        })
        .collect()
}

/// Every task whose state or attempt count differs between `before` and `after`, and the
/// tasks only `after` has.
pub fn differences(before: &RunSnapshot, after: &RunSnapshot) -> Vec<TaskChange> {
    let mut changes: Vec<TaskChange> = before
        .tasks
        .iter()
        .filter_map(|task| {
            let later = after.task(&task.task_id);
            let same = later
                .is_some_and(|later| later.state == task.state && later.attempts == task.attempts);
            (!same).then(|| TaskChange::between(task, later))
        })
        .collect();
    for extra in after
        .tasks
        .iter()
        .filter(|task| before.task(&task.task_id).is_none())
    {
        changes.push(TaskChange {
            task_id: extra.task_id.clone(),
            before: (TaskState::Pending, 0),
            after: Some((extra.state, extra.attempts)),
        });
    }
    changes
}

/// How a canary run's verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryVerdict {
    /// It succeeded in the new active region and no succeeded task ran again.
    Completed,
    /// The new active region never received it (created in the lost tail): reported, not
    /// failed.
    LostInTail,
    /// It ended in another state than `succeeded`.
    NotSucceeded,
    /// A task succeeded at the promotion ran again (or vanished).
    SucceededTaskRerun,
    /// It did not end within the drill's timeout.
    TimedOut,
    /// It could not be read from the new active region.
    Unreadable,
}

impl CanaryVerdict {
    /// True for the verdicts that do not fail the drill.
    pub fn passes(self) -> bool {
        matches!(self, CanaryVerdict::Completed | CanaryVerdict::LostInTail)
    }
}

/// One canary run's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CanaryCheck {
    /// The canary's index (its idempotency key ends with it).
    pub index: u32,
    /// The run id.
    pub run_id: String,
    /// The run as the new active region held it right after the promotion; `None` when it
    /// did not have it.
    pub at_promotion: Option<RunSnapshot>,
    /// The run at the end of the wait.
    pub at_end: Option<RunSnapshot>,
    /// Succeeded tasks that ran again (must be empty).
    pub reruns: Vec<TaskChange>,
    /// The verdict.
    pub verdict: CanaryVerdict,
    /// One line saying why.
    pub detail: String,
}

/// The snapshot of each of `runs` on `client` now: `Ok(None)` for a run it does not know.
pub async fn snapshot_all(
    client: &Client,
    runs: &[CanaryRun],
) -> Vec<Result<Option<RunSnapshot>, ClientError>> {
    let mut snapshots = Vec::with_capacity(runs.len());
    for run in runs {
        snapshots.push(match client.get_run(run.run_id.clone()).await {
            Ok(read) => Ok(Some(RunSnapshot::of(&read, now_millis()))),
            Err(ClientError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        });
    }
    snapshots
}

/// Waits (polling every [`POLL_INTERVAL`], up to `timeout`) until every run of `runs` that
/// the new active region has ends, and checks each (see the module docs). `snapshots` are
/// [`snapshot_all`]'s, in the same order.
///
/// Also returns when the drill first saw an attempt that the snapshots do not have (a task
/// running or ended with more attempts than at the promotion, or a new one): the fallback
/// first dispatch of [`super::measure::rto`].
pub async fn wait_all(
    client: &Client,
    runs: &[CanaryRun],
    snapshots: Vec<Result<Option<RunSnapshot>, ClientError>>,
    timeout: Duration,
) -> (Vec<CanaryCheck>, Option<UnixMillis>) {
    let deadline = Instant::now() + timeout;
    let mut latest: Vec<Option<RunSnapshot>> = vec![None; runs.len()];
    let mut last_error: Vec<Option<String>> = vec![None; runs.len()];
    let mut first_new_attempt: Option<UnixMillis> = None;
    loop {
        let mut pending = false;
        for (index, run) in runs.iter().enumerate() {
            let Ok(Some(at_promotion)) = &snapshots[index] else {
                continue;
            };
            if latest[index]
                .as_ref()
                .is_some_and(|run| run.state.is_final())
            {
                continue;
            }
            match client.get_run(run.run_id.clone()).await {
                Ok(read) => {
                    let now = now_millis();
                    let snapshot = RunSnapshot::of(&read, now);
                    if first_new_attempt.is_none() && has_new_attempt(at_promotion, &snapshot) {
                        first_new_attempt = Some(now);
                    }
                    pending |= !snapshot.state.is_final();
                    latest[index] = Some(snapshot);
                    last_error[index] = None;
                }
                Err(error) => {
                    pending = true;
                    last_error[index] = Some(error.to_string());
                }
            }
        }
        if !pending || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let checks = runs
        .iter()
        .zip(snapshots)
        .zip(latest.into_iter().zip(last_error))
        .map(|((run, snapshot), (at_end, error))| check(run, snapshot, at_end, error, timeout))
        .collect();
    (checks, first_new_attempt)
}

/// True when `now` shows an attempt `before` does not: more attempts of a task, or a task
/// `before` does not list.
pub fn has_new_attempt(before: &RunSnapshot, now: &RunSnapshot) -> bool {
    now.tasks.iter().any(|task| {
        before
            .task(&task.task_id)
            .map_or(task.attempts > 0, |old| task.attempts > old.attempts)
    })
}

/// The verdict of one run from its snapshot at the promotion, its last read and the last
/// error reading it.
pub fn check(
    run: &CanaryRun,
    snapshot: Result<Option<RunSnapshot>, ClientError>,
    at_end: Option<RunSnapshot>,
    error: Option<String>,
    timeout: Duration,
) -> CanaryCheck {
    let base = |verdict: CanaryVerdict, detail: String| CanaryCheck {
        index: run.index,
        run_id: run.run_id.clone(),
        at_promotion: None,
        at_end: None,
        reruns: Vec::new(),
        verdict,
        detail,
    };
    let at_promotion = match snapshot {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => {
            return base(
                CanaryVerdict::LostInTail,
                "the new active region never received this run (created in the lost tail)"
                    .to_string(),
            );
        }
        Err(error) => {
            return base(
                CanaryVerdict::Unreadable,
                format!("cannot read it from the new active region after the promotion: {error}"),
            );
        }
    };
    let (verdict, detail, reruns) = match &at_end {
        None => (
            CanaryVerdict::Unreadable,
            format!(
                "cannot read it from the new active region: {}",
                error.unwrap_or_else(|| "no answer".to_string())
            ),
            Vec::new(),
        ),
        Some(end) if !end.state.is_final() => (
            CanaryVerdict::TimedOut,
            format!(
                "still {} after {} s: {} of {} tasks succeeded{}",
                end.state,
                timeout.as_secs(),
                end.count(TaskState::Succeeded),
                end.tasks.len(),
                error.map_or(String::new(), |error| format!(
                    " (last read failed: {error})"
                ))
            ),
            Vec::new(),
        ),
        Some(end) => {
            let reruns = reruns(&at_promotion, end);
            if !reruns.is_empty() {
                (
                    CanaryVerdict::SucceededTaskRerun,
                    format!(
                        "{} task(s) succeeded at the promotion ran again: {}",
                        reruns.len(),
                        reruns
                            .iter()
                            .take(5)
                            .map(TaskChange::describe)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    reruns,
                )
            } else if end.state != RunState::Succeeded {
                (
                    CanaryVerdict::NotSucceeded,
                    format!(
                        "ended {} (expected succeeded); failed tasks: {}",
                        end.state,
                        end.count(TaskState::Failed)
                    ),
                    reruns,
                )
            } else {
                (
                    CanaryVerdict::Completed,
                    format!(
                        "succeeded; {} of {} tasks were succeeded at the promotion and kept their attempts; {} attempts in all",
                        at_promotion.count(TaskState::Succeeded),
                        end.tasks.len(),
                        end.attempts()
                    ),
                    reruns,
                )
            }
        }
    };
    CanaryCheck {
        at_promotion: Some(at_promotion),
        at_end,
        reruns,
        verdict,
        detail,
        ..base(verdict, String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(state: RunState, tasks: &[(&str, TaskState, u32)]) -> RunSnapshot {
        RunSnapshot {
            run_id: "r".into(),
            state,
            read_at_ms: 0,
            tasks: tasks
                .iter()
                .map(|&(id, state, attempts)| TaskSnapshot {
                    task_id: id.into(),
                    state,
                    attempts,
                })
                .collect(),
        }
    }

    fn canary() -> CanaryRun {
        CanaryRun {
            index: 1,
            run_id: "r".into(),
            idempotency_key: "drill-x-1".into(),
            created: true,
            at_fault: None,
        }
    }

    use TaskState::{Pending, Running, Succeeded};

    #[test]
    fn a_succeeded_task_with_another_attempt_count_is_a_rerun() {
        let before = snapshot(
            RunState::Running,
            &[("a", Succeeded, 1), ("b", Running, 1), ("c", Pending, 0)],
        );
        let good = snapshot(
            RunState::Succeeded,
            &[
                ("a", Succeeded, 1),
                ("b", Succeeded, 2),
                ("c", Succeeded, 1),
            ],
        );
        assert!(reruns(&before, &good).is_empty());
        let rerun = snapshot(
            RunState::Succeeded,
            &[
                ("a", Succeeded, 2),
                ("b", Succeeded, 2),
                ("c", Succeeded, 1),
            ],
        );
        let found = reruns(&before, &rerun);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].describe(),
            "a: succeeded after 1 attempt → succeeded after 2 attempts"
        );
        let vanished = snapshot(RunState::Succeeded, &[("b", Succeeded, 2)]);
        assert_eq!(reruns(&before, &vanished)[0].after, None);
    }

    #[test]
    fn differences_list_every_change_both_ways() {
        let before = snapshot(
            RunState::Succeeded,
            &[("a", Succeeded, 1), ("b", Succeeded, 2)],
        );
        assert!(differences(&before, &before.clone()).is_empty());
        let after = snapshot(
            RunState::Succeeded,
            &[("a", Succeeded, 1), ("b", Succeeded, 3), ("z", Pending, 0)],
        );
        let found = differences(&before, &after);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].task_id, "b");
        assert_eq!(found[1].task_id, "z");
    }

    #[test]
    fn new_attempts_are_seen() {
        let before = snapshot(
            RunState::Running,
            &[("a", Succeeded, 1), ("b", Running, 1), ("c", Pending, 0)],
        );
        assert!(!has_new_attempt(&before, &before.clone()));
        let redispatched = snapshot(
            RunState::Running,
            &[("a", Succeeded, 1), ("b", Running, 2), ("c", Pending, 0)],
        );
        assert!(has_new_attempt(&before, &redispatched));
        let next = snapshot(
            RunState::Running,
            &[("a", Succeeded, 1), ("b", Running, 1), ("c", Running, 1)],
        );
        assert!(has_new_attempt(&before, &next));
    }

    #[test]
    fn verdicts() {
        let before = snapshot(RunState::Running, &[("a", Succeeded, 1), ("b", Running, 1)]);
        let done = snapshot(
            RunState::Succeeded,
            &[("a", Succeeded, 1), ("b", Succeeded, 2)],
        );
        let ok = check(
            &canary(),
            Ok(Some(before.clone())),
            Some(done),
            None,
            Duration::from_secs(5),
        );
        assert_eq!(ok.verdict, CanaryVerdict::Completed);
        assert!(ok.verdict.passes());

        let lost = check(&canary(), Ok(None), None, None, Duration::from_secs(5));
        assert_eq!(lost.verdict, CanaryVerdict::LostInTail);
        assert!(lost.verdict.passes());

        let failed = snapshot(
            RunState::Failed,
            &[("a", Succeeded, 1), ("b", TaskState::Failed, 3)],
        );
        let not = check(
            &canary(),
            Ok(Some(before.clone())),
            Some(failed),
            None,
            Duration::from_secs(5),
        );
        assert_eq!(not.verdict, CanaryVerdict::NotSucceeded);
        assert!(!not.verdict.passes());

        let stuck = snapshot(RunState::Running, &[("a", Succeeded, 1), ("b", Running, 2)]);
        let late = check(
            &canary(),
            Ok(Some(before.clone())),
            Some(stuck),
            None,
            Duration::from_secs(5),
        );
        assert_eq!(late.verdict, CanaryVerdict::TimedOut);
        assert!(
            late.detail.contains("still running after 5 s"),
            "{}",
            late.detail
        );

        let rerun = snapshot(
            RunState::Succeeded,
            &[("a", Succeeded, 2), ("b", Succeeded, 2)],
        );
        let bad = check(
            &canary(),
            Ok(Some(before)),
            Some(rerun),
            None,
            Duration::from_secs(5),
        );
        assert_eq!(bad.verdict, CanaryVerdict::SucceededTaskRerun);
        assert_eq!(bad.reruns.len(), 1);
    }
}
