//! The run drivers of a leading replica: one task per run it drives, restarted from the
//! checkpoints with backoff after a store error, all stopped at once when the replica stops
//! leading.
//!
//! Every driver belongs to a *term*: a number that grows each time the replica starts or stops
//! leading. A driver, a delayed resume or a scheduled start of an older term does nothing, so
//! nothing started under one leadership survives into the next.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tandem_api::proto;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::convert;
use super::region::Region;
use crate::checkpoint::RunId;
use crate::runner::{Control, Prepared, Progress, RunnerError, drive, resume_run};
use crate::store::{RunFilter, RunStatus, StoreError};

/// A run driven by this process.
pub(super) struct ActiveRun {
    pub(super) controls: mpsc::UnboundedSender<Control>,
    pub(super) progress: watch::Receiver<Progress>,
    pub(super) outcome: watch::Receiver<Option<Arc<proto::Run>>>,
    pub(super) base: Arc<proto::Run>,
    abort: AbortHandle,
}

/// The drivers of the current term.
#[derive(Default)]
pub(super) struct Drivers {
    /// The current term.
    pub(super) term: u64,
    /// Whether this term leads (drivers may be started).
    pub(super) leading: bool,
    /// The runs driven now.
    pub(super) active: HashMap<RunId, ActiveRun>,
}

/// Longest pause between two tries to resume a run whose driver stopped on a store error.
const MAX_RESUME_DELAY: Duration = Duration::from_secs(10);

impl Region {
    pub(super) fn drivers(&self) -> MutexGuard<'_, Drivers> {
        // A panic while holding this lock would be a bug elsewhere; the map stays usable.
        self.inner
            .drivers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a new leading term and returns it: drivers may be started in it.
    pub(super) fn begin_term(&self) -> u64 {
        let mut drivers = self.drivers();
        drivers.term += 1;
        drivers.leading = true;
        drivers.term
    }

    /// Whether `term` is the current term and leads.
    pub(super) fn term_leads(&self, term: u64) -> bool {
        let drivers = self.drivers();
        drivers.leading && drivers.term == term
    }

    /// Ends the current term: stops every driver at once (their shell attempts are killed
    /// and their worker attempts leave the task queues; the runs stay in the store for the
    /// next leader) and refuses new ones. Returns how many runs were driven.
    pub(super) fn stop_all(&self) -> usize {
        let stopped: Vec<ActiveRun> = {
            let mut drivers = self.drivers();
            drivers.term += 1;
            drivers.leading = false;
            drivers.active.drain().map(|(_, run)| run).collect()
        };
        for run in &stopped {
            run.abort.abort();
        }
        stopped.len()
    }

    /// Takes over every non-terminal run in the store and drives it in `term` from its
    /// checkpoints: attempts that were in flight on another replica are handled by the
    /// scheduler's recovery (shell attempts count as failed attempts and follow their retry
    /// policy; worker attempts wait for their worker). A run that cannot be rebuilt is logged
    /// and left as it is. Returns how many runs were resumed.
    ///
    /// Errors: the store's, when it cannot be read or refuses this replica's epoch.
    pub(super) async fn resume_all_in(&self, term: u64) -> Result<usize, StoreError> {
        let filter = RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        };
        let runs = self.inner.store.list_runs(&filter).await?;
        let mut resumed = 0;
        for summary in runs {
            if !self.term_leads(term) {
                break;
            }
            if self.drivers().active.contains_key(&summary.run_id) {
                continue;
            }
            match resume_run(
                self.inner.store.as_ref(),
                &self.inner.owner,
                summary.run_id,
                true,
            )
            .await
            {
                Ok(prepared) => {
                    if self.spawn(prepared, term) {
                        resumed += 1;
                    }
                }
                Err(RunnerError::AlreadyFinished { .. }) => {}
                Err(RunnerError::Store(error)) => return Err(error),
                Err(error) => {
                    tracing::error!(run_id = %summary.run_id, %error, "cannot resume run; it stays as it is in the store");
                }
            }
        }
        Ok(resumed)
    }

    /// Waits until every run driven in `term` has committed its first checkpoint (a resumed
    /// run: its `RunResumed`, after which its worker attempts are adopted by the task queues)
    /// or stopped, at most `timeout`. A takeover answers worker calls only after this, so a
    /// worker of an adopted attempt is never told its lease is unknown.
    pub(super) async fn first_commits(&self, term: u64, timeout: Duration) {
        let progress: Vec<watch::Receiver<Progress>> = {
            let drivers = self.drivers();
            if drivers.term != term {
                return;
            }
            drivers
                .active
                .values()
                .map(|run| run.progress.clone())
                .collect()
        };
        let all = futures::future::join_all(progress.into_iter().map(|mut progress| async move {
            // An error means the driver stopped: nothing to wait for.
            let _ = progress.wait_for(|progress| progress.commits > 0).await;
        }));
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// Drives `prepared` in its own task until it finishes, if `term` is the current leading
    /// term (returns whether it does). On a store error (other than being fenced) the run is
    /// resumed from its checkpoints with backoff; when the store refuses this replica's leader
    /// epoch, the replica steps down.
    pub(super) fn spawn(&self, prepared: Prepared, term: u64) -> bool {
        let run_id = prepared.run_id;
        let epoch = prepared.epoch;
        let base = Arc::new(convert::run_from_state(&prepared.state, epoch, false));
        let (controls, controls_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let (outcome_tx, outcome) = watch::channel(None);
        let mut drivers = self.drivers();
        if !drivers.leading || drivers.term != term {
            tracing::debug!(%run_id, "not leading any more: the run is left to the next leader");
            return false;
        }
        let region = self.clone();
        let task = tokio::spawn(async move {
            let result = drive(
                region.inner.store.clone(),
                prepared,
                region.runner_config(),
                region.inner.clock,
                controls_rx,
                progress_tx,
            )
            .await;
            if let Ok(finished) = &result {
                let view = convert::run_from_state(&finished.state, epoch, true);
                outcome_tx.send_replace(Some(Arc::new(view)));
            }
            {
                let mut drivers = region.drivers();
                if drivers.term == term {
                    drivers.active.remove(&run_id);
                }
            }
            match result {
                Ok(finished) => {
                    tracing::info!(%run_id, end = %finished.end.as_str(), reason = %finished.reason, "run finished");
                }
                Err(RunnerError::Store(StoreError::Fenced { .. })) => {
                    tracing::warn!(%run_id, "run taken over by another owner; this process stops driving it");
                }
                Err(RunnerError::Store(error)) if error.ends_leadership() => {
                    region.superseded(term, &error);
                }
                Err(error) => {
                    tracing::error!(%run_id, %error, "run driver stopped; resuming it from its checkpoints");
                    region.resume_later(run_id, term);
                }
            }
        });
        drivers.active.insert(
            run_id,
            ActiveRun {
                controls,
                progress,
                outcome,
                base,
                abort: task.abort_handle(),
            },
        );
        true
    }

    fn resume_later(&self, run_id: RunId, term: u64) {
        let region = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                tokio::time::sleep(delay).await;
                if !region.term_leads(term) {
                    return;
                }
                match resume_run(
                    region.inner.store.as_ref(),
                    &region.inner.owner,
                    run_id,
                    true,
                )
                .await
                {
                    Ok(prepared) => {
                        region.spawn(prepared, term);
                        return;
                    }
                    Err(RunnerError::AlreadyFinished { .. }) => return,
                    Err(RunnerError::Store(StoreError::Backend { .. })) => {
                        delay = (delay * 2).min(MAX_RESUME_DELAY);
                    }
                    Err(RunnerError::Store(error)) if error.ends_leadership() => {
                        region.superseded(term, &error);
                        return;
                    }
                    Err(error) => {
                        tracing::error!(%run_id, %error, "cannot resume run; it stays as it is in the store");
                        return;
                    }
                }
            }
        });
    }
}
