//! The leader fence in PostgreSQL: writes that wait for the head's row lock while another
//! transaction raises the epoch are refused (the check reads the committed row, not the
//! statement's snapshot), and the write-id retry path only returns outcomes that committed.

use std::time::Duration;

use super::tests::{config, fresh_database};
use super::write::{Encoded, append};
use super::{PostgresConfig, PostgresStore};
use crate::checkpoint::RunId;
use crate::store::suite::{self, batch, created_event, owner, started};
use crate::store::{CheckpointStore, LeaderFence, StoreError, StoredWorkflow};

async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    tokio::spawn(connection);
    client
}

/// Enough connections for every write kind to wait at once.
fn roomy(url: &str) -> PostgresConfig {
    PostgresConfig {
        pool_size: 12,
        ..config(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_waiting_for_the_head_while_a_newer_leader_raises_the_epoch_are_refused() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(roomy(&url)).await.unwrap();
    let old_leader = store.fenced(LeaderFence::new(5));
    assert_eq!(old_leader.raise_fence().await, Ok(5));
    let (run_id, epoch) = suite::new_run(&old_leader, "waiting", 1).await;
    let registered = StoredWorkflow {
        name: "waiting".into(),
        version: "v1".into(),
        source: "name: waiting\n".into(),
        file_name: "waiting.yaml".into(),
        registered_at: 1,
    };
    assert_eq!(old_leader.put_workflow(&registered).await, Ok(true));
    let before = suite::read_all(&store).await;

    // The new leader's raise, not committed yet: it holds the head's row lock.
    let mut new_leader = raw_client(&url).await;
    let raising = new_leader.transaction().await.unwrap();
    raising
        .execute("UPDATE log_head SET leader_epoch = 10", &[])
        .await
        .unwrap();

    let mut writes = Vec::new();
    let spawn =
        |what: &'static str, write: futures::future::BoxFuture<'static, Result<(), StoreError>>| {
            (what, tokio::spawn(write))
        };
    {
        let s = old_leader.clone();
        writes.push(spawn(
            "append",
            Box::pin(async move {
                s.append(epoch, batch(run_id, &[started(0, 1)]))
                    .await
                    .map(drop)
            }),
        ));
    }
    {
        let s = old_leader.clone();
        writes.push(spawn(
            "create_run",
            Box::pin(async move {
                s.create_run(RunId::new(), &owner("old", 2), created_event("waiting", 2))
                    .await
                    .map(drop)
            }),
        ));
    }
    {
        let s = old_leader.clone();
        writes.push(spawn(
            "create_run_once",
            Box::pin(async move {
                s.create_run_once(
                    "waiting-key",
                    RunId::new(),
                    &owner("old", 3),
                    created_event("waiting", 3),
                )
                .await
                .map(drop)
            }),
        ));
    }
    {
        let s = old_leader.clone();
        writes.push(spawn(
            "create_scheduled_run",
            Box::pin(async move {
                s.create_scheduled_run(
                    "waiting",
                    60_000,
                    RunId::new(),
                    &owner("old", 4),
                    created_event("waiting", 4),
                )
                .await
                .map(drop)
            }),
        ));
    }
    {
        let s = old_leader.clone();
        writes.push(spawn(
            "claim_run",
            Box::pin(async move { s.claim_run(run_id, &owner("old", 5)).await.map(drop) }),
        ));
    }
    {
        let s = old_leader.clone();
        let workflow = StoredWorkflow {
            version: "v2".into(),
            source: "name: waiting\n# v2\n".into(),
            ..registered.clone()
        };
        writes.push(spawn(
            "put_workflow",
            Box::pin(async move { s.put_workflow(&workflow).await.map(drop) }),
        ));
    }
    {
        let s = old_leader.clone();
        writes.push(spawn(
            "raise_fence",
            Box::pin(async move { s.raise_fence().await.map(drop) }),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (what, task) in &writes {
        assert!(
            !task.is_finished(),
            "the old leader's {what} waits for the head's row lock"
        );
    }
    raising.commit().await.unwrap();
    let superseded = StoreError::Superseded {
        epoch: 5,
        highest: 10,
        location: store.location(),
    };
    for (what, task) in writes {
        assert_eq!(
            task.await.unwrap(),
            Err(superseded.clone()),
            "the old leader's {what}, which waited while the epoch was raised"
        );
    }
    assert_eq!(suite::read_all(&store).await, before, "nothing was written");
    assert_eq!(store.leader_epoch().await, Ok(10));
    assert_eq!(store.last_schedule_tick("waiting").await, Ok(None));
    assert_eq!(
        store.list_workflows().await.map(|list| list.len()),
        Ok(1),
        "no new version"
    );
    assert_eq!(
        store.run_summary(run_id).await.map(|run| run.owner_epoch),
        Ok(epoch),
        "not claimed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_append_returns_its_committed_first_attempt_even_after_a_newer_leader() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(config(&url)).await.unwrap();
    let context = &store.inner.context;
    let fence = super::fence::FenceEpoch::new(context, Some(5)).unwrap();
    let (run_id, epoch) = suite::new_run(&store, "retried", 1).await;
    let encoded = Encoded::new(context, epoch, &batch(run_id, &[started(0, 1)])).unwrap();
    let batch_id = uuid::Uuid::now_v7();
    let mut client = store.client().await.unwrap();
    let first = append(context, &mut client, &encoded, fence, batch_id, 1)
        .await
        .unwrap();
    assert_eq!(first, 2);
    assert_eq!(store.fenced(LeaderFence::new(9)).raise_fence().await, Ok(9));
    // The caller lost the connection before hearing the first outcome and tries again.
    let again = append(context, &mut client, &encoded, fence, batch_id, 2)
        .await
        .unwrap();
    assert_eq!(again, first, "the committed first attempt's position");
    assert_eq!(suite::latest(&store).await, 2, "nothing appended again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_append_whose_first_attempt_never_committed_is_checked_like_a_new_one() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(config(&url)).await.unwrap();
    let context = &store.inner.context;
    let fence = super::fence::FenceEpoch::new(context, Some(5)).unwrap();
    let (run_id, epoch) = suite::new_run(&store, "retried", 1).await;
    let encoded = Encoded::new(context, epoch, &batch(run_id, &[started(0, 1)])).unwrap();
    assert_eq!(store.fenced(LeaderFence::new(9)).raise_fence().await, Ok(9));
    let mut client = store.client().await.unwrap();
    let retried = append(
        context,
        &mut client,
        &encoded,
        fence,
        uuid::Uuid::now_v7(),
        2,
    )
    .await;
    let Err(super::retry::Failure::Final(error)) = retried else {
        panic!("expected a final refusal, found {retried:?}");
    };
    assert_eq!(
        error,
        StoreError::Superseded {
            epoch: 5,
            highest: 9,
            location: store.location()
        }
    );
    assert_eq!(suite::latest(&store).await, 1, "nothing appended");
}
