//! The size of the expanded workflow, checked against [`limits`] before anything is expanded.

use crate::limits;
use crate::report::{Path, Report};
use crate::yaml::Pos;

use super::graph::TaskGraph;
use super::{TaskPlan, TaskTemplates};

/// Checks the size of the expanded workflow against [`limits`].
pub(super) fn check_limits(
    report: &mut Report,
    pos: Pos,
    plans: &[TaskPlan<'_>],
    templates: &[TaskTemplates],
    graph: &TaskGraph,
) {
    let instances: u64 = plans
        .iter()
        .fold(0, |sum, plan| sum.saturating_add(plan.instances));
    if instances > limits::MAX_TASK_INSTANCES {
        report.error(
            pos,
            &Path::ROOT.key("tasks"),
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
            &Path::ROOT.key("tasks"),
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
            .chain(t.input.iter().map(|input| input.expanded_len(&plan.matrix)))
            .fold(0u64, u64::saturating_add);
        sum.saturating_add(one.saturating_mul(plan.instances))
    });
    if bytes > limits::MAX_EXPANDED_TEXT_BYTES {
        report.error(
            pos,
            &Path::ROOT.key("tasks"),
            format!(
                "the workflow's commands, env values and worker inputs expand to {bytes} bytes, \
                 more than the limit of {}",
                limits::MAX_EXPANDED_TEXT_BYTES
            ),
        );
    }
}
