//! Tests of the scheduler: feed inputs, assert the recorded events and the actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tandem_dsl::{
    InputValue, Jitter, RetryPolicy, Segment, TaskAction, TaskIndex, TaskSpec, Template,
    TriggerRule, WorkflowSpec,
};

use super::*;
use crate::checkpoint::{AttemptOutcome, Event, RunEnd, RunId, TaskEnd};

mod worker;

/// A task for [`workflow`]: id, needs, trigger rule, shell command (None = empty task, unless
/// `worker` is set), worker input (Some = a worker task on queue `q`, type `t`).
struct T {
    id: &'static str,
    needs: Vec<&'static str>,
    rule: TriggerRule,
    run: Option<Template>,
    worker: Option<InputValue>,
    retry: RetryPolicy,
}

fn shell(id: &'static str, needs: &[&'static str]) -> T {
    T {
        id,
        needs: needs.to_vec(),
        rule: TriggerRule::AllSuccess,
        run: Some(Template::literal(format!("run {id}"))),
        worker: None,
        retry: RetryPolicy::default(),
    }
}

fn worker(id: &'static str, needs: &[&'static str], input: InputValue) -> T {
    T {
        run: None,
        worker: Some(input),
        ..shell(id, needs)
    }
}

fn empty(id: &'static str, needs: &[&'static str]) -> T {
    T {
        run: None,
        ..shell(id, needs)
    }
}

impl T {
    fn rule(mut self, rule: TriggerRule) -> T {
        self.rule = rule;
        self
    }
    fn retry(mut self, retry: RetryPolicy) -> T {
        self.retry = retry;
        self
    }
    fn run(mut self, run: Template) -> T {
        self.run = Some(run);
        self
    }
}

fn workflow(tasks: Vec<T>) -> Arc<WorkflowSpec> {
    let index = |id: &str| tasks.iter().position(|t| t.id == id).unwrap() as TaskIndex;
    let mut specs: Vec<TaskSpec> = tasks
        .iter()
        .map(|t| {
            let mut upstream: Vec<TaskIndex> = t.needs.iter().map(|n| index(n)).collect();
            upstream.sort();
            TaskSpec {
                id: t.id.to_string(),
                key: t.id.to_string(),
                description: None,
                matrix: Vec::new(),
                upstream,
                downstream: Vec::new(),
                trigger_rule: t.rule,
                action: match (&t.run, &t.worker) {
                    (_, Some(input)) => TaskAction::Worker {
                        queue: "q".into(),
                        task_type: "t".into(),
                        input: input.clone(),
                        heartbeat_timeout: Duration::from_secs(7),
                    },
                    (Some(run), None) => TaskAction::Shell {
                        run: run.clone(),
                        working_dir: None,
                    },
                    (None, None) => TaskAction::Empty,
                },
                env: Vec::new(),
                retry: t.retry.clone(),
                timeout: None,
            }
        })
        .collect();
    for i in 0..specs.len() {
        for up in specs[i].upstream.clone() {
            specs[up as usize].downstream.push(i as TaskIndex);
        }
    }
    Arc::new(WorkflowSpec {
        name: "test".into(),
        description: None,
        version: "v".into(),
        params: Default::default(),
        deadline: None,
        schedule: None,
        tasks: specs,
    })
}

fn machine(spec: Arc<WorkflowSpec>, parallelism: usize) -> RunMachine {
    let state = RunState::new(
        RunId::new(),
        spec,
        "/tmp/wf.yaml".into(),
        BTreeMap::new(),
        0,
    );
    RunMachine::new(state, parallelism).with_seed(7)
}

fn step(machine: &mut RunMachine, input: Input, now: i64) -> Step {
    let mut step = Step::default();
    machine.handle(input, now, &mut step);
    step
}

fn dispatched(step: &Step) -> Vec<(String, u32)> {
    step.actions
        .iter()
        .filter_map(|action| match action {
            Action::Dispatch(d) => Some((d.task_id.clone(), d.attempt)),
            _ => None,
        })
        .collect()
}

fn finish(task: TaskIndex, attempt: u32, outcome: AttemptOutcome) -> Input {
    Input::AttemptFinished {
        task,
        attempt,
        outcome,
    }
}

fn ok() -> AttemptOutcome {
    AttemptOutcome::Succeeded {
        outputs: BTreeMap::new(),
    }
}

fn failed(code: i32) -> AttemptOutcome {
    AttemptOutcome::Failed {
        exit_code: Some(code),
        signal: None,
        error: format!("exited with code {code}"),
        retryable: true,
        error_type: None,
    }
}

fn failed_with_type(error_type: &str, retryable: bool) -> AttemptOutcome {
    AttemptOutcome::Failed {
        exit_code: None,
        signal: None,
        error: "bad table".into(),
        retryable,
        error_type: Some(error_type.into()),
    }
}

fn status(machine: &RunMachine, id: &str) -> &'static str {
    let index = machine.state().spec.task_index(id).unwrap();
    machine.state().task(index).status.as_str()
}

fn run_end(machine: &RunMachine) -> Option<RunEnd> {
    match &machine.state().phase {
        RunPhase::Finished { end, .. } => Some(*end),
        _ => None,
    }
}

#[test]
fn a_fan_out_of_empty_tasks_finishes_in_one_step_without_dispatching() {
    let mut tasks = vec![empty("root", &[])];
    let names: Vec<&'static str> = (0..1000)
        .map(|i| &*Box::leak(format!("t{i}").into_boxed_str()))
        .collect();
    for name in &names {
        tasks.push(empty(name, &["root"]));
    }
    tasks.push(empty("join", &names));
    let mut machine = machine(workflow(tasks), 2);
    let step = step(&mut machine, Input::Start, 5);
    assert!(dispatched(&step).is_empty());
    // Two events per task (started, finished) and the run's end.
    assert_eq!(step.events.len(), 2 * 1002 + 1);
    assert_eq!(run_end(&machine), Some(RunEnd::Succeeded));
    assert!(
        matches!(step.events.last(), Some(Event::RunFinished { reason, .. }) if reason == "1002 succeeded")
    );
}

#[test]
fn attempt_start_is_recorded_in_the_step_that_dispatches_it() {
    let mut machine = machine(workflow(vec![shell("a", &[]), shell("b", &["a"])]), 4);
    let first = step(&mut machine, Input::Start, 1);
    assert_eq!(dispatched(&first), vec![("a".to_string(), 1)]);
    assert_eq!(
        first.events,
        vec![Event::AttemptStarted {
            task: 0,
            attempt: 1,
            at: 1
        }]
    );
    let second = step(&mut machine, finish(0, 1, ok()), 2);
    assert_eq!(dispatched(&second), vec![("b".to_string(), 1)]);
    let third = step(&mut machine, finish(1, 1, ok()), 3);
    assert_eq!(run_end(&machine), Some(RunEnd::Succeeded));
    assert!(dispatched(&third).is_empty());
}

#[test]
fn parallelism_bounds_running_shell_attempts_but_not_empty_tasks() {
    let mut tasks: Vec<T> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| shell(id, &[]))
        .collect();
    tasks.push(empty("z", &[]));
    let mut machine = machine(workflow(tasks), 2);
    let first = step(&mut machine, Input::Start, 0);
    assert_eq!(dispatched(&first).len(), 2);
    assert_eq!(status(&machine, "z"), "succeeded");
    assert_eq!(machine.state().counts.running, 2);
    let next = step(&mut machine, finish(0, 1, ok()), 1);
    assert_eq!(dispatched(&next), vec![("c".to_string(), 1)]);
    assert_eq!(machine.state().counts.running, 2);
}

#[test]
fn failed_attempts_are_retried_with_capped_backoff_then_fail_the_task() {
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_interval: Duration::from_secs(2),
        backoff_coefficient: 3.0,
        max_interval: Duration::from_secs(5),
        jitter: Jitter::None,
        non_retryable_exit_codes: vec![],
        non_retryable_errors: vec![],
    };
    let mut machine = machine(workflow(vec![shell("a", &[]).retry(retry)]), 1);
    step(&mut machine, Input::Start, 0);
    let after_first = step(&mut machine, finish(0, 1, failed(1)), 1_000);
    assert!(after_first.actions.contains(&Action::ArmRetry {
        task: 0,
        attempt: 2,
        due: 3_000
    }));
    assert_eq!(status(&machine, "a"), "waiting_retry");
    let due = step(
        &mut machine,
        Input::RetryDue {
            task: 0,
            attempt: 2,
        },
        3_000,
    );
    assert_eq!(dispatched(&due), vec![("a".to_string(), 2)]);
    let after_second = step(&mut machine, finish(0, 2, failed(1)), 4_000);
    // 2 s * 3 = 6 s, capped at 5 s.
    assert!(after_second.actions.contains(&Action::ArmRetry {
        task: 0,
        attempt: 3,
        due: 9_000
    }));
    step(
        &mut machine,
        Input::RetryDue {
            task: 0,
            attempt: 3,
        },
        9_000,
    );
    let last = step(&mut machine, finish(0, 3, failed(1)), 9_500);
    assert_eq!(status(&machine, "a"), "failed");
    assert_eq!(run_end(&machine), Some(RunEnd::Failed));
    assert!(last.events.iter().any(|event| matches!(event,
        Event::TaskFinished { reason, state: TaskEnd::Failed, .. }
            if reason == "attempt 3 of 3: exited with code 1; no attempt left")));
}

#[test]
fn full_jitter_keeps_the_delay_within_the_backoff() {
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_interval: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    for seed in 0..50 {
        let mut machine =
            machine(workflow(vec![shell("a", &[]).retry(retry.clone())]), 1).with_seed(seed);
        step(&mut machine, Input::Start, 0);
        let after = step(&mut machine, finish(0, 1, failed(1)), 1_000);
        let due = after
            .actions
            .iter()
            .find_map(|action| match action {
                Action::ArmRetry { due, .. } => Some(*due),
                _ => None,
            })
            .unwrap();
        assert!((1_000..=11_000).contains(&due), "seed {seed}: due {due}");
    }
}

#[test]
fn a_stale_retry_timer_does_not_dispatch() {
    let retry = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let mut machine = machine(workflow(vec![shell("a", &[]).retry(retry)]), 1);
    step(&mut machine, Input::Start, 0);
    let stale = step(
        &mut machine,
        Input::RetryDue {
            task: 0,
            attempt: 2,
        },
        1,
    );
    assert!(stale.is_empty());
}

#[test]
fn non_retryable_exit_codes_fail_at_once() {
    let retry = RetryPolicy {
        max_attempts: 5,
        non_retryable_exit_codes: vec![3],
        ..RetryPolicy::default()
    };
    let mut machine = machine(workflow(vec![shell("a", &[]).retry(retry)]), 1);
    step(&mut machine, Input::Start, 0);
    let after = step(&mut machine, finish(0, 1, failed(3)), 1);
    assert_eq!(status(&machine, "a"), "failed");
    assert!(
        !after
            .actions
            .iter()
            .any(|a| matches!(a, Action::ArmRetry { .. }))
    );
    assert!(after.events.iter().any(|event| matches!(event,
        Event::TaskFinished { reason, .. }
            if reason == "attempt 1: exited with code 3 (non-retryable exit code)")));
}

#[test]
fn timeouts_and_interruptions_are_retryable() {
    let retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let mut machine = machine(workflow(vec![shell("a", &[]).retry(retry)]), 1);
    step(&mut machine, Input::Start, 0);
    step(
        &mut machine,
        finish(0, 1, AttemptOutcome::TimedOut { timeout_ms: 10 }),
        1,
    );
    assert_eq!(status(&machine, "a"), "waiting_retry");
}

/// Every trigger rule, downstream of one failing and one succeeding task.
#[test]
fn trigger_rules_and_skip_propagation() {
    let mut machine = machine(
        workflow(vec![
            shell("bad", &[]),
            shell("good", &[]),
            shell("all_success", &["bad", "good"]),
            shell("after_upstream_failed", &["all_success"]),
            shell("all_done", &["bad", "good"]).rule(TriggerRule::AllDone),
            shell("all_failed", &["bad"]).rule(TriggerRule::AllFailed),
            shell("all_failed_mixed", &["bad", "good"]).rule(TriggerRule::AllFailed),
            shell("skipped_downstream", &["all_failed_mixed"]),
            shell("none_failed_after_skip", &["all_failed_mixed", "good"])
                .rule(TriggerRule::NoneFailed),
            shell("one_success", &["bad", "good"]).rule(TriggerRule::OneSuccess),
            shell("one_failed", &["bad", "good"]).rule(TriggerRule::OneFailed),
            shell("one_failed_none", &["good"]).rule(TriggerRule::OneFailed),
            shell("none_failed", &["bad", "good"]).rule(TriggerRule::NoneFailed),
        ]),
        100,
    );
    step(&mut machine, Input::Start, 0);
    let good = machine.state().spec.task_index("good").unwrap();
    let bad = machine.state().spec.task_index("bad").unwrap();
    let after_good = step(&mut machine, finish(good, 1, ok()), 1);
    assert!(dispatched(&after_good).contains(&("one_success".to_string(), 1)));
    step(&mut machine, finish(bad, 1, failed(1)), 2);
    let expect = [
        ("all_success", "upstream_failed"),
        ("after_upstream_failed", "upstream_failed"),
        ("all_done", "running"),
        ("all_failed", "running"),
        ("all_failed_mixed", "skipped"),
        ("skipped_downstream", "skipped"),
        ("none_failed_after_skip", "running"),
        ("one_success", "running"),
        ("one_failed", "running"),
        ("one_failed_none", "skipped"),
        ("none_failed", "upstream_failed"),
    ];
    for (id, want) in expect {
        assert_eq!(status(&machine, id), want, "task {id}");
    }
    let index = machine
        .state()
        .spec
        .task_index("skipped_downstream")
        .unwrap();
    assert_eq!(
        machine.state().task(index).reason.as_deref(),
        Some("trigger rule all_success: upstream task `all_failed_mixed` was skipped")
    );
}

#[test]
fn outputs_flow_into_downstream_templates() {
    let template = Template {
        segments: vec![
            Segment::Text("cat ".into()),
            Segment::TaskOutput {
                task: 0,
                key: "path".into(),
            },
        ],
    };
    let mut machine = machine(
        workflow(vec![shell("a", &[]), shell("b", &["a"]).run(template)]),
        2,
    );
    step(&mut machine, Input::Start, 0);
    let outputs = BTreeMap::from([("path".to_string(), "/data/x.csv".to_string())]);
    let next = step(
        &mut machine,
        finish(0, 1, AttemptOutcome::Succeeded { outputs }),
        1,
    );
    let Some(Action::Dispatch(dispatch)) = next.actions.first() else {
        panic!("expected a dispatch, got {:?}", next.actions);
    };
    let DispatchKind::Shell { command, .. } = &dispatch.kind else {
        panic!("expected a shell dispatch, got {dispatch:?}");
    };
    assert_eq!(command, "cat /data/x.csv");
}

#[test]
fn a_missing_output_fails_the_downstream_attempt_without_retry() {
    let template = Template {
        segments: vec![Segment::TaskOutput {
            task: 0,
            key: "path".into(),
        }],
    };
    let retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let mut machine = machine(
        workflow(vec![
            shell("a", &[]),
            shell("b", &["a"]).run(template).retry(retry),
        ]),
        2,
    );
    step(&mut machine, Input::Start, 0);
    let next = step(&mut machine, finish(0, 1, ok()), 1);
    assert!(dispatched(&next).is_empty());
    assert_eq!(status(&machine, "b"), "failed");
    assert_eq!(run_end(&machine), Some(RunEnd::Failed));
}

#[test]
fn cancellation_stops_running_attempts_and_starts_nothing_new() {
    let mut machine = machine(
        workflow(vec![shell("a", &[]), shell("b", &[]), shell("c", &["a"])]),
        1,
    );
    step(&mut machine, Input::Start, 0);
    let cancel = step(
        &mut machine,
        Input::Cancel {
            reason: "cancelled by Ctrl-C".into(),
        },
        1,
    );
    assert_eq!(
        cancel.actions,
        vec![Action::CancelAttempt {
            task: 0,
            attempt: 1
        }]
    );
    assert_eq!(run_end(&machine), None);
    let done = step(&mut machine, finish(0, 1, AttemptOutcome::Cancelled), 2);
    assert!(dispatched(&done).is_empty());
    assert_eq!(run_end(&machine), Some(RunEnd::Cancelled));
    for id in ["a", "b", "c"] {
        assert_eq!(status(&machine, id), "cancelled", "{id}");
    }
}

#[test]
fn the_deadline_ends_the_run_timed_out() {
    let mut spec = (*workflow(vec![shell("a", &[])])).clone();
    spec.deadline = Some(Duration::from_secs(60));
    let mut machine = machine(Arc::new(spec), 1);
    let start = step(&mut machine, Input::Start, 0);
    assert!(start.actions.contains(&Action::ArmDeadline { due: 60_000 }));
    step(&mut machine, Input::DeadlinePassed, 60_000);
    step(
        &mut machine,
        finish(0, 1, AttemptOutcome::Cancelled),
        60_001,
    );
    assert_eq!(run_end(&machine), Some(RunEnd::TimedOut));
}

#[test]
fn recovery_interrupts_in_flight_attempts_and_never_reruns_successes() {
    let retry = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let spec = workflow(vec![
        shell("a", &[]),
        shell("b", &[]).retry(retry),
        shell("c", &[]),
        shell("d", &["a"]),
    ]);
    let mut first = machine(Arc::clone(&spec), 3);
    let mut log = step(&mut first, Input::Start, 0).events;
    log.extend(
        step(
            &mut first,
            Input::AttemptSpawned {
                task: 1,
                attempt: 1,
                pid: 4242,
                start_ticks: 99,
            },
            1,
        )
        .events,
    );
    log.extend(step(&mut first, finish(0, 1, ok()), 2).events);
    // The owner dies here. A new one rebuilds the state from the log and recovers.
    let mut state = RunState::new(
        first.state().run_id,
        spec,
        "/tmp/wf.yaml".into(),
        BTreeMap::new(),
        0,
    );
    for event in &log {
        state.apply(event);
    }
    let mut second = RunMachine::new(state, 3).with_seed(1);
    let recovered = step(
        &mut second,
        Input::Recover {
            owner: "pid 2".into(),
            same_host: true,
        },
        10,
    );
    assert_eq!(
        recovered.actions.first(),
        Some(&Action::KillLeftover {
            task: 1,
            attempt: 1,
            pid: 4242,
            start_ticks: 99
        })
    );
    // a succeeded before the crash: not run again. d (after a) was in flight: interrupted,
    // no retry left, failed. b gets its second attempt; c (no retry) fails.
    assert_eq!(status(&second, "a"), "succeeded");
    assert_eq!(status(&second, "b"), "waiting_retry");
    assert_eq!(status(&second, "c"), "failed");
    assert_eq!(status(&second, "d"), "failed");
    assert!(dispatched(&recovered).is_empty());
    assert!(recovered.events.iter().any(|event| matches!(
        event,
        Event::AttemptFinished {
            task: 1,
            attempt: 1,
            outcome: AttemptOutcome::Interrupted,
            ..
        }
    )));
}

#[test]
fn a_shell_attempt_of_an_owner_on_another_host_is_interrupted_without_a_kill() {
    let retry = RetryPolicy {
        max_attempts: 2,
        jitter: Jitter::None,
        ..RetryPolicy::default()
    };
    let spec = workflow(vec![shell("a", &[]).retry(retry)]);
    let mut first = machine(Arc::clone(&spec), 1);
    let mut log = step(&mut first, Input::Start, 0).events;
    let spawned = Input::AttemptSpawned {
        task: 0,
        attempt: 1,
        pid: 4242,
        start_ticks: 99,
    };
    log.extend(step(&mut first, spawned, 1).events);
    let mut state = RunState::new(
        first.state().run_id,
        spec,
        "/tmp/wf.yaml".into(),
        BTreeMap::new(),
        0,
    );
    for event in &log {
        state.apply(event);
    }
    let recover = |same_host| {
        let mut second = RunMachine::new(state.clone(), 1).with_seed(1);
        let recovered = step(
            &mut second,
            Input::Recover {
                owner: "pid 2 on h2".into(),
                same_host,
            },
            10,
        );
        (second, recovered)
    };
    // The pid was recorded on another host: it names nothing here, so nothing is killed.
    let (mut second, recovered) = recover(false);
    assert!(
        !recovered
            .actions
            .iter()
            .any(|action| matches!(action, Action::KillLeftover { .. })),
        "{:?}",
        recovered.actions
    );
    // The attempt counts as failed (interrupted) and is retried per its policy.
    assert!(recovered.events.iter().any(|event| matches!(
        event,
        Event::AttemptFinished {
            task: 0,
            attempt: 1,
            outcome: AttemptOutcome::Interrupted,
            ..
        }
    )));
    assert!(recovered.actions.contains(&Action::ArmRetry {
        task: 0,
        attempt: 2,
        due: 1_010
    }));
    let due = step(
        &mut second,
        Input::RetryDue {
            task: 0,
            attempt: 2,
        },
        1_010,
    );
    assert_eq!(dispatched(&due), [("a".to_string(), 2)]);
    // On the same host the same log gets the kill, before anything else.
    let (_, recovered) = recover(true);
    assert_eq!(
        recovered.actions.first(),
        Some(&Action::KillLeftover {
            task: 0,
            attempt: 1,
            pid: 4242,
            start_ticks: 99
        })
    );
}

/// A random task: its upstream among earlier tasks, its rule (index into
/// [`TriggerRule::ALL`]), its kind (0 empty, 1 shell, 2 worker), and its `max_attempts`.
type RandomTask = (Vec<usize>, usize, u8, u32);

/// A random DAG: for each task, its upstream among earlier tasks, its rule, and its kind;
/// plus a random outcome per attempt.
fn arbitrary_dag() -> impl Strategy<Value = (Vec<RandomTask>, Vec<bool>)> {
    (1usize..25).prop_flat_map(|n| {
        let tasks = (0..n)
            .map(|i| {
                (
                    proptest::collection::vec(0..i.max(1), 0..3.min(i + 1)),
                    0usize..6,
                    0u8..3,
                    1u32..4,
                )
                    .prop_map(move |(ups, rule, kind, attempts)| {
                        let ups = if i == 0 { vec![] } else { ups };
                        (ups, rule, kind, attempts)
                    })
            })
            .collect::<Vec<_>>();
        (tasks, proptest::collection::vec(any::<bool>(), 64))
    })
}

fn build(dag: &[RandomTask]) -> Arc<WorkflowSpec> {
    let names: Vec<&'static str> = (0..dag.len())
        .map(|i| &*Box::leak(format!("t{i}").into_boxed_str()))
        .collect();
    let tasks = dag
        .iter()
        .enumerate()
        .map(|(i, (ups, rule, kind, attempts))| {
            let mut needs: Vec<&'static str> = ups.iter().map(|&u| names[u]).collect();
            needs.sort();
            needs.dedup();
            let base = match kind {
                0 => empty(names[i], &needs),
                1 => shell(names[i], &needs),
                _ => worker(names[i], &needs, InputValue::Map(Vec::new())),
            };
            base.rule(TriggerRule::ALL[*rule].0).retry(RetryPolicy {
                max_attempts: *attempts,
                jitter: Jitter::None,
                non_retryable_errors: vec!["Fatal".into()],
                ..RetryPolicy::default()
            })
        })
        .collect();
    workflow(tasks)
}

/// Drives a run to its end, answering each dispatch with the next random outcome (a worker
/// failure has error type `Fatal` or `Other`) and firing retry timers at once. Returns every
/// event and dispatch, optionally stopping ("crashing") after `crash_after` steps. Checks
/// after every step that no more shell attempts run than `parallelism` allows.
fn drive(
    machine: &mut RunMachine,
    parallelism: usize,
    first: Input,
    outcomes: &[bool],
    crash_after: Option<usize>,
) -> (Vec<Event>, Vec<(TaskIndex, u32)>) {
    let mut events = Vec::new();
    let mut dispatches = Vec::new();
    let mut inputs = std::collections::VecDeque::from([first]);
    let mut steps = 0;
    let mut now = 0;
    while let Some(input) = inputs.pop_front() {
        if crash_after == Some(steps) {
            break;
        }
        steps += 1;
        now += 1;
        let result = step(machine, input, now);
        let shell_running = machine
            .state()
            .tasks
            .iter()
            .zip(&machine.state().spec.tasks)
            .filter(|(task, spec)| {
                matches!(task.status, TaskStatus::Running { .. })
                    && matches!(spec.action, TaskAction::Shell { .. })
            })
            .count();
        assert!(
            shell_running <= parallelism,
            "{shell_running} shell attempts running, parallelism {parallelism}"
        );
        events.extend(result.events);
        for action in result.actions {
            match action {
                Action::Dispatch(d) => {
                    dispatches.push((d.task, d.attempt));
                    let succeed = outcomes[dispatches.len() % outcomes.len()];
                    let failure = match d.kind {
                        DispatchKind::Worker { .. } => failed_with_type(
                            if dispatches.len() % 3 == 0 {
                                "Fatal"
                            } else {
                                "Other"
                            },
                            true,
                        ),
                        DispatchKind::Shell { .. } => failed(1),
                    };
                    inputs.push_back(finish(
                        d.task,
                        d.attempt,
                        if succeed { ok() } else { failure },
                    ));
                }
                Action::ArmRetry { task, attempt, .. } => {
                    inputs.push_back(Input::RetryDue { task, attempt })
                }
                Action::CancelAttempt { task, attempt } => {
                    inputs.push_back(finish(task, attempt, AttemptOutcome::Cancelled))
                }
                Action::Adopt(d) => {
                    // The adopted attempt's worker reports, like a dispatched one's.
                    let succeed = outcomes[(dispatches.len() + events.len()) % outcomes.len()];
                    let failure = failed_with_type("Other", true);
                    inputs.push_back(finish(
                        d.task,
                        d.attempt,
                        if succeed { ok() } else { failure },
                    ));
                }
                Action::ArmDeadline { .. } | Action::KillLeftover { .. } => {}
            }
        }
    }
    (events, dispatches)
}

proptest! {
    /// Whatever the DAG and outcomes: the run ends with every task final; every dispatched
    /// task had its trigger rule met; no task is dispatched after it succeeded; replaying the
    /// events rebuilds the same state.
    #[test]
    fn every_run_ends_and_replays_to_the_same_state((dag, outcomes) in arbitrary_dag(), parallelism in 1usize..4) {
        let spec = build(&dag);
        let mut machine = machine(Arc::clone(&spec), parallelism);
        let (events, dispatches) = drive(&mut machine, parallelism, Input::Start, &outcomes, None);
        prop_assert!(machine.state().is_finished());
        prop_assert_eq!(machine.state().counts.terminal(), spec.tasks.len());
        let mut seen = std::collections::HashSet::new();
        for (task, attempt) in &dispatches {
            prop_assert!(seen.insert((*task, *attempt)), "attempt dispatched twice");
            prop_assert!(*attempt <= spec.task(*task).retry.max_attempts);
        }
        let mut replayed = RunState::new(machine.state().run_id, Arc::clone(&spec), "/tmp/wf.yaml".into(), BTreeMap::new(), 0);
        for event in &events {
            replayed.apply(event);
        }
        prop_assert_eq!(&replayed.phase, &machine.state().phase);
        prop_assert_eq!(replayed.counts, machine.state().counts);
        for (a, b) in replayed.tasks.iter().zip(&machine.state().tasks) {
            prop_assert_eq!(a.status, b.status);
            prop_assert_eq!(&a.attempts, &b.attempts);
        }
        // With every attempt succeeding, the run succeeds.
        if outcomes.iter().all(|&o| o) && dag.iter().all(|(_, rule, _, _)| *rule == 0) {
            prop_assert_eq!(run_end(&machine), Some(RunEnd::Succeeded));
        }
    }

    /// Crash after any number of steps, rebuild from the recorded events, recover: the run
    /// ends, and no task that had succeeded before the crash is dispatched again.
    #[test]
    fn recovery_after_a_crash_never_reruns_a_success((dag, outcomes) in arbitrary_dag(), crash_after in 0usize..40) {
        let spec = build(&dag);
        let mut first = machine(Arc::clone(&spec), 2);
        let (events, _) = drive(&mut first, 2, Input::Start, &outcomes, Some(crash_after));
        let mut state = RunState::new(first.state().run_id, Arc::clone(&spec), "/tmp/wf.yaml".into(), BTreeMap::new(), 0);
        for event in &events {
            state.apply(event);
        }
        if state.is_finished() {
            return Ok(());
        }
        let succeeded: Vec<TaskIndex> = (0..spec.tasks.len() as TaskIndex)
            .filter(|&t| state.task(t).status == TaskStatus::Succeeded)
            .collect();
        let mut second = RunMachine::new(state, 2).with_seed(3);
        let (_, dispatches) = drive(&mut second, 2, Input::Recover { owner: "test".into(), same_host: true }, &outcomes, None);
        prop_assert!(second.state().is_finished());
        for (task, _) in dispatches {
            prop_assert!(!succeeded.contains(&task), "task {} re-run after success", task);
        }
    }
}
