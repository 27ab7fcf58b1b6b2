//! The run table: listing with filters, summaries, the status set by `run_finished`, existence errors.

use super::fixtures::{
    append_ok, batch, create, created_at, created_event, filter, finished, latest, new_run, owner,
    read_run_ok, started, summary_ok, version_of,
};
use crate::checkpoint::{RunEnd, RunId, UnixMillis};
use crate::store::{CheckpointStore, Owner, RunFilter, RunStatus, StoreError};

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
