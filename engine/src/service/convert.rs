//! Conversions between the engine's types and the `tandem.v1` messages.

use tandem_api::proto;

use super::error::ServiceError;
use super::limits::invalid;
use crate::checkpoint::{Epoch, TaskEnd};
use crate::runner::Progress;
use crate::scheduler::{RunPhase, RunState, TaskCounts, TaskStatus};
use crate::store::{RunStatus, RunSummary};

/// The API's run state of a store run status.
pub fn run_state(status: RunStatus) -> proto::RunState {
    match status {
        RunStatus::Running => proto::RunState::Running,
        RunStatus::Succeeded => proto::RunState::Succeeded,
        RunStatus::Failed => proto::RunState::Failed,
        RunStatus::Cancelled => proto::RunState::Cancelled,
        RunStatus::TimedOut => proto::RunState::TimedOut,
    }
}

/// The store status filter of a `ListRuns.state` value (`None` = every state).
///
/// Errors: `INVALID_ARGUMENT` on `state` for a number that is no `RunState`.
pub fn status_filter(state: i32) -> Result<Option<RunStatus>, ServiceError> {
    match proto::RunState::try_from(state) {
        Ok(proto::RunState::Unspecified) => Ok(None),
        Ok(proto::RunState::Running) => Ok(Some(RunStatus::Running)),
        Ok(proto::RunState::Succeeded) => Ok(Some(RunStatus::Succeeded)),
        Ok(proto::RunState::Failed) => Ok(Some(RunStatus::Failed)),
        Ok(proto::RunState::Cancelled) => Ok(Some(RunStatus::Cancelled)),
        Ok(proto::RunState::TimedOut) => Ok(Some(RunStatus::TimedOut)),
        Err(_) => Err(invalid(
            "state",
            format!("expected a RunState (0..=5), found {state}"),
        )),
    }
}

/// The API's task state of a scheduler task status.
pub fn task_state(status: TaskStatus) -> proto::TaskState {
    match status {
        TaskStatus::Pending => proto::TaskState::Pending,
        TaskStatus::Running { .. } | TaskStatus::AttemptFailed { .. } => proto::TaskState::Running,
        TaskStatus::WaitingRetry { .. } => proto::TaskState::WaitingRetry,
        TaskStatus::Succeeded => proto::TaskState::Succeeded,
        TaskStatus::Ended(TaskEnd::Failed) => proto::TaskState::Failed,
        TaskStatus::Ended(TaskEnd::Skipped) => proto::TaskState::Skipped,
        TaskStatus::Ended(TaskEnd::UpstreamFailed) => proto::TaskState::UpstreamFailed,
        TaskStatus::Ended(TaskEnd::Cancelled) => proto::TaskState::Cancelled,
    }
}

/// Task counts as the API shows them; `total` is the number of task instances.
pub fn counts(total: usize, counts: &TaskCounts) -> proto::TaskCounts {
    let n = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
    proto::TaskCounts {
        total: n(total),
        pending: n(counts.pending),
        running: n(counts.running),
        waiting_retry: n(counts.waiting_retry),
        succeeded: n(counts.succeeded),
        failed: n(counts.failed),
        skipped: n(counts.skipped),
        upstream_failed: n(counts.upstream_failed),
        cancelled: n(counts.cancelled),
    }
}

/// A run as `ListRuns` shows it: the run table's row, without counts or tasks.
pub fn run_summary(summary: &RunSummary) -> proto::Run {
    proto::Run {
        run_id: summary.run_id.to_string(),
        workflow: summary.workflow.clone(),
        version: summary.version.clone(),
        state: run_state(summary.status) as i32,
        created_at_unix_ms: summary.created_at,
        finished_at_unix_ms: summary.finished_at.unwrap_or(0),
        epoch: summary.owner_epoch.0,
        ..proto::Run::default()
    }
}

/// A run as its state says (the state a driver holds, or one rebuilt from checkpoints), written
/// by owner epoch `epoch`, with its tasks when `with_tasks`.
pub fn run_from_state(state: &RunState, epoch: Epoch, with_tasks: bool) -> proto::Run {
    let status = match &state.phase {
        RunPhase::Finished { end, .. } => RunStatus::from(*end),
        RunPhase::Running | RunPhase::Cancelling { .. } => RunStatus::Running,
    };
    let mut run = proto::Run {
        run_id: state.run_id_text.clone(),
        workflow: state.spec.name.clone(),
        version: state.spec.version.clone(),
        state: run_state(status) as i32,
        created_at_unix_ms: state.created_at,
        epoch: epoch.0,
        params: state
            .params
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        counts: Some(counts(state.tasks.len(), &state.counts)),
        ..proto::Run::default()
    };
    match &state.phase {
        RunPhase::Running => {}
        RunPhase::Cancelling { .. } => run.cancelling = true,
        RunPhase::Finished { reason, at, .. } => {
            run.reason = reason.clone();
            run.finished_at_unix_ms = *at;
        }
    }
    if with_tasks {
        run.tasks = state
            .tasks
            .iter()
            .zip(&state.spec.tasks)
            .map(|(runtime, spec)| proto::Task {
                task_id: spec.id.clone(),
                state: task_state(runtime.status) as i32,
                attempts: u32::try_from(runtime.attempts.len()).unwrap_or(u32::MAX),
                reason: runtime.reason.clone().unwrap_or_default(),
                outputs: runtime
                    .outputs
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
                finished_at_unix_ms: runtime.finished_at.unwrap_or(0),
            })
            .collect();
    }
    run
}

/// `base` (a detailed run) updated with a driver's progress snapshot.
pub fn with_progress(base: &proto::Run, progress: &Progress) -> proto::Run {
    let mut run = base.clone();
    run.counts = Some(counts(progress.total, &progress.counts));
    run.cancelling = progress.cancelling;
    run.tasks.clear();
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_filter_round_trips_and_unknown_numbers_are_refused() {
        for status in [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::TimedOut,
        ] {
            assert_eq!(
                status_filter(run_state(status) as i32).unwrap(),
                Some(status)
            );
        }
        assert_eq!(status_filter(0).unwrap(), None);
        let error = status_filter(42).unwrap_err();
        assert!(error.to_string().contains("found 42"), "{error}");
    }
}
