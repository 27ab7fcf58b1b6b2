//! Cross-region disaster recovery with real processes: two regions on loopback made by
//! `deploy/local/up.sh` (per region an etcd, a PostgreSQL, two `tandem serve` replicas,
//! `tandem replicate`, the forwarders a partition cuts), `eu-west` active and `us-east`
//! standby, one deployment per test, torn down by `down.sh`.
//!
//! Every test reads both regions' PostgreSQL tables directly and compares them, besides what
//! the SDK, `tandem dr` and the drill's JSON report say. The tests run one at a time (a
//! deployment is about twenty processes and a 2-core machine runs one well); the file takes
//! two to three minutes.

mod common;
#[path = "dr/db.rs"]
mod db;
#[path = "dr/drill.rs"]
mod drill;
#[path = "dr/load.rs"]
mod load;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::deployment::{ACTIVE, Deployment, Mode, STANDBY, serial};
use db::Db;
use futures::TryStreamExt;
use tandem_api::{Client, ClientError, ListRuns, RegionRole, Run, RunState, StartRun};

/// SDK clients writing at once in the replication test.
const CLIENTS: usize = 8;
/// Runs each of them starts.
const RUNS_PER_CLIENT: usize = 10;
/// Canary runs of each drill (the drill's default).
const CANARIES: usize = 3;
/// A workflow of one quick task (runs started outside the drills).
const QUICK: &str = "name: dr-quick\ntasks:\n  hello: { run: echo back home }\n";
/// The steps of a live drill without `--failback`.
const LIVE_STEPS: [&str; 6] = [
    "preflight",
    "canary",
    "fault",
    "promote",
    "verify",
    "measure",
];

/// A runtime for one test (the deployment itself is made and torn down outside it).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Polls `region`'s status every 100 ms until `done` holds for it, up to `timeout`.
async fn wait_status(
    deployment: &Deployment,
    region: &str,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&tandem_api::RegionStatus) -> bool,
) -> tandem_api::RegionStatus {
    let client = deployment.client(region);
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.region_status().await {
            Ok(status) if done(&status) => return status,
            Ok(status) => format!("{status:?}"),
            Err(error) => error.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{region}: {what} within {timeout:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `standby` applied `active`'s latest position and `active` wrote nothing more
/// in between (lag 0, log at rest); returns that position.
async fn wait_caught_up(deployment: &Deployment, active: &str, standby: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = deployment.status(active).await;
        let follower = deployment.status(standby).await;
        let after = deployment.status(active).await;
        if follower.role == RegionRole::Standby
            && follower.active_region == active
            && follower.applied_position == before.latest_position
            && follower.latest_position == before.latest_position
            && after.latest_position == before.latest_position
        {
            return before.latest_position;
        }
        assert!(
            Instant::now() < deadline,
            "{standby} did not catch up with {active} within 60 s: {active} {before:?}, {standby} {follower:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks that `region` refuses to start a run as not active, naming `active`, and wrote
/// nothing for it: the checkpoints it wrote itself (not applied from the active region) are
/// as many as before, and the start's idempotency key is unknown to it.
async fn assert_refuses_runs(deployment: &Deployment, region: &str, active: &str) {
    let database = Db::connect(&deployment.postgres_url(region)).await;
    let (_, own_before) = database.replicated_counts().await;
    let key = format!("refused-by-{region}");
    let refused = deployment
        .client(region)
        .start_run(StartRun::new(tandem_dr::drill::canary::CANARY_WORKFLOW).idempotency_key(&key))
        .await;
    match refused {
        Err(ClientError::RegionNotActive {
            active_region,
            message,
            ..
        }) => {
            assert_eq!(
                active_region.as_deref(),
                Some(active),
                "{region} must name the active region: {message}"
            );
            assert!(
                message.contains(active),
                "the refusal's message must name {active}: {message}"
            );
        }
        other => {
            panic!("{region} must refuse to start a run with region_not_active, got {other:?}")
        }
    }
    assert_eq!(
        database.replicated_counts().await.1,
        own_before,
        "{region} wrote a checkpoint of its own for a refused start"
    );
    assert!(
        database
            .idempotency_keys()
            .await
            .iter()
            .all(|(stored, _)| *stored != key),
        "{region} recorded the key of a refused start"
    );
}

/// A run as compared between regions: its state, end, and each task's state, attempts,
/// outputs and end.
fn essentials(run: &Run) -> (RunState, Option<i64>, Vec<String>) {
    let tasks = run
        .tasks
        .iter()
        .map(|task| {
            format!(
                "{} {} after {} attempt(s), outputs {:?}, finished at {:?}",
                task.task_id, task.state, task.attempts, task.outputs, task.finished_at_unix_ms
            )
        })
        .collect();
    (run.state, run.finished_at_unix_ms, tasks)
}

/// Every run of `client`'s region, with its tasks, by run id.
async fn all_runs(client: &Client) -> BTreeMap<String, Run> {
    let listed: Vec<Run> = client
        .list_all_runs(ListRuns::default())
        .try_collect()
        .await
        .expect("list the runs");
    let mut runs = BTreeMap::new();
    for run in listed {
        let full = client
            .get_run(run.run_id.clone())
            .await
            .expect("read a run");
        runs.insert(run.run_id, full);
    }
    runs
}

// ---------------------------------------------------------------------------------------
// 1. Replication under load with concurrent writers.

#[test]
fn under_load_from_concurrent_writers_the_standby_log_equals_the_active_log() {
    let _serial = serial();
    let deployment = Deployment::up(Mode::Async);
    runtime().block_on(replication_under_load(&deployment));
}

async fn replication_under_load(deployment: &Deployment) {
    // The standby's progress while the clients write.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let active = deployment.client(ACTIVE);
        let standby = deployment.client(STANDBY);
        let done = done.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !done.load(Ordering::SeqCst) {
                if let (Ok(active), Ok(standby)) =
                    (active.region_status().await, standby.region_status().await)
                {
                    samples.push((active.latest_position, standby.applied_position));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..CLIENTS {
        clients.spawn(load::client_load(
            deployment.client(ACTIVE),
            index,
            RUNS_PER_CLIENT,
        ));
    }
    let mut started: Vec<(String, String)> = Vec::new();
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(runs) => started.extend(runs),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    done.store(true, Ordering::SeqCst);
    let samples = sampler.await.expect("the sampler");
    let latest = wait_caught_up(deployment, ACTIVE, STANDBY).await;
    eprintln!(
        "{latest} checkpoints written; (active latest, standby applied) while writing: {samples:?}"
    );
    assert!(
        samples
            .iter()
            .any(|&(_, applied)| applied > 0 && applied < latest),
        "the standby must apply the log while it is written, not only at the end: (active latest, standby applied) every 100 ms: {samples:?}"
    );

    // `tandem dr status` says the same.
    let status = deployment
        .tandem(
            &["dr", "status", "--output", "json"],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(status.code, Some(0), "{}", status.describe());
    let json: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON status");
    let standby = json["regions"]
        .as_array()
        .and_then(|regions| regions.iter().find(|region| region["region"] == STANDBY))
        .unwrap_or_else(|| panic!("no {STANDBY} in {json}"));
    assert_eq!(standby["lag"]["positions"], 0, "{json}");
    assert_eq!(standby["status"]["applied_position"], latest, "{json}");

    let active_db = Db::connect(&deployment.postgres_url(ACTIVE)).await;
    let standby_db = Db::connect(&deployment.postgres_url(STANDBY)).await;

    // The log, position for position.
    let active_log = active_db.checkpoints().await;
    let standby_log = standby_db.checkpoints().await;
    db::assert_contiguous(ACTIVE, &active_log);
    assert_eq!(active_log.len() as u64, latest);
    if let Some(difference) = db::first_difference("checkpoints", &active_log, &standby_log) {
        panic!("{difference}");
    }
    let created = active_log
        .iter()
        .filter(|row| row.kind == "run_created")
        .count();
    assert_eq!(created, CLIENTS * RUNS_PER_CLIENT, "runs created");
    // Each run: created, 4 tasks started, spawned and finished, ended: at least 14 each.
    assert!(active_log.len() >= created * (2 + 3 * load::TASKS));
    assert_eq!(
        active_db.replicated_counts().await,
        (0, latest as i64),
        "{ACTIVE} wrote its whole log itself"
    );
    assert_eq!(
        standby_db.replicated_counts().await,
        (latest as i64, 0),
        "{STANDBY} applied its whole log from {ACTIVE}"
    );
    db::assert_no_succeeded_task_ran_again(STANDBY, &standby_log);

    // Runs: the same, owned by the active's host named with its region.
    let active_runs = active_db.runs().await;
    let standby_runs = standby_db.runs().await;
    assert_eq!(active_runs.len(), CLIENTS * RUNS_PER_CLIENT);
    assert!(active_runs.iter().all(|run| run.status == "succeeded"));
    let as_replicated: Vec<db::RunRow> = active_runs
        .iter()
        .map(|run| db::RunRow {
            owner_host: format!("{ACTIVE}/{}", run.owner_host),
            ..run.clone()
        })
        .collect();
    if let Some(difference) = db::first_difference("runs", &as_replicated, &standby_runs) {
        panic!("{difference}");
    }

    // Idempotency keys: every client's, on both sides.
    let keys = active_db.idempotency_keys().await;
    let expected: BTreeSet<(String, String)> = started.into_iter().collect();
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(standby_db.idempotency_keys().await, keys);

    // Workflows, in registration order; schedule ticks (none).
    let workflows = active_db.workflows().await;
    assert_eq!(workflows.len(), CLIENTS);
    if let Some(difference) =
        db::first_difference("workflows", &workflows, &standby_db.workflows().await)
    {
        panic!("{difference}");
    }
    assert_eq!(
        standby_db.schedule_ticks().await,
        active_db.schedule_ticks().await
    );

    let region = standby_db.region().await;
    assert_eq!(
        (
            region.role.as_str(),
            region.active_region.as_str(),
            region.applied_position
        ),
        ("standby", ACTIVE, latest as i64),
        "{region:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 2 and 3. Region loss in the middle of canary runs.

/// The checks of a drill that killed the active region: it passed; the standby was promoted;
/// every canary completed there with no succeeded task run again (report and log); the logs
/// agree up to the fork; the old region came back fenced with exactly its tail, or as a
/// standby without one; RTO under 10 s.
async fn region_loss_checks(deployment: &Deployment, drill: &drill::Drill) -> drill::Logs {
    drill.assert_promoted();
    let canaries = drill.assert_canaries_completed(CANARIES);
    let logs = drill::failover_logs(deployment, drill.fork(), &canaries).await;
    drill.assert_rto(&logs.new);
    drill::assert_old_region_state(deployment, drill, &logs).await;
    let killed = drill.at("/fault_injection/killed");
    for process in ["etcd", "postgres", "serve-1", "serve-2", "replicate"] {
        assert!(
            killed.get(process).is_some(),
            "the drill must kill {process} of {ACTIVE}: {killed}"
        );
    }
    logs
}

#[test]
fn losing_the_active_region_in_async_mode_loses_a_measured_rpo_and_recovers_within_10s() {
    let _serial = serial();
    let deployment = Deployment::up(Mode::Async);
    runtime().block_on(async {
        let drill = drill::run(&deployment, &["--fault", "kill-region", "--rpo", "5s"]).await;
        drill.assert_passed(&LIVE_STEPS);
        assert_eq!(
            drill.text("/fault_injection/active_replication_mode"),
            "async"
        );
        region_loss_checks(&deployment, &drill).await;
        drill.assert_rpo_measured();
        let lost = drill.number("/rpo/lost_checkpoints");
        let tail = drill.number("/rpo/tail_checkpoints");
        assert!(
            lost <= tail,
            "lost {lost} of a tail of {tail}:\n{}",
            drill.summary()
        );
    });
}

#[test]
fn losing_the_active_region_in_sync_mode_loses_no_acknowledged_checkpoint() {
    let _serial = serial();
    let deployment = Deployment::up(Mode::Sync);
    runtime().block_on(async {
        // A start acknowledged by the active region is already in the standby's database.
        let active = deployment.client(ACTIVE);
        let standby_db = Db::connect(&deployment.postgres_url(STANDBY)).await;
        let registered = active
            .register_workflow(QUICK, "dr-quick.yaml")
            .await
            .expect("register a workflow");
        let mut quick = Vec::new();
        for _ in 0..5 {
            let started = active
                .start_run(StartRun::new(&registered.name).version(&registered.version))
                .await
                .expect("start a run");
            assert!(
                standby_db.has_run(&started.run_id).await,
                "sync mode: run {} was acknowledged before {STANDBY} held it",
                started.run_id
            );
            quick.push(started.run_id);
        }
        for run_id in quick {
            let run = active.wait_run(run_id).await.expect("wait for a run");
            assert_eq!(run.state, RunState::Succeeded);
        }

        // RPO objective 0: the drill itself fails if anything acknowledged was lost.
        let drill = drill::run(&deployment, &["--fault", "kill-region", "--rpo", "0s"]).await;
        drill.assert_passed(&LIVE_STEPS);
        assert_eq!(
            drill.text("/fault_injection/active_replication_mode"),
            "sync"
        );
        assert!(
            drill
                .at("/fault_injection/active_sync_degraded_since_ms")
                .is_null(),
            "sync replication must hold until the fault:\n{}",
            drill.summary()
        );
        let logs = region_loss_checks(&deployment, &drill).await;
        assert_eq!(drill.number("/objectives/rpo/measured_ms"), 0);
        assert_eq!(drill.number("/rpo/acknowledged_lost_checkpoints"), 0);
        let method = drill.text("/rpo/method");
        assert!(
            ["no_tail", "sync_nothing_acknowledged"].contains(&method),
            "RPO method {method}:\n{}",
            drill.summary()
        );
        // What RPO 0 means in the old region's own log: an attempt whose start the standby
        // never acknowledged was never dispatched, so no attempt started after the fork has a
        // process or an end there.
        let started_in_tail: BTreeSet<(String, u32, u32)> = logs
            .tail
            .iter()
            .filter_map(|row| match row.event() {
                tandem_engine::checkpoint::Event::AttemptStarted { task, attempt, .. } => {
                    Some((row.run_id.clone(), task, attempt))
                }
                _ => None,
            })
            .collect();
        for row in &logs.tail {
            let dispatched = match row.event() {
                tandem_engine::checkpoint::Event::AttemptSpawned { task, attempt, .. }
                | tandem_engine::checkpoint::Event::AttemptFinished { task, attempt, .. } => {
                    Some((row.run_id.clone(), task, attempt))
                }
                _ => None,
            };
            if let Some(attempt) = dispatched {
                assert!(
                    !started_in_tail.contains(&attempt),
                    "sync mode: attempt {attempt:?} started after the fork (unacknowledged by the standby) was dispatched anyway ({} at position {})",
                    row.kind,
                    row.position
                );
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// 4. Partition.

#[test]
fn a_partitioned_active_region_has_none_of_its_later_writes_accepted_and_reports_its_tail() {
    let _serial = serial();
    let deployment = Deployment::up(Mode::Async);
    runtime().block_on(partition(&deployment));
}

async fn partition(deployment: &Deployment) {
    let drill = drill::run(deployment, &["--fault", "partition", "--rpo", "5s"]).await;
    drill.assert_passed(&LIVE_STEPS);
    drill.assert_promoted();
    let canaries = drill.assert_canaries_completed(CANARIES);
    let logs = drill::failover_logs(deployment, drill.fork(), &canaries).await;
    drill.assert_rto(&logs.new);
    drill.assert_rpo_measured();

    // Healed, the old region knows it is not active: it refuses to start a run, naming the
    // new active region, and writes nothing for it.
    assert_refuses_runs(deployment, ACTIVE, STANDBY).await;

    // It was cut off with the canaries in flight and kept its own etcd and PostgreSQL, so it
    // went on running them until it learned of the promotion after the heal: that is its
    // tail, which must be reported and accepted nowhere.
    assert!(
        !logs.tail.is_empty(),
        "{ACTIVE} wrote nothing after the fork {}: a region cut off with canaries in flight keeps running them until it learns of the promotion, so a tail was expected (the refusal above was still checked):\n{}",
        drill.fork(),
        drill.summary()
    );
    drill::assert_old_region_state(deployment, &drill, &logs).await;
    let tail: Vec<db::CheckpointRow> = logs.tail.clone();
    let status = deployment.status(ACTIVE).await;
    assert_eq!(status.role, RegionRole::Fenced, "{status:?}");
    assert_eq!(status.active_region, STANDBY);
    let reported = status.tail.expect("the fenced region reports its tail");
    assert_eq!(
        (reported.from as i64, reported.to as i64),
        (tail[0].position, tail.last().map_or(0, |row| row.position)),
        "{status:?}"
    );
    assert!(!status.tail_runs.is_empty(), "{status:?}");
    for run in &status.tail_runs {
        let rows = tail.iter().filter(|row| row.run_id == run.run_id).count();
        assert_eq!(run.checkpoints, rows as u64, "tail run {run:?}");
    }
    let split = drill.number("/rpo/split_brain_checkpoints");
    assert_eq!(
        drill.number("/rpo/lost_checkpoints") + split,
        tail.len() as u64,
        "lost + written after the fault = the tail:\n{}",
        drill.summary()
    );

    // Rejoined, the tail is archived as it was, never dropped, and the old region's log
    // becomes the new active's.
    let rejoin = deployment
        .tandem(
            &["dr", "rejoin", "--region", ACTIVE, "--output", "json"],
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(rejoin.code, Some(0), "{}", rejoin.describe());
    let old_db = Db::connect(&deployment.postgres_url(ACTIVE)).await;
    let archived = old_db.dr_tail().await;
    assert_eq!(
        archived
            .iter()
            .map(|row| row.checkpoint.clone())
            .collect::<Vec<_>>(),
        tail,
        "dr_tail must hold {ACTIVE}'s tail exactly"
    );
    for row in &archived {
        assert_eq!(row.fork_position, drill.fork());
        assert_eq!(row.active_region, STANDBY);
    }
    let latest = wait_caught_up(deployment, STANDBY, ACTIVE).await;
    let old_log = old_db.checkpoints().await;
    let new_log = Db::connect(&deployment.postgres_url(STANDBY))
        .await
        .checkpoints()
        .await;
    assert_eq!(new_log.len() as u64, latest);
    if let Some(difference) =
        db::first_difference("checkpoints after the rejoin", &old_log, &new_log)
    {
        panic!("{difference}");
    }
    drill::assert_tail_not_accepted(&tail, &old_log);
    assert_refuses_runs(deployment, ACTIVE, STANDBY).await;
}

// ---------------------------------------------------------------------------------------
// 5. Failback.

#[test]
fn failback_returns_to_the_original_region_with_every_run_intact() {
    let _serial = serial();
    let deployment = Deployment::up(Mode::Async);
    runtime().block_on(failback(&deployment));
}

async fn failback(deployment: &Deployment) {
    let drill = drill::run(
        deployment,
        &["--fault", "kill-region", "--failback", "--rpo", "5s"],
    )
    .await;
    let mut steps = LIVE_STEPS.to_vec();
    steps.push("failback");
    drill.assert_passed(&steps);
    drill.assert_promoted();
    let canaries = drill.assert_canaries_completed(CANARIES);
    assert_eq!(drill.text("/failback/rejoin/region"), ACTIVE);
    assert_eq!(drill.text("/failback/switchover/from"), STANDBY);
    assert_eq!(drill.text("/failback/switchover/to"), ACTIVE);
    let after = drill
        .at("/failback/runs")
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(after.len(), CANARIES);
    for run in &after {
        assert_eq!(run["verdict"], "intact", "{run}");
        assert_eq!(run["changes"], serde_json::json!([]), "{run}");
    }

    // Roles back: eu-west active with the highest region epoch, us-east its standby.
    let original = deployment.status(ACTIVE).await;
    assert_eq!(original.role, RegionRole::Active, "{original:?}");
    assert_eq!(original.region_epoch, 2, "{original:?}");
    let latest = wait_caught_up(deployment, ACTIVE, STANDBY).await;
    let standby = deployment.status(STANDBY).await;
    assert_eq!(
        (standby.role, standby.active_region.as_str()),
        (RegionRole::Standby, ACTIVE)
    );

    // Every canary in eu-west as us-east had it at the end of the verification, before the
    // switch back; and every run the same in both regions.
    let original_client = deployment.client(ACTIVE);
    let checks = drill
        .at("/verification")
        .as_array()
        .cloned()
        .unwrap_or_default();
    for check in &checks {
        let run_id = check["run_id"].as_str().unwrap_or_default();
        let run = original_client
            .get_run(run_id)
            .await
            .expect("read a canary");
        let expected: Vec<(String, String, u64)> = check["at_end"]["tasks"]
            .as_array()
            .map(|tasks| {
                tasks
                    .iter()
                    .map(|task| {
                        (
                            task["task_id"].as_str().unwrap_or_default().to_string(),
                            task["state"].as_str().unwrap_or_default().to_string(),
                            task["attempts"].as_u64().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let found: Vec<(String, String, u64)> = run
            .tasks
            .iter()
            .map(|task| {
                (
                    task.task_id.clone(),
                    task.state.to_string(),
                    u64::from(task.attempts),
                )
            })
            .collect();
        assert_eq!(run.state, RunState::Succeeded, "canary {run_id}");
        assert_eq!(
            found, expected,
            "canary {run_id} in {ACTIVE} after the failback"
        );
    }
    let in_original = all_runs(&original_client).await;
    let in_standby = all_runs(&deployment.client(STANDBY)).await;
    assert!(
        canaries.iter().all(|run| in_original.contains_key(run)),
        "every canary is listed in {ACTIVE}"
    );
    assert_eq!(
        in_original.keys().collect::<Vec<_>>(),
        in_standby.keys().collect::<Vec<_>>(),
        "the same runs in both regions"
    );
    for (run_id, run) in &in_original {
        assert_eq!(
            essentials(run),
            essentials(&in_standby[run_id]),
            "run {run_id} in {ACTIVE} and {STANDBY}"
        );
    }
    let original_log = Db::connect(&deployment.postgres_url(ACTIVE))
        .await
        .checkpoints()
        .await;
    let standby_log = Db::connect(&deployment.postgres_url(STANDBY))
        .await
        .checkpoints()
        .await;
    assert_eq!(original_log.len() as u64, latest);
    if let Some(difference) = db::first_difference(
        "checkpoints after the failback",
        &original_log,
        &standby_log,
    ) {
        panic!("{difference}");
    }
    db::assert_no_succeeded_task_ran_again(ACTIVE, &original_log);

    // eu-west schedules again; us-east refuses, naming it.
    let registered = original_client
        .register_workflow(QUICK, "dr-quick.yaml")
        .await
        .expect("the original region registers workflows again");
    let started = original_client
        .start_run(StartRun::new(&registered.name).version(&registered.version))
        .await
        .expect("the original region starts runs again");
    let run = original_client
        .wait_run(started.run_id.clone())
        .await
        .expect("wait for the new run");
    assert_eq!(run.state, RunState::Succeeded, "a run after the failback");
    assert_refuses_runs(deployment, STANDBY, ACTIVE).await;
    let replicated = wait_status(
        deployment,
        STANDBY,
        Duration::from_secs(30),
        "the new run replicated",
        |status| status.applied_position > latest,
    )
    .await;
    assert_eq!(replicated.active_region, ACTIVE);
}
