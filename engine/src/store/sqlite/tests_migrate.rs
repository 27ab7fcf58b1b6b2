//! A store written by an older build (schema version 1 or 2) opens, is upgraded in place,
//! keeps its data and gains what the newer schema adds.

use rusqlite::Connection;

use super::SqliteStore;
use super::schema::{APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
use crate::checkpoint::{Epoch, RunId};
use crate::store::suite;
use crate::store::{
    CheckpointStore, CreateOutcome, LeaderFence, RunFilter, RunStatus, StoreError, StoredWorkflow,
};

/// Writes a version 1 store by hand, as the version 1 build left it: one run with its
/// `run_created` checkpoint and one more checkpoint, epoch counter at 2.
fn write_version_1(path: &std::path::Path, run_id: RunId) {
    let connection = Connection::open(path).unwrap();
    connection.execute_batch(MIGRATIONS[0]).unwrap();
    connection
        .pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    connection.pragma_update(None, "user_version", 1).unwrap();
    connection
        .execute("UPDATE meta SET value = 2 WHERE key = 'next_epoch'", [])
        .unwrap();
    connection
        .execute(
            "INSERT INTO runs (run_key, run_id, workflow, version, status, created_at,
                created_position, finished_at, owner_epoch, owner_host, owner_pid, owner_start_ticks)
             VALUES (1, ?1, 'old', 'old-v1', 'running', 5, 1, NULL, 1, 'host', 7, 70)",
            [run_id.0.as_bytes().as_slice()],
        )
        .unwrap();
    for (position, event) in [
        (1, suite::created_event("old", 0)),
        (2, suite::started(0, 1)),
    ] {
        connection
            .execute(
                "INSERT INTO checkpoints (position, epoch, run_key, recorded_at, kind, payload)
                 VALUES (?1, 1, 1, 10, ?2, ?3)",
                rusqlite::params![
                    position,
                    event.kind(),
                    serde_json::to_string(&event).unwrap()
                ],
            )
            .unwrap();
    }
}

/// Writes a version 2 store by hand, as the version 2 build left it: the version 1 store of
/// [`write_version_1`] plus a registered workflow and an idempotency key for its run.
fn write_version_2(path: &std::path::Path, run_id: RunId) {
    write_version_1(path, run_id);
    let connection = Connection::open(path).unwrap();
    connection.execute_batch(MIGRATIONS[1]).unwrap();
    connection.pragma_update(None, "user_version", 2).unwrap();
    connection
        .execute(
            "INSERT INTO workflows (name, version, source, file_name, registered_at)
             VALUES ('old', 'old-v1', 'name: old
', 'old.yaml', 3)",
            [],
        )
        .unwrap();
    connection
        .execute(
            "INSERT INTO idempotency_keys (idempotency_key, run_key) VALUES ('old-key', 1)",
            [],
        )
        .unwrap();
}

#[tokio::test]
async fn a_version_1_store_is_upgraded_and_keeps_its_data() {
    assert_eq!(SCHEMA_VERSION, 3, "this test upgrades from version 1 to 3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let old_run = RunId::new();
    write_version_1(&path, old_run);

    let store = SqliteStore::open(&path).unwrap_or_else(|error| panic!("open v1: {error}"));
    let version: u32 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION, "the store is at the new version");

    let log = store.read_run(old_run).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|checkpoint| &checkpoint.event)
            .collect::<Vec<_>>(),
        vec![&suite::created_event("old", 0), &suite::started(0, 1)],
        "the old checkpoints survive the upgrade"
    );
    let summary = store.run_summary(old_run).await.unwrap();
    assert_eq!(
        (summary.status, summary.owner_epoch),
        (RunStatus::Running, Epoch(1))
    );

    let workflow = StoredWorkflow {
        name: "old".into(),
        version: "v2".into(),
        source: "name: old\n".into(),
        file_name: "old.yaml".into(),
        registered_at: 1,
    };
    assert!(store.put_workflow(&workflow).await.unwrap());
    assert_eq!(store.get_workflow("old", None).await.unwrap(), workflow);

    let new_run = RunId::new();
    let outcome = store
        .create_run_once(
            "key",
            new_run,
            &suite::owner("new", 1),
            suite::created_event("old", 1),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CreateOutcome::Created(Epoch(2)),
        "the epoch counter carries on"
    );
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    let ids: Vec<RunId> = runs.iter().map(|run| run.run_id).collect();
    assert_eq!(ids, vec![new_run, old_run], "newest first");
    assert_eq!(
        suite::latest(&store).await,
        3,
        "positions continue after the upgrade"
    );
    drop(store);
    SqliteStore::open_existing(&path).expect("an upgraded store opens again");
}

#[tokio::test]
async fn a_version_2_store_is_upgraded_and_gains_the_leader_fence_and_schedule_ticks() {
    assert_eq!(SCHEMA_VERSION, 3, "this test upgrades from version 2 to 3");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let old_run = RunId::new();
    write_version_2(&path, old_run);

    let store = SqliteStore::open(&path).unwrap_or_else(|error| panic!("open v2: {error}"));
    let version: u32 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION, "the store is at the new version");
    assert_eq!(
        store.read_run(old_run).await.unwrap().len(),
        2,
        "the log survives"
    );
    assert_eq!(
        store.list_workflows().await.unwrap(),
        vec![StoredWorkflow {
            name: "old".into(),
            version: "old-v1".into(),
            source: "name: old\n".into(),
            file_name: "old.yaml".into(),
            registered_at: 3,
        }],
        "the registered workflow survives"
    );
    assert_eq!(
        store
            .create_run_once(
                "old-key",
                RunId::new(),
                &suite::owner("new", 1),
                suite::created_event("old", 1)
            )
            .await,
        Ok(CreateOutcome::Existing(old_run)),
        "the idempotency key survives"
    );

    assert_eq!(
        store.leader_epoch().await,
        Ok(0),
        "an upgraded store has seen no leader"
    );
    let leader = store.fenced(LeaderFence::new(5));
    assert_eq!(leader.raise_fence().await, Ok(5));
    assert_eq!(
        store.fenced(LeaderFence::new(4)).raise_fence().await,
        Err(StoreError::Superseded {
            epoch: 4,
            highest: 5,
            location: store.location()
        })
    );
    assert_eq!(store.last_schedule_tick("old").await, Ok(None));
    let scheduled = leader
        .create_scheduled_run(
            "old",
            60_000,
            RunId::new(),
            &suite::owner("new", 2),
            suite::created_event("old", 2),
        )
        .await;
    assert_eq!(
        scheduled,
        Ok(CreateOutcome::Created(Epoch(2))),
        "schedule ticks work, and the epoch counter carries on"
    );
    assert_eq!(store.last_schedule_tick("old").await, Ok(Some(60_000)));
    drop((store, leader));
    let reopened = SqliteStore::open_existing(&path).expect("an upgraded store opens again");
    assert_eq!(
        reopened.leader_epoch().await,
        Ok(5),
        "the leader epoch is durable"
    );
}
