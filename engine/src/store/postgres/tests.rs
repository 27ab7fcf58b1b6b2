//! The shared suite against PostgreSQL (one private server per test binary, a fresh database
//! per case), plus what only this store has: migrations, the schema check, write ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{PostgresConfig, PostgresStore};
use crate::store::suite::{self, StoreFactory};
use crate::store::{CheckpointStore, LeaderFence, StoreError};
use crate::testing::TempPostgres;

/// The server every test of this binary shares (stopped by its watchdog when the binary
/// exits), or why it could not start.
static SERVER: OnceCell<Result<TempPostgres, String>> = OnceCell::const_new();
/// Numbers the databases.
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The shared server; panics with the harness's error when PostgreSQL cannot start.
pub(super) async fn server() -> &'static TempPostgres {
    let server = SERVER
        .get_or_init(|| async {
            TempPostgres::start()
                .await
                .map_err(|error| error.to_string())
        })
        .await;
    match server {
        Ok(server) => server,
        Err(error) => panic!("expected a private PostgreSQL for the store tests: {error}"),
    }
}

/// A fresh, empty database on the shared server; returns its URL.
pub(super) async fn fresh_database() -> String {
    let name = format!("store_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
    server()
        .await
        .create_database(&name)
        .await
        .unwrap_or_else(|error| panic!("creating database {name}: {error}"))
}

/// The test configuration for `url`: a small pool, a short retry window.
pub(super) fn config(url: &str) -> PostgresConfig {
    PostgresConfig {
        pool_size: 6,
        retry_for: Duration::from_secs(20),
        ..PostgresConfig::new(url)
    }
}

/// Makes stores on the shared server, one database each.
struct PostgresFactory;

#[async_trait]
impl StoreFactory for PostgresFactory {
    async fn empty_store(&self) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        let url = fresh_database().await;
        Ok(Arc::new(PostgresStore::connect(config(&url)).await?))
    }

    async fn another_handle(
        &self,
        store: &dyn CheckpointStore,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        Ok(Arc::new(
            PostgresStore::connect(config(&store.location())).await?,
        ))
    }

    async fn fenced_handle(
        &self,
        store: &dyn CheckpointStore,
        fence: LeaderFence,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        Ok(Arc::new(
            PostgresStore::connect(config(&store.location()))
                .await?
                .fenced(fence),
        ))
    }
}

/// One `#[tokio::test]` per single-store test of the suite, each on a fresh database.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            suite::$name(&*suite::fresh(&PostgresFactory).await).await;
        }
    )*};
}

suite_tests!(
    test_round_trip_every_event,
    test_positions_contiguous_from_one,
    test_read_log_paging,
    test_latest_position,
    test_list_runs_filters,
    test_run_summary,
    test_run_finished_updates_status,
    test_run_exists_and_not_found,
    test_fencing,
    test_epochs_grow_across_runs,
    test_invalid_appends_write_nothing,
    test_payloads_keep_any_text,
    test_list_runs_pages,
    test_workflows,
    test_create_run_once,
    test_scheduled_runs,
    test_list_workflows,
);

/// One `#[tokio::test]` per leader fence test of the suite, each on a fresh database.
macro_rules! leader_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            suite::$name(&suite::leaders(&PostgresFactory).await).await;
        }
    )*};
}

leader_tests!(
    test_leader_fence_refuses_every_write,
    test_leader_fence_is_monotonic,
    test_leader_fence_across_handles,
    test_unfenced_handles_ignore_the_leader_fence,
    test_leader_change_under_concurrent_writes,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_concurrent_scheduled_runs() {
    let (first, second) = suite::two_handles(&PostgresFactory).await;
    suite::test_concurrent_scheduled_runs(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_fencing_across_handles() {
    let (first, second) = suite::two_handles(&PostgresFactory).await;
    suite::test_fencing_across_handles(&*first, &*second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_concurrent_writers_and_readers() {
    let (first, second) = suite::two_handles(&PostgresFactory).await;
    let third = PostgresFactory
        .another_handle(&*first)
        .await
        .expect("a third handle");
    suite::test_concurrent_writers_and_readers(&[first, second, third]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_concurrent_create_run_once() {
    let (first, second) = suite::two_handles(&PostgresFactory).await;
    suite::test_concurrent_create_run_once(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_positions_never_skip() {
    let (first, second) = suite::two_handles(&PostgresFactory).await;
    let third = PostgresFactory
        .another_handle(&*first)
        .await
        .expect("a third handle");
    suite::test_positions_never_skip(&[first, second, third]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_passes() {
    suite::run_all(&PostgresFactory).await;
}
