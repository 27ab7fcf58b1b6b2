//! Helpers shared by the tests: owners, events, batches, and calls that panic with context.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::checkpoint::{
    Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunEnd, RunId, UnixMillis,
};
use crate::store::{CheckpointStore, CreateOutcome, Owner, RunFilter, RunStatus, RunSummary};

/// Tolerance on commit times, for wall clocks that step.
pub(super) const CLOCK_SLACK_MS: UnixMillis = 5_000;

/// An owner named after `host` with process id `pid`.
pub fn owner(host: &str, pid: u32) -> Owner {
    Owner {
        host: host.to_string(),
        pid,
        start_ticks: 1000 + u64::from(pid),
    }
}

/// The `run_created` event of a run of `workflow`, created at [`created_at`]`(seq)`.
pub fn created_event(workflow: &str, seq: i64) -> Event {
    Event::RunCreated {
        workflow: workflow.to_string(),
        version: version_of(workflow),
        source_path: format!("/flows/{workflow}.yaml"),
        source: format!("name: {workflow}\ntasks:\n  a:\n    run: \"true\"\n"),
        params: BTreeMap::new(),
        at: created_at(seq),
    }
}

/// The creation time used for the `seq`-th test run: increasing with `seq`.
pub fn created_at(seq: i64) -> UnixMillis {
    1_700_000_000_000 + seq * 1000
}

/// A stand-in workflow version for `workflow`.
pub(super) fn version_of(workflow: &str) -> String {
    format!("{workflow}-v1")
}

/// An `attempt_started` event (the payload the tests use to tag checkpoints).
pub fn started(task: u32, attempt: u32) -> Event {
    Event::AttemptStarted {
        task,
        attempt,
        at: 1_800_000_000_000,
    }
}

pub(super) fn finished(state: RunEnd, at: UnixMillis) -> Event {
    Event::RunFinished {
        state,
        at,
        reason: format!("test run {state}"),
    }
}

/// The next `size` `attempt_started` events of writer `writer` (its task number), numbering
/// the attempts on from `*attempt`, which is left at the last one.
pub(super) fn next_started(writer: u32, size: usize, attempt: &mut u32) -> Vec<Event> {
    (0..size)
        .map(|_| {
            *attempt += 1;
            started(writer, *attempt)
        })
        .collect()
}

/// `events` as checkpoints of `run_id`.
pub fn batch(run_id: RunId, events: &[Event]) -> Vec<NewCheckpoint> {
    events
        .iter()
        .map(|event| NewCheckpoint {
            run_id,
            event: event.clone(),
        })
        .collect()
}

pub(super) fn filter(workflow: Option<&str>, status: Option<RunStatus>, limit: usize) -> RunFilter {
    RunFilter {
        workflow: workflow.map(str::to_string),
        status,
        limit,
        before: None,
    }
}

/// Creates run `run_id`, panicking on error.
pub async fn create(
    store: &dyn CheckpointStore,
    run_id: RunId,
    owner: &Owner,
    created: Event,
) -> Epoch {
    store
        .create_run(run_id, owner, created)
        .await
        .unwrap_or_else(|error| panic!("create_run({run_id}) failed: {error}"))
}

/// Creates a new run of `workflow` (the `seq`-th), owned by `owner(workflow, seq)`.
pub async fn new_run(store: &dyn CheckpointStore, workflow: &str, seq: i64) -> (RunId, Epoch) {
    let run_id = RunId::new();
    let epoch = create(
        store,
        run_id,
        &owner(workflow, seq as u32),
        created_event(workflow, seq),
    )
    .await;
    (run_id, epoch)
}

/// `count` new runs of `workflow` (the `seq`-th created through `handles[seq % len]`), for
/// the concurrency tests' writers, one run each.
pub(super) async fn new_runs(
    handles: &[Arc<dyn CheckpointStore>],
    workflow: &str,
    count: usize,
) -> Vec<(RunId, Epoch)> {
    let mut runs = Vec::with_capacity(count);
    for seq in 0..count {
        let store = &handles[seq % handles.len()];
        runs.push(new_run(&**store, workflow, seq as i64).await);
    }
    runs
}

/// Waits for the concurrency tests' reader tasks, each returning its number of reads, and
/// checks that none failed and each read at least once.
pub(super) async fn join_readers(readers: Vec<JoinHandle<usize>>) {
    for task in readers {
        let rounds = task
            .await
            .unwrap_or_else(|error| panic!("reader task failed: {error}"));
        assert!(rounds > 0, "every reader read at least once");
    }
}

/// Appends `batch` with `epoch`, panicking on error.
pub async fn append_ok(
    store: &dyn CheckpointStore,
    epoch: Epoch,
    batch: Vec<NewCheckpoint>,
) -> LogPosition {
    let size = batch.len();
    store.append(epoch, batch).await.unwrap_or_else(|error| {
        panic!("append of {size} checkpoints with epoch {epoch} failed: {error}")
    })
}

/// The latest position, panicking on error.
pub async fn latest(store: &dyn CheckpointStore) -> LogPosition {
    store
        .latest_position()
        .await
        .unwrap_or_else(|error| panic!("latest_position failed: {error}"))
}

/// The whole log, read in pages of 1000.
pub async fn read_all(store: &dyn CheckpointStore) -> Vec<Checkpoint> {
    let mut log = Vec::new();
    loop {
        let after = log
            .last()
            .map_or(0, |checkpoint: &Checkpoint| checkpoint.position);
        let page = store
            .read_log(after, 1000)
            .await
            .unwrap_or_else(|error| panic!("read_log({after}, 1000) failed: {error}"));
        if page.is_empty() {
            return log;
        }
        log.extend(page);
    }
}

pub(super) async fn read_run_ok(store: &dyn CheckpointStore, run_id: RunId) -> Vec<Checkpoint> {
    store
        .read_run(run_id)
        .await
        .unwrap_or_else(|error| panic!("read_run({run_id}) failed: {error}"))
}

pub(super) async fn summary_ok(store: &dyn CheckpointStore, run_id: RunId) -> RunSummary {
    store
        .run_summary(run_id)
        .await
        .unwrap_or_else(|error| panic!("run_summary({run_id}) failed: {error}"))
}

/// Awaits callers that raced to create one run, each giving the run id it tried and the
/// store's answer: `(created, existing)`, the `(run id, epoch)` of every caller that created
/// and the set of run ids the others were told exists.
pub(super) async fn racing_outcomes(
    tasks: Vec<JoinHandle<(RunId, CreateOutcome)>>,
) -> (Vec<(RunId, Epoch)>, HashSet<RunId>) {
    let mut created = Vec::new();
    let mut existing = HashSet::new();
    for task in tasks {
        let (run_id, outcome) = task.await.expect("the caller task runs");
        match outcome {
            CreateOutcome::Created(epoch) => created.push((run_id, epoch)),
            CreateOutcome::Existing(run) => {
                existing.insert(run);
            }
        }
    }
    (created, existing)
}
