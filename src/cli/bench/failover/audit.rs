//! [`Audit`]: what the region's whole checkpoint log says about the runs of the failover
//! benchmark once they are over: every run finished `succeeded`, every task succeeded exactly
//! once (no success recorded twice, none missing), and how many attempts the kills
//! interrupted.

use std::collections::BTreeMap;

use serde::Serialize;
use tandem_engine::checkpoint::{AttemptOutcome, Checkpoint, Event, RunEnd, RunId};

/// The audit of a log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// Runs in the log.
    pub runs: usize,
    /// Runs whose last checkpoint is `RunFinished` with state `succeeded`.
    pub succeeded: usize,
    /// Attempts that ended `interrupted` (their process died with its replica).
    pub interrupted_attempts: u64,
    /// `RunResumed` checkpoints (a run taken over by a new leader).
    pub resumes: u64,
    /// Problems found, one line each (empty: the log is sound).
    pub problems: Vec<String>,
}

impl Audit {
    /// Audits `log` (checkpoints of every run, in log order), each run a workflow of `tasks`
    /// task instances.
    pub fn of(log: &[Checkpoint], tasks: u32) -> Audit {
        #[derive(Default)]
        struct RunLog {
            successes: BTreeMap<u32, u32>,
            end: Option<RunEnd>,
            after_end: bool,
        }
        let mut runs: BTreeMap<RunId, RunLog> = BTreeMap::new();
        let mut audit = Audit::default();
        for checkpoint in log {
            let run = runs.entry(checkpoint.run_id).or_default();
            if run.end.is_some() {
                run.after_end = true;
            }
            match &checkpoint.event {
                Event::AttemptFinished { task, outcome, .. } => {
                    if outcome.is_success() {
                        *run.successes.entry(*task).or_default() += 1;
                    } else if *outcome == AttemptOutcome::Interrupted {
                        audit.interrupted_attempts += 1;
                    }
                }
                Event::RunResumed { .. } => audit.resumes += 1,
                Event::RunFinished { state, .. } => run.end = Some(*state),
                _ => {}
            }
        }
        audit.runs = runs.len();
        for (run_id, run) in &runs {
            if run.after_end {
                audit
                    .problems
                    .push(format!("run {run_id}: checkpoints after its RunFinished"));
            }
            match run.end {
                Some(RunEnd::Succeeded) => audit.succeeded += 1,
                Some(end) => audit
                    .problems
                    .push(format!("run {run_id}: expected succeeded, found {end}")),
                None => audit.problems.push(format!(
                    "run {run_id}: expected finished, found no RunFinished"
                )),
            }
            let twice: Vec<u32> = run
                .successes
                .iter()
                .filter(|(_, count)| **count > 1)
                .map(|(task, _)| *task)
                .collect();
            if !twice.is_empty() {
                audit.problems.push(format!(
                    "run {run_id}: task instances {twice:?} have more than one successful AttemptFinished"
                ));
            }
            let succeeded = run.successes.len();
            if succeeded != tasks as usize {
                audit.problems.push(format!(
                    "run {run_id}: expected {tasks} task instances with a successful attempt, found {succeeded}"
                ));
            }
        }
        audit
    }

    /// Whether the log is sound: at least one run, and no problem.
    pub fn is_sound(&self) -> bool {
        self.runs > 0 && self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tandem_engine::checkpoint::Epoch;

    use super::*;

    fn at(position: u64, run_id: RunId, event: Event) -> Checkpoint {
        Checkpoint {
            position,
            epoch: Epoch(1),
            run_id,
            recorded_at: 0,
            event,
        }
    }

    fn finished(task: u32, attempt: u32, outcome: AttemptOutcome) -> Event {
        Event::AttemptFinished {
            task,
            attempt,
            at: 0,
            outcome,
        }
    }

    fn success() -> AttemptOutcome {
        AttemptOutcome::Succeeded {
            outputs: BTreeMap::new(),
        }
    }

    fn run_finished(state: RunEnd) -> Event {
        Event::RunFinished {
            state,
            at: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn a_sound_log_with_an_interrupted_attempt() {
        let run = RunId::new();
        let log = vec![
            at(1, run, finished(0, 1, success())),
            at(2, run, finished(1, 1, AttemptOutcome::Interrupted)),
            at(
                3,
                run,
                Event::RunResumed {
                    at: 0,
                    owner: "pid 1 on h".to_string(),
                },
            ),
            at(4, run, finished(1, 2, success())),
            at(5, run, run_finished(RunEnd::Succeeded)),
        ];
        let audit = Audit::of(&log, 2);
        assert!(audit.is_sound(), "{audit:?}");
        assert_eq!(audit.runs, 1);
        assert_eq!(audit.succeeded, 1);
        assert_eq!(audit.interrupted_attempts, 1);
        assert_eq!(audit.resumes, 1);
    }

    #[test]
    fn a_success_recorded_twice_is_a_problem() {
        let run = RunId::new();
        let log = vec![
            at(1, run, finished(0, 1, success())),
            at(2, run, finished(0, 2, success())),
            at(3, run, finished(1, 1, success())),
            at(4, run, run_finished(RunEnd::Succeeded)),
        ];
        let audit = Audit::of(&log, 2);
        assert!(!audit.is_sound());
        assert_eq!(audit.problems.len(), 1, "{:?}", audit.problems);
        assert!(audit.problems[0].contains("[0]"), "{:?}", audit.problems);
    }

    #[test]
    fn unfinished_failed_and_incomplete_runs_are_problems() {
        let unfinished = RunId::new();
        let failed = RunId::new();
        let log = vec![
            at(1, unfinished, finished(0, 1, success())),
            at(2, failed, finished(0, 1, success())),
            at(3, failed, run_finished(RunEnd::Failed)),
            at(4, failed, finished(0, 2, AttemptOutcome::Cancelled)),
        ];
        let audit = Audit::of(&log, 1);
        assert_eq!(audit.succeeded, 0);
        let text = audit.problems.join("\n");
        assert!(text.contains("found no RunFinished"), "{text}");
        assert!(text.contains("expected succeeded, found failed"), "{text}");
        assert!(text.contains("checkpoints after its RunFinished"), "{text}");
        assert!(!Audit::of(&[], 1).is_sound(), "an empty log proves nothing");
        let short = vec![
            at(1, unfinished, finished(0, 1, success())),
            at(2, unfinished, run_finished(RunEnd::Succeeded)),
        ];
        assert!(
            Audit::of(&short, 2).problems[0].contains("expected 2 task instances"),
            "a task without success"
        );
    }
}
