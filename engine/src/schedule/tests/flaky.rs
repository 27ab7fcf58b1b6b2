//! A store whose `list_workflows` fails its first calls (a database that is down), and that
//! passes everything else to a real store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;

use crate::checkpoint::{Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunId, UnixMillis};
use crate::store::{
    CheckpointStore, CreateOutcome, Owner, RunFilter, RunSummary, StoreError, StoredWorkflow,
};

/// Fails `list_workflows` `fail` times with [`StoreError::Backend`], then works.
pub(super) struct FlakyStore {
    inner: Arc<dyn CheckpointStore>,
    left: AtomicU32,
    failed: AtomicU32,
}

impl FlakyStore {
    pub(super) fn new(inner: Arc<dyn CheckpointStore>, fail: u32) -> FlakyStore {
        FlakyStore {
            inner,
            left: AtomicU32::new(fail),
            failed: AtomicU32::new(0),
        }
    }

    /// How many calls failed.
    pub(super) fn failures(&self) -> u32 {
        self.failed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl CheckpointStore for FlakyStore {
    fn location(&self) -> String {
        format!("flaky {}", self.inner.location())
    }

    async fn list_workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        let failing = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if failing {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Backend {
                location: self.location(),
                detail: "connection refused".into(),
            });
        }
        self.inner.list_workflows().await
    }

    async fn create_run(
        &self,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<Epoch, StoreError> {
        self.inner.create_run(run_id, owner, created).await
    }

    async fn claim_run(&self, run_id: RunId, owner: &Owner) -> Result<Epoch, StoreError> {
        self.inner.claim_run(run_id, owner).await
    }

    async fn append(
        &self,
        epoch: Epoch,
        batch: Vec<NewCheckpoint>,
    ) -> Result<LogPosition, StoreError> {
        self.inner.append(epoch, batch).await
    }

    async fn read_run(&self, run_id: RunId) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.read_run(run_id).await
    }

    async fn read_log(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.read_log(after, limit).await
    }

    async fn latest_position(&self) -> Result<LogPosition, StoreError> {
        self.inner.latest_position().await
    }

    async fn run_summary(&self, run_id: RunId) -> Result<RunSummary, StoreError> {
        self.inner.run_summary(run_id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        self.inner.list_runs(filter).await
    }

    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<bool, StoreError> {
        self.inner.put_workflow(workflow).await
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<StoredWorkflow, StoreError> {
        self.inner.get_workflow(name, version).await
    }

    async fn create_run_once(
        &self,
        idempotency_key: &str,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        self.inner
            .create_run_once(idempotency_key, run_id, owner, created)
            .await
    }

    async fn raise_fence(&self) -> Result<u64, StoreError> {
        self.inner.raise_fence().await
    }

    async fn leader_epoch(&self) -> Result<u64, StoreError> {
        self.inner.leader_epoch().await
    }

    async fn create_scheduled_run(
        &self,
        workflow: &str,
        tick: UnixMillis,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        self.inner
            .create_scheduled_run(workflow, tick, run_id, owner, created)
            .await
    }

    async fn last_schedule_tick(&self, workflow: &str) -> Result<Option<UnixMillis>, StoreError> {
        self.inner.last_schedule_tick(workflow).await
    }
}
