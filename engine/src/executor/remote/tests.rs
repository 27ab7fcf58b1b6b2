//! Tests of the task queues on their own: a test attaches a run and reads its reports channel
//! in place of a run's driver (acks are answered by the test).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::checkpoint::AttemptOutcome;

mod adopt;

fn attempt(task: TaskIndex, queue: &str, task_type: &str) -> RemoteAttempt {
    RemoteAttempt {
        task,
        task_id: format!("t{task}"),
        attempt: 1,
        queue: queue.into(),
        task_type: task_type.into(),
        input: serde_json::json!({ "n": task }),
        heartbeat_timeout: Duration::from_secs(10),
        timeout: None,
        traceparent: None,
    }
}

fn poll_request(queue: &str, max_tasks: usize, wait: Duration) -> PollRequest {
    PollRequest {
        queue: queue.into(),
        worker_id: "w1".into(),
        task_types: Vec::new(),
        max_tasks,
        wait,
    }
}

/// Answers the ack of the next report (committed) and returns the report's outcome.
async fn commit_next(reports: &mut mpsc::UnboundedReceiver<RemoteReport>) -> AttemptOutcome {
    let report = reports.recv().await.expect("a report");
    if let Some(ack) = report.ack {
        ack.committed();
    }
    report.outcome
}

#[tokio::test(start_paused = true)]
async fn poll_leases_oldest_first_and_complete_waits_for_the_commit() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let run_id = RunId::new();
    let (run, mut reports) = queues.attach_run(run_id, "wf");
    run.enqueue(vec![
        attempt(0, "q", "a"),
        attempt(1, "q", "b"),
        attempt(2, "q", "a"),
    ]);
    let leases = queues
        .poll(poll_request("q", 2, Duration::from_secs(1)))
        .await;
    let ids: Vec<&str> = leases.iter().map(|lease| lease.task_id.as_str()).collect();
    assert_eq!(ids, ["t0", "t1"]);
    let lease = &leases[0];
    assert_eq!(lease.lease_id, format!("{run_id}:0:1"));
    assert_eq!(lease.run_id, run_id);
    assert_eq!(lease.workflow, "wf");
    assert_eq!(lease.idempotency_key, format!("{run_id}/t0"));
    assert_eq!(lease.input, serde_json::json!({ "n": 0 }));
    assert_eq!(lease.heartbeat_timeout, Duration::from_secs(10));

    // complete() does not return before the driver acknowledges the commit.
    let outputs = BTreeMap::from([("path".to_string(), "/x".to_string())]);
    let completing = tokio::spawn({
        let queues = queues.clone();
        let lease_id = lease.lease_id.clone();
        async move { queues.complete(&lease_id, outputs).await }
    });
    let report = reports.recv().await.unwrap();
    assert_eq!((report.task, report.attempt), (0, 1));
    assert!(matches!(
        &report.outcome,
        AttemptOutcome::Succeeded { outputs } if outputs["path"] == "/x"
    ));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!completing.is_finished());
    report.ack.unwrap().committed();
    completing.await.unwrap().unwrap();

    // A second completion of the same lease is refused and reaches no run.
    let error = queues
        .complete(&lease.lease_id, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::FailedPrecondition);
    assert!(
        error
            .to_string()
            .contains("it was already completed by worker `w1`"),
        "{error}"
    );
    assert!(reports.try_recv().is_err());

    // The remaining attempt of type `a` is left for the next poll.
    let next = queues.poll(poll_request("q", 10, Duration::ZERO)).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task_id, "t2");
}

#[tokio::test(start_paused = true)]
async fn task_types_filter_what_a_poll_takes() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, _reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "b")]);
    let mut request = poll_request("q", 10, Duration::ZERO);
    request.task_types = vec!["b".into(), "c".into()];
    let leases = queues.poll(request.clone()).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].task_type, "b");
    assert!(queues.poll(request).await.is_empty());
    // Another queue's poller sees nothing of this queue.
    assert!(
        queues
            .poll(poll_request("other", 10, Duration::ZERO))
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_wakes_on_enqueue_and_times_out_empty() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, _reports) = queues.attach_run(RunId::new(), "wf");
    let started = Instant::now();
    let polling = tokio::spawn({
        let queues = queues.clone();
        async move {
            queues
                .poll(poll_request("q", 5, Duration::from_secs(30)))
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!polling.is_finished());
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    let leases = polling.await.unwrap();
    assert_eq!(leases.len(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(2));

    // Nothing arrives: the poll returns empty at its wait.
    let started = Instant::now();
    let leases = queues
        .poll(poll_request("q", 5, Duration::from_secs(3)))
        .await;
    assert!(leases.is_empty());
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    // A wait beyond the configured maximum is cut to it.
    let short = TaskQueues::new(RemoteConfig {
        max_poll_wait: Duration::from_secs(1),
        ..RemoteConfig::default()
    });
    let started = Instant::now();
    assert!(
        short
            .poll(poll_request("q", 5, Duration::from_secs(3600)))
            .await
            .is_empty()
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_poller_of_another_type_does_not_swallow_the_wake_up() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, _reports) = queues.attach_run(RunId::new(), "wf");
    let poll_type = |task_type: &str| {
        let queues = queues.clone();
        let mut request = poll_request("q", 1, Duration::from_secs(30));
        request.task_types = vec![task_type.to_string()];
        tokio::spawn(async move { queues.poll(request).await })
    };
    let wants_a = poll_type("a");
    let wants_b = poll_type("b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.enqueue(vec![attempt(0, "q", "b")]);
    let got_b = wants_b.await.unwrap();
    assert_eq!(got_b.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!wants_a.is_finished());
    run.enqueue(vec![attempt(1, "q", "a")]);
    assert_eq!(wants_a.await.unwrap()[0].task_type, "a");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_lease_and_silence_loses_it() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, mut reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a")]);
    let lease = queues
        .poll(poll_request("q", 1, Duration::ZERO))
        .await
        .remove(0);
    // Heartbeats every 8 s keep a 10 s lease for a minute.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let reply = queues
            .heartbeat(&lease.lease_id, "50%".into())
            .await
            .unwrap();
        assert!(!reply.cancel_requested);
    }
    assert!(reports.try_recv().is_err());
    // Then the worker goes quiet: the lease is taken back 10 s after the last heartbeat.
    let quiet = Instant::now();
    let report = reports.recv().await.unwrap();
    assert_eq!(quiet.elapsed(), Duration::from_secs(10));
    assert!(report.ack.is_none());
    let AttemptOutcome::Failed {
        error,
        retryable,
        error_type,
        ..
    } = report.outcome
    else {
        panic!("{:?}", report.outcome);
    };
    assert!(retryable);
    assert_eq!(error_type.as_deref(), Some(HEARTBEAT_TIMEOUT));
    assert_eq!(
        error,
        "worker `w1` stopped heartbeating: no heartbeat for 10.0 s (heartbeat_timeout is 10s); \
         last details: 50%"
    );

    // Late calls are refused with how and when the lease ended, and reach no run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = queues
        .heartbeat(&lease.lease_id, String::new())
        .await
        .unwrap_err();
    assert_eq!(late.kind(), RemoteErrorKind::FailedPrecondition);
    let message = late.to_string();
    assert!(
        message.starts_with(&format!(
            "attempt 1 of task `t0` in run {} is no longer leased: it was taken back because \
             worker `w1` stopped heartbeating",
            lease.run_id
        )),
        "{message}"
    );
    assert!(
        message.ends_with("3.0 s ago; this call changes nothing"),
        "{message}"
    );
    let late = queues
        .fail(&lease.lease_id, "boom".into(), true, None)
        .await
        .unwrap_err();
    assert_eq!(late.kind(), RemoteErrorKind::FailedPrecondition);
    assert!(reports.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_counts_from_the_lease() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, mut reports) = queues.attach_run(RunId::new(), "wf");
    let mut slow = attempt(0, "q", "a");
    slow.timeout = Some(Duration::from_secs(25));
    run.enqueue(vec![slow]);
    // Queued time does not count.
    tokio::time::sleep(Duration::from_secs(100)).await;
    let lease = queues
        .poll(poll_request("q", 1, Duration::ZERO))
        .await
        .remove(0);
    assert_eq!(lease.timeout, Some(Duration::from_secs(25)));
    let leased = Instant::now();
    let heartbeats = tokio::spawn({
        let queues = queues.clone();
        let lease_id = lease.lease_id.clone();
        async move {
            while queues.heartbeat(&lease_id, String::new()).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    });
    let report = reports.recv().await.unwrap();
    assert_eq!(leased.elapsed(), Duration::from_secs(25));
    assert_eq!(
        report.outcome,
        AttemptOutcome::TimedOut { timeout_ms: 25_000 }
    );
    heartbeats.await.unwrap();
    let error = queues
        .complete(&lease.lease_id, BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("it timed out after 25s (its timeout) while leased to worker `w1`"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_queued_attempt_reports_it_at_once() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, mut reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    run.cancel(0, 1);
    let report = reports.try_recv().unwrap();
    assert_eq!(
        (report.task, report.outcome),
        (0, AttemptOutcome::Cancelled)
    );
    // The cancelled attempt is skipped by polls.
    let leases = queues.poll(poll_request("q", 10, Duration::ZERO)).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].task_id, "t1");
    // Cancelling an unknown attempt does nothing.
    run.cancel(7, 1);
    assert!(reports.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_leased_attempt_asks_the_worker_and_ends_cancelled() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, mut reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    let leases = queues.poll(poll_request("q", 10, Duration::ZERO)).await;
    run.cancel(0, 1);
    run.cancel(1, 1);
    assert!(
        reports.try_recv().is_err(),
        "a leased attempt is not ended at once"
    );
    let reply = queues
        .heartbeat(&leases[0].lease_id, String::new())
        .await
        .unwrap();
    assert!(reply.cancel_requested);

    // The first worker reports success anyway: the attempt ends cancelled, after the commit.
    let completing = tokio::spawn({
        let queues = queues.clone();
        let lease_id = leases[0].lease_id.clone();
        async move { queues.complete(&lease_id, BTreeMap::new()).await }
    });
    assert_eq!(commit_next(&mut reports).await, AttemptOutcome::Cancelled);
    completing.await.unwrap().unwrap();

    // The second worker keeps heartbeating but never stops: one heartbeat timeout after the
    // cancellation the attempt ends cancelled anyway.
    let cancelled = Instant::now();
    let heartbeats = tokio::spawn({
        let queues = queues.clone();
        let lease_id = leases[1].lease_id.clone();
        async move {
            while queues.heartbeat(&lease_id, String::new()).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    assert_eq!(commit_next(&mut reports).await, AttemptOutcome::Cancelled);
    assert_eq!(cancelled.elapsed(), Duration::from_secs(10));
    heartbeats.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_detached_run_leaves_the_queues_and_late_calls_are_unavailable() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    let lease = queues
        .poll(poll_request("q", 1, Duration::ZERO))
        .await
        .remove(0);
    run.detach("the store refused a write (fenced)");
    drop(reports);
    assert!(
        queues
            .poll(poll_request("q", 10, Duration::ZERO))
            .await
            .is_empty()
    );
    let error = queues
        .complete(&lease.lease_id, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::Unavailable);
    assert!(error.to_string().contains("fenced"), "{error}");
    let state = queues.handle.shared.lock();
    assert_eq!(state.attempt_count(), 0);
    assert_eq!(state.run_count(), 0);
    assert_eq!(state.queue_count(), 0, "empty queues are forgotten");
}

#[tokio::test(start_paused = true)]
async fn a_driver_that_stops_before_committing_makes_the_call_unavailable() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, mut reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    let leases = queues.poll(poll_request("q", 2, Duration::ZERO)).await;
    // The commit fails: the caller is told, and a retry is told the same.
    let failing = tokio::spawn({
        let queues = queues.clone();
        let lease_id = leases[0].lease_id.clone();
        async move {
            queues
                .fail(&lease_id, "bad".into(), false, Some("E".into()))
                .await
        }
    });
    let report = reports.recv().await.unwrap();
    assert!(matches!(
        &report.outcome,
        AttemptOutcome::Failed { error, retryable: false, error_type: Some(t), .. }
            if error == "bad" && t == "E"
    ));
    report.ack.unwrap().refused(AckError::CommitFailed {
        message: "disk full".into(),
    });
    let error = failing.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::Unavailable);
    assert!(error.to_string().contains("disk full"), "{error}");
    let again = queues
        .fail(&leases[0].lease_id, "bad".into(), false, None)
        .await
        .unwrap_err();
    assert_eq!(again.kind(), RemoteErrorKind::Unavailable);

    // The driver drops the ack without answering (it stopped).
    let completing = tokio::spawn({
        let queues = queues.clone();
        let lease_id = leases[1].lease_id.clone();
        async move { queues.complete(&lease_id, BTreeMap::new()).await }
    });
    drop(reports.recv().await.unwrap());
    let error = completing.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::Unavailable);
    drop(run);
}

#[tokio::test(start_paused = true)]
async fn bad_calls_change_nothing() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, mut reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    let lease = queues
        .poll(poll_request("q", 1, Duration::ZERO))
        .await
        .remove(0);
    let queued_id = format!("{}:1:1", lease.run_id);

    let error = queues.heartbeat("nope", String::new()).await.unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::InvalidArgument);
    assert!(error.to_string().contains("RUN_ID:TASK_INDEX:ATTEMPT"));

    let unknown = format!("{}:0:1", RunId::new());
    let error = queues.heartbeat(&unknown, String::new()).await.unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::NotFound);
    assert!(error.to_string().contains(&unknown));

    let error = queues
        .complete(&queued_id, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::FailedPrecondition);
    assert!(error.to_string().contains("waits in queue `q`"), "{error}");

    let bad_outputs = BTreeMap::from([("no spaces".to_string(), String::new())]);
    let error = queues
        .complete(&lease.lease_id, bad_outputs)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::InvalidArgument);
    let error = queues
        .heartbeat(&lease.lease_id, "x".repeat(MAX_DETAILS_BYTES + 1))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::InvalidArgument);
    assert!(reports.try_recv().is_err());

    // The lease is intact: a good completion still works.
    let completing = tokio::spawn({
        let queues = queues.clone();
        let lease_id = lease.lease_id.clone();
        async move { queues.complete(&lease_id, BTreeMap::new()).await }
    });
    assert!(commit_next(&mut reports).await.is_success());
    completing.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_dropped_poll_leases_nothing_and_releases_its_queue() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let polling = tokio::spawn({
        let queues = queues.clone();
        async move {
            queues
                .poll(poll_request("q", 1, Duration::from_secs(30)))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(queues.handle.shared.lock().queue_count(), 1);
    polling.abort();
    assert!(polling.await.unwrap_err().is_cancelled());
    assert_eq!(queues.handle.shared.lock().queue_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn ended_leases_are_remembered_up_to_the_limit() {
    let queues = TaskQueues::new(RemoteConfig {
        remembered_ends: 1,
        ..RemoteConfig::default()
    });
    let (run, _reports) = queues.attach_run(RunId::new(), "wf");
    run.enqueue(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    run.cancel(0, 1);
    run.cancel(1, 1);
    let first = format!("{}:0:1", run.run_id());
    let second = format!("{}:1:1", run.run_id());
    let error = queues.heartbeat(&second, String::new()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("it was cancelled by its run before any worker took it"),
        "{error}"
    );
    let error = queues.heartbeat(&first, String::new()).await.unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::NotFound);
    assert!(error.to_string().contains("only the last 1 ended leases"));
}
