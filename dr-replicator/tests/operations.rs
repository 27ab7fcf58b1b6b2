//! `status`, `promote`, `rejoin` and `switchover` as library calls against two real regions
//! (each a region replica over its own PostgreSQL database, serving on loopback) with a
//! replicator per region, as `tandem replicate` runs them.

mod common;

use std::time::Duration;

use common::{
    Running, TestRegion, assert_same_log, fast, regions_of, start_replicator, wait_applied,
    wait_settled,
};
use tandem_dr::{DrError, Regions, SwitchoverOptions, promote, rejoin, switchover};
use tandem_engine::service::DrConfig;
use tandem_engine::store::replication::{RegionRole, ReplicationStore};

/// eu-west active and us-east its standby, with both replicators running.
async fn pair() -> (TestRegion, TestRegion, Running, Running) {
    let eu = TestRegion::start("eu-west", DrConfig::active("eu-west")).await;
    let us = TestRegion::start("us-east", DrConfig::standby("eu-west")).await;
    let us_replicator = start_replicator(
        us.store.clone(),
        fast("us-east", &[("eu-west", vec![eu.address.clone()])]),
    );
    let eu_replicator = start_replicator(
        eu.store.clone(),
        fast("eu-west", &[("us-east", vec![us.address.clone()])]),
    );
    (eu, us, eu_replicator, us_replicator)
}

/// Asks for the status until `condition` holds (at most 20 s).
async fn status_until(
    regions: &Regions,
    what: &str,
    condition: impl Fn(&tandem_dr::DrStatus) -> bool,
) -> tandem_dr::DrStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = regions.status().await;
        if condition(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {what} within 20 s; status: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn no_progress(_: &tandem_dr::CatchUp) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_there_and_back_loses_nothing() {
    let (eu, us, eu_replicator, us_replicator) = pair().await;
    eu.run_workflows(3, "first").await;
    let regions = regions_of(&[&eu, &us]);
    let latest = eu.latest().await;
    let status = status_until(&regions, "us-east caught up and streaming", |status| {
        status.healthy()
            && status
                .answered("us-east")
                .is_some_and(|us| us.applied_position >= latest)
    })
    .await;
    let us_report = status.region("us-east").unwrap();
    assert_eq!(us_report.lag.unwrap().positions, 0);
    assert_eq!(status.active()[0].region, "eu-west");

    // While eu-west answers, a promotion is refused and names it.
    let refused = promote(&regions, "us-east", false)
        .await
        .expect_err("eu-west answers");
    let DrError::Precondition(message) = &refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert!(
        message.contains("eu-west") && message.contains("switchover"),
        "{message}"
    );
    assert_eq!(
        us.store.region_state().await.unwrap().role,
        RegionRole::Standby,
        "nothing changed"
    );

    let mut caught = Vec::new();
    let outcome = switchover(
        &regions,
        &SwitchoverOptions::new("us-east"),
        &mut |catch_up| caught.push(*catch_up),
    )
    .await
    .expect("the switchover succeeds");
    assert_eq!(
        (outcome.from.as_str(), outcome.to.as_str()),
        ("eu-west", "us-east")
    );
    assert_eq!(outcome.to_status.role, RegionRole::Active);
    assert_eq!(outcome.from_status.role, RegionRole::Standby);
    assert_eq!(outcome.from_status.active_region, "us-east");
    assert_eq!(outcome.fork_position, eu.latest().await);
    assert_eq!(
        outcome.to_status.promoted_at_position,
        Some(outcome.fork_position)
    );
    assert!(outcome.region_epoch >= 1);
    assert!(!caught.is_empty(), "progress was reported");
    assert_same_log(&eu.store, &us.store).await;

    // us-east runs work now, and eu-west (its replicator follows the new direction)
    // receives it.
    us.run_workflows(2, "second").await;
    let latest = us.latest().await;
    wait_applied(&eu.store, latest, Duration::from_secs(20)).await;
    assert_same_log(&us.store, &eu.store).await;

    // And back.
    let back = switchover(
        &regions,
        &SwitchoverOptions::new("eu-west"),
        &mut no_progress,
    )
    .await
    .expect("the switchover back succeeds");
    assert_eq!(back.to_status.role, RegionRole::Active);
    assert!(back.region_epoch > outcome.region_epoch);
    eu.run_workflows(1, "third").await;
    wait_applied(&us.store, eu.latest().await, Duration::from_secs(20)).await;
    assert_same_log(&eu.store, &us.store).await;
    let status = status_until(&regions, "both regions answer", |status| status.healthy()).await;
    assert_eq!(status.active()[0].region, "eu-west");
    eu_replicator.stop().await.expect("a clean stop");
    us_replicator.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_refuses_a_standby_that_does_not_replicate() {
    let eu = TestRegion::start("eu-west", DrConfig::active("eu-west")).await;
    let us = TestRegion::start("us-east", DrConfig::standby("eu-west")).await;
    let regions = regions_of(&[&eu, &us]);
    let mut options = SwitchoverOptions::new("us-east");
    options.timeout = Duration::from_secs(1);
    let error = switchover(&regions, &options, &mut no_progress)
        .await
        .expect_err("no replicator runs in us-east");
    let text = error.to_string();
    assert!(matches!(error, DrError::Precondition(_)), "{text}");
    assert!(text.contains("not replicating from eu-west"), "{text}");
    let status = regions.status().await;
    assert_eq!(status.answered("eu-west").unwrap().role, RegionRole::Active);
    let error = switchover(
        &regions,
        &SwitchoverOptions::new("eu-west"),
        &mut no_progress,
    )
    .await
    .expect_err("eu-west is active already");
    assert!(
        error.to_string().contains("active region already"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_promotion_fences_the_old_active_and_rejoin_archives_its_tail() {
    let eu = TestRegion::start("eu-west", DrConfig::active("eu-west")).await;
    let us = TestRegion::start("us-east", DrConfig::standby("eu-west")).await;
    let us_replicator = start_replicator(
        us.store.clone(),
        fast("us-east", &[("eu-west", vec![eu.address.clone()])]),
    );
    eu.run_workflows(2, "replicated").await;
    let fork = eu.latest().await;
    wait_applied(&us.store, fork, Duration::from_secs(20)).await;
    // Replication stops; eu-west goes on writing: a tail us-east never receives.
    us_replicator.stop().await.expect("a clean stop");
    eu.run_workflows(1, "lost").await;
    let eu_latest = eu.latest().await;
    assert!(eu_latest > fork);
    let regions = regions_of(&[&eu, &us]);

    let outcome = promote(&regions, "us-east", true)
        .await
        .expect("a forced promotion");
    assert!(outcome.forced);
    assert_eq!(outcome.status.role, RegionRole::Active);
    assert_eq!(outcome.status.promoted_at_position, Some(fork));
    assert_eq!(outcome.previous_active, "eu-west");
    assert_eq!(outcome.region_epoch, outcome.before.max_epoch() + 1);
    let told = &outcome.demotions[0];
    assert_eq!(told.region, "eu-west");
    let eu_after = told.status.as_ref().expect("eu-west was told");
    assert_eq!(eu_after.role, RegionRole::Fenced);
    let tail = eu_after.tail.expect("a tail");
    assert_eq!((tail.from, tail.to), (fork + 1, eu_latest));

    let status = regions.status().await;
    let fenced = status.answered("eu-west").unwrap();
    assert_eq!(fenced.role, RegionRole::Fenced);
    assert!(!fenced.tail_runs.is_empty(), "the tail's runs are listed");
    assert!(fenced.tail_runs.iter().any(|run| run.created_in_tail));

    let rejoined = rejoin(&regions, "eu-west").await.expect("eu-west rejoins");
    assert_eq!(rejoined.active_region, "us-east");
    assert_eq!(rejoined.fork_position, fork);
    assert!(!rejoined.demoted_first);
    assert_eq!(
        rejoined.tail.map(|tail| (tail.from, tail.to)),
        Some((fork + 1, eu_latest))
    );
    assert_eq!(rejoined.archived_checkpoints, eu_latest - fork);
    assert_eq!(rejoined.status.role, RegionRole::Standby);
    assert_eq!(rejoined.status.active_region, "us-east");

    // eu-west's replicator pulls from us-east: its log becomes us-east's.
    let eu_replicator = start_replicator(
        eu.store.clone(),
        fast("eu-west", &[("us-east", vec![us.address.clone()])]),
    );
    us.run_workflows(1, "after").await;
    wait_applied(&eu.store, us.latest().await, Duration::from_secs(20)).await;
    assert_same_log(&us.store, &eu.store).await;
    eu_replicator.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_load_carries_every_checkpoint_over() {
    let (eu, us, eu_replicator, us_replicator) = pair().await;
    eu.run_workflows(1, "load").await;
    let regions = regions_of(&[&eu, &us]);
    status_until(&regions, "us-east streaming", |status| status.healthy()).await;
    // Runs start on eu-west without pause until the switchover is over; those refused once
    // eu-west stopped writing are fine.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let client = eu.client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut started = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if client
                    .start_run(tandem_api::StartRun::new("chain-load"))
                    .await
                    .is_ok()
                {
                    started += 1;
                }
            }
            started
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = switchover(
        &regions,
        &SwitchoverOptions::new("us-east"),
        &mut no_progress,
    )
    .await
    .expect("the switchover succeeds under load");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = writer.await.expect("the writer ends");
    assert!(started > 0, "runs were started during the switchover");
    assert_eq!(outcome.to_status.role, RegionRole::Active);
    assert_eq!(
        outcome.from_status.role,
        RegionRole::Standby,
        "{outcome:#?}"
    );
    assert_eq!(outcome.from_status.region_epoch, outcome.region_epoch);
    // Every checkpoint eu-west wrote is in us-east (which finishes the runs in flight), and
    // eu-west follows us-east again.
    wait_settled(&us.store, &eu.store, Duration::from_secs(60)).await;
    assert_same_log(&us.store, &eu.store).await;
    eu_replicator.stop().await.expect("a clean stop");
    us_replicator.stop().await.expect("a clean stop");
}
