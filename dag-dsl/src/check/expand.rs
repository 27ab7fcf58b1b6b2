//! Building the [`WorkflowSpec`] of a checked workflow: matrix tasks become one instance per
//! combination, `needs` become sorted instance indexes both ways, templates are instantiated.

use std::time::Duration;

use indexmap::IndexMap;

use crate::check::graph::TaskGraph;
use crate::check::{TaskPlan, TaskTemplates};
use crate::schedule::ScheduleSpec;
use crate::spec::{ParamSpec, TaskAction, TaskIndex, TaskSpec, WorkflowSpec};

/// Everything the spec is made of.
pub(super) struct Parts<'a, 'r> {
    pub name: String,
    pub description: Option<String>,
    pub version: String,
    pub params: IndexMap<String, ParamSpec>,
    pub deadline: Option<Duration>,
    pub schedule: Option<ScheduleSpec>,
    pub plans: &'a [TaskPlan<'r>],
    pub templates: Vec<TaskTemplates>,
    pub graph: &'a TaskGraph,
}

/// Builds the spec. The caller has checked every limit, so instance counts fit in
/// [`TaskIndex`].
pub(super) fn expand(parts: Parts<'_, '_>) -> WorkflowSpec {
    let plans = parts.plans;
    // First instance index of each task: instances of one task are consecutive.
    let mut first: Vec<TaskIndex> = Vec::with_capacity(plans.len());
    let mut next: u64 = 0;
    for plan in plans {
        first.push(TaskIndex::try_from(next).unwrap_or(TaskIndex::MAX));
        next += plan.instances;
    }
    let total = usize::try_from(next).unwrap_or(0);

    let mut tasks: Vec<TaskSpec> = Vec::with_capacity(total);
    for (index, (plan, templates)) in plans.iter().zip(&parts.templates).enumerate() {
        // The upstream instances are the same for every instance of this task: all instances
        // of each needed task. Ranges of different tasks do not overlap, so sorting the needed
        // tasks by first index gives a sorted, duplicate-free list.
        let mut needed: Vec<usize> = parts.graph.upstream(index).collect();
        needed.sort_unstable_by_key(|&task| first[task]);
        let mut upstream: Vec<TaskIndex> = Vec::new();
        for task in needed {
            let start = first[task];
            let count = TaskIndex::try_from(plans[task].instances).unwrap_or(0);
            upstream.extend(start..start + count);
        }
        let combinations = combinations(&plan.matrix);
        let count = combinations.len();
        for (instance, combination) in combinations.into_iter().enumerate() {
            let id = instance_id(&plan.key.value, &combination);
            // The last instance takes the list, the others copy it.
            let upstream = if instance + 1 == count {
                std::mem::take(&mut upstream)
            } else {
                upstream.clone()
            };
            let action = match (&plan.worker, &templates.run) {
                (Some(worker), _) => TaskAction::Worker {
                    queue: worker.queue.clone(),
                    task_type: worker.task_type.clone(),
                    input: templates
                        .input
                        .as_ref()
                        .map(|input| input.instantiate(&combination, &first))
                        .unwrap_or_default(),
                    heartbeat_timeout: worker.heartbeat_timeout,
                },
                (None, None) => TaskAction::Empty,
                (None, Some(run)) => TaskAction::Shell {
                    run: run.instantiate(&combination, &first),
                    working_dir: templates
                        .working_dir
                        .as_ref()
                        .map(|dir| dir.instantiate(&combination, &first)),
                },
            };
            let env = templates
                .env
                .iter()
                .map(|(name, value)| (name.clone(), value.instantiate(&combination, &first)))
                .collect();
            tasks.push(TaskSpec {
                id,
                key: plan.key.value.clone(),
                description: plan.raw.description.as_ref().map(|d| d.value.clone()),
                matrix: combination,
                upstream,
                downstream: Vec::new(),
                trigger_rule: plan.trigger_rule,
                action,
                env,
                retry: plan.retry.clone(),
                timeout: plan.timeout,
            });
        }
    }
    // Instances are visited in increasing order, so each downstream list comes out sorted.
    for index in 0..tasks.len() {
        let upstream = std::mem::take(&mut tasks[index].upstream);
        for &up in &upstream {
            if let Some(task) = tasks.get_mut(up as usize) {
                task.downstream.push(index as TaskIndex);
            }
        }
        tasks[index].upstream = upstream;
    }
    WorkflowSpec {
        name: parts.name,
        description: parts.description,
        version: parts.version,
        params: parts.params,
        deadline: parts.deadline,
        schedule: parts.schedule,
        tasks,
    }
}

/// Every combination of the matrix, first dimension slowest (`[a=1,b=x]`, `[a=1,b=y]`,
/// `[a=2,b=x]`, ...); one empty combination for a task without matrix.
fn combinations(matrix: &[(String, Vec<String>)]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (dimension, values) in matrix {
        let mut grown = Vec::with_capacity(out.len() * values.len());
        for prefix in &out {
            for value in values {
                let mut combination = prefix.clone();
                combination.push((dimension.clone(), value.clone()));
                grown.push(combination);
            }
        }
        out = grown;
    }
    out
}

/// `key` for a task without matrix, `key[dim=value,dim2=value2]` for a matrix instance.
fn instance_id(key: &str, combination: &[(String, String)]) -> String {
    if combination.is_empty() {
        return key.to_string();
    }
    let parts: Vec<String> = combination
        .iter()
        .map(|(dimension, value)| format!("{dimension}={value}"))
        .collect();
    format!("{key}[{}]", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_vary_the_last_dimension_fastest() {
        let matrix = vec![
            (
                "os".to_string(),
                vec!["linux".to_string(), "mac".to_string()],
            ),
            (
                "arch".to_string(),
                vec!["x86".to_string(), "arm".to_string()],
            ),
        ];
        let ids: Vec<String> = combinations(&matrix)
            .iter()
            .map(|c| instance_id("t", c))
            .collect();
        assert_eq!(
            ids,
            [
                "t[os=linux,arch=x86]",
                "t[os=linux,arch=arm]",
                "t[os=mac,arch=x86]",
                "t[os=mac,arch=arm]"
            ]
        );
        assert_eq!(combinations(&[]), vec![Vec::<(String, String)>::new()]);
    }
}
