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

/// The expression as written canonically, inside `${{ }}`.
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Param(name) => write!(f, "${{{{ params.{name} }}}}"),
            Expr::Matrix(name) => write!(f, "${{{{ matrix.{name} }}}}"),
            Expr::Output { task, key } => write!(f, "${{{{ tasks.{task}.outputs.{key} }}}}"),
            Expr::RunId => f.write_str("${{ run.id }}"),
            Expr::WorkflowName => f.write_str("${{ workflow.name }}"),
        }
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
    /// Where the malformed `${{` starts in the text, in characters.
    pub offset: usize,
}

/// Splits `text` into literal text and references, each with the offset (in characters)
/// where it starts. Every malformed `${{ ... }}` gives one error (the rest of the text is
/// still parsed); an unclosed `${{` ends the parse.
pub(crate) fn parse(text: &str) -> (Vec<(usize, Piece)>, Vec<TemplateError>) {
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    // Characters of `text` before `rest`.
    let mut consumed = 0;
    while let Some(start) = rest.find(OPEN) {
        let offset = consumed + rest[..start].chars().count();
        if start > 0 {
            pieces.push((consumed, Piece::Text(rest[..start].to_string())));
        }
        let after_open = &rest[start + OPEN.len()..];
        let Some(end) = after_open.find(CLOSE) else {
            errors.push(TemplateError {
                offset,
                message: format!(
                    "unclosed `${{{{` in `{}`: expected `}}}}` to end the expression",
                    shorten(&rest[start..])
                ),
                help: Some(format!(
                    "expressions are `${{{{ EXPR }}}}` with EXPR one of {ACCEPTED_FORMS}"
                )),
            });
            return (pieces, errors);
        };
        let inner = &after_open[..end];
        match parse_expr(inner) {
            Ok(expr) => pieces.push((offset, Piece::Expr(expr))),
            Err(mut error) => {
                error.offset = offset;
                errors.push(error);
            }
        }
        consumed = offset + OPEN.len() + inner.chars().count() + CLOSE.len();
        rest = &after_open[end + CLOSE.len()..];
    }
    if !rest.is_empty() {
        pieces.push((consumed, Piece::Text(rest.to_string())));
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
            offset: 0,
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
            let message = if trimmed.is_empty() {
                format!("empty expression `${{{{ }}}}`: expected {ACCEPTED_FORMS}")
            } else {
                format!(
                    "unknown expression `${{{{ {} }}}}`: expected {ACCEPTED_FORMS}",
                    shorten(trimmed)
                )
            };
            return Err(TemplateError {
                message,
                offset: 0,
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
            vec![
                head.clone(),
                task.to_string(),
                "outputs".into(),
                key.to_string(),
            ]
        }
        ("tasks", [_, task, key]) => {
            vec![
                head.clone(),
                task.to_string(),
                "outputs".into(),
                key.to_string(),
            ]
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
        let offsets: Vec<usize> = pieces.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(offsets, [0, 2, 19, 20, 37, 70, 71, 84, 85]);
        let pieces: Vec<Piece> = pieces.into_iter().map(|(_, piece)| piece).collect();
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
        assert_eq!(pieces, vec![(0, text("echo ${HOME} $((1+2)) {{x}}"))]);
        assert_eq!(parse("").0, vec![]);
    }

    #[test]
    fn unknown_expressions_list_the_accepted_forms() {
        let (_, errors) = parse("x ${{ param.day }} y ${{ nope }}");
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].offset, errors[1].offset), (2, 21));
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
        let (pieces, errors) = parse("é ${{ params.day");
        assert_eq!(pieces, vec![(0, text("é "))]);
        assert_eq!(errors[0].offset, 2);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.starts_with("unclosed `${{`"),
            "{:?}",
            errors[0]
        );
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
        assert_eq!(expr.to_string(), "${{ tasks.a.outputs.k }}");
        assert_eq!(parse(&expr.to_string()).0, vec![(0, Piece::Expr(expr))]);
    }
}
