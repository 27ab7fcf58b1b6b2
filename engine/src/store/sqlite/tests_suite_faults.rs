//! The shared suite must catch broken stores: each test here wraps a real store with one
//! deliberate fault and checks that the suite test for that behaviour fails.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;

use super::SqliteStore;
use crate::checkpoint::{Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunId};
use crate::store::suite;
use crate::store::{
    CheckpointStore, CreateOutcome, Owner, RunFilter, RunStatus, RunSummary, StoreError,
    StoredWorkflow,
};

/// One deliberate bug.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Appends ignore the caller's epoch (no fencing).
    IgnoreEpoch,
    /// `list_runs` returns the oldest run first.
    OldestFirst,
    /// `read_log` drops the last checkpoint of every page of two or more.
    ShortPages,
    /// `run_summary` always says the run is running.
    StatusNeverChanges,
    /// `latest_position` is one too high.
    LatestOffByOne,
    /// `append` splits a batch into two commits with a foreign checkpoint in between.
    SplitBatches,
    /// `read_log` leaves out the first checkpoint of pages of two or more: a reader sees a
    /// position before a lower one.
    SkipsAPosition,
    /// `list_runs` ignores `before`.
    IgnoresBefore,
    /// `create_run_once` forgets keys (creates a run every time).
    ForgetsKeys,
    /// `get_workflow` without a version returns the first version registered.
    FirstIsLatest,
}

struct Faulty {
    inner: SqliteStore,
    fault: Fault,
}

#[async_trait]
impl CheckpointStore for Faulty {
    fn location(&self) -> String {
        self.inner.location()
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
        mut batch: Vec<NewCheckpoint>,
    ) -> Result<LogPosition, StoreError> {
        match self.fault {
            Fault::IgnoreEpoch => self.inner.append(Epoch(1 << 40), batch).await,
            Fault::SplitBatches if batch.len() >= 2 => {
                let second = batch.split_off(batch.len() / 2);
                let run_id = second[0].run_id;
                self.inner.append(epoch, batch).await?;
                let intruder = suite::batch(run_id, &[suite::started(u32::MAX, 1)]);
                self.inner.append(epoch, intruder).await?;
                self.inner.append(epoch, second).await
            }
            _ => self.inner.append(epoch, batch).await,
        }
    }

    async fn read_run(&self, run_id: RunId) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.read_run(run_id).await
    }

    async fn read_log(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let mut page = self.inner.read_log(after, limit).await?;
        if self.fault == Fault::ShortPages && page.len() >= 2 {
            page.pop();
        }
        if self.fault == Fault::SkipsAPosition && page.len() >= 2 {
            page.remove(0);
        }
        Ok(page)
    }

    async fn latest_position(&self) -> Result<LogPosition, StoreError> {
        let latest = self.inner.latest_position().await?;
        Ok(latest + u64::from(self.fault == Fault::LatestOffByOne))
    }

    async fn run_summary(&self, run_id: RunId) -> Result<RunSummary, StoreError> {
        let mut summary = self.inner.run_summary(run_id).await?;
        if self.fault == Fault::StatusNeverChanges {
            summary.status = RunStatus::Running;
        }
        Ok(summary)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let mut filter = filter.clone();
        if self.fault == Fault::IgnoresBefore {
            filter.before = None;
        }
        let mut runs = self.inner.list_runs(&filter).await?;
        if self.fault == Fault::OldestFirst {
            runs.reverse();
        }
        Ok(runs)
    }

    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<bool, StoreError> {
        self.inner.put_workflow(workflow).await
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<StoredWorkflow, StoreError> {
        if self.fault == Fault::FirstIsLatest && version.is_none() {
            // The first registered: the oldest by registration time in these tests.
            let latest = self.inner.get_workflow(name, None).await?;
            let first = self.inner.get_workflow(name, Some("v1")).await;
            return Ok(first.unwrap_or(latest));
        }
        self.inner.get_workflow(name, version).await
    }

    async fn create_run_once(
        &self,
        idempotency_key: &str,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        if self.fault == Fault::ForgetsKeys {
            return self
                .inner
                .create_run(run_id, owner, created)
                .await
                .map(CreateOutcome::Created);
        }
        self.inner
            .create_run_once(idempotency_key, run_id, owner, created)
            .await
    }
}

/// Runs `test` on a fresh store with `fault` and returns whether it failed (panicked).
async fn fails_with<F>(fault: Fault, test: F) -> bool
where
    F: AsyncFnOnce(Arc<dyn CheckpointStore>),
{
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(&dir.path().join("tandem.db")).unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(Faulty { inner, fault });
    AssertUnwindSafe(test(store)).catch_unwind().await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_store_without_fencing() {
    assert!(
        fails_with(Fault::IgnoreEpoch, async |store| suite::test_fencing(
            &*store
        )
        .await)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_runs_listed_oldest_first() {
    assert!(
        fails_with(Fault::OldestFirst, async |store| {
            suite::test_list_runs_filters(&*store).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_short_log_pages() {
    assert!(
        fails_with(Fault::ShortPages, async |store| {
            suite::test_read_log_paging(&*store).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_status_that_never_changes() {
    assert!(
        fails_with(Fault::StatusNeverChanges, async |store| {
            suite::test_run_finished_updates_status(&*store).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_wrong_latest_position() {
    assert!(
        fails_with(Fault::LatestOffByOne, async |store| {
            suite::test_latest_position(&*store).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_batches_that_are_not_contiguous() {
    assert!(
        fails_with(Fault::SplitBatches, async |store| {
            let handles = [Arc::clone(&store), store];
            suite::test_concurrent_writers_and_readers(&handles).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_reader_seeing_a_position_before_a_lower_one() {
    assert!(
        fails_with(Fault::SkipsAPosition, async |store| {
            suite::test_positions_never_skip(&[store]).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_paging_that_ignores_before() {
    assert!(
        fails_with(Fault::IgnoresBefore, async |store| {
            suite::test_list_runs_pages(&*store).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_forgotten_idempotency_keys() {
    assert!(
        fails_with(Fault::ForgetsKeys, async |store| {
            suite::test_create_run_once(&*store).await
        })
        .await
    );
    assert!(
        fails_with(Fault::ForgetsKeys, async |store| {
            suite::test_concurrent_create_run_once(&[store]).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_wrong_latest_workflow() {
    assert!(
        fails_with(Fault::FirstIsLatest, async |store| {
            suite::test_workflows(&*store).await
        })
        .await
    );
}
