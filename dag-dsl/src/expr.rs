//! Parsing of templated text: literal text with `${{ EXPR }}` references.
//!
//! EXPR (whitespace around it optional) is one of `params.NAME`, `matrix.NAME`,
//! `tasks.ID.outputs.KEY`, `run.id` or `workflow.name`. This module only checks the shape;
//! whether the param is declared or the task is upstream is checked where the template is
//! used ([`crate::check`]).

use crate::names::{NameKind, check, shorten};
use crate::report::suggest;

/// Opens an expression.
const OPEN: &str = "${{";
/// Closes an expression.
const CLOSE: &str = "}}";

/// The accepted forms, for error messages.
pub(crate) const ACCEPTED_FORMS: &str = "`params.NAME`, `matrix.NAME`, `tasks.ID.outputs.KEY`, \
                                         `run.id` or `workflow.name`";

/// A reference inside `${{ }}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `params.NAME`.
    Param(String),
    /// `matrix.NAME`.
    Matrix(String),
    /// `tasks.ID.outputs.KEY`.
    Output {
        /// The task id.
        task: String,
        /// The output key.
        key: String,
    },
    /// `run.id`.
    RunId,
    /// `workflow.name`.
    WorkflowName,
}

impl Expr {
    /// The expression as written canonically, inside `${{ }}`.
    pub(crate) fn source(&self) -> String {
        let inner = match self {
            Expr::Param(name) => format!("params.{name}"),
            Expr::Matrix(name) => format!("matrix.{name}"),
            Expr::Output { task, key } => format!("tasks.{task}.outputs.{key}"),
            Expr::RunId => "run.id".to_string(),
            Expr::WorkflowName => "workflow.name".to_string(),
        };
        format!("${{{{ {inner} }}}}")
    }
}

/// A piece of parsed templated text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text.
    Text(String),
    /// A reference.
    Expr(Expr),
}

/// A malformed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateError {
    /// What was expected and found.
    pub message: String,
    /// An optional hint.
    pub help: Option<String>,
}

/// Splits `text` into literal text and references. Every malformed `${{ ... }}` gives one
/// error (the rest of the text is still parsed); an unclosed `${{` ends the parse.
pub(crate) fn parse(text: &str) -> (Vec<Piece>, Vec<TemplateError>) {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_string()));
        }
        let after_open = &rest[start + OPEN.len()..];
        let Some(end) = after_open.find(CLOSE) else {
            errors.push(TemplateError {
                message: format!(
                    "unclosed `${{{{` in `{}`: expected `}}}}` to end the expression",
                    shorten(&rest[start..])
                ),
                help: Some(format!("expressions are `${{{{ EXPR }}}}` with EXPR one of {ACCEPTED_FORMS}")),
            });
            return (pieces, errors);
        };
        match parse_expr(&after_open[..end]) {
            Ok(expr) => pieces.push(Piece::Expr(expr)),
            Err(error) => errors.push(error),
        }
        rest = &after_open[end + CLOSE.len()..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    (pieces, errors)
}

/// Parses the inside of `${{ }}`.
fn parse_expr(inner: &str) -> Result<Expr, TemplateError> {
    let trimmed = inner.trim();
    let parts: Vec<&str> = trimmed.split('.').collect();
    let name_error = |kind: NameKind, name: &str| {
        check(kind, name).err().map(|message| TemplateError {
            message: format!("in `${{{{ {} }}}}`: {message}", shorten(trimmed)),
            help: None,
        })
    };
    let expr = match parts.as_slice() {
        ["params", name] => match name_error(NameKind::Param, name) {
            Some(error) => return Err(error),
            None => Expr::Param(name.to_string()),
        },
        ["matrix", name] => match name_error(NameKind::MatrixDimension, name) {
            Some(error) => return Err(error),
            None => Expr::Matrix(name.to_string()),
        },
        ["tasks", task, "outputs", key] => {
            if let Some(error) =
                name_error(NameKind::Task, task).or_else(|| name_error(NameKind::OutputKey, key))
            {
                return Err(error);
            }
            Expr::Output {
                task: task.to_string(),
                key: key.to_string(),
            }
        }
        ["run", "id"] => Expr::RunId,
        ["workflow", "name"] => Expr::WorkflowName,
        _ => {
            let found = if trimmed.is_empty() {
                "an empty expression".to_string()
            } else {
                format!("`${{{{ {} }}}}`", shorten(trimmed))
            };
            return Err(TemplateError {
                message: format!("unknown expression {found}: expected {ACCEPTED_FORMS}"),
                help: correction(&parts).map(|fixed| format!("did you mean `${{{{ {fixed} }}}}`?")),
            });
        }
    };
    Ok(expr)
}

/// A likely intended expression for a malformed one (`param.day` → `params.day`).
fn correction(parts: &[&str]) -> Option<String> {
    const HEADS: [&str; 5] = ["params", "matrix", "tasks", "run", "workflow"];
    let head = match parts.first() {
        Some(head) if HEADS.contains(head) => head.to_string(),
        Some(head) => suggest(head, HEADS)?,
        None => return None,
    };
    let fixed: Vec<String> = match (head.as_str(), parts) {
        ("params" | "matrix", [_, name]) => vec![head.clone(), name.to_string()],
        ("tasks", [_, task, outputs, key]) if suggest(outputs, ["outputs"]).is_some() => {
            vec![head.clone(), task.to_string(), "outputs".into(), key.to_string()]
        }
        ("tasks", [_, task, key]) => {
            vec![head.clone(), task.to_string(), "outputs".into(), key.to_string()]
        }
        ("run", [_, id]) if suggest(id, ["id"]).is_some() || *id == "id" => {
            vec!["run".into(), "id".into()]
        }
        ("workflow", [_, name]) if suggest(name, ["name"]).is_some() || *name == "name" => {
            vec!["workflow".into(), "name".into()]
        }
        _ => return None,
    };
    let fixed = fixed.join(".");
    (fixed != parts.join(".")).then_some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_string())
    }

    #[test]
    fn parses_every_form_with_or_without_spaces() {
        let (pieces, errors) = parse(
            "a ${{ params.day }} ${{matrix.shard}}${{ tasks.extract.outputs.path }} ${{ run.id }}/${{workflow.name }}",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            pieces,
            vec![
                text("a "),
                Piece::Expr(Expr::Param("day".into())),
                text(" "),
                Piece::Expr(Expr::Matrix("shard".into())),
                Piece::Expr(Expr::Output {
                    task: "extract".into(),
                    key: "path".into()
                }),
                text(" "),
                Piece::Expr(Expr::RunId),
                text("/"),
                Piece::Expr(Expr::WorkflowName),
            ]
        );
    }

    #[test]
    fn plain_text_and_shell_braces_are_literal() {
        let (pieces, errors) = parse("echo ${HOME} $((1+2)) {{x}}");
        assert!(errors.is_empty());
        assert_eq!(pieces, vec![text("echo ${HOME} $((1+2)) {{x}}")]);
        assert_eq!(parse("").0, vec![]);
    }

    #[test]
    fn unknown_expressions_list_the_accepted_forms() {
        let (_, errors) = parse("x ${{ param.day }} y ${{ nope }}");
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[0].message,
            "unknown expression `${{ param.day }}`: expected `params.NAME`, `matrix.NAME`, \
             `tasks.ID.outputs.KEY`, `run.id` or `workflow.name`"
        );
        assert_eq!(
            errors[0].help.as_deref(),
            Some("did you mean `${{ params.day }}`?")
        );
        assert_eq!(errors[1].help, None);
    }

    #[test]
    fn output_without_outputs_word_is_corrected() {
        let (_, errors) = parse("${{ tasks.extract.path }}");
        assert_eq!(
            errors[0].help.as_deref(),
            Some("did you mean `${{ tasks.extract.outputs.path }}`?")
        );
    }

    #[test]
    fn unclosed_expression_is_an_error() {
        let (pieces, errors) = parse("echo ${{ params.day");
        assert_eq!(pieces, vec![text("echo ")]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("unclosed `${{`"), "{:?}", errors[0]);
    }

    #[test]
    fn empty_expression_and_bad_names_are_errors() {
        assert_eq!(parse("${{ }}").1.len(), 1);
        assert_eq!(parse("${{ params.1x }}").1.len(), 1);
        assert_eq!(parse("${{ tasks.a.outputs.x y }}").1.len(), 1);
    }

    #[test]
    fn source_round_trips() {
        let expr = Expr::Output {
            task: "a".into(),
            key: "k".into(),
        };
        assert_eq!(expr.source(), "${{ tasks.a.outputs.k }}");
        assert_eq!(parse(&expr.source()).0, vec![Piece::Expr(expr)]);
    }
}
