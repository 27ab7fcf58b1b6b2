//! Naming a store's region, and what `read_replication` ships beside the checkpoints.

use super::super::PostgresStore;
use super::super::tests::{config, fresh_database};
use super::{ACTIVE, STANDBY, named, workload};
use crate::store::replication::{RegionRole, ReplicationStore};
use crate::store::suite::{new_run, read_all};
use crate::store::{CheckpointStore, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_is_active_until_named_and_keeps_its_first_name() {
    let store = PostgresStore::connect(config(&fresh_database().await))
        .await
        .unwrap();
    let fresh = store.region_state().await.unwrap();
    assert_eq!(
        (fresh.region.as_str(), fresh.role, fresh.region_epoch),
        ("", RegionRole::Active, 0),
        "{fresh:?}"
    );
    assert_eq!(
        (
            fresh.applied_position,
            fresh.tail,
            fresh.promoted_at_position
        ),
        (0, None, None)
    );

    let refused = |result: Result<_, StoreError>, what: &str| match result {
        Err(StoreError::InvalidAppend { detail, .. }) => detail,
        other => panic!("{what}: expected InvalidAppend, found {other:?}"),
    };
    refused(
        store.init_region("", RegionRole::Active, "").await,
        "an empty name",
    );
    let detail = refused(
        store.init_region(ACTIVE, RegionRole::Fenced, ACTIVE).await,
        "the role fenced",
    );
    assert!(detail.contains("fenced"), "{detail}");
    refused(
        store.init_region(STANDBY, RegionRole::Standby, "").await,
        "a standby without an active region",
    );
    refused(
        store
            .init_region(STANDBY, RegionRole::Standby, STANDBY)
            .await,
        "a standby of itself",
    );
    assert_eq!(
        store.region_state().await.unwrap(),
        fresh,
        "refusals change nothing"
    );

    let named = store
        .init_region(ACTIVE, RegionRole::Active, "ignored")
        .await
        .unwrap();
    assert_eq!(
        (
            named.region.as_str(),
            named.role,
            named.active_region.as_str()
        ),
        (ACTIVE, RegionRole::Active, ACTIVE)
    );
    let again = store
        .init_region(ACTIVE, RegionRole::Standby, STANDBY)
        .await
        .unwrap();
    assert_eq!(again, named, "a later start keeps the recorded role");
    match store
        .init_region(STANDBY, RegionRole::Active, STANDBY)
        .await
    {
        Err(StoreError::RegionMismatch {
            expected, found, ..
        }) => assert_eq!((expected.as_str(), found.as_str()), (STANDBY, ACTIVE)),
        other => panic!("expected RegionMismatch, found {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_must_start_from_an_empty_store() {
    let store = PostgresStore::connect(config(&fresh_database().await))
        .await
        .unwrap();
    new_run(&store, "own", 1).await;
    match store
        .init_region(STANDBY, RegionRole::Standby, ACTIVE)
        .await
    {
        Err(StoreError::InvalidAppend { detail, .. }) => {
            assert!(detail.contains("empty database"), "{detail}")
        }
        other => panic!("expected InvalidAppend, found {other:?}"),
    }
    assert_eq!(store.region_state().await.unwrap().region, "", "not named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_replication_ships_origins_and_registrations_after_the_cursors() {
    let store = named(ACTIVE, RegionRole::Active, ACTIVE).await;
    let runs = workload(&store, 7).await;
    let log = read_all(&store).await;
    let slice = store.read_replication(0, 0, 1000).await.unwrap();
    let shipped: Vec<_> = slice
        .checkpoints
        .iter()
        .map(|c| c.checkpoint.clone())
        .collect();
    assert_eq!(shipped, log, "every checkpoint, in log order");
    for replicated in &slice.checkpoints {
        let created = replicated.checkpoint.event.kind() == "run_created";
        assert_eq!(replicated.origin.is_some(), created, "{replicated:?}");
    }
    let origin_of = |run_id| {
        slice
            .checkpoints
            .iter()
            .find(|c| c.checkpoint.run_id == run_id && c.origin.is_some())
            .and_then(|c| c.origin.clone())
            .unwrap_or_else(|| panic!("the origin of run {run_id}"))
    };
    let plain = origin_of(runs.plain.0);
    assert_eq!((plain.idempotency_key, plain.schedule_tick), (None, None));
    assert_eq!(plain.owner.host, "nightly");
    let keyed = origin_of(runs.keyed);
    assert_eq!(
        (keyed.idempotency_key.as_deref(), keyed.schedule_tick),
        (Some("key-7"), None)
    );
    let scheduled = origin_of(runs.scheduled.0);
    assert_eq!(
        (scheduled.idempotency_key, scheduled.schedule_tick),
        (None, Some(7))
    );
    assert_eq!(scheduled.owner.host, "claimer", "the run's current owner");

    let names: Vec<_> = slice
        .workflows
        .iter()
        .map(|w| w.workflow.name.as_str())
        .collect();
    assert_eq!(names, ["nightly", "hourly"], "registration order");
    let first = slice.workflows[0].registration;
    assert!(slice.workflows[1].registration > first);
    let after = store.read_replication(3, first, 2).await.unwrap();
    let positions: Vec<_> = after
        .checkpoints
        .iter()
        .map(|c| c.checkpoint.position)
        .collect();
    assert_eq!(positions, [4, 5], "at most the limit, after the position");
    assert_eq!(
        after.workflows,
        slice.workflows[1..],
        "after the registration"
    );
    let latest = store.latest_position().await.unwrap();
    let past = store.read_replication(latest, u64::MAX, 10).await.unwrap();
    assert!(
        past.checkpoints.is_empty() && past.workflows.is_empty(),
        "{past:?}"
    );
}
