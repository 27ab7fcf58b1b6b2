//! A region whose replicas elect their leader through etcd (a real etcd): the elected replica
//! of a standby region raises the store's fence and resumes nothing; followers refuse the
//! same calls; promotion makes the same elected replica take over and demotion stands it
//! down without giving up its election key.

use std::time::Duration;

use tandem_api::StartRun;

use super::config::DrConfig;
use super::tests::{QUICK, TestRegion, connect, eventually, fresh_database};
use crate::leadership::{Election, ElectionConfig, Role};
use crate::service::{Opened, ReplicaRole, ServiceError};
use crate::store::CheckpointStore;
use crate::store::replication::{RegionRole, ReplicationStore};
use crate::testing::TempEtcd;

fn election(etcd: &TempEtcd, member: &str) -> Election {
    Election::start(ElectionConfig {
        lease_ttl: Duration::from_secs(4),
        connect_timeout: Duration::from_secs(1),
        ..ElectionConfig::new(
            etcd.endpoints(),
            "us-east",
            member,
            format!("http://{member}.test:7233"),
        )
    })
}

/// The elected one of `replicas`, once one stands by or leads.
async fn elected(replicas: &[&TestRegion]) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(index) = replicas
            .iter()
            .position(|replica| replica.region.role().elected_epoch().is_some())
        {
            return index;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a replica was elected within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_elected_replica_of_a_standby_region_stands_by_and_takes_over_when_promoted() {
    let etcd = TempEtcd::start().await.expect("a temp etcd");
    let url = fresh_database().await;
    let store = connect(&url).await;
    store
        .init_region("us-east", RegionRole::Standby, "eu-west")
        .await
        .unwrap();
    let first = TestRegion::serve_elected(
        "us-east",
        DrConfig::standby("eu-west"),
        connect(&url).await,
        Some(election(&etcd, "a")),
    )
    .await;
    let second = TestRegion::serve_elected(
        "us-east",
        DrConfig::standby("eu-west"),
        connect(&url).await,
        Some(election(&etcd, "b")),
    )
    .await;
    assert_eq!(first.opened, Opened::Elected);
    let replicas = [&first, &second];
    let index = elected(&replicas).await;
    let (leader, follower) = (replicas[index], replicas[1 - index]);
    let ReplicaRole::Standby {
        epoch,
        region_role: RegionRole::Standby,
        active_region,
    } = leader.region.role()
    else {
        panic!(
            "expected a standby leader, found {:?}",
            leader.region.role()
        );
    };
    assert_eq!(active_region, "eu-west");
    assert!(epoch > 0);
    eventually(
        Duration::from_secs(10),
        "the fence to be raised",
        || async { store.leader_epoch().await.unwrap() == epoch },
    )
    .await;
    // Leader and follower alike refuse to start runs, naming the active region.
    for replica in replicas {
        let refused = replica.region.register("q.yaml".into(), QUICK.into()).await;
        assert!(
            matches!(&refused, Err(ServiceError::RegionNotActive { active_region, .. }) if active_region == "eu-west"),
            "{refused:?}"
        );
    }
    assert!(matches!(
        follower.region.role(),
        ReplicaRole::Following { .. }
    ));

    // Promotion: the same elected replica takes over with the same leader epoch.
    leader.client().promote(1).await.unwrap();
    eventually(Duration::from_secs(10), "the leader to lead", || async {
        leader.region.role() == ReplicaRole::Leading { epoch }
    })
    .await;
    let client = leader.client();
    client.register_workflow(QUICK, "quick.yaml").await.unwrap();
    let run = client.start_run(StartRun::new("quick")).await.unwrap();
    client.wait_run(&run.run_id).await.unwrap();

    // Demotion by another process (the store changes under the replica): the role watch
    // stands the leader down; it keeps its election key.
    let latest = store.latest_position().await.unwrap();
    store.demote("eu-west", 2, latest).await.unwrap();
    eventually(Duration::from_secs(5), "the leader to stand by", || async {
        matches!(leader.region.role(), ReplicaRole::Standby { epoch: e, region_role: RegionRole::Standby, .. } if e == epoch)
    })
    .await;
    let still = leader
        .region
        .election()
        .expect("an election")
        .subscribe()
        .borrow()
        .clone();
    assert!(
        matches!(still, Role::Leader { epoch: e, .. } if e == epoch),
        "the election key is kept: {still:?}"
    );
    assert_eq!(store.leader_epoch().await.unwrap(), epoch);
}
