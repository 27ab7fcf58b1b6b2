//! [`SyncGate`]: the store a region's leader writes through when the region takes part in
//! disaster recovery. It forwards every call to the region's store; after a write that put
//! checkpoints in the log it publishes the new latest position (which wakes the replication
//! streams at once), and in sync mode it returns only once a standby acknowledged that
//! position, or the sync timeout passed (then the region degrades to async, see
//! [`super::progress`]).
//!
//! Since the scheduler dispatches attempts and answers clients and workers only after its
//! write returned (write-ahead), waiting here is what makes a sync region acknowledge
//! nothing that the standby does not hold.
//!
//! Gated writes: `append`, `create_run`, and `create_run_once` / `create_scheduled_run` when
//! they created a run. Registrations (`put_workflow`), claims and fence raises put no
//! checkpoint in the log and are forwarded as they are. The position of a creation is not
//! returned by the store, so the gate reads the latest position after it (at least the
//! creation's own, so waiting for it is never too short).

use std::sync::Arc;

use async_trait::async_trait;

use super::config::{ReplicationConfig, ReplicationMode};
use super::progress::ReplicationProgress;
use crate::checkpoint::{Epoch, Event, LogPosition, NewCheckpoint, RunId, UnixMillis};
use crate::store::{
    CheckpointStore, CreateOutcome, Owner, RunFilter, RunSummary, StoreError, StoredWorkflow,
};

/// The decorator (see the module docs).
pub struct SyncGate {
    inner: Arc<dyn CheckpointStore>,
    progress: Arc<ReplicationProgress>,
    config: ReplicationConfig,
}

impl SyncGate {
    /// Gates writes to `inner` with `config`, publishing into `progress`.
    pub fn new(
        inner: Arc<dyn CheckpointStore>,
        progress: Arc<ReplicationProgress>,
        config: ReplicationConfig,
    ) -> SyncGate {
        SyncGate {
            inner,
            progress,
            config,
        }
    }

    /// After a write that committed up to `position`.
    async fn committed(&self, position: LogPosition) {
        self.progress.publish_latest(position);
        if self.config.mode == ReplicationMode::Sync {
            self.progress
                .wait_for_standby(position, self.config.sync_timeout)
                .await;
        }
    }

    /// After a creation: its position is at most the latest one now. A failed read of it is
    /// logged and skips the wait (the creation itself is durable; in sync mode the next
    /// write of the run waits for the standby anyway).
    async fn created(&self) {
        match self.inner.latest_position().await {
            Ok(position) => self.committed(position).await,
            Err(error) => {
                tracing::warn!(%error, "cannot read the latest log position after creating a run; the standby's acknowledgement is not awaited for it");
            }
        }
    }

    /// After a creation that may have found its run already created (`create_run_once`,
    /// `create_scheduled_run`): waits as [`SyncGate::created`] only when it created one, then
    /// passes the outcome (or the store's error) on unchanged.
    async fn created_if_new(
        &self,
        outcome: Result<CreateOutcome, StoreError>,
    ) -> Result<CreateOutcome, StoreError> {
        let outcome = outcome?;
        if matches!(outcome, CreateOutcome::Created(_)) {
            self.created().await;
        }
        Ok(outcome)
    }
}

#[async_trait]
impl CheckpointStore for SyncGate {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn create_run(
        &self,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<Epoch, StoreError> {
        let epoch = self.inner.create_run(run_id, owner, created).await?;
        self.created().await;
        Ok(epoch)
    }

    async fn claim_run(&self, run_id: RunId, owner: &Owner) -> Result<Epoch, StoreError> {
        self.inner.claim_run(run_id, owner).await
    }

    async fn append(
        &self,
        epoch: Epoch,
        batch: Vec<NewCheckpoint>,
    ) -> Result<LogPosition, StoreError> {
        let written = !batch.is_empty();
        let position = self.inner.append(epoch, batch).await?;
        if written {
            self.committed(position).await;
        }
        Ok(position)
    }

    async fn read_run(
        &self,
        run_id: RunId,
    ) -> Result<Vec<crate::checkpoint::Checkpoint>, StoreError> {
        self.inner.read_run(run_id).await
    }

    async fn read_log(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<crate::checkpoint::Checkpoint>, StoreError> {
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
        let outcome = self
            .inner
            .create_run_once(idempotency_key, run_id, owner, created)
            .await;
        self.created_if_new(outcome).await
    }

    async fn raise_fence(&self) -> Result<u64, StoreError> {
        self.inner.raise_fence().await
    }

    async fn leader_epoch(&self) -> Result<u64, StoreError> {
        self.inner.leader_epoch().await
    }

    async fn list_workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        self.inner.list_workflows().await
    }

    async fn create_scheduled_run(
        &self,
        workflow: &str,
        tick: UnixMillis,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        let outcome = self
            .inner
            .create_scheduled_run(workflow, tick, run_id, owner, created)
            .await;
        self.created_if_new(outcome).await
    }

    async fn last_schedule_tick(&self, workflow: &str) -> Result<Option<UnixMillis>, StoreError> {
        self.inner.last_schedule_tick(workflow).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::checkpoint::now_millis;
    use crate::runner::current_owner;
    use crate::store::sqlite::SqliteStore;

    fn created() -> Event {
        Event::RunCreated {
            workflow: "w".into(),
            version: "v".into(),
            source_path: "/w.yaml".into(),
            source: "name: w".into(),
            params: BTreeMap::new(),
            at: now_millis(),
        }
    }

    fn gate(dir: &std::path::Path, mode: ReplicationMode) -> (SyncGate, Arc<ReplicationProgress>) {
        let store = SqliteStore::open(&dir.join("tandem.db")).unwrap();
        let progress = Arc::new(ReplicationProgress::default());
        let gate = SyncGate::new(
            Arc::new(store),
            progress.clone(),
            ReplicationConfig {
                mode,
                sync_timeout: Duration::from_secs(30),
            },
        );
        (gate, progress)
    }

    #[tokio::test]
    async fn async_mode_publishes_positions_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (gate, progress) = gate(dir.path(), ReplicationMode::Async);
        let mut latest = progress.subscribe_latest();
        let run_id = RunId::new();
        let epoch = tokio::time::timeout(
            Duration::from_secs(5),
            gate.create_run(run_id, &current_owner(), created()),
        )
        .await
        .expect("async mode does not wait")
        .unwrap();
        assert_eq!(*latest.borrow_and_update(), 1, "the creation's position");
        let position = gate
            .append(
                epoch,
                vec![NewCheckpoint {
                    run_id,
                    event: Event::RunResumed {
                        at: now_millis(),
                        owner: "me".into(),
                    },
                }],
            )
            .await
            .unwrap();
        assert_eq!(position, 2);
        assert!(latest.has_changed().unwrap());
        assert_eq!(*latest.borrow(), 2);
        assert_eq!(gate.append(epoch, Vec::new()).await.unwrap(), 2);
        assert_eq!(progress.sync_state().acked, 0);
    }

    #[tokio::test]
    async fn sync_mode_returns_a_write_only_after_its_ack() {
        let dir = tempfile::tempdir().unwrap();
        let (gate, progress) = gate(dir.path(), ReplicationMode::Sync);
        let gate = Arc::new(gate);
        let run_id = RunId::new();
        let creating = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.create_run(run_id, &current_owner(), created()).await })
        };
        let mut latest = progress.subscribe_latest();
        latest.wait_for(|latest| *latest == 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !creating.is_finished(),
            "no standby acknowledged position 1"
        );
        progress.record_ack(1, true);
        tokio::time::timeout(Duration::from_secs(5), creating)
            .await
            .expect("the ack releases the write")
            .unwrap()
            .unwrap();
    }
}
