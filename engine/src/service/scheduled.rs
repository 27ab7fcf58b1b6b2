//! The runs of cron schedules: the leader's ticker ([`crate::schedule`]) fires each tick of a
//! registered workflow's `schedule:` through [`ScheduledStarts`], which creates the tick's run
//! at most once ([`crate::store::CheckpointStore::create_scheduled_run`]) and drives it.
//!
//! The ticker belongs to one leading term: it starts after the takeover has resumed the
//! region's runs and stops with the term, so two replicas never both fire (and if a stale one
//! tried, the store's fence and the (workflow, tick) key would both refuse it).

use std::sync::Arc;

use async_trait::async_trait;
use tandem_dsl::WorkflowSpec;

use super::region::Region;
use crate::checkpoint::{RunId, UnixMillis};
use crate::schedule::{self, ScheduleError, ScheduleTarget};
use crate::store::{CreateOutcome, StoredWorkflow};

/// Starts the runs of schedule ticks for one leading term of a [`Region`].
pub(super) struct ScheduledStarts {
    region: Region,
    term: u64,
}

#[async_trait]
impl ScheduleTarget for ScheduledStarts {
    async fn fire(
        &self,
        workflow: &StoredWorkflow,
        spec: Arc<WorkflowSpec>,
        tick: UnixMillis,
    ) -> Result<CreateOutcome, ScheduleError> {
        let region = &self.region;
        if !region.term_leads(self.term) {
            return Err(ScheduleError::Unavailable(format!(
                "replica {} does not lead region {} any more",
                region.member_id(),
                region.name()
            )));
        }
        let params = spec
            .resolve_params(&[])
            .map_err(|error| ScheduleError::Invalid(error.to_string()))?;
        let run_id = RunId::new();
        let (created, start) = region.run_created(run_id, workflow.clone(), spec, params);
        let outcome = region
            .inner
            .store
            .create_scheduled_run(&workflow.name, tick, run_id, &region.inner.owner, created)
            .await;
        match outcome {
            Ok(CreateOutcome::Created(epoch)) => {
                region.drive_created(start, epoch, self.term);
                Ok(CreateOutcome::Created(epoch))
            }
            Ok(existing) => Ok(existing),
            Err(error) if error.ends_leadership() => {
                region.superseded(self.term, &error);
                Err(ScheduleError::Store(error))
            }
            Err(error) => Err(ScheduleError::Store(error)),
        }
    }
}

impl Region {
    /// Starts the cron ticker of leading term `term` (replacing any earlier one).
    pub(super) fn start_ticker(&self, term: u64) {
        let target = Arc::new(ScheduledStarts {
            region: self.clone(),
            term,
        });
        let handle = schedule::spawn(
            Arc::clone(&self.inner.store),
            target,
            schedule::TickerConfig::default(),
        );
        *self.ticker() = Some(handle);
    }

    /// Stops the cron ticker, if one runs.
    pub(super) fn stop_ticker(&self) {
        self.ticker().take();
    }

    /// Tells the ticker that a workflow was registered (its schedule may have changed).
    pub(super) fn notify_ticker(&self) {
        if let Some(ticker) = self.ticker().as_ref() {
            ticker.notify_registered();
        }
    }

    fn ticker(&self) -> std::sync::MutexGuard<'_, Option<schedule::TickerHandle>> {
        self.inner
            .ticker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
