//! Roles: fenced writes refused while the region is not active (also when they waited for
//! the head during the change), promotion, demotion with and without a tail.

use std::time::Duration;

use super::super::PostgresStore;
use super::{ACTIVE, STANDBY, named, pair, rows, ship, workflow, workload};
use crate::checkpoint::RunId;
use crate::store::replication::{RegionRole, ReplicationStore, TailRange};
use crate::store::suite::{batch, created_event, new_run, owner, read_all, started};
use crate::store::{CheckpointStore, LeaderFence, StoreError};

/// Asserts that `result` is the refusal of a write by region [`ACTIVE`] in `role`, whose
/// active region is [`STANDBY`].
fn assert_not_active<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str, role: &str) {
    match result {
        Err(StoreError::NotActive {
            region,
            role: found,
            active_region,
            ..
        }) => assert_eq!(
            (region.as_str(), found.as_str(), active_region.as_str()),
            (ACTIVE, role, STANDBY),
            "{what}"
        ),
        other => panic!("{what}: expected NotActive, found {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fenced_write_is_refused_after_demotion_while_raise_fence_works() {
    let store = named(ACTIVE, RegionRole::Active, ACTIVE).await;
    let leader = store.fenced(LeaderFence::new(3));
    assert_eq!(leader.raise_fence().await, Ok(3));
    let runs = workload(&leader, 1).await;
    let latest = store.latest_position().await.unwrap();
    let state = store.demote(STANDBY, 1, latest).await.unwrap();
    assert_eq!(
        (
            state.role,
            state.active_region.as_str(),
            state.region_epoch,
            state.tail
        ),
        (RegionRole::Standby, STANDBY, 1, None)
    );
    assert_eq!(
        (state.applied_position, state.source_latest_position),
        (latest, latest)
    );
    assert_eq!(
        state.applied_registration, 0,
        "workflows are asked for again"
    );
    let log = read_all(&store).await;

    let role = "standby";
    let run_id = RunId::new();
    let o = owner("late", 9);
    assert_not_active(
        leader
            .create_run(run_id, &o, created_event("late", 9))
            .await,
        "create_run",
        role,
    );
    assert_not_active(
        leader
            .create_run_once("unused", run_id, &o, created_event("late", 9))
            .await,
        "create_run_once with an unused key",
        role,
    );
    assert_not_active(
        leader
            .create_run_once("key-1", run_id, &o, created_event("late", 9))
            .await,
        "create_run_once with a used key",
        role,
    );
    assert_not_active(
        leader
            .create_scheduled_run("hourly", 99, run_id, &o, created_event("hourly", 9))
            .await,
        "create_scheduled_run",
        role,
    );
    assert_not_active(leader.claim_run(runs.plain.0, &o).await, "claim_run", role);
    assert_not_active(
        leader.claim_run(run_id, &o).await,
        "claim_run of no run",
        role,
    );
    assert_not_active(
        leader
            .append(runs.plain.1, batch(runs.plain.0, &[started(5, 1)]))
            .await,
        "append",
        role,
    );
    assert_not_active(
        leader.put_workflow(&workflow("late", 9)).await,
        "put_workflow of a new workflow",
        role,
    );
    assert_not_active(
        leader.put_workflow(&workflow("nightly", 1)).await,
        "put_workflow of a registered one",
        role,
    );
    assert_eq!(read_all(&store).await, log, "nothing written");
    assert_eq!(
        rows(&store, "SELECT count(*)::text FROM workflows").await,
        ["2"]
    );

    // A standby region elects leaders too; a superseded one learns that first.
    let newer = store.fenced(LeaderFence::new(4));
    assert_eq!(newer.raise_fence().await, Ok(4));
    match leader
        .append(runs.plain.1, batch(runs.plain.0, &[started(5, 1)]))
        .await
    {
        Err(StoreError::Superseded { epoch, highest, .. }) => assert_eq!((epoch, highest), (3, 4)),
        other => panic!("expected Superseded before NotActive, found {other:?}"),
    }
    assert_not_active(
        newer.claim_run(runs.plain.0, &o).await,
        "the new leader's claim",
        role,
    );
    // Unfenced handles (tools, the replicator) are not refused.
    store
        .append(runs.plain.1, batch(runs.plain.0, &[started(5, 1)]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_waiting_for_the_head_while_the_region_is_demoted_are_refused() {
    let store = named(ACTIVE, RegionRole::Active, ACTIVE).await;
    let leader = store.fenced(LeaderFence::new(2));
    let (run_id, epoch) = new_run(&leader, "waiting", 1).await;
    let log = read_all(&store).await;

    // A demotion in progress holds the head's row lock.
    let mut demoting = raw(&store).await;
    let transaction = demoting.transaction().await.unwrap();
    transaction
        .execute("SELECT 1 FROM log_head FOR NO KEY UPDATE", &[])
        .await
        .unwrap();
    let mut writes = Vec::new();
    for kind in 0..4 {
        let leader = leader.clone();
        writes.push(tokio::spawn(async move {
            let o = owner("waiting", 2);
            match kind {
                0 => leader
                    .append(epoch, batch(run_id, &[started(0, 1)]))
                    .await
                    .map(drop),
                1 => leader
                    .create_run(RunId::new(), &o, created_event("waiting", 2))
                    .await
                    .map(drop),
                2 => leader.claim_run(run_id, &o).await.map(drop),
                _ => leader.put_workflow(&workflow("waiting", 2)).await.map(drop),
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    transaction
        .execute(
            "UPDATE log_head SET region_role = 'fenced', region_epoch = 1",
            &[],
        )
        .await
        .unwrap();
    transaction
        .execute(
            "UPDATE region_state SET active_region = $1, tail_from = 1, tail_to = 1",
            &[&STANDBY],
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    for (kind, write) in writes.into_iter().enumerate() {
        assert_not_active(
            write.await.unwrap(),
            &format!("waiting write {kind}"),
            "fenced",
        );
    }
    assert_eq!(read_all(&store).await, log, "nothing written");
}

/// A plain connection to `store`'s database.
async fn raw(store: &PostgresStore) -> tokio_postgres::Client {
    let url = store.location();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_outranks_every_replicated_epoch() {
    let (active, standby) = pair().await;
    // Epochs well above the standby's own sequence.
    for seq in 0..5 {
        let (run_id, _) = new_run(&active, "busy", seq).await;
        for _ in 0..3 {
            active.claim_run(run_id, &owner("busy", 1)).await.unwrap();
        }
    }
    let runs = workload(&active, 1).await;
    ship(&active, &standby, 1000).await;
    let highest = read_all(&active)
        .await
        .iter()
        .map(|c| c.epoch.0)
        .max()
        .unwrap();
    let sequence = rows(&standby, "SELECT last_value::text FROM epochs").await;
    assert!(
        sequence[0].parse::<u64>().unwrap() >= highest,
        "applying raised the epoch sequence to {sequence:?}, past the applied epochs (up to {highest})"
    );
    let leader = standby.fenced(LeaderFence::new(1));
    assert_eq!(
        leader.raise_fence().await,
        Ok(1),
        "a standby elects leaders"
    );
    match leader.claim_run(runs.plain.0, &owner("promoted", 1)).await {
        Err(StoreError::NotActive {
            region,
            role,
            active_region,
            ..
        }) => {
            assert_eq!(
                (region.as_str(), role.as_str(), active_region.as_str()),
                (STANDBY, "standby", ACTIVE)
            )
        }
        other => panic!("expected NotActive before promotion, found {other:?}"),
    }
    match standby.promote(0).await {
        Err(StoreError::StaleRegionEpoch {
            given,
            current,
            expected,
            ..
        }) => {
            assert_eq!((given, current, expected.as_str()), (0, 0, "higher than"))
        }
        other => panic!("expected StaleRegionEpoch, found {other:?}"),
    }
    let latest = active.latest_position().await.unwrap();
    let state = standby.promote(1).await.unwrap();
    assert_eq!(
        (state.role, state.region_epoch, state.active_region.as_str()),
        (RegionRole::Active, 1, STANDBY)
    );
    assert_eq!(state.promoted_at_position, Some(latest));
    match standby.promote(2).await {
        Err(StoreError::NotStandby { role, action, .. }) => {
            assert_eq!((role.as_str(), action.as_str()), ("active", "promotion"))
        }
        other => panic!("expected NotStandby, found {other:?}"),
    }

    let highest = read_all(&active)
        .await
        .iter()
        .map(|c| c.epoch)
        .max()
        .unwrap();
    let source_highest = rows(&active, "SELECT max(owner_epoch)::text FROM runs").await;
    let source_highest = crate::checkpoint::Epoch(source_highest[0].parse().unwrap());
    let claimed = leader
        .claim_run(runs.plain.0, &owner("promoted", 1))
        .await
        .unwrap();
    assert!(
        claimed > highest && claimed > source_highest,
        "claimed {claimed}, replicated up to {highest}, source owners up to {source_highest}"
    );
    let (_, created) = new_run(&leader, "fresh", 1).await;
    assert!(created > claimed, "{created} after {claimed}");
    leader
        .append(claimed, batch(runs.plain.0, &[started(7, 1)]))
        .await
        .unwrap();
    assert_eq!(standby.latest_position().await.unwrap(), latest + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demotion_makes_a_standby_without_a_tail_and_a_fenced_region_with_one() {
    let store = named(ACTIVE, RegionRole::Active, ACTIVE).await;
    workload(&store, 1).await;
    let latest = store.latest_position().await.unwrap();
    match store.demote(ACTIVE, 1, latest).await {
        Err(StoreError::InvalidAppend { detail, .. }) => {
            assert!(detail.contains(ACTIVE), "{detail}")
        }
        other => panic!("expected InvalidAppend for demoting to itself, found {other:?}"),
    }
    let unchanged = store.region_state().await.unwrap();
    assert_eq!(
        store.demote(STANDBY, 0, 0).await.unwrap(),
        unchanged,
        "epoch 0 is not higher"
    );
    assert_eq!(unchanged.role, RegionRole::Active);

    let fork = latest - 3;
    let state = store.demote(STANDBY, 2, fork).await.unwrap();
    assert_eq!(
        (state.role, state.region_epoch, state.active_region.as_str()),
        (RegionRole::Fenced, 2, STANDBY)
    );
    assert_eq!(
        state.tail,
        Some(TailRange {
            from: fork + 1,
            to: latest
        })
    );
    assert_eq!(
        store.demote(STANDBY, 2, latest).await.unwrap(),
        state,
        "same epoch: unchanged"
    );
    assert_eq!(
        store.latest_position().await.unwrap(),
        latest,
        "the tail is kept"
    );

    let report = store.tail_report().await.unwrap();
    assert_eq!(report.tail, state.tail);
    assert_eq!(report.archived_checkpoints, 0);
    // The last three checkpoints: two of the keyed run (started, finished), created before
    // the tail, and one of the claimed scheduled run.
    let log = read_all(&store).await;
    let tail_runs: Vec<_> = report
        .runs
        .iter()
        .map(|run| {
            (
                run.run_id,
                run.workflow.as_str(),
                run.checkpoints,
                run.created_in_tail,
            )
        })
        .collect();
    assert_eq!(
        tail_runs,
        [
            (log[6].run_id, "nightly", 2, false),
            (log[8].run_id, "hourly", 1, false),
        ]
    );
    let standby = named(STANDBY, RegionRole::Standby, ACTIVE).await;
    assert_eq!(
        standby.tail_report().await.unwrap().tail,
        None,
        "no tail but fenced"
    );
}
