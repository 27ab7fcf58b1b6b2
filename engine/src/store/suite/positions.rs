//! The position rule under concurrent writers: a reader that has seen position N has seen,
//! and will always see again, every position below N (replication relies on it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::fixtures::{batch, join_readers, new_runs, next_started, read_all};
use crate::checkpoint::LogPosition;
use crate::store::CheckpointStore;

/// Writers per run of the test, and batches per writer.
const WRITERS: usize = 8;
const BATCHES: u32 = 25;

/// Several tasks append batches of 1 to 5 checkpoints concurrently through every handle in
/// `handles` (independent handles to one empty store) while readers poll the log with
/// `read_log(after, limit)`:
/// - followers with different page sizes each continue from the last position they saw, and
///   every page must start right after it and have no gap (a position never shows up before
///   a lower one);
/// - a rewinding reader re-reads ranges below the highest position it has seen, which must
///   come back complete.
///
/// At the end the log holds positions 1..=N exactly.
pub async fn test_positions_never_skip(handles: &[Arc<dyn CheckpointStore>]) {
    assert!(!handles.is_empty(), "expected at least one handle");
    let runs = new_runs(handles, "positions", WRITERS).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (index, page) in [1usize, 5, 64].into_iter().enumerate() {
        let store = Arc::clone(&handles[index % handles.len()]);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(
            async move { follow(&*store, page, &done).await },
        ));
    }
    {
        let store = Arc::clone(&handles[handles.len() - 1]);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move { rewind(&*store, &done).await }));
    }
    let mut writers = Vec::new();
    for (writer, (run_id, epoch)) in runs.iter().copied().enumerate() {
        let handles = handles.to_vec();
        writers.push(tokio::spawn(async move {
            let mut attempt = 0;
            for round in 0..BATCHES {
                let store = &handles[(writer + round as usize) % handles.len()];
                let size = (round as usize * 7 + writer) % 5 + 1;
                let events = next_started(writer as u32, size, &mut attempt);
                store
                    .append(epoch, batch(run_id, &events))
                    .await
                    .unwrap_or_else(|error| panic!("writer {writer}: append failed: {error}"));
            }
            attempt as usize
        }));
    }
    let mut total = WRITERS;
    for (writer, task) in writers.into_iter().enumerate() {
        total += task
            .await
            .unwrap_or_else(|error| panic!("writer task {writer} failed: {error}"));
    }
    done.store(true, Ordering::SeqCst);
    join_readers(readers).await;
    let positions: Vec<LogPosition> = read_all(&*handles[0])
        .await
        .iter()
        .map(|checkpoint| checkpoint.position)
        .collect();
    assert_eq!(
        positions,
        (1..=total as LogPosition).collect::<Vec<_>>(),
        "expected positions 1..={total} exactly"
    );
}

/// Follows the log in pages of `page`: every page must continue right after the last
/// position seen, without a gap. Returns the number of reads.
async fn follow(store: &dyn CheckpointStore, page: usize, done: &AtomicBool) -> usize {
    let mut seen: LogPosition = 0;
    let mut rounds = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let read = store
            .read_log(seen, page)
            .await
            .unwrap_or_else(|error| panic!("follower ({page}): read_log({seen}) failed: {error}"));
        rounds += 1;
        assert!(
            read.len() <= page,
            "a page holds at most `limit` checkpoints"
        );
        for checkpoint in &read {
            assert_eq!(
                checkpoint.position,
                seen + 1,
                "follower (pages of {page}): having seen every position up to {seen}, the next one must be {}, found {}: a position was skipped and may show up later",
                seen + 1,
                checkpoint.position
            );
            seen = checkpoint.position;
        }
        if finished && read.is_empty() {
            return rounds;
        }
        if read.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}

/// Reads ahead to learn the highest position, then re-reads random ranges below it: each
/// must come back complete. Returns the number of reads.
async fn rewind(store: &dyn CheckpointStore, done: &AtomicBool) -> usize {
    let mut highest: LogPosition = 0;
    let mut rounds = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let ahead = store
            .read_log(highest, 1000)
            .await
            .unwrap_or_else(|error| panic!("rewinding reader: read_log failed: {error}"));
        if let Some(last) = ahead.last() {
            highest = last.position;
        }
        if highest > 0 {
            let after = fastrand::u64(0..highest);
            let limit = fastrand::usize(1..=32);
            let read = store
                .read_log(after, limit)
                .await
                .unwrap_or_else(|error| panic!("rewinding reader: read_log failed: {error}"));
            let expected_len = limit.min((highest - after) as usize);
            let positions: Vec<LogPosition> =
                read.iter().map(|checkpoint| checkpoint.position).collect();
            assert!(
                positions.len() >= expected_len
                    && positions[..expected_len]
                        == (after + 1..=after + expected_len as LogPosition).collect::<Vec<_>>(),
                "rewinding reader: having seen position {highest}, read_log({after}, {limit}) must return {} to {}, found {positions:?}",
                after + 1,
                after + expected_len as LogPosition
            );
        }
        rounds += 1;
        if finished {
            return rounds;
        }
        tokio::task::yield_now().await;
    }
}
