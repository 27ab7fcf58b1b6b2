//! Resuming a run after its driver died (a crash, a leader failover): the test "crashes" a
//! driver by dropping it, and resumes the run with a new driver and fresh [`TaskQueues`] (the
//! new leader's memory), as `tandem serve` does. Worker attempts in flight are adopted;
//! shell attempts in flight count as interrupted and follow their retry policy.

use tokio::time::Instant;

use super::remote::{attempt_ends, lease, outputs};
use super::*;
use crate::executor::remote::{Lease, PollRequest, RemoteConfig, RemoteErrorKind};

/// One worker task, heartbeat timeout 5 s, retried up to 3 times.
const LOAD: &str = r#"
name: adopt
tasks:
  load:
    worker: { queue: loaders, type: load_table }
    input: { table: users }
    heartbeat_timeout: 5s
    retry: { max_attempts: 3, initial_interval: 1s, jitter: none }
  report:
    needs: [load]
    run: "true"
"#;

/// Drops a driver mid-run: it stops where it is, as a killed process would (its last commit
/// is what the store has).
async fn crash(driving: Driving) {
    driving.abort();
    assert!(driving.await.unwrap_err().is_cancelled());
}

/// Starts [`LOAD`], has a worker lease its `load` attempt, and crashes the driver together
/// with its queues (the dead leader's memory); returns the run and the worker's lease.
async fn crash_holding_a_lease(fixture: &Fixture) -> (RunId, Lease) {
    let old_queues = TaskQueues::new(RemoteConfig::default());
    let (run_id, driving, _controls, _progress) = fixture
        .start_with(LOAD, fixture.remote_config(&old_queues))
        .await;
    let held = lease(&old_queues, "loaders", 1).await.remove(0);
    crash(driving).await;
    (run_id, held)
}

/// Resumes `run_id` as a new owner would, with `config`, in a task; returns once the new
/// driver has committed its `RunResumed` checkpoint (its first progress), as a new leader
/// does before it serves workers.
async fn resume(fixture: &Fixture, run_id: RunId, config: RunnerConfig) -> Driving {
    let prepared = resume_run(fixture.store.as_ref(), &current_owner(), run_id, false)
        .await
        .unwrap();
    let store = Arc::clone(&fixture.store);
    let (controls, control_rx) = mpsc::unbounded_channel();
    let (progress, mut progress_rx) = watch::channel(Progress::default());
    let driving = tokio::spawn(async move {
        let _controls = controls;
        drive(
            store,
            prepared,
            config,
            RunClock::start(),
            control_rx,
            progress,
        )
        .await
    });
    progress_rx
        .wait_for(|progress| progress.commits > 0)
        .await
        .unwrap();
    driving
}

/// Heartbeats `lease_id` as a worker does: "retry later" answers (the new driver has not
/// adopted the attempt yet) are retried after 50 ms.
async fn heartbeat(queues: &TaskQueues, lease_id: &str) {
    loop {
        match queues.heartbeat(lease_id, String::new()).await {
            Ok(reply) => {
                assert!(!reply.cancel_requested);
                return;
            }
            Err(error) if error.kind() == RemoteErrorKind::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("heartbeat refused: {error}"),
        }
    }
}

fn attempts_started(checkpoints: &[Checkpoint], wanted: u32) -> Vec<u32> {
    checkpoints
        .iter()
        .filter_map(|checkpoint| match checkpoint.event {
            Event::AttemptStarted { task, attempt, .. } if task == wanted => Some(attempt),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_live_worker_continues_its_attempt_under_the_new_driver() {
    let fixture = Fixture::new();
    let (run_id, held) = crash_holding_a_lease(&fixture).await;

    let queues = TaskQueues::new(RemoteConfig::default());
    let driving = resume(&fixture, run_id, fixture.remote_config(&queues)).await;
    // The worker finds the new driver and goes on heartbeating under its lease id, for longer
    // than the heartbeat timeout: the attempt stays with it.
    for _ in 0..4 {
        heartbeat(&queues, &held.lease_id).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let offered = queues
        .poll(PollRequest {
            queue: "loaders".into(),
            worker_id: "another-worker".into(),
            task_types: Vec::new(),
            max_tasks: 10,
            wait: Duration::ZERO,
        })
        .await;
    assert!(
        offered.is_empty(),
        "the adopted attempt must not be offered to another worker"
    );
    queues
        .complete(&held.lease_id, outputs(&[("rows", "42")]))
        .await
        .unwrap();
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Succeeded, "{}", finished.reason);
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert_eq!(attempts_started(&stored, 0), [1], "no second attempt");
    let ends = attempt_ends(&stored);
    assert!(
        matches!(
            &ends[0],
            (0, 1, AttemptOutcome::Succeeded { outputs }) if outputs["rows"] == "42"
        ),
        "{ends:?}"
    );
    assert!(
        stored
            .iter()
            .any(|checkpoint| matches!(checkpoint.event, Event::RunResumed { .. }))
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_silent_worker_attempt_goes_back_on_its_queue_as_the_same_attempt() {
    let fixture = Fixture::new();
    let (run_id, held) = crash_holding_a_lease(&fixture).await;

    let queues = TaskQueues::new(RemoteConfig::default());
    let resumed = Instant::now();
    let driving = resume(&fixture, run_id, fixture.remote_config(&queues)).await;
    // The worker died with the old leader: nobody calls. One heartbeat timeout later another
    // worker's poll gets the same attempt, under the same lease id.
    let again = lease(&queues, "loaders", 1).await.remove(0);
    let waited = resumed.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_millis(5_500),
        "{waited:?}"
    );
    assert_eq!(again.lease_id, held.lease_id);
    assert_eq!((again.task_id.as_str(), again.attempt), ("load", 1));
    assert_eq!(again.input, held.input);
    // No failure was recorded and no attempt consumed.
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert!(attempt_ends(&stored).is_empty(), "{stored:?}");
    queues
        .complete(&again.lease_id, outputs(&[("rows", "7")]))
        .await
        .unwrap();
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Succeeded, "{}", finished.reason);
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert_eq!(attempts_started(&stored, 0), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_attempt_in_flight_is_interrupted_and_retried() {
    let fixture = Fixture::new();
    let yaml = "name: shell\ntasks:\n  slow:\n    run: 'test \"$TANDEM_ATTEMPT\" -ge 2 || sleep 30'\n    retry: { max_attempts: 2, initial_interval: 100ms, jitter: none }\n";
    let (run_id, driving, _controls, _progress) = fixture.start(yaml).await;
    let pid = loop {
        let stored = fixture.store.read_run(run_id).await.unwrap();
        if let Some(pid) = stored.iter().find_map(|checkpoint| match checkpoint.event {
            Event::AttemptSpawned { pid, .. } => Some(pid),
            _ => None,
        }) {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    crash(driving).await;

    let driving = resume(&fixture, run_id, fixture.config(1)).await;
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Succeeded, "{}", finished.reason);
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert_eq!(
        attempt_ends(&stored)
            .into_iter()
            .map(|(task, attempt, outcome)| (task, attempt, outcome.is_success()))
            .collect::<Vec<_>>(),
        [(0, 1, false), (0, 2, true)]
    );
    assert!(matches!(
        attempt_ends(&stored)[0].2,
        AttemptOutcome::Interrupted
    ));
    let left = crate::executor::process::live_group_members(pid).unwrap();
    assert!(left.is_empty(), "attempt 1's processes survived: {left:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn resume_says_whether_the_previous_owner_ran_on_this_host() {
    let fixture = Fixture::new();
    let clock = RunClock::start();
    let here = fixture
        .create("name: a\ntasks:\n  a:\n    run: 'true'\n", &clock)
        .await;
    let elsewhere = fixture
        .create("name: b\ntasks:\n  b:\n    run: 'true'\n", &clock)
        .await;
    let other_host = Owner {
        host: "another-host.invalid".into(),
        pid: 1,
        start_ticks: 1,
    };
    fixture
        .store
        .claim_run(elsewhere.run_id, &other_host)
        .await
        .unwrap();
    let me = current_owner();
    let same_host = |prepared: &Prepared| match &prepared.first {
        Input::Recover { owner, same_host } => {
            assert_eq!(owner, &me.to_string());
            *same_host
        }
        other => panic!("{other:?}"),
    };
    let prepared = resume_run(fixture.store.as_ref(), &me, here.run_id, false)
        .await
        .unwrap();
    assert!(same_host(&prepared));
    // An owner on another host is assumed alive: taking over needs force.
    let prepared = resume_run(fixture.store.as_ref(), &me, elsewhere.run_id, true)
        .await
        .unwrap();
    assert!(!same_host(&prepared));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_adopted_attempt_of_a_cancelled_run_is_asked_to_stop() {
    let fixture = Fixture::new();
    let old_queues = TaskQueues::new(RemoteConfig::default());
    let (run_id, driving, controls, _progress) = fixture
        .start_with(LOAD, fixture.remote_config(&old_queues))
        .await;
    let held = lease(&old_queues, "loaders", 1).await.remove(0);
    controls
        .send(Control::Cancel {
            reason: "cancelled by test".into(),
        })
        .unwrap();
    // The cancellation is committed, then the driver dies before the worker hears of it.
    loop {
        let stored = fixture.store.read_run(run_id).await.unwrap();
        if stored
            .iter()
            .any(|checkpoint| matches!(checkpoint.event, Event::CancelRequested { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    crash(driving).await;
    drop(old_queues);

    let queues = TaskQueues::new(RemoteConfig::default());
    let driving = resume(&fixture, run_id, fixture.remote_config(&queues)).await;
    // The new driver asks the adopted attempt to stop through its next heartbeat reply.
    loop {
        match queues.heartbeat(&held.lease_id, String::new()).await {
            Ok(reply) if reply.cancel_requested => break,
            Ok(_) => {}
            Err(error) if error.kind() == RemoteErrorKind::Unavailable => {}
            Err(error) => panic!("heartbeat refused: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    queues
        .fail(&held.lease_id, "stopped on request".into(), true, None)
        .await
        .unwrap();
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Cancelled);
    let stored = fixture.store.read_run(run_id).await.unwrap();
    assert_eq!(attempt_ends(&stored), [(0, 1, AttemptOutcome::Cancelled)]);
}
