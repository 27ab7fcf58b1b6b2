//! The shared suite must catch broken stores: each test here wraps a real store with one
//! deliberate fault and checks that the suite test for that behaviour fails.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;

use super::SqliteStore;
use crate::checkpoint::{Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunId, UnixMillis};
use crate::store::suite::{self, StoreFactory};
use crate::store::{
    CheckpointStore, CreateOutcome, LeaderFence, Owner, RunFilter, RunStatus, RunSummary,
    StoreError, StoredWorkflow,
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
    /// Fenced handles are not fenced: writes carry no leader epoch.
    IgnoresLeaderFence,
    /// The leader fence is checked but never raised by writes or `raise_fence`.
    NeverRaisesTheFence,
    /// `create_scheduled_run` forgets ticks (creates a run every time).
    ForgetsTicks,
    /// `last_schedule_tick` is the tick created last, not the highest.
    LastCreatedTick,
    /// `list_workflows` lists every version, not the latest of each name.
    ListsEveryVersion,
}

struct Faulty {
    inner: SqliteStore,
    fault: Fault,
    /// The tick `create_scheduled_run` created last (for [`Fault::LastCreatedTick`]).
    last_created: std::sync::Mutex<Option<UnixMillis>>,
    /// The fence of a handle with [`Fault::NeverRaisesTheFence`], checked (not raised) by
    /// this wrapper around an unfenced store.
    fence: Option<LeaderFence>,
    /// The fenced handle that raises the fence for a handle with
    /// [`Fault::IgnoresLeaderFence`], whose writes go through the unfenced `inner`.
    raiser: Option<SqliteStore>,
}

impl Faulty {
    fn new(inner: SqliteStore, fault: Fault) -> Faulty {
        Faulty {
            inner,
            fault,
            last_created: std::sync::Mutex::new(None),
            fence: None,
            raiser: None,
        }
    }

    /// For [`Fault::NeverRaisesTheFence`]: refuses an epoch below the store's highest, but
    /// writes through the unfenced handle, so nothing is ever raised.
    async fn check_only(&self) -> Result<(), StoreError> {
        if let Some(fence) = &self.fence {
            let highest = self.inner.leader_epoch().await?;
            if fence.get() < highest {
                return Err(StoreError::Superseded {
                    epoch: fence.get(),
                    highest,
                    location: self.inner.location(),
                });
            }
        }
        Ok(())
    }
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
        self.check_only().await?;
        self.inner.create_run(run_id, owner, created).await
    }

    async fn claim_run(&self, run_id: RunId, owner: &Owner) -> Result<Epoch, StoreError> {
        self.check_only().await?;
        self.inner.claim_run(run_id, owner).await
    }

    async fn append(
        &self,
        epoch: Epoch,
        mut batch: Vec<NewCheckpoint>,
    ) -> Result<LogPosition, StoreError> {
        self.check_only().await?;
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
        self.check_only().await?;
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
        self.check_only().await?;
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

    async fn raise_fence(&self) -> Result<u64, StoreError> {
        if self.fault == Fault::NeverRaisesTheFence {
            self.check_only().await?;
            return Ok(self.fence.as_ref().map_or(0, LeaderFence::get));
        }
        match &self.raiser {
            Some(raiser) => raiser.raise_fence().await,
            None => self.inner.raise_fence().await,
        }
    }

    async fn leader_epoch(&self) -> Result<u64, StoreError> {
        self.inner.leader_epoch().await
    }

    async fn list_workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        let latest = self.inner.list_workflows().await?;
        if self.fault != Fault::ListsEveryVersion {
            return Ok(latest);
        }
        // Every version `v1`, `v2`, ... of each name, as the tests number them.
        let mut every = Vec::new();
        for workflow in latest {
            for number in 1.. {
                match self
                    .inner
                    .get_workflow(&workflow.name, Some(&format!("v{number}")))
                    .await
                {
                    Ok(version) => every.push(version),
                    Err(_) => break,
                }
            }
        }
        Ok(every)
    }

    async fn create_scheduled_run(
        &self,
        workflow: &str,
        tick: UnixMillis,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        self.check_only().await?;
        if self.fault == Fault::ForgetsTicks {
            return self
                .inner
                .create_run(run_id, owner, created)
                .await
                .map(CreateOutcome::Created);
        }
        let outcome = self
            .inner
            .create_scheduled_run(workflow, tick, run_id, owner, created)
            .await?;
        if matches!(outcome, CreateOutcome::Created(_)) {
            *self
                .last_created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tick);
        }
        Ok(outcome)
    }

    async fn last_schedule_tick(&self, workflow: &str) -> Result<Option<UnixMillis>, StoreError> {
        let highest = self.inner.last_schedule_tick(workflow).await?;
        if self.fault == Fault::LastCreatedTick {
            let last = *self
                .last_created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            return Ok(last.or(highest));
        }
        Ok(highest)
    }
}

/// Makes faulty stores with one fault, one file each.
struct FaultyFactory {
    dir: tempfile::TempDir,
    fault: Fault,
}

impl FaultyFactory {
    fn new(fault: Fault) -> FaultyFactory {
        FaultyFactory {
            dir: tempfile::tempdir().unwrap(),
            fault,
        }
    }
}

#[async_trait]
impl StoreFactory for FaultyFactory {
    async fn empty_store(&self) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        let path = self.dir.path().join("tandem.db");
        let inner = SqliteStore::open(&path)?;
        Ok(Arc::new(Faulty::new(inner, self.fault)))
    }

    async fn another_handle(
        &self,
        store: &dyn CheckpointStore,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        let inner = SqliteStore::open(std::path::Path::new(&store.location()))?;
        Ok(Arc::new(Faulty::new(inner, self.fault)))
    }

    async fn fenced_handle(
        &self,
        store: &dyn CheckpointStore,
        fence: LeaderFence,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        let unfenced = SqliteStore::open(std::path::Path::new(&store.location()))?;
        let faulty = match self.fault {
            Fault::IgnoresLeaderFence => Faulty {
                raiser: Some(unfenced.fenced(fence)),
                ..Faulty::new(unfenced, self.fault)
            },
            Fault::NeverRaisesTheFence => Faulty {
                fence: Some(fence),
                ..Faulty::new(unfenced, self.fault)
            },
            _ => Faulty::new(unfenced.fenced(fence), self.fault),
        };
        Ok(Arc::new(faulty))
    }
}

/// Runs `test` on the leaders of a fresh store with `fault` and returns whether it failed.
async fn leaders_fail_with<F>(fault: Fault, test: F) -> bool
where
    F: AsyncFnOnce(suite::Leaders),
{
    let factory = FaultyFactory::new(fault);
    let leaders = suite::leaders(&factory).await;
    AssertUnwindSafe(test(leaders))
        .catch_unwind()
        .await
        .is_err()
}

/// Runs `test` on a fresh store with `fault` and returns whether it failed (panicked).
async fn fails_with<F>(fault: Fault, test: F) -> bool
where
    F: AsyncFnOnce(Arc<dyn CheckpointStore>),
{
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(&dir.path().join("tandem.db")).unwrap();
    let store: Arc<dyn CheckpointStore> = Arc::new(Faulty::new(inner, fault));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_store_without_leader_fencing() {
    assert!(
        leaders_fail_with(Fault::IgnoresLeaderFence, async |leaders| {
            suite::test_leader_fence_refuses_every_write(&leaders).await
        })
        .await
    );
    assert!(
        leaders_fail_with(Fault::IgnoresLeaderFence, async |leaders| {
            suite::test_leader_fence_across_handles(&leaders).await
        })
        .await
    );
    assert!(
        leaders_fail_with(Fault::IgnoresLeaderFence, async |leaders| {
            suite::test_leader_change_under_concurrent_writes(&leaders).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_leader_fence_that_is_never_raised() {
    assert!(
        leaders_fail_with(Fault::NeverRaisesTheFence, async |leaders| {
            suite::test_leader_fence_is_monotonic(&leaders).await
        })
        .await
    );
    assert!(
        leaders_fail_with(Fault::NeverRaisesTheFence, async |leaders| {
            suite::test_leader_fence_refuses_every_write(&leaders).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_forgotten_schedule_ticks() {
    assert!(
        fails_with(Fault::ForgetsTicks, async |store| {
            suite::test_scheduled_runs(&*store).await
        })
        .await
    );
    assert!(
        fails_with(Fault::ForgetsTicks, async |store| {
            suite::test_concurrent_scheduled_runs(&[store]).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_last_tick_that_is_not_the_highest() {
    assert!(
        fails_with(Fault::LastCreatedTick, async |store| {
            suite::test_scheduled_runs(&*store).await
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_workflows_listed_with_every_version() {
    assert!(
        fails_with(Fault::ListsEveryVersion, async |store| {
            suite::test_list_workflows(&*store).await
        })
        .await
    );
}
