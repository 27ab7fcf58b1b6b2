//! Step 3 of compiling: raw structs → [`WorkflowSpec`]. Every semantic rule is checked here
//! and every violation reported (names, durations, trigger rules, retry values, `needs`,
//! cycles, templates, matrices, size limits, the schedule); the spec is built only when none
//! was found.

mod expand;
mod fields;
mod graph;
mod input;
mod matrix;
mod schedule;
mod size;
mod templates;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use indexmap::IndexMap;

use crate::locate::Locator;
use crate::names::NameKind;
use crate::raw::{
    Entries, EnvKeys, ParamDefault, ParamKeys, RawDefaults, RawTask, RawWorkflow, ScalarText, Sp,
};
use crate::report::{Path, Report};
use crate::spec::{ParamSpec, RetryPolicy, TriggerRule, WorkflowSpec};
use fields::{RetryFields, RetryLayer};
use graph::{TaskGraph, TaskNeeds};
use input::CheckedValue;
use templates::{Checked, Context, Scope, TaskInfo};
use worker::WorkerPlan;

/// Checks `raw` and builds the spec; `None` when an error was reported.
pub(crate) fn workflow(
    raw: &RawWorkflow,
    source: &str,
    version: String,
    report: &mut Report,
) -> Option<WorkflowSpec> {
    let name = raw.name.as_ref().and_then(|name| {
        let name = Sp::new(name.value.0.clone(), name.pos);
        fields::name(report, NameKind::Workflow, &name, &Path::ROOT.key("name"))
            .then_some(name.value)
    });
    let params = params(report, raw.params.as_ref());
    let deadline = raw
        .deadline
        .as_ref()
        .and_then(|text| fields::duration(report, text, &Path::ROOT.key("deadline"), true));
    let schedule = raw.schedule.as_ref().and_then(|raw_schedule| {
        schedule::params_have_defaults(report, raw.params.as_ref(), raw_schedule.pos);
        schedule::check(report, raw_schedule)
    });
    let defaults = Defaults::check(report, raw.defaults.as_ref());

    // Without `tasks` (already reported) the rest is still checked, against no tasks.
    let (tasks, tasks_pos) = match &raw.tasks {
        Some(tasks) => (tasks.entries.as_slice(), tasks.pos),
        None => (&[][..], raw.pos),
    };
    if let Some(raw_tasks) = &raw.tasks
        && raw_tasks.entries.is_empty()
    {
        report.error(
            raw_tasks.pos,
            &Path::ROOT.key("tasks"),
            "expected at least one task, found an empty mapping",
        );
    }
    let plans: Vec<TaskPlan<'_>> = tasks
        .iter()
        .map(|(key, task)| TaskPlan::check(report, key, task, &defaults))
        .collect();
    let by_id: HashMap<&str, usize> = plans
        .iter()
        .enumerate()
        .map(|(index, plan)| (plan.key.value.as_str(), index))
        .collect();
    let needs: Vec<TaskNeeds<'_>> = plans
        .iter()
        .map(|plan| TaskNeeds {
            key: plan.key,
            needs: plan.raw.needs.as_ref(),
        })
        .collect();
    let mut graph = TaskGraph::build(report, &needs, &by_id);

    let infos: Vec<TaskInfo<'_>> = plans
        .iter()
        .map(|plan| TaskInfo {
            id: &plan.key.value,
            matrix: &plan.matrix,
        })
        .collect();
    let locator = Locator::new(source);
    let mut context = Context {
        params: &params,
        tasks: &infos,
        by_id: &by_id,
        graph: &mut graph,
        locator: &locator,
    };
    let default_templates = defaults.templates(report, &mut context);
    let task_templates: Vec<TaskTemplates> = plans
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            plan.templates(
                report,
                &mut context,
                &Scope::Task(index),
                &default_templates,
            )
        })
        .collect();

    size::check_limits(report, tasks_pos, &plans, &task_templates, &graph);
    if report.has_errors() || !graph.is_acyclic() || plans.is_empty() {
        return None;
    }
    Some(expand::expand(expand::Parts {
        name: name?,
        description: raw.description.as_ref().map(|d| d.value.clone()),
        version,
        params,
        deadline,
        schedule,
        plans: &plans,
        templates: task_templates,
        graph: &graph,
    }))
}

/// Checks the declared params.
fn params(
    report: &mut Report,
    raw: Option<&Entries<ParamKeys, Sp<ParamDefault>>>,
) -> IndexMap<String, ParamSpec> {
    let mut params = IndexMap::new();
    let params_path = Path::ROOT.key("params");
    for (name, default) in raw.iter().flat_map(|entries| entries.entries.iter()) {
        fields::name(report, NameKind::Param, name, &params_path.key(&name.value));
        params.insert(
            name.value.clone(),
            ParamSpec {
                default: default.value.0.clone(),
            },
        );
    }
    params
}

/// Checks env var names of an `env` mapping at `path`; returns the entries.
fn env_entries<'r>(
    report: &mut Report,
    raw: Option<&'r Entries<EnvKeys, Sp<ScalarText>>>,
    path: &Path<'_>,
) -> Vec<(&'r Sp<String>, Sp<String>)> {
    let mut out = Vec::new();
    for (name, value) in raw.iter().flat_map(|entries| entries.entries.iter()) {
        fields::name(report, NameKind::EnvVar, name, &path.key(&name.value));
        out.push((name, Sp::new(value.value.0.clone(), value.pos)));
    }
    out
}

/// The checked `defaults`. `env` and `working_dir` apply to shell tasks only.
struct Defaults<'r> {
    retry: Option<RetryFields>,
    /// The policy of a task without its own `retry`.
    policy: RetryPolicy,
    timeout: Option<Duration>,
    env: Vec<(&'r Sp<String>, Sp<String>)>,
    working_dir: Option<&'r Sp<String>>,
}

/// The checked templates of `defaults`.
struct DefaultTemplates {
    env: Vec<(String, Checked)>,
    working_dir: Option<Checked>,
}

impl<'r> Defaults<'r> {
    fn check(report: &mut Report, raw: Option<&'r RawDefaults>) -> Defaults<'r> {
        let defaults_path = Path::ROOT.key("defaults");
        let retry_path = defaults_path.key("retry");
        let retry = raw
            .and_then(|d| d.retry.as_ref())
            .map(|retry| fields::retry_fields(report, retry, &retry_path));
        let policy = fields::merge_retry(
            report,
            retry.as_ref().map(|fields| RetryLayer {
                fields,
                path: &retry_path,
            }),
            None,
        );
        Defaults {
            retry,
            policy,
            timeout: raw.and_then(|d| d.timeout.as_ref()).and_then(|text| {
                fields::duration(report, text, &defaults_path.key("timeout"), true)
            }),
            env: env_entries(
                report,
                raw.and_then(|d| d.env.as_ref()),
                &defaults_path.key("env"),
            ),
            working_dir: raw.and_then(|d| d.working_dir.as_ref()),
        }
    }

    fn templates(&self, report: &mut Report, context: &mut Context<'_, '_>) -> DefaultTemplates {
        let defaults_path = Path::ROOT.key("defaults");
        let env_path = defaults_path.key("env");
        let env = self
            .env
            .iter()
            .map(|(name, value)| {
                let path = env_path.key(&name.value);
                let checked =
                    context.check(report, &value.value, value.pos, &path, &Scope::Defaults);
                (name.value.clone(), checked)
            })
            .collect();
        let dir_path = defaults_path.key("working_dir");
        let working_dir = self
            .working_dir
            .map(|dir| context.check(report, &dir.value, dir.pos, &dir_path, &Scope::Defaults));
        DefaultTemplates { env, working_dir }
    }
}

/// One task after the checks that do not need the graph.
pub(super) struct TaskPlan<'r> {
    key: &'r Sp<String>,
    raw: &'r RawTask,
    matrix: Vec<(String, Vec<String>)>,
    instances: u64,
    trigger_rule: TriggerRule,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    /// The worker of a valid worker task.
    worker: Option<WorkerPlan>,
}

/// The checked templates of one task, defaults merged in.
pub(super) struct TaskTemplates {
    run: Option<Checked>,
    working_dir: Option<Checked>,
    /// Env values by name (defaults, then the task's own over them); empty for a worker task.
    env: BTreeMap<String, Checked>,
    /// The `input` of a worker task (an empty mapping without `input`); `None` otherwise.
    input: Option<CheckedValue>,
}

impl<'r> TaskPlan<'r> {
    fn check(
        report: &mut Report,
        key: &'r Sp<String>,
        raw: &'r RawTask,
        defaults: &Defaults<'_>,
    ) -> TaskPlan<'r> {
        let tasks_path = Path::ROOT.key("tasks");
        let path = tasks_path.key(&key.value);
        fields::name(report, NameKind::Task, key, &path);
        let (matrix, instances) = match &raw.matrix {
            Some(matrix) => matrix::check_matrix(report, matrix, &path.key("matrix")),
            None => (Vec::new(), 1),
        };
        let trigger_rule = raw
            .trigger_rule
            .as_ref()
            .and_then(|rule| fields::trigger_rule(report, rule, &path.key("trigger_rule")))
            .unwrap_or_default();
        let timeout = match &raw.timeout {
            Some(text) => fields::duration(report, text, &path.key("timeout"), true),
            None => defaults.timeout,
        };
        let retry = match &raw.retry {
            Some(retry) => {
                let retry_path = path.key("retry");
                let own = fields::retry_fields(report, retry, &retry_path);
                let defaults_path = Path::ROOT.key("defaults");
                let defaults_retry_path = defaults_path.key("retry");
                fields::merge_retry(
                    report,
                    defaults.retry.as_ref().map(|fields| RetryLayer {
                        fields,
                        path: &defaults_retry_path,
                    }),
                    Some(RetryLayer {
                        fields: &own,
                        path: &retry_path,
                    }),
                )
            }
            None => defaults.policy.clone(),
        };
        if let Some(run) = &raw.run
            && run.value.0.trim().is_empty()
        {
            report.error_with_help(
                run.pos,
                &path.key("run"),
                "expected a shell command, found an empty string",
                "leave `run` out for a task that runs nothing",
            );
        }
        let worker = worker::check(report, &key.value, raw, &path);
        TaskPlan {
            key,
            raw,
            matrix,
            instances,
            trigger_rule,
            timeout,
            retry,
            worker,
        }
    }

    fn templates(
        &self,
        report: &mut Report,
        context: &mut Context<'_, '_>,
        scope: &Scope,
        defaults: &DefaultTemplates,
    ) -> TaskTemplates {
        let tasks_path = Path::ROOT.key("tasks");
        let path = tasks_path.key(&self.key.value);
        if self.raw.worker.is_some() && self.raw.run.is_none() {
            // A worker task: no shell fields (reported if set), `defaults.env` and
            // `defaults.working_dir` do not apply.
            let input = CheckedValue::check(
                report,
                context,
                self.raw.input.as_ref(),
                &path.key("input"),
                scope,
            );
            return TaskTemplates {
                run: None,
                working_dir: None,
                env: BTreeMap::new(),
                input: Some(input),
            };
        }
        let run = self
            .raw
            .run
            .as_ref()
            .map(|run| context.check(report, &run.value.0, run.pos, &path.key("run"), scope));
        let working_dir = match &self.raw.working_dir {
            Some(dir) => {
                Some(context.check(report, &dir.value, dir.pos, &path.key("working_dir"), scope))
            }
            None => defaults.working_dir.clone(),
        };
        let mut env: BTreeMap<String, Checked> = defaults.env.iter().cloned().collect();
        let env_path = path.key("env");
        for (name, value) in env_entries(report, self.raw.env.as_ref(), &env_path) {
            let checked = context.check(
                report,
                &value.value,
                value.pos,
                &env_path.key(&name.value),
                scope,
            );
            env.insert(name.value.clone(), checked);
        }
        TaskTemplates {
            run,
            working_dir,
            env,
            input: None,
        }
    }
}
