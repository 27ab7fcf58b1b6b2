//! Rebuilding a run's state from its checkpoints.

use std::sync::Arc;

use tandem_dsl::Diagnostics;

use super::state::RunState;
use crate::checkpoint::{Checkpoint, Event, LogPosition, RunId};

/// Why a run's checkpoints cannot be turned back into its state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The run has no checkpoint, or its first is not `run_created`.
    #[error("run {run_id}: expected its first checkpoint to be `run_created`, found {found}")]
    NotCreated {
        /// The run.
        run_id: RunId,
        /// What was found instead.
        found: String,
    },
    /// The workflow text recorded at creation no longer compiles (a Tandem upgrade changed the
    /// format): the run cannot be resumed by this build.
    #[error(
        "run {run_id}: its recorded workflow no longer compiles with this build of Tandem:\n{diagnostics}"
    )]
    Compile {
        /// The run.
        run_id: RunId,
        /// The errors.
        diagnostics: Diagnostics,
    },
    /// The recorded workflow text does not hash to the recorded version.
    #[error(
        "run {run_id}: recorded workflow text hashes to version {found}, but the run records version {expected}"
    )]
    VersionMismatch {
        /// The run.
        run_id: RunId,
        /// The recorded version.
        expected: String,
        /// The hash of the recorded text.
        found: String,
    },
    /// A checkpoint names a task instance the workflow does not have.
    #[error(
        "run {run_id}: checkpoint at log position {position} names task index {task}, but the workflow has {count} task instances"
    )]
    UnknownTask {
        /// The run.
        run_id: RunId,
        /// Log position of the checkpoint.
        position: LogPosition,
        /// The task index it names.
        task: u32,
        /// Number of task instances in the workflow.
        count: usize,
    },
}

/// Rebuilds the state of run `run_id` from its checkpoints (in log order): compiles the
/// workflow text recorded in its `run_created` checkpoint and applies every later event.
pub fn rebuild(run_id: RunId, checkpoints: &[Checkpoint]) -> Result<RunState, ReplayError> {
    let Some(Checkpoint {
        event:
            Event::RunCreated {
                version,
                source_path,
                source,
                params,
                at,
                ..
            },
        ..
    }) = checkpoints.first()
    else {
        return Err(ReplayError::NotCreated {
            run_id,
            found: checkpoints
                .first()
                .map(|checkpoint| format!("`{}`", checkpoint.event.kind()))
                .unwrap_or_else(|| "no checkpoint".to_string()),
        });
    };
    let spec =
        tandem_dsl::compile(source_path, source).map_err(|diagnostics| ReplayError::Compile {
            run_id,
            diagnostics,
        })?;
    if &spec.version != version {
        return Err(ReplayError::VersionMismatch {
            run_id,
            expected: version.clone(),
            found: spec.version.clone(),
        });
    }
    let count = spec.tasks.len();
    let mut state = RunState::new(
        run_id,
        Arc::new(spec),
        source_path.clone(),
        params.clone(),
        *at,
    );
    for checkpoint in &checkpoints[1..] {
        if let Some(task) = task_of(&checkpoint.event)
            && task as usize >= count
        {
            return Err(ReplayError::UnknownTask {
                run_id,
                position: checkpoint.position,
                task,
                count,
            });
        }
        state.apply(&checkpoint.event);
    }
    Ok(state)
}

fn task_of(event: &Event) -> Option<u32> {
    match event {
        Event::AttemptStarted { task, .. }
        | Event::AttemptSpawned { task, .. }
        | Event::AttemptFinished { task, .. }
        | Event::RetryScheduled { task, .. }
        | Event::TaskFinished { task, .. } => Some(*task),
        Event::RunCreated { .. }
        | Event::RunResumed { .. }
        | Event::CancelRequested { .. }
        | Event::RunFinished { .. } => None,
    }
}
