//! A leader change while the old leader is writing: once the new leader's `raise_fence` has
//! returned, no write of the old leader commits, and its refused writes leave nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Leaders;
use super::fixtures::{batch, created_event, new_run, owner, read_run_ok, started};
use crate::checkpoint::{Event, LogPosition, RunId, UnixMillis};
use crate::store::{CreateOutcome, StoreError};

/// Tasks of the old leader appending, and how many writes they make before the raise.
const APPENDERS: usize = 4;
const WRITES_BEFORE_RAISE: usize = 3 * (APPENDERS + 1);
/// How long the old leader's tasks may take to get going.
const PATIENCE: Duration = Duration::from_secs(60);

/// The first tick of the old leader's scheduler task; one a minute after it.
const FIRST_TICK: UnixMillis = 1_700_000_100_000;

/// The old leader (epoch 1) keeps appending through `leaders.old` from several tasks, and
/// starts scheduled runs tick after tick from another, while the new leader (epoch 2) raises
/// the fence through `leaders.new`. Then:
/// - every task of the old leader is refused with `Superseded { epoch: 1, highest: 2 }`, and
///   no write it started after the raise returned is accepted;
/// - every write the old leader had acknowledged sits below the position of the new
///   leader's first write (positions follow commit order, so none committed after the raise);
/// - the log holds exactly the old leader's acknowledged checkpoints and ticks: refused
///   writes left nothing.
pub async fn test_leader_change_under_concurrent_writes(leaders: &Leaders) {
    let Leaders {
        unfenced,
        old,
        old_fence,
        new,
        new_fence,
    } = leaders;
    old_fence.set(1);
    assert_eq!(old.raise_fence().await, Ok(1));
    new_fence.set(2);
    let raised = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));

    let mut appenders = Vec::new();
    for writer in 0..APPENDERS {
        let (run_id, epoch) = new_run(&**old, "race", writer as i64).await;
        let store = Arc::clone(old);
        let raised = Arc::clone(&raised);
        let progress = Arc::clone(&progress);
        appenders.push(tokio::spawn(async move {
            let mut acknowledged: Vec<LogPosition> = Vec::new();
            loop {
                let after_raise = raised.load(Ordering::SeqCst);
                let attempt = acknowledged.len() as u32 + 1;
                let result = store
                    .append(epoch, batch(run_id, &[started(writer as u32, attempt)]))
                    .await;
                match result {
                    Ok(position) => {
                        assert!(
                            !after_raise,
                            "appender {writer}: an append of the old leader started after the new leader's raise returned was accepted at position {position}"
                        );
                        acknowledged.push(position);
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(error) => {
                        refused_for_good(&error, &format!("appender {writer}"));
                        return (writer, run_id, acknowledged);
                    }
                }
            }
        }));
    }
    let scheduler = {
        let store = Arc::clone(old);
        let raised = Arc::clone(&raised);
        let progress = Arc::clone(&progress);
        tokio::spawn(async move {
            let mut ticks: Vec<UnixMillis> = Vec::new();
            loop {
                let after_raise = raised.load(Ordering::SeqCst);
                let tick = FIRST_TICK + 60_000 * ticks.len() as i64;
                let result = store
                    .create_scheduled_run(
                        "race-cron",
                        tick,
                        RunId::new(),
                        &owner("old-leader", 1),
                        created_event("race-cron", ticks.len() as i64),
                    )
                    .await;
                match result {
                    Ok(CreateOutcome::Created(_)) => {
                        assert!(
                            !after_raise,
                            "scheduler: a scheduled run of the old leader started after the new leader's raise returned was created (tick {tick})"
                        );
                        ticks.push(tick);
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(CreateOutcome::Existing(run)) => {
                        panic!("scheduler: tick {tick} was used once only, found run {run}")
                    }
                    Err(error) => {
                        refused_for_good(&error, "scheduler");
                        return ticks;
                    }
                }
            }
        })
    };

    let started_at = Instant::now();
    while progress.load(Ordering::SeqCst) < WRITES_BEFORE_RAISE {
        assert!(
            started_at.elapsed() < PATIENCE,
            "the old leader's tasks made {} writes in {PATIENCE:?}, expected {WRITES_BEFORE_RAISE}",
            progress.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        new.raise_fence().await,
        Ok(2),
        "the new leader raises the fence"
    );
    raised.store(true, Ordering::SeqCst);
    let (first_run, _) = new_run(&**new, "race-new", 99).await;
    let first_position = read_run_ok(&**unfenced, first_run).await[0].position;

    for task in appenders {
        let (writer, run_id, acknowledged) = task.await.expect("an appender task runs");
        if let Some(last) = acknowledged.iter().max() {
            assert!(
                *last < first_position,
                "run {run_id}: the old leader's append at position {last} committed after the new leader's first write at {first_position}"
            );
        }
        let events: Vec<Event> = read_run_ok(&**unfenced, run_id)
            .await
            .into_iter()
            .skip(1)
            .map(|checkpoint| checkpoint.event)
            .collect();
        let expected: Vec<Event> = (1..=acknowledged.len() as u32)
            .map(|attempt| started(writer as u32, attempt))
            .collect();
        assert_eq!(
            events, expected,
            "run {run_id}: the log holds exactly the acknowledged appends"
        );
    }
    let ticks = scheduler.await.expect("the scheduler task runs");
    assert_eq!(
        unfenced.last_schedule_tick("race-cron").await,
        Ok(ticks.last().copied()),
        "the ticks recorded are exactly the acknowledged ones"
    );
    assert_eq!(unfenced.leader_epoch().await, Ok(2));
}

/// Checks that a write of the old leader was refused because the new leader raised the
/// fence, and not for another reason.
fn refused_for_good(error: &StoreError, who: &str) {
    assert!(
        matches!(
            error,
            StoreError::Superseded {
                epoch: 1,
                highest: 2,
                ..
            }
        ),
        "{who}: expected Superseded (epoch 1, highest 2), found {error}"
    );
}
