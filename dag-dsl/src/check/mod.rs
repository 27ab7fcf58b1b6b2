//! Step 3 of compiling: raw structs → [`WorkflowSpec`]. Every semantic rule is checked here
//! and every violation reported (names, durations, trigger rules, retry values, `needs`,
//! cycles, templates, matrices, size limits); the spec is built only when none was found.

mod expand;
mod fields;
mod graph;
mod templates;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use indexmap::IndexMap;

use crate::limits;
use crate::names::{NameKind, shorten};
use crate::raw::{
    DimensionKeys, Entries, EnvKeys, MatrixValues, ParamKeys, ParamDefault, RawDefaults, RawTask,
    RawWorkflow, ScalarText, Sp,
};
use crate::report::{Report, child, item};
use crate::spec::{ParamSpec, RetryPolicy, TriggerRule, WorkflowSpec};
use fields::{RetryFields, RetryLayer};
use graph::{TaskGraph, TaskNeeds};
use templates::{Checked, Context, Scope, TaskInfo};

/// Checks `raw` and builds the spec; `None` when an error was reported.
pub(crate) fn workflow(raw: &RawWorkflow, version: String, report: &mut Report) -> Option<WorkflowSpec> {
    let name = raw.name.as_ref().and_then(|name| {
        let name = Sp::new(name.value.0.clone(), name.pos);
        fields::name(report, NameKind::Workflow, &name, "name").then_some(name.value)
    });
    let params = params(report, raw.params.as_ref());
    let deadline = raw
        .deadline
        .as_ref()
        .and_then(|text| fields::duration(report, text, "deadline", true));
    let defaults = Defaults::check(report, raw.defaults.as_ref());

    let Some(tasks) = &raw.tasks else {
        return None;
    };
    if tasks.entries.is_empty() {
        report.error(
            tasks.pos,
            "tasks",
            "expected at least one task, found an empty mapping",
        );
        return None;
    }
    let plans: Vec<TaskPlan<'_>> = tasks
        .entries
        .iter()
        .map(|(key, task)| TaskPlan::check(report, key, task, &defaults))
        .collect();
    let needs: Vec<TaskNeeds<'_>> = plans
        .iter()
        .map(|plan| TaskNeeds {
            key: plan.key,
            needs: plan.raw.needs.as_ref(),
        })
        .collect();
    let mut graph = TaskGraph::build(report, &needs);

    let infos: Vec<TaskInfo<'_>> = plans
        .iter()
        .map(|plan| TaskInfo {
            id: &plan.key.value,
            matrix: &plan.matrix,
            instances: plan.instances,
        })
        .collect();
    let by_id: HashMap<&str, usize> = plans
        .iter()
        .enumerate()
        .map(|(index, plan)| (plan.key.value.as_str(), index))
        .collect();
    let mut context = Context {
        params: &params,
        tasks: &infos,
        graph: &mut graph,
    };
    let default_templates = defaults.templates(report, &mut context);
    let task_templates: Vec<TaskTemplates> = plans
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            let scope = Scope::Task { task: index, by_id: &by_id };
            plan.templates(report, &mut context, &scope, &default_templates)
        })
        .collect();

    check_limits(report, tasks.pos, &plans, &task_templates, &graph);
    if report.has_errors() || !graph.is_acyclic() {
        return None;
    }
    Some(expand::expand(expand::Parts {
        name: name?,
        description: raw.description.as_ref().map(|d| d.value.clone()),
        version,
        params,
        deadline,
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
    for (name, default) in raw.iter().flat_map(|entries| entries.entries.iter()) {
        fields::name(report, NameKind::Param, name, &child("params", &name.value));
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
    path: &str,
) -> Vec<(&'r Sp<String>, Sp<String>)> {
    let mut out = Vec::new();
    for (name, value) in raw.iter().flat_map(|entries| entries.entries.iter()) {
        fields::name(report, NameKind::EnvVar, name, &child(path, &name.value));
        out.push((name, Sp::new(value.value.0.clone(), value.pos)));
    }
    out
}

/// The checked `defaults`.
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
        let retry = raw
            .and_then(|d| d.retry.as_ref())
            .map(|retry| fields::retry_fields(report, retry, "defaults.retry"));
        let policy = fields::merge_retry(
            report,
            retry.as_ref().map(|fields| RetryLayer {
                fields,
                path: "defaults.retry",
            }),
            None,
        );
        Defaults {
            retry,
            policy,
            timeout: raw
                .and_then(|d| d.timeout.as_ref())
                .and_then(|text| fields::duration(report, text, "defaults.timeout", true)),
            env: env_entries(report, raw.and_then(|d| d.env.as_ref()), "defaults.env"),
            working_dir: raw.and_then(|d| d.working_dir.as_ref()),
        }
    }

    fn templates(&self, report: &mut Report, context: &mut Context<'_, '_>) -> DefaultTemplates {
        let env = self
            .env
            .iter()
            .map(|(name, value)| {
                let path = child("defaults.env", &name.value);
                let checked = context.check(report, value, &path, &Scope::Defaults);
                (name.value.clone(), checked)
            })
            .collect();
        let working_dir = self.working_dir.map(|dir| {
            context.check(report, dir, "defaults.working_dir", &Scope::Defaults)
        });
        DefaultTemplates { env, working_dir }
    }
}

/// One task after the checks that do not need the graph.
pub(super) struct TaskPlan<'r> {
    key: &'r Sp<String>,
    raw: &'r RawTask,
    path: String,
    matrix: Vec<(String, Vec<String>)>,
    instances: u64,
    trigger_rule: TriggerRule,
    timeout: Option<Duration>,
    retry: RetryPolicy,
}

/// The checked templates of one task, defaults merged in.
pub(super) struct TaskTemplates {
    run: Option<Checked>,
    working_dir: Option<Checked>,
    /// Env values by name (defaults, then the task's own over them).
    env: BTreeMap<String, Checked>,
}

impl<'r> TaskPlan<'r> {
    fn check(
        report: &mut Report,
        key: &'r Sp<String>,
        raw: &'r RawTask,
        defaults: &Defaults<'_>,
    ) -> TaskPlan<'r> {
        let path = child("tasks", &key.value);
        fields::name(report, NameKind::Task, key, &path);
        let (matrix, instances) = match &raw.matrix {
            Some(matrix) => check_matrix(report, matrix, &child(&path, "matrix")),
            None => (Vec::new(), 1),
        };
        let trigger_rule = raw
            .trigger_rule
            .as_ref()
            .and_then(|rule| fields::trigger_rule(report, rule, &child(&path, "trigger_rule")))
            .unwrap_or_default();
        let timeout = match &raw.timeout {
            Some(text) => fields::duration(report, text, &child(&path, "timeout"), true),
            None => defaults.timeout,
        };
        let retry = match &raw.retry {
            Some(retry) => {
                let retry_path = child(&path, "retry");
                let own = fields::retry_fields(report, retry, &retry_path);
                fields::merge_retry(
                    report,
                    defaults.retry.as_ref().map(|fields| RetryLayer {
                        fields,
                        path: "defaults.retry",
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
                &child(&path, "run"),
                "expected a shell command, found an empty string",
                "leave `run` out for a task that runs nothing",
            );
        }
        TaskPlan {
            key,
            raw,
            path,
            matrix,
            instances,
            trigger_rule,
            timeout,
            retry,
        }
    }

    fn templates(
        &self,
        report: &mut Report,
        context: &mut Context<'_, '_>,
        scope: &Scope<'_>,
        defaults: &DefaultTemplates,
    ) -> TaskTemplates {
        let run = self.raw.run.as_ref().map(|run| {
            let text = Sp::new(run.value.0.clone(), run.pos);
            context.check(report, &text, &child(&self.path, "run"), scope)
        });
        let working_dir = match &self.raw.working_dir {
            Some(dir) => Some(context.check(report, dir, &child(&self.path, "working_dir"), scope)),
            None => defaults.working_dir.clone(),
        };
        let mut env: BTreeMap<String, Checked> = defaults.env.iter().cloned().collect();
        let env_path = child(&self.path, "env");
        for (name, value) in env_entries(report, self.raw.env.as_ref(), &env_path) {
            let checked = context.check(report, &value, &child(&env_path, &name.value), scope);
            env.insert(name.value.clone(), checked);
        }
        TaskTemplates {
            run,
            working_dir,
            env,
        }
    }
}

/// Checks a `matrix` at `path`: at least one dimension, valid names, non-empty lists without
/// repeated values, at most [`limits::MAX_MATRIX_INSTANCES`] combinations. Returns the
/// dimensions (also the invalid ones, so templates naming them are not reported again) and
/// the number of combinations.
fn check_matrix(
    report: &mut Report,
    matrix: &Entries<DimensionKeys, Sp<MatrixValues>>,
    path: &str,
) -> (Vec<(String, Vec<String>)>, u64) {
    if matrix.entries.is_empty() {
        report.error(
            matrix.pos,
            path,
            "expected at least one matrix dimension, found an empty mapping",
        );
        return (Vec::new(), 0);
    }
    let mut dimensions = Vec::with_capacity(matrix.entries.len());
    let mut combinations: u64 = 1;
    for (name, values) in &matrix.entries {
        let dimension_path = child(path, &name.value);
        fields::name(report, NameKind::MatrixDimension, name, &dimension_path);
        if values.value.0.is_empty() {
            report.error(
                values.pos,
                &dimension_path,
                format!(
                    "matrix dimension `{}` has no values: expected a non-empty list",
                    name.value
                ),
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(values.value.0.len());
        let mut texts = Vec::with_capacity(values.value.0.len());
        for (index, value) in values.value.0.iter().enumerate() {
            if let Some(first) = seen.get(value.value.0.as_str()) {
                report.error(
                    value.pos,
                    &item(&dimension_path, index),
                    format!(
                        "value `{}` appears twice in matrix dimension `{}` (also at `{}`): \
                         instance ids would repeat",
                        shorten(&value.value.0),
                        name.value,
                        item(&dimension_path, *first)
                    ),
                );
                continue;
            }
            seen.insert(&value.value.0, index);
            texts.push(value.value.0.clone());
        }
        combinations = combinations.saturating_mul(texts.len() as u64);
        dimensions.push((name.value.clone(), texts));
    }
    if combinations > limits::MAX_MATRIX_INSTANCES {
        report.error(
            matrix.pos,
            path,
            format!(
                "the matrix has {combinations} combinations, more than the limit of {} \
                 instances per task",
                limits::MAX_MATRIX_INSTANCES
            ),
        );
    }
    (dimensions, combinations)
}

/// Checks the size of the expanded workflow against [`limits`].
fn check_limits(
    report: &mut Report,
    pos: crate::yaml::Pos,
    plans: &[TaskPlan<'_>],
    templates: &[TaskTemplates],
    graph: &TaskGraph,
) {
    let instances: u64 = plans.iter().fold(0, |sum, plan| sum.saturating_add(plan.instances));
    if instances > limits::MAX_TASK_INSTANCES {
        report.error(
            pos,
            "tasks",
            format!(
                "the workflow expands to {instances} task instances, more than the limit of {}",
                limits::MAX_TASK_INSTANCES
            ),
        );
    }
    let edges: u64 = plans.iter().enumerate().fold(0, |sum, (index, plan)| {
        let upstream: u64 = graph
            .upstream(index)
            .fold(0, |sum, up| sum.saturating_add(plans[up].instances));
        sum.saturating_add(plan.instances.saturating_mul(upstream))
    });
    if edges > limits::MAX_EDGES {
        report.error(
            pos,
            "tasks",
            format!(
                "the workflow expands to {edges} dependencies between task instances, more \
                 than the limit of {}",
                limits::MAX_EDGES
            ),
        );
    }
    let bytes: u64 = plans.iter().zip(templates).fold(0, |sum, (plan, t)| {
        let one = t
            .run
            .iter()
            .chain(t.working_dir.iter())
            .chain(t.env.values())
            .map(|checked| checked.expanded_len(&plan.matrix))
            .fold(0u64, u64::saturating_add);
        sum.saturating_add(one.saturating_mul(plan.instances))
    });
    if bytes > limits::MAX_EXPANDED_TEXT_BYTES {
        report.error(
            pos,
            "tasks",
            format!(
                "the workflow's commands and env values expand to {bytes} bytes, more than the \
                 limit of {}",
                limits::MAX_EXPANDED_TEXT_BYTES
            ),
        );
    }
}
