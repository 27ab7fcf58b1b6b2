//! Promotion (epochs above every replicated one) and demotion with and without a tail.

use super::{ACTIVE, STANDBY, named, pair, rows, ship, workload};
use crate::checkpoint::Epoch;
use crate::store::replication::{RegionRole, ReplicationStore, TailRange};
use crate::store::suite::{batch, new_run, owner, read_all, started};
use crate::store::{CheckpointStore, LeaderFence, RoleRefusal, StoreError};

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
        Err(StoreError::NotStandby(refusal)) => {
            let RoleRefusal { role, action, .. } = *refusal;
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
    let source_highest = Epoch(source_highest[0].parse().unwrap());
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
