//! Checks of templated values (`run`, `env` values, `working_dir`): every `${{ ... }}` must
//! name a declared param, a dimension of the task's own matrix, an output of a non-matrix
//! upstream task, `run.id` or `workflow.name`. Also turns checked pieces into a
//! [`Template`] for one task instance.

use std::collections::HashMap;

use indexmap::IndexMap;

use crate::check::graph::TaskGraph;
use crate::expr::{self, Expr, Piece};
use crate::locate::Locator;
use crate::names::shorten;
use crate::report::{Path, Report, all_of, did_you_mean};
use crate::spec::{ParamSpec, TaskIndex};
use crate::template::{Segment, Template};
use crate::yaml::Pos;

/// A template whose references have all been checked, with output references resolved to
/// task numbers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Checked {
    parts: Vec<Part>,
}

/// A piece of a checked template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Param(String),
    Matrix(String),
    /// An output of task number `task` (a task without matrix).
    Output {
        task: usize,
        key: String,
    },
    RunId,
    WorkflowName,
}

/// An error in a template, at character `offset` of its text.
struct Problem {
    offset: usize,
    message: String,
    help: Option<String>,
}

/// A task as seen from templates of other tasks.
pub(super) struct TaskInfo<'a> {
    /// The task id.
    pub id: &'a str,
    /// Its matrix dimensions with their values (empty for a non-matrix task).
    pub matrix: &'a [(String, Vec<String>)],
}

/// Where a template is used.
pub(super) enum Scope {
    /// In `defaults`: only params, `run.id` and `workflow.name`.
    Defaults,
    /// In task number `task`.
    Task(usize),
}

/// What templates are checked against.
pub(super) struct Context<'a, 'g> {
    /// Declared params.
    pub params: &'a IndexMap<String, ParamSpec>,
    /// Every task, in file order.
    pub tasks: &'a [TaskInfo<'a>],
    /// Task number by id.
    pub by_id: &'a HashMap<&'a str, usize>,
    /// The task graph.
    pub graph: &'g mut TaskGraph,
    /// Finds where expressions start in the file.
    pub locator: &'a Locator<'a>,
}

impl Context<'_, '_> {
    /// Parses and checks `text`, written at `pos`, on field `path`, reporting every problem.
    /// Pieces with errors are dropped from the result (which is only used when the file has
    /// no error).
    pub(super) fn check(
        &mut self,
        report: &mut Report,
        text: &str,
        pos: Pos,
        path: &Path<'_>,
        scope: &Scope,
    ) -> Checked {
        let (pieces, errors) = expr::parse(text);
        let mut problems: Vec<Problem> = errors
            .into_iter()
            .map(|error| Problem {
                offset: error.offset,
                message: error.message,
                help: error.help,
            })
            .collect();
        let mut parts = Vec::with_capacity(pieces.len());
        for (offset, piece) in pieces {
            let part = match piece {
                Piece::Text(text) => Some(Part::Text(text)),
                Piece::Expr(expr) => self.check_expr(&mut problems, expr, offset, scope),
            };
            parts.extend(part);
        }
        // In text order, so errors sharing a position (a value not written verbatim) read in
        // the order of their expressions.
        problems.sort_by_key(|problem| problem.offset);
        for problem in problems {
            let at = self.locator.inside(pos, text, problem.offset);
            report.push(at, path, problem.message, problem.help);
        }
        Checked { parts }
    }

    fn check_expr(
        &mut self,
        problems: &mut Vec<Problem>,
        expr: Expr,
        offset: usize,
        scope: &Scope,
    ) -> Option<Part> {
        // Formatted only when an error is reported.
        let source = &expr;
        let fail = |problems: &mut Vec<Problem>, message: String, help: Option<String>| {
            problems.push(Problem {
                offset,
                message,
                help,
            });
            None
        };
        match (&expr, scope) {
            (Expr::RunId, _) => Some(Part::RunId),
            (Expr::WorkflowName, _) => Some(Part::WorkflowName),
            (Expr::Param(name), _) => {
                if self.params.contains_key(name) {
                    return Some(Part::Param(name.clone()));
                }
                let help = did_you_mean(name, self.params.keys().map(String::as_str))
                    .unwrap_or_else(|| format!("declare it under `params:`, e.g. `{name}: ~`"));
                let declared = if self.params.is_empty() {
                    "the workflow declares no params".to_string()
                } else {
                    let names: Vec<&str> = self.params.keys().map(String::as_str).collect();
                    format!("declared params are {}", all_of(&names))
                };
                fail(
                    problems,
                    format!("`{source}` uses param `{name}`, which is not declared; {declared}"),
                    Some(help),
                )
            }
            (Expr::Matrix(_) | Expr::Output { .. }, Scope::Defaults) => fail(
                problems,
                format!("`{source}` cannot be used in `defaults`: its value depends on the task"),
                Some("set this value in the task's own fields instead".to_string()),
            ),
            (Expr::Matrix(dimension), Scope::Task(task)) => {
                let info = &self.tasks[*task];
                if info.matrix.is_empty() {
                    return fail(
                        problems,
                        format!(
                            "`{source}` is used in task `{}`, which has no `matrix`",
                            info.id
                        ),
                        None,
                    );
                }
                if info.matrix.iter().any(|(name, _)| name == dimension) {
                    return Some(Part::Matrix(dimension.clone()));
                }
                let names: Vec<&str> = info.matrix.iter().map(|(name, _)| name.as_str()).collect();
                fail(
                    problems,
                    format!(
                        "`{source}`: task `{}` has no matrix dimension `{dimension}`; its \
                         dimensions are {}",
                        info.id,
                        all_of(&names)
                    ),
                    did_you_mean(dimension, names.iter().copied()),
                )
            }
            (Expr::Output { task: target, key }, Scope::Task(task)) => {
                let id = self.tasks[*task].id;
                let Some(&target_index) = self.by_id.get(target.as_str()) else {
                    return fail(
                        problems,
                        format!(
                            "`{source}` reads task `{}`, which is not a task of this workflow",
                            shorten(target)
                        ),
                        did_you_mean(target, self.tasks.iter().map(|t| t.id)),
                    );
                };
                if target_index == *task {
                    return fail(
                        problems,
                        format!("`{source}`: task `{id}` cannot read its own outputs"),
                        None,
                    );
                }
                let target_info = &self.tasks[target_index];
                if !target_info.matrix.is_empty() {
                    return fail(
                        problems,
                        format!(
                            "`{source}` reads task `{target}`, which is a matrix task: the \
                             outputs of a matrix task's instances cannot be referenced"
                        ),
                        Some(format!(
                            "publish the value from a task without `matrix` that needs `{target}`"
                        )),
                    );
                }
                if self.graph.is_upstream(target_index, *task) {
                    return Some(Part::Output {
                        task: target_index,
                        key: key.clone(),
                    });
                }
                fail(
                    problems,
                    format!(
                        "`{source}` reads task `{target}`, which is not upstream of task `{id}`"
                    ),
                    Some(format!("add `{target}` to the `needs` of `{id}`")),
                )
            }
        }
    }
}

impl Checked {
    /// Estimated size in bytes of one rendering of this template in an instance of a task
    /// with `matrix` (matrix references count as their longest value).
    pub(super) fn expanded_len(&self, matrix: &[(String, Vec<String>)]) -> u64 {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.len() as u64,
                Part::Matrix(dimension) => matrix
                    .iter()
                    .find(|(name, _)| name == dimension)
                    .and_then(|(_, values)| values.iter().map(String::len).max())
                    .unwrap_or(0) as u64,
                _ => 0,
            })
            .sum()
    }

    /// The template of one instance: matrix values substituted into the text (`combination`
    /// gives this instance's value per dimension), outputs pointed at the instance of their
    /// task (`first_instance` by task number; referenced tasks have one instance).
    pub(super) fn instantiate(
        &self,
        combination: &[(String, String)],
        first_instance: &[TaskIndex],
    ) -> Template {
        let mut segments: Vec<Segment> = Vec::with_capacity(self.parts.len());
        let push_text = |segments: &mut Vec<Segment>, text: &str| {
            if let Some(Segment::Text(last)) = segments.last_mut() {
                last.push_str(text);
            } else {
                segments.push(Segment::Text(text.to_string()));
            }
        };
        for part in &self.parts {
            match part {
                Part::Text(text) => push_text(&mut segments, text),
                Part::Matrix(dimension) => {
                    let value = combination
                        .iter()
                        .find(|(name, _)| name == dimension)
                        .map_or("", |(_, value)| value.as_str());
                    push_text(&mut segments, value);
                }
                Part::Param(name) => segments.push(Segment::Param(name.clone())),
                Part::Output { task, key } => {
                    if let Some(&index) = first_instance.get(*task) {
                        segments.push(Segment::TaskOutput {
                            task: index,
                            key: key.clone(),
                        });
                    }
                }
                Part::RunId => segments.push(Segment::RunId),
                Part::WorkflowName => segments.push(Segment::WorkflowName),
            }
        }
        Template { segments }
    }
}
