//! Templated text: `${{ params.day }}`, `${{ tasks.extract.outputs.path }}`, `${{ run.id }}`.
//!
//! Templates are parsed and checked by [`crate::compile`]; matrix values (`${{ matrix.shard }}`)
//! are substituted at compile time, so a [`Template`] only holds what is known at run time.

use crate::spec::TaskIndex;

/// A checked template: literal text and references resolved at run time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// The pieces, in order; rendering concatenates them.
    pub segments: Vec<Segment>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text (matrix values are already substituted into it).
    Text(String),
    /// `${{ params.NAME }}`: a param of the run (declared, checked at compile time).
    Param(String),
    /// `${{ tasks.ID.outputs.KEY }}`: an output of an upstream task instance.
    TaskOutput {
        /// The upstream task instance (an ancestor of the task that holds the template).
        task: TaskIndex,
        /// The output key, as written by the task to `$TANDEM_OUTPUT`.
        key: String,
    },
    /// `${{ run.id }}`: the run id.
    RunId,
    /// `${{ workflow.name }}`: the workflow's name.
    WorkflowName,
}

/// What a template is rendered against.
pub trait TemplateContext {
    /// The value of a run param.
    fn param(&self, name: &str) -> Option<&str>;
    /// The value of output `key` of task instance `task`, if that task has published it.
    fn task_output(&self, task: TaskIndex, key: &str) -> Option<&str>;
    /// The task instance id of `task`, used in error messages.
    fn task_id(&self, task: TaskIndex) -> &str;
    /// The run id.
    fn run_id(&self) -> &str;
    /// The workflow's name.
    fn workflow_name(&self) -> &str;
}

/// A template that cannot be rendered because a value it needs does not exist at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The referenced upstream task has not published that output (it never wrote
    /// `KEY=...` to `$TANDEM_OUTPUT`, or it did not succeed).
    #[error(
        "`${{{{ tasks.{task}.outputs.{key} }}}}` has no value: task `{task}` did not publish output `{key}`"
    )]
    MissingOutput {
        /// The upstream task instance id.
        task: String,
        /// The output key.
        key: String,
    },
    /// A param has no value (cannot happen for params resolved by
    /// [`crate::WorkflowSpec::resolve_params`]).
    #[error("`${{{{ params.{name} }}}}` has no value")]
    MissingParam {
        /// The param name.
        name: String,
    },
}

impl Template {
    /// A template made of one literal text.
    pub fn literal(text: impl Into<String>) -> Template {
        Template {
            segments: vec![Segment::Text(text.into())],
        }
    }

    /// Whether the template has no run-time reference (renders to the same text always).
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|segment| matches!(segment, Segment::Text(_)))
    }

    /// The upstream task instances whose outputs this template reads.
    pub fn output_dependencies(&self) -> impl Iterator<Item = TaskIndex> + '_ {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::TaskOutput { task, .. } => Some(*task),
            _ => None,
        })
    }

    /// Renders the template. Errors name the missing output or param.
    pub fn render(&self, context: &dyn TemplateContext) -> Result<String, RenderError> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Param(name) => match context.param(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(RenderError::MissingParam { name: name.clone() }),
                },
                Segment::TaskOutput { task, key } => match context.task_output(*task, key) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(RenderError::MissingOutput {
                            task: context.task_id(*task).to_string(),
                            key: key.clone(),
                        });
                    }
                },
                Segment::RunId => out.push_str(context.run_id()),
                Segment::WorkflowName => out.push_str(context.workflow_name()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Context;

    impl TemplateContext for Context {
        fn param(&self, name: &str) -> Option<&str> {
            (name == "day").then_some("2024-01-01")
        }
        fn task_output(&self, task: TaskIndex, key: &str) -> Option<&str> {
            (task == 0 && key == "path").then_some("/tmp/x")
        }
        fn task_id(&self, _task: TaskIndex) -> &str {
            "extract"
        }
        fn run_id(&self) -> &str {
            "r1"
        }
        fn workflow_name(&self) -> &str {
            "wf"
        }
    }

    #[test]
    fn renders_every_segment_kind() {
        let template = Template {
            segments: vec![
                Segment::Text("x ".into()),
                Segment::Param("day".into()),
                Segment::Text(" ".into()),
                Segment::TaskOutput {
                    task: 0,
                    key: "path".into(),
                },
                Segment::Text(" ".into()),
                Segment::RunId,
                Segment::WorkflowName,
            ],
        };
        assert_eq!(
            template.render(&Context).unwrap(),
            "x 2024-01-01 /tmp/x r1wf"
        );
    }

    #[test]
    fn missing_output_names_task_and_key() {
        let template = Template {
            segments: vec![Segment::TaskOutput {
                task: 0,
                key: "nope".into(),
            }],
        };
        let error = template.render(&Context).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`${{ tasks.extract.outputs.nope }}` has no value: task `extract` did not publish output `nope`"
        );
    }
}
