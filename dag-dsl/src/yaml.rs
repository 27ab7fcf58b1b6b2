//! Step 1 of compiling: file text → a YAML tree in which every node (keys included) carries
//! its line and column.
//!
//! Parsing is done by `serde-saphyr` into our own [`Node`] type, whose children are
//! [`serde_saphyr::Spanned`] values. Duplicate keys are passed through to the tree (and
//! reported later with both positions) so that one run finds all of them; YAML syntax errors
//! and exceeded limits stop parsing and become one [`Diagnostic`].

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, DuplicateKeyPolicy, MessageFormatter, Spanned};

use crate::diagnostic::Diagnostic;
use crate::limits;

/// A YAML node with its position.
pub(crate) type Yaml = Spanned<Node>;

/// A YAML value. Scalars keep their resolved type (YAML 1.2 core schema, as `serde-saphyr`
/// resolves it); [`scalar_text`] recovers the text as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `~`, `null` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer above `i64::MAX` (up to `u64::MAX`).
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string (quoted or plain).
    Str(String),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping, entries in file order, duplicate keys kept.
    Map(Vec<(Yaml, Yaml)>),
}

/// A 1-based line and column (in characters) in the file; `0:0` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub(crate) struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Pos {
    /// The position where `node` is used in the file (for an alias: the alias itself).
    pub(crate) fn of(node: &Yaml) -> Pos {
        Pos {
            line: usize::try_from(node.referenced.line()).unwrap_or(usize::MAX),
            column: usize::try_from(node.referenced.column()).unwrap_or(usize::MAX),
        }
    }
}

impl Node {
    /// What this node is, for "expected ..., found ..." messages: `a string`, `a list`, ...
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::UInt(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// The text of a scalar as the file spells it: the value of a string, the source text of a
/// number or boolean (`1.10` stays `1.10`, `yes` stays `yes`). `None` for null, lists and
/// mappings.
pub(crate) fn scalar_text(node: &Yaml, source: &str) -> Option<String> {
    match &node.value {
        Node::Str(text) => Some(text.clone()),
        Node::Null | Node::Seq(_) | Node::Map(_) => None,
        Node::Bool(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
        Node::Int(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
        Node::UInt(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
        Node::Float(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
    }
}

/// The source text of a plain scalar (where it is defined, for an alias), if the parser
/// reported its byte range.
fn source_slice(node: &Yaml, source: &str) -> Option<String> {
    let span = node.defined.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let text = source.get(start..start.checked_add(len)?)?.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Parses `text` into a spanned tree. An empty document gives a [`Node::Null`] root.
///
/// Errors: a YAML syntax error, a document stream with more than one document, or a breach
/// of the parser limits ([`limits`]), as one [`Diagnostic`] at the place the parser reports.
pub(crate) fn parse(file: &str, text: &str) -> Result<Yaml, Diagnostic> {
    if text.trim().is_empty() {
        return Ok(Spanned::new(
            Node::Null,
            serde_saphyr::Location::UNKNOWN,
            serde_saphyr::Location::UNKNOWN,
        ));
    }
    let options = serde_saphyr::options! {
        budget: Some(budget()),
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options::<Yaml>(text, options).map_err(|error| {
        let location = error.location();
        let message = syntax_message(&error);
        Diagnostic {
            file: file.to_string(),
            line: location.map_or(0, |l| usize::try_from(l.line()).unwrap_or(0)),
            column: location.map_or(0, |l| usize::try_from(l.column()).unwrap_or(0)),
            path: String::new(),
            message,
            help: None,
        }
    })
}

/// The message of a parser error: our own words for exceeded limits, the parser's for YAML
/// syntax errors.
fn syntax_message(error: &serde_saphyr::Error) -> String {
    let mut inner = error.without_snippet();
    while let serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let limit = match inner {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Documents { .. } => Some(
                "expected one YAML document, found more than one (a second `---` document)"
                    .to_string(),
            ),
            BudgetBreach::Depth { .. } => Some(format!(
                "the YAML nests lists and mappings deeper than {} levels",
                limits::MAX_YAML_DEPTH
            )),
            BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => Some(format!(
                "the file has more than {} YAML values (keys, scalars, lists and mappings), \
                 the most a workflow file may have",
                limits::MAX_YAML_NODES
            )),
            BudgetBreach::ScalarBytes { .. } => Some(format!(
                "the file's text values add up to more than {} bytes, the most a workflow \
                 file may have",
                limits::MAX_FILE_BYTES
            )),
            other => Some(format!("the file exceeds a YAML parser limit ({other:?})")),
        },
        _ => None,
    };
    limit.unwrap_or_else(|| {
        let text = serde_saphyr::DefaultMessageFormatter.format_message(inner);
        format!("invalid YAML: {text}")
    })
}

/// The parser limits: generous enough for a 100,000-task file, small enough that hostile
/// input cannot exhaust memory (see [`limits`]).
fn budget() -> Budget {
    let mut budget = Budget::default();
    budget.max_events = limits::MAX_YAML_NODES.saturating_mul(2);
    budget.max_nodes = limits::MAX_YAML_NODES;
    budget.max_total_scalar_bytes = limits::MAX_FILE_BYTES;
    budget.max_documents = 1;
    budget.max_depth = limits::MAX_YAML_DEPTH;
    budget
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(i64::try_from(value).map_or(Node::UInt(value), Node::Int))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Node, E> {
        Ok(i64::try_from(value).map_or(Node::Float(value as f64), Node::Int))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Node, E> {
        Ok(u64::try_from(value).map_or(Node::Float(value as f64), |v| {
            i64::try_from(v).map_or(Node::UInt(v), Node::Int)
        }))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Str(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Node, E> {
        Ok(Node::Str(value))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(value).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Yaml>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<Yaml>()? {
            let value = map.next_value::<Yaml>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Yaml {
        parse("f.yaml", text).unwrap()
    }

    fn map(node: &Yaml) -> &[(Yaml, Yaml)] {
        match &node.value {
            Node::Map(entries) => entries,
            other => panic!("expected a map, found {other:?}"),
        }
    }

    #[test]
    fn keys_and_values_have_positions() {
        let root = parse_ok("name: x\ntasks:\n  a:\n    run: echo\n");
        let entries = map(&root);
        assert_eq!(Pos::of(&entries[0].0), Pos { line: 1, column: 1 });
        assert_eq!(Pos::of(&entries[0].1), Pos { line: 1, column: 7 });
        let tasks = map(&entries[1].1);
        assert_eq!(Pos::of(&tasks[0].0), Pos { line: 3, column: 3 });
        let task = map(&tasks[0].1);
        assert_eq!(Pos::of(&task[0].1), Pos { line: 4, column: 10 });
    }

    #[test]
    fn scalars_keep_their_source_text() {
        let text = "a: 1.10\nb: yes\nc: 'q'\nd: 0x1F\ne: ~\n";
        let root = parse_ok(text);
        let texts: Vec<Option<String>> = map(&root)
            .iter()
            .map(|(_, value)| scalar_text(value, text))
            .collect();
        assert_eq!(
            texts,
            vec![
                Some("1.10".to_string()),
                Some("yes".to_string()),
                Some("q".to_string()),
                Some("0x1F".to_string()),
                None
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let root = parse_ok("a: 1\na: 2\n");
        assert_eq!(map(&root).len(), 2);
    }

    #[test]
    fn syntax_error_has_a_position() {
        let error = parse("f.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(error.line > 0, "{error}");
        assert!(error.message.starts_with("invalid YAML: "), "{error}");
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(parse_ok("  \n").value, Node::Null);
    }
}
