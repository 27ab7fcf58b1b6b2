//! The shared test suite every [`CheckpointStore`] must pass (the pattern of GreptimeDB's
//! `test_kv_*(&impl KvBackend)`): one public async function per behaviour, backend-neutral,
//! panicking with a message that says what was expected and what was found.
//!
//! Each `test_*` function expects an *empty* store (no runs, no checkpoints) unless its
//! documentation says otherwise. [`run_all`] runs every one of them, each on a fresh store
//! made by a [`StoreFactory`]. Call it from a multi-threaded tokio runtime
//! (`#[tokio::test(flavor = "multi_thread")]`) so the concurrency tests really run in
//! parallel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{CheckpointStore, Owner, RunFilter, RunStatus, StoreError};
use crate::checkpoint::{
    AttemptOutcome, Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunEnd, RunId, TaskEnd,
    UnixMillis, now_millis,
};

/// Makes the stores the suite runs on.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A new, empty store: no runs, no checkpoints.
    async fn empty_store(&self) -> Result<Arc<dyn CheckpointStore>, StoreError>;

    /// Another, independent handle to the same store as `store` (its own connections), as a
    /// second process would open it.
    async fn another_handle(
        &self,
        store: &dyn CheckpointStore,
    ) -> Result<Arc<dyn CheckpointStore>, StoreError>;
}

/// Runs every test of the suite, each on a fresh store from `factory`; the concurrency test
/// gets three handles (two of them independent) to one store.
pub async fn run_all(factory: &dyn StoreFactory) {
    test_round_trip_every_event(&*fresh(factory).await).await;
    test_positions_contiguous_from_one(&*fresh(factory).await).await;
    test_read_log_paging(&*fresh(factory).await).await;
    test_latest_position(&*fresh(factory).await).await;
    test_list_runs_filters(&*fresh(factory).await).await;
    test_run_summary(&*fresh(factory).await).await;
    test_run_finished_updates_status(&*fresh(factory).await).await;
    test_run_exists_and_not_found(&*fresh(factory).await).await;
    test_fencing(&*fresh(factory).await).await;
    test_epochs_grow_across_runs(&*fresh(factory).await).await;
    test_invalid_appends_write_nothing(&*fresh(factory).await).await;
    let (first, second) = two_handles(factory).await;
    test_fencing_across_handles(&*first, &*second).await;
    let (first, second) = two_handles(factory).await;
    let handles = [Arc::clone(&first), second, first];
    test_concurrent_writers_and_readers(&handles).await;
}

/// A fresh store from `factory`, or a panic saying why there is none.
pub async fn fresh(factory: &dyn StoreFactory) -> Arc<dyn CheckpointStore> {
    factory
        .empty_store()
        .await
        .unwrap_or_else(|error| panic!("expected a fresh empty store, found an error: {error}"))
}

/// Two independent handles to one fresh store from `factory`.
pub async fn two_handles(
    factory: &dyn StoreFactory,
) -> (Arc<dyn CheckpointStore>, Arc<dyn CheckpointStore>) {
    let first = fresh(factory).await;
    let second = factory
        .another_handle(&*first)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "expected a second handle to {}, found an error: {error}",
                first.location()
            )
        });
    (first, second)
}

/// Every [`Event`] variant (and every [`AttemptOutcome`] and [`TaskEnd`]) comes back from
/// `read_run` and `read_log` exactly as appended, with its run, the writer's epoch, increasing
/// positions and a commit time.
pub async fn test_round_trip_every_event(store: &dyn CheckpointStore) {
    let run_id = RunId::new();
    let created = Event::RunCreated {
        workflow: "nightly-etl".into(),
        version: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        source_path: "/srv/flows/nightly ünïcødé.yaml".into(),
        source: "name: nightly-etl\ntasks:\n  extract:\n    run: echo \"hi\" && exit 0\n".into(),
        params: BTreeMap::from([
            ("date".to_string(), "2026-11-21".to_string()),
            ("quote\"d".to_string(), "line\nbreak\ttab \\ ✓".to_string()),
            (String::new(), String::new()),
        ]),
        at: 1_700_000_000_000,
    };
    let before = now_millis();
    let epoch = create(store, run_id, &owner("a", 1), created.clone()).await;
    let events = every_event_but_created();
    let covered: HashSet<usize> = std::iter::once(&created)
        .chain(&events)
        .map(event_variant)
        .collect();
    assert_eq!(
        covered.len(),
        EVENT_VARIANTS,
        "the round-trip test must cover every Event variant"
    );
    let outcomes: HashSet<usize> = events
        .iter()
        .filter_map(|event| match event {
            Event::AttemptFinished { outcome, .. } => Some(outcome_variant(outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(
        outcomes.len(),
        OUTCOME_VARIANTS,
        "every AttemptOutcome must be covered"
    );
    let ends: HashSet<usize> = events
        .iter()
        .filter_map(|event| match event {
            Event::TaskFinished { state, .. } => Some(task_end_variant(*state)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends.len(),
        TASK_END_VARIANTS,
        "every TaskEnd must be covered"
    );

    let last = append_ok(store, epoch, batch(run_id, &events)).await;
    let after = now_millis();
    assert_eq!(
        last,
        1 + events.len() as LogPosition,
        "append must return the position of the last checkpoint of the batch"
    );
    let read = read_run_ok(store, run_id).await;
    let expected: Vec<Event> = std::iter::once(created).chain(events).collect();
    let read_events: Vec<Event> = read
        .iter()
        .map(|checkpoint| checkpoint.event.clone())
        .collect();
    assert_eq!(
        read_events, expected,
        "read_run must return the events as appended"
    );
    for (index, checkpoint) in read.iter().enumerate() {
        assert_eq!(
            checkpoint.position,
            index as LogPosition + 1,
            "positions from 1"
        );
        assert_eq!(checkpoint.run_id, run_id);
        assert_eq!(
            checkpoint.epoch, epoch,
            "every checkpoint carries the writer's epoch"
        );
        assert!(
            checkpoint.recorded_at >= before - CLOCK_SLACK_MS
                && checkpoint.recorded_at <= after + CLOCK_SLACK_MS,
            "expected recorded_at within [{before}, {after}] ms, found {}",
            checkpoint.recorded_at
        );
    }
    let log = store
        .read_log(0, 1000)
        .await
        .unwrap_or_else(|error| panic!("read_log failed: {error}"));
    assert_eq!(
        log, read,
        "read_log and read_run must agree on a one-run store"
    );
}

/// Positions start at 1 and grow by one per checkpoint, across runs and batches, and
/// `append` returns the last position of its batch.
pub async fn test_positions_contiguous_from_one(store: &dyn CheckpointStore) {
    assert_eq!(latest(store).await, 0, "expected an empty store");
    let (first, first_epoch) = new_run(store, "alpha", 1).await;
    let (second, second_epoch) = new_run(store, "beta", 2).await;
    let mut expected_runs = vec![first, second];
    for round in 0..4u32 {
        let size = round as usize + 1;
        let (run_id, epoch) = if round % 2 == 0 {
            (first, first_epoch)
        } else {
            (second, second_epoch)
        };
        let before = latest(store).await;
        let events: Vec<Event> = (1..=size as u32).map(|i| started(round, i)).collect();
        let last = append_ok(store, epoch, batch(run_id, &events)).await;
        assert_eq!(
            last,
            before + size as LogPosition,
            "a batch of {size} after position {before} must end at {}",
            before + size as LogPosition
        );
        expected_runs.extend(std::iter::repeat_n(run_id, size));
    }
    // A batch touching both runs at once (both epochs allowed: the later one is the newer).
    let mixed = vec![
        NewCheckpoint {
            run_id: first,
            event: started(9, 1),
        },
        NewCheckpoint {
            run_id: second,
            event: started(9, 2),
        },
    ];
    let last = append_ok(store, second_epoch.max(first_epoch), mixed).await;
    expected_runs.extend([first, second]);
    let log = read_all(store).await;
    let positions: Vec<LogPosition> = log.iter().map(|checkpoint| checkpoint.position).collect();
    let expected: Vec<LogPosition> = (1..=expected_runs.len() as LogPosition).collect();
    assert_eq!(positions, expected, "positions must be 1..=N without gaps");
    assert_eq!(last, expected_runs.len() as LogPosition);
    let runs: Vec<RunId> = log.iter().map(|checkpoint| checkpoint.run_id).collect();
    assert_eq!(runs, expected_runs, "the log must keep the append order");
}

/// `read_log(after, limit)` pages through the log: at most `limit` checkpoints after `after`,
/// in order; nothing after the end; nothing for a limit of 0.
pub async fn test_read_log_paging(store: &dyn CheckpointStore) {
    let (run_id, epoch) = new_run(store, "paging", 1).await;
    let events: Vec<Event> = (1..=24).map(|attempt| started(0, attempt)).collect();
    append_ok(store, epoch, batch(run_id, &events)).await;
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .read_log(after, 10)
            .await
            .unwrap_or_else(|error| panic!("read_log({after}, 10) failed: {error}"));
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10, "a page holds at most `limit` checkpoints");
        let positions: Vec<LogPosition> =
            page.iter().map(|checkpoint| checkpoint.position).collect();
        let expected: Vec<LogPosition> = (after + 1..=after + page.len() as LogPosition).collect();
        assert_eq!(positions, expected, "a page starts right after `after`");
        after = *positions.last().unwrap_or(&after);
        pages.push(page.len());
        assert!(pages.len() <= 10, "paging does not end: pages {pages:?}");
    }
    assert_eq!(pages, vec![10, 10, 5], "25 checkpoints in pages of 10");
    for (after, limit, expected) in [
        (25, 10, 0),
        (1000, 10, 0),
        (0, 0, 0),
        (24, 10, 1),
        (3, 2, 2),
    ] {
        let page = store
            .read_log(after, limit)
            .await
            .unwrap_or_else(|error| panic!("read_log({after}, {limit}) failed: {error}"));
        assert_eq!(
            page.len(),
            expected,
            "read_log({after}, {limit}) on 25 checkpoints: expected {expected}, found {page:?}"
        );
        if let Some(first) = page.first() {
            assert_eq!(first.position, after + 1);
        }
    }
    let all = store
        .read_log(0, usize::MAX)
        .await
        .unwrap_or_else(|error| panic!("read_log(0, usize::MAX) failed: {error}"));
    assert_eq!(all.len(), 25, "a huge limit returns everything");
    let beyond = store
        .read_log(u64::MAX, 10)
        .await
        .unwrap_or_else(|error| panic!("read_log(u64::MAX, 10) failed: {error}"));
    assert!(beyond.is_empty(), "nothing lies after position u64::MAX");
}

/// `latest_position` is 0 on an empty store and follows every commit; an empty append
/// returns it and writes nothing.
pub async fn test_latest_position(store: &dyn CheckpointStore) {
    assert_eq!(latest(store).await, 0, "expected 0 on an empty store");
    let (run_id, epoch) = new_run(store, "latest", 1).await;
    assert_eq!(
        latest(store).await,
        1,
        "the run_created checkpoint is position 1"
    );
    let empty = append_ok(store, epoch, Vec::new()).await;
    assert_eq!(empty, 1, "an empty append returns the latest position");
    assert_eq!(latest(store).await, 1, "an empty append writes nothing");
    let last = append_ok(store, epoch, batch(run_id, &[started(0, 1), started(0, 2)])).await;
    assert_eq!(last, 3);
    assert_eq!(latest(store).await, 3);
    let (_, _) = new_run(store, "latest", 2).await;
    assert_eq!(latest(store).await, 4, "create_run appends one checkpoint");
}

/// `list_runs` filters by workflow and status, honours the limit (0: none) and returns the
/// newest run first.
pub async fn test_list_runs_filters(store: &dyn CheckpointStore) {
    let (alpha1, alpha1_epoch) = new_run(store, "alpha", 1).await;
    let (beta1, beta1_epoch) = new_run(store, "beta", 2).await;
    let (alpha2, _) = new_run(store, "alpha", 3).await;
    let (alpha3, _) = new_run(store, "alpha", 4).await;
    append_ok(
        store,
        alpha1_epoch,
        batch(alpha1, &[finished(RunEnd::Failed, 50)]),
    )
    .await;
    append_ok(
        store,
        beta1_epoch,
        batch(beta1, &[finished(RunEnd::Succeeded, 60)]),
    )
    .await;
    let cases: Vec<(RunFilter, Vec<RunId>)> = vec![
        (RunFilter::default(), vec![alpha3, alpha2, beta1, alpha1]),
        (filter(Some("alpha"), None, 0), vec![alpha3, alpha2, alpha1]),
        (filter(Some("beta"), None, 0), vec![beta1]),
        (
            filter(None, Some(RunStatus::Running), 0),
            vec![alpha3, alpha2],
        ),
        (
            filter(Some("alpha"), Some(RunStatus::Failed), 0),
            vec![alpha1],
        ),
        (filter(Some("beta"), Some(RunStatus::Failed), 0), vec![]),
        (filter(None, Some(RunStatus::Succeeded), 0), vec![beta1]),
        (filter(None, Some(RunStatus::Cancelled), 0), vec![]),
        (filter(None, None, 2), vec![alpha3, alpha2]),
        (filter(Some("alpha"), None, 1), vec![alpha3]),
        (filter(None, None, 100), vec![alpha3, alpha2, beta1, alpha1]),
        (filter(Some("gamma"), None, 0), vec![]),
    ];
    for (filter, expected) in cases {
        let runs = store
            .list_runs(&filter)
            .await
            .unwrap_or_else(|error| panic!("list_runs({filter:?}) failed: {error}"));
        let found: Vec<RunId> = runs.iter().map(|run| run.run_id).collect();
        assert_eq!(found, expected, "list_runs({filter:?})");
        for run in &runs {
            if let Some(workflow) = &filter.workflow {
                assert_eq!(&run.workflow, workflow);
            }
            if let Some(status) = filter.status {
                assert_eq!(run.status, status);
            }
        }
    }
}

/// `run_summary` reports the run table row: workflow, version, status, times, owner and
/// owner epoch, and follows `claim_run`.
pub async fn test_run_summary(store: &dyn CheckpointStore) {
    let run_id = RunId::new();
    let first_owner = owner("host-a", 41);
    let epoch = create(store, run_id, &first_owner, created_event("summary", 7)).await;
    let summary = summary_ok(store, run_id).await;
    assert_eq!(summary.run_id, run_id);
    assert_eq!(summary.workflow, "summary");
    assert_eq!(summary.version, version_of("summary"));
    assert_eq!(summary.status, RunStatus::Running);
    assert_eq!(
        summary.created_at,
        created_at(7),
        "created_at is the run_created time"
    );
    assert_eq!(summary.finished_at, None);
    assert_eq!(summary.owner_epoch, epoch);
    assert_eq!(summary.owner, first_owner);

    let second_owner = Owner {
        host: "host-b".into(),
        pid: u32::MAX,
        start_ticks: 1 << 40,
    };
    let claimed = store
        .claim_run(run_id, &second_owner)
        .await
        .unwrap_or_else(|error| panic!("claim_run failed: {error}"));
    assert!(
        claimed > epoch,
        "a claim allocates a newer epoch ({claimed} > {epoch})"
    );
    let summary = summary_ok(store, run_id).await;
    assert_eq!(summary.owner_epoch, claimed);
    assert_eq!(
        summary.owner, second_owner,
        "claim_run records the new owner"
    );
    assert_eq!(summary.status, RunStatus::Running);
    assert_eq!(
        read_run_ok(store, run_id).await.len(),
        1,
        "claim_run appends no checkpoint"
    );
}

/// A `run_finished` checkpoint sets the run's status and finished time, for every
/// [`RunEnd`]; other checkpoints leave the run running.
pub async fn test_run_finished_updates_status(store: &dyn CheckpointStore) {
    let ends = [
        (RunEnd::Succeeded, RunStatus::Succeeded),
        (RunEnd::Failed, RunStatus::Failed),
        (RunEnd::Cancelled, RunStatus::Cancelled),
        (RunEnd::TimedOut, RunStatus::TimedOut),
    ];
    for (index, (end, status)) in ends.into_iter().enumerate() {
        let (run_id, epoch) = new_run(store, "finishing", index as i64).await;
        append_ok(store, epoch, batch(run_id, &[started(0, 1)])).await;
        assert_eq!(summary_ok(store, run_id).await.status, RunStatus::Running);
        let at = 2_000_000_000_000 + index as UnixMillis;
        append_ok(store, epoch, batch(run_id, &[finished(end, at)])).await;
        let summary = summary_ok(store, run_id).await;
        assert_eq!(
            summary.status, status,
            "RunFinished({end}) sets status {status}"
        );
        assert_eq!(
            summary.finished_at,
            Some(at),
            "finished_at is the run_finished time"
        );
        assert!(summary.status.is_terminal());
    }
}

/// Creating a run twice gives `RunExists` and writes nothing; claiming, reading and
/// summarizing an unknown run give `RunNotFound`.
pub async fn test_run_exists_and_not_found(store: &dyn CheckpointStore) {
    let (run_id, _) = new_run(store, "exists", 1).await;
    let position = latest(store).await;
    let error = store
        .create_run(run_id, &owner("other", 2), created_event("exists", 2))
        .await
        .expect_err("creating an existing run must fail");
    assert_eq!(
        error,
        StoreError::RunExists {
            run_id,
            location: store.location()
        }
    );
    assert_eq!(
        latest(store).await,
        position,
        "a refused create writes nothing"
    );
    assert_eq!(
        summary_ok(store, run_id).await.owner,
        owner("exists", 1),
        "a refused create leaves the run's owner alone"
    );

    let unknown = RunId::new();
    let not_found = StoreError::RunNotFound {
        run_id: unknown,
        location: store.location(),
    };
    assert_eq!(
        store.claim_run(unknown, &owner("x", 3)).await,
        Err(not_found.clone()),
        "claim_run of an unknown run"
    );
    assert_eq!(
        store.read_run(unknown).await,
        Err(not_found.clone()),
        "read_run"
    );
    assert_eq!(
        store.run_summary(unknown).await,
        Err(not_found),
        "run_summary"
    );
    assert_eq!(latest(store).await, position, "failed calls write nothing");
}

/// After `claim_run`, an append with the previous owner's epoch is refused whole with
/// `Fenced` (even the checkpoints of other runs in the same batch are not written); the new
/// owner's epoch is accepted.
pub async fn test_fencing(store: &dyn CheckpointStore) {
    let (run_a, old_epoch) = new_run(store, "fenced", 1).await;
    let (run_b, epoch_b) = new_run(store, "bystander", 2).await;
    append_ok(store, old_epoch, batch(run_a, &[started(0, 1)])).await;
    let new_epoch = store
        .claim_run(run_a, &owner("new-owner", 3))
        .await
        .unwrap_or_else(|error| panic!("claim_run failed: {error}"));
    assert!(new_epoch > old_epoch && new_epoch > epoch_b);
    let position = latest(store).await;

    let refused = store
        .append(old_epoch, batch(run_a, &[started(0, 2)]))
        .await;
    assert_eq!(
        refused,
        Err(StoreError::Fenced {
            run_id: run_a,
            epoch: old_epoch,
            owner_epoch: new_epoch
        }),
        "an append with the old owner's epoch must be fenced"
    );
    // Run B alone would accept `epoch_b`; the batch is refused whole because of run A.
    let mixed = vec![
        NewCheckpoint {
            run_id: run_b,
            event: started(1, 1),
        },
        NewCheckpoint {
            run_id: run_a,
            event: started(0, 2),
        },
    ];
    let refused = store.append(old_epoch.max(epoch_b), mixed).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { run_id, .. }) if run_id == run_a),
        "expected Fenced for run {run_a}, found {refused:?}"
    );
    assert_eq!(
        latest(store).await,
        position,
        "a fenced append writes nothing"
    );
    assert_eq!(
        read_run_ok(store, run_b).await.len(),
        1,
        "run B got nothing"
    );

    let accepted = append_ok(store, new_epoch, batch(run_a, &[started(0, 2)])).await;
    assert_eq!(accepted, position + 1, "the new owner's epoch is accepted");
    let accepted = append_ok(store, epoch_b, batch(run_b, &[started(1, 1)])).await;
    assert_eq!(
        accepted,
        position + 2,
        "run B's own owner is not fenced by run A's claim"
    );
    let last = read_run_ok(store, run_a).await;
    assert_eq!(
        last.last().map(|checkpoint| checkpoint.epoch),
        Some(new_epoch)
    );

    // A second claim fences the first claimant as well.
    let newest = store
        .claim_run(run_a, &owner("newest-owner", 4))
        .await
        .unwrap_or_else(|error| panic!("claim_run failed: {error}"));
    assert!(newest > new_epoch);
    assert!(matches!(
        store
            .append(new_epoch, batch(run_a, &[started(0, 3)]))
            .await,
        Err(StoreError::Fenced { .. })
    ));
}

/// Epochs from `create_run` and `claim_run` strictly grow across all runs of the store.
pub async fn test_epochs_grow_across_runs(store: &dyn CheckpointStore) {
    let mut epochs = Vec::new();
    let mut runs = Vec::new();
    for index in 0..4 {
        let (run_id, epoch) = new_run(store, "epochs", index).await;
        epochs.push(epoch);
        runs.push(run_id);
        let claimed = store
            .claim_run(runs[0], &owner("claimer", index as u32))
            .await
            .unwrap_or_else(|error| panic!("claim_run failed: {error}"));
        epochs.push(claimed);
    }
    for pair in epochs.windows(2) {
        assert!(
            pair[1] > pair[0],
            "expected every new epoch to be greater than all before, found the sequence {epochs:?}"
        );
    }
    assert!(epochs[0] > Epoch(0), "epochs start above 0");
}

/// Malformed appends are refused with `InvalidAppend` and write nothing: a `run_created`
/// event in `append`, a checkpoint for an unknown run (even beside valid ones), and a
/// `create_run` whose event is not `run_created`.
pub async fn test_invalid_appends_write_nothing(store: &dyn CheckpointStore) {
    let (run_id, epoch) = new_run(store, "invalid", 1).await;
    append_ok(store, epoch, batch(run_id, &[started(0, 1)])).await;
    let position = latest(store).await;
    let before = read_run_ok(store, run_id).await;

    let second_created = vec![
        NewCheckpoint {
            run_id,
            event: started(0, 2),
        },
        NewCheckpoint {
            run_id,
            event: created_event("invalid", 1),
        },
    ];
    let refused = store.append(epoch, second_created).await;
    assert!(
        matches!(&refused, Err(StoreError::InvalidAppend { location, .. }) if *location == store.location()),
        "a run_created in append: expected InvalidAppend, found {refused:?}"
    );

    let unknown = RunId::new();
    let with_unknown = vec![
        NewCheckpoint {
            run_id,
            event: started(0, 2),
        },
        NewCheckpoint {
            run_id: unknown,
            event: started(0, 1),
        },
    ];
    let refused = store.append(epoch, with_unknown).await;
    assert!(
        matches!(&refused, Err(StoreError::InvalidAppend { detail, .. }) if detail.contains(&unknown.to_string())),
        "a checkpoint of an unknown run: expected InvalidAppend naming {unknown}, found {refused:?}"
    );

    let other = RunId::new();
    let refused = store.create_run(other, &owner("x", 2), started(0, 1)).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidAppend { .. })),
        "create_run with an attempt_started event: expected InvalidAppend, found {refused:?}"
    );
    assert!(
        matches!(
            store.run_summary(other).await,
            Err(StoreError::RunNotFound { .. })
        ),
        "a refused create_run creates no run"
    );

    assert_eq!(
        latest(store).await,
        position,
        "refused appends write nothing"
    );
    assert_eq!(read_run_ok(store, run_id).await, before);
    let accepted = append_ok(store, epoch, batch(run_id, &[started(0, 2)])).await;
    assert_eq!(
        accepted,
        position + 1,
        "the store still accepts valid appends"
    );
}

/// Fencing holds across independent handles (two processes): a claim through `second`
/// fences an owner writing through `first`, and the refusal writes nothing.
pub async fn test_fencing_across_handles(
    first: &dyn CheckpointStore,
    second: &dyn CheckpointStore,
) {
    let (run_id, old_epoch) = new_run(first, "handles", 1).await;
    append_ok(first, old_epoch, batch(run_id, &[started(0, 1)])).await;
    let new_epoch = second
        .claim_run(run_id, &owner("second", 2))
        .await
        .unwrap_or_else(|error| panic!("claim_run through the second handle failed: {error}"));
    let position = latest(second).await;
    assert_eq!(
        latest(first).await,
        position,
        "both handles see the same log"
    );
    let refused = first
        .append(old_epoch, batch(run_id, &[started(0, 2)]))
        .await;
    assert_eq!(
        refused,
        Err(StoreError::Fenced {
            run_id,
            epoch: old_epoch,
            owner_epoch: new_epoch
        })
    );
    assert_eq!(latest(second).await, position, "nothing written");
    append_ok(second, new_epoch, batch(run_id, &[started(0, 2)])).await;
    assert_eq!(
        summary_ok(first, run_id).await.owner,
        owner("second", 2),
        "the first handle sees the claim"
    );
    let (other, other_epoch) = new_run(second, "handles", 3).await;
    assert!(other_epoch > new_epoch, "epochs grow across handles");
    assert_eq!(read_run_ok(first, other).await.len(), 1);
}

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
    let mut runs = Vec::new();
    for writer in 0..WRITERS {
        let store = &handles[writer % handles.len()];
        runs.push(new_run(&**store, "concurrent", writer as i64).await);
    }
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
                let events: Vec<Event> = (0..size)
                    .map(|_| {
                        attempt += 1;
                        started(writer as u32, attempt)
                    })
                    .collect();
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
    for task in readers {
        let rounds = task
            .await
            .unwrap_or_else(|error| panic!("reader task failed: {error}"));
        assert!(rounds > 0, "every reader read at least once");
    }

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

// ---- helpers -------------------------------------------------------------------------------

/// Tolerance on commit times, for wall clocks that step.
const CLOCK_SLACK_MS: UnixMillis = 5_000;

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
fn version_of(workflow: &str) -> String {
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

fn finished(state: RunEnd, at: UnixMillis) -> Event {
    Event::RunFinished {
        state,
        at,
        reason: format!("test run {state}"),
    }
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

fn filter(workflow: Option<&str>, status: Option<RunStatus>, limit: usize) -> RunFilter {
    RunFilter {
        workflow: workflow.map(str::to_string),
        status,
        limit,
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

async fn read_run_ok(store: &dyn CheckpointStore, run_id: RunId) -> Vec<Checkpoint> {
    store
        .read_run(run_id)
        .await
        .unwrap_or_else(|error| panic!("read_run({run_id}) failed: {error}"))
}

async fn summary_ok(store: &dyn CheckpointStore, run_id: RunId) -> super::RunSummary {
    store
        .run_summary(run_id)
        .await
        .unwrap_or_else(|error| panic!("run_summary({run_id}) failed: {error}"))
}

/// One event of every variant but `run_created`, with every attempt outcome and task end.
fn every_event_but_created() -> Vec<Event> {
    vec![
        Event::RunResumed {
            at: 1,
            owner: "pid 77 on höst-b".into(),
        },
        Event::AttemptStarted {
            task: 0,
            attempt: 1,
            at: 2,
        },
        Event::AttemptSpawned {
            task: 0,
            attempt: 1,
            pid: u32::MAX,
            start_ticks: u64::MAX,
        },
        Event::AttemptFinished {
            task: 0,
            attempt: 1,
            at: 3,
            outcome: AttemptOutcome::Failed {
                exit_code: Some(-1),
                signal: None,
                error: "exit code 255: \"boom\"\n".into(),
                retryable: true,
            },
        },
        Event::RetryScheduled {
            task: 0,
            attempt: 2,
            due: i64::MAX,
        },
        Event::AttemptFinished {
            task: 0,
            attempt: 2,
            at: 4,
            outcome: AttemptOutcome::Failed {
                exit_code: None,
                signal: Some(9),
                error: "killed by SIGKILL".into(),
                retryable: false,
            },
        },
        Event::AttemptFinished {
            task: 1,
            attempt: 1,
            at: 5,
            outcome: AttemptOutcome::Succeeded {
                outputs: BTreeMap::from([
                    ("rows".to_string(), "42".to_string()),
                    ("path".to_string(), "/tmp/ünï code".to_string()),
                ]),
            },
        },
        Event::AttemptFinished {
            task: 2,
            attempt: 1,
            at: 6,
            outcome: AttemptOutcome::Succeeded {
                outputs: BTreeMap::new(),
            },
        },
        Event::AttemptFinished {
            task: 3,
            attempt: 1,
            at: 7,
            outcome: AttemptOutcome::TimedOut { timeout_ms: 30_000 },
        },
        Event::AttemptFinished {
            task: 4,
            attempt: 1,
            at: 8,
            outcome: AttemptOutcome::Cancelled,
        },
        Event::AttemptFinished {
            task: 5,
            attempt: 1,
            at: 9,
            outcome: AttemptOutcome::Interrupted,
        },
        Event::TaskFinished {
            task: 0,
            state: TaskEnd::Failed,
            reason: "attempts exhausted".into(),
            at: 10,
        },
        Event::TaskFinished {
            task: 6,
            state: TaskEnd::Skipped,
            reason: String::new(),
            at: 11,
        },
        Event::TaskFinished {
            task: 7,
            state: TaskEnd::UpstreamFailed,
            reason: "upstream task `extract` failed".into(),
            at: 12,
        },
        Event::TaskFinished {
            task: tandem_dsl::TaskIndex::MAX,
            state: TaskEnd::Cancelled,
            reason: "run cancelled".into(),
            at: 13,
        },
        Event::CancelRequested {
            at: 14,
            reason: "Ctrl-C".into(),
            timed_out: false,
        },
        Event::CancelRequested {
            at: 14,
            reason: "the run's deadline passed".into(),
            timed_out: true,
        },
        Event::RunFinished {
            state: RunEnd::Cancelled,
            at: 15,
            reason: "cancelled on request".into(),
        },
    ]
}

const EVENT_VARIANTS: usize = 9;
const OUTCOME_VARIANTS: usize = 5;
const TASK_END_VARIANTS: usize = 4;

/// The index of `event`'s variant. Exhaustive on purpose: a new variant does not compile
/// until it is counted here and covered by [`every_event_but_created`].
fn event_variant(event: &Event) -> usize {
    match event {
        Event::RunCreated { .. } => 0,
        Event::RunResumed { .. } => 1,
        Event::AttemptStarted { .. } => 2,
        Event::AttemptSpawned { .. } => 3,
        Event::AttemptFinished { .. } => 4,
        Event::RetryScheduled { .. } => 5,
        Event::TaskFinished { .. } => 6,
        Event::CancelRequested { .. } => 7,
        Event::RunFinished { .. } => 8,
    }
}

fn outcome_variant(outcome: &AttemptOutcome) -> usize {
    match outcome {
        AttemptOutcome::Succeeded { .. } => 0,
        AttemptOutcome::Failed { .. } => 1,
        AttemptOutcome::TimedOut { .. } => 2,
        AttemptOutcome::Cancelled => 3,
        AttemptOutcome::Interrupted => 4,
    }
}

fn task_end_variant(end: TaskEnd) -> usize {
    match end {
        TaskEnd::Failed => 0,
        TaskEnd::Skipped => 1,
        TaskEnd::UpstreamFailed => 2,
        TaskEnd::Cancelled => 3,
    }
}
