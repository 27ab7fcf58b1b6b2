//! Region fencing by leader epoch: a fenced handle's writes are refused once the store has
//! seen a newer leader, they write nothing then, the highest epoch only grows, and unfenced
//! handles are not affected.

use super::Leaders;
use super::fixtures::{
    append_ok, batch, created_event as created, new_run, owner, read_all, read_run_ok, started,
};
use super::schedules::stored_workflow;
use crate::checkpoint::{Checkpoint, Event, RunId, UnixMillis};
use crate::store::{
    CheckpointStore, CreateOutcome, RunFilter, RunSummary, StoreError, StoredWorkflow,
};

/// A tick of the tests' schedules (ms since the Unix epoch).
const TICK: UnixMillis = 1_700_000_400_000;

/// The refusal of a write carrying `epoch` by `store`, which has seen `highest`.
fn superseded(store: &dyn CheckpointStore, epoch: u64, highest: u64) -> StoreError {
    StoreError::Superseded {
        epoch,
        highest,
        location: store.location(),
    }
}

async fn raise(store: &dyn CheckpointStore, expected: u64, who: &str) {
    assert_eq!(
        store.raise_fence().await,
        Ok(expected),
        "{who}: raise_fence should record and return leader epoch {expected}"
    );
}

async fn leader_epoch(store: &dyn CheckpointStore) -> u64 {
    store
        .leader_epoch()
        .await
        .unwrap_or_else(|error| panic!("leader_epoch failed: {error}"))
}

/// Everything a refused write could have changed.
#[derive(Debug, PartialEq)]
struct Snapshot {
    log: Vec<Checkpoint>,
    runs: Vec<RunSummary>,
    workflows: Vec<StoredWorkflow>,
    last_tick: Option<UnixMillis>,
}

impl Snapshot {
    async fn take(store: &dyn CheckpointStore, workflow: &str) -> Snapshot {
        Snapshot {
            log: read_all(store).await,
            runs: store
                .list_runs(&RunFilter::default())
                .await
                .unwrap_or_else(|error| panic!("list_runs failed: {error}")),
            workflows: store
                .list_workflows()
                .await
                .unwrap_or_else(|error| panic!("list_workflows failed: {error}")),
            last_tick: store
                .last_schedule_tick(workflow)
                .await
                .unwrap_or_else(|error| panic!("last_schedule_tick failed: {error}")),
        }
    }
}

/// Once a newer leader has raised the fence, every kind of write of the older leader's
/// handle (`create_run`, `create_run_once` with an unused and with a used key,
/// `create_scheduled_run` for an unused and a used tick, `claim_run`, `append`, `put_workflow`
/// of a new and of a registered version, `raise_fence`) is refused with exactly
/// `Superseded { epoch, highest, location }`, and none of them changes anything: the log,
/// the runs, the workflows, the schedule ticks, the highest epoch; the refused key and tick
/// stay unused.
pub async fn test_leader_fence_refuses_every_write(leaders: &Leaders) {
    let Leaders {
        unfenced,
        old,
        old_fence,
        new,
        new_fence,
    } = leaders;
    let workflow = "fenced-out";
    let (run_id, epoch) = new_run(&**unfenced, workflow, 1).await;
    append_ok(&**unfenced, epoch, batch(run_id, &[started(0, 1)])).await;
    let registered = stored_workflow(workflow, "v1", 1_000);
    unfenced
        .put_workflow(&registered)
        .await
        .unwrap_or_else(|error| panic!("put_workflow failed: {error}"));
    let used = unfenced
        .create_run_once(
            "used-key",
            RunId::new(),
            &owner("x", 2),
            created(workflow, 2),
        )
        .await;
    assert!(matches!(used, Ok(CreateOutcome::Created(_))), "{used:?}");
    let ticked = unfenced
        .create_scheduled_run(
            workflow,
            TICK,
            RunId::new(),
            &owner("x", 3),
            created(workflow, 3),
        )
        .await;
    assert!(
        matches!(ticked, Ok(CreateOutcome::Created(_))),
        "{ticked:?}"
    );

    old_fence.set(3);
    raise(&**old, 3, "the old leader").await;
    new_fence.set(5);
    raise(&**new, 5, "the new leader").await;
    let before = Snapshot::take(&**unfenced, workflow).await;

    let expected = superseded(&**unfenced, 3, 5);
    let spare = RunId::new();
    let old_owner = owner("old-leader", 4);
    let writes: Vec<(&str, Result<(), StoreError>)> = vec![
        (
            "create_run",
            old.create_run(spare, &old_owner, created(workflow, 4))
                .await
                .map(drop),
        ),
        (
            "create_run_once with an unused key",
            old.create_run_once("unused-key", spare, &old_owner, created(workflow, 4))
                .await
                .map(drop),
        ),
        (
            "create_run_once with a used key",
            old.create_run_once("used-key", spare, &old_owner, created(workflow, 4))
                .await
                .map(drop),
        ),
        (
            "create_scheduled_run for an unused tick",
            old.create_scheduled_run(
                workflow,
                TICK + 60_000,
                spare,
                &old_owner,
                created(workflow, 4),
            )
            .await
            .map(drop),
        ),
        (
            "create_scheduled_run for a used tick",
            old.create_scheduled_run(workflow, TICK, spare, &old_owner, created(workflow, 4))
                .await
                .map(drop),
        ),
        (
            "claim_run",
            old.claim_run(run_id, &old_owner).await.map(drop),
        ),
        (
            "append with the run's owner epoch",
            old.append(epoch, batch(run_id, &[started(0, 2)]))
                .await
                .map(drop),
        ),
        (
            "put_workflow of a new version",
            old.put_workflow(&stored_workflow(workflow, "v2", 2_000))
                .await
                .map(drop),
        ),
        (
            "put_workflow of a registered version",
            old.put_workflow(&registered).await.map(drop),
        ),
        ("raise_fence", old.raise_fence().await.map(drop)),
    ];
    for (what, result) in writes {
        assert_eq!(
            result,
            Err(expected.clone()),
            "{what} through the old leader's handle (leader epoch 3, the store has seen 5): expected Superseded"
        );
    }
    assert_eq!(
        Snapshot::take(&**unfenced, workflow).await,
        before,
        "refused writes change nothing"
    );
    assert_eq!(
        leader_epoch(&**unfenced).await,
        5,
        "refusals leave the highest leader epoch alone"
    );
    assert!(
        matches!(
            unfenced.run_summary(spare).await,
            Err(StoreError::RunNotFound { .. })
        ),
        "no refused creation created run {spare}"
    );
    let later = new
        .create_run_once(
            "unused-key",
            spare,
            &owner("new-leader", 5),
            created(workflow, 5),
        )
        .await;
    assert!(
        matches!(later, Ok(CreateOutcome::Created(_))),
        "the key of a refused creation is still unused: expected Created, found {later:?}"
    );
    let later = new
        .create_scheduled_run(
            workflow,
            TICK + 60_000,
            RunId::new(),
            &owner("new-leader", 6),
            created(workflow, 6),
        )
        .await;
    assert!(
        matches!(later, Ok(CreateOutcome::Created(_))),
        "the tick of a refused creation is still unused: expected Created, found {later:?}"
    );
}

/// The highest leader epoch starts at 0, only grows, and is raised by `raise_fence` and by
/// every accepted write of a fenced handle; an equal epoch is accepted, a lower one refused
/// (without lowering it). An unfenced `raise_fence` is `Ok(0)` and changes nothing. A handle
/// carries its fence's current value: setting a clone of the fence changes what it writes.
pub async fn test_leader_fence_is_monotonic(leaders: &Leaders) {
    let Leaders {
        unfenced,
        old,
        old_fence,
        new,
        new_fence,
    } = leaders;
    assert_eq!(
        leader_epoch(&**unfenced).await,
        0,
        "a new store has seen no leader"
    );
    assert_eq!(
        unfenced.raise_fence().await,
        Ok(0),
        "an unfenced handle has no epoch to raise"
    );
    assert_eq!(leader_epoch(&**unfenced).await, 0);
    raise(
        &**old,
        0,
        "a fenced handle with epoch 0 (no election) on a new store",
    )
    .await;
    new_run(&**old, "monotonic", 1).await;

    new_fence.set(4);
    raise(&**new, 4, "the leader with epoch 4").await;
    raise(&**new, 4, "the same leader again").await;
    assert_eq!(
        leader_epoch(&**old).await,
        4,
        "every handle reads the highest"
    );
    new_fence.set(2);
    assert_eq!(
        new.raise_fence().await,
        Err(superseded(&**new, 2, 4)),
        "a lower epoch is refused"
    );
    assert_eq!(
        leader_epoch(&**unfenced).await,
        4,
        "a refusal does not lower it"
    );

    new_fence.set(9);
    new_run(&**new, "monotonic", 2).await;
    assert_eq!(
        leader_epoch(&**unfenced).await,
        9,
        "an accepted write of a fenced handle raises the highest too"
    );
    assert_eq!(
        old.raise_fence().await,
        Err(superseded(&**old, 0, 9)),
        "epoch 0 is refused once a leader was seen"
    );

    let shared = old_fence.clone();
    shared.set(12);
    raise(&**old, 12, "the handle whose fence clone was set to 12").await;
    let (run_id, epoch) = new_run(&**unfenced, "monotonic", 3).await;
    assert_eq!(
        new.append(epoch, batch(run_id, &[started(0, 1)])).await,
        Err(superseded(&**new, 9, 12))
    );
    assert_eq!(leader_epoch(&**unfenced).await, 12);
}

/// Two replicas on one store: the old leader writes; once the new leader has raised the
/// fence, the old leader's appends, creations and claims are refused while the new leader
/// takes its runs over, and a tick the old leader started is not started again. When the
/// first replica wins a later election, the roles swap.
pub async fn test_leader_fence_across_handles(leaders: &Leaders) {
    let Leaders {
        unfenced,
        old,
        old_fence,
        new,
        new_fence,
    } = leaders;
    let workflow = "handover";
    old_fence.set(10);
    raise(&**old, 10, "the old leader").await;
    let (run_id, old_epoch) = new_run(&**old, workflow, 1).await;
    append_ok(&**old, old_epoch, batch(run_id, &[started(0, 1)])).await;
    let tick_run = RunId::new();
    let ticked = old
        .create_scheduled_run(
            workflow,
            TICK,
            tick_run,
            &owner("old", 2),
            created(workflow, 2),
        )
        .await;
    assert!(
        matches!(ticked, Ok(CreateOutcome::Created(_))),
        "the old leader's scheduled run: expected Created, found {ticked:?}"
    );

    new_fence.set(20);
    raise(&**new, 20, "the new leader").await;
    let expected = superseded(&**old, 10, 20);
    assert_eq!(
        old.append(old_epoch, batch(run_id, &[started(0, 2)])).await,
        Err(expected.clone()),
        "the old leader's append"
    );
    assert_eq!(
        old.create_run(RunId::new(), &owner("old", 3), created(workflow, 3))
            .await,
        Err(expected.clone()),
        "the old leader's create_run"
    );
    assert_eq!(
        old.claim_run(run_id, &owner("old", 1)).await,
        Err(expected.clone()),
        "the old leader's claim_run"
    );

    let new_epoch = new
        .claim_run(run_id, &owner("new", 1))
        .await
        .unwrap_or_else(|error| panic!("the new leader's claim_run failed: {error}"));
    assert!(new_epoch > old_epoch);
    append_ok(&**new, new_epoch, batch(run_id, &[started(0, 2)])).await;
    assert_eq!(
        new.create_scheduled_run(
            workflow,
            TICK,
            RunId::new(),
            &owner("new", 4),
            created(workflow, 4)
        )
        .await,
        Ok(CreateOutcome::Existing(tick_run)),
        "a tick the old leader started is not started again by the new one"
    );
    let events: Vec<Event> = read_run_ok(&**unfenced, run_id)
        .await
        .into_iter()
        .map(|checkpoint| checkpoint.event)
        .collect();
    assert_eq!(
        events,
        vec![created(workflow, 1), started(0, 1), started(0, 2)],
        "the run holds the old leader's accepted write and the new leader's, nothing refused"
    );

    old_fence.set(30);
    raise(&**old, 30, "the first replica, leader again").await;
    assert_eq!(
        new.append(new_epoch, batch(run_id, &[started(0, 3)])).await,
        Err(superseded(&**new, 20, 30)),
        "the second replica is fenced out now"
    );
}

/// Unfenced handles (`tandem run`, tools) are not checked against the leader fence: every
/// kind of write succeeds after a leader raised it, and none of them changes it.
pub async fn test_unfenced_handles_ignore_the_leader_fence(leaders: &Leaders) {
    let Leaders {
        unfenced,
        new,
        new_fence,
        ..
    } = leaders;
    let workflow = "unfenced";
    new_fence.set(7);
    raise(&**new, 7, "the leader").await;
    let (run_id, epoch) = new_run(&**unfenced, workflow, 1).await;
    append_ok(&**unfenced, epoch, batch(run_id, &[started(0, 1)])).await;
    let claimed = unfenced
        .claim_run(run_id, &owner("tool", 2))
        .await
        .unwrap_or_else(|error| panic!("unfenced claim_run failed: {error}"));
    append_ok(&**unfenced, claimed, batch(run_id, &[started(0, 2)])).await;
    let once = unfenced
        .create_run_once(
            "unfenced-key",
            RunId::new(),
            &owner("tool", 3),
            created(workflow, 3),
        )
        .await;
    assert!(matches!(once, Ok(CreateOutcome::Created(_))), "{once:?}");
    let ticked = unfenced
        .create_scheduled_run(
            workflow,
            TICK,
            RunId::new(),
            &owner("tool", 4),
            created(workflow, 4),
        )
        .await;
    assert!(
        matches!(ticked, Ok(CreateOutcome::Created(_))),
        "{ticked:?}"
    );
    assert_eq!(
        unfenced
            .put_workflow(&stored_workflow(workflow, "v1", 1))
            .await,
        Ok(true)
    );
    assert_eq!(unfenced.raise_fence().await, Ok(0));
    assert_eq!(
        leader_epoch(&**unfenced).await,
        7,
        "unfenced writes leave the highest leader epoch alone"
    );
    new_run(&**new, workflow, 5).await;
}
