//! Runs with `worker:` tasks: the runner queues their attempts on real [`TaskQueues`], and the
//! test plays the worker by calling `poll`, `heartbeat`, `complete` and `fail` on them (what
//! the gRPC handlers do), against the real embedded store.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::*;
use crate::executor::remote::{Lease, PollRequest, RemoteConfig, RemoteErrorKind};

impl Fixture {
    /// A runner config whose worker attempts go to `queues`.
    pub(super) fn remote_config(&self, queues: &TaskQueues) -> RunnerConfig {
        RunnerConfig {
            remote: Some(queues.clone()),
            ..self.config(4)
        }
    }
}

/// Leases up to `max` attempts of queue `queue`, waiting up to a minute for the first.
pub(super) async fn lease(queues: &TaskQueues, queue: &str, max: usize) -> Vec<Lease> {
    queues
        .poll(PollRequest {
            queue: queue.into(),
            worker_id: "test-worker".into(),
            task_types: Vec::new(),
            max_tasks: max,
            wait: Duration::from_secs(60),
        })
        .await
}

pub(super) fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// The outcomes of the run's finished attempts, as `(task, attempt, outcome)`.
pub(super) fn attempt_ends(checkpoints: &[Checkpoint]) -> Vec<(u32, u32, AttemptOutcome)> {
    checkpoints
        .iter()
        .filter_map(|checkpoint| match &checkpoint.event {
            Event::AttemptFinished {
                task,
                attempt,
                outcome,
                ..
            } => Some((*task, *attempt, outcome.clone())),
            _ => None,
        })
        .collect()
}

const CHAIN: &str = r#"
name: remote-chain
params:
  table: users
tasks:
  load:
    worker: { queue: loaders, type: load_table }
    input: { table: "${{ params.table }}", batch: 100 }
    heartbeat_timeout: 5s
    retry: { max_attempts: 3, initial_interval: 1s, jitter: none, non_retryable_errors: [invalid_input] }
  verify:
    needs: [load]
    worker: { queue: loaders, type: checksum }
    input: { rows: "${{ tasks.load.outputs.rows }}" }
"#;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn worker_attempts_run_through_the_queues_and_outputs_flow_downstream() {
    let fixture = Fixture::new();
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run_id, driving, _controls, _progress) = fixture
        .start_with(CHAIN, fixture.remote_config(&queues))
        .await;

    let load = lease(&queues, "loaders", 10).await.remove(0);
    assert_eq!(load.run_id, run_id);
    assert_eq!(load.workflow, "remote-chain");
    assert_eq!((load.task_id.as_str(), load.attempt), ("load", 1));
    assert_eq!(load.task_type, "load_table");
    assert_eq!(
        load.input,
        serde_json::json!({ "table": "users", "batch": 100 })
    );
    assert_eq!(load.idempotency_key, format!("{run_id}/load"));
    assert_eq!(load.heartbeat_timeout, Duration::from_secs(5));
    assert!(
        !queues
            .heartbeat(&load.lease_id, "{\"done\": 0.5}".into())
            .await
            .unwrap()
            .cancel_requested
    );
    // When complete returns, the attempt's end is in the store.
    queues
        .complete(&load.lease_id, outputs(&[("rows", "42")]))
        .await
        .unwrap();
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert!(matches!(
        attempt_ends(&stored).as_slice(),
        [(0, 1, AttemptOutcome::Succeeded { outputs })] if outputs["rows"] == "42"
    ));

    let verify = lease(&queues, "loaders", 10).await.remove(0);
    assert_eq!(verify.task_id, "verify");
    assert_eq!(verify.input, serde_json::json!({ "rows": "42" }));
    queues
        .complete(&verify.lease_id, outputs(&[("checksum", "abc")]))
        .await
        .unwrap();
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Succeeded, "{}", finished.reason);
    // The run is detached from the queues once it ends.
    let error = queues
        .heartbeat(&verify.lease_id, String::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::FailedPrecondition);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_silent_worker_loses_its_attempt_which_is_retried_and_its_late_result_refused() {
    let fixture = Fixture::new();
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run_id, driving, _controls, _progress) = fixture
        .start_with(CHAIN, fixture.remote_config(&queues))
        .await;

    // Attempt 1 is leased and never heartbeated.
    let first = lease(&queues, "loaders", 1).await.remove(0);
    let leased = Instant::now();
    // Attempt 2 arrives after the 5 s heartbeat timeout and the 1 s retry backoff.
    let second = lease(&queues, "loaders", 1).await.remove(0);
    assert_eq!((second.task_id.as_str(), second.attempt), ("load", 2));
    let waited = leased.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
    let stored = fixture.store.read_run(run_id).await.unwrap();
    let ends = attempt_ends(&stored);
    let [
        (
            0,
            1,
            AttemptOutcome::Failed {
                error,
                retryable: true,
                error_type: Some(error_type),
                ..
            },
        ),
    ] = ends.as_slice()
    else {
        panic!("{ends:?}");
    };
    assert_eq!(error_type, "heartbeat_timeout");
    assert_eq!(
        error,
        "worker `test-worker` stopped heartbeating: no heartbeat for 5.0 s (heartbeat_timeout is 5s)"
    );

    // The first worker comes back with a result: refused, and the run does not change.
    let late = queues
        .complete(&first.lease_id, outputs(&[("rows", "1")]))
        .await
        .unwrap_err();
    assert_eq!(late.kind(), RemoteErrorKind::FailedPrecondition);
    assert!(
        late.to_string()
            .contains("is no longer leased: it was taken back because worker `test-worker` stopped heartbeating"),
        "{late}"
    );
    assert_eq!(fixture.store.read_run(run_id).await.unwrap(), stored);

    // Attempt 2 fails with a non-retryable error type: the task fails without attempt 3.
    queues
        .fail(
            &second.lease_id,
            "table `users` does not exist".into(),
            true,
            Some("invalid_input".into()),
        )
        .await
        .unwrap();
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Failed);
    let stored = fixture.store.read_run(run_id).await.unwrap();
    let ends = attempt_ends(&stored);
    assert_eq!(ends.len(), 2);
    assert!(
        matches!(&ends[1], (0, 2, AttemptOutcome::Failed { retryable: false, error, .. })
            if error.contains("does not exist")),
        "{ends:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_attempt_timeout_takes_a_worker_attempt_back() {
    let fixture = Fixture::new();
    let queues = TaskQueues::new(RemoteConfig::default());
    let yaml = "name: slow\ntasks:\n  slow:\n    worker: { queue: q, type: t }\n    timeout: 20s\n    heartbeat_timeout: 10s\n";
    let (run_id, driving, _controls, _progress) = fixture
        .start_with(yaml, fixture.remote_config(&queues))
        .await;
    let held = lease(&queues, "q", 1).await.remove(0);
    // The worker heartbeats, but the attempt runs past its timeout.
    let heartbeating = tokio::spawn({
        let queues = queues.clone();
        async move {
            let mut beats = 0;
            while queues
                .heartbeat(&held.lease_id, String::new())
                .await
                .is_ok()
            {
                beats += 1;
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            beats
        }
    });
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Failed);
    assert!(heartbeating.await.unwrap() >= 6);
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert_eq!(
        attempt_ends(&stored),
        [(0, 1, AttemptOutcome::TimedOut { timeout_ms: 20_000 })]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancelling_a_run_cancels_queued_and_leased_worker_attempts() {
    let fixture = Fixture::new();
    let queues = TaskQueues::new(RemoteConfig::default());
    let yaml = "name: two\ntasks:\n  a:\n    worker: { queue: qa, type: t }\n  b:\n    worker: { queue: qb, type: t }\n";
    let (run_id, driving, controls, _progress) = fixture
        .start_with(yaml, fixture.remote_config(&queues))
        .await;
    let held = lease(&queues, "qa", 1).await.remove(0);
    controls
        .send(Control::Cancel {
            reason: "cancelled by test".into(),
        })
        .unwrap();
    // The leased attempt learns of the cancellation from its heartbeat and reports a failure;
    // the run records it as cancelled.
    let reply = loop {
        let reply = queues
            .heartbeat(&held.lease_id, String::new())
            .await
            .unwrap();
        if reply.cancel_requested {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reply.cancel_requested);
    queues
        .fail(&held.lease_id, "stopped on request".into(), true, None)
        .await
        .unwrap();
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Cancelled);
    let stored = fixture.store.read_run(run_id).await.unwrap();
    let mut ends = attempt_ends(&stored);
    ends.sort_by_key(|(task, _, _)| *task);
    assert_eq!(
        ends,
        [
            (0, 1, AttemptOutcome::Cancelled),
            (1, 1, AttemptOutcome::Cancelled)
        ]
    );
    // Nothing of the run is left to lease.
    assert!(
        queues
            .poll(PollRequest {
                queue: "qb".into(),
                worker_id: "w".into(),
                task_types: Vec::new(),
                max_tasks: 10,
                wait: Duration::ZERO,
            })
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_fenced_driver_drops_its_worker_attempts() {
    let fixture = Fixture::new();
    let queues = TaskQueues::new(RemoteConfig::default());
    let yaml = "name: fenced\ntasks:\n  a:\n    worker: { queue: q, type: t }\n  b:\n    worker: { queue: q, type: t }\n";
    let (run_id, driving, _controls, _progress) = fixture
        .start_with(yaml, fixture.remote_config(&queues))
        .await;
    let held = lease(&queues, "q", 1).await.remove(0);
    let other = Owner {
        host: "elsewhere".into(),
        pid: 1,
        start_ticks: 1,
    };
    fixture.store.claim_run(run_id, &other).await.unwrap();
    // The completion's commit is refused: the worker is told to retry later, not "done".
    let error = queues
        .complete(&held.lease_id, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::Unavailable);
    assert!(
        error.to_string().contains("fenced") || error.to_string().contains("owner"),
        "{error}"
    );
    let error = driving.await.unwrap().unwrap_err();
    assert!(
        matches!(error, RunnerError::Store(StoreError::Fenced { .. })),
        "{error}"
    );
    // The other attempt left the queue with the driver.
    assert!(
        queues
            .poll(PollRequest {
                queue: "q".into(),
                worker_id: "w".into(),
                task_types: Vec::new(),
                max_tasks: 10,
                wait: Duration::ZERO,
            })
            .await
            .is_empty()
    );
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert!(attempt_ends(&stored).is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_a_remote_executor_a_worker_task_fails_at_once() {
    let fixture = Fixture::new();
    let (finished, checkpoints) = fixture.run(CHAIN, 1).await;
    assert_eq!(finished.end, RunEnd::Failed);
    let ends = attempt_ends(&checkpoints);
    let [
        (
            0,
            1,
            AttemptOutcome::Failed {
                error,
                retryable: false,
                ..
            },
        ),
    ] = ends.as_slice()
    else {
        panic!("{ends:?}");
    };
    assert!(
        error.contains("task load needs a worker on queue loaders")
            && error.contains("tandem serve"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_completions_share_a_few_commits() {
    const TASKS: usize = 1000;
    let fixture = Fixture::new();
    let queues = TaskQueues::new(RemoteConfig::default());
    let values: Vec<String> = (0..TASKS).map(|n| n.to_string()).collect();
    let yaml = format!(
        "name: fanout\ntasks:\n  work:\n    matrix: {{ n: [{}] }}\n    worker: {{ queue: q, type: t }}\n    input: {{ n: \"${{{{ matrix.n }}}}\" }}\n",
        values.join(", ")
    );
    let (run_id, driving, _controls, progress) = fixture
        .start_with(&yaml, fixture.remote_config(&queues))
        .await;
    let mut leases = Vec::new();
    while leases.len() < TASKS {
        leases.extend(lease(&queues, "q", TASKS).await);
    }
    let commits_before = progress.borrow().commits;
    let completions: Vec<_> = leases
        .into_iter()
        .map(|lease| {
            let queues = queues.clone();
            tokio::spawn(async move {
                let n = lease.input["n"].as_str().unwrap_or_default().to_string();
                queues
                    .complete(&lease.lease_id, outputs(&[("n", &n)]))
                    .await
            })
        })
        .collect();
    for completion in completions {
        completion.await.unwrap().unwrap();
    }
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Succeeded, "{}", finished.reason);
    let commits = progress.borrow().commits - commits_before;
    assert!(
        commits <= 25,
        "{TASKS} completions took {commits} commits; they should share a few"
    );
    let stored = fixture.store.read_run(run_id).await.unwrap();
    let ends = attempt_ends(&stored);
    assert_eq!(ends.len(), TASKS);
    assert!(ends.iter().all(|(_, _, outcome)| outcome.is_success()));
}
