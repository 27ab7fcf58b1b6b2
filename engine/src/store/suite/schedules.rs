//! Cron schedules' runs (at most one per workflow and tick) and the list of registered
//! workflows the schedules are read from.

use std::sync::Arc;

use super::fixtures::{
    created_event, latest, owner, racing_outcomes, read_all, read_run_ok, started, summary_ok,
};
use crate::checkpoint::{RunId, UnixMillis};
use crate::store::{CheckpointStore, CreateOutcome, RunFilter, StoreError, StoredWorkflow};

/// A registration of version `version` of `name`, registered at `registered_at`.
pub(super) fn stored_workflow(name: &str, version: &str, registered_at: i64) -> StoredWorkflow {
    StoredWorkflow {
        name: name.to_string(),
        version: version.to_string(),
        source: format!("name: {name}\n# {version}\n"),
        file_name: format!("{name}.yaml"),
        registered_at,
    }
}

/// A minute-aligned tick (ms since the Unix epoch), the `minute`-th after a fixed time.
fn tick(minute: i64) -> UnixMillis {
    1_700_000_040_000 + minute * 60_000
}

async fn schedule(
    store: &dyn CheckpointStore,
    workflow: &str,
    tick: UnixMillis,
    run_id: RunId,
    seq: i64,
) -> CreateOutcome {
    store
        .create_scheduled_run(
            workflow,
            tick,
            run_id,
            &owner("scheduler", seq as u32),
            created_event(workflow, seq),
        )
        .await
        .unwrap_or_else(|error| {
            panic!("create_scheduled_run({workflow}, {tick}, {run_id}) failed: {error}")
        })
}

async fn last_tick(store: &dyn CheckpointStore, workflow: &str) -> Option<UnixMillis> {
    store
        .last_schedule_tick(workflow)
        .await
        .unwrap_or_else(|error| panic!("last_schedule_tick({workflow}) failed: {error}"))
}

/// `create_scheduled_run` creates a run per (workflow, tick) once (a repeat returns it and
/// creates nothing), ticks of other workflows are independent, ticks may come in any order
/// (catch-up), `last_schedule_tick` is the highest tick with a run; a run of another
/// workflow, a first event other than `run_created` and an existing run id are refused,
/// write nothing and leave the tick unused.
pub async fn test_scheduled_runs(store: &dyn CheckpointStore) {
    assert_eq!(last_tick(store, "nightly").await, None, "no tick yet");
    let first = RunId::new();
    let created = schedule(store, "nightly", tick(10), first, 1).await;
    let CreateOutcome::Created(first_epoch) = created else {
        panic!("an unused tick: expected Created, found {created:?}");
    };
    let summary = summary_ok(store, first).await;
    assert_eq!(
        (summary.workflow.as_str(), summary.owner_epoch),
        ("nightly", first_epoch)
    );
    assert_eq!(read_run_ok(store, first).await.len(), 1);
    assert_eq!(last_tick(store, "nightly").await, Some(tick(10)));
    let position = latest(store).await;

    let second = RunId::new();
    assert_eq!(
        schedule(store, "nightly", tick(10), second, 2).await,
        CreateOutcome::Existing(first),
        "a tick with a run returns that run"
    );
    assert_eq!(latest(store).await, position, "and writes nothing");
    assert!(
        matches!(
            store.run_summary(second).await,
            Err(StoreError::RunNotFound { .. })
        ),
        "the second run id was not created"
    );

    let earlier = schedule(store, "nightly", tick(5), RunId::new(), 3).await;
    assert!(
        matches!(earlier, CreateOutcome::Created(epoch) if epoch > first_epoch),
        "an earlier tick (catch-up) is its own tick, and epochs grow: found {earlier:?}"
    );
    assert_eq!(
        last_tick(store, "nightly").await,
        Some(tick(10)),
        "the last tick is the highest, not the one created last"
    );
    let hourly = RunId::new();
    assert!(matches!(
        schedule(store, "hourly", tick(10), hourly, 4).await,
        CreateOutcome::Created(_)
    ));
    assert_eq!(
        schedule(store, "hourly", tick(10), RunId::new(), 5).await,
        CreateOutcome::Existing(hourly),
        "ticks are per workflow"
    );
    assert_eq!(last_tick(store, "hourly").await, Some(tick(10)));
    assert_eq!(last_tick(store, "Nightly").await, None, "names are exact");

    let position = latest(store).await;
    let refused = store
        .create_scheduled_run(
            "nightly",
            tick(20),
            RunId::new(),
            &owner("x", 6),
            created_event("hourly", 6),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::InvalidAppend { detail, .. }) if detail.contains("nightly") && detail.contains("hourly")),
        "a run of another workflow: expected InvalidAppend naming both, found {refused:?}"
    );
    let refused = store
        .create_scheduled_run(
            "nightly",
            tick(20),
            RunId::new(),
            &owner("x", 6),
            started(0, 1),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidAppend { .. })),
        "a first event other than run_created: expected InvalidAppend, found {refused:?}"
    );
    let refused = store
        .create_scheduled_run(
            "nightly",
            tick(20),
            first,
            &owner("x", 6),
            created_event("nightly", 6),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::RunExists { run_id, .. }) if run_id == first),
        "an existing run id: expected RunExists, found {refused:?}"
    );
    assert_eq!(latest(store).await, position, "refusals write nothing");
    assert_eq!(
        last_tick(store, "nightly").await,
        Some(tick(10)),
        "refusals record no tick"
    );
    let later = RunId::new();
    assert!(
        matches!(
            schedule(store, "nightly", tick(20), later, 7).await,
            CreateOutcome::Created(_)
        ),
        "the tick of refused creations is still unused"
    );
    assert_eq!(last_tick(store, "nightly").await, Some(tick(20)));
    assert_eq!(
        store
            .create_run_once(
                "nightly",
                RunId::new(),
                &owner("x", 8),
                created_event("nightly", 8)
            )
            .await
            .map(|outcome| matches!(outcome, CreateOutcome::Created(_))),
        Ok(true),
        "idempotency keys and schedule ticks are separate"
    );
}

/// Many concurrent `create_scheduled_run` calls for one tick, through every handle in
/// `handles` (independent handles to one empty store), create exactly one run and every call
/// learns its id; repeated for several ticks. `last_schedule_tick` is then the last one.
pub async fn test_concurrent_scheduled_runs(handles: &[Arc<dyn CheckpointStore>]) {
    const TICKS: i64 = 5;
    const CALLERS: usize = 6;
    for minute in 0..TICKS {
        let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
        let mut tasks = Vec::new();
        for caller in 0..CALLERS {
            let store = Arc::clone(&handles[caller % handles.len()]);
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                let run_id = RunId::new();
                barrier.wait().await;
                let outcome =
                    schedule(&*store, "racing", tick(minute), run_id, caller as i64).await;
                (run_id, outcome)
            }));
        }
        let (created, existing) = racing_outcomes(tasks).await;
        assert_eq!(
            created.len(),
            1,
            "tick {}: expected exactly one caller to create the run, found {created:?}",
            tick(minute)
        );
        let winner = created[0].0;
        assert!(
            existing.iter().all(|run| *run == winner),
            "tick {}: every other caller must be told the winner {winner}, found {existing:?}",
            tick(minute)
        );
    }
    let store = &*handles[0];
    let runs = store
        .list_runs(&RunFilter::default())
        .await
        .unwrap_or_else(|error| panic!("list_runs failed: {error}"));
    assert_eq!(
        runs.len(),
        TICKS as usize,
        "one run per tick, found {runs:?}"
    );
    assert_eq!(
        read_all(store).await.len(),
        TICKS as usize,
        "one run_created checkpoint per tick"
    );
    assert_eq!(last_tick(store, "racing").await, Some(tick(TICKS - 1)));
}

/// `list_workflows` returns, for every name, the version `get_workflow` without a version
/// returns (the one registered last; a repeated registration of an older version does not
/// change it), ordered by name in byte order (`Zeta` before `alpha`).
pub async fn test_list_workflows(store: &dyn CheckpointStore) {
    let list = async || {
        store
            .list_workflows()
            .await
            .unwrap_or_else(|error| panic!("list_workflows failed: {error}"))
    };
    assert_eq!(list().await, Vec::new(), "an empty store lists no workflow");
    let beta_1 = stored_workflow("beta", "v1", 1_000);
    let alpha_1 = stored_workflow("alpha", "v1", 2_000);
    let beta_2 = stored_workflow("beta", "v2", 3_000);
    let zeta = stored_workflow("Zeta", "v1", 4_000);
    let gamma = stored_workflow("gamma", "v1", 5_000);
    for workflow in [&beta_1, &alpha_1, &beta_2, &zeta, &gamma, &beta_1, &alpha_1] {
        store
            .put_workflow(workflow)
            .await
            .unwrap_or_else(|error| panic!("put_workflow({}) failed: {error}", workflow.name));
    }
    let listed = list().await;
    assert_eq!(
        listed,
        vec![zeta, alpha_1, beta_2.clone(), gamma],
        "the latest version of each name, by name in byte order"
    );
    for workflow in &listed {
        let latest = store
            .get_workflow(&workflow.name, None)
            .await
            .unwrap_or_else(|error| panic!("get_workflow({}) failed: {error}", workflow.name));
        assert_eq!(&latest, workflow, "list_workflows agrees with get_workflow");
    }
    let beta_3 = stored_workflow("beta", "v3", 500);
    store
        .put_workflow(&beta_3)
        .await
        .unwrap_or_else(|error| panic!("put_workflow(beta v3) failed: {error}"));
    assert!(
        list().await.contains(&beta_3),
        "the version registered last is listed, whatever its registered_at says"
    );
}
