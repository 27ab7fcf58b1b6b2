//! The shared test suite every [`CheckpointStore`] must pass (the pattern of GreptimeDB's
//! `test_kv_*(&impl KvBackend)`): one public async function per behaviour, backend-neutral,
//! panicking with a message that says what was expected and what was found.
//!
//! Each `test_*` function expects an *empty* store (no runs, no checkpoints) unless its
//! documentation says otherwise. [`run_all`] runs every one of them, each on a fresh store
//! made by a [`StoreFactory`]. Call it from a multi-threaded tokio runtime
//! (`#[tokio::test(flavor = "multi_thread")]`) so the concurrency tests really run in
//! parallel.

mod catalog;
mod concurrent;
mod events;
mod fencing;
mod fixtures;
mod leader;
mod leader_race;
mod log;
mod paging;
mod payloads;
mod positions;
mod runs;
mod schedules;

use std::sync::Arc;

use async_trait::async_trait;

use super::{CheckpointStore, LeaderFence, StoreError};

pub use catalog::{test_concurrent_create_run_once, test_create_run_once, test_workflows};
pub use concurrent::test_concurrent_writers_and_readers;
pub use fencing::{
    test_epochs_grow_across_runs, test_fencing, test_fencing_across_handles,
    test_invalid_appends_write_nothing,
};
pub use fixtures::{
    append_ok, batch, create, created_at, created_event, latest, new_run, owner, read_all, started,
};
pub use leader::{
    test_leader_fence_across_handles, test_leader_fence_is_monotonic,
    test_leader_fence_refuses_every_write, test_unfenced_handles_ignore_the_leader_fence,
};
pub use leader_race::test_leader_change_under_concurrent_writes;
pub use log::{
    test_latest_position, test_positions_contiguous_from_one, test_read_log_paging,
    test_round_trip_every_event,
};
pub use paging::test_list_runs_pages;
pub use payloads::test_payloads_keep_any_text;
pub use positions::test_positions_never_skip;
pub use runs::{
    test_list_runs_filters, test_run_exists_and_not_found, test_run_finished_updates_status,
    test_run_summary,
};
pub use schedules::{test_concurrent_scheduled_runs, test_list_workflows, test_scheduled_runs};

/// Makes the stores the suite runs on.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A new, empty store: no runs, no checkpoints.
    async fn empty_store(&self) -> Result<Arc<dyn CheckpointStore>, StoreError>;

    /// Another, independent handle to the same store as `store` (its own connections), as a
    /// second process would open it.
    async fn another_handle(
        &self,
        store: &dyn CheckpointStore,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError>;

    /// Another, independent handle to the same store as `store` whose writes carry `fence`
    /// (the backend's `fenced`), as another replica of the region would open it.
    async fn fenced_handle(
        &self,
        store: &dyn CheckpointStore,
        fence: LeaderFence,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError>;
}

/// Handles to one store for the leader fence tests: an unfenced one (`tandem run`, tools) and
/// the handles of two replicas, an old leader and a new one, each with its own fence (epoch
/// 0 until a test sets it).
pub struct Leaders {
    /// Unfenced.
    pub unfenced: Arc<dyn CheckpointStore>,
    /// The old leader's handle, carrying `old_fence`.
    pub old: Arc<dyn CheckpointStore>,
    /// The old leader's fence.
    pub old_fence: LeaderFence,
    /// The new leader's handle, carrying `new_fence`.
    pub new: Arc<dyn CheckpointStore>,
    /// The new leader's fence.
    pub new_fence: LeaderFence,
}

/// [`Leaders`] of one fresh store from `factory`.
pub async fn leaders(factory: &dyn StoreFactory) -> Leaders {
    let unfenced = fresh(factory).await;
    let old_fence = LeaderFence::default();
    let new_fence = LeaderFence::default();
    let fenced = async |fence: &LeaderFence| {
        factory
            .fenced_handle(&*unfenced, fence.clone())
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "expected a fenced handle to {}, found an error: {error}",
                    unfenced.location()
                )
            })
    };
    let old = fenced(&old_fence).await;
    let new = fenced(&new_fence).await;
    Leaders {
        unfenced,
        old,
        old_fence,
        new,
        new_fence,
    }
}

/// Runs every test of the suite, each on a fresh store from `factory`; the concurrency tests
/// get several handles (at least two of them independent) to one store.
pub async fn run_all(factory: &dyn StoreFactory) {
    test_round_trip_every_event(&*fresh(factory).await).await;
    test_positions_contiguous_from_one(&*fresh(factory).await).await;
    test_read_log_paging(&*fresh(factory).await).await;
    test_latest_position(&*fresh(factory).await).await;
    test_list_runs_filters(&*fresh(factory).await).await;
    test_run_summary(&*fresh(factory).await).await;
    test_run_finished_updates_status(&*fresh(factory).await).await;
    test_run_exists_and_not_found(&*fresh(factory).await).await;
    test_fencing(&*fresh(factory).await).await;
    test_epochs_grow_across_runs(&*fresh(factory).await).await;
    test_invalid_appends_write_nothing(&*fresh(factory).await).await;
    test_payloads_keep_any_text(&*fresh(factory).await).await;
    test_list_runs_pages(&*fresh(factory).await).await;
    test_workflows(&*fresh(factory).await).await;
    test_create_run_once(&*fresh(factory).await).await;
    test_scheduled_runs(&*fresh(factory).await).await;
    test_list_workflows(&*fresh(factory).await).await;
    test_leader_fence_refuses_every_write(&leaders(factory).await).await;
    test_leader_fence_is_monotonic(&leaders(factory).await).await;
    test_leader_fence_across_handles(&leaders(factory).await).await;
    test_unfenced_handles_ignore_the_leader_fence(&leaders(factory).await).await;
    test_leader_change_under_concurrent_writes(&leaders(factory).await).await;
    let (first, second) = two_handles(factory).await;
    test_fencing_across_handles(&*first, &*second).await;
    let (first, second) = two_handles(factory).await;
    let handles = [Arc::clone(&first), second, first];
    test_concurrent_writers_and_readers(&handles).await;
    let (first, second) = two_handles(factory).await;
    test_concurrent_create_run_once(&[first, second]).await;
    let (first, second) = two_handles(factory).await;
    test_positions_never_skip(&[first, second]).await;
    let (first, second) = two_handles(factory).await;
    test_concurrent_scheduled_runs(&[first, second]).await;
}

/// A fresh store from `factory`, or a panic saying why there is none.
pub async fn fresh(factory: &dyn StoreFactory) -> Arc<dyn CheckpointStore> {
    factory
        .empty_store()
        .await
        .unwrap_or_else(|error| panic!("expected a fresh empty store, found an error: {error}"))
}

/// Two independent handles to one fresh store from `factory`.
pub async fn two_handles(
    factory: &dyn StoreFactory,
) -> (Arc<dyn CheckpointStore>, Arc<dyn CheckpointStore>) {
    let first = fresh(factory).await;
    let second = factory
        .another_handle(&*first)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "expected a second handle to {}, found an error: {error}",
                first.location()
            )
        });
    (first, second)
}
