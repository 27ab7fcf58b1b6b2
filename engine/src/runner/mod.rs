//! The I/O loop around the scheduler: commit checkpoints, then perform actions.
//!
//! [`drive`] feeds inputs (attempt reports, timers, Ctrl-C) to a [`RunMachine`]; every batch of
//! inputs that is ready at once is handled together and its events are appended in **one**
//! commit (group commit), and only after that commit are the resulting actions performed:
//! attempts dispatched, retry timers armed, attempts cancelled (write-ahead). So a large
//! fan-out costs one fsync per scheduling round, not one per task.
//!
//! Shell attempts run in this process ([`ShellExecutor`]); attempts of `worker:` tasks go to the
//! region's task queues ([`RunnerConfig::remote`], see [`crate::executor::remote`]). A worker's
//! completion or failure arrives with an [`Ack`]: the worker's call returns only when the ack
//! fires, which happens right after the commit that holds the attempt's `AttemptFinished`
//! checkpoint (or with an error when that commit fails or the run does not expect the end).
//! Ends that arrive together share one commit, so a thousand concurrent completions cost a
//! handful of commits, not a thousand.
//!
//! A resumed run ([`resume_run`], after a crash or a leader failover) starts with
//! [`Input::Recover`]: its shell attempts in flight count as interrupted (their leftover
//! processes are killed first when the previous owner ran on this host), and its worker
//! attempts in flight are adopted by the task queues after the `RunResumed` commit
//! ([`RunQueues::adopt`](crate::executor::remote::RunQueues::adopt)), so a worker that is
//! still running one simply continues under its lease id.

pub mod clock;
mod executors;
pub mod owner;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tandem_dsl::{ParamError, WorkflowSpec};
use tokio::sync::{mpsc, watch};

pub use self::clock::RunClock;
use self::executors::{Executors, expects_end};
pub use self::owner::{current_owner, is_alive};
use crate::checkpoint::{Epoch, Event, NewCheckpoint, RunEnd, RunId};
use crate::executor::remote::{Ack, AckError, RemoteReport, TaskQueues};
use crate::executor::shell::{ShellConfig, ShellExecutor};
use crate::executor::{AttemptReport, AttemptRequest};
use crate::paths::{AttemptFile, StateDir};
use crate::scheduler::{
    Action, Dispatch, DispatchKind, Input, ReplayError, RunMachine, RunPhase, RunState, Step,
    TaskCounts, rebuild,
};
use crate::store::{CheckpointStore, Owner, RunStatus, StoreError};

/// How a run is driven.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Most shell attempts running at once (≥ 1). Empty tasks take no slot.
    pub parallelism: usize,
    /// Grace between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    pub kill_grace: Duration,
    /// Where attempts' stdout, stderr and outputs files go.
    pub state_dir: StateDir,
    /// The region's task queues, where attempts of `worker:` tasks go. `None` (`tandem run`)
    /// fails such attempts at once, not retryable.
    pub remote: Option<TaskQueues>,
}

/// Asks a running [`drive`] to do something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Cancel the run: running attempts get SIGTERM, then SIGKILL after the kill grace.
    Cancel {
        /// Why, recorded in the run.
        reason: String,
    },
    /// Kill every running attempt at once (SIGKILL), e.g. on a second Ctrl-C.
    KillNow,
}

/// A snapshot of a run's progress, published after every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Number of task instances.
    pub total: usize,
    /// Tasks per status.
    pub counts: TaskCounts,
    /// Whether cancellation is under way.
    pub cancelling: bool,
    /// Checkpoints committed by this process so far.
    pub checkpoints: u64,
    /// Commits made by this process so far.
    pub commits: u64,
}

/// Errors of the runner.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The store failed or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run's checkpoints cannot be turned back into its state.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The params given do not fit the workflow.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// `resume` of a run that has finished.
    #[error("run {run_id} has already finished ({status}); nothing to resume")]
    AlreadyFinished {
        /// The run.
        run_id: RunId,
        /// Its final state.
        status: RunStatus,
    },
    /// `resume` of a run whose owner process is still running it.
    #[error(
        "run {run_id} is still being run by {owner}; stop that process first, or pass --force to take the run over (its writes will then be refused)"
    )]
    OwnerAlive {
        /// The run.
        run_id: RunId,
        /// The live owner.
        owner: Owner,
    },
}

/// A run ready to be driven: its owner epoch, its state and the first input.
#[derive(Debug)]
pub struct Prepared {
    /// The run.
    pub run_id: RunId,
    /// The owner epoch that every write carries.
    pub epoch: Epoch,
    /// Its state.
    pub state: RunState,
    /// The first input ([`Input::Start`] or [`Input::Recover`]).
    pub first: Input,
}

/// Creates a run of `spec` (compiled from `source`, the text of file `path`) with `params`
/// overriding its defaults, owned by `owner`. Nothing runs until [`drive`].
///
/// Errors: [`RunnerError::Params`] (unknown or missing param), [`RunnerError::Store`].
pub async fn create_run(
    store: &dyn CheckpointStore,
    owner: &Owner,
    path: &Path,
    source: String,
    spec: WorkflowSpec,
    params: &[(String, String)],
    clock: &RunClock,
) -> Result<Prepared, RunnerError> {
    let params = spec.resolve_params(params)?;
    let run_id = RunId::new();
    let source_path = std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let at = clock.now();
    let created = Event::RunCreated {
        workflow: spec.name.clone(),
        version: spec.version.clone(),
        source_path: source_path.clone(),
        source,
        params: params.clone(),
        at,
    };
    let epoch = store.create_run(run_id, owner, created).await?;
    let state = RunState::new(run_id, Arc::new(spec), source_path, params, at);
    Ok(Prepared {
        run_id,
        epoch,
        state,
        first: Input::Start,
    })
}

/// Takes over run `run_id` after its process died: refuses a finished run and (unless
/// `force`) a run whose owner is still alive, claims the run (a new epoch that fences the old
/// owner), and rebuilds its state from its checkpoints. The first input,
/// [`Input::Recover`], says whether the previous owner (the run's owner before this claim)
/// ran on `owner`'s host: only then are processes recorded by its shell attempts killed.
pub async fn resume_run(
    store: &dyn CheckpointStore,
    owner: &Owner,
    run_id: RunId,
    force: bool,
) -> Result<Prepared, RunnerError> {
    let summary = store.run_summary(run_id).await?;
    if summary.status.is_terminal() {
        return Err(RunnerError::AlreadyFinished {
            run_id,
            status: summary.status,
        });
    }
    if !force && summary.owner != *owner && is_alive(&summary.owner) {
        return Err(RunnerError::OwnerAlive {
            run_id,
            owner: summary.owner,
        });
    }
    let same_host = summary.owner.host == owner.host;
    let epoch = store.claim_run(run_id, owner).await?;
    let checkpoints = store.read_run(run_id).await?;
    let state = rebuild(run_id, &checkpoints)?;
    if let RunPhase::Finished { end, .. } = state.phase {
        return Err(RunnerError::AlreadyFinished {
            run_id,
            status: end.into(),
        });
    }
    Ok(Prepared {
        run_id,
        epoch,
        state,
        first: Input::Recover {
            owner: owner.to_string(),
            same_host,
        },
    })
}

/// How a driven run ended.
#[derive(Debug)]
pub struct Finished {
    /// Final state.
    pub end: RunEnd,
    /// Why, for people.
    pub reason: String,
    /// The run's final state.
    pub state: RunState,
}

/// Drives a prepared run to its end: the scheduler's I/O loop.
///
/// `controls` carries Ctrl-C and the like; `progress` receives a snapshot after every commit.
/// Errors: [`RunnerError::Store`] when a commit fails (the store already waits out a busy
/// database itself) or is refused by fencing; running attempts are killed then, and the run
/// can be resumed later from what was committed.
#[tracing::instrument(name = "run", skip_all, fields(run_id = %prepared.run_id, epoch = %prepared.epoch, workflow = %prepared.state.spec.name))]
pub async fn drive(
    store: Arc<dyn CheckpointStore>,
    prepared: Prepared,
    config: RunnerConfig,
    clock: RunClock,
    mut controls: mpsc::UnboundedReceiver<Control>,
    progress: watch::Sender<Progress>,
) -> Result<Finished, RunnerError> {
    let Prepared {
        run_id,
        epoch,
        state,
        first,
    } = prepared;
    let base_dir = Path::new(&state.source_path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let (timer_tx, mut timers) = mpsc::unbounded_channel();
    // A resumed run adopts its worker attempts in flight after its first commit; until
    // then the queues tell their workers to retry.
    let resumed = matches!(first, Input::Recover { .. });
    let (remote, mut remote_reports) = match &config.remote {
        Some(queues) if resumed => {
            let (run, reports) = queues.attach_resumed_run(run_id, &state.spec.name);
            (Some(run), Some(reports))
        }
        Some(queues) => {
            let (run, reports) = queues.attach_run(run_id, &state.spec.name);
            (Some(run), Some(reports))
        }
        None => (None, None),
    };
    let shell = ShellExecutor::new(
        report_tx,
        ShellConfig {
            kill_grace: config.kill_grace,
        },
    );
    let mut executors = Executors::new(shell, remote, timer_tx.clone(), resumed);
    let mut machine = RunMachine::new(state, config.parallelism);
    let mut inputs = vec![Pending::from(first)];
    let mut acks = Vec::new();
    let mut snapshot = Progress {
        total: machine.state().tasks.len(),
        ..Progress::default()
    };
    let mut controls_open = true;
    loop {
        let mut step = Step::default();
        for Pending { input, ack } in inputs.drain(..) {
            if let (Some(ack), Input::AttemptFinished { task, attempt, .. }) = (ack, &input) {
                match expects_end(machine.state(), *task, *attempt) {
                    Ok(()) => acks.push(ack),
                    Err(reason) => ack.refused(AckError::NotRecorded { reason }),
                }
            }
            machine.handle(input, clock.now(), &mut step);
        }
        let Step { events, actions } = step;
        if !events.is_empty() {
            snapshot.checkpoints += events.len() as u64;
            snapshot.commits += 1;
            let batch = events
                .into_iter()
                .map(|event| NewCheckpoint { run_id, event })
                .collect();
            if let Err(error) = store.append(epoch, batch).await {
                let message = error.to_string();
                for ack in acks.drain(..) {
                    ack.refused(AckError::CommitFailed {
                        message: message.clone(),
                    });
                }
                executors.stop(&format!("a commit of the run failed: {message}"));
                return Err(error.into());
            }
        }
        // The ends that workers wait on are durable now.
        for ack in acks.drain(..) {
            ack.committed();
        }
        snapshot.counts = machine.state().counts;
        snapshot.cancelling = matches!(machine.state().phase, RunPhase::Cancelling { .. });
        progress.send_replace(snapshot);
        for action in actions {
            perform(
                action,
                run_id,
                &base_dir,
                &config,
                &clock,
                &mut executors,
                &timer_tx,
            )
            .await;
        }
        executors.flush();
        if let RunPhase::Finished { end, reason, .. } = &machine.state().phase {
            return Ok(Finished {
                end: *end,
                reason: reason.clone(),
                state: machine.state().clone(),
            });
        }
        // Wait for at least one input, then take every other one that is ready too.
        tokio::select! {
            Some(report) = reports.recv() => inputs.push(report_input(report).into()),
            Some(report) = next_remote(&mut remote_reports) => inputs.push(remote_input(report)),
            Some(input) = timers.recv() => inputs.push(input.into()),
            control = controls.recv(), if controls_open => match control {
                Some(control) => control_input(control, &mut executors, &mut inputs),
                None => controls_open = false,
            },
        }
        while let Ok(report) = reports.try_recv() {
            inputs.push(report_input(report).into());
        }
        if let Some(remote_reports) = &mut remote_reports {
            while let Ok(report) = remote_reports.try_recv() {
                inputs.push(remote_input(report));
            }
        }
        while let Ok(input) = timers.try_recv() {
            inputs.push(input.into());
        }
        while let Ok(control) = controls.try_recv() {
            control_input(control, &mut executors, &mut inputs);
        }
    }
}

/// An input waiting to be handled, with the ack of the worker call that reported it.
struct Pending {
    input: Input,
    /// Fired after the commit that records the input's event (worker completions and
    /// failures wait on it).
    ack: Option<Ack>,
}

impl From<Input> for Pending {
    fn from(input: Input) -> Pending {
        Pending { input, ack: None }
    }
}

/// The next report of the run's worker attempts; never ready without a remote executor.
async fn next_remote(
    reports: &mut Option<mpsc::UnboundedReceiver<RemoteReport>>,
) -> Option<RemoteReport> {
    match reports {
        Some(reports) => reports.recv().await,
        None => std::future::pending().await,
    }
}

fn remote_input(report: RemoteReport) -> Pending {
    let RemoteReport {
        task,
        attempt,
        outcome,
        ack,
    } = report;
    Pending {
        input: Input::AttemptFinished {
            task,
            attempt,
            outcome,
        },
        ack,
    }
}

fn report_input(report: AttemptReport) -> Input {
    match report {
        AttemptReport::Spawned {
            task,
            attempt,
            pid,
            start_ticks,
        } => Input::AttemptSpawned {
            task,
            attempt,
            pid,
            start_ticks,
        },
        AttemptReport::Finished {
            task,
            attempt,
            outcome,
        } => Input::AttemptFinished {
            task,
            attempt,
            outcome,
        },
    }
}

fn control_input(control: Control, executors: &mut Executors, inputs: &mut Vec<Pending>) {
    match control {
        Control::Cancel { reason } => inputs.push(Input::Cancel { reason }.into()),
        Control::KillNow => executors.kill_shell_now(),
    }
}

async fn perform(
    action: Action,
    run_id: RunId,
    base_dir: &Path,
    config: &RunnerConfig,
    clock: &RunClock,
    executors: &mut Executors,
    timers: &mpsc::UnboundedSender<Input>,
) {
    match action {
        Action::KillLeftover {
            task,
            attempt,
            pid,
            start_ticks,
        } => {
            let killed = tokio::task::spawn_blocking(move || {
                crate::executor::process::kill_leftover_group(pid, start_ticks)
            })
            .await;
            match killed {
                Ok(Ok(0)) => {}
                Ok(Ok(count)) => tracing::warn!(
                    task,
                    attempt,
                    pid,
                    count,
                    "killed processes left over by the previous owner"
                ),
                Ok(Err(error)) => tracing::warn!(
                    task,
                    attempt,
                    pid,
                    %error,
                    "could not kill processes left over by the previous owner"
                ),
                Err(error) => tracing::warn!(%error, "leftover kill task failed"),
            }
        }
        Action::Dispatch(dispatch) => {
            tracing::debug!(task = %dispatch.task_id, attempt = dispatch.attempt, "dispatching attempt");
            executors.dispatch(run_id, base_dir, config, dispatch);
        }
        Action::Adopt(dispatch) => {
            tracing::info!(task = %dispatch.task_id, attempt = dispatch.attempt, "adopting worker attempt of the previous owner");
            executors.adopt(dispatch);
        }
        Action::ArmRetry { task, attempt, due } => {
            arm(
                timers,
                clock.instant_at(due),
                Input::RetryDue { task, attempt },
            );
        }
        Action::ArmDeadline { due } => arm(timers, clock.instant_at(due), Input::DeadlinePassed),
        Action::CancelAttempt { task, attempt } => executors.cancel(task, attempt),
    }
}

fn arm(timers: &mpsc::UnboundedSender<Input>, at: tokio::time::Instant, input: Input) {
    let timers = timers.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        // The run may have ended meanwhile; then nobody listens and that is fine.
        let _ = timers.send(input);
    });
}

/// The shell executor's request for a shell dispatch; `None` for a worker dispatch.
fn attempt_request(
    run_id: RunId,
    base_dir: &Path,
    config: &RunnerConfig,
    dispatch: Dispatch,
) -> Option<AttemptRequest> {
    let Dispatch {
        task,
        task_id,
        attempt,
        kind,
        timeout,
    } = dispatch;
    let DispatchKind::Shell {
        command,
        working_dir,
        env,
    } = kind
    else {
        return None;
    };
    let file = |kind| {
        config
            .state_dir
            .attempt_file(run_id, &task_id, attempt, kind)
    };
    Some(AttemptRequest {
        run_id,
        task,
        attempt,
        command,
        working_dir: match working_dir {
            Some(dir) => base_dir.join(dir),
            None => base_dir.to_path_buf(),
        },
        env,
        timeout,
        stdout_path: file(AttemptFile::Stdout),
        stderr_path: file(AttemptFile::Stderr),
        outputs_path: file(AttemptFile::Outputs),
        task_id,
    })
}
