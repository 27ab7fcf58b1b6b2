//! The log: every event round-trips, positions are contiguous from 1, paging, the latest position.

use std::collections::{BTreeMap, HashSet};

use super::events::{
    EVENT_VARIANTS, OUTCOME_VARIANTS, TASK_END_VARIANTS, event_variant, every_event_but_created,
    outcome_variant, task_end_variant,
};
use super::fixtures::{
    CLOCK_SLACK_MS, append_ok, batch, create, latest, new_run, owner, read_all, read_run_ok,
    started,
};
use crate::checkpoint::{Event, LogPosition, NewCheckpoint, RunId, now_millis};
use crate::store::CheckpointStore;

/// Every [`Event`] variant (and every [`AttemptOutcome`](crate::checkpoint::AttemptOutcome) and [`TaskEnd`](crate::checkpoint::TaskEnd)) comes back from
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
