//! What only the PostgreSQL store has: the schema check at connect, concurrent migrations,
//! connection errors, write ids that make a retried write land once, damaged rows.

use std::time::{Duration, Instant};

use super::tests::{config, fresh_database, server};
use super::write::{Encoded, append};
use super::{PostgresConfig, PostgresStore};
use crate::checkpoint::LogPosition;
use crate::store::suite;
use crate::store::{CheckpointStore, StoreError};

async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_refuses_a_schema_newer_than_it_knows() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(config(&url)).await.unwrap();
    let supported = super::migrate::supported_version();
    drop(store);
    let client = raw_client(&url).await;
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES ($1, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            &[&(supported + 7)],
        )
        .await
        .unwrap();
    let error = PostgresStore::connect(config(&url)).await.unwrap_err();
    assert_eq!(
        error,
        StoreError::SchemaTooNew {
            location: url.clone(),
            found: (supported + 7) as u32,
            supported: supported as u32,
        }
    );
    assert!(
        error.to_string().contains("upgrade Tandem"),
        "the message says what to do: {error}"
    );
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM refinery_schema_history WHERE version > $1",
            &[&supported],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "the newer database is left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_processes_starting_at_once_migrate_once() {
    let url = fresh_database().await;
    let connects: Vec<_> = (0..4)
        .map(|_| tokio::spawn(PostgresStore::connect(config(&url))))
        .collect();
    let mut stores = Vec::new();
    for connect in connects {
        stores.push(connect.await.unwrap().unwrap_or_else(|error| {
            panic!("a concurrent connect to a fresh database failed: {error}")
        }));
    }
    let client = raw_client(&url).await;
    let applied: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        applied,
        i64::from(super::migrate::supported_version()),
        "each migration recorded once"
    );
    let (run_id, _) = suite::new_run(&stores[0], "migrated", 1).await;
    assert_eq!(stores[3].read_run(run_id).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_name_the_server_without_the_password_and_fail_fast_when_retrying_cannot_help()
{
    let server = server().await;
    // A database that does not exist: PostgreSQL answers, so there is nothing to wait for.
    let started = Instant::now();
    let missing = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/no_such_db",
        server.port()
    );
    let error = PostgresStore::connect(config(&missing)).await.unwrap_err();
    let StoreError::Backend { location, detail } = &error else {
        panic!("expected Backend, found {error:?}");
    };
    assert_eq!(
        location,
        &format!("postgres://postgres@127.0.0.1:{}/no_such_db", server.port())
    );
    assert!(detail.contains("does not exist"), "{detail}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a missing database is not retried for retry_for"
    );

    // Nobody listens on this port: connection refused, retried until retry_for runs out.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = PostgresConfig {
        retry_for: Duration::from_millis(600),
        ..config(&format!("postgres://me:hunter2@127.0.0.1:{port}/db"))
    };
    let started = Instant::now();
    let error = PostgresStore::connect(unreachable).await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(5),
        "retried for about retry_for (600 ms), found {waited:?}"
    );
    let StoreError::Backend { location, detail } = &error else {
        panic!("expected Backend, found {error:?}");
    };
    assert_eq!(location, &format!("postgres://me@127.0.0.1:{port}/db"));
    assert!(
        detail.contains("stayed unreachable") && detail.contains("attempts"),
        "{detail}"
    );
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_write_retried_after_its_commit_lands_once() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(config(&url)).await.unwrap();
    let context = &store.inner.context;
    let (run_id, epoch) = suite::new_run(&store, "retried", 1).await;
    let batch = suite::batch(run_id, &[suite::started(0, 1), suite::started(0, 2)]);
    let encoded = Encoded::new(context, epoch, &batch).unwrap();
    let batch_id = uuid::Uuid::now_v7();
    let mut client = store.client().await.unwrap();
    let first = append(context, &mut client, &encoded, None, batch_id, 1)
        .await
        .unwrap();
    assert_eq!(first, 3);
    // The caller lost the connection before hearing the outcome and tries again.
    let again = append(context, &mut client, &encoded, None, batch_id, 2)
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "the retry reports the first attempt's position"
    );
    assert_eq!(suite::latest(&store).await, 3, "and appends nothing");
    let other = append(
        context,
        &mut client,
        &encoded,
        None,
        uuid::Uuid::now_v7(),
        1,
    )
    .await
    .unwrap();
    assert_eq!(other, 5, "another write id is another write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_write_retried_while_its_first_attempt_still_commits_lands_once() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(config(&url)).await.unwrap();
    let (run_id, epoch) = suite::new_run(&store, "in-flight", 1).await;
    let batch = suite::batch(run_id, &[suite::started(0, 1)]);
    let encoded = Encoded::new(&store.inner.context, epoch, &batch).unwrap();
    let batch_id = uuid::Uuid::now_v7();

    // The "first attempt": a transaction that holds the head of the log and records the
    // write, not yet committed (its client vanished, the server is still finishing it).
    let mut first = raw_client(&url).await;
    let transaction = first.transaction().await.unwrap();
    transaction
        .execute("UPDATE log_head SET last = last + 1", &[])
        .await
        .unwrap();
    transaction
        .execute(
            "INSERT INTO checkpoints (position, epoch, run_id, recorded_at, kind, payload)
             VALUES (2, $1, $2, 0, 'attempt_started', $3::text::json)",
            &[
                &(epoch.0 as i64),
                &run_id.0,
                &serde_json::to_string(&suite::started(0, 1)).unwrap(),
            ],
        )
        .await
        .unwrap();
    transaction
        .execute(
            "INSERT INTO batches (batch_id, last_position, epoch) VALUES ($1, 2, $2)",
            &[&batch_id, &(epoch.0 as i64)],
        )
        .await
        .unwrap();

    let retry = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut client = store.client().await.unwrap();
            append(
                &store.inner.context,
                &mut client,
                &encoded,
                None,
                batch_id,
                2,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !retry.is_finished(),
        "the retry waits for the first attempt's transaction"
    );
    transaction.commit().await.unwrap();
    let position: LogPosition = retry.await.unwrap().unwrap();
    assert_eq!(
        position, 2,
        "the retry reports the first attempt's position"
    );
    let log = suite::read_all(&store).await;
    assert_eq!(log.len(), 2, "the checkpoint is in the log once: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_reports_a_damaged_row_as_corrupt_with_its_position() {
    let url = fresh_database().await;
    let store = PostgresStore::connect(config(&url)).await.unwrap();
    let (run_id, epoch) = suite::new_run(&store, "damaged", 1).await;
    suite::append_ok(&store, epoch, suite::batch(run_id, &[suite::started(0, 1)])).await;
    let client = raw_client(&url).await;
    client
        .execute(
            "UPDATE checkpoints SET payload = '{\"type\": \"exploded\"}' WHERE position = 2",
            &[],
        )
        .await
        .unwrap();
    for error in [
        store.read_log(0, 10).await.unwrap_err(),
        store.read_run(run_id).await.unwrap_err(),
    ] {
        let StoreError::Corrupt { location, detail } = &error else {
            panic!("expected Corrupt, found {error:?}");
        };
        assert_eq!(location, &url);
        assert!(
            detail.contains("position 2") && detail.contains("does not decode"),
            "{detail}"
        );
    }
    client
        .execute(
            "UPDATE checkpoints SET kind = 'run_finished' WHERE position = 1",
            &[],
        )
        .await
        .unwrap();
    let error = store.read_log(0, 1).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Corrupt { detail, .. } if detail.contains("position 1") && detail.contains("run_finished")),
        "{error:?}"
    );
}
