//! Checks of templated values (`run`, `env` values, `working_dir`): every `${{ ... }}` must
//! name a declared param, a dimension of the task's own matrix, an output of a non-matrix
//! upstream task, `run.id` or `workflow.name`. Also turns checked pieces into a
//! [`Template`] for one task instance.

use std::collections::HashMap;

use indexmap::IndexMap;

use crate::check::graph::TaskGraph;
use crate::expr::{self, Expr, Piece};
use crate::names::shorten;
use crate::raw::Sp;
use crate::report::{Report, did_you_mean, one_of};
use crate::spec::{ParamSpec, TaskIndex};
use crate::template::{Segment, Template};

/// A template whose references have all been checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Checked {
    pieces: Vec<Piece>,
}

/// A task as seen from templates of other tasks.
pub(super) struct TaskInfo<'a> {
    /// The task id.
    pub id: &'a str,
    /// Its matrix dimensions with their values (empty for a non-matrix task).
    pub matrix: &'a [(String, Vec<String>)],
    /// Number of instances after expansion.
    pub instances: u64,
}

/// Where a template is used.
pub(super) enum Scope<'s> {
    /// In `defaults`: only params, `run.id` and `workflow.name`.
    Defaults,
    /// In task number `task`.
    Task {
        /// Index of the task.
        task: usize,
        /// Task index by id.
        by_id: &'s HashMap<&'s str, usize>,
    },
}

/// What templates are checked against.
pub(super) struct Context<'a, 'g> {
    /// Declared params.
    pub params: &'a IndexMap<String, ParamSpec>,
    /// Every task, in file order.
    pub tasks: &'a [TaskInfo<'a>],
    /// The task graph.
    pub graph: &'g mut TaskGraph,
}

impl Context<'_, '_> {
    /// Parses and checks `text` (at `path`), reporting every problem. Pieces with errors are
    /// dropped from the result (which is only used when the file has no error).
    pub(super) fn check(
        &mut self,
        report: &mut Report,
        text: &Sp<String>,
        path: &str,
        scope: &Scope<'_>,
    ) -> Checked {
        let (pieces, errors) = expr::parse(&text.value);
        for error in errors {
            report.push(text.pos, path, error.message, error.help);
        }
        let mut checked = Vec::with_capacity(pieces.len());
        for piece in pieces {
            let ok = match &piece {
                Piece::Text(_) => true,
                Piece::Expr(expr) => self.check_expr(report, expr, text, path, scope),
            };
            if ok {
                checked.push(piece);
            }
        }
        Checked { pieces: checked }
    }

    fn check_expr(
        &mut self,
        report: &mut Report,
        expr: &Expr,
        text: &Sp<String>,
        path: &str,
        scope: &Scope<'_>,
    ) -> bool {
        let source = expr.source();
        let fail = |report: &mut Report, message: String, help: Option<String>| {
            report.push(text.pos, path, message, help);
            false
        };
        match (expr, scope) {
            (Expr::RunId | Expr::WorkflowName, _) => true,
            (Expr::Param(name), _) => {
                if self.params.contains_key(name) {
                    return true;
                }
                let help = did_you_mean(name, self.params.keys().map(String::as_str))
                    .unwrap_or_else(|| format!("declare it under `params:`, e.g. `{name}: ~`"));
                let declared = if self.params.is_empty() {
                    "the workflow declares no params".to_string()
                } else {
                    let names: Vec<&str> = self.params.keys().map(String::as_str).collect();
                    format!("declared params are {}", one_of(&names))
                };
                fail(
                    report,
                    format!("`{source}` uses param `{name}`, which is not declared; {declared}"),
                    Some(help),
                )
            }
            (Expr::Matrix(_) | Expr::Output { .. }, Scope::Defaults) => fail(
                report,
                format!("`{source}` cannot be used in `defaults`: its value depends on the task"),
                Some("set this value in the task's own fields instead".to_string()),
            ),
            (Expr::Matrix(dimension), Scope::Task { task, .. }) => {
                let info = &self.tasks[*task];
                if info.matrix.is_empty() {
                    return fail(
                        report,
                        format!("`{source}` is used in task `{}`, which has no `matrix`", info.id),
                        None,
                    );
                }
                if info.matrix.iter().any(|(name, _)| name == dimension) {
                    return true;
                }
                let names: Vec<&str> = info.matrix.iter().map(|(name, _)| name.as_str()).collect();
                fail(
                    report,
                    format!(
                        "`{source}`: task `{}` has no matrix dimension `{dimension}`; its \
                         dimensions are {}",
                        info.id,
                        one_of(&names)
                    ),
                    did_you_mean(dimension, names.iter().copied()),
                )
            }
            (Expr::Output { task: target, .. }, Scope::Task { task, by_id }) => {
                let id = self.tasks[*task].id;
                let Some(&target_index) = by_id.get(target.as_str()) else {
                    return fail(
                        report,
                        format!(
                            "`{source}` reads task `{}`, which is not a task of this workflow",
                            shorten(target)
                        ),
                        did_you_mean(target, self.tasks.iter().map(|t| t.id)),
                    );
                };
                if target_index == *task {
                    return fail(
                        report,
                        format!("`{source}`: task `{id}` cannot read its own outputs"),
                        None,
                    );
                }
                let target_info = &self.tasks[target_index];
                if !target_info.matrix.is_empty() {
                    return fail(
                        report,
                        format!(
                            "`{source}` reads task `{target}`, which is a matrix task ({} \
                             instances): the outputs of a matrix task cannot be referenced",
                            target_info.instances
                        ),
                        Some(format!(
                            "publish the value from a task without `matrix` that needs `{target}`"
                        )),
                    );
                }
                if self.graph.is_upstream(target_index, *task) {
                    return true;
                }
                fail(
                    report,
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
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.len() as u64,
                Piece::Expr(Expr::Matrix(dimension)) => matrix
                    .iter()
                    .find(|(name, _)| name == dimension)
                    .and_then(|(_, values)| values.iter().map(String::len).max())
                    .unwrap_or(0) as u64,
                Piece::Expr(_) => 0,
            })
            .sum()
    }

    /// The template of one instance: matrix values substituted into the text (`combination`
    /// gives this instance's value per dimension), outputs pointed at the instance index of
    /// their task (`first_instance` by task id; referenced tasks have one instance).
    pub(super) fn instantiate(
        &self,
        combination: &[(String, String)],
        first_instance: &HashMap<&str, TaskIndex>,
    ) -> Template {
        let mut segments: Vec<Segment> = Vec::with_capacity(self.pieces.len());
        let push_text = |segments: &mut Vec<Segment>, text: &str| {
            if let Some(Segment::Text(last)) = segments.last_mut() {
                last.push_str(text);
            } else {
                segments.push(Segment::Text(text.to_string()));
            }
        };
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => push_text(&mut segments, text),
                Piece::Expr(Expr::Matrix(dimension)) => {
                    let value = combination
                        .iter()
                        .find(|(name, _)| name == dimension)
                        .map_or("", |(_, value)| value.as_str());
                    push_text(&mut segments, value);
                }
                Piece::Expr(Expr::Param(name)) => segments.push(Segment::Param(name.clone())),
                Piece::Expr(Expr::Output { task, key }) => {
                    if let Some(&index) = first_instance.get(task.as_str()) {
                        segments.push(Segment::TaskOutput {
                            task: index,
                            key: key.clone(),
                        });
                    }
                }
                Piece::Expr(Expr::RunId) => segments.push(Segment::RunId),
                Piece::Expr(Expr::WorkflowName) => segments.push(Segment::WorkflowName),
            }
        }
        Template { segments }
    }
}
