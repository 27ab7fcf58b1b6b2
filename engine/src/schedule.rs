//! Cron schedules: the leader starts a run of every scheduled workflow at each tick of its
//! `schedule:`, once per tick, across leader changes.
//!
//! - [`due_ticks`] / [`due_ticks_watched`]: which ticks to fire now, given the workflow's
//!   cursor (the last tick that got a run), the catch-up policy and window. Pure.
//! - [`spawn`]: the ticker task. It lists the registered workflows, computes their due ticks
//!   from the store's cursor, fires them oldest first through a [`ScheduleTarget`], and sleeps
//!   until the next tick or until told that a workflow was registered.
//!
//! Exactly once per tick comes from the store: [`CheckpointStore::create_scheduled_run`]
//! creates at most one run per (workflow, tick), so two leaders that overlap (or a ticker that
//! retries after an error whose write did land) cannot start a tick twice. The ticker never
//! skips a tick because of its own timing: what is due is computed from the store's cursor and
//! the current time, not from when it last woke up, and every tick that fell due while it ran
//! is fired, late or not, unless it is older than the catch-up window.
//!
//! [`CheckpointStore::create_scheduled_run`]: crate::store::CheckpointStore::create_scheduled_run

mod due;
mod ticker;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use tandem_dsl::WorkflowSpec;

use crate::checkpoint::{UnixMillis, now_millis};
use crate::runner::clock::RunClock;
use crate::store::{CreateOutcome, StoreError, StoredWorkflow};

pub use due::{DueTicks, SKIPPED_COUNT_LIMIT, due_ticks, due_ticks_watched};
pub use ticker::{TickerConfig, TickerHandle, TickerStatus, spawn};

/// Where the ticker sends due ticks: something that starts the run of a workflow for a tick.
///
/// The region's implementation resolves the params (a scheduled workflow has a default for
/// every one), builds the run's `RunCreated` checkpoint and calls
/// [`crate::store::CheckpointStore::create_scheduled_run`], then drives the run if it was
/// created.
#[async_trait]
pub trait ScheduleTarget: Send + Sync {
    /// Starts the run of `workflow` (the latest registered version, compiled as `spec`, whose
    /// `schedule` is set) for `tick` (ms since the Unix epoch) at most once.
    ///
    /// Returns [`CreateOutcome::Created`] when this call created the run,
    /// [`CreateOutcome::Existing`] when the tick had its run already. On an error the tick
    /// is not counted as fired: the ticker tries it again later (see [`ScheduleError`]).
    async fn fire(
        &self,
        workflow: &StoredWorkflow,
        spec: Arc<WorkflowSpec>,
        tick: UnixMillis,
    ) -> Result<CreateOutcome, ScheduleError>;
}

/// Why a [`ScheduleTarget`] did not start a tick's run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The store failed or refused the write (for [`StoreError::Superseded`]: another
    /// replica leads now). The ticker retries the tick after a backoff.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This replica cannot start runs now (not leading, shutting down, ...). The ticker
    /// retries the tick after a backoff.
    #[error("cannot start scheduled runs now: {0}")]
    Unavailable(String),
    /// The workflow version cannot make a run (e.g. its params cannot be resolved). The
    /// ticker logs it once and leaves that version's schedule alone until another version
    /// of the workflow is registered.
    #[error("cannot start a run of this workflow version: {0}")]
    Invalid(String),
}

/// The ticker's source of the current time, ms since the Unix epoch (wall clock, UTC).
/// Injectable so that tests can run a schedule without waiting for real minutes.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixMillis;
}

/// The system's wall clock ([`now_millis`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        now_millis()
    }
}

/// A runner clock (the wall clock at its start plus tokio's elapsed time) as the ticker's
/// clock, so that a service's runs and schedules read one time.
impl Clock for RunClock {
    fn now(&self) -> UnixMillis {
        RunClock::now(self)
    }
}
