//! Trigger rules: may a task start, given how its upstream tasks ended so far?
//!
//! Semantics follow Airflow's trigger rules (airflow/utils/trigger_rule.py and the
//! `TriggerRuleDep` it documents): a task is decided as soon as the outcome is certain, without
//! waiting for the remaining upstream tasks when they cannot change it.

use tandem_dsl::TriggerRule;

/// How the upstream tasks of one task have ended so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Number of direct upstream tasks.
    pub total: u32,
    /// Upstream tasks that succeeded.
    pub succeeded: u32,
    /// Upstream tasks that failed, were `upstream_failed`, or were cancelled.
    pub failed: u32,
    /// Upstream tasks that were skipped.
    pub skipped: u32,
}

impl UpstreamCounts {
    /// Upstream tasks in a final state.
    pub fn done(&self) -> u32 {
        self.succeeded + self.failed + self.skipped
    }
}

/// What a trigger rule decides for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: wait for more upstream tasks to finish.
    Wait,
    /// The task may start.
    Run,
    /// The rule can no longer be met and no upstream failure is to blame: `skipped`.
    Skip,
    /// The rule can no longer be met because upstream tasks failed: `upstream_failed`.
    UpstreamFailed,
}

/// Decides `rule` for a task whose upstream tasks ended as `counts` says.
///
/// A task without upstream tasks always runs, whatever its rule (as in Airflow).
pub fn evaluate(rule: TriggerRule, counts: UpstreamCounts) -> Verdict {
    if counts.total == 0 {
        return Verdict::Run;
    }
    let all_done = counts.done() == counts.total;
    match rule {
        TriggerRule::AllSuccess => {
            if counts.failed > 0 {
                Verdict::UpstreamFailed
            } else if counts.skipped > 0 {
                Verdict::Skip
            } else if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::AllFailed => {
            if counts.succeeded > 0 || counts.skipped > 0 {
                Verdict::Skip
            } else if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::OneSuccess => {
            if counts.succeeded > 0 {
                Verdict::Run
            } else if !all_done {
                Verdict::Wait
            } else if counts.failed > 0 {
                Verdict::UpstreamFailed
            } else {
                Verdict::Skip
            }
        }
        TriggerRule::OneFailed => {
            if counts.failed > 0 {
                Verdict::Run
            } else if all_done {
                Verdict::Skip
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::NoneFailed => {
            if counts.failed > 0 {
                Verdict::UpstreamFailed
            } else if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: u32, succeeded: u32, failed: u32, skipped: u32) -> UpstreamCounts {
        UpstreamCounts {
            total,
            succeeded,
            failed,
            skipped,
        }
    }

    #[test]
    fn a_task_without_upstream_runs_under_every_rule() {
        for (rule, _) in TriggerRule::ALL {
            assert_eq!(evaluate(rule, counts(0, 0, 0, 0)), Verdict::Run, "{rule}");
        }
    }

    #[test]
    fn all_success() {
        let rule = TriggerRule::AllSuccess;
        assert_eq!(evaluate(rule, counts(3, 2, 0, 0)), Verdict::Wait);
        assert_eq!(evaluate(rule, counts(3, 3, 0, 0)), Verdict::Run);
        assert_eq!(evaluate(rule, counts(3, 1, 1, 0)), Verdict::UpstreamFailed);
        assert_eq!(evaluate(rule, counts(3, 1, 0, 1)), Verdict::Skip);
        assert_eq!(evaluate(rule, counts(3, 0, 1, 1)), Verdict::UpstreamFailed);
    }

    #[test]
    fn all_done() {
        let rule = TriggerRule::AllDone;
        assert_eq!(evaluate(rule, counts(3, 1, 1, 0)), Verdict::Wait);
        assert_eq!(evaluate(rule, counts(3, 1, 1, 1)), Verdict::Run);
        assert_eq!(evaluate(rule, counts(2, 0, 2, 0)), Verdict::Run);
    }

    #[test]
    fn all_failed() {
        let rule = TriggerRule::AllFailed;
        assert_eq!(evaluate(rule, counts(2, 0, 1, 0)), Verdict::Wait);
        assert_eq!(evaluate(rule, counts(2, 0, 2, 0)), Verdict::Run);
        assert_eq!(evaluate(rule, counts(2, 1, 0, 0)), Verdict::Skip);
        assert_eq!(evaluate(rule, counts(2, 0, 0, 1)), Verdict::Skip);
    }

    #[test]
    fn one_success() {
        let rule = TriggerRule::OneSuccess;
        assert_eq!(evaluate(rule, counts(3, 1, 0, 0)), Verdict::Run);
        assert_eq!(evaluate(rule, counts(3, 0, 2, 0)), Verdict::Wait);
        assert_eq!(evaluate(rule, counts(3, 0, 2, 1)), Verdict::UpstreamFailed);
        assert_eq!(evaluate(rule, counts(2, 0, 0, 2)), Verdict::Skip);
    }

    #[test]
    fn one_failed() {
        let rule = TriggerRule::OneFailed;
        assert_eq!(evaluate(rule, counts(3, 0, 1, 0)), Verdict::Run);
        assert_eq!(evaluate(rule, counts(3, 2, 0, 0)), Verdict::Wait);
        assert_eq!(evaluate(rule, counts(3, 2, 0, 1)), Verdict::Skip);
    }

    #[test]
    fn none_failed() {
        let rule = TriggerRule::NoneFailed;
        assert_eq!(evaluate(rule, counts(3, 1, 0, 1)), Verdict::Wait);
        assert_eq!(evaluate(rule, counts(3, 2, 0, 1)), Verdict::Run);
        assert_eq!(evaluate(rule, counts(3, 0, 1, 0)), Verdict::UpstreamFailed);
    }
}
