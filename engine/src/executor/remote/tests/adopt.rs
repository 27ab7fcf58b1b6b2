//! Adoption of worker attempts by a driver that resumed their run (after a failover): the
//! attempt waits one heartbeat timeout for its worker, then goes back on its queue as the same
//! attempt.

use super::*;

/// Queues whose run `run_id` was attached by a resuming driver that adopted `attempts`.
fn adopted(
    attempts: Vec<RemoteAttempt>,
) -> (TaskQueues, RunQueues, mpsc::UnboundedReceiver<RemoteReport>) {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, reports) = queues.attach_resumed_run(RunId::new(), "wf");
    run.adopt(attempts);
    (queues, run, reports)
}

fn lease_id(run: &RunQueues, task: TaskIndex) -> String {
    format!("{}:{task}:1", run.run_id())
}

#[tokio::test(start_paused = true)]
async fn the_worker_of_an_adopted_attempt_continues_under_its_lease_id() {
    let (queues, run, mut reports) = adopted(vec![attempt(0, "q", "a")]);
    let id = lease_id(&run, 0);
    // The attempt is leased, not queued: a poll does not get it.
    assert!(
        queues
            .poll(poll_request("q", 10, Duration::ZERO))
            .await
            .is_empty()
    );
    // The worker's heartbeats keep it past several heartbeat timeouts.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let reply = queues.heartbeat(&id, "working".into()).await.unwrap();
        assert!(!reply.cancel_requested);
    }
    assert!(reports.try_recv().is_err());
    // Its completion is recorded as for any lease, after the commit.
    let completing = tokio::spawn({
        let queues = queues.clone();
        let id = id.clone();
        async move {
            let outputs = BTreeMap::from([("rows".to_string(), "42".to_string())]);
            queues.complete(&id, outputs).await
        }
    });
    let report = reports.recv().await.unwrap();
    assert_eq!((report.task, report.attempt), (0, 1));
    assert!(matches!(
        &report.outcome,
        AttemptOutcome::Succeeded { outputs } if outputs["rows"] == "42"
    ));
    report.ack.unwrap().committed();
    completing.await.unwrap().unwrap();
    let again = queues.complete(&id, BTreeMap::new()).await.unwrap_err();
    assert!(
        again.to_string().contains(
            "it was already completed by the worker of the lease adopted from the run's previous owner"
        ),
        "{again}"
    );
    // Nothing was queued along the way.
    assert!(
        queues
            .poll(poll_request("q", 10, Duration::ZERO))
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_adopted_attempt_goes_back_on_its_queue_as_the_same_attempt() {
    let (queues, run, mut reports) = adopted(vec![attempt(0, "q", "a")]);
    let adopted_at = Instant::now();
    // A worker waits on the queue; it gets the attempt one heartbeat timeout (10 s) after the
    // adoption, under the same lease id, with no failure reported to the run.
    let lease = queues
        .poll(poll_request("q", 10, Duration::from_secs(60)))
        .await
        .remove(0);
    assert_eq!(adopted_at.elapsed(), Duration::from_secs(10));
    assert_eq!(lease.lease_id, lease_id(&run, 0));
    assert_eq!((lease.task_id.as_str(), lease.attempt), ("t0", 1));
    assert_eq!(lease.input, serde_json::json!({ "n": 0 }));
    assert!(reports.try_recv().is_err());
    // From then on it is an ordinary lease: silence fails it for its heartbeat timeout.
    let report = reports.recv().await.unwrap();
    assert_eq!(adopted_at.elapsed(), Duration::from_secs(20));
    assert!(matches!(
        &report.outcome,
        AttemptOutcome::Failed { error_type: Some(t), error, .. }
            if t == HEARTBEAT_TIMEOUT && error.starts_with("worker `w1` stopped heartbeating")
    ));
}

#[tokio::test(start_paused = true)]
async fn a_late_call_of_the_first_worker_takes_the_requeued_attempt_back() {
    let (queues, run, mut reports) = adopted(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    tokio::time::sleep(Duration::from_secs(11)).await;
    // Both went back on the queue; the worker of task 0 calls now, the one of task 1 fails it.
    let reply = queues
        .heartbeat(&lease_id(&run, 0), String::new())
        .await
        .unwrap();
    assert!(!reply.cancel_requested);
    let failing = tokio::spawn({
        let queues = queues.clone();
        let id = lease_id(&run, 1);
        async move { queues.fail(&id, "bad row".into(), true, None).await }
    });
    let report = reports.recv().await.unwrap();
    assert_eq!(report.task, 1);
    assert!(matches!(&report.outcome, AttemptOutcome::Failed { error, .. } if error == "bad row"));
    report.ack.unwrap().committed();
    failing.await.unwrap().unwrap();
    // Neither is left on the queue.
    assert!(
        queues
            .poll(poll_request("q", 10, Duration::ZERO))
            .await
            .is_empty()
    );
    // Task 0's worker holds it again, confirmed: if it goes quiet now, that is a heartbeat
    // timeout like any other.
    let quiet = Instant::now();
    let report = reports.recv().await.unwrap();
    assert_eq!(quiet.elapsed(), Duration::from_secs(10));
    let AttemptOutcome::Failed { error, .. } = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!(
        error,
        "the worker of the lease adopted from the run's previous owner stopped heartbeating: \
         no heartbeat for 10.0 s (heartbeat_timeout is 10s)"
    );
    let state = queues.handle.shared.lock();
    assert_eq!(state.attempt_count(), 0);
    assert_eq!(state.queue_count(), 0, "empty queues are forgotten");
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_of_an_adopted_attempt_counts_from_the_adoption() {
    let mut slow = attempt(0, "q", "a");
    slow.timeout = Some(Duration::from_secs(25));
    let (queues, run, mut reports) = adopted(vec![slow]);
    let adopted_at = Instant::now();
    let heartbeats = tokio::spawn({
        let queues = queues.clone();
        let id = lease_id(&run, 0);
        async move {
            while queues.heartbeat(&id, String::new()).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    });
    let report = reports.recv().await.unwrap();
    assert_eq!(adopted_at.elapsed(), Duration::from_secs(25));
    assert_eq!(
        report.outcome,
        AttemptOutcome::TimedOut { timeout_ms: 25_000 }
    );
    heartbeats.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn cancelling_an_adopted_attempt_asks_its_worker_and_ends_cancelled() {
    let (queues, run, mut reports) = adopted(vec![attempt(0, "q", "a"), attempt(1, "q", "a")]);
    run.cancel(0, 1);
    let reply = queues
        .heartbeat(&lease_id(&run, 0), String::new())
        .await
        .unwrap();
    assert!(reply.cancel_requested);
    let completing = tokio::spawn({
        let queues = queues.clone();
        let id = lease_id(&run, 0);
        async move { queues.complete(&id, BTreeMap::new()).await }
    });
    assert_eq!(commit_next(&mut reports).await, AttemptOutcome::Cancelled);
    completing.await.unwrap().unwrap();
    // A silent adopted attempt that is cancelled ends cancelled at its deadline; it does not go
    // back on the queue.
    run.cancel(1, 1);
    let cancelled = Instant::now();
    let report = reports.recv().await.unwrap();
    assert_eq!(
        (report.task, report.outcome),
        (1, AttemptOutcome::Cancelled)
    );
    assert_eq!(cancelled.elapsed(), Duration::from_secs(10));
    assert!(
        queues
            .poll(poll_request("q", 10, Duration::ZERO))
            .await
            .is_empty()
    );
    // Once back on the queue, an adopted attempt is cancelled at once, like a queued one.
    let (queues, run, mut reports) = adopted(vec![attempt(0, "q", "a")]);
    tokio::time::sleep(Duration::from_secs(11)).await;
    run.cancel(0, 1);
    let report = reports.try_recv().unwrap();
    assert_eq!(report.outcome, AttemptOutcome::Cancelled);
    assert!(
        queues
            .poll(poll_request("q", 10, Duration::ZERO))
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn calls_before_the_adoption_are_told_to_retry() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, mut reports) = queues.attach_resumed_run(RunId::new(), "wf");
    let id = lease_id(&run, 0);
    // The resuming driver has not committed yet: the worker is told to retry, not that its
    // lease is unknown (which would make it give the attempt up).
    let error = queues.heartbeat(&id, String::new()).await.unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::Unavailable);
    assert!(error.to_string().contains("being resumed"), "{error}");
    let error = queues.complete(&id, BTreeMap::new()).await.unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::Unavailable);
    // An unknown run is not being resumed here.
    let other = format!("{}:0:1", RunId::new());
    let error = queues.heartbeat(&other, String::new()).await.unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::NotFound);
    // After the adoption, the adopted attempt is accepted and any other is unknown.
    run.adopt(vec![attempt(0, "q", "a")]);
    queues.heartbeat(&id, String::new()).await.unwrap();
    let error = queues
        .heartbeat(&lease_id(&run, 1), String::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::NotFound);
    // Adopting an attempt that is already leased changes nothing.
    run.adopt(vec![attempt(0, "q", "a")]);
    assert_eq!(queues.handle.shared.lock().attempt_count(), 1);
    assert!(reports.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn an_empty_adoption_ends_the_window() {
    let queues = TaskQueues::new(RemoteConfig::default());
    let (run, _reports) = queues.attach_resumed_run(RunId::new(), "wf");
    run.adopt(Vec::new());
    let error = queues
        .heartbeat(&lease_id(&run, 0), String::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RemoteErrorKind::NotFound);
}
