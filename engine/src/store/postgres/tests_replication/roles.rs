//! Fenced writes refused while the region is not active, also when they waited for the
//! head during the change.

use std::time::Duration;

use super::super::PostgresStore;
use super::{ACTIVE, STANDBY, named, rows, workflow, workload};
use crate::checkpoint::RunId;
use crate::store::replication::{RegionRole, ReplicationStore};
use crate::store::suite::{batch, created_event, new_run, owner, read_all, started};
use crate::store::{CheckpointStore, LeaderFence, StoreError};

/// Asserts that `result` is the refusal of a write by region [`ACTIVE`] in `role`, whose
/// active region is [`STANDBY`].
fn assert_not_active<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str, role: &str) {
    match result {
        Err(StoreError::NotActive {
            region,
            role: found,
            active_region,
            ..
        }) => assert_eq!(
            (region.as_str(), found.as_str(), active_region.as_str()),
            (ACTIVE, role, STANDBY),
            "{what}"
        ),
        other => panic!("{what}: expected NotActive, found {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fenced_write_is_refused_after_demotion_while_raise_fence_works() {
    let store = named(ACTIVE, RegionRole::Active, ACTIVE).await;
    let leader = store.fenced(LeaderFence::new(3));
    assert_eq!(leader.raise_fence().await, Ok(3));
    let runs = workload(&leader, 1).await;
    let latest = store.latest_position().await.unwrap();
    let state = store.demote(STANDBY, 1, latest).await.unwrap();
    assert_eq!(
        (
            state.role,
            state.active_region.as_str(),
            state.region_epoch,
            state.tail
        ),
        (RegionRole::Standby, STANDBY, 1, None)
    );
    assert_eq!(
        (state.applied_position, state.source_latest_position),
        (latest, latest)
    );
    assert_eq!(
        state.applied_registration, 0,
        "workflows are asked for again"
    );
    let log = read_all(&store).await;

    let role = "standby";
    let run_id = RunId::new();
    let o = owner("late", 9);
    assert_not_active(
        leader
            .create_run(run_id, &o, created_event("late", 9))
            .await,
        "create_run",
        role,
    );
    assert_not_active(
        leader
            .create_run_once("unused", run_id, &o, created_event("late", 9))
            .await,
        "create_run_once with an unused key",
        role,
    );
    assert_not_active(
        leader
            .create_run_once("key-1", run_id, &o, created_event("late", 9))
            .await,
        "create_run_once with a used key",
        role,
    );
    assert_not_active(
        leader
            .create_scheduled_run("hourly", 99, run_id, &o, created_event("hourly", 9))
            .await,
        "create_scheduled_run",
        role,
    );
    assert_not_active(leader.claim_run(runs.plain.0, &o).await, "claim_run", role);
    assert_not_active(
        leader.claim_run(run_id, &o).await,
        "claim_run of no run",
        role,
    );
    assert_not_active(
        leader
            .append(runs.plain.1, batch(runs.plain.0, &[started(5, 1)]))
            .await,
        "append",
        role,
    );
    assert_not_active(
        leader.put_workflow(&workflow("late", 9)).await,
        "put_workflow of a new workflow",
        role,
    );
    assert_not_active(
        leader.put_workflow(&workflow("nightly", 1)).await,
        "put_workflow of a registered one",
        role,
    );
    assert_eq!(read_all(&store).await, log, "nothing written");
    assert_eq!(
        rows(&store, "SELECT count(*)::text FROM workflows").await,
        ["2"]
    );

    // A standby region elects leaders too; a superseded one learns that first.
    let newer = store.fenced(LeaderFence::new(4));
    assert_eq!(newer.raise_fence().await, Ok(4));
    match leader
        .append(runs.plain.1, batch(runs.plain.0, &[started(5, 1)]))
        .await
    {
        Err(StoreError::Superseded { epoch, highest, .. }) => assert_eq!((epoch, highest), (3, 4)),
        other => panic!("expected Superseded before NotActive, found {other:?}"),
    }
    assert_not_active(
        newer.claim_run(runs.plain.0, &o).await,
        "the new leader's claim",
        role,
    );
    // Unfenced handles (tools, the replicator) are not refused.
    store
        .append(runs.plain.1, batch(runs.plain.0, &[started(5, 1)]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_waiting_for_the_head_while_the_region_is_demoted_are_refused() {
    let store = named(ACTIVE, RegionRole::Active, ACTIVE).await;
    let leader = store.fenced(LeaderFence::new(2));
    let (run_id, epoch) = new_run(&leader, "waiting", 1).await;
    let log = read_all(&store).await;

    // A demotion in progress holds the head's row lock.
    let mut demoting = raw(&store).await;
    let transaction = demoting.transaction().await.unwrap();
    transaction
        .execute("SELECT 1 FROM log_head FOR NO KEY UPDATE", &[])
        .await
        .unwrap();
    let mut writes = Vec::new();
    for kind in 0..4 {
        let leader = leader.clone();
        writes.push(tokio::spawn(async move {
            let o = owner("waiting", 2);
            match kind {
                0 => leader
                    .append(epoch, batch(run_id, &[started(0, 1)]))
                    .await
                    .map(drop),
                1 => leader
                    .create_run(RunId::new(), &o, created_event("waiting", 2))
                    .await
                    .map(drop),
                2 => leader.claim_run(run_id, &o).await.map(drop),
                _ => leader.put_workflow(&workflow("waiting", 2)).await.map(drop),
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    transaction
        .execute(
            "UPDATE log_head SET region_role = 'fenced', region_epoch = 1",
            &[],
        )
        .await
        .unwrap();
    transaction
        .execute(
            "UPDATE region_state SET active_region = $1, tail_from = 1, tail_to = 1",
            &[&STANDBY],
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    for (kind, write) in writes.into_iter().enumerate() {
        assert_not_active(
            write.await.unwrap(),
            &format!("waiting write {kind}"),
            "fenced",
        );
    }
    assert_eq!(read_all(&store).await, log, "nothing written");
}

/// A plain connection to `store`'s database.
async fn raw(store: &PostgresStore) -> tokio_postgres::Client {
    let url = store.location();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    tokio::spawn(connection);
    client
}
