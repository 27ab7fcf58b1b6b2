//! Sync replication against real regions: a start is answered only once the standby
//! acknowledged it; without a standby it waits the sync timeout, then the region degrades
//! to async (shown in its status) until a standby catches up.

use std::time::{Duration, Instant};

use tandem_api::StartRun;

use super::config::{DrConfig, ReplicationConfig, ReplicationMode};
use super::tests::{QUICK, TestReplicator, two_regions};
use super::wire::batch_from_proto;
use crate::checkpoint::now_millis;
use crate::store::CheckpointStore;
use crate::store::replication::ReplicationStore;

fn sync(timeout: Duration) -> DrConfig {
    DrConfig {
        replication: ReplicationConfig {
            mode: ReplicationMode::Sync,
            sync_timeout: timeout,
        },
        ..DrConfig::active("eu-west")
    }
}

/// How long the test replicator holds each batch before acknowledging it.
const ACK_DELAY: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_start_returns_only_after_the_standby_acknowledged_it() {
    let (eu, us) = two_regions(sync(Duration::from_secs(5))).await;
    let client = eu.client();
    let registered = Instant::now();
    client.register_workflow(QUICK, "quick.yaml").await.unwrap();
    assert!(
        registered.elapsed() < ACK_DELAY,
        "a registration puts nothing in the log and does not wait"
    );
    // A standby that applies each batch, then waits before acknowledging it.
    let mut replicator = TestReplicator::follow(&eu.address, &us.store).await;
    let standby = us.store.clone();
    let acks = tokio::spawn(async move {
        loop {
            let batch = replicator.next().await;
            let batch = batch_from_proto(batch).unwrap();
            let state = standby
                .apply_replicated(&batch, now_millis())
                .await
                .unwrap();
            if !batch.checkpoints.is_empty() {
                tokio::time::sleep(ACK_DELAY).await;
            }
            replicator.ack(state.applied_position).await;
        }
    });
    let started = Instant::now();
    let run = client.start_run(StartRun::new("quick")).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= ACK_DELAY,
        "the start was answered after {took:?}, before the standby acknowledged it"
    );
    assert!(
        took < Duration::from_secs(5),
        "the start waited {took:?}: for the timeout rather than the acknowledgement"
    );
    // What the client was told exists is held by the standby.
    let run_id = run.run_id.parse().unwrap();
    us.store
        .run_summary(run_id)
        .await
        .expect("the standby holds the run");
    let status = client.region_status().await.unwrap();
    assert_eq!(status.replication_mode, "sync");
    assert_eq!(status.sync_degraded_since_unix_ms, None);
    acks.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_standby_sync_degrades_after_the_timeout_until_one_catches_up() {
    let timeout = Duration::from_millis(1500);
    let (eu, us) = two_regions(sync(timeout)).await;
    let client = eu.client();
    client.register_workflow(QUICK, "quick.yaml").await.unwrap();

    let started = Instant::now();
    let first = client.start_run(StartRun::new("quick")).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= timeout,
        "no standby acknowledged, yet the start was answered after {took:?}"
    );
    assert!(
        took < timeout + Duration::from_secs(2),
        "the start waited {took:?}, far beyond the sync timeout"
    );
    let status = client.region_status().await.unwrap();
    let since = status
        .sync_degraded_since_unix_ms
        .expect("the status shows the degradation");
    assert!(since <= now_millis());

    // Degraded: writes no longer wait.
    let started = Instant::now();
    client.start_run(StartRun::new("quick")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "a degraded region waited {:?}",
        started.elapsed()
    );
    client.wait_run(&first.run_id).await.unwrap();

    // A standby that catches up brings sync back.
    let mut replicator = TestReplicator::follow(&eu.address, &us.store).await;
    let latest = eu.store.latest_position().await.unwrap();
    replicator.apply_until(&us.store, latest).await;
    super::tests::eventually(Duration::from_secs(10), "sync to be back", || async {
        client
            .region_status()
            .await
            .unwrap()
            .sync_degraded_since_unix_ms
            .is_none()
    })
    .await;
}
