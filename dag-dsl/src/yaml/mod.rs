//! Step 1 of compiling: file text → a YAML tree in which every node (keys included) carries
//! its line and column.
//!
//! The tree is built from the events of `granit-parser`, the YAML parser of `serde-saphyr`
//! (re-exported by it). Deserializing the same tree through `serde-saphyr`'s `Spanned<T>` took
//! about three times longer (1.4 s instead of 0.45 s for a 100,000-task file), too slow for
//! the compile budget. Duplicate keys are kept in the tree (and reported later with both
//! positions) so that one run finds all of them; YAML syntax errors and exceeded limits stop
//! parsing and become one [`Diagnostic`].

mod builder;
mod scalar;

use std::borrow::Cow;

use crate::diagnostic::Diagnostic;

/// A YAML node with its position. Kept small (48 bytes): a 100,000-task file has about
/// 800,000 of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Yaml<'a> {
    /// The value.
    pub value: Node<'a>,
    /// 1-based line where the node is used (for an alias: the alias itself).
    line: u32,
    /// 1-based column, in characters.
    column: u32,
    /// Byte offset of a scalar's text where it is defined (for an alias: the anchored node);
    /// `u32::MAX` when unknown.
    source_start: u32,
    /// Byte length of that text.
    source_len: u32,
}

impl<'a> Yaml<'a> {
    /// A node at `pos` whose text (for scalars) is `source` (byte offset, byte length).
    fn new(value: Node<'a>, pos: Pos, source: Option<(usize, usize)>) -> Yaml<'a> {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (source_start, source_len) =
            source.map_or((u32::MAX, 0), |(start, len)| (narrow(start), narrow(len)));
        Yaml {
            value,
            line: narrow(pos.line),
            column: narrow(pos.column),
            source_start,
            source_len,
        }
    }

    /// Moves the node to `pos` (an alias is where it is used).
    fn set_pos(&mut self, pos: Pos) {
        self.line = u32::try_from(pos.line).unwrap_or(u32::MAX);
        self.column = u32::try_from(pos.column).unwrap_or(u32::MAX);
    }
}

/// A YAML value. Scalars keep their type as resolved by the YAML 1.2 core schema;
/// [`scalar_text`] recovers the text as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
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
    /// A string (quoted or plain), borrowed from the file text when possible.
    Str(Cow<'a, str>),
    /// A sequence.
    Seq(Vec<Yaml<'a>>),
    /// A mapping, entries in file order, duplicate keys kept.
    Map(Vec<(Yaml<'a>, Yaml<'a>)>),
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
    pub(crate) fn of(node: &Yaml<'_>) -> Pos {
        Pos {
            line: node.line as usize,
            column: node.column as usize,
        }
    }
}

impl Node<'_> {
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
/// number or boolean (`1.10` stays `1.10`, `0x1F` stays `0x1F`). `None` for null, lists and
/// mappings.
pub(crate) fn scalar_text(node: &Yaml<'_>, source: &str) -> Option<String> {
    match &node.value {
        Node::Str(text) => Some(text.to_string()),
        Node::Null | Node::Seq(_) | Node::Map(_) => None,
        Node::Bool(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
        Node::Int(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
        Node::UInt(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
        Node::Float(value) => Some(source_slice(node, source).unwrap_or_else(|| value.to_string())),
    }
}

/// Like [`scalar_text`], borrowing a string's value instead of copying it.
pub(crate) fn scalar_cow<'n>(node: &'n Yaml<'_>, source: &str) -> Option<Cow<'n, str>> {
    match &node.value {
        Node::Str(text) => Some(Cow::Borrowed(text)),
        _ => scalar_text(node, source).map(Cow::Owned),
    }
}

/// The source text of a plain scalar (where it is defined, for an alias).
fn source_slice(node: &Yaml<'_>, source: &str) -> Option<String> {
    if node.source_start == u32::MAX {
        return None;
    }
    let start = node.source_start as usize;
    let text = source
        .get(start..start.checked_add(node.source_len as usize)?)?
        .trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Parses `text` into a spanned tree. A text without a document (empty, or only comments)
/// gives a [`Node::Null`] root at 1:1.
///
/// Errors: a YAML syntax error, more than one document, an unsupported tag, or a breach of
/// [`crate::limits`] (nodes, nesting depth), as one [`Diagnostic`] where it was found.
pub(crate) fn parse<'a>(file: &str, text: &'a str) -> Result<Yaml<'a>, Diagnostic> {
    match builder::build(text) {
        Ok(Some(root)) => Ok(root),
        Ok(None) => Ok(Yaml::new(Node::Null, Pos { line: 1, column: 1 }, None)),
        Err(error) => Err(Diagnostic {
            file: file.to_string(),
            line: error.pos.line,
            column: error.pos.column,
            help: unquoted_star_help(text, error.pos),
            path: String::new(),
            message: error.message,
        }),
    }
}

/// A hint for a syntax error at a plain value starting with `*` (YAML reads it as an alias),
/// which is how an unquoted cron expression fails (`cron: * * * * *`).
fn unquoted_star_help(text: &str, pos: Pos) -> Option<String> {
    let line = text.lines().nth(pos.line.checked_sub(1)?)?;
    let rest: String = line.chars().skip(pos.column.checked_sub(1)?).collect();
    let value = rest.trim_end();
    (value.starts_with("* ") || value.starts_with("*/")).then(|| {
        format!(
            "a plain value starting with `*` is a YAML alias: quote it, e.g. `\"{}\"`",
            crate::names::shorten(value)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Yaml<'_> {
        parse("f.yaml", text).unwrap()
    }

    fn map<'n, 'a>(node: &'n Yaml<'a>) -> &'n [(Yaml<'a>, Yaml<'a>)] {
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
        assert_eq!(
            Pos::of(&task[0].1),
            Pos {
                line: 4,
                column: 10
            }
        );
    }

    #[test]
    fn scalars_keep_their_source_text() {
        let text = "a: 1.10\nb: yes\nc: 'q'\nd: 0x1F\ne: ~\nf: True\n";
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
                None,
                Some("True".to_string()),
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
    fn an_unquoted_cron_expression_gets_a_hint() {
        let error = parse("f.yaml", "cron: */5 * * * *\n").unwrap_err();
        assert_eq!(
            error.help.as_deref(),
            Some(
                "a plain value starting with `*` is a YAML alias: quote it, e.g. `\"*/5 * * * *\"`"
            ),
            "{error}"
        );
        let error = parse("f.yaml", "a: *\n").unwrap_err();
        assert_eq!(error.help, None, "{error}");
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let text = "base: &b { x: 1, y: 2 }\nuse: { <<: *b, y: 3 }\nlist: [&v 7, *v]\n";
        let root = parse_ok(text);
        let entries = map(&root);
        let merged: Vec<(String, Option<String>)> = map(&entries[1].1)
            .iter()
            .map(|(k, v)| (scalar_text(k, text).unwrap(), scalar_text(v, text)))
            .collect();
        assert_eq!(
            merged,
            vec![
                ("x".to_string(), Some("1".to_string())),
                ("y".to_string(), Some("3".to_string()))
            ]
        );
        let Node::Seq(items) = &entries[2].1.value else {
            panic!("expected a list");
        };
        assert_eq!(items[1].value, Node::Int(7));
        assert_eq!(
            Pos::of(&items[1]),
            Pos {
                line: 3,
                column: 14
            }
        );
    }

    #[test]
    fn quoted_and_tagged_scalars_are_strings() {
        let root = parse_ok("a: '1'\nb: !!str 2\nc: !!int '3'\n");
        let values: Vec<&Node> = map(&root).iter().map(|(_, v)| &v.value).collect();
        assert_eq!(
            values,
            [
                &Node::Str("1".into()),
                &Node::Str("2".into()),
                &Node::Int(3)
            ]
        );
        let error = parse("f.yaml", "a: !custom x\n").unwrap_err();
        assert!(
            error.message.starts_with("unsupported tag `!custom`"),
            "{error}"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let deep = "[".repeat(80) + &"]".repeat(80);
        let error = parse("f.yaml", &deep).unwrap_err();
        assert!(error.message.contains("deeper than"), "{error}");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                    g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        let error = parse("f.yaml", bomb).unwrap_err();
        assert!(error.message.contains("aliases expanded"), "{error}");
        let error = parse("f.yaml", "a: 1\n---\nb: 2\n").unwrap_err();
        assert!(error.message.contains("one YAML document"), "{error}");
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(parse_ok("  \n").value, Node::Null);
    }
}
