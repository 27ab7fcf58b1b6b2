//! Executors: what runs an attempt once its start is durable.
//!
//! The built-in executor is [`shell::ShellExecutor`]: `sh -c COMMAND` in its own process
//! group, with the task's env, stdout/stderr captured to files, outputs read from
//! `$TANDEM_OUTPUT`, and the whole group killed at the attempt's timeout or on cancellation.
//! Executors report back through [`AttemptReport`]s on a channel; they never write checkpoints.
//!
//! Attempts of `worker:` tasks go to [`remote::TaskQueues`] instead, where remote worker
//! processes lease them; their ends come back as [`remote::RemoteReport`]s, which carry an ack
//! that the run's driver fires once the end is committed.

pub mod outputs;
pub mod process;
pub mod remote;
pub mod shell;

use std::path::PathBuf;
use std::time::Duration;

use tandem_dsl::TaskIndex;

use crate::checkpoint::{AttemptOutcome, RunId};

/// Everything needed to run one attempt of a shell task.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRequest {
    /// The run.
    pub run_id: RunId,
    /// Task instance index in the run's workflow.
    pub task: TaskIndex,
    /// Task instance id (`transform[shard=1]`), given to the process as `TANDEM_TASK_ID`.
    pub task_id: String,
    /// Attempt number from 1, given as `TANDEM_ATTEMPT`.
    pub attempt: u32,
    /// The rendered command, run with `sh -c`.
    pub command: String,
    /// Working directory of the process.
    pub working_dir: PathBuf,
    /// The task's rendered env, added to the inherited environment (after it, so it wins),
    /// before the `TANDEM_*` variables (which win over both).
    pub env: Vec<(String, String)>,
    /// Per-attempt timeout; the process group is killed (SIGTERM, then SIGKILL after the kill
    /// grace) when it passes, and the outcome is [`AttemptOutcome::TimedOut`].
    pub timeout: Option<Duration>,
    /// File that receives the process's stdout (created, parent directories too).
    pub stdout_path: PathBuf,
    /// File that receives the process's stderr.
    pub stderr_path: PathBuf,
    /// File named by `$TANDEM_OUTPUT` (created empty before the process starts).
    pub outputs_path: PathBuf,
}

impl AttemptRequest {
    /// The idempotency key given as `TANDEM_IDEMPOTENCY_KEY`: `RUN_ID/TASK_ID`, stable across
    /// attempts (and across crashes and resumes).
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.run_id, self.task_id)
    }
}

/// What an executor tells the scheduler about an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptReport {
    /// The process exists (sent once, right after spawn).
    Spawned {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
        /// Process id (also its process group id).
        pid: u32,
        /// Process start time in clock ticks since boot (`/proc/PID/stat` field 22).
        start_ticks: u64,
    },
    /// The attempt ended (sent exactly once per started attempt, after every process of its
    /// group is gone or was killed).
    Finished {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
        /// How it ended.
        outcome: AttemptOutcome,
    },
}
