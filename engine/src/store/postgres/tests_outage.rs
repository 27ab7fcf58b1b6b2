//! PostgreSQL going away: each test has its own server, which it crashes and restarts.

use std::sync::Arc;
use std::time::Duration;

use super::{PostgresConfig, PostgresStore};
use crate::checkpoint::{Event, LogPosition};
use crate::store::suite;
use crate::store::{CheckpointStore, StoreError};
use crate::testing::{StopMode, TempPostgres};

async fn own_server() -> TempPostgres {
    TempPostgres::start()
        .await
        .unwrap_or_else(|error| panic!("expected a private PostgreSQL: {error}"))
}

fn config(url: &str, retry_for: Duration) -> PostgresConfig {
    PostgresConfig {
        pool_size: 4,
        retry_for,
        ..PostgresConfig::new(url)
    }
}

/// A writer appends batches in a loop while the server crashes and comes back: the writer
/// pauses, then carries on; every acknowledged batch is in the log exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_rides_out_a_server_crash_and_restart_without_losing_or_duplicating() {
    const BATCHES: u32 = 150;
    let server = own_server().await;
    let url = server.create_database("outage").await.unwrap();
    let store = PostgresStore::connect(config(&url, Duration::from_secs(60)))
        .await
        .unwrap();
    let (run_id, epoch) = suite::new_run(&store, "outage", 1).await;
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut attempt = 0;
            let mut acks = Vec::new();
            for round in 0..BATCHES {
                let size = round % 3 + 1;
                let events: Vec<Event> = (0..size)
                    .map(|_| {
                        attempt += 1;
                        suite::started(0, attempt)
                    })
                    .collect();
                let last = store
                    .append(epoch, suite::batch(run_id, &events))
                    .await
                    .unwrap_or_else(|error| panic!("batch {round}: append failed: {error}"));
                acks.push((last, size));
                let _ = acked_tx.send(round);
            }
            (acks, attempt)
        })
    };
    // Crash the server a third of the way in, twice, in different ways.
    for (mode, at) in [
        (StopMode::Immediate, BATCHES / 3),
        (StopMode::Fast, 2 * BATCHES / 3),
    ] {
        while let Some(round) = acked_rx.recv().await {
            if round >= at {
                break;
            }
        }
        server.stop_server(mode).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !writer.is_finished(),
            "the writer waits while the server is down"
        );
        server.start_server().await.unwrap();
    }
    let (acks, attempts) = writer.await.unwrap();
    let log = suite::read_all(&store).await;
    let positions: Vec<LogPosition> = log.iter().map(|checkpoint| checkpoint.position).collect();
    assert_eq!(
        positions,
        (1..=1 + attempts as LogPosition).collect::<Vec<_>>(),
        "positions 1..=N without gap"
    );
    let expected: Vec<Event> = (1..=attempts)
        .map(|attempt| suite::started(0, attempt))
        .collect();
    let found: Vec<Event> = log[1..]
        .iter()
        .map(|checkpoint| checkpoint.event.clone())
        .collect();
    assert!(
        found == expected,
        "every acknowledged checkpoint exactly once, in order (found {} checkpoints, expected {})",
        found.len(),
        expected.len()
    );
    let mut previous = 1;
    for (last, size) in acks {
        assert_eq!(
            last,
            previous + LogPosition::from(size),
            "each acknowledged batch ends where it was written"
        );
        previous = last;
    }
}

/// An append of a big batch interrupted by a server crash (retrying off) either committed
/// whole or not at all; an acknowledged one is always there. The kills are aimed at
/// fractions of the time one such append takes, measured first, so some land inside the
/// transaction and the last one after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_append_interrupted_by_a_crash_lands_whole_or_not_at_all() {
    const BIG: u32 = 5_000;
    let server = own_server().await;
    let events: Vec<Event> = (1..=BIG)
        .map(|attempt| suite::started(0, attempt))
        .collect();
    let url = server.create_database("crash_measure").await.unwrap();
    let store = PostgresStore::connect(config(&url, Duration::ZERO))
        .await
        .unwrap();
    let (run_id, epoch) = suite::new_run(&store, "crash", 1).await;
    let started = std::time::Instant::now();
    suite::append_ok(&store, epoch, suite::batch(run_id, &events)).await;
    let took = started.elapsed();
    drop(store);

    let mut outcomes = Vec::new();
    for (round, fraction) in [0.2, 0.5, 0.8, 0.95, 2.0].into_iter().enumerate() {
        let delay = took.mul_f64(fraction);
        let url = server
            .create_database(&format!("crash_{round}"))
            .await
            .unwrap();
        let store = PostgresStore::connect(config(&url, Duration::ZERO))
            .await
            .unwrap();
        let (run_id, epoch) = suite::new_run(&store, "crash", 1).await;
        let append = {
            let store = store.clone();
            let batch = suite::batch(run_id, &events);
            tokio::spawn(async move { store.append(epoch, batch).await })
        };
        tokio::time::sleep(delay).await;
        server.stop_server(StopMode::Immediate).await.unwrap();
        let result = append.await.unwrap();
        server.start_server().await.unwrap();
        drop(store);

        let reopened = PostgresStore::connect(config(&url, Duration::from_secs(30)))
            .await
            .unwrap();
        let log = reopened.read_run(run_id).await.unwrap();
        let landed = match log.len() {
            1 => false,
            n if n == 1 + BIG as usize => true,
            n => panic!("kill after {delay:?}: the batch landed in part: {n} checkpoints"),
        };
        if landed {
            let attempts: Vec<u32> = log[1..]
                .iter()
                .map(|checkpoint| match checkpoint.event {
                    Event::AttemptStarted { attempt, .. } => attempt,
                    ref other => panic!("unexpected event {other:?}"),
                })
                .collect();
            assert_eq!(
                attempts,
                (1..=BIG).collect::<Vec<_>>(),
                "whole and in order"
            );
        }
        match &result {
            Ok(last) => {
                assert!(landed, "kill after {delay:?}: acknowledged but not stored");
                assert_eq!(*last, 1 + LogPosition::from(BIG));
            }
            Err(StoreError::Backend { .. }) => {}
            Err(other) => panic!("kill after {delay:?}: expected Ok or Backend, found {other:?}"),
        }
        assert_eq!(
            suite::latest(&reopened).await,
            log.len() as LogPosition,
            "the head of the log matches the log"
        );
        outcomes.push((delay.as_millis(), result.is_ok(), landed));
    }
    eprintln!(
        "one append of {BIG} took {} ms; (kill after ms, acknowledged, landed): {outcomes:?}",
        took.as_millis()
    );
}

/// A store connecting while the server is down waits for it; reads during an outage wait
/// too; with a short `retry_for` a call gives up with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_waits_for_the_server_within_retry_for() {
    let server = own_server().await;
    let url = server.create_database("waiting").await.unwrap();
    let store = PostgresStore::connect(config(&url, Duration::from_secs(30)))
        .await
        .unwrap();
    let (run_id, _) = suite::new_run(&store, "waiting", 1).await;
    server.stop_server(StopMode::Immediate).await.unwrap();

    let impatient = PostgresStore::connect(config(&url, Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(
        matches!(&impatient, StoreError::Backend { detail, .. } if detail.contains("stayed unreachable")),
        "{impatient:?}"
    );
    let connecting = tokio::spawn(PostgresStore::connect(config(
        &url,
        Duration::from_secs(30),
    )));
    let reading = {
        let store = Arc::new(store.clone());
        tokio::spawn(async move { store.read_run(run_id).await })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !connecting.is_finished() && !reading.is_finished(),
        "both wait"
    );
    server.start_server().await.unwrap();
    let connected = connecting
        .await
        .unwrap()
        .expect("connects once the server is back");
    assert_eq!(
        reading.await.unwrap().unwrap().len(),
        1,
        "the read completes"
    );
    assert_eq!(suite::latest(&connected).await, 1);
}
