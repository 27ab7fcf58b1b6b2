//! Applying shipped batches on a standby: the log position for position, batches sent again,
//! gaps, refusals by role, source and region epoch, batches that do not fit.

use super::{
    ACTIVE, STANDBY, assert_same_store, batch_from, finished, named, pair, rows, ship, workflow,
    workload,
};
use crate::checkpoint::{RunEnd, now_millis};
use crate::store::replication::{RegionRole, ReplicatedBatch, ReplicationStore};
use crate::store::suite::{batch, new_run, read_all, started};
use crate::store::{CheckpointStore, RoleRefusal, RunStatus, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_holds_the_active_log_position_for_position() {
    let (active, standby) = pair().await;
    let runs = workload(&active, 1).await;
    active
        .append(
            runs.plain.1,
            batch(runs.plain.0, &[finished(RunEnd::Failed)]),
        )
        .await
        .unwrap();
    let before = now_millis();
    let state = ship(&active, &standby, 3).await;
    assert_same_store(&active, &standby, ACTIVE).await;
    let after = now_millis();
    let stamped = "SELECT concat_ws(' ', count(*), min(replicated_at), max(replicated_at))
         FROM checkpoints WHERE replicated_at IS NOT NULL";
    let [line] = &rows(&standby, stamped).await[..] else {
        panic!("one row")
    };
    let fields: Vec<i64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
    assert_eq!(
        fields[0] as usize,
        read_all(&active).await.len(),
        "every applied checkpoint records when it was replicated"
    );
    assert!(
        before <= fields[1] && fields[2] <= after,
        "replicated_at within the shipping: {fields:?} not in [{before}, {after}]"
    );
    assert_eq!(
        rows(
            &active,
            "SELECT count(*)::text FROM checkpoints WHERE replicated_at IS NOT NULL"
        )
        .await,
        ["0"],
        "checkpoints a region writes itself have no replication time"
    );

    let log = read_all(&active).await;
    let latest = log.last().unwrap();
    assert_eq!(state.applied_position, latest.position);
    assert_eq!(state.source_latest_position, latest.position);
    assert_eq!(state.applied_recorded_at, Some(latest.recorded_at));
    assert!(state.applied_at.is_some_and(|at| at >= before), "{state:?}");
    let registrations = active.read_replication(0, 0, 1).await.unwrap().workflows;
    assert_eq!(
        state.applied_registration,
        registrations.last().unwrap().registration
    );
    assert_eq!(
        (state.role, state.active_region.as_str()),
        (RegionRole::Standby, ACTIVE)
    );

    let summary = standby.run_summary(runs.plain.0).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed, "run_finished projected");
    let keyed = standby.run_summary(runs.keyed).await.unwrap();
    assert_eq!(keyed.status, RunStatus::Succeeded);
    let scheduled = standby.run_summary(runs.scheduled.0).await.unwrap();
    assert_eq!(scheduled.status, RunStatus::Running);
    assert_eq!(
        scheduled.owner_epoch, runs.scheduled.1,
        "the owner epoch follows the run's checkpoints"
    );
    assert_eq!(scheduled.owner.host, format!("{ACTIVE}/claimer"));
    assert_eq!(standby.last_schedule_tick("hourly").await.unwrap(), Some(1));
    assert_eq!(
        standby.get_workflow("nightly", None).await.unwrap(),
        workflow("nightly", 1)
    );

    // More later, through the same cursors.
    workload(&active, 2).await;
    ship(&active, &standby, 1000).await;
    assert_same_store(&active, &standby, ACTIVE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_again_changes_nothing() {
    let (active, standby) = pair().await;
    workload(&active, 1).await;
    let everything = batch_from(&active, (0, 0), 1000).await;
    let first = standby.apply_replicated(&everything, 1).await.unwrap();
    let again = standby.apply_replicated(&everything, 2).await.unwrap();
    assert_eq!(again.applied_position, first.applied_position);
    assert_eq!(again.applied_registration, first.applied_registration);
    assert_eq!(
        again.applied_at,
        Some(2),
        "the apply time is the last batch's"
    );
    assert_same_store(&active, &standby, ACTIVE).await;

    // A batch that overlaps the applied log applies only what is new.
    let latest = first.applied_position;
    let (run_id, epoch) = new_run(&active, "later", 9).await;
    active
        .append(epoch, batch(run_id, &[started(0, 1)]))
        .await
        .unwrap();
    let overlapping = batch_from(&active, (latest - 2, 0), 1000).await;
    assert_eq!(overlapping.checkpoints.len(), 4);
    let state = standby.apply_replicated(&overlapping, 3).await.unwrap();
    assert_eq!(state.applied_position, latest + 2);
    assert_same_store(&active, &standby, ACTIVE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_refused_and_nothing_is_written() {
    let (active, standby) = pair().await;
    workload(&active, 1).await;
    let everything = batch_from(&active, (0, 0), 1000).await;
    let before = standby.region_state().await.unwrap();

    let mut late = everything.clone();
    late.checkpoints.remove(0);
    match standby.apply_replicated(&late, 1).await {
        Err(StoreError::ReplicationGap {
            expected,
            found,
            source_region,
            ..
        }) => assert_eq!((expected, found, source_region.as_str()), (1, 2, ACTIVE)),
        other => panic!("expected a gap at 1, found {other:?}"),
    }
    let mut holed = everything.clone();
    holed.checkpoints.remove(3);
    match standby.apply_replicated(&holed, 1).await {
        Err(StoreError::ReplicationGap {
            expected, found, ..
        }) => assert_eq!((expected, found), (4, 5)),
        other => panic!("expected a gap at 4, found {other:?}"),
    }
    assert_eq!(
        standby.region_state().await.unwrap(),
        before,
        "state unchanged"
    );
    assert_eq!(
        standby.latest_position().await.unwrap(),
        0,
        "no checkpoint written"
    );
    for table in [
        "runs",
        "checkpoints",
        "idempotency_keys",
        "schedule_ticks",
        "workflows",
    ] {
        let count = rows(&standby, &format!("SELECT count(*)::text FROM {table}")).await;
        assert_eq!(count, ["0"], "table {table} after refused batches");
    }
    standby.apply_replicated(&everything, 1).await.unwrap();
    assert_same_store(&active, &standby, ACTIVE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_needs_a_standby_of_the_batch_source() {
    let (active, standby) = pair().await;
    workload(&active, 1).await;
    let everything = batch_from(&active, (0, 0), 1000).await;
    let refused = |result, what: &str, role: RegionRole| match result {
        Err(StoreError::NotStandby(refusal)) => {
            let RoleRefusal {
                role: found,
                expected,
                action,
                ..
            } = *refusal;
            assert_eq!(found, role.as_str(), "{what}");
            assert!(
                action.contains(ACTIVE) || action.contains("elsewhere"),
                "{action}"
            );
            assert!(expected.contains("standby"), "{expected}");
        }
        other => panic!("{what}: expected NotStandby, found {other:?}"),
    };
    let other_active = named("ap-south", RegionRole::Active, "ap-south").await;
    refused(
        other_active.apply_replicated(&everything, 1).await,
        "an active store",
        RegionRole::Active,
    );
    let wrong_source = ReplicatedBatch {
        source_region: "elsewhere".into(),
        ..everything.clone()
    };
    refused(
        standby.apply_replicated(&wrong_source, 1).await,
        "a batch from another region",
        RegionRole::Standby,
    );
    let fenced = named(STANDBY, RegionRole::Active, STANDBY).await;
    new_run(&fenced, "own", 1).await;
    fenced.demote(ACTIVE, 1, 0).await.unwrap();
    refused(
        fenced.apply_replicated(&everything, 1).await,
        "a fenced store",
        RegionRole::Fenced,
    );
    assert_eq!(standby.latest_position().await.unwrap(), 0);
    assert_eq!(other_active.latest_position().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_region_epoch_is_refused_and_a_higher_one_recorded() {
    let (active, standby) = pair().await;
    workload(&active, 1).await;
    let mut first = batch_from(&active, (0, 0), 2).await;
    first.region_epoch = 3;
    let state = standby.apply_replicated(&first, 1).await.unwrap();
    assert_eq!((state.region_epoch, state.applied_position), (3, 2));
    let mut stale = batch_from(&active, (2, 0), 2).await;
    stale.region_epoch = 2;
    match standby.apply_replicated(&stale, 1).await {
        Err(StoreError::StaleRegionEpoch {
            given,
            current,
            expected,
            ..
        }) => assert_eq!((given, current, expected.as_str()), (2, 3, "at least")),
        other => panic!("expected StaleRegionEpoch, found {other:?}"),
    }
    assert_eq!(
        standby.region_state().await.unwrap(),
        state,
        "nothing changed"
    );
    stale.region_epoch = 3;
    assert_eq!(
        standby
            .apply_replicated(&stale, 1)
            .await
            .unwrap()
            .applied_position,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_does_not_fit_is_refused_as_damage() {
    let (active, standby) = pair().await;
    workload(&active, 1).await;
    let everything = batch_from(&active, (0, 0), 1000).await;
    let corrupt = |result, what: &str, needle: &str| match result {
        Err(StoreError::Corrupt { detail, .. }) => {
            assert!(detail.contains(needle), "{what}: {detail}")
        }
        other => panic!("{what}: expected Corrupt, found {other:?}"),
    };
    let mut no_origin = everything.clone();
    no_origin.checkpoints[0].origin = None;
    corrupt(
        standby.apply_replicated(&no_origin, 1).await,
        "a run_created checkpoint without its origin",
        "origin",
    );
    let mut stray_origin = everything.clone();
    stray_origin.checkpoints[3].origin = everything.checkpoints[0].origin.clone();
    corrupt(
        standby.apply_replicated(&stray_origin, 1).await,
        "an origin on another checkpoint",
        "origin",
    );
    standby
        .apply_replicated(
            &ReplicatedBatch {
                checkpoints: everything.checkpoints[..1].to_vec(),
                workflows: Vec::new(),
                ..everything.clone()
            },
            1,
        )
        .await
        .unwrap();
    // Position 2 creates the keyed run; a checkpoint of it in its place cannot apply...
    let mut unknown_run = everything.clone();
    unknown_run.checkpoints[1] = everything.checkpoints[6].clone();
    assert_eq!(
        unknown_run.checkpoints[1].checkpoint.event.kind(),
        "attempt_started"
    );
    unknown_run.checkpoints[1].checkpoint.position = 2;
    corrupt(
        standby.apply_replicated(&unknown_run, 1).await,
        "a checkpoint of a run the store does not have",
        "does not have",
    );
    // ...and a run created twice is refused.
    let mut twice = everything.clone();
    twice.checkpoints[1] = everything.checkpoints[0].clone();
    twice.checkpoints[1].checkpoint.position = 2;
    corrupt(
        standby.apply_replicated(&twice, 1).await,
        "a run created twice",
        "already",
    );
    assert_eq!(
        standby.latest_position().await.unwrap(),
        1,
        "nothing more written"
    );
    standby.apply_replicated(&everything, 1).await.unwrap();
    assert_same_store(&active, &standby, ACTIVE).await;

    // A workflow version the store holds with another text.
    let other = named(STANDBY, RegionRole::Standby, ACTIVE).await;
    let mut changed = everything.workflows[0].workflow.clone();
    changed.source.push_str("# changed\n");
    assert_eq!(other.put_workflow(&changed).await, Ok(true));
    corrupt(
        other.apply_replicated(&everything, 1).await,
        "a workflow version with another text",
        "registered already",
    );
    assert_eq!(other.latest_position().await.unwrap(), 0, "nothing written");
}
