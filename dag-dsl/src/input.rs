//! The `input:` of a worker task: a JSON-like tree whose strings are templates.
//!
//! A worker task's `input:` is a YAML mapping of any nesting. Its string scalars are
//! [`Template`]s (like `run`: params, upstream outputs, `run.id`, `workflow.name`; matrix
//! values are substituted at compile time); numbers, booleans and null are kept as JSON
//! values; mapping keys are literal text. [`InputValue::render`] turns it into the
//! [`serde_json::Value`] handed to the worker.

use serde_json::{Map, Number, Value};

use crate::spec::TaskIndex;
use crate::template::{RenderError, Template, TemplateContext};

/// One node of a worker task's `input:` tree.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    /// `~` / `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number (integer or finite float), as JSON carries it.
    Number(Number),
    /// A string scalar: a template, rendered to a JSON string.
    String(Template),
    /// A list, in file order.
    List(Vec<InputValue>),
    /// A mapping: literal keys (unique) with their values, in file order.
    Map(Vec<(String, InputValue)>),
}

impl Default for InputValue {
    /// An empty mapping (the input of a worker task without `input:`).
    fn default() -> Self {
        InputValue::Map(Vec::new())
    }
}

impl InputValue {
    /// Renders the tree to JSON: every template rendered against `context`, mapping keys
    /// kept as written (a JSON object's keys are not ordered).
    ///
    /// Errors: the first template that cannot be rendered (a missing upstream output or
    /// param), in file order.
    pub fn render(&self, context: &dyn TemplateContext) -> Result<Value, RenderError> {
        Ok(match self {
            InputValue::Null => Value::Null,
            InputValue::Bool(value) => Value::Bool(*value),
            InputValue::Number(number) => Value::Number(number.clone()),
            InputValue::String(template) => Value::String(template.render(context)?),
            InputValue::List(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.render(context))
                    .collect::<Result<_, _>>()?,
            ),
            InputValue::Map(entries) => {
                let mut object = Map::with_capacity(entries.len());
                for (key, value) in entries {
                    object.insert(key.clone(), value.render(context)?);
                }
                Value::Object(object)
            }
        })
    }

    /// The upstream task instances whose outputs the templates of this tree read, in file
    /// order (with repeats).
    pub fn output_dependencies(&self) -> Vec<TaskIndex> {
        let mut out = Vec::new();
        self.visit_templates(&mut |template| out.extend(template.output_dependencies()));
        out
    }

    /// Calls `visit` on every template of the tree, in file order.
    pub fn visit_templates(&self, visit: &mut dyn FnMut(&Template)) {
        match self {
            InputValue::Null | InputValue::Bool(_) | InputValue::Number(_) => {}
            InputValue::String(template) => visit(template),
            InputValue::List(items) => items.iter().for_each(|item| item.visit_templates(visit)),
            InputValue::Map(entries) => entries
                .iter()
                .for_each(|(_, value)| value.visit_templates(visit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Segment;

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

    fn tree() -> InputValue {
        InputValue::Map(vec![
            (
                "table".to_string(),
                InputValue::String(Template {
                    segments: vec![Segment::Text("t_".into()), Segment::Param("day".into())],
                }),
            ),
            ("rows".to_string(), InputValue::Number(Number::from(-3))),
            (
                "opts".to_string(),
                InputValue::List(vec![
                    InputValue::Bool(true),
                    InputValue::Null,
                    InputValue::Number(Number::from_f64(1.5).unwrap()),
                    InputValue::String(Template {
                        segments: vec![Segment::TaskOutput {
                            task: 0,
                            key: "path".into(),
                        }],
                    }),
                    InputValue::Map(vec![(
                        "run".to_string(),
                        InputValue::String(Template {
                            segments: vec![Segment::RunId, Segment::WorkflowName],
                        }),
                    )]),
                ]),
            ),
        ])
    }

    #[test]
    fn renders_every_kind_of_value() {
        assert_eq!(
            tree().render(&Context).unwrap(),
            serde_json::json!({
                "table": "t_2024-01-01",
                "rows": -3,
                "opts": [true, null, 1.5, "/tmp/x", { "run": "r1wf" }],
            })
        );
        assert_eq!(
            InputValue::default().render(&Context).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn a_missing_output_fails_the_rendering() {
        let tree = InputValue::List(vec![InputValue::String(Template {
            segments: vec![Segment::TaskOutput {
                task: 0,
                key: "nope".into(),
            }],
        })]);
        assert_eq!(
            tree.render(&Context).unwrap_err(),
            RenderError::MissingOutput {
                task: "extract".into(),
                key: "nope".into()
            }
        );
    }

    #[test]
    fn output_dependencies_are_found_at_any_depth() {
        assert_eq!(tree().output_dependencies(), vec![0]);
    }
}
