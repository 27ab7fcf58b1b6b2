//! Checkpoints: durable records of the state transitions of runs.
//!
//! A run's state is nothing but the fold of its checkpoints (see [`crate::scheduler::RunState`]):
//! the scheduler appends checkpoints and only then performs their effects (write-ahead), and
//! `tandem resume`, `tandem show` and replication all read the same log.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tandem_dsl::TaskIndex;

/// Identifies a run: a UUIDv7 (time-ordered), shown hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub uuid::Uuid);

impl RunId {
    /// A new time-ordered run id (UUIDv7).
    pub fn new() -> RunId {
        RunId(uuid::Uuid::now_v7())
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(text.trim())
            .map(RunId)
            .map_err(|error| format!("expected a run id (a UUID like 0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70), found `{text}`: {error}"))
    }
}

/// A fencing token: it only grows, every write carries one, and the store refuses writes to a
/// run whose carried epoch is lower than the run's owner epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The region's sequence number of a checkpoint: strictly increasing, without gaps, assigned at
/// commit. A reader that has seen position N has also seen every position below N.
pub type LogPosition = u64;

/// Milliseconds since the Unix epoch (wall clock, UTC).
pub type UnixMillis = i64;

/// A checkpoint as stored: its place in the log, the writer's epoch and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Log position (from 1).
    pub position: LogPosition,
    /// Epoch of the writer that appended it.
    pub epoch: Epoch,
    /// The run it belongs to.
    pub run_id: RunId,
    /// When the store committed it (wall clock, ms since the Unix epoch).
    pub recorded_at: UnixMillis,
    /// The state transition.
    pub event: Event,
}

/// A checkpoint to append: the store assigns its position, epoch and commit time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCheckpoint {
    /// The run it belongs to.
    pub run_id: RunId,
    /// The state transition.
    pub event: Event,
}

/// A state transition of a run. Task instances are named by their [`TaskIndex`] in the run's
/// workflow (compiled from the source text recorded in [`Event::RunCreated`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run exists; always its first checkpoint.
    RunCreated {
        /// Workflow name.
        workflow: String,
        /// Workflow version (hex SHA-256 of the file text).
        version: String,
        /// Path of the workflow file, absolute when known (tasks run in its directory).
        source_path: String,
        /// The full file text, so the run can be resumed whatever happens to the file.
        source: String,
        /// Resolved params (defaults and overrides).
        params: BTreeMap<String, String>,
        /// When the run was created.
        at: UnixMillis,
    },
    /// A process took over an existing run (`tandem resume`, or the new leader of a region
    /// after a failover).
    RunResumed {
        /// When.
        at: UnixMillis,
        /// Who: host name and process id of the new owner.
        owner: String,
    },
    /// Attempt `attempt` of `task` starts. Written before the attempt is dispatched.
    AttemptStarted {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number, from 1.
        attempt: u32,
        /// When.
        at: UnixMillis,
    },
    /// The attempt's process exists: lets a later owner find and stop a process left over by
    /// a crashed one.
    AttemptSpawned {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
        /// Process id, which is also its process group id.
        pid: u32,
        /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22), to
        /// tell it from a later process that reuses the pid.
        start_ticks: u64,
    },
    /// The attempt ended.
    AttemptFinished {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
        /// When.
        at: UnixMillis,
        /// How it ended.
        outcome: AttemptOutcome,
    },
    /// The task will get another attempt at `due` (after its retry backoff).
    RetryScheduled {
        /// Task instance.
        task: TaskIndex,
        /// The number of the coming attempt.
        attempt: u32,
        /// When it is due.
        due: UnixMillis,
    },
    /// The task reached a final state other than succeeded (success follows from a succeeded
    /// attempt).
    TaskFinished {
        /// Task instance.
        task: TaskIndex,
        /// The final state.
        state: TaskEnd,
        /// Why, for people (`upstream task \`extract\` failed`).
        reason: String,
        /// When.
        at: UnixMillis,
    },
    /// Cancellation was asked for (Ctrl-C, `tandem cancel`) or the run deadline passed.
    CancelRequested {
        /// When.
        at: UnixMillis,
        /// Why.
        reason: String,
        /// True when the run's deadline passed (the run ends `timed_out`), false for a
        /// cancellation on request (the run ends `cancelled`).
        #[serde(default)]
        timed_out: bool,
    },
    /// The run ended; its last checkpoint.
    RunFinished {
        /// The final state.
        state: RunEnd,
        /// When.
        at: UnixMillis,
        /// Why, for people.
        reason: String,
    },
}

impl Event {
    /// The snake_case name of the event kind (`attempt_started`, ...), as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunCreated { .. } => "run_created",
            Event::RunResumed { .. } => "run_resumed",
            Event::AttemptStarted { .. } => "attempt_started",
            Event::AttemptSpawned { .. } => "attempt_spawned",
            Event::AttemptFinished { .. } => "attempt_finished",
            Event::RetryScheduled { .. } => "retry_scheduled",
            Event::TaskFinished { .. } => "task_finished",
            Event::CancelRequested { .. } => "cancel_requested",
            Event::RunFinished { .. } => "run_finished",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Exit code 0 (or an empty task).
    Succeeded {
        /// Outputs published through `$TANDEM_OUTPUT`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        outputs: BTreeMap<String, String>,
    },
    /// Non-zero exit, killed by a signal, or could not start.
    Failed {
        /// Exit code, when the process exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Signal number, when the process was killed by one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        /// What went wrong, for people.
        error: String,
        /// Whether the retry policy may retry it (false for non-retryable exit codes and
        /// errors that no retry can fix, like a missing output in a template).
        retryable: bool,
        /// The error type a worker reported with the failure (matched against the task's
        /// `retry.non_retryable_errors`); `None` for shell attempts. Absent in checkpoints
        /// written before worker tasks existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_type: Option<String>,
    },
    /// Killed at the task's per-attempt timeout.
    TimedOut {
        /// The timeout that was exceeded, in milliseconds.
        timeout_ms: u64,
    },
    /// Stopped because the run was cancelled or hit its deadline.
    Cancelled,
    /// The process that ran the attempt died (crash, kill -9, power loss); found at resume.
    Interrupted,
}

impl AttemptOutcome {
    /// Whether the attempt succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptOutcome::Succeeded { .. })
    }
}

/// Final states of a task other than succeeded (see [`Event::TaskFinished`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEnd {
    /// Its last attempt failed and no retry is left (or allowed).
    Failed,
    /// Its trigger rule can no longer be met (upstream skipped, or the rule wants failures that
    /// did not happen).
    Skipped,
    /// An upstream failure makes its trigger rule impossible.
    UpstreamFailed,
    /// The run was cancelled (or timed out) before the task finished.
    Cancelled,
}

/// Final states of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// No task failed.
    Succeeded,
    /// At least one task failed.
    Failed,
    /// Cancelled on request.
    Cancelled,
    /// The run's deadline passed.
    TimedOut,
}

impl RunEnd {
    /// The snake_case spelling (`succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Succeeded => "succeeded",
            RunEnd::Failed => "failed",
            RunEnd::Cancelled => "cancelled",
            RunEnd::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for RunEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Current wall-clock time in ms since the Unix epoch.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as UnixMillis)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_snake_case_tags() {
        let event = Event::AttemptFinished {
            task: 3,
            attempt: 2,
            at: 10,
            outcome: AttemptOutcome::Failed {
                exit_code: Some(1),
                signal: None,
                error: "exit code 1".into(),
                retryable: true,
                error_type: None,
            },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"attempt_finished","task":3,"attempt":2,"at":10,"outcome":{"status":"failed","exit_code":1,"error":"exit code 1","retryable":true}}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        assert_eq!(event.kind(), "attempt_finished");
        let typed = AttemptOutcome::Failed {
            exit_code: None,
            signal: None,
            error: "bad table".into(),
            retryable: true,
            error_type: Some("InvalidInput".into()),
        };
        let json = serde_json::to_string(&typed).unwrap();
        assert_eq!(
            json,
            r#"{"status":"failed","error":"bad table","retryable":true,"error_type":"InvalidInput"}"#
        );
        assert_eq!(
            serde_json::from_str::<AttemptOutcome>(&json).unwrap(),
            typed
        );
    }

    #[test]
    fn run_id_parse_error_says_what_was_expected() {
        let error = "nope".parse::<RunId>().unwrap_err();
        assert!(error.starts_with("expected a run id"), "{error}");
        let id = RunId::new();
        assert_eq!(id.to_string().parse::<RunId>().unwrap(), id);
    }
}
