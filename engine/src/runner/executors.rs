//! The executors of one driven run: shell attempts run in this process, worker attempts go to
//! the region's task queues (when the runner has them), and worker attempts adopted from a
//! previous owner of the run are handed to the queues to wait for their workers.

use std::path::Path;

use tandem_dsl::TaskIndex;
use tokio::sync::mpsc;

use super::{RunnerConfig, attempt_request};
use crate::checkpoint::{AttemptOutcome, RunId};
use crate::executor::remote::{RemoteAttempt, RunQueues};
use crate::executor::shell::ShellExecutor;
use crate::scheduler::{Dispatch, DispatchKind, Input, RunState, TaskStatus};

/// Where a run's attempts go.
pub(super) struct Executors {
    shell: ShellExecutor,
    /// The run's handle on the task queues; `None` when the runner has no remote executor.
    remote: Option<RunQueues>,
    /// Worker attempts dispatched in the current round, queued together by [`Executors::flush`].
    batch: Vec<RemoteAttempt>,
    /// Worker attempts adopted in the current round, handed over by [`Executors::flush`].
    adoptions: Vec<RemoteAttempt>,
    /// The run was resumed and the queues wait for its adoptions: the next
    /// [`Executors::flush`] hands them over even when there are none.
    adopting: bool,
    /// Where an attempt that cannot be dispatched is reported as finished.
    inputs: mpsc::UnboundedSender<Input>,
}

impl Executors {
    /// Executors of a run: `shell` for shell tasks, `remote` for worker tasks; `inputs` takes
    /// the immediate end of a worker attempt when there is no remote executor. `adopting`:
    /// the run was resumed and `remote` was attached with
    /// [`TaskQueues::attach_resumed_run`](crate::executor::remote::TaskQueues::attach_resumed_run).
    pub(super) fn new(
        shell: ShellExecutor,
        remote: Option<RunQueues>,
        inputs: mpsc::UnboundedSender<Input>,
        adopting: bool,
    ) -> Executors {
        Executors {
            shell,
            remote,
            batch: Vec::new(),
            adoptions: Vec::new(),
            adopting,
            inputs,
        }
    }

    /// Starts a dispatched attempt: a shell attempt at once, a worker attempt at the next
    /// [`Executors::flush`]. A worker attempt without a remote executor fails, not retryable.
    pub(super) fn dispatch(
        &mut self,
        run_id: RunId,
        base_dir: &Path,
        config: &RunnerConfig,
        dispatch: Dispatch,
    ) {
        if !matches!(dispatch.kind, DispatchKind::Worker { .. }) {
            if let Some(request) = attempt_request(run_id, base_dir, config, dispatch) {
                self.shell.start(request);
            }
            return;
        }
        if let Some(attempt) = self.remote_attempt(dispatch, false) {
            self.batch.push(attempt);
        }
    }

    /// Takes over a worker attempt in flight under the run's previous owner
    /// ([`crate::scheduler::Action::Adopt`]): handed to the task queues at the next
    /// [`Executors::flush`]. Without a remote executor it fails, not retryable, as a dispatch
    /// would.
    pub(super) fn adopt(&mut self, dispatch: Dispatch) {
        if let DispatchKind::Shell { .. } = dispatch.kind {
            // The scheduler adopts worker attempts only; a shell attempt's process is gone.
            tracing::error!(task = %dispatch.task_id, attempt = dispatch.attempt, "a shell attempt cannot be adopted; recording it as interrupted");
            let _ = self.inputs.send(Input::AttemptFinished {
                task: dispatch.task,
                attempt: dispatch.attempt,
                outcome: AttemptOutcome::Interrupted,
            });
            return;
        }
        if let Some(attempt) = self.remote_attempt(dispatch, true) {
            self.adoptions.push(attempt);
        }
    }

    /// The task queues' form of a worker dispatch, with the W3C context of a new attempt span;
    /// `None` (the attempt reported failed, not retryable) without a remote executor.
    fn remote_attempt(&mut self, dispatch: Dispatch, adopted: bool) -> Option<RemoteAttempt> {
        let Dispatch {
            task,
            task_id,
            attempt,
            kind:
                DispatchKind::Worker {
                    queue,
                    task_type,
                    input,
                    heartbeat_timeout,
                },
            timeout,
        } = dispatch
        else {
            return None;
        };
        if self.remote.is_none() {
            // No remote executor in this runner: the attempt cannot run here.
            let error = format!(
                "task {task_id} needs a worker on queue {queue}; worker tasks run under \
                 `tandem serve` (submit the workflow with `tandem submit`)"
            );
            let _ = self.inputs.send(Input::AttemptFinished {
                task,
                attempt,
                outcome: AttemptOutcome::Failed {
                    exit_code: None,
                    signal: None,
                    error,
                    retryable: false,
                    error_type: None,
                },
            });
            return None;
        }
        // The attempt's span (inside the run's) is the parent of the worker's spans: its W3C
        // context travels with the lease. It records the hand-over to the queue; the work
        // itself is traced by the worker. (An adopted attempt's worker keeps the context it
        // got from the previous owner; a worker that leases it later gets this one.)
        let span = tracing::info_span!(
            "attempt",
            task_id = %task_id,
            attempt,
            queue = %queue,
            task_type = %task_type,
            adopted
        );
        let traceparent = crate::telemetry::traceparent(&span);
        Some(RemoteAttempt {
            task,
            task_id,
            attempt,
            queue,
            task_type,
            input,
            heartbeat_timeout,
            timeout,
            traceparent,
        })
    }

    /// Hands over the worker attempts adopted since the last call (always on the first call
    /// of a resumed run, which ends the queues' adopting window), then queues the worker
    /// attempts dispatched since the last call, each in one go.
    pub(super) fn flush(&mut self) {
        let Some(remote) = &self.remote else {
            return;
        };
        if self.adopting || !self.adoptions.is_empty() {
            self.adopting = false;
            remote.adopt(std::mem::take(&mut self.adoptions));
        }
        if !self.batch.is_empty() {
            remote.enqueue(std::mem::take(&mut self.batch));
        }
    }

    /// Cancels a running attempt, wherever it runs. Worker attempts dispatched or adopted in
    /// the same round are handed to the queues first, so that the cancellation finds them.
    pub(super) fn cancel(&mut self, task: TaskIndex, attempt: u32) {
        self.flush();
        if !self.shell.cancel(task, attempt)
            && let Some(remote) = &self.remote
        {
            remote.cancel(task, attempt);
        }
    }

    /// SIGKILLs every shell attempt now (a second Ctrl-C). Worker attempts are not affected.
    pub(super) fn kill_shell_now(&mut self) {
        self.shell.kill_all_now();
    }

    /// The run's driver stops for `why`: shell attempts are killed, worker attempts leave the
    /// queues (their workers' later calls are told `why`).
    pub(super) fn stop(mut self, why: &str) {
        self.shell.kill_all_now();
        if let Some(remote) = self.remote.take() {
            remote.detach(why);
        }
    }
}

/// Whether the run expects the end of attempt `attempt` of `task` (it is that task's running
/// attempt); otherwise why not, for the worker that reported it.
pub(super) fn expects_end(state: &RunState, task: TaskIndex, attempt: u32) -> Result<(), String> {
    let Some(runtime) = state.tasks.get(task as usize) else {
        return Err(format!(
            "the run has {} task instances, none with index {task}",
            state.tasks.len()
        ));
    };
    let id = &state.spec.task(task).id;
    match runtime.status {
        TaskStatus::Running { attempt: running } if running == attempt => Ok(()),
        TaskStatus::Running { attempt: running } => Err(format!(
            "task `{id}` is running attempt {running}, not attempt {attempt}"
        )),
        status => Err(format!(
            "task `{id}` is {}, no attempt of it is running",
            status.as_str()
        )),
    }
}
