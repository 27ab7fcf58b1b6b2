//! Friendly Rust forms of the API's run messages: enums instead of `i32`, `Option` instead of
//! the proto's "0 / empty = unset", ordered maps. Times are milliseconds since the Unix epoch.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::proto;

/// State of a run (`tandem.v1.RunState` without `UNSPECIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Tasks are running or waiting.
    Running,
    /// Every task succeeded (or was skipped by its trigger rule).
    Succeeded,
    /// A task failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
    /// The run hit its deadline.
    TimedOut,
}

impl RunState {
    /// Every state, in the proto's order.
    pub const ALL: [RunState; 5] = [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::TimedOut,
    ];

    /// The snake_case spelling used by the CLI and `tandem runs` (`running`, `timed_out`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed_out",
        }
    }

    /// Parses the snake_case spelling of [`RunState::as_str`].
    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// True for the states a run ends in (all but `Running`).
    pub fn is_final(self) -> bool {
        self != RunState::Running
    }

    /// The proto enum value.
    pub fn to_proto(self) -> proto::RunState {
        match self {
            RunState::Running => proto::RunState::Running,
            RunState::Succeeded => proto::RunState::Succeeded,
            RunState::Failed => proto::RunState::Failed,
            RunState::Cancelled => proto::RunState::Cancelled,
            RunState::TimedOut => proto::RunState::TimedOut,
        }
    }

    /// The state of a proto enum number; `None` for `UNSPECIFIED` and numbers this client does
    /// not know.
    pub fn from_proto(value: i32) -> Option<RunState> {
        match proto::RunState::try_from(value).ok()? {
            proto::RunState::Unspecified => None,
            proto::RunState::Running => Some(RunState::Running),
            proto::RunState::Succeeded => Some(RunState::Succeeded),
            proto::RunState::Failed => Some(RunState::Failed),
            proto::RunState::Cancelled => Some(RunState::Cancelled),
            proto::RunState::TimedOut => Some(RunState::TimedOut),
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State of a task instance in a run (`tandem.v1.TaskState` without `UNSPECIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its upstream tasks or a free slot.
    Pending,
    /// An attempt is in flight.
    Running,
    /// An attempt failed; the next one waits for its backoff.
    WaitingRetry,
    /// An attempt succeeded.
    Succeeded,
    /// Its last attempt failed and no retry is left.
    Failed,
    /// Its trigger rule said not to run.
    Skipped,
    /// An upstream task failed.
    UpstreamFailed,
    /// The run was cancelled before it ended.
    Cancelled,
}

impl TaskState {
    /// The snake_case spelling, as in `tandem show` (`waiting_retry`, `upstream_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::WaitingRetry => "waiting_retry",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// True for the states a task ends in.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TaskState::Pending | TaskState::Running | TaskState::WaitingRetry
        )
    }

    /// The state of a proto enum number; `None` for `UNSPECIFIED` and unknown numbers.
    pub fn from_proto(value: i32) -> Option<TaskState> {
        match proto::TaskState::try_from(value).ok()? {
            proto::TaskState::Unspecified => None,
            proto::TaskState::Pending => Some(TaskState::Pending),
            proto::TaskState::Running => Some(TaskState::Running),
            proto::TaskState::WaitingRetry => Some(TaskState::WaitingRetry),
            proto::TaskState::Succeeded => Some(TaskState::Succeeded),
            proto::TaskState::Failed => Some(TaskState::Failed),
            proto::TaskState::Skipped => Some(TaskState::Skipped),
            proto::TaskState::UpstreamFailed => Some(TaskState::UpstreamFailed),
            proto::TaskState::Cancelled => Some(TaskState::Cancelled),
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many task instances of a run are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    /// All task instances of the run (after matrix expansion).
    pub total: u32,
    /// Pending.
    pub pending: u32,
    /// Running.
    pub running: u32,
    /// Waiting for a retry.
    pub waiting_retry: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Skipped by their trigger rule.
    pub skipped: u32,
    /// Not run because an upstream task failed.
    pub upstream_failed: u32,
    /// Cancelled.
    pub cancelled: u32,
}

impl TaskCounts {
    /// Task instances in a final state (succeeded, failed, skipped, upstream failed, cancelled).
    pub fn finished(&self) -> u32 {
        self.succeeded + self.failed + self.skipped + self.upstream_failed + self.cancelled
    }
}

impl From<proto::TaskCounts> for TaskCounts {
    fn from(counts: proto::TaskCounts) -> TaskCounts {
        TaskCounts {
            total: counts.total,
            pending: counts.pending,
            running: counts.running,
            waiting_retry: counts.waiting_retry,
            succeeded: counts.succeeded,
            failed: counts.failed,
            skipped: counts.skipped,
            upstream_failed: counts.upstream_failed,
            cancelled: counts.cancelled,
        }
    }
}

/// A run: its summary and, from `get_run` and the last `watch_run` update, its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The run id (UUIDv7 text).
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow version it runs (hex SHA-256 of the file's text).
    pub version: String,
    /// Its state.
    pub state: RunState,
    /// Why it ended as it did (`None` while running or when it succeeded without a note).
    pub reason: Option<String>,
    /// Its params (defaults merged with the ones given at start).
    pub params: BTreeMap<String, String>,
    /// When it was created, ms since the Unix epoch.
    pub created_at_unix_ms: i64,
    /// When it finished, ms since the Unix epoch (`None` while running).
    pub finished_at_unix_ms: Option<i64>,
    /// Task instances per state.
    pub counts: TaskCounts,
    /// Every task instance in the file's order; empty in list results.
    pub tasks: Vec<Task>,
    /// The owner epoch of the run's writer.
    pub epoch: u64,
    /// True while cancellation (or the deadline) is stopping the run's attempts.
    pub cancelling: bool,
}

/// A task instance of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Task instance id (`load`, `transform[shard=1]`).
    pub task_id: String,
    /// Its state.
    pub state: TaskState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why it ended as it did (failed, skipped, ...).
    pub reason: Option<String>,
    /// Outputs of its succeeded attempt.
    pub outputs: BTreeMap<String, String>,
    /// When it finished, ms since the Unix epoch (`None` until then).
    pub finished_at_unix_ms: Option<i64>,
}

impl Run {
    /// Converts a proto run; the error says which value this client does not understand.
    pub fn from_proto(run: proto::Run) -> Result<Run, String> {
        let state = RunState::from_proto(run.state).ok_or_else(|| {
            format!(
                "run {}: expected a run state (1..=5), found {}",
                run.run_id, run.state
            )
        })?;
        let tasks = run
            .tasks
            .into_iter()
            .map(|task| {
                Task::from_proto(task).map_err(|error| format!("run {}: {error}", run.run_id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Run {
            run_id: run.run_id,
            workflow: run.workflow,
            version: run.version,
            state,
            reason: non_empty(run.reason),
            params: run.params.into_iter().collect(),
            created_at_unix_ms: run.created_at_unix_ms,
            finished_at_unix_ms: non_zero(run.finished_at_unix_ms),
            counts: run.counts.map(TaskCounts::from).unwrap_or_default(),
            tasks,
            epoch: run.epoch,
            cancelling: run.cancelling,
        })
    }
}

impl Task {
    /// Converts a proto task; the error names the task and the value not understood.
    pub fn from_proto(task: proto::Task) -> Result<Task, String> {
        let state = TaskState::from_proto(task.state).ok_or_else(|| {
            format!(
                "task {}: expected a task state (1..=8), found {}",
                task.task_id, task.state
            )
        })?;
        Ok(Task {
            task_id: task.task_id,
            state,
            attempts: task.attempts,
            reason: non_empty(task.reason),
            outputs: task.outputs.into_iter().collect(),
            finished_at_unix_ms: non_zero(task.finished_at_unix_ms),
        })
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn non_zero(millis: i64) -> Option<i64> {
    (millis != 0).then_some(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_state_round_trips() {
        for state in RunState::ALL {
            assert_eq!(RunState::parse(state.as_str()), Some(state));
            assert_eq!(RunState::from_proto(state.to_proto() as i32), Some(state));
        }
        assert_eq!(RunState::parse("RUNNING"), None);
        assert_eq!(RunState::from_proto(0), None);
        assert_eq!(RunState::from_proto(42), None);
        assert!(!RunState::Running.is_final());
        assert!(RunState::TimedOut.is_final());
    }

    #[test]
    fn run_from_proto_maps_unset_values_to_none() {
        let run = proto::Run {
            run_id: "r1".to_string(),
            workflow: "w".to_string(),
            state: proto::RunState::Running as i32,
            tasks: vec![proto::Task {
                task_id: "load".to_string(),
                state: proto::TaskState::Succeeded as i32,
                attempts: 2,
                outputs: [("rows".to_string(), "3".to_string())].into(),
                finished_at_unix_ms: 1_700_000_000_000,
                ..Default::default()
            }],
            counts: Some(proto::TaskCounts {
                total: 1,
                succeeded: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let run = Run::from_proto(run).expect("valid run");
        assert_eq!(run.state, RunState::Running);
        assert_eq!(run.reason, None);
        assert_eq!(run.finished_at_unix_ms, None);
        assert_eq!(run.counts.finished(), 1);
        assert_eq!(run.tasks[0].state, TaskState::Succeeded);
        assert_eq!(run.tasks[0].finished_at_unix_ms, Some(1_700_000_000_000));
        assert_eq!(run.tasks[0].outputs["rows"], "3");
    }

    #[test]
    fn unknown_states_are_named() {
        let run = proto::Run {
            run_id: "r1".to_string(),
            state: 9,
            ..Default::default()
        };
        let error = Run::from_proto(run).expect_err("state 9 is unknown");
        assert!(error.contains("r1") && error.contains("found 9"), "{error}");
        let run = proto::Run {
            run_id: "r2".to_string(),
            state: proto::RunState::Failed as i32,
            tasks: vec![proto::Task {
                task_id: "t".to_string(),
                state: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        let error = Run::from_proto(run).expect_err("task state 0 is unspecified");
        assert!(
            error.contains("task t") && error.contains("found 0"),
            "{error}"
        );
    }

    #[test]
    fn serializes_states_in_snake_case() {
        let text = serde_json::to_string(&TaskState::UpstreamFailed).expect("serializable");
        assert_eq!(text, "\"upstream_failed\"");
        let text = serde_json::to_string(&RunState::TimedOut).expect("serializable");
        assert_eq!(text, "\"timed_out\"");
    }
}
