//! The validated form of a workflow file.
//!
//! A [`WorkflowSpec`] is only ever produced by [`crate::compile`]; every field has been checked
//! and every default resolved, so the engine never sees an unvalidated workflow.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;

use crate::input::InputValue;
use crate::schedule::ScheduleSpec;
use crate::template::Template;

/// Index of a task instance in [`WorkflowSpec::tasks`]. Stable for a given file text, so
/// checkpoints refer to tasks by this index.
pub type TaskIndex = u32;

/// A validated workflow: a DAG of task instances with resolved defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSpec {
    /// The workflow's `name` (letters, digits, `-`, `_`).
    pub name: String,
    /// The optional free-text `description`.
    pub description: Option<String>,
    /// The workflow version: lowercase hex SHA-256 of the file text (64 characters).
    pub version: String,
    /// Declared params in file order. A param without a default must be given at run start.
    pub params: IndexMap<String, ParamSpec>,
    /// Run-level deadline: the whole run is stopped (state `timed_out`) after this long.
    pub deadline: Option<Duration>,
    /// When the region starts runs on its own (`schedule:`); `None` for a workflow that only
    /// runs when asked. A workflow with a schedule has a default for every param.
    pub schedule: Option<ScheduleSpec>,
    /// Task instances after matrix expansion, in file order (the instances of one matrix task
    /// are consecutive, in matrix order). Indexed by [`TaskIndex`].
    pub tasks: Vec<TaskSpec>,
}

/// One declared param.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// The default value as text; `None` (written `~` or `null` in the file) means the param is
    /// required and must be given with `--param NAME=VALUE`.
    pub default: Option<String>,
}

/// One task instance (a task of the file, or one combination of a matrix task).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The instance id: the file key (`extract`), or for a matrix instance the key followed by
    /// its combination in matrix order (`transform[shard=1]`, `t[os=linux,arch=x86]`).
    pub id: String,
    /// The task's key in the file (`transform` for every instance of that matrix task).
    pub key: String,
    /// The optional free-text `description`.
    pub description: Option<String>,
    /// This instance's matrix values, in the order the matrix declares its dimensions; empty for
    /// a task without `matrix`.
    pub matrix: Vec<(String, String)>,
    /// Direct upstream instances (a need on a matrix task expands to all its instances), sorted
    /// ascending, without duplicates.
    pub upstream: Vec<TaskIndex>,
    /// Direct downstream instances, sorted ascending, without duplicates.
    pub downstream: Vec<TaskIndex>,
    /// When this task may start, given the states of its upstream tasks.
    pub trigger_rule: TriggerRule,
    /// What an attempt does.
    pub action: TaskAction,
    /// Environment variables for the attempt (defaults merged with the task's own, task wins),
    /// sorted by name. Values are templates. Always empty for a worker task (`env` is refused
    /// there and `defaults.env` applies to shell tasks only).
    pub env: Vec<(String, Template)>,
    /// Retry policy (defaults merged field by field with the task's own `retry`).
    pub retry: RetryPolicy,
    /// Per-attempt timeout: a shell attempt's whole process group is killed after this long;
    /// a worker attempt is taken back from its worker.
    pub timeout: Option<Duration>,
}

/// What an attempt of a task does.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskAction {
    /// No `run`: a join point that succeeds at once and costs no process.
    Empty,
    /// A shell command run with `sh -c`.
    Shell {
        /// The command text (`run`), templated.
        run: Template,
        /// Working directory (`working_dir`), relative to the workflow file's directory; `None`
        /// means the workflow file's directory.
        working_dir: Option<Template>,
    },
    /// An attempt run by a remote worker that long-polls task queue `queue` (`worker:`).
    Worker {
        /// The task queue (`worker.queue`): a letter or `_`, then letters, digits, `_`, `-`
        /// and `.`; 1 to 128 bytes.
        queue: String,
        /// The task type the worker dispatches on (`worker.type`); same rule as `queue`.
        task_type: String,
        /// The input handed to the worker (`input:`), a mapping whose strings are templates;
        /// an empty mapping when the task has no `input`.
        input: InputValue,
        /// The worker must heartbeat the attempt at least this often or lose it
        /// (`heartbeat_timeout`, default 30 s, at most 24 h).
        heartbeat_timeout: Duration,
    },
}

impl TaskAction {
    /// The default `heartbeat_timeout` of a worker task: 30 s.
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);
}

/// Airflow's trigger rules: when a task may start given its upstream states.
///
/// Upstream states count as: *succeeded*; *failed* (the task failed, or it was
/// `upstream_failed`); *skipped*. A rule that can no longer be met makes the task `skipped`
/// (or `upstream_failed` where Airflow does so), which propagates downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TriggerRule {
    /// Every upstream succeeded (the default). Any failed upstream → `upstream_failed`; any
    /// skipped upstream → `skipped`.
    #[default]
    AllSuccess,
    /// Every upstream finished, in any state.
    AllDone,
    /// Every upstream failed; any succeeded or skipped upstream → `skipped`.
    AllFailed,
    /// At least one upstream succeeded (starts without waiting for the others); if all finished
    /// and none succeeded → `upstream_failed` when one failed, else `skipped`.
    OneSuccess,
    /// At least one upstream failed (starts without waiting for the others); if all finished
    /// and none failed → `skipped`.
    OneFailed,
    /// Every upstream finished and none failed (succeeded or skipped); any failed upstream →
    /// `upstream_failed`.
    NoneFailed,
}

impl TriggerRule {
    /// All rules with their file spelling, in documentation order.
    pub const ALL: [(TriggerRule, &'static str); 6] = [
        (TriggerRule::AllSuccess, "all_success"),
        (TriggerRule::AllDone, "all_done"),
        (TriggerRule::AllFailed, "all_failed"),
        (TriggerRule::OneSuccess, "one_success"),
        (TriggerRule::OneFailed, "one_failed"),
        (TriggerRule::NoneFailed, "none_failed"),
    ];

    /// The spelling used in files (`all_success`, ...).
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(rule, _)| *rule == self)
            .map(|(_, name)| *name)
            .unwrap_or("all_success")
    }

    /// Parses the file spelling; `None` for anything else.
    pub fn parse(text: &str) -> Option<TriggerRule> {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == text)
            .map(|(rule, _)| *rule)
    }
}

impl std::fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How backoff delays are randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): the delay
    /// is uniform in `[0, backoff]`.
    #[default]
    Full,
    /// No randomisation: the delay is exactly the backoff.
    None,
}

/// A retry policy in Temporal's terms (`max_attempts`, `initial_interval`,
/// `backoff_coefficient`, `max_interval`, non-retryable errors), with jitter.
///
/// The backoff after failed attempt `n` (numbered from 1) is
/// `min(max_interval, initial_interval * backoff_coefficient^(n-1))`, then jittered.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts allowed, including the first (≥ 1; 1 means no retry). Default 1.
    pub max_attempts: u32,
    /// Backoff before the second attempt. Default 1 s.
    pub initial_interval: Duration,
    /// Growth factor of the backoff (≥ 1.0). Default 2.0.
    pub backoff_coefficient: f64,
    /// Cap on the backoff. Default 100 × `initial_interval` (Temporal's default).
    pub max_interval: Duration,
    /// Randomisation of the backoff. Default [`Jitter::Full`].
    pub jitter: Jitter,
    /// Exit codes that fail the task at once, whatever attempts are left (sorted, unique).
    pub non_retryable_exit_codes: Vec<i32>,
    /// Error types (as reported by a worker with a failure) that fail the task at once,
    /// whatever attempts are left: Temporal's `NonRetryableErrorTypes`. Sorted, unique.
    pub non_retryable_errors: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            initial_interval: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            max_interval: Duration::from_secs(100),
            jitter: Jitter::Full,
            non_retryable_exit_codes: Vec::new(),
            non_retryable_errors: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// The un-jittered backoff after failed attempt `failed_attempt` (numbered from 1):
    /// `min(max_interval, initial_interval * backoff_coefficient^(failed_attempt - 1))`.
    pub fn backoff(&self, failed_attempt: u32) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(1024) as i32;
        let secs = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exponent);
        let cap = self.max_interval.as_secs_f64();
        if !secs.is_finite() || secs >= cap {
            self.max_interval
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }

    /// The delay before the next attempt after failed attempt `failed_attempt`, given a uniform
    /// random number `unit` in `[0, 1)` (ignored without jitter).
    pub fn delay(&self, failed_attempt: u32, unit: f64) -> Duration {
        let backoff = self.backoff(failed_attempt);
        match self.jitter {
            Jitter::None => backoff,
            Jitter::Full => backoff.mul_f64(unit.clamp(0.0, 1.0)),
        }
    }

    /// Whether an attempt that exited with `exit_code` may be retried by this policy (ignoring
    /// how many attempts are left).
    pub fn is_retryable_exit_code(&self, exit_code: i32) -> bool {
        !self.non_retryable_exit_codes.contains(&exit_code)
    }

    /// Whether an attempt that failed with error type `error_type` may be retried by this
    /// policy (ignoring how many attempts are left). Types compare exactly (case-sensitive).
    pub fn is_retryable_error_type(&self, error_type: &str) -> bool {
        !self.non_retryable_errors.iter().any(|t| t == error_type)
    }
}

/// Errors of [`WorkflowSpec::resolve_params`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// `--param NAME=...` names a param the workflow does not declare.
    #[error("unknown param `{name}`: workflow `{workflow}` declares {declared}")]
    Unknown {
        /// The given name.
        name: String,
        /// The workflow's name.
        workflow: String,
        /// The declared params, as a readable list (or "no params").
        declared: String,
    },
    /// A param without a default was not given.
    #[error(
        "param `{name}` of workflow `{workflow}` has no default and was not given: pass --param {name}=VALUE"
    )]
    Missing {
        /// The param's name.
        name: String,
        /// The workflow's name.
        workflow: String,
    },
}

impl WorkflowSpec {
    /// Resolves the params of a run: every declared param gets its override or its default.
    ///
    /// Errors: an override for an undeclared param ([`ParamError::Unknown`]), or a param with
    /// no default and no override ([`ParamError::Missing`]).
    pub fn resolve_params(
        &self,
        overrides: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, ParamError> {
        let mut values = BTreeMap::new();
        for (name, value) in overrides {
            if !self.params.contains_key(name) {
                let declared = if self.params.is_empty() {
                    "no params".to_string()
                } else {
                    let names: Vec<String> = self.params.keys().map(|k| format!("`{k}`")).collect();
                    names.join(", ")
                };
                return Err(ParamError::Unknown {
                    name: name.clone(),
                    workflow: self.name.clone(),
                    declared,
                });
            }
            values.insert(name.clone(), value.clone());
        }
        for (name, param) in &self.params {
            if values.contains_key(name) {
                continue;
            }
            match &param.default {
                Some(default) => {
                    values.insert(name.clone(), default.clone());
                }
                None => {
                    return Err(ParamError::Missing {
                        name: name.clone(),
                        workflow: self.name.clone(),
                    });
                }
            }
        }
        Ok(values)
    }

    /// The task instance with this id, if any.
    pub fn task_index(&self, id: &str) -> Option<TaskIndex> {
        self.tasks
            .iter()
            .position(|task| task.id == id)
            .map(|index| index as TaskIndex)
    }

    /// The task instance at `index`. Panics if `index` is out of range, which cannot happen for
    /// indexes taken from this spec.
    pub fn task(&self, index: TaskIndex) -> &TaskSpec {
        &self.tasks[index as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_interval: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            max_interval: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1), Duration::from_secs(1));
        assert_eq!(policy.backoff(2), Duration::from_secs(2));
        assert_eq!(policy.backoff(3), Duration::from_secs(4));
        assert_eq!(policy.backoff(4), Duration::from_secs(5));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_stays_within_backoff() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, 0.0), Duration::ZERO);
        assert_eq!(policy.delay(1, 0.5), Duration::from_millis(500));
        let none = RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        };
        assert_eq!(none.delay(2, 0.1), Duration::from_secs(2));
    }

    #[test]
    fn trigger_rule_spellings_round_trip() {
        for (rule, name) in TriggerRule::ALL {
            assert_eq!(TriggerRule::parse(name), Some(rule));
            assert_eq!(rule.as_str(), name);
        }
        assert_eq!(TriggerRule::parse("all-success"), None);
    }
}
