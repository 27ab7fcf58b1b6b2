//! Workflows registered with the store, and run creation at most once per idempotency key.

use std::sync::Arc;

use super::fixtures::{
    created_event, latest, owner, racing_outcomes, read_all, read_run_ok, started, summary_ok,
};
use crate::checkpoint::RunId;
use crate::store::{CheckpointStore, CreateOutcome, RunFilter, StoreError, StoredWorkflow};

fn workflow(name: &str, version: &str, source: &str, registered_at: i64) -> StoredWorkflow {
    StoredWorkflow {
        name: name.to_string(),
        version: version.to_string(),
        source: source.to_string(),
        file_name: format!("{name}.yaml"),
        registered_at,
    }
}

async fn put(store: &dyn CheckpointStore, workflow: &StoredWorkflow) -> bool {
    store.put_workflow(workflow).await.unwrap_or_else(|error| {
        panic!(
            "put_workflow({} {}) failed: {error}",
            workflow.name, workflow.version
        )
    })
}

async fn get(store: &dyn CheckpointStore, name: &str, version: Option<&str>) -> StoredWorkflow {
    store
        .get_workflow(name, version)
        .await
        .unwrap_or_else(|error| panic!("get_workflow({name}, {version:?}) failed: {error}"))
}

/// `put_workflow` stores a (name, version) once (a repeat with the same text changes
/// nothing, another text is refused); `get_workflow` finds a version, or without one the
/// version registered last; unknown names and versions give `WorkflowNotFound`.
pub async fn test_workflows(store: &dyn CheckpointStore) {
    assert_eq!(
        store.get_workflow("nightly", None).await,
        Err(StoreError::WorkflowNotFound {
            name: "nightly".into(),
            version: None
        }),
        "an empty store has no workflow"
    );
    // Text with quotes, tabs, non-ASCII and 300 KB of lines survives as it is.
    let long: String = (0..10_000)
        .map(|line| format!("  # line {line}: \"ünïcødé\"\t✓\n"))
        .collect();
    let v1 = workflow("nightly", "v1", &format!("name: nightly\n{long}"), 1_000);
    let v2 = workflow("nightly", "v2", "name: nightly\ntasks: {}\n", 2_000);
    let other = workflow("other", "v1", "name: other\n", 500);

    assert!(put(store, &v1).await, "a new version is stored");
    assert!(!put(store, &v1).await, "the same version again is not new");
    assert_eq!(get(store, "nightly", None).await, v1);
    assert_eq!(get(store, "nightly", Some("v1")).await, v1);
    assert!(put(store, &v2).await);
    assert!(put(store, &other).await);
    assert_eq!(
        get(store, "nightly", None).await,
        v2,
        "without a version: the one registered last"
    );
    assert_eq!(get(store, "nightly", Some("v1")).await, v1);
    assert_eq!(
        get(store, "other", None).await,
        other,
        "names are independent"
    );

    let again = StoredWorkflow {
        registered_at: 9_000,
        ..v1.clone()
    };
    assert!(!put(store, &again).await, "re-registering v1 is not new");
    assert_eq!(
        get(store, "nightly", None).await,
        v2,
        "re-registering an older version does not make it the latest"
    );
    assert_eq!(
        get(store, "nightly", Some("v1")).await.registered_at,
        1_000,
        "a repeat keeps the first registration time"
    );

    let conflicting = workflow("nightly", "v1", "name: nightly\n# edited\n", 3_000);
    let refused = store.put_workflow(&conflicting).await;
    assert!(
        matches!(&refused, Err(StoreError::InvalidAppend { detail, .. }) if detail.contains("nightly") && detail.contains("v1")),
        "another text under a registered version: expected InvalidAppend naming it, found {refused:?}"
    );
    assert_eq!(
        get(store, "nightly", Some("v1")).await,
        v1,
        "a refused registration changes nothing"
    );
    assert_eq!(
        store.get_workflow("nightly", Some("v9")).await,
        Err(StoreError::WorkflowNotFound {
            name: "nightly".into(),
            version: Some("v9".into())
        })
    );
    assert_eq!(
        store.get_workflow("Nightly", None).await,
        Err(StoreError::WorkflowNotFound {
            name: "Nightly".into(),
            version: None
        }),
        "names are case-sensitive"
    );
}

/// `create_run_once`: an unused key creates the run (like `create_run`); a used key returns
/// its run and creates nothing; a failed creation does not use up its key.
pub async fn test_create_run_once(store: &dyn CheckpointStore) {
    let first = RunId::new();
    let created = create_once(store, "order-17", first, 1).await;
    let CreateOutcome::Created(first_epoch) = created else {
        panic!("an unused key: expected Created, found {created:?}");
    };
    assert_eq!(summary_ok(store, first).await.owner_epoch, first_epoch);
    assert_eq!(read_run_ok(store, first).await.len(), 1);
    let position = latest(store).await;

    let second = RunId::new();
    assert_eq!(
        create_once(store, "order-17", second, 2).await,
        CreateOutcome::Existing(first),
        "a used key returns the run it created"
    );
    assert_eq!(latest(store).await, position, "nothing was written");
    assert!(
        matches!(
            store.run_summary(second).await,
            Err(StoreError::RunNotFound { .. })
        ),
        "the second run id was not created"
    );

    // An existing run id with a fresh key: refused, and the key stays unused.
    let refused = store
        .create_run_once("order-18", first, &owner("x", 3), created_event("once", 3))
        .await;
    assert!(
        matches!(refused, Err(StoreError::RunExists { run_id, .. }) if run_id == first),
        "expected RunExists, found {refused:?}"
    );
    let refused = store
        .create_run_once("order-18", second, &owner("x", 3), started(0, 1))
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidAppend { .. })),
        "a first event other than run_created: expected InvalidAppend, found {refused:?}"
    );
    let refused = store
        .create_run_once("", second, &owner("x", 3), created_event("once", 3))
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidAppend { .. })),
        "an empty key: expected InvalidAppend, found {refused:?}"
    );
    assert_eq!(latest(store).await, position, "refusals write nothing");
    let third = create_once(store, "order-18", second, 4).await;
    assert!(
        matches!(third, CreateOutcome::Created(epoch) if epoch > first_epoch),
        "the key of failed creations is still unused, and epochs grow: found {third:?}"
    );
    assert_eq!(
        create_once(store, "order-18", RunId::new(), 5).await,
        CreateOutcome::Existing(second)
    );
    // Keys are exact strings.
    let spaced = create_once(store, "order-18 ", RunId::new(), 6).await;
    assert!(matches!(spaced, CreateOutcome::Created(_)), "{spaced:?}");
}

async fn create_once(
    store: &dyn CheckpointStore,
    key: &str,
    run_id: RunId,
    seq: i64,
) -> CreateOutcome {
    store
        .create_run_once(
            key,
            run_id,
            &owner("once", seq as u32),
            created_event("once", seq),
        )
        .await
        .unwrap_or_else(|error| panic!("create_run_once({key:?}, {run_id}) failed: {error}"))
}

/// Many concurrent `create_run_once` calls with one key, through every handle in `handles`
/// (independent handles to one empty store), create exactly one run, and every call learns
/// its id. Repeated for several keys.
pub async fn test_concurrent_create_run_once(handles: &[Arc<dyn CheckpointStore>]) {
    const ROUNDS: usize = 5;
    const CALLERS: usize = 6;
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let key = format!("concurrent-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
        let mut tasks = Vec::new();
        for caller in 0..CALLERS {
            let store = Arc::clone(&handles[caller % handles.len()]);
            let key = key.clone();
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                let run_id = RunId::new();
                barrier.wait().await;
                let outcome = store
                    .create_run_once(
                        &key,
                        run_id,
                        &owner("racer", caller as u32),
                        created_event("racing", caller as i64),
                    )
                    .await
                    .unwrap_or_else(|error| {
                        panic!("caller {caller}: create_run_once failed: {error}")
                    });
                (run_id, outcome)
            }));
        }
        let (created, existing) = racing_outcomes(tasks).await;
        assert_eq!(
            created.len(),
            1,
            "key {key}: expected exactly one caller to create the run, found {created:?}"
        );
        let winner = created[0].0;
        assert!(
            existing.iter().all(|run| *run == winner),
            "key {key}: every other caller must be told the winner {winner}, found {existing:?}"
        );
        winners.push(winner);
    }
    let runs = handles[0]
        .list_runs(&RunFilter::default())
        .await
        .unwrap_or_else(|error| panic!("list_runs failed: {error}"));
    assert_eq!(
        runs.len(),
        ROUNDS,
        "one run per key, found {} runs",
        runs.len()
    );
    assert_eq!(
        read_all(&*handles[0]).await.len(),
        ROUNDS,
        "one run_created checkpoint per key"
    );
}
