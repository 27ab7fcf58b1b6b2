//! Role changes against real regions: a promoted standby resumes a replicated unfinished run
//! (its succeeded task is not run again); a demoted active region stops every driver at
//! once and its writes are refused; a fenced region reports its tail and rejoins; an active
//! region that learns of a promotion from its peers demotes itself.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_api::{ClientError, RegionRole as ApiRole, StartRun};

use super::config::DrConfig;
use super::tests::{TestRegion, TestReplicator, eventually, starts_of, two_regions, whole_log};
use crate::checkpoint::{Event, NewCheckpoint, now_millis};
use crate::service::{ReplicaRole, ServiceError};
use crate::store::replication::RegionRole;
use crate::store::replication::ReplicationStore;
use crate::store::{CheckpointStore, LeaderFence, StoreError};

/// `a` finishes at once; `b` runs long enough to be in flight at the fault, and is retried
/// (an attempt in flight at a failover counts as a failed attempt).
const LONG: &str = "name: long\ntasks:\n  a: { run: \"true\" }\n  b: { needs: [a], run: sleep 60, retry: { max_attempts: 3, initial_interval: 100ms } }\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_standby_resumes_a_replicated_run_without_running_its_succeeded_task_again() {
    let (mut eu, us) = two_regions(DrConfig::active("eu-west")).await;
    let client = eu.client();
    client.register_workflow(LONG, "long.yaml").await.unwrap();
    let run = client.start_run(StartRun::new("long")).await.unwrap();
    let run_id: crate::checkpoint::RunId = run.run_id.parse().unwrap();

    // Replicate until the standby holds b's attempt start (a has succeeded by then).
    let mut replicator = TestReplicator::follow(&eu.address, &us.store).await;
    loop {
        let (applied, _) = replicator.apply_next(&us.store).await;
        let log = whole_log(&us.store).await;
        if applied > 0 && !starts_of(&log, 0, LONG, "b").is_empty() {
            break;
        }
    }
    drop(replicator);
    // The active region is lost.
    eu.lose().await;
    let fork = us.state().await.applied_position;

    let promoted = us.client().promote(1).await.unwrap();
    assert_eq!(promoted.role, ApiRole::Active);
    assert_eq!(promoted.region_epoch, 1);
    assert_eq!(promoted.promoted_at_position, Some(fork));
    assert!(promoted.promoted_at_unix_ms.is_some());
    // Sent again (a lost reply): the same answer.
    assert_eq!(us.client().promote(1).await.unwrap().region_epoch, 1);

    // The new active region's leader takes the run over and starts b again, never a.
    eventually(
        Duration::from_secs(20),
        "b to start again in us-east",
        || async { !starts_of(&whole_log(&us.store).await, fork, LONG, "b").is_empty() },
    )
    .await;
    let log = whole_log(&us.store).await;
    assert!(
        starts_of(&log, fork, LONG, "a").is_empty(),
        "task a succeeded in eu-west and must not run again"
    );
    assert!(log.iter().any(|checkpoint| checkpoint.position > fork
        && matches!(checkpoint.event, Event::RunResumed { .. })));
    assert_eq!(us.region.active_runs(), 1);
    assert!(matches!(us.region.role(), ReplicaRole::Leading { .. }));
    let status = us.client().region_status().await.unwrap();
    assert!(status.first_dispatch_at_unix_ms.is_some(), "{status:?}");
    us.client()
        .cancel_run(&run.run_id, "test over")
        .await
        .unwrap();
    let finished = us.client().wait_run(&run.run_id).await.unwrap();
    assert!(finished.state.is_final());
    assert!(
        us.store
            .run_summary(run_id)
            .await
            .unwrap()
            .status
            .is_terminal()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_region_stops_every_driver_and_its_writes_are_refused() {
    let (eu, _us) = two_regions(DrConfig::active("eu-west")).await;
    let client = eu.client();
    client.register_workflow(LONG, "long.yaml").await.unwrap();
    let run = client.start_run(StartRun::new("long")).await.unwrap();
    eventually(Duration::from_secs(10), "b to start in eu-west", || async {
        !starts_of(&whole_log(&eu.store).await, 0, LONG, "b").is_empty()
    })
    .await;
    assert_eq!(eu.region.active_runs(), 1);

    // us-east was promoted after position 1 (it had the run's creation only): eu-west's
    // later checkpoints are its tail.
    let demoted = client.demote("us-east", 1, 1).await.unwrap();
    assert_eq!(demoted.role, ApiRole::Fenced);
    assert_eq!(demoted.active_region, "us-east");
    let tail = demoted.tail.expect("the unreplicated tail");
    assert_eq!(tail.from, 2);
    assert_eq!(demoted.tail_runs.len(), 1);
    assert_eq!(demoted.tail_runs[0].run_id, run.run_id);
    assert!(!demoted.tail_runs[0].created_in_tail);

    // At once: no driver, the leader stands by, calls are refused naming us-east.
    assert_eq!(eu.region.active_runs(), 0);
    assert!(matches!(
        eu.region.role(),
        ReplicaRole::Standby {
            region_role: RegionRole::Fenced,
            ..
        }
    ));
    let refused = client.start_run(StartRun::new("long")).await;
    assert!(
        matches!(&refused, Err(error @ ClientError::RegionNotActive { .. }) if error.active_region() == Some("us-east")),
        "{refused:?}"
    );
    let refused = eu
        .region
        .cancel(run.run_id.parse().unwrap(), "no".into())
        .await;
    assert!(
        matches!(refused, Err(ServiceError::RegionNotActive { .. })),
        "{refused:?}"
    );
    // The store refuses any fenced write, whatever the writer believes.
    let latest = eu.store.latest_position().await.unwrap();
    let fenced = eu.store.fenced(LeaderFence::new(0));
    let summary = eu
        .store
        .run_summary(run.run_id.parse().unwrap())
        .await
        .unwrap();
    let write = fenced
        .append(
            summary.owner_epoch,
            vec![NewCheckpoint {
                run_id: summary.run_id,
                event: Event::RunResumed {
                    at: now_millis(),
                    owner: "an old leader".into(),
                },
            }],
        )
        .await;
    assert!(
        matches!(write, Err(StoreError::NotActive { .. })),
        "{write:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        eu.store.latest_position().await.unwrap(),
        latest,
        "nothing was written after the demotion"
    );

    // Rejoining archives the tail and makes eu-west a standby of us-east.
    let rejoined = client.rejoin("us-east", 1, 1).await.unwrap();
    assert_eq!(rejoined.role, ApiRole::Standby);
    assert_eq!(rejoined.latest_position, 1);
    assert_eq!(rejoined.applied_position, 1);
    assert!(rejoined.archived_tail_checkpoints > tail.to - tail.from);
    eventually(
        Duration::from_secs(5),
        "the leader to follow the new role",
        || async {
            matches!(
                eu.region.role(),
                ReplicaRole::Standby {
                    region_role: RegionRole::Standby,
                    ..
                }
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_whose_write_is_refused_as_not_active_stops_leading_at_once() {
    const STEPS: &str = "name: steps\ntasks:\n  a: { run: sleep 0.3 }\n  b: { needs: [a], run: sleep 0.3 }\n  c: { needs: [b], run: sleep 0.3 }\n  d: { needs: [c], run: sleep 0.3 }\n  e: { needs: [d], run: sleep 0.3 }\n";
    let (eu, _us) = two_regions(DrConfig::active("eu-west")).await;
    let client = eu.client();
    client.register_workflow(STEPS, "steps.yaml").await.unwrap();
    let run = client.start_run(StartRun::new("steps")).await.unwrap();
    // The replica's role watch stops: only the driver's refused write can tell it.
    eu.region.dr().expect("dr").stop();
    let latest = eu.store.latest_position().await.unwrap();
    eu.store.demote("us-east", 1, latest).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the driver's refused write to stop leading",
        || async { eu.region.active_runs() == 0 },
    )
    .await;
    assert!(
        matches!(
            eu.region.role(),
            ReplicaRole::Standby { epoch: 0, ref active_region, .. } if active_region == "us-east"
        ),
        "{:?}",
        eu.region.role()
    );
    let refused = eu.region.start("steps", None, Vec::new(), None).await;
    assert!(
        matches!(&refused, Err(ServiceError::RegionNotActive { active_region, .. }) if active_region == "us-east"),
        "{refused:?}"
    );
    let summary = eu
        .store
        .run_summary(run.run_id.parse().unwrap())
        .await
        .unwrap();
    assert!(!summary.status.is_terminal(), "the run is left as it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_active_region_that_learns_of_a_promotion_from_its_peers_demotes_itself() {
    // us-east is a standby promoted while eu-west could not tell it.
    let us = TestRegion::start("us-east", DrConfig::standby("eu-west")).await;
    let mut dr = DrConfig::active("eu-west");
    dr.peers = BTreeMap::from([("us-east".to_string(), vec![us.address.clone()])]);
    dr.peer_check_interval = Duration::from_millis(200);
    let eu = TestRegion::start("eu-west", dr).await;
    let client = eu.client();
    client.register_workflow(LONG, "long.yaml").await.unwrap();
    client.start_run(StartRun::new("long")).await.unwrap();
    assert_eq!(eu.region.active_runs(), 1);

    us.client().promote(1).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "eu-west to learn the new epoch",
        || async { eu.state().await.role != RegionRole::Active },
    )
    .await;
    let state = eu.state().await;
    assert_eq!(state.role, RegionRole::Fenced, "it wrote after the fork");
    assert_eq!(state.active_region, "us-east");
    assert_eq!(state.region_epoch, 1);
    eventually(
        Duration::from_secs(5),
        "eu-west's drivers to stop",
        || async { eu.region.active_runs() == 0 },
    )
    .await;
    assert!(matches!(
        client.start_run(StartRun::new("long")).await,
        Err(ClientError::RegionNotActive { .. })
    ));
}
