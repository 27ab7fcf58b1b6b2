//! The leader fence in a SQLite file: a fenced write waiting for the write lock while another
//! process raises the epoch is refused; fenced handles share their store's connections.

use std::time::Duration;

use rusqlite::Connection;

use super::SqliteStore;
use crate::store::suite;
use crate::store::{CheckpointStore, LeaderFence, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_the_lock_while_a_newer_leader_raises_the_epoch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let store = SqliteStore::open(&path).unwrap();
    let fence = LeaderFence::new(5);
    let old_leader = store.fenced(fence.clone());
    assert_eq!(old_leader.raise_fence().await, Ok(5));
    let (run_id, epoch) = suite::new_run(&old_leader, "waiting", 1).await;
    let position = suite::latest(&store).await;

    // Another process (the new leader) holds the write lock and raises the epoch.
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    other
        .execute("UPDATE meta SET value = 10 WHERE key = 'leader_epoch'", [])
        .unwrap();
    let append = {
        let old_leader = old_leader.clone();
        tokio::spawn(async move {
            old_leader
                .append(epoch, suite::batch(run_id, &[suite::started(0, 1)]))
                .await
        })
    };
    let raise = {
        let old_leader = old_leader.clone();
        tokio::spawn(async move { old_leader.raise_fence().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !append.is_finished() && !raise.is_finished(),
        "the old leader's writes wait for the write lock"
    );
    other.execute_batch("COMMIT").unwrap();
    let superseded = StoreError::Superseded {
        epoch: 5,
        highest: 10,
        location: store.location(),
    };
    assert_eq!(append.await.unwrap(), Err(superseded.clone()));
    assert_eq!(raise.await.unwrap(), Err(superseded));
    assert_eq!(suite::latest(&store).await, position, "nothing was written");
    assert_eq!(store.leader_epoch().await, Ok(10));
}

#[tokio::test]
async fn a_fenced_handle_shares_its_store_and_leaves_the_original_unfenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("tandem.db")).unwrap();
    let fence = LeaderFence::new(3);
    let fenced = store.fenced(fence.clone());
    assert_eq!(fenced.path(), store.path());
    let (run_id, _) = suite::new_run(&fenced, "shared", 1).await;
    assert_eq!(
        store.read_run(run_id).await.map(|log| log.len()),
        Ok(1),
        "one store"
    );
    assert_eq!(
        store.leader_epoch().await,
        Ok(3),
        "the fenced write raised it"
    );
    assert_eq!(store.raise_fence().await, Ok(0), "the original is unfenced");
    let newer = store.fenced(LeaderFence::new(8));
    assert_eq!(newer.raise_fence().await, Ok(8));
    fence.set(9);
    assert_eq!(
        fenced.raise_fence().await,
        Ok(9),
        "the handle carries its fence's current epoch"
    );
    let refused = newer.fenced(LeaderFence::new(1)).raise_fence().await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Superseded {
                epoch: 1,
                highest: 9,
                ..
            })
        ),
        "fenced() replaces the handle's fence: {refused:?}"
    );
}

#[tokio::test]
async fn a_store_without_its_leader_epoch_row_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let store = SqliteStore::open(&path).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM meta WHERE key = 'leader_epoch'", [])
        .unwrap();
    let error = store
        .fenced(LeaderFence::new(1))
        .raise_fence()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { detail, .. } if detail.contains("leader_epoch") && detail.contains("meta")),
        "{error:?}"
    );
    assert!(matches!(
        store.leader_epoch().await,
        Err(StoreError::Corrupt { .. })
    ));
    suite::new_run(&store, "unfenced-still-writes", 1).await;
}
