//! High availability inside a region: real `tandem serve` replicas electing their leader
//! through a real etcd, over one real PostgreSQL database.
//!
//! Each test audits the region's checkpoint log afterwards (read with a store of its own):
//! positions are contiguous from 1, no task has two successful attempts, and every run ends.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::wait_until;
use nix::sys::signal::Signal;
use tandem_api::{
    Client, ClientConfig, ClientError, MemberRole, RunState, StartRun, TaskContext, Worker,
};
use tandem_engine::checkpoint::{AttemptOutcome, Checkpoint, Event, RunId, now_millis};
use tandem_engine::store::CheckpointStore;
use tandem_engine::store::postgres::{PostgresConfig, PostgresStore};

/// A chain of shell tasks with a fan-out in the middle: about 3 s of work, some task always
/// running. Attempts interrupted by a failover are retried.
const CHAIN: &str = r#"
name: ha-chain
defaults:
  retry: { max_attempts: 20, initial_interval: 100ms, max_interval: 500ms, jitter: none }
tasks:
  a: { run: sleep 0.3 }
  b: { needs: [a], run: sleep 0.3 }
  c: { needs: [b], run: sleep 0.3 }
  f1: { needs: [c], run: sleep 0.4 }
  f2: { needs: [c], run: sleep 0.4 }
  f3: { needs: [c], run: sleep 0.4 }
  f4: { needs: [c], run: sleep 0.4 }
  d: { needs: [f1, f2, f3, f4], run: sleep 0.3 }
  e: { needs: [d], run: sleep 0.3 }
  f: { needs: [e], run: sleep 0.3 }
  g: { needs: [f], run: sleep 0.3 }
  h: { needs: [g], run: sleep 0.3 }
  i: { needs: [h], run: sleep 0.3 }
"#;

/// Every checkpoint of the region, in log order.
async fn log(database_url: &str) -> Vec<Checkpoint> {
    let store = PostgresStore::connect(PostgresConfig::new(database_url))
        .await
        .expect("open the store");
    store.read_log(0, usize::MAX).await.expect("read the log")
}

/// What every test checks on the whole log: positions 1..=N without a gap, at most one
/// successful attempt per task of a run, and each of `runs` finished once.
fn audit(log: &[Checkpoint], runs: &[String]) {
    for (index, checkpoint) in log.iter().enumerate() {
        assert_eq!(
            checkpoint.position,
            index as u64 + 1,
            "log positions must be contiguous from 1"
        );
    }
    let mut successes: HashMap<(RunId, u32), u32> = HashMap::new();
    let mut finished: HashMap<RunId, u32> = HashMap::new();
    for checkpoint in log {
        match &checkpoint.event {
            Event::AttemptFinished {
                task,
                outcome: AttemptOutcome::Succeeded { .. },
                ..
            } => *successes.entry((checkpoint.run_id, *task)).or_default() += 1,
            Event::RunFinished { .. } => *finished.entry(checkpoint.run_id).or_default() += 1,
            _ => {}
        }
    }
    for ((run, task), count) in &successes {
        assert_eq!(*count, 1, "run {run} task {task} succeeded {count} times");
    }
    for run in runs {
        let run: RunId = run.parse().unwrap();
        assert_eq!(finished.get(&run), Some(&1), "run {run} must finish once");
    }
}

async fn wait_all(client: &Client, runs: &[String], timeout: Duration) {
    for run_id in runs {
        let run = tokio::time::timeout(timeout, client.wait_run(run_id))
            .await
            .unwrap_or_else(|_| panic!("run {run_id} did not finish in {timeout:?}"))
            .unwrap_or_else(|error| panic!("waiting for {run_id}: {error}"));
        assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_five_times_mid_run_loses_nothing_and_runs_nothing_twice() {
    let mut cluster = Cluster::start(3, 2).await;
    let client = cluster.client().await;
    client
        .register_workflow(CHAIN, "ha-chain.yaml")
        .await
        .expect("register");
    let mut runs = Vec::new();
    for _ in 0..3 {
        let started = client.start_run(StartRun::new("ha-chain")).await.unwrap();
        runs.push(started.run_id);
    }
    let mut epochs = Vec::new();
    for round in 0..5 {
        let leader = cluster.wait_for_leader(None, Duration::from_secs(30)).await;
        epochs.push(cluster.epoch_of(leader).await.unwrap_or_default());
        // Let the leader get some attempts going, then kill it mid-run.
        tokio::time::sleep(Duration::from_millis(700)).await;
        cluster.kill(leader);
        let next = cluster
            .wait_for_leader(Some(leader), Duration::from_secs(30))
            .await;
        assert_ne!(next, leader, "round {round}");
        cluster.restart(leader);
        // Keep a run going through every round.
        let started = client
            .start_run(StartRun::new("ha-chain"))
            .await
            .unwrap_or_else(|error| panic!("{error}; logs:\n{}", cluster.logs()));
        runs.push(started.run_id);
    }
    wait_all(&client, &runs, Duration::from_secs(120)).await;
    let epoch = cluster
        .epoch_of(cluster.wait_for_leader(None, Duration::from_secs(30)).await)
        .await
        .unwrap();
    epochs.push(epoch);
    assert!(
        epochs.windows(2).all(|pair| pair[0] < pair[1]),
        "every new leader has a higher epoch: {epochs:?}"
    );
    let log = log(&cluster.database_url).await;
    audit(&log, &runs);
    // Some attempts were interrupted by the kills and retried.
    let resumed = log
        .iter()
        .filter(|checkpoint| matches!(checkpoint.event, Event::RunResumed { .. }))
        .count();
    assert!(resumed >= 5, "runs were resumed by new leaders: {resumed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_is_fenced_and_becomes_a_follower() {
    let cluster = Cluster::start(3, 2).await;
    let client = cluster.client().await;
    client
        .register_workflow(CHAIN, "ha-chain.yaml")
        .await
        .expect("register");
    let run = client.start_run(StartRun::new("ha-chain")).await.unwrap();
    let old = cluster.wait_for_leader(None, Duration::from_secs(10)).await;
    let old_epoch = cluster.epoch_of(old).await.unwrap();
    let old_pid = cluster.replicas[old].child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.signal(old, Signal::SIGSTOP);
    let paused_at = Instant::now();
    let new = cluster
        .wait_for_leader(Some(old), Duration::from_secs(30))
        .await;
    let new_epoch = cluster.epoch_of(new).await.unwrap();
    assert!(new_epoch > old_epoch, "{new_epoch} > {old_epoch}");
    assert!(
        paused_at.elapsed() >= Duration::from_secs(1),
        "the lease outlives a short pause"
    );
    // Let the new leader take the run over, then wake the old one up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.signal(old, Signal::SIGCONT);
    let woke_at = Instant::now();
    // It finds out it lost its lease and follows.
    let follows = loop {
        let direct = Client::connect(&cluster.replicas[old].url).await.unwrap();
        match direct.cluster_status().await {
            Ok(status) if status.role == MemberRole::Follower => break true,
            _ if woke_at.elapsed() > Duration::from_secs(10) => break false,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(
        follows,
        "the woken replica follows; logs:\n{}",
        cluster.logs()
    );
    wait_all(
        &client,
        std::slice::from_ref(&run.run_id),
        Duration::from_secs(60),
    )
    .await;

    // None of the old leader's writes was accepted after the new leader took the run over:
    // the run's checkpoints after the new owner's `run_resumed` all carry the new epoch.
    let log = log(&cluster.database_url).await;
    audit(&log, std::slice::from_ref(&run.run_id));
    let run_id: RunId = run.run_id.parse().unwrap();
    let old_owner = format!("pid {old_pid} ");
    let mut owner_epochs: BTreeMap<u64, bool> = BTreeMap::new(); // epoch -> written by the old leader
    let mut taken_over_at = None;
    for checkpoint in log.iter().filter(|checkpoint| checkpoint.run_id == run_id) {
        match &checkpoint.event {
            Event::RunCreated { .. } => {
                owner_epochs.insert(checkpoint.epoch.0, true);
            }
            Event::RunResumed { owner, .. } => {
                let by_old = owner.starts_with(&old_owner);
                owner_epochs.insert(checkpoint.epoch.0, by_old);
                if !by_old && taken_over_at.is_none() {
                    taken_over_at = Some(checkpoint.position);
                }
            }
            _ => {}
        }
    }
    let taken_over_at = taken_over_at.expect("the new leader resumed the run");
    let stale: HashSet<u64> = owner_epochs
        .iter()
        .filter(|(_, old)| **old)
        .map(|(epoch, _)| *epoch)
        .collect();
    for checkpoint in log
        .iter()
        .filter(|checkpoint| checkpoint.run_id == run_id && checkpoint.position > taken_over_at)
    {
        assert!(
            !stale.contains(&checkpoint.epoch.0),
            "checkpoint {} of the paused leader was accepted after the takeover: {:?}",
            checkpoint.position,
            checkpoint.event
        );
    }
    assert!(
        cluster.replicas[old].log_text().contains("stopped leading"),
        "the old leader says it stepped down; its log:\n{}",
        cluster.replicas[old].log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_etcd_the_leader_stops_dispatching_within_the_ttl_and_resumes_after() {
    let mut cluster = Cluster::start(2, 2).await;
    let client = cluster.client().await;
    const LONG: &str = r#"
name: ha-long
defaults:
  retry: { max_attempts: 20, initial_interval: 100ms, max_interval: 500ms, jitter: none }
tasks:
  t01: { run: sleep 0.2 }
  t02: { needs: [t01], run: sleep 0.2 }
  t03: { needs: [t02], run: sleep 0.2 }
  t04: { needs: [t03], run: sleep 0.2 }
  t05: { needs: [t04], run: sleep 0.2 }
  t06: { needs: [t05], run: sleep 0.2 }
  t07: { needs: [t06], run: sleep 0.2 }
  t08: { needs: [t07], run: sleep 0.2 }
  t09: { needs: [t08], run: sleep 0.2 }
  t10: { needs: [t09], run: sleep 0.2 }
  t11: { needs: [t10], run: sleep 0.2 }
  t12: { needs: [t11], run: sleep 0.2 }
  t13: { needs: [t12], run: sleep 0.2 }
  t14: { needs: [t13], run: sleep 0.2 }
  t15: { needs: [t14], run: sleep 0.2 }
  t16: { needs: [t15], run: sleep 0.2 }
  t17: { needs: [t16], run: sleep 0.2 }
  t18: { needs: [t17], run: sleep 0.2 }
  t19: { needs: [t18], run: sleep 0.2 }
  t20: { needs: [t19], run: sleep 0.2 }
"#;
    client
        .register_workflow(LONG, "ha-long.yaml")
        .await
        .expect("register");
    let run = client.start_run(StartRun::new("ha-long")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopped_at_ms = now_millis();
    cluster.etcd.kill().expect("kill etcd");
    // Within the TTL (2 s) of losing etcd, nothing is dispatched any more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = log(&cluster.database_url).await;
    let ttl_ms = 2_000;
    let late: Vec<_> = during
        .iter()
        .filter(|checkpoint| {
            matches!(checkpoint.event, Event::AttemptStarted { at, .. } if at > stopped_at_ms + ttl_ms)
        })
        .collect();
    assert!(
        late.is_empty(),
        "attempts dispatched more than the TTL after etcd stopped: {late:?}\n{}",
        cluster.logs()
    );
    for server in &cluster.replicas {
        let direct = Client::connect_with(
            ClientConfig::new(&server.url).failover_timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
        let refused = direct.start_run(StartRun::new("ha-long")).await;
        assert!(
            matches!(refused, Err(ClientError::NotLeader { leader: None, .. })),
            "no replica leads without etcd: {refused:?}"
        );
    }
    cluster.etcd.start_again().await.expect("start etcd again");
    wait_all(
        &client,
        std::slice::from_ref(&run.run_id),
        Duration::from_secs(60),
    )
    .await;
    audit(
        &log(&cluster.database_url).await,
        std::slice::from_ref(&run.run_id),
    );
    let _ = &mut cluster;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cron_schedule_fires_once_per_tick_across_two_leader_changes() {
    let mut cluster = Cluster::start(3, 2).await;
    let client = cluster.client().await;
    const CRON: &str = r#"
name: ha-cron
schedule:
  cron: "* * * * *"
  catchup: all
tasks:
  tick: { run: "true" }
"#;
    // Register a few seconds before a minute starts, so the test sees two ticks soon.
    let wait = 60_000 - now_millis().rem_euclid(60_000);
    if wait < 5_000 {
        tokio::time::sleep(Duration::from_millis(wait as u64 + 100)).await;
    }
    let registered_at = now_millis();
    client
        .register_workflow(CRON, "ha-cron.yaml")
        .await
        .expect("register");
    let first_tick = (registered_at / 60_000 + 1) * 60_000;
    // Kill the leader just before each of the two next ticks: the tick falls in the failover.
    for tick in [first_tick, first_tick + 60_000] {
        let before = tick - 700 - now_millis();
        if before > 0 {
            tokio::time::sleep(Duration::from_millis(before as u64)).await;
        }
        let leader = cluster.wait_for_leader(None, Duration::from_secs(30)).await;
        cluster.kill(leader);
        cluster
            .wait_for_leader(Some(leader), Duration::from_secs(30))
            .await;
        cluster.restart(leader);
    }
    // Give the second tick's run time to be created and finish.
    let until = first_tick + 60_000 + 8_000 - now_millis();
    if until > 0 {
        tokio::time::sleep(Duration::from_millis(until as u64)).await;
    }
    let log = log(&cluster.database_url).await;
    let created: Vec<&Checkpoint> = log
        .iter()
        .filter(|checkpoint| matches!(&checkpoint.event, Event::RunCreated { workflow, .. } if workflow == "ha-cron"))
        .collect();
    let runs: Vec<String> = created
        .iter()
        .map(|checkpoint| checkpoint.run_id.to_string())
        .collect();
    assert_eq!(
        runs.len(),
        2,
        "one run per tick ({first_tick} and {}); found {}; logs:\n{}",
        first_tick + 60_000,
        runs.len(),
        cluster.logs()
    );
    wait_all(&client, &runs, Duration::from_secs(30)).await;
    audit(&log, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_attempt_continues_across_a_failover_when_its_worker_heartbeats() {
    let mut cluster = Cluster::start(3, 2).await;
    let client = cluster.client().await;
    const WORKER_DAG: &str = r#"
name: ha-worker
tasks:
  slow:
    worker: { queue: ha, type: slow }
    heartbeat_timeout: 3s
    retry: { max_attempts: 5, initial_interval: 100ms }
"#;
    client
        .register_workflow(WORKER_DAG, "ha-worker.yaml")
        .await
        .expect("register");
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    // The handler works for 8 s, across the failover; the SDK heartbeats every second.
    let worker = Worker::builder(
        ClientConfig::with_endpoints(cluster.urls()).failover_timeout(Duration::from_secs(30)),
        "ha",
    )
    .worker_id("steady")
    .poll_wait(Duration::from_secs(1))
    .handler("slow", move |task: TaskContext| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(task.attempt());
            tokio::time::sleep(Duration::from_secs(8)).await;
            Ok(BTreeMap::from([(
                "attempt".to_string(),
                task.attempt().to_string(),
            )]))
        }
    })
    .build()
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    let run = client.start_run(StartRun::new("ha-worker")).await.unwrap();
    let attempt = tokio::time::timeout(Duration::from_secs(20), started_rx.recv())
        .await
        .expect("the worker got the attempt")
        .unwrap();
    assert_eq!(attempt, 1);
    let leader = cluster.wait_for_leader(None, Duration::from_secs(5)).await;
    cluster.kill(leader);
    cluster
        .wait_for_leader(Some(leader), Duration::from_secs(30))
        .await;
    let finished = tokio::time::timeout(Duration::from_secs(60), client.wait_run(&run.run_id))
        .await
        .expect("run finishes")
        .unwrap();
    assert_eq!(finished.state, RunState::Succeeded, "{finished:?}");
    let slow = &finished.tasks[0];
    assert_eq!(
        slow.attempts,
        1,
        "the attempt continued on the new leader; logs:\n{}",
        cluster.logs()
    );
    assert_eq!(slow.outputs.get("attempt").map(String::as_str), Some("1"));
    assert!(
        started_rx.try_recv().is_err(),
        "the worker was not given the task again"
    );
    let _ = stop.send(());
    let _ = worker.await;
    audit(
        &log(&cluster.database_url).await,
        std::slice::from_ref(&run.run_id),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_status_shows_the_members_the_leader_its_epoch_and_the_lease() {
    let cluster = Cluster::start(3, 2).await;
    let leader = cluster.wait_for_leader(None, Duration::from_secs(10)).await;
    let epoch = cluster.epoch_of(leader).await.unwrap();
    // Asked of a follower, through the command line, as JSON and as a table. Members register
    // on their own leases, possibly after a leader is elected: ask until all three are there.
    let follower = (leader + 1) % 3;
    let mut status = serde_json::Value::Null;
    wait_until(Duration::from_secs(10), || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["cluster", "status", "--output", "json", "--server"])
            .arg(&cluster.replicas[follower].url)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        status = serde_json::from_slice(&output.stdout).unwrap();
        status["members"].as_array().map_or(0, Vec::len) == 3
    });
    assert_eq!(status["region"], "test");
    assert_eq!(status["role"], "follower");
    assert_eq!(status["answered_by"], format!("replica-{follower}"));
    let members = status["members"].as_array().unwrap();
    let ids: Vec<&str> = members
        .iter()
        .map(|member| member["member_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["replica-0", "replica-1", "replica-2"], "{status}");
    assert_eq!(status["leader"]["member_id"], format!("replica-{leader}"));
    assert_eq!(status["leader"]["address"], cluster.replicas[leader].url);
    assert_eq!(status["leader"]["epoch"], epoch);
    assert_eq!(status["lease_ttl_ms"], 2000);
    let left = status["lease_ttl_left_ms"].as_u64().unwrap();
    assert!(left <= 2000, "{left}");
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["cluster", "status", "--server", &cluster.servers()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{table:?}");
    for needle in [
        format!("replica-{leader}"),
        format!("epoch {epoch}"),
        "replica-0".to_string(),
        "replica-2".to_string(),
    ] {
        assert!(text.contains(&needle), "`{needle}` in:\n{text}");
    }
}
