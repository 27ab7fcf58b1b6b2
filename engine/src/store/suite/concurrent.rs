//! Concurrent writers through several handles, with readers checking the log as it grows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::fixtures::{
    batch, join_readers, latest, new_runs, next_started, read_all, read_run_ok, started,
};
use crate::checkpoint::{Checkpoint, Event, LogPosition};
use crate::store::CheckpointStore;

/// Many tasks append at once through every handle in `handles` (at least two, all to the same
/// empty store) while readers tail the log: the log has no gap and no duplicate; a reader
/// that sees position N sees every position below N; each batch is contiguous and each
/// writer's checkpoints keep their order.
pub async fn test_concurrent_writers_and_readers(handles: &[Arc<dyn CheckpointStore>]) {
    const WRITERS: usize = 6;
    const BATCHES: u32 = 15;
    assert!(
        handles.len() >= 2,
        "expected at least two handles, found {}",
        handles.len()
    );
    let runs = new_runs(handles, "concurrent", WRITERS).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for reader in 0..2 {
        let store = Arc::clone(&handles[(reader + 1) % handles.len()]);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            if reader == 0 {
                tail_reader(&*store, &done).await
            } else {
                snapshot_reader(&*store, &done).await
            }
        }));
    }
    let mut writers = Vec::new();
    for (writer, (run_id, epoch)) in runs.iter().copied().enumerate() {
        let handles: Vec<Arc<dyn CheckpointStore>> = handles.to_vec();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut attempt = 0;
            for round in 0..BATCHES {
                let store = &handles[(writer + round as usize) % handles.len()];
                let size = (round % 4) as usize + 1;
                let events = next_started(writer as u32, size, &mut attempt);
                let last = store
                    .append(epoch, batch(run_id, &events))
                    .await
                    .unwrap_or_else(|error| panic!("writer {writer}: append failed: {error}"));
                acknowledged.push((last, size));
            }
            acknowledged
        }));
    }
    let mut acknowledged: HashMap<usize, Vec<(LogPosition, usize)>> = HashMap::new();
    for (writer, task) in writers.into_iter().enumerate() {
        let acks = task
            .await
            .unwrap_or_else(|error| panic!("writer task {writer} failed: {error}"));
        acknowledged.insert(writer, acks);
    }
    done.store(true, Ordering::SeqCst);
    join_readers(readers).await;

    let log = read_all(&*handles[0]).await;
    let writes_per_writer: usize = (0..BATCHES).map(|round| (round % 4) as usize + 1).sum();
    let total = WRITERS * (1 + writes_per_writer);
    let positions: Vec<LogPosition> = log.iter().map(|checkpoint| checkpoint.position).collect();
    assert_eq!(
        positions,
        (1..=total as LogPosition).collect::<Vec<_>>(),
        "expected positions 1..={total} without gap or duplicate"
    );
    let by_position: HashMap<LogPosition, &Checkpoint> = log
        .iter()
        .map(|checkpoint| (checkpoint.position, checkpoint))
        .collect();
    let mut all_acked = HashSet::new();
    for (writer, acks) in &acknowledged {
        let (run_id, epoch) = runs[*writer];
        let mut expected_attempt = 0;
        for (last, size) in acks {
            assert!(
                all_acked.insert(*last),
                "position {last} acknowledged twice"
            );
            for position in last + 1 - *size as LogPosition..=*last {
                let checkpoint = by_position[&position];
                expected_attempt += 1;
                assert_eq!(
                    (checkpoint.run_id, checkpoint.epoch, &checkpoint.event),
                    (run_id, epoch, &started(*writer as u32, expected_attempt)),
                    "writer {writer}: a batch must occupy contiguous positions ending at the acknowledged one ({last})"
                );
            }
        }
        for handle in handles {
            let events = read_run_ok(&**handle, run_id).await;
            assert_eq!(events.len(), 1 + expected_attempt as usize);
        }
    }
}

/// Follows the log like replication: each read starts right after the last position seen
/// and must continue it without a gap. Returns the number of reads.
async fn tail_reader(store: &dyn CheckpointStore, done: &AtomicBool) -> usize {
    let mut next: LogPosition = 1;
    let mut last_attempt: HashMap<u32, u32> = HashMap::new();
    let mut rounds = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let page = store
            .read_log(next - 1, 7)
            .await
            .unwrap_or_else(|error| panic!("tail reader: read_log failed: {error}"));
        rounds += 1;
        for checkpoint in &page {
            assert_eq!(
                checkpoint.position,
                next,
                "tail reader: expected position {next} right after {}, found {}",
                next - 1,
                checkpoint.position
            );
            next += 1;
            if let Event::AttemptStarted { task, attempt, .. } = checkpoint.event {
                let previous = last_attempt.insert(task, attempt).unwrap_or(0);
                assert_eq!(
                    attempt,
                    previous + 1,
                    "tail reader: writer {task}'s checkpoints must appear in order"
                );
            }
        }
        if finished && page.is_empty() {
            return rounds;
        }
        if page.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}

/// Repeatedly reads the latest position N, then the log up to N: it must be exactly 1..=N.
/// Returns the number of rounds.
async fn snapshot_reader(store: &dyn CheckpointStore, done: &AtomicBool) -> usize {
    let mut rounds = 0;
    let mut previous = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let latest = latest(store).await;
        assert!(
            latest >= previous,
            "latest_position went back from {previous} to {latest}"
        );
        previous = latest;
        let log = store
            .read_log(0, latest as usize)
            .await
            .unwrap_or_else(|error| panic!("snapshot reader: read_log failed: {error}"));
        let positions: Vec<LogPosition> =
            log.iter().map(|checkpoint| checkpoint.position).collect();
        assert_eq!(
            positions,
            (1..=latest).collect::<Vec<_>>(),
            "snapshot reader: having seen position {latest}, expected every position below it"
        );
        rounds += 1;
        if finished {
            return rounds;
        }
        tokio::task::yield_now().await;
    }
}
