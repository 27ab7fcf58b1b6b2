//! Failback: the old active region, fenced with a tail, rejoins as a standby of the promoted
//! region (the tail archived, the log cut back to the fork) and applies its log from there.

use super::{STANDBY, assert_same_log, finished, pair, rows, ship, workflow, workload};
use crate::checkpoint::{RunEnd, RunId};
use crate::store::replication::{RegionRole, ReplicationStore, TailRange};
use crate::store::suite::{batch, created_event, owner, started};
use crate::store::{CheckpointStore, CreateOutcome, RoleRefusal, RunStatus, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_archives_the_tail_and_the_log_continues_from_the_fork() {
    let (old, new) = pair().await;
    let runs = workload(&old, 1).await;
    ship(&old, &new, 4).await;
    let fork = old.latest_position().await.unwrap();

    // The old active region's tail, never shipped: a run finished, runs created with a key
    // and a schedule tick, a workflow.
    let (plain, plain_epoch) = runs.plain;
    old.append(
        plain_epoch,
        batch(plain, &[started(4, 1), finished(RunEnd::Succeeded)]),
    )
    .await
    .unwrap();
    let lost_keyed = RunId::new();
    let outcome = old
        .create_run_once(
            "tail-key",
            lost_keyed,
            &owner("old", 1),
            created_event("nightly", 5),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, CreateOutcome::Created(_)));
    let lost_scheduled = RunId::new();
    old.create_scheduled_run(
        "hourly",
        50,
        lost_scheduled,
        &owner("old", 1),
        created_event("hourly", 6),
    )
    .await
    .unwrap();
    old.put_workflow(&workflow("tail-only", 1)).await.unwrap();
    let latest = old.latest_position().await.unwrap();
    assert_eq!(latest, fork + 4);

    // The promoted region writes the same key and tick, and goes on with the plain run.
    let promoted = new.promote(1).await.unwrap();
    assert_eq!(promoted.promoted_at_position, Some(fork));
    let new_keyed = RunId::new();
    new.create_run_once(
        "tail-key",
        new_keyed,
        &owner("new", 1),
        created_event("nightly", 7),
    )
    .await
    .unwrap();
    let new_scheduled = RunId::new();
    new.create_scheduled_run(
        "hourly",
        50,
        new_scheduled,
        &owner("new", 1),
        created_event("hourly", 8),
    )
    .await
    .unwrap();
    let claimed = new.claim_run(plain, &owner("new", 2)).await.unwrap();
    new.append(claimed, batch(plain, &[started(4, 2)]))
        .await
        .unwrap();
    new.put_workflow(&workflow("new-only", 1)).await.unwrap();

    // The old region learns the promotion: fenced, with its tail.
    let fenced = old.demote(STANDBY, 1, fork).await.unwrap();
    assert_eq!(fenced.role, RegionRole::Fenced);
    assert_eq!(
        fenced.tail,
        Some(TailRange {
            from: fork + 1,
            to: latest
        })
    );
    let report = old.tail_report().await.unwrap();
    let tail_runs: Vec<_> = report
        .runs
        .iter()
        .map(|run| (run.run_id, run.checkpoints, run.created_in_tail))
        .collect();
    assert_eq!(
        tail_runs,
        [
            (plain, 2, false),
            (lost_keyed, 1, true),
            (lost_scheduled, 1, true)
        ]
    );
    match new.rejoin().await {
        Err(StoreError::NotStandby(refusal)) => {
            let RoleRefusal { role, action, .. } = *refusal;
            assert_eq!((role.as_str(), action.as_str()), ("active", "rejoin"))
        }
        other => panic!("expected NotStandby for an active store, found {other:?}"),
    }

    let rejoined = old.rejoin().await.unwrap();
    assert_eq!(
        (
            rejoined.role,
            rejoined.active_region.as_str(),
            rejoined.region_epoch,
            rejoined.tail
        ),
        (RegionRole::Standby, STANDBY, 1, None)
    );
    assert_eq!(
        (rejoined.applied_position, rejoined.applied_registration),
        (fork, 0)
    );
    assert_eq!(
        old.latest_position().await.unwrap(),
        fork,
        "cut back to the fork"
    );
    for lost in [lost_keyed, lost_scheduled] {
        assert!(
            matches!(
                old.run_summary(lost).await,
                Err(StoreError::RunNotFound { .. })
            ),
            "run {lost} created in the tail is gone"
        );
    }
    let summary = old.run_summary(plain).await.unwrap();
    assert_eq!(
        (summary.status, summary.finished_at),
        (RunStatus::Running, None)
    );
    let archived = rows(
        &old,
        "SELECT concat_ws(' ', region_epoch, position, fork_position, active_region, kind)
         FROM dr_tail ORDER BY position",
    )
    .await;
    assert_eq!(
        archived,
        [
            format!("1 {} {fork} {STANDBY} attempt_started", fork + 1),
            format!("1 {} {fork} {STANDBY} run_finished", fork + 2),
            format!("1 {} {fork} {STANDBY} run_created", fork + 3),
            format!("1 {} {fork} {STANDBY} run_created", fork + 4),
        ]
    );
    let past_fork = format!("SELECT count(*)::text FROM batches WHERE last_position > {fork}");
    assert_eq!(
        rows(&old, &past_fork).await,
        ["0"],
        "write ids past the fork"
    );
    let report = old.tail_report().await.unwrap();
    assert_eq!(
        (report.tail, report.runs.len(), report.archived_checkpoints),
        (None, 0, 4)
    );
    assert_eq!(
        old.rejoin().await.unwrap(),
        rejoined,
        "a standby is unchanged"
    );

    // Reverse replication from the fork.
    let state = ship(&new, &old, 2).await;
    assert_eq!(state.applied_position, new.latest_position().await.unwrap());
    assert_same_log(&new, &old).await;
    for name in ["nightly", "hourly", "new-only", "tail-only"] {
        old.get_workflow(name, None).await.unwrap();
    }
    new.append(claimed, batch(plain, &[finished(RunEnd::Succeeded)]))
        .await
        .unwrap();
    ship(&new, &old, 2).await;
    assert_same_log(&new, &old).await;
    assert_eq!(
        old.run_summary(plain).await.unwrap().status,
        RunStatus::Succeeded
    );
}
