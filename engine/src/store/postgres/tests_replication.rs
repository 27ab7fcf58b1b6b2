//! Cross-region replication in PostgreSQL ([`ReplicationStore`]), each test on fresh
//! databases of the shared private server: two databases stand for two regions' stores, and
//! [`ship`] plays the replicator (read from one, apply to the other).

mod apply;
mod concurrent;
mod promotion;
mod region;
mod rejoin;
mod roles;

use super::PostgresStore;
use super::tests::{config, fresh_database};
use crate::checkpoint::{Epoch, Event, RunEnd, RunId, now_millis};
use crate::store::replication::{RegionRole, RegionState, ReplicatedBatch, ReplicationStore};
use crate::store::suite::{batch, created_event, new_run, owner, read_all, started};
use crate::store::{CheckpointStore, CreateOutcome, StoredWorkflow};

/// The active region of the tests.
const ACTIVE: &str = "eu-west";
/// The standby region of the tests.
const STANDBY: &str = "us-east";

/// A store on a fresh database, named `region` with `role` (active region `active`).
async fn named(region: &str, role: RegionRole, active: &str) -> PostgresStore {
    let store = PostgresStore::connect(config(&fresh_database().await))
        .await
        .expect("a store on a fresh database");
    let state = store
        .init_region(region, role, active)
        .await
        .unwrap_or_else(|error| panic!("naming the store {region} ({role}): {error}"));
    assert_eq!((state.region.as_str(), state.role), (region, role));
    store
}

/// An active store of [`ACTIVE`] and a standby store of [`STANDBY`] following it.
async fn pair() -> (PostgresStore, PostgresStore) {
    (
        named(ACTIVE, RegionRole::Active, ACTIVE).await,
        named(STANDBY, RegionRole::Standby, ACTIVE).await,
    )
}

/// The batch the replicator would ship from `source` after `after` (position, registration),
/// at most `limit` checkpoints.
async fn batch_from(source: &PostgresStore, after: (u64, u64), limit: usize) -> ReplicatedBatch {
    let state = source.region_state().await.expect("the source's state");
    let source_latest_position = source.latest_position().await.expect("the source's latest");
    let slice = source
        .read_replication(after.0, after.1, limit)
        .await
        .unwrap_or_else(|error| panic!("read_replication({after:?}, {limit}): {error}"));
    ReplicatedBatch {
        source_region: state.region,
        region_epoch: state.region_epoch,
        source_latest_position,
        checkpoints: slice.checkpoints,
        workflows: slice.workflows,
    }
}

/// Ships `source`'s log to `target` in batches of at most `limit` checkpoints until a batch
/// brings nothing new; returns the target's state.
async fn ship(source: &PostgresStore, target: &PostgresStore, limit: usize) -> RegionState {
    loop {
        let state = target.region_state().await.expect("the target's state");
        let after = (state.applied_position, state.applied_registration);
        let batch = batch_from(source, after, limit).await;
        let done = batch.checkpoints.is_empty() && batch.workflows.is_empty();
        let applied = target
            .apply_replicated(&batch, now_millis())
            .await
            .unwrap_or_else(|error| panic!("applying a batch after {after:?}: {error}"));
        if done {
            return applied;
        }
    }
}

/// The rows of `query` (one text column) on the database of `store`.
async fn rows(store: &PostgresStore, query: &str) -> Vec<String> {
    let url = store.location();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error}"));
    tokio::spawn(connection);
    client
        .query(query, &[])
        .await
        .unwrap_or_else(|error| panic!("{query}: {error}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Asserts that `target` holds `source`'s log position for position, and the same runs (as
/// far as the log makes them: not their owners), idempotency keys and schedule ticks.
async fn assert_same_log(source: &PostgresStore, target: &PostgresStore) {
    let log = read_all(source).await;
    assert!(!log.is_empty(), "the source has a log to compare");
    assert_eq!(
        read_all(target).await,
        log,
        "the target's log is the source's"
    );
    assert_eq!(
        target.latest_position().await.unwrap(),
        source.latest_position().await.unwrap(),
        "latest positions"
    );
    for query in [
        "SELECT concat_ws(' ', run_id, workflow, version, status, created_at, created_position,
             finished_at) FROM runs ORDER BY created_position",
        "SELECT idempotency_key || ' ' || run_id FROM idempotency_keys ORDER BY 1",
        "SELECT concat_ws(' ', workflow, tick, run_id) FROM schedule_ticks ORDER BY 1",
    ] {
        assert_eq!(
            rows(target, query).await,
            rows(source, query).await,
            "{query}"
        );
    }
}

/// [`assert_same_log`], and the same run owners (hosts prefixed with `source_region/`) and
/// workflows (in the same registration order).
async fn assert_same_store(source: &PostgresStore, target: &PostgresStore, source_region: &str) {
    assert_same_log(source, target).await;
    let owners = |prefix: &str| {
        format!(
            "SELECT concat_ws(' ', '{prefix}' || owner_host, owner_pid, owner_start_ticks)
             FROM runs ORDER BY created_position"
        )
    };
    let source_owners = rows(source, &owners(&format!("{source_region}/"))).await;
    assert_eq!(rows(target, &owners("")).await, source_owners, "run owners");
    let workflows = "SELECT concat_ws(' ', name, version, md5(source), file_name, registered_at)
        FROM workflows ORDER BY registration";
    assert_eq!(
        rows(target, workflows).await,
        rows(source, workflows).await,
        "workflows"
    );
}

/// A workflow named `name` registered at `at`.
fn workflow(name: &str, at: i64) -> StoredWorkflow {
    StoredWorkflow {
        name: name.to_string(),
        version: format!("{name}-v{at}"),
        source: format!("name: {name}\n# {at}\n"),
        file_name: format!("{name}.yaml"),
        registered_at: at,
    }
}

/// A `run_finished` event.
fn finished(state: RunEnd) -> Event {
    Event::RunFinished {
        state,
        at: 1_900_000_000_000,
        reason: format!("test run {state}"),
    }
}

/// The runs [`workload`] made.
struct Workload {
    /// A plain run, with three attempts.
    plain: (RunId, Epoch),
    /// A run created with an idempotency key, finished.
    keyed: RunId,
    /// A scheduled run, claimed after its creation and written with the new epoch.
    scheduled: (RunId, Epoch),
}

/// Writes every kind of thing replication ships to `store` (through `store`'s own handle):
/// workflows, a plain run, a keyed run (`key-{seq}`), a scheduled run (tick `seq`), appends,
/// a finished run, a claim.
async fn workload(store: &PostgresStore, seq: i64) -> Workload {
    for name in ["nightly", "hourly"] {
        store.put_workflow(&workflow(name, seq)).await.unwrap();
    }
    let plain = new_run(store, "nightly", seq).await;
    let keyed = RunId::new();
    let outcome = store
        .create_run_once(
            &format!("key-{seq}"),
            keyed,
            &owner("keyed", 2),
            created_event("nightly", seq + 1),
        )
        .await
        .unwrap();
    let CreateOutcome::Created(keyed_epoch) = outcome else {
        panic!("expected key-{seq} to be unused, found {outcome:?}");
    };
    let scheduled = RunId::new();
    let outcome = store
        .create_scheduled_run(
            "hourly",
            seq,
            scheduled,
            &owner("ticker", 3),
            created_event("hourly", seq + 2),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, CreateOutcome::Created(_)), "{outcome:?}");
    let events = [started(0, 1), started(0, 2), started(1, 1)];
    store
        .append(plain.1, batch(plain.0, &events))
        .await
        .unwrap();
    let keyed_events = [started(0, 1), finished(RunEnd::Succeeded)];
    store
        .append(keyed_epoch, batch(keyed, &keyed_events))
        .await
        .unwrap();
    let claimed = store
        .claim_run(scheduled, &owner("claimer", 4))
        .await
        .unwrap();
    store
        .append(claimed, batch(scheduled, &[started(0, 1)]))
        .await
        .unwrap();
    Workload {
        plain,
        keyed,
        scheduled: (scheduled, claimed),
    }
}
