//! Worker tasks in the scheduler: the rendered `input:` of a worker dispatch, slots, and
//! non-retryable error types.

use serde_json::json;

use super::*;

/// `{ table: "t_${{ params.day }}", path: ${{ tasks.a.outputs.path }}, n: 3, nested: [true,
/// null, "${{ run.id }}"] }`.
fn input() -> InputValue {
    InputValue::Map(vec![
        (
            "table".into(),
            InputValue::String(Template {
                segments: vec![Segment::Text("t_".into()), Segment::Param("day".into())],
            }),
        ),
        (
            "path".into(),
            InputValue::String(Template {
                segments: vec![Segment::TaskOutput {
                    task: 0,
                    key: "path".into(),
                }],
            }),
        ),
        ("n".into(), InputValue::Number(3.into())),
        (
            "nested".into(),
            InputValue::List(vec![
                InputValue::Bool(true),
                InputValue::Null,
                InputValue::String(Template {
                    segments: vec![Segment::RunId],
                }),
            ]),
        ),
    ])
}

fn machine_with_params(spec: Arc<WorkflowSpec>, parallelism: usize) -> RunMachine {
    let state = RunState::new(
        RunId::new(),
        spec,
        "/tmp/wf.yaml".into(),
        BTreeMap::from([("day".to_string(), "2024-01-01".to_string())]),
        0,
    );
    RunMachine::new(state, parallelism).with_seed(7)
}

fn dispatches(step: &Step) -> Vec<&Dispatch> {
    step.actions
        .iter()
        .filter_map(|action| match action {
            Action::Dispatch(dispatch) => Some(dispatch),
            _ => None,
        })
        .collect()
}

#[test]
fn a_worker_dispatch_carries_the_rendered_input() {
    let mut machine = machine_with_params(
        workflow(vec![shell("a", &[]), worker("load", &["a"], input())]),
        1,
    );
    step(&mut machine, Input::Start, 0);
    let outputs = BTreeMap::from([("path".to_string(), "/data/x.csv".to_string())]);
    let next = step(
        &mut machine,
        finish(0, 1, AttemptOutcome::Succeeded { outputs }),
        1,
    );
    let run_id = machine.state().run_id.to_string();
    assert_eq!(
        dispatches(&next),
        [&Dispatch {
            task: 1,
            task_id: "load".into(),
            attempt: 1,
            kind: DispatchKind::Worker {
                queue: "q".into(),
                task_type: "t".into(),
                input: json!({
                    "table": "t_2024-01-01",
                    "path": "/data/x.csv",
                    "n": 3,
                    "nested": [true, null, run_id],
                }),
                heartbeat_timeout: Duration::from_secs(7),
            },
            timeout: None,
        }]
    );
    let done = step(&mut machine, finish(1, 1, ok()), 2);
    assert!(dispatches(&done).is_empty());
    assert_eq!(run_end(&machine), Some(RunEnd::Succeeded));
}

#[test]
fn a_worker_input_missing_an_output_fails_without_retry_or_dispatch() {
    let retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let mut machine = machine_with_params(
        workflow(vec![
            shell("a", &[]),
            worker("load", &["a"], input()).retry(retry),
        ]),
        1,
    );
    step(&mut machine, Input::Start, 0);
    let next = step(&mut machine, finish(0, 1, ok()), 1);
    assert!(dispatches(&next).is_empty());
    assert_eq!(status(&machine, "load"), "failed");
    let reason = machine.state().task(1).reason.clone().unwrap_or_default();
    assert!(
        reason.contains("`${{ tasks.a.outputs.path }}` has no value"),
        "{reason}"
    );
}

#[test]
fn worker_tasks_take_no_parallelism_slot() {
    let empty_input = InputValue::Map(Vec::new());
    let mut tasks = vec![shell("s1", &[]), shell("s2", &[])];
    for id in ["w1", "w2", "w3"] {
        tasks.push(worker(id, &[], empty_input.clone()));
    }
    let mut machine = machine(workflow(tasks), 1);
    let first = step(&mut machine, Input::Start, 0);
    assert_eq!(
        dispatched(&first),
        [
            ("w1".to_string(), 1),
            ("w2".to_string(), 1),
            ("w3".to_string(), 1),
            ("s1".to_string(), 1)
        ]
    );
    assert_eq!(machine.state().counts.running, 4);
    // A finished worker attempt frees no slot: s2 waits for s1.
    let after_worker = step(&mut machine, finish(2, 1, ok()), 1);
    assert!(dispatched(&after_worker).is_empty());
    let after_shell = step(&mut machine, finish(0, 1, ok()), 2);
    assert_eq!(dispatched(&after_shell), [("s2".to_string(), 1)]);
}

#[test]
fn a_worker_retry_starts_when_due_even_with_every_slot_taken() {
    let retry = RetryPolicy {
        max_attempts: 2,
        jitter: Jitter::None,
        ..RetryPolicy::default()
    };
    let mut machine = machine(
        workflow(vec![
            shell("s", &[]),
            worker("w", &[], InputValue::Map(Vec::new())).retry(retry),
        ]),
        1,
    );
    step(&mut machine, Input::Start, 0);
    let failure = step(
        &mut machine,
        finish(1, 1, failed_with_type("Transient", true)),
        1,
    );
    assert!(failure.actions.contains(&Action::ArmRetry {
        task: 1,
        attempt: 2,
        due: 1_001
    }));
    let due = step(
        &mut machine,
        Input::RetryDue {
            task: 1,
            attempt: 2,
        },
        1_001,
    );
    assert_eq!(dispatched(&due), [("w".to_string(), 2)]);
}

#[test]
fn non_retryable_error_types_fail_the_task_at_once() {
    let retry = RetryPolicy {
        max_attempts: 5,
        non_retryable_errors: vec!["Fatal".into()],
        ..RetryPolicy::default()
    };
    let tasks = vec![
        worker("fatal", &[], InputValue::Map(Vec::new())).retry(retry.clone()),
        worker("transient", &[], InputValue::Map(Vec::new())).retry(retry.clone()),
        worker("refused", &[], InputValue::Map(Vec::new())).retry(retry),
    ];
    let mut machine = machine(workflow(tasks), 1);
    step(&mut machine, Input::Start, 0);
    let fatal = step(
        &mut machine,
        finish(0, 1, failed_with_type("Fatal", true)),
        1,
    );
    assert_eq!(status(&machine, "fatal"), "failed");
    assert!(
        !fatal
            .actions
            .iter()
            .any(|action| matches!(action, Action::ArmRetry { .. }))
    );
    assert!(fatal.events.iter().any(|event| matches!(event,
        Event::TaskFinished { reason, state: TaskEnd::Failed, .. }
            if reason == "attempt 1: Fatal: bad table (non-retryable error type)")));
    // The recorded outcome says why, and keeps the type.
    assert!(fatal.events.iter().any(|event| matches!(event,
        Event::AttemptFinished { outcome: AttemptOutcome::Failed { retryable: false, error_type: Some(t), .. }, .. }
            if t == "Fatal")));
    // Types compare exactly: another type is retried.
    step(
        &mut machine,
        finish(1, 1, failed_with_type("fatal", true)),
        2,
    );
    assert_eq!(status(&machine, "transient"), "waiting_retry");
    // A worker's `retryable: false` ends the task whatever its type.
    step(
        &mut machine,
        finish(2, 1, failed_with_type("Transient", false)),
        3,
    );
    assert_eq!(status(&machine, "refused"), "failed");
}

/// Starts `spec` (with param `day`), applies `then` to the first machine, and rebuilds a
/// second machine from the events recorded so far (what a new owner reads from the store).
fn crash(spec: Arc<WorkflowSpec>, then: impl FnOnce(&mut RunMachine) -> Vec<Event>) -> RunMachine {
    let mut first = machine_with_params(Arc::clone(&spec), 1);
    let mut log = step(&mut first, Input::Start, 0).events;
    log.extend(then(&mut first));
    let mut state = RunState::new(
        first.state().run_id,
        spec,
        "/tmp/wf.yaml".into(),
        first.state().params.clone(),
        0,
    );
    for event in &log {
        state.apply(event);
    }
    RunMachine::new(state, 1).with_seed(1)
}

fn recover(machine: &mut RunMachine, now: i64) -> Step {
    step(
        machine,
        Input::Recover {
            owner: "pid 2 on h2".into(),
            same_host: false,
        },
        now,
    )
}

fn adopted(step: &Step) -> Vec<&Dispatch> {
    step.actions
        .iter()
        .filter_map(|action| match action {
            Action::Adopt(dispatch) => Some(dispatch),
            _ => None,
        })
        .collect()
}

#[test]
fn recovery_adopts_an_in_flight_worker_attempt_and_interrupts_a_shell_one() {
    let retry = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let spec = workflow(vec![
        shell("a", &[]),
        worker("w", &["a"], input()).retry(retry),
        shell("s", &[]),
    ]);
    let outputs = BTreeMap::from([("path".to_string(), "/data/x.csv".to_string())]);
    let mut second = crash(spec, |first| {
        step(
            first,
            finish(0, 1, AttemptOutcome::Succeeded { outputs }),
            1,
        )
        .events
    });
    let run_id = second.state().run_id.to_string();
    let recovered = recover(&mut second, 10);
    // The worker attempt is not finished: it stays running, and the adoption carries what
    // its dispatch carried, the input rendered again from the run's state.
    assert_eq!(status(&second, "w"), "running");
    assert_eq!(
        adopted(&recovered),
        [&Dispatch {
            task: 1,
            task_id: "w".into(),
            attempt: 1,
            kind: DispatchKind::Worker {
                queue: "q".into(),
                task_type: "t".into(),
                input: json!({
                    "table": "t_2024-01-01",
                    "path": "/data/x.csv",
                    "n": 3,
                    "nested": [true, null, run_id],
                }),
                heartbeat_timeout: Duration::from_secs(7),
            },
            timeout: None,
        }]
    );
    assert!(!recovered.events.iter().any(|event| matches!(
        event,
        Event::AttemptFinished { task: 1, .. } | Event::AttemptStarted { task: 1, .. }
    )));
    // The shell attempt in flight (no retry) was interrupted and failed.
    assert_eq!(status(&second, "s"), "failed");
    assert!(dispatches(&recovered).is_empty());
    // The adopted attempt's end is recorded as that of any attempt: no second attempt.
    let done = step(&mut second, finish(1, 1, ok()), 11);
    assert!(dispatches(&done).is_empty());
    assert_eq!(second.state().task(1).attempts.len(), 1);
    assert_eq!(status(&second, "w"), "succeeded");
    assert_eq!(run_end(&second), Some(RunEnd::Failed));
}

#[test]
fn an_adopted_attempt_follows_its_retry_policy_when_its_worker_fails() {
    let retry = RetryPolicy {
        max_attempts: 2,
        jitter: Jitter::None,
        ..RetryPolicy::default()
    };
    let spec = workflow(vec![
        worker("w", &[], InputValue::Map(Vec::new())).retry(retry),
    ]);
    let mut second = crash(spec, |_| Vec::new());
    let recovered = recover(&mut second, 10);
    assert_eq!(adopted(&recovered).len(), 1);
    let failure = step(
        &mut second,
        finish(0, 1, failed_with_type("Transient", true)),
        20,
    );
    assert!(failure.actions.contains(&Action::ArmRetry {
        task: 0,
        attempt: 2,
        due: 1_020
    }));
}

#[test]
fn an_adopted_attempt_of_a_cancelling_run_is_asked_to_stop() {
    let spec = workflow(vec![
        worker("w", &[], InputValue::Map(Vec::new())),
        shell("s", &["w"]),
    ]);
    let mut second = crash(spec, |first| {
        step(
            first,
            Input::Cancel {
                reason: "stop".into(),
            },
            1,
        )
        .events
    });
    let recovered = recover(&mut second, 10);
    let adopt = adopted(&recovered);
    assert_eq!(adopt.len(), 1);
    let position = |wanted: &Action| recovered.actions.iter().position(|a| a == wanted);
    let adopt_at = position(&Action::Adopt(adopt[0].clone())).unwrap();
    let cancel_at = position(&Action::CancelAttempt {
        task: 0,
        attempt: 1,
    })
    .expect("the adopted attempt is cancelled");
    assert!(adopt_at < cancel_at);
    step(&mut second, finish(0, 1, AttemptOutcome::Cancelled), 11);
    assert_eq!(run_end(&second), Some(RunEnd::Cancelled));
}
