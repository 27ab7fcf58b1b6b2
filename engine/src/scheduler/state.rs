//! The in-memory state of one run: a fold of its checkpoints.
//!
//! [`RunState::apply`] is the only code that changes a run's state, both while the scheduler
//! runs (every event it records is applied at once) and when a run is rebuilt from its
//! checkpoints (`tandem resume`, `tandem show`). It never decides anything: decisions live in
//! [`super::machine`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tandem_dsl::{TaskIndex, TemplateContext, WorkflowSpec};

use super::trigger::UpstreamCounts;
use crate::checkpoint::{AttemptOutcome, Event, RunEnd, RunId, TaskEnd, UnixMillis};

/// Where a task instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for its trigger rule (or for a free slot, see [`RunState::ready`]).
    Pending,
    /// Attempt `attempt` is in flight.
    Running {
        /// Attempt number.
        attempt: u32,
    },
    /// Attempt `attempt` failed; whether it is retried is recorded by the very next event of
    /// the same commit (a transient state).
    AttemptFailed {
        /// Attempt number.
        attempt: u32,
    },
    /// Attempt `attempt` is due at `due` (ms since the Unix epoch).
    WaitingRetry {
        /// The coming attempt's number.
        attempt: u32,
        /// When it is due.
        due: UnixMillis,
    },
    /// An attempt succeeded.
    Succeeded,
    /// Final: failed, skipped, upstream_failed or cancelled.
    Ended(TaskEnd),
}

impl TaskStatus {
    /// Whether the task reached a final state.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Ended(_))
    }

    /// The snake_case name shown to people (`pending`, `running`, `waiting_retry`,
    /// `succeeded`, `failed`, `skipped`, `upstream_failed`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running { .. } | TaskStatus::AttemptFailed { .. } => "running",
            TaskStatus::WaitingRetry { .. } => "waiting_retry",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Ended(TaskEnd::Failed) => "failed",
            TaskStatus::Ended(TaskEnd::Skipped) => "skipped",
            TaskStatus::Ended(TaskEnd::UpstreamFailed) => "upstream_failed",
            TaskStatus::Ended(TaskEnd::Cancelled) => "cancelled",
        }
    }
}

/// One attempt of a task, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub number: u32,
    /// When it started (ms since the Unix epoch).
    pub started_at: UnixMillis,
    /// When it ended, if it has.
    pub finished_at: Option<UnixMillis>,
    /// How it ended, if it has.
    pub outcome: Option<AttemptOutcome>,
    /// Its process (pid, start time in clock ticks), once spawned.
    pub process: Option<(u32, u64)>,
}

/// One task instance of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRuntime {
    /// Current status.
    pub status: TaskStatus,
    /// Every attempt so far, in order.
    pub attempts: Vec<AttemptRecord>,
    /// Outputs of the succeeded attempt.
    pub outputs: BTreeMap<String, String>,
    /// Why the task ended as it did, when not succeeded.
    pub reason: Option<String>,
    /// When it reached its final state.
    pub finished_at: Option<UnixMillis>,
    /// How its upstream tasks have ended so far.
    pub upstream: UpstreamCounts,
    /// Whether it is in [`RunState::ready`]. Not recorded.
    pub(crate) queued: bool,
}

/// Where the run as a whole is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPhase {
    /// Scheduling tasks.
    Running,
    /// Cancellation (or the deadline) asked every attempt to stop; no new attempt starts.
    Cancelling {
        /// Why.
        reason: String,
        /// The state the run ends in: cancelled or timed out.
        end: RunEnd,
    },
    /// Finished.
    Finished {
        /// Final state.
        end: RunEnd,
        /// When.
        at: UnixMillis,
        /// Why.
        reason: String,
    },
}

/// Number of task instances in each status family, kept up to date by [`RunState::apply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Pending (waiting for upstream or a slot).
    pub pending: usize,
    /// Running (an attempt in flight).
    pub running: usize,
    /// Waiting for a retry.
    pub waiting_retry: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Upstream failed.
    pub upstream_failed: usize,
    /// Cancelled.
    pub cancelled: usize,
}

impl TaskCounts {
    fn slot(&mut self, status: TaskStatus) -> &mut usize {
        match status {
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Running { .. } | TaskStatus::AttemptFailed { .. } => &mut self.running,
            TaskStatus::WaitingRetry { .. } => &mut self.waiting_retry,
            TaskStatus::Succeeded => &mut self.succeeded,
            TaskStatus::Ended(TaskEnd::Failed) => &mut self.failed,
            TaskStatus::Ended(TaskEnd::Skipped) => &mut self.skipped,
            TaskStatus::Ended(TaskEnd::UpstreamFailed) => &mut self.upstream_failed,
            TaskStatus::Ended(TaskEnd::Cancelled) => &mut self.cancelled,
        }
    }

    /// Tasks in a final state.
    pub fn terminal(&self) -> usize {
        self.succeeded + self.failed + self.skipped + self.upstream_failed + self.cancelled
    }
}

/// The state of one run.
#[derive(Debug, Clone)]
pub struct RunState {
    /// The run.
    pub run_id: RunId,
    /// Its run id as text (rendered into templates and env).
    pub run_id_text: String,
    /// Its workflow, compiled from the source recorded at creation.
    pub spec: Arc<WorkflowSpec>,
    /// Path of the workflow file as recorded at creation.
    pub source_path: String,
    /// Resolved params.
    pub params: BTreeMap<String, String>,
    /// When the run was created.
    pub created_at: UnixMillis,
    /// Where the run is.
    pub phase: RunPhase,
    /// One entry per task instance, indexed by [`TaskIndex`].
    pub tasks: Vec<TaskRuntime>,
    /// Counts of tasks per status.
    pub counts: TaskCounts,
    /// Tasks whose trigger rule is met, waiting for a free slot, in the order they became
    /// ready. Not recorded: rebuilt from the trigger rules after a replay.
    pub ready: VecDeque<TaskIndex>,
    /// Tasks whose upstream changed since their trigger rule was last evaluated. Not recorded.
    pub(crate) to_evaluate: Vec<TaskIndex>,
    /// Owners that resumed the run, with when.
    pub resumed: Vec<(UnixMillis, String)>,
}

impl RunState {
    /// The state of a run that was just created: every task pending, every task without
    /// upstream queued for evaluation.
    pub fn new(
        run_id: RunId,
        spec: Arc<WorkflowSpec>,
        source_path: String,
        params: BTreeMap<String, String>,
        created_at: UnixMillis,
    ) -> RunState {
        let tasks: Vec<TaskRuntime> = spec
            .tasks
            .iter()
            .map(|task| TaskRuntime {
                status: TaskStatus::Pending,
                attempts: Vec::new(),
                outputs: BTreeMap::new(),
                reason: None,
                finished_at: None,
                upstream: UpstreamCounts {
                    total: task.upstream.len() as u32,
                    ..UpstreamCounts::default()
                },
                queued: false,
            })
            .collect();
        let to_evaluate = (0..tasks.len() as TaskIndex)
            .filter(|&index| spec.task(index).upstream.is_empty())
            .rev()
            .collect();
        let counts = TaskCounts {
            pending: tasks.len(),
            ..TaskCounts::default()
        };
        RunState {
            run_id,
            run_id_text: run_id.to_string(),
            spec,
            source_path,
            params,
            created_at,
            phase: RunPhase::Running,
            tasks,
            counts,
            ready: VecDeque::new(),
            to_evaluate,
            resumed: Vec::new(),
        }
    }

    /// The task instance at `index`.
    pub fn task(&self, index: TaskIndex) -> &TaskRuntime {
        &self.tasks[index as usize]
    }

    /// Whether the run has finished.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, RunPhase::Finished { .. })
    }

    /// Applies one recorded event. Events that do not fit the state (a finish for an attempt
    /// that is not running, ...) leave it unchanged, so a replay never panics on an odd log.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::RunCreated { .. } => {}
            Event::RunResumed { at, owner } => self.resumed.push((*at, owner.clone())),
            Event::AttemptStarted { task, attempt, at } => {
                if let Some(runtime) = self.tasks.get_mut(*task as usize) {
                    runtime.attempts.push(AttemptRecord {
                        number: *attempt,
                        started_at: *at,
                        finished_at: None,
                        outcome: None,
                        process: None,
                    });
                    self.set_status(*task, TaskStatus::Running { attempt: *attempt });
                }
            }
            Event::AttemptSpawned {
                task,
                attempt,
                pid,
                start_ticks,
            } => {
                if let Some(record) = self.attempt_mut(*task, *attempt) {
                    record.process = Some((*pid, *start_ticks));
                }
            }
            Event::AttemptFinished {
                task,
                attempt,
                at,
                outcome,
            } => {
                let Some(record) = self.attempt_mut(*task, *attempt) else {
                    return;
                };
                record.finished_at = Some(*at);
                record.outcome = Some(outcome.clone());
                if let AttemptOutcome::Succeeded { outputs } = outcome {
                    self.tasks[*task as usize].outputs = outputs.clone();
                    self.finish_task(*task, TaskStatus::Succeeded, *at, None);
                } else {
                    self.set_status(*task, TaskStatus::AttemptFailed { attempt: *attempt });
                }
            }
            Event::RetryScheduled { task, attempt, due } => {
                if (*task as usize) < self.tasks.len() {
                    self.set_status(
                        *task,
                        TaskStatus::WaitingRetry {
                            attempt: *attempt,
                            due: *due,
                        },
                    );
                }
            }
            Event::TaskFinished {
                task,
                state,
                reason,
                at,
            } => {
                if (*task as usize) < self.tasks.len() {
                    self.finish_task(*task, TaskStatus::Ended(*state), *at, Some(reason.clone()));
                }
            }
            Event::CancelRequested {
                reason, timed_out, ..
            } => {
                if !self.is_finished() {
                    let end = if *timed_out {
                        RunEnd::TimedOut
                    } else {
                        RunEnd::Cancelled
                    };
                    self.phase = RunPhase::Cancelling {
                        reason: reason.clone(),
                        end,
                    };
                }
            }
            Event::RunFinished { state, at, reason } => {
                self.phase = RunPhase::Finished {
                    end: *state,
                    at: *at,
                    reason: reason.clone(),
                };
                self.ready.clear();
                self.to_evaluate.clear();
                if !matches!(state, RunEnd::Succeeded | RunEnd::Failed) {
                    for index in 0..self.tasks.len() as TaskIndex {
                        if !self.task(index).status.is_terminal() {
                            self.set_status(index, TaskStatus::Ended(TaskEnd::Cancelled));
                            let runtime = &mut self.tasks[index as usize];
                            runtime.finished_at = Some(*at);
                            runtime.reason = Some(reason.clone());
                        }
                    }
                }
            }
        }
    }

    fn attempt_mut(&mut self, task: TaskIndex, attempt: u32) -> Option<&mut AttemptRecord> {
        self.tasks
            .get_mut(task as usize)?
            .attempts
            .iter_mut()
            .rev()
            .find(|record| record.number == attempt)
    }

    fn set_status(&mut self, task: TaskIndex, status: TaskStatus) {
        let runtime = &mut self.tasks[task as usize];
        *self.counts.slot(runtime.status) -= 1;
        *self.counts.slot(status) += 1;
        runtime.status = status;
    }

    /// Puts `task` in a final state and tells its downstream tasks.
    fn finish_task(
        &mut self,
        task: TaskIndex,
        status: TaskStatus,
        at: UnixMillis,
        reason: Option<String>,
    ) {
        if self.task(task).status.is_terminal() {
            return;
        }
        self.set_status(task, status);
        let runtime = &mut self.tasks[task as usize];
        runtime.finished_at = Some(at);
        runtime.reason = reason;
        let spec = Arc::clone(&self.spec);
        for &downstream in &spec.task(task).downstream {
            let counts = &mut self.tasks[downstream as usize].upstream;
            match status {
                TaskStatus::Succeeded => counts.succeeded += 1,
                TaskStatus::Ended(TaskEnd::Skipped) => counts.skipped += 1,
                _ => counts.failed += 1,
            }
            self.to_evaluate.push(downstream);
        }
    }
}

impl TemplateContext for RunState {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    fn task_output(&self, task: TaskIndex, key: &str) -> Option<&str> {
        self.tasks
            .get(task as usize)?
            .outputs
            .get(key)
            .map(String::as_str)
    }

    fn task_id(&self, task: TaskIndex) -> &str {
        self.spec
            .tasks
            .get(task as usize)
            .map(|task| task.id.as_str())
            .unwrap_or("?")
    }

    fn run_id(&self) -> &str {
        &self.run_id_text
    }

    fn workflow_name(&self) -> &str {
        &self.spec.name
    }
}
