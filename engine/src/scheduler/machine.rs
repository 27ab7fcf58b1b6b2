//! The scheduler's decisions: (state, input) → (checkpoints, actions).
//!
//! Like Restate's partition state machine, [`RunMachine::handle`] changes the run's state only
//! by recording events (each applied at once through [`RunState::apply`]) and *collects* the
//! side effects as [`Action`]s. The I/O loop around it ([`crate::runner`]) commits the events
//! first and performs the actions after the commit (write-ahead). No clock, process or disk is
//! touched here: time comes in with each input, randomness from a seedable generator.

use std::sync::Arc;
use std::time::Duration;

use tandem_dsl::{RenderError, TaskAction, TaskIndex, TaskSpec, Template, TriggerRule};

use super::state::{RunPhase, RunState, TaskStatus};
use super::trigger::{Verdict, evaluate};
use crate::checkpoint::{AttemptOutcome, Event, RunEnd, TaskEnd, UnixMillis};

/// Something that happened to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A new run starts scheduling.
    Start,
    /// A run rebuilt from its checkpoints continues under a new owner (after a crash or a
    /// leader failover). Its in-flight shell attempts are recorded as interrupted and handled
    /// by their retry policy (their processes died with their owner, or are killed by
    /// [`Action::KillLeftover`]); its in-flight worker attempts keep running in their workers
    /// and are adopted ([`Action::Adopt`]).
    Recover {
        /// Who takes over ("pid 123 on host").
        owner: String,
        /// Whether the run's previous owner ran on this host. Only then do the process ids
        /// recorded for its shell attempts name processes here, so only then are leftover
        /// processes killed ([`Action::KillLeftover`]); a pid of another host means nothing
        /// here.
        same_host: bool,
    },
    /// An attempt's process exists.
    AttemptSpawned {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
        /// Process id (and process group id).
        pid: u32,
        /// Process start time in clock ticks since boot.
        start_ticks: u64,
    },
    /// An attempt ended.
    AttemptFinished {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
        /// How.
        outcome: AttemptOutcome,
    },
    /// A retry timer armed by [`Action::ArmRetry`] fired.
    RetryDue {
        /// Task instance.
        task: TaskIndex,
        /// The attempt that is due.
        attempt: u32,
    },
    /// Cancel the run (Ctrl-C, `tandem cancel`).
    Cancel {
        /// Why, for people.
        reason: String,
    },
    /// The run's deadline (armed by [`Action::ArmDeadline`]) passed.
    DeadlinePassed,
}

/// An attempt to start, with its templates rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// Task instance.
    pub task: TaskIndex,
    /// Task instance id.
    pub task_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// What the attempt runs: a shell command or a remote worker's task.
    pub kind: DispatchKind,
    /// Per-attempt timeout.
    pub timeout: Option<Duration>,
}

/// What a [`Dispatch`] runs, by the task's action ([`TaskAction`]).
#[derive(Debug, Clone, PartialEq)]
pub enum DispatchKind {
    /// A shell command (`run:`), run locally with `sh -c`.
    Shell {
        /// The command for `sh -c`.
        command: String,
        /// The rendered `working_dir`, as written (relative to the workflow file's
        /// directory), if the task has one.
        working_dir: Option<String>,
        /// The rendered env of the task, sorted by name.
        env: Vec<(String, String)>,
    },
    /// A task for a remote worker (`worker:`), leased through task queue `queue`.
    Worker {
        /// The task queue (`worker.queue`).
        queue: String,
        /// The task type (`worker.type`).
        task_type: String,
        /// The rendered `input:`: a JSON object (empty when the task has no `input`).
        input: serde_json::Value,
        /// The worker must heartbeat the attempt at least this often or lose it.
        heartbeat_timeout: Duration,
    },
}

/// A side effect to perform once the events of the same step are committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Kill what is left of an attempt's process group from a previous owner (before any new
    /// attempt starts).
    KillLeftover {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
        /// Process id (and process group id).
        pid: u32,
        /// Process start time in clock ticks since boot.
        start_ticks: u64,
    },
    /// Start an attempt.
    Dispatch(Dispatch),
    /// Take over a worker attempt that was in flight under the run's previous owner (its
    /// `AttemptStarted` is recorded, its end is not): its worker may still be running it and
    /// will report under the attempt's lease id. The [`Dispatch`] (always of
    /// [`DispatchKind::Worker`]) is what dispatching the attempt would carry, its input
    /// rendered again from the run's state; no new attempt is recorded.
    Adopt(Dispatch),
    /// Feed [`Input::RetryDue`] at `due` (ms since the Unix epoch; at once if past).
    ArmRetry {
        /// Task instance.
        task: TaskIndex,
        /// The attempt that will be due.
        attempt: u32,
        /// When.
        due: UnixMillis,
    },
    /// Feed [`Input::DeadlinePassed`] at `due` (at once if past).
    ArmDeadline {
        /// When.
        due: UnixMillis,
    },
    /// Stop an attempt (SIGTERM, then SIGKILL after the grace); it reports back as cancelled.
    CancelAttempt {
        /// Task instance.
        task: TaskIndex,
        /// Attempt number.
        attempt: u32,
    },
}

/// What one [`RunMachine::handle`] call produced: events to commit, then actions to perform.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Step {
    /// Events, in order; all already applied to the machine's state.
    pub events: Vec<Event>,
    /// Actions, in the order they must be performed.
    pub actions: Vec<Action>,
}

impl Step {
    /// Whether nothing was produced.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.actions.is_empty()
    }
}

/// The scheduler of one run.
#[derive(Debug)]
pub struct RunMachine {
    state: RunState,
    parallelism: usize,
    /// Attempts in flight that take a slot (shell attempts, see [`takes_slot`]).
    local_running: usize,
    rng: fastrand::Rng,
}

impl RunMachine {
    /// A scheduler for `state` that keeps at most `parallelism` (≥ 1) shell attempts running
    /// at once. Empty tasks cost no process and worker tasks run in remote workers: neither
    /// takes a slot, they start as soon as their trigger rule is met.
    pub fn new(state: RunState, parallelism: usize) -> RunMachine {
        let local_running = state
            .tasks
            .iter()
            .zip(&state.spec.tasks)
            .filter(|(runtime, spec)| {
                matches!(runtime.status, TaskStatus::Running { .. }) && takes_slot(&spec.action)
            })
            .count();
        RunMachine {
            state,
            parallelism: parallelism.max(1),
            local_running,
            rng: fastrand::Rng::new(),
        }
    }

    /// Seeds the generator behind retry jitter (for reproducible tests).
    pub fn with_seed(mut self, seed: u64) -> RunMachine {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// The run's current state.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Handles one input at wall-clock time `now` (ms since the Unix epoch), appending the
    /// events to record and the actions to perform to `step`.
    pub fn handle(&mut self, input: Input, now: UnixMillis, step: &mut Step) {
        if self.state.is_finished() {
            return;
        }
        match input {
            Input::Start => {
                self.arm_deadline(step);
            }
            Input::Recover { owner, same_host } => self.recover(owner, same_host, now, step),
            Input::AttemptSpawned {
                task,
                attempt,
                pid,
                start_ticks,
            } => {
                if self.is_running(task, attempt) {
                    self.record(
                        Event::AttemptSpawned {
                            task,
                            attempt,
                            pid,
                            start_ticks,
                        },
                        step,
                    );
                }
            }
            Input::AttemptFinished {
                task,
                attempt,
                outcome,
            } => {
                if self.is_running(task, attempt) {
                    let outcome = self.classify(task, outcome);
                    self.finish_attempt(task, attempt, outcome, now, step);
                }
            }
            Input::RetryDue { task, attempt } => {
                let waiting = matches!(
                    self.state.tasks.get(task as usize).map(|t| t.status),
                    Some(TaskStatus::WaitingRetry { attempt: a, .. }) if a == attempt
                );
                if waiting && !self.state.tasks[task as usize].queued {
                    let spec = Arc::clone(&self.state.spec);
                    if self.state.phase == RunPhase::Running && !takes_slot(&spec.task(task).action)
                    {
                        self.start_attempt(task, now, step);
                    } else {
                        self.state.tasks[task as usize].queued = true;
                        self.state.ready.push_back(task);
                    }
                }
            }
            Input::Cancel { reason } => self.cancel(reason, false, now, step),
            Input::DeadlinePassed => {
                let reason = match self.state.spec.deadline {
                    Some(deadline) => format!(
                        "deadline of {} passed",
                        tandem_dsl::duration::format_duration(deadline)
                    ),
                    None => "deadline passed".to_string(),
                };
                self.cancel(reason, true, now, step);
            }
        }
        self.settle(now, step);
    }

    fn record(&mut self, event: Event, step: &mut Step) {
        self.state.apply(&event);
        step.events.push(event);
    }

    fn is_running(&self, task: TaskIndex, attempt: u32) -> bool {
        matches!(
            self.state.tasks.get(task as usize).map(|t| t.status),
            Some(TaskStatus::Running { attempt: a }) if a == attempt
        )
    }

    fn arm_deadline(&self, step: &mut Step) {
        if let Some(deadline) = self.state.spec.deadline {
            let due = self
                .state
                .created_at
                .saturating_add(deadline.as_millis() as UnixMillis);
            step.actions.push(Action::ArmDeadline { due });
        }
    }

    /// Applies the task's policy to a failure reported by an executor: a non-retryable exit
    /// code or error type (`retry.non_retryable_exit_codes`, `retry.non_retryable_errors`)
    /// makes it non-retryable.
    fn classify(&self, task: TaskIndex, outcome: AttemptOutcome) -> AttemptOutcome {
        let AttemptOutcome::Failed {
            exit_code,
            signal,
            error,
            retryable: true,
            error_type,
        } = outcome
        else {
            return outcome;
        };
        let policy = &self.state.spec.task(task).retry;
        let why = if exit_code.is_some_and(|code| !policy.is_retryable_exit_code(code)) {
            Some("non-retryable exit code")
        } else if error_type
            .as_deref()
            .is_some_and(|error_type| !policy.is_retryable_error_type(error_type))
        {
            Some("non-retryable error type")
        } else {
            None
        };
        match why {
            Some(why) => AttemptOutcome::Failed {
                exit_code,
                signal,
                error: format!("{error} ({why})"),
                retryable: false,
                error_type,
            },
            None => AttemptOutcome::Failed {
                exit_code,
                signal,
                error,
                retryable: true,
                error_type,
            },
        }
    }

    fn recover(&mut self, owner: String, same_host: bool, now: UnixMillis, step: &mut Step) {
        self.record(Event::RunResumed { at: now, owner }, step);
        self.arm_deadline(step);
        let spec = Arc::clone(&self.state.spec);
        for index in 0..self.state.tasks.len() as TaskIndex {
            match self.state.task(index).status {
                TaskStatus::Running { attempt }
                    if matches!(spec.task(index).action, TaskAction::Worker { .. }) =>
                {
                    self.adopt(index, attempt, now, step);
                }
                TaskStatus::Running { attempt } => {
                    let process = self
                        .state
                        .task(index)
                        .attempts
                        .last()
                        .and_then(|record| record.process);
                    if let (true, Some((pid, start_ticks))) = (same_host, process) {
                        step.actions.push(Action::KillLeftover {
                            task: index,
                            attempt,
                            pid,
                            start_ticks,
                        });
                    }
                    self.finish_attempt(index, attempt, AttemptOutcome::Interrupted, now, step);
                }
                TaskStatus::AttemptFailed { attempt } => {
                    let outcome = self
                        .state
                        .task(index)
                        .attempts
                        .last()
                        .and_then(|record| record.outcome.clone())
                        .unwrap_or(AttemptOutcome::Interrupted);
                    self.after_failure(index, attempt, &outcome, now, step);
                }
                TaskStatus::WaitingRetry { attempt, due } => {
                    step.actions.push(Action::ArmRetry {
                        task: index,
                        attempt,
                        due,
                    });
                }
                TaskStatus::Pending => self.state.to_evaluate.push(index),
                TaskStatus::Succeeded | TaskStatus::Ended(_) => {}
            }
        }
        // Evaluate in file order: the worklist is popped from its end.
        self.state.to_evaluate.reverse();
    }

    /// Adopts the in-flight worker attempt `attempt` of `task` after a recovery: the attempt
    /// stays running and [`Action::Adopt`] hands it to the remote executor. If the run is
    /// being cancelled, the adopted attempt is asked to stop too (the previous owner's request
    /// died with it). An input that no longer renders (it rendered when the attempt was
    /// dispatched, so only a damaged log gets here) fails the attempt, not retryable.
    fn adopt(&mut self, task: TaskIndex, attempt: u32, now: UnixMillis, step: &mut Step) {
        match self.render(task, attempt) {
            Some(Ok(dispatch)) => {
                step.actions.push(Action::Adopt(dispatch));
                if matches!(self.state.phase, RunPhase::Cancelling { .. }) {
                    step.actions.push(Action::CancelAttempt { task, attempt });
                }
            }
            Some(Err(error)) => self.finish_attempt(task, attempt, not_rendered(error), now, step),
            None => {}
        }
    }

    /// Records the end of an attempt and, when it did not succeed, what follows (a retry or
    /// the task's failure).
    fn finish_attempt(
        &mut self,
        task: TaskIndex,
        attempt: u32,
        outcome: AttemptOutcome,
        now: UnixMillis,
        step: &mut Step,
    ) {
        let success = outcome.is_success();
        if takes_slot(&self.state.spec.task(task).action) {
            self.local_running = self.local_running.saturating_sub(1);
        }
        self.record(
            Event::AttemptFinished {
                task,
                attempt,
                at: now,
                outcome: outcome.clone(),
            },
            step,
        );
        if !success {
            self.after_failure(task, attempt, &outcome, now, step);
        }
    }

    fn after_failure(
        &mut self,
        task: TaskIndex,
        attempt: u32,
        outcome: &AttemptOutcome,
        now: UnixMillis,
        step: &mut Step,
    ) {
        let reason = describe(outcome);
        if let RunPhase::Cancelling { reason: why, .. } = &self.state.phase {
            let reason = format!("{why}; attempt {attempt}: {reason}");
            self.record(
                Event::TaskFinished {
                    task,
                    state: TaskEnd::Cancelled,
                    reason,
                    at: now,
                },
                step,
            );
            return;
        }
        let policy = &self.state.spec.task(task).retry;
        let retryable = match outcome {
            AttemptOutcome::Failed { retryable, .. } => *retryable,
            AttemptOutcome::TimedOut { .. } | AttemptOutcome::Interrupted => true,
            AttemptOutcome::Succeeded { .. } | AttemptOutcome::Cancelled => false,
        };
        if retryable && attempt < policy.max_attempts {
            let delay = policy.delay(attempt, self.rng.f64());
            let due = now.saturating_add(delay.as_millis() as UnixMillis);
            let next = attempt + 1;
            self.record(
                Event::RetryScheduled {
                    task,
                    attempt: next,
                    due,
                },
                step,
            );
            step.actions.push(Action::ArmRetry {
                task,
                attempt: next,
                due,
            });
        } else {
            let reason = if retryable {
                format!(
                    "attempt {attempt} of {}: {reason}; no attempt left",
                    policy.max_attempts
                )
            } else {
                format!("attempt {attempt}: {reason}")
            };
            self.record(
                Event::TaskFinished {
                    task,
                    state: TaskEnd::Failed,
                    reason,
                    at: now,
                },
                step,
            );
        }
    }

    fn cancel(&mut self, reason: String, timed_out: bool, now: UnixMillis, step: &mut Step) {
        if self.state.phase != RunPhase::Running {
            return;
        }
        self.record(
            Event::CancelRequested {
                at: now,
                reason,
                timed_out,
            },
            step,
        );
        for index in 0..self.state.tasks.len() as TaskIndex {
            if let TaskStatus::Running { attempt } = self.state.task(index).status {
                step.actions.push(Action::CancelAttempt {
                    task: index,
                    attempt,
                });
            }
        }
        for task in self.state.ready.drain(..) {
            self.state.tasks[task as usize].queued = false;
        }
    }

    /// Evaluates trigger rules, starts what may start, and finishes the run when nothing is
    /// left to do.
    fn settle(&mut self, now: UnixMillis, step: &mut Step) {
        loop {
            while let Some(task) = self.state.to_evaluate.pop() {
                self.evaluate_task(task, now, step);
            }
            while self.state.phase == RunPhase::Running && self.local_running < self.parallelism {
                let Some(task) = self.state.ready.pop_front() else {
                    break;
                };
                self.state.tasks[task as usize].queued = false;
                self.start_attempt(task, now, step);
            }
            if self.state.to_evaluate.is_empty() {
                break;
            }
        }
        self.finish_if_done(now, step);
    }

    fn evaluate_task(&mut self, task: TaskIndex, now: UnixMillis, step: &mut Step) {
        let runtime = self.state.task(task);
        if runtime.status != TaskStatus::Pending
            || runtime.queued
            || self.state.phase != RunPhase::Running
        {
            return;
        }
        let spec = Arc::clone(&self.state.spec);
        let task_spec = spec.task(task);
        match evaluate(task_spec.trigger_rule, runtime.upstream) {
            Verdict::Wait => {}
            Verdict::Run => {
                if !takes_slot(&task_spec.action) {
                    self.start_attempt(task, now, step);
                } else {
                    self.state.tasks[task as usize].queued = true;
                    self.state.ready.push_back(task);
                }
            }
            verdict @ (Verdict::Skip | Verdict::UpstreamFailed) => {
                let state = if verdict == Verdict::Skip {
                    TaskEnd::Skipped
                } else {
                    TaskEnd::UpstreamFailed
                };
                let reason = self.blame(task_spec);
                self.record(
                    Event::TaskFinished {
                        task,
                        state,
                        reason,
                        at: now,
                    },
                    step,
                );
            }
        }
    }

    /// Says why `task`'s trigger rule can no longer be met.
    fn blame(&self, task: &TaskSpec) -> String {
        let rule = task.trigger_rule;
        let first_in = |wanted: &[&str]| {
            task.upstream
                .iter()
                .find(|&&up| wanted.contains(&self.state.task(up).status.as_str()))
                .map(|&up| self.state.spec.task(up).id.as_str())
        };
        let found = match rule {
            TriggerRule::AllSuccess | TriggerRule::NoneFailed => {
                first_in(&["failed", "upstream_failed", "cancelled"])
                    .map(|id| format!("upstream task `{id}` did not succeed"))
                    .or_else(|| {
                        first_in(&["skipped"]).map(|id| format!("upstream task `{id}` was skipped"))
                    })
            }
            TriggerRule::AllFailed => first_in(&["succeeded", "skipped"])
                .map(|id| format!("upstream task `{id}` did not fail")),
            TriggerRule::OneSuccess => Some("no upstream task succeeded".to_string()),
            TriggerRule::OneFailed => Some("no upstream task failed".to_string()),
            TriggerRule::AllDone => None,
        };
        format!(
            "trigger rule {rule}: {}",
            found.unwrap_or_else(|| "cannot be met".to_string())
        )
    }

    fn start_attempt(&mut self, task: TaskIndex, now: UnixMillis, step: &mut Step) {
        let attempt = self.state.task(task).attempts.len() as u32 + 1;
        self.record(
            Event::AttemptStarted {
                task,
                attempt,
                at: now,
            },
            step,
        );
        match &self.state.spec.task(task).action {
            TaskAction::Empty => {
                let outcome = AttemptOutcome::Succeeded {
                    outputs: Default::default(),
                };
                self.finish_attempt(task, attempt, outcome, now, step);
                return;
            }
            TaskAction::Shell { .. } => self.local_running += 1,
            TaskAction::Worker { .. } => {}
        }
        match self.render(task, attempt) {
            Some(Ok(dispatch)) => step.actions.push(Action::Dispatch(dispatch)),
            Some(Err(error)) => self.finish_attempt(task, attempt, not_rendered(error), now, step),
            None => {}
        }
    }

    /// The dispatch of attempt `attempt` of `task`, its templates rendered from the run's
    /// current state; `None` for an empty task, which dispatches nothing.
    ///
    /// Errors: the first template that needs a value the run does not have.
    fn render(&self, task: TaskIndex, attempt: u32) -> Option<Result<Dispatch, RenderError>> {
        let task_spec = self.state.spec.task(task);
        let kind = match &task_spec.action {
            TaskAction::Empty => return None,
            TaskAction::Shell { run, working_dir } => {
                render_shell(run, working_dir.as_ref(), &task_spec.env, &self.state)
            }
            TaskAction::Worker {
                queue,
                task_type,
                input,
                heartbeat_timeout,
            } => input.render(&self.state).map(|input| DispatchKind::Worker {
                queue: queue.clone(),
                task_type: task_type.clone(),
                input,
                heartbeat_timeout: *heartbeat_timeout,
            }),
        };
        Some(kind.map(|kind| Dispatch {
            task,
            task_id: task_spec.id.clone(),
            attempt,
            kind,
            timeout: task_spec.timeout,
        }))
    }

    fn finish_if_done(&mut self, now: UnixMillis, step: &mut Step) {
        let counts = self.state.counts;
        let (end, reason) = match &self.state.phase {
            RunPhase::Finished { .. } => return,
            RunPhase::Cancelling { reason, end } => {
                if counts.running > 0 {
                    return;
                }
                (*end, reason.clone())
            }
            RunPhase::Running => {
                if counts.terminal() < self.state.tasks.len() {
                    return;
                }
                if counts.failed > 0 {
                    let first = self
                        .state
                        .tasks
                        .iter()
                        .position(|t| t.status == TaskStatus::Ended(TaskEnd::Failed))
                        .map(|index| self.state.spec.tasks[index].id.as_str())
                        .unwrap_or("?");
                    let more = if counts.failed > 1 {
                        format!(" (and {} more)", counts.failed - 1)
                    } else {
                        String::new()
                    };
                    (RunEnd::Failed, format!("task `{first}` failed{more}"))
                } else {
                    (RunEnd::Succeeded, summary(&counts))
                }
            }
        };
        self.record(
            Event::RunFinished {
                state: end,
                at: now,
                reason,
            },
            step,
        );
    }
}

/// Whether attempts of a task with `action` take one of the run's `parallelism` slots: shell
/// attempts do (each is a local process); empty tasks cost nothing and worker tasks run in
/// remote workers, whose own concurrency bounds them.
fn takes_slot(action: &TaskAction) -> bool {
    matches!(action, TaskAction::Shell { .. })
}

/// Renders the command, working directory and env of a shell task's attempt.
///
/// Errors: the first template that needs a value the run does not have (a missing output).
fn render_shell(
    run: &Template,
    working_dir: Option<&Template>,
    env: &[(String, Template)],
    context: &RunState,
) -> Result<DispatchKind, RenderError> {
    let command = run.render(context)?;
    let working_dir = match working_dir {
        Some(template) => Some(template.render(context)?),
        None => None,
    };
    let mut rendered = Vec::with_capacity(env.len());
    for (name, value) in env {
        rendered.push((name.clone(), value.render(context)?));
    }
    Ok(DispatchKind::Shell {
        command,
        working_dir,
        env: rendered,
    })
}

/// The outcome of an attempt whose templates do not render: failed, not retryable (a retry
/// would render the same way).
fn not_rendered(error: RenderError) -> AttemptOutcome {
    AttemptOutcome::Failed {
        exit_code: None,
        signal: None,
        error: error.to_string(),
        retryable: false,
        error_type: None,
    }
}

fn summary(counts: &super::state::TaskCounts) -> String {
    let mut parts = vec![format!("{} succeeded", counts.succeeded)];
    if counts.skipped > 0 {
        parts.push(format!("{} skipped", counts.skipped));
    }
    if counts.upstream_failed > 0 {
        parts.push(format!("{} upstream_failed", counts.upstream_failed));
    }
    parts.join(", ")
}

/// Says how an attempt ended, for people.
pub fn describe(outcome: &AttemptOutcome) -> String {
    match outcome {
        AttemptOutcome::Succeeded { .. } => "succeeded".to_string(),
        AttemptOutcome::Failed {
            error,
            error_type: Some(error_type),
            ..
        } => format!("{error_type}: {error}"),
        AttemptOutcome::Failed { error, .. } => error.clone(),
        AttemptOutcome::TimedOut { timeout_ms } => format!(
            "timed out after {}",
            tandem_dsl::duration::format_duration(Duration::from_millis(*timeout_ms))
        ),
        AttemptOutcome::Cancelled => "cancelled".to_string(),
        AttemptOutcome::Interrupted => {
            "interrupted: the process that ran the attempt died".to_string()
        }
    }
}
