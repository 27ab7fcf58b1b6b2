//! One event of every kind, and exhaustive variant counts that keep the round-trip test complete.

use std::collections::BTreeMap;

use crate::checkpoint::{AttemptOutcome, Event, RunEnd, TaskEnd};

/// One event of every variant but `run_created`, with every attempt outcome and task end.
pub(super) fn every_event_but_created() -> Vec<Event> {
    vec![
        Event::RunResumed {
            at: 1,
            owner: "pid 77 on höst-b".into(),
        },
        Event::AttemptStarted {
            task: 0,
            attempt: 1,
            at: 2,
        },
        Event::AttemptSpawned {
            task: 0,
            attempt: 1,
            pid: u32::MAX,
            start_ticks: u64::MAX,
        },
        Event::AttemptFinished {
            task: 0,
            attempt: 1,
            at: 3,
            outcome: AttemptOutcome::Failed {
                exit_code: Some(-1),
                signal: None,
                error: "exit code 255: \"boom\"\n".into(),
                retryable: true,
                error_type: None,
            },
        },
        Event::RetryScheduled {
            task: 0,
            attempt: 2,
            due: i64::MAX,
        },
        Event::AttemptFinished {
            task: 0,
            attempt: 2,
            at: 4,
            outcome: AttemptOutcome::Failed {
                exit_code: None,
                signal: Some(9),
                error: "killed by SIGKILL".into(),
                retryable: false,
                error_type: Some("Killed".into()),
            },
        },
        Event::AttemptFinished {
            task: 1,
            attempt: 1,
            at: 5,
            outcome: AttemptOutcome::Succeeded {
                outputs: BTreeMap::from([
                    ("rows".to_string(), "42".to_string()),
                    ("path".to_string(), "/tmp/ünï code".to_string()),
                ]),
            },
        },
        Event::AttemptFinished {
            task: 2,
            attempt: 1,
            at: 6,
            outcome: AttemptOutcome::Succeeded {
                outputs: BTreeMap::new(),
            },
        },
        Event::AttemptFinished {
            task: 3,
            attempt: 1,
            at: 7,
            outcome: AttemptOutcome::TimedOut { timeout_ms: 30_000 },
        },
        Event::AttemptFinished {
            task: 4,
            attempt: 1,
            at: 8,
            outcome: AttemptOutcome::Cancelled,
        },
        Event::AttemptFinished {
            task: 5,
            attempt: 1,
            at: 9,
            outcome: AttemptOutcome::Interrupted,
        },
        Event::TaskFinished {
            task: 0,
            state: TaskEnd::Failed,
            reason: "attempts exhausted".into(),
            at: 10,
        },
        Event::TaskFinished {
            task: 6,
            state: TaskEnd::Skipped,
            reason: String::new(),
            at: 11,
        },
        Event::TaskFinished {
            task: 7,
            state: TaskEnd::UpstreamFailed,
            reason: "upstream task `extract` failed".into(),
            at: 12,
        },
        Event::TaskFinished {
            task: tandem_dsl::TaskIndex::MAX,
            state: TaskEnd::Cancelled,
            reason: "run cancelled".into(),
            at: 13,
        },
        Event::CancelRequested {
            at: 14,
            reason: "Ctrl-C".into(),
            timed_out: false,
        },
        Event::CancelRequested {
            at: 14,
            reason: "the run's deadline passed".into(),
            timed_out: true,
        },
        Event::RunFinished {
            state: RunEnd::Cancelled,
            at: 15,
            reason: "cancelled on request".into(),
        },
    ]
}

pub(super) const EVENT_VARIANTS: usize = 9;
pub(super) const OUTCOME_VARIANTS: usize = 5;
pub(super) const TASK_END_VARIANTS: usize = 4;

/// The index of `event`'s variant. Exhaustive on purpose: a new variant does not compile
/// until it is counted here and covered by [`every_event_but_created`].
pub(super) fn event_variant(event: &Event) -> usize {
    match event {
        Event::RunCreated { .. } => 0,
        Event::RunResumed { .. } => 1,
        Event::AttemptStarted { .. } => 2,
        Event::AttemptSpawned { .. } => 3,
        Event::AttemptFinished { .. } => 4,
        Event::RetryScheduled { .. } => 5,
        Event::TaskFinished { .. } => 6,
        Event::CancelRequested { .. } => 7,
        Event::RunFinished { .. } => 8,
    }
}

pub(super) fn outcome_variant(outcome: &AttemptOutcome) -> usize {
    match outcome {
        AttemptOutcome::Succeeded { .. } => 0,
        AttemptOutcome::Failed { .. } => 1,
        AttemptOutcome::TimedOut { .. } => 2,
        AttemptOutcome::Cancelled => 3,
        AttemptOutcome::Interrupted => 4,
    }
}

pub(super) fn task_end_variant(end: TaskEnd) -> usize {
    match end {
        TaskEnd::Failed => 0,
        TaskEnd::Skipped => 1,
        TaskEnd::UpstreamFailed => 2,
        TaskEnd::Cancelled => 3,
    }
}
