//! Remote workers against a real `tandem serve`: lost heartbeats, failures that must not be
//! retried, workers that die or shut down mid-attempt, and cancellation of leased attempts.
//! Workers are raw gRPC clients (to control every call) or SDK `Worker`s.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::postgres;
use common::server::{Server, checkpoints, fresh_database};
use tandem_api::proto::worker_service_client::WorkerServiceClient;
use tandem_api::proto::{self};
use tandem_api::{Client, Outputs, Run, RunState, TaskContext, TaskError, TaskState, Worker};
use tandem_engine::checkpoint::{AttemptOutcome, Event};
use tonic::Code;
use tonic::transport::Channel;

async fn server() -> Server {
    let postgres = postgres::shared().await;
    Server::start(&fresh_database(postgres).await, &[])
}

/// Submits `dag` and returns the client and the run id.
async fn submit(server: &Server, dag: &str) -> (Client, String) {
    let client = Client::connect(&server.url).await.unwrap();
    let submitted = client
        .submit(dag, "workers.yaml", BTreeMap::new(), None)
        .await
        .unwrap();
    (client, submitted.run.run_id)
}

async fn raw_worker(server: &Server) -> WorkerServiceClient<Channel> {
    WorkerServiceClient::connect(server.url.clone())
        .await
        .unwrap()
}

/// One raw poll of `queue` for `task_types` (empty: any), waiting up to `wait`.
async fn poll(
    workers: &mut WorkerServiceClient<Channel>,
    queue: &str,
    task_types: &[&str],
    wait: Duration,
) -> Vec<proto::TaskLease> {
    workers
        .poll_tasks(proto::PollTasksRequest {
            queue: queue.into(),
            worker_id: "raw-test-worker".into(),
            max_tasks: 10,
            wait_ms: wait.as_millis() as u32,
            task_types: task_types.iter().map(|name| name.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
}

/// Polls until exactly one attempt arrives (failing after `wait`).
async fn poll_one(
    workers: &mut WorkerServiceClient<Channel>,
    queue: &str,
    task_types: &[&str],
    wait: Duration,
) -> proto::TaskLease {
    let mut leases = poll(workers, queue, task_types, wait).await;
    assert_eq!(
        leases.len(),
        1,
        "expected one attempt on {queue} {task_types:?} within {wait:?}, got {leases:?}"
    );
    leases.remove(0)
}

async fn complete(
    workers: &mut WorkerServiceClient<Channel>,
    lease_id: &str,
    outputs: &[(&str, &str)],
) -> Result<(), tonic::Status> {
    workers
        .complete_task(proto::CompleteTaskRequest {
            lease_id: lease_id.into(),
            outputs: outputs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<HashMap<_, _>>(),
        })
        .await
        .map(drop)
}

async fn fail(
    workers: &mut WorkerServiceClient<Channel>,
    lease_id: &str,
    error: &str,
    retryable: bool,
    error_type: &str,
) -> Result<(), tonic::Status> {
    workers
        .fail_task(proto::FailTaskRequest {
            lease_id: lease_id.into(),
            error: error.into(),
            retryable,
            error_type: error_type.into(),
        })
        .await
        .map(drop)
}

async fn heartbeat(
    workers: &mut WorkerServiceClient<Channel>,
    lease_id: &str,
) -> Result<bool, tonic::Status> {
    workers
        .heartbeat(proto::HeartbeatRequest {
            lease_id: lease_id.into(),
            details: "working".into(),
        })
        .await
        .map(|reply| reply.into_inner().cancel_requested)
}

/// Heartbeats `lease_id` every 100 ms until a reply asks the worker to stop (the run's driver
/// takes the cancellation asynchronously); fails after 5 s.
async fn heartbeat_until_cancel_requested(
    workers: &mut WorkerServiceClient<Channel>,
    lease_id: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !heartbeat(workers, lease_id).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "no heartbeat reply asked the worker to stop within 5 s of the cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most `limit`) for the run to finish.
async fn finished(client: &Client, run_id: &str, limit: Duration) -> Run {
    tokio::time::timeout(limit, client.wait_run(run_id))
        .await
        .unwrap_or_else(|_| panic!("run {run_id} did not finish within {limit:?}"))
        .unwrap()
}

fn task<'a>(run: &'a Run, task_id: &str) -> &'a tandem_api::Task {
    run.tasks
        .iter()
        .find(|task| task.task_id == task_id)
        .unwrap_or_else(|| panic!("no task {task_id} in {run:?}"))
}

/// The recorded outcomes of the run's attempts, in log order, with their attempt numbers.
fn outcomes(checkpoints: &[tandem_engine::checkpoint::Checkpoint]) -> Vec<(u32, AttemptOutcome)> {
    checkpoints
        .iter()
        .filter_map(|checkpoint| match &checkpoint.event {
            Event::AttemptFinished {
                attempt, outcome, ..
            } => Some((*attempt, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn started_attempts(checkpoints: &[tandem_engine::checkpoint::Checkpoint]) -> Vec<u32> {
    checkpoints
        .iter()
        .filter_map(|checkpoint| match &checkpoint.event {
            Event::AttemptStarted { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

fn expect_status(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    needles: &[&str],
) {
    let status = match result {
        Ok(reply) => panic!("expected {code:?}, got a reply: {reply:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "`{needle}` missing from: {}",
            status.message()
        );
    }
}

const HEARTBEAT_DAG: &str = r#"
name: heartbeat-timeout
tasks:
  load:
    worker: { queue: hb, type: load }
    heartbeat_timeout: 1s
    retry: { max_attempts: 2, initial_interval: 100ms }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_worker_loses_its_attempt_and_its_late_completion_is_refused() {
    let server = server().await;
    let (client, run_id) = submit(&server, HEARTBEAT_DAG).await;
    let mut workers = raw_worker(&server).await;

    let first = poll_one(&mut workers, "hb", &[], Duration::from_secs(10)).await;
    let leased_at = Instant::now();
    assert_eq!((first.task_id.as_str(), first.attempt), ("load", 1));
    assert_eq!(first.heartbeat_timeout_ms, 1000);
    assert_eq!(first.run_id, run_id);

    // Never heartbeat attempt 1: after the heartbeat timeout (and the retry backoff) attempt 2
    // is queued.
    let second = poll_one(&mut workers, "hb", &[], Duration::from_secs(15)).await;
    assert_eq!((second.task_id.as_str(), second.attempt), ("load", 2));
    assert_ne!(second.lease_id, first.lease_id);
    assert!(
        leased_at.elapsed() >= Duration::from_millis(900),
        "attempt 2 came {:?} after attempt 1, before its heartbeat timeout",
        leased_at.elapsed()
    );

    // The late completion of attempt 1 is refused and changes nothing.
    expect_status(
        complete(&mut workers, &first.lease_id, &[("from", "attempt-1")]).await,
        Code::FailedPrecondition,
        &["no longer leased", "stopped heartbeating"],
    );
    expect_status(
        heartbeat(&mut workers, &first.lease_id).await,
        Code::FailedPrecondition,
        &["no longer leased"],
    );
    let run = client.get_run(&run_id).await.unwrap();
    assert_eq!(run.state, RunState::Running, "{run:?}");
    assert_eq!(task(&run, "load").state, TaskState::Running, "{run:?}");
    assert_eq!(task(&run, "load").attempts, 2, "{run:?}");

    complete(&mut workers, &second.lease_id, &[("from", "attempt-2")])
        .await
        .unwrap();
    let run = finished(&client, &run_id, Duration::from_secs(20)).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let load = task(&run, "load");
    assert_eq!(load.attempts, 2, "{run:?}");
    assert_eq!(
        load.outputs,
        BTreeMap::from([("from".to_string(), "attempt-2".to_string())])
    );

    // Still refused after the run ended; the run stays as it was.
    expect_status(
        complete(&mut workers, &first.lease_id, &[("from", "attempt-1")]).await,
        Code::FailedPrecondition,
        &["no longer leased"],
    );
    assert_eq!(client.get_run(&run_id).await.unwrap(), run);

    let log = checkpoints(&server.database_url, &run_id).await;
    assert_eq!(started_attempts(&log), vec![1, 2]);
    let outcomes = outcomes(&log);
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    match &outcomes[0] {
        (
            1,
            AttemptOutcome::Failed {
                error, retryable, ..
            },
        ) => {
            assert!(*retryable, "{error}");
            assert!(error.contains("stopped heartbeating"), "{error}");
        }
        other => panic!("attempt 1 should have failed on its heartbeat timeout: {other:?}"),
    }
    assert_eq!(
        outcomes[1],
        (
            2,
            AttemptOutcome::Succeeded {
                outputs: BTreeMap::from([("from".to_string(), "attempt-2".to_string())])
            }
        )
    );
}

const FAILURES_DAG: &str = r#"
name: worker-failures
tasks:
  plain:
    worker: { queue: fails, type: plain }
    retry: { max_attempts: 3, initial_interval: 100ms }
  typed:
    worker: { queue: fails, type: typed }
    retry: { max_attempts: 3, initial_interval: 100ms, non_retryable_errors: [bad_input] }
  flaky:
    worker: { queue: fails, type: flaky }
    retry: { max_attempts: 3, initial_interval: 100ms, non_retryable_errors: [bad_input] }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn non_retryable_failures_end_the_task_at_once() {
    let server = server().await;
    let (client, run_id) = submit(&server, FAILURES_DAG).await;
    let mut workers = raw_worker(&server).await;
    let wait = Duration::from_secs(10);

    // The control: an error type that is not listed is retried.
    let flaky = poll_one(&mut workers, "fails", &["flaky"], wait).await;
    fail(
        &mut workers,
        &flaky.lease_id,
        "upstream timed out",
        true,
        "upstream_timeout",
    )
    .await
    .unwrap();
    let flaky = poll_one(&mut workers, "fails", &["flaky"], wait).await;
    assert_eq!(flaky.attempt, 2);
    complete(&mut workers, &flaky.lease_id, &[]).await.unwrap();

    // retryable = false.
    let plain = poll_one(&mut workers, "fails", &["plain"], wait).await;
    fail(&mut workers, &plain.lease_id, "disk on fire", false, "")
        .await
        .unwrap();
    // A retryable failure whose type is in `non_retryable_errors`.
    let typed = poll_one(&mut workers, "fails", &["typed"], wait).await;
    fail(
        &mut workers,
        &typed.lease_id,
        "column `x` is missing",
        true,
        "bad_input",
    )
    .await
    .unwrap();

    let run = finished(&client, &run_id, Duration::from_secs(20)).await;
    assert_eq!(run.state, RunState::Failed, "{run:?}");
    let reason = run.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("task `plain` failed"),
        "the run's reason names the first failed task: {run:?}"
    );
    for (task_id, error) in [
        ("plain", "disk on fire"),
        ("typed", "column `x` is missing"),
    ] {
        let failed = task(&run, task_id);
        assert_eq!(failed.state, TaskState::Failed, "{failed:?}");
        assert_eq!(failed.attempts, 1, "no retry of {task_id}: {failed:?}");
        let reason = failed.reason.clone().unwrap_or_default();
        assert!(reason.contains(error), "{task_id}: {reason}");
    }
    let typed_reason = task(&run, "typed").reason.clone().unwrap_or_default();
    assert!(
        typed_reason.contains("bad_input") && typed_reason.contains("non-retryable"),
        "{typed_reason}"
    );
    assert_eq!(task(&run, "flaky").state, TaskState::Succeeded);
    assert_eq!(task(&run, "flaky").attempts, 2);
    // Nothing else was queued.
    assert!(
        poll(&mut workers, "fails", &[], Duration::from_millis(500))
            .await
            .is_empty()
    );
}

const DYING_DAG: &str = r#"
name: worker-dies
tasks:
  load:
    worker: { queue: dies, type: load }
    heartbeat_timeout: 1s
    retry: { max_attempts: 2, initial_interval: 100ms }
"#;

/// A worker whose `load` handler says it started and then never returns.
fn hanging_worker(url: &str, started: tokio::sync::mpsc::UnboundedSender<u32>) -> Worker {
    Worker::builder(url.to_string(), "dies")
        .worker_id("hanging")
        .handler("load", move |task: TaskContext| {
            let started = started.clone();
            async move {
                let _ = started.send(task.attempt());
                std::future::pending::<Result<Outputs, TaskError>>().await
            }
        })
        .build()
        .unwrap()
}

/// A worker whose `load` handler completes with the worker's name and the attempt.
fn healthy_worker(url: &str, queue: &str) -> Worker {
    Worker::builder(url.to_string(), queue.to_string())
        .worker_id("healthy")
        .poll_wait(Duration::from_secs(1))
        .handler("load", |task: TaskContext| async move {
            Ok(BTreeMap::from([
                ("worker".to_string(), "healthy".to_string()),
                ("attempt".to_string(), task.attempt().to_string()),
            ]))
        })
        .build()
        .unwrap()
}

/// Runs a healthy worker until the run finishes; checks that attempt 2 completed it.
async fn healthy_worker_finishes(server: &Server, client: &Client, run_id: &str, queue: &str) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let healthy = tokio::spawn(healthy_worker(&server.url, queue).run_until(async move {
        let _ = stopped.await;
    }));
    let run = finished(client, run_id, Duration::from_secs(20)).await;
    let _ = stop.send(());
    let stats = healthy.await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let load = task(&run, "load");
    assert_eq!(load.attempts, 2, "{run:?}");
    assert_eq!(
        load.outputs,
        BTreeMap::from([
            ("attempt".to_string(), "2".to_string()),
            ("worker".to_string(), "healthy".to_string()),
        ])
    );
    assert_eq!(stats.completed, 1, "{stats:?}");
}

/// A runtime that dies with everything on it when dropped (also inside async code, where
/// dropping a runtime normally panics): what a process death does to a worker.
struct Doomed(Option<tokio::runtime::Runtime>);

impl Doomed {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("alive until dropped")
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_worker_process_loses_its_attempt_to_a_healthy_worker() {
    let server = server().await;
    // The dying worker lives in a runtime of its own: shutting that runtime down drops every
    // task of the worker at once (handler, heartbeats, connections), as a process death does.
    let doomed = Doomed(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    ));
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    doomed
        .runtime()
        .spawn(hanging_worker(&server.url, started_tx).run_until(std::future::pending()));
    let (client, run_id) = submit(&server, DYING_DAG).await;
    let attempt = tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the hanging worker got the attempt");
    assert_eq!(attempt, Some(1));
    drop(doomed);

    healthy_worker_finishes(&server, &client, &run_id, "dies").await;
    let log = checkpoints(&server.database_url, &run_id).await;
    assert_eq!(started_attempts(&log), vec![1, 2]);
    match &outcomes(&log)[0] {
        (1, AttemptOutcome::Failed { error, .. }) => {
            assert!(
                error.contains("worker `hanging` stopped heartbeating"),
                "{error}"
            )
        }
        other => panic!("attempt 1 should have failed on its heartbeat timeout: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_worker_task_stops_heartbeating_and_its_attempt_is_retried() {
    let server = server().await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let hanging =
        tokio::spawn(hanging_worker(&server.url, started_tx).run_until(std::future::pending()));
    let (client, run_id) = submit(&server, DYING_DAG).await;
    let attempt = tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the hanging worker got the attempt");
    assert_eq!(attempt, Some(1));
    // Dropping the worker's future (abort) must stop everything it started, heartbeats
    // included: otherwise the attempt stays leased for ever and the run never ends.
    hanging.abort();
    assert!(hanging.await.unwrap_err().is_cancelled());
    let aborted_at = Instant::now();
    loop {
        let run = client.get_run(&run_id).await.unwrap();
        if task(&run, "load").attempts >= 2 {
            break;
        }
        assert!(
            aborted_at.elapsed() < Duration::from_secs(10),
            "attempt 1 is still leased {:?} after the worker's task was aborted (heartbeat_timeout 1s): \
             something still heartbeats it: {run:?}",
            aborted_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    healthy_worker_finishes(&server, &client, &run_id, "dies").await;
}

const CANCEL_DAG: &str = r#"
name: cancel-leased
tasks:
  load:
    worker: { queue: cancel, type: load }
    heartbeat_timeout: 3s
    retry: { max_attempts: 3, initial_interval: 100ms }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_tells_its_worker_and_ends_when_the_worker_reports() {
    let server = server().await;
    let (client, run_id) = submit(&server, CANCEL_DAG).await;
    let mut workers = raw_worker(&server).await;
    let lease = poll_one(&mut workers, "cancel", &[], Duration::from_secs(10)).await;
    assert!(!heartbeat(&mut workers, &lease.lease_id).await.unwrap());

    assert_eq!(
        client.cancel_run(&run_id, "stop it").await.unwrap(),
        RunState::Running,
        "the leased attempt is still running"
    );
    heartbeat_until_cancel_requested(&mut workers, &lease.lease_id).await;
    let run = client.get_run(&run_id).await.unwrap();
    assert_eq!(run.state, RunState::Running, "{run:?}");
    assert!(run.cancelling, "{run:?}");

    fail(
        &mut workers,
        &lease.lease_id,
        "stopped: run cancelled",
        true,
        "",
    )
    .await
    .unwrap();
    let run = finished(&client, &run_id, Duration::from_secs(10)).await;
    assert_eq!(run.state, RunState::Cancelled, "{run:?}");
    let load = task(&run, "load");
    assert_eq!(load.state, TaskState::Cancelled, "{run:?}");
    assert_eq!(load.attempts, 1, "a cancelled run retries nothing: {run:?}");
    assert!(
        poll(&mut workers, "cancel", &[], Duration::from_millis(500))
            .await
            .is_empty()
    );
}

const CANCEL_SILENT_DAG: &str = r#"
name: cancel-silent
tasks:
  load:
    worker: { queue: cancel, type: load }
    heartbeat_timeout: 1s
    retry: { max_attempts: 3, initial_interval: 100ms }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_ends_when_its_silent_worker_times_out() {
    let server = server().await;
    let (client, run_id) = submit(&server, CANCEL_SILENT_DAG).await;
    let mut workers = raw_worker(&server).await;
    let lease = poll_one(&mut workers, "cancel", &[], Duration::from_secs(10)).await;
    client.cancel_run(&run_id, "stop it").await.unwrap();
    heartbeat_until_cancel_requested(&mut workers, &lease.lease_id).await;
    // The worker never reports: the heartbeat timeout ends the attempt, and the run.
    let run = finished(&client, &run_id, Duration::from_secs(15)).await;
    assert_eq!(run.state, RunState::Cancelled, "{run:?}");
    assert_eq!(task(&run, "load").state, TaskState::Cancelled, "{run:?}");
    assert_eq!(task(&run, "load").attempts, 1, "{run:?}");
    expect_status(
        complete(&mut workers, &lease.lease_id, &[]).await,
        Code::FailedPrecondition,
        &["no longer leased"],
    );
    assert_eq!(
        client.get_run(&run_id).await.unwrap().state,
        RunState::Cancelled
    );
}

const RELEASE_DAG: &str = r#"
name: graceful-release
tasks:
  load:
    worker: { queue: release, type: load }
    heartbeat_timeout: 30s
    retry: { max_attempts: 2, initial_interval: 100ms }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_shutting_down_releases_its_attempt_to_another_worker() {
    let server = server().await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let leaving = Worker::builder(server.url.clone(), "release")
        .worker_id("leaving")
        .shutdown_grace(Duration::from_millis(300))
        .handler("load", move |task: TaskContext| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(task.attempt());
                // Ignores cancellation: only the end of the grace period stops it.
                std::future::pending::<Result<Outputs, TaskError>>().await
            }
        })
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let leaving = tokio::spawn(leaving.run_until(async move {
        let _ = stopped.await;
    }));
    let (client, run_id) = submit(&server, RELEASE_DAG).await;
    let attempt = tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the leaving worker got the attempt");
    assert_eq!(attempt, Some(1));

    let shutdown_at = Instant::now();
    stop.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(10), leaving)
        .await
        .expect("the worker shuts down after its grace period")
        .unwrap()
        .unwrap();
    assert_eq!((stats.released, stats.failed), (1, 1), "{stats:?}");
    healthy_worker_finishes(&server, &client, &run_id, "release").await;
    // Released, not lost: the retry came long before the 30 s heartbeat timeout.
    assert!(
        shutdown_at.elapsed() < Duration::from_secs(20),
        "{:?}",
        shutdown_at.elapsed()
    );

    let log = checkpoints(&server.database_url, &run_id).await;
    assert_eq!(started_attempts(&log), vec![1, 2]);
    match &outcomes(&log)[0] {
        (
            1,
            AttemptOutcome::Failed {
                retryable,
                error_type,
                error,
                ..
            },
        ) => {
            assert!(*retryable, "{error}");
            assert_eq!(
                error_type.as_deref(),
                Some(tandem_api::worker::WORKER_SHUTDOWN)
            );
            assert!(error.contains("leaving"), "{error}");
        }
        other => panic!("attempt 1 should have been released: {other:?}"),
    }
}
