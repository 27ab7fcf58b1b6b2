//! The shared suite against temp-dir SQLite stores, plus what only a file store has:
//! surviving close/reopen, concurrent creation, lock timeouts, throughput.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{SqliteOptions, SqliteStore};
use crate::checkpoint::{Epoch, Event, LogPosition, RunId};
use crate::store::suite::{self, StoreFactory};
use crate::store::{CheckpointStore, LeaderFence, StoreError};

/// Makes stores in one temp dir, one file each.
struct SqliteFactory {
    dir: tempfile::TempDir,
    count: AtomicUsize,
}

impl SqliteFactory {
    fn new() -> SqliteFactory {
        SqliteFactory {
            dir: tempfile::tempdir().expect("a temp dir"),
            count: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl StoreFactory for SqliteFactory {
    async fn empty_store(&self) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        let index = self.count.fetch_add(1, Ordering::SeqCst);
        // A directory that does not exist yet: `open` creates it.
        let path = self
            .dir
            .path()
            .join(format!("state-{index}"))
            .join("tandem.db");
        open_async(path).await
    }

    async fn another_handle(
        &self,
        store: &dyn CheckpointStore,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        open_async(PathBuf::from(store.location())).await
    }

    async fn fenced_handle(
        &self,
        store: &dyn CheckpointStore,
        fence: LeaderFence,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError> {
        let path = PathBuf::from(store.location());
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
            .await
            .expect("the open task runs")?;
        Ok(Arc::new(store.fenced(fence)))
    }
}

async fn open_async(path: PathBuf) -> Result<Arc<dyn CheckpointStore>, StoreError> {
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
        .await
        .expect("the open task runs")?;
    Ok(Arc::new(store))
}

/// One `#[tokio::test]` per single-store test of the suite, each on a fresh store.
macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let factory = SqliteFactory::new();
            suite::$name(&*suite::fresh(&factory).await).await;
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

/// One `#[tokio::test]` per leader fence test of the suite, each on a fresh store.
macro_rules! leader_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let factory = SqliteFactory::new();
            suite::$name(&suite::leaders(&factory).await).await;
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
    let factory = SqliteFactory::new();
    let (first, second) = suite::two_handles(&factory).await;
    suite::test_concurrent_scheduled_runs(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_fencing_across_handles() {
    let factory = SqliteFactory::new();
    let (first, second) = suite::two_handles(&factory).await;
    suite::test_fencing_across_handles(&*first, &*second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_concurrent_writers_and_readers() {
    let factory = SqliteFactory::new();
    let (first, second) = suite::two_handles(&factory).await;
    let third = factory
        .another_handle(&*first)
        .await
        .expect("a third handle");
    suite::test_concurrent_writers_and_readers(&[first, second, third]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_concurrent_create_run_once() {
    let factory = SqliteFactory::new();
    let (first, second) = suite::two_handles(&factory).await;
    suite::test_concurrent_create_run_once(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_positions_never_skip() {
    let factory = SqliteFactory::new();
    let (first, second) = suite::two_handles(&factory).await;
    let third = factory
        .another_handle(&*first)
        .await
        .expect("a third handle");
    suite::test_positions_never_skip(&[first, second, third]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_passes() {
    suite::run_all(&SqliteFactory::new()).await;
}

fn blocking_open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap_or_else(|error| panic!("open {}: {error}", path.display()))
}

#[tokio::test]
async fn data_and_epochs_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let store = blocking_open(&path);
    assert_eq!(store.path(), path);
    assert_eq!(store.location(), path.display().to_string());
    let (run_id, epoch) = suite::new_run(&store, "durable", 1).await;
    let events: Vec<Event> = (1..=5).map(|attempt| suite::started(0, attempt)).collect();
    suite::append_ok(&store, epoch, suite::batch(run_id, &events)).await;
    let log = suite::read_all(&store).await;
    let summary = store.run_summary(run_id).await.unwrap();
    drop(store);

    let reopened = SqliteStore::open_existing(&path).unwrap();
    assert_eq!(suite::read_all(&reopened).await, log);
    assert_eq!(reopened.run_summary(run_id).await.unwrap(), summary);
    let claimed = reopened
        .claim_run(run_id, &suite::owner("after-reopen", 2))
        .await
        .unwrap();
    assert!(claimed > epoch, "the epoch counter survives a reopen");
    let last = suite::append_ok(
        &reopened,
        claimed,
        suite::batch(run_id, &[suite::started(0, 6)]),
    )
    .await;
    assert_eq!(
        last,
        log.len() as LogPosition + 1,
        "positions continue after a reopen"
    );
}

#[test]
fn open_creates_parent_directories_and_open_existing_refuses_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope").join("tandem.db");
    let error = SqliteStore::open_existing(&missing).unwrap_err();
    let StoreError::Backend { location, detail } = &error else {
        panic!("expected Backend, found {error:?}");
    };
    assert_eq!(location, &missing.display().to_string());
    assert!(
        detail.starts_with(&format!("no state store at {}: ", missing.display())),
        "{detail}"
    );
    assert!(!missing.exists(), "open_existing creates nothing");

    blocking_open(&missing);
    assert!(
        missing.is_file(),
        "open creates the file and its parent directories"
    );
    SqliteStore::open_existing(&missing).expect("now it exists");

    let error = SqliteStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, StoreError::Backend { detail, .. } if detail.contains("found a directory")),
        "a directory is not a store: {error:?}"
    );
}

#[test]
fn connections_opening_a_new_store_at_once_all_succeed() {
    // Switching a new file to WAL races: SQLite refuses some of the racers without waiting.
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.db");
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteStore::open(&path)
                })
            })
            .collect();
        for opener in openers {
            let store = opener.join().unwrap().unwrap_or_else(|error| {
                panic!("round {round}: a concurrent open of a new store failed: {error}")
            });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(suite::new_run(&store, "race", 1));
        }
    }
}

#[tokio::test]
async fn a_write_lock_held_too_long_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).unwrap();
    let (run_id, epoch) = suite::new_run(&store, "locked", 1).await;

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let error = store
        .append(epoch, suite::batch(run_id, &[suite::started(0, 1)]))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it waited for the lock"
    );
    let StoreError::Backend { detail, .. } = &error else {
        panic!("expected Backend, found {error:?}");
    };
    assert!(
        detail.contains("locked") && detail.contains("200 ms"),
        "{detail}"
    );
    // Reads are not blocked by a writer in WAL mode.
    assert_eq!(suite::latest(&store).await, 1);
    other.execute_batch("ROLLBACK").unwrap();
    suite::append_ok(&store, epoch, suite::batch(run_id, &[suite::started(0, 1)])).await;
}

#[tokio::test]
async fn clones_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = blocking_open(&dir.path().join("tandem.db"));
    let clone = store.clone();
    let (run_id, epoch): (RunId, Epoch) = suite::new_run(&clone, "clone", 1).await;
    assert_eq!(store.read_run(run_id).await.unwrap().len(), 1);
    assert_eq!(store.run_summary(run_id).await.unwrap().owner_epoch, epoch);
}
