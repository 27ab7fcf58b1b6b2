//! A writer process killed with SIGKILL in the middle of an append leaves a store that
//! reopens cleanly with a whole, contiguous log holding every acknowledged batch.
//!
//! The test re-runs its own test binary as the child writer (selected by an env var), while
//! the parent process appends to the same file, so two processes contend for the lock too.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::SqliteStore;
use crate::checkpoint::{Event, LogPosition};
use crate::store::CheckpointStore;
use crate::store::suite;

/// Set in the child process: the store path.
const CHILD_STORE_ENV: &str = "TANDEM_TEST_KILLED_WRITER_STORE";

/// Batch sizes the child cycles through. The big one takes long enough (tens of ms or more)
/// for the kill to land inside its transaction.
const CHILD_BATCH_SIZES: [u32; 6] = [1, 3, BIG_BATCH, 1, 7, 500];
const BIG_BATCH: u32 = 20_000;

/// Acknowledged appends of the child before the parent aims its kill.
const KILL_AFTER_ACKS: usize = 20;

fn batch_size(batch: u32) -> u32 {
    CHILD_BATCH_SIZES[batch as usize % CHILD_BATCH_SIZES.len()]
}

/// As the parent (no env var): starts the child, appends from this process meanwhile, and
/// once the child has acknowledged [`KILL_AFTER_ACKS`] appends, kills it with SIGKILL half-way
/// through its next big batch (timed from the previous big batch). Then checks the store.
/// As the child (env var set): appends batches forever, printing `START BATCH` before and
/// `ACK BATCH POSITION MILLIS` after each append.
#[test]
fn a_killed_writer_process_leaves_a_whole_log() {
    if let Some(path) = std::env::var_os(CHILD_STORE_ENV) {
        child_writer(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let (parent_run, parent_epoch) = runtime.block_on(suite::new_run(&store, "parent", 1));

    let test_name = concat!(
        module_path!(),
        "::a_killed_writer_process_leaves_a_whole_log"
    )
    .split_once("::")
    .map(|(_, rest)| rest)
    .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_STORE_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The parent appends to its own run while the child writes.
    let stop = Arc::new(AtomicBool::new(false));
    let parent_writer = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        runtime.spawn(async move {
            let mut acknowledged = 0;
            while !stop.load(Ordering::SeqCst) {
                suite::append_ok(
                    &store,
                    parent_epoch,
                    suite::batch(parent_run, &[suite::started(0, acknowledged + 1)]),
                )
                .await;
                acknowledged += 1;
            }
            acknowledged
        })
    };

    let mut acks = 0;
    let mut last_ack: Option<(u32, LogPosition)> = None;
    let mut big_batch_millis: Option<u64> = None;
    let mut killed_during: Option<u32> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["ACK", batch, position, millis] => {
                let batch: u32 = batch.parse().unwrap();
                last_ack = Some((batch, position.parse().unwrap()));
                acks += 1;
                if batch_size(batch) == BIG_BATCH {
                    big_batch_millis = Some(millis.parse().unwrap());
                }
            }
            ["START", batch] => {
                let batch: u32 = batch.parse().unwrap();
                let Some(millis) = big_batch_millis else {
                    continue;
                };
                if (acks >= KILL_AFTER_ACKS && batch_size(batch) == BIG_BATCH)
                    || Instant::now() > deadline
                {
                    std::thread::sleep(Duration::from_millis(millis / 2));
                    killed_during = Some(batch);
                    break;
                }
            }
            _ => {}
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "expected the child to die of SIGKILL, found {status}; its stderr:\n{stderr}"
    );
    let killed_during = killed_during.expect("the kill was aimed at a big batch");
    // The child may have gone on (the aimed batch was quicker than the sleep): what it
    // printed before dying is still in the pipe.
    let mut last_started = killed_during;
    for line in lines {
        let line = line.unwrap();
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["ACK", batch, position, _] => {
                last_ack = Some((batch.parse().unwrap(), position.parse().unwrap()));
            }
            ["START", batch] => last_started = batch.parse().unwrap(),
            _ => {}
        }
    }
    let (last_batch, last_position) = last_ack.expect("the child acknowledged appends");
    stop.store(true, Ordering::SeqCst);
    let parent_acks = runtime.block_on(parent_writer).unwrap();
    drop(store);

    let reopened = SqliteStore::open(&path).unwrap();
    let log = runtime.block_on(suite::read_all(&reopened));
    let positions: Vec<LogPosition> = log.iter().map(|checkpoint| checkpoint.position).collect();
    assert_eq!(
        positions,
        (1..=log.len() as LogPosition).collect::<Vec<_>>(),
        "the log must be contiguous from 1"
    );
    assert!(
        log.len() as LogPosition >= last_position,
        "acknowledged position {last_position} lost: the log ends at {}",
        log.len()
    );

    // The child's batches: each whole (attempts 1..=size, in order), none missing.
    let child_run = log
        .iter()
        .find(|checkpoint| {
            matches!(&checkpoint.event, Event::RunCreated { workflow, .. } if workflow == "child")
        })
        .map(|checkpoint| checkpoint.run_id)
        .expect("the child's run was created");
    let mut child_batches: Vec<(u32, u32)> = Vec::new();
    let mut parent_attempts = 0;
    for checkpoint in &log {
        let Event::AttemptStarted { task, attempt, .. } = checkpoint.event else {
            continue;
        };
        if checkpoint.run_id == parent_run {
            parent_attempts += 1;
            assert_eq!(attempt, parent_attempts, "the parent's appends in order");
            continue;
        }
        assert_eq!(checkpoint.run_id, child_run);
        match child_batches.last_mut() {
            Some((batch, count)) if *batch == task => {
                *count += 1;
                assert_eq!(attempt, *count, "batch {task} in order");
            }
            _ => {
                assert_eq!(
                    task,
                    child_batches.len() as u32,
                    "batches in order, none missing"
                );
                assert_eq!(attempt, 1, "batch {task} starts with its first checkpoint");
                child_batches.push((task, 1));
            }
        }
    }
    for (batch, count) in &child_batches {
        assert_eq!(*count, batch_size(*batch), "batch {batch} must be whole");
    }
    let stored = child_batches.len() as u32;
    assert!(
        stored > last_batch,
        "acknowledged batch {last_batch} lost: the store holds batches 0..{stored}"
    );
    assert!(
        stored <= last_started + 1,
        "the store holds batch {} that was never started",
        stored - 1
    );
    assert_eq!(
        parent_attempts, parent_acks,
        "the parent's acknowledged appends survive"
    );
    eprintln!(
        "aimed the kill at the child's batch {killed_during} ({BIG_BATCH} checkpoints); it died in batch {last_started} (last acknowledged: {last_batch}), which was {}; the parent had {parent_acks} appends acknowledged",
        if stored > last_started {
            "committed whole"
        } else {
            "rolled back"
        }
    );

    let connection = rusqlite::Connection::open(&path).unwrap();
    let check: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(connection);
    let claimed = runtime
        .block_on(reopened.claim_run(child_run, &suite::owner("recovery", 3)))
        .unwrap();
    runtime.block_on(suite::append_ok(
        &reopened,
        claimed,
        suite::batch(child_run, &[suite::started(u32::MAX, 1)]),
    ));
}

/// The child: appends forever (until killed).
fn child_writer(path: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = SqliteStore::open(path).unwrap();
    let (run_id, epoch) = runtime.block_on(suite::new_run(&store, "child", 2));
    for batch in 0u32.. {
        let events: Vec<Event> = (1..=batch_size(batch))
            .map(|attempt| suite::started(batch, attempt))
            .collect();
        println!("START {batch}");
        let started = Instant::now();
        let position = runtime.block_on(suite::append_ok(
            &store,
            epoch,
            suite::batch(run_id, &events),
        ));
        println!("ACK {batch} {position} {}", started.elapsed().as_millis());
    }
}
