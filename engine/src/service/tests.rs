//! The replica's reaction to the store's leader fence, in process, over a SQLite store: a
//! leader whose write is refused steps down at once, and a standalone replica refuses a
//! database that has seen a leader epoch.

use std::sync::Arc;
use std::time::Duration;

use super::{Opened, Region, RegionParts, ReplicaRole, ServiceConfig, ServiceError};
use crate::executor::remote::{RemoteConfig, TaskQueues};
use crate::store::sqlite::SqliteStore;
use crate::store::{CheckpointStore, LeaderFence, StoreError};

const CHAIN: &str = r#"
name: fenced
tasks:
  a: { run: sleep 0.2 }
  b: { needs: [a], run: sleep 0.2 }
  c: { needs: [b], run: sleep 0.2 }
  d: { needs: [c], run: sleep 0.2 }
  e: { needs: [d], run: sleep 0.2 }
"#;

fn region(store: &SqliteStore, state: &std::path::Path) -> Region {
    let fence = LeaderFence::new(0);
    let config = ServiceConfig::new("test", "127.0.0.1:0".parse().unwrap(), state.to_path_buf());
    Region::new(
        config,
        RegionParts {
            store: Arc::new(store.fenced(fence.clone())),
            fence,
            queues: TaskQueues::new(RemoteConfig::default()),
            election: None,
            replication: None,
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_write_is_refused_steps_down_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("tandem.db")).unwrap();
    let region = region(&store, dir.path());
    assert_eq!(
        region.open().await.unwrap(),
        Opened::Standalone { resumed: 0 }
    );
    assert_eq!(region.role(), ReplicaRole::Leading { epoch: 0 });
    region
        .register("fenced.yaml".into(), CHAIN.into())
        .await
        .unwrap();
    let started = region
        .start("fenced", None, Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(region.active_runs(), 1);

    // Another replica becomes leader with epoch 5 and raises the store's fence.
    let newer = store.fenced(LeaderFence::new(5));
    assert_eq!(newer.raise_fence().await.unwrap(), 5);

    // The old leader's next write (the run's next checkpoint) is refused: it steps down.
    let mut roles = region.subscribe_role();
    tokio::time::timeout(
        Duration::from_secs(10),
        roles.wait_for(|role| matches!(role, ReplicaRole::Following { .. })),
    )
    .await
    .expect("the replica steps down")
    .unwrap();
    assert_eq!(region.active_runs(), 0, "every driver stopped");
    let refused = region.start("fenced", None, Vec::new(), None).await;
    assert!(
        matches!(refused, Err(ServiceError::NotLeader { .. })),
        "{refused:?}"
    );
    // Nothing the old leader wrote after the raise is in the store: its last checkpoint is
    // older than the fence, and the run is left unfinished for the new leader.
    let summary = store.run_summary(started.run_id).await.unwrap();
    assert!(!summary.status.is_terminal());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standalone_replica_refuses_a_database_that_has_seen_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("tandem.db")).unwrap();
    store
        .fenced(LeaderFence::new(7))
        .raise_fence()
        .await
        .unwrap();
    let region = region(&store, dir.path());
    let opened = region.open().await;
    assert!(
        matches!(
            opened,
            Err(ServiceError::Store(StoreError::Superseded {
                epoch: 0,
                highest: 7,
                ..
            }))
        ),
        "{opened:?}"
    );
}
