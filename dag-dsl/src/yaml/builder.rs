//! Builds the spanned tree from the event stream of `granit-parser` (the YAML parser under
//! `serde-saphyr`, re-exported by it): scalars resolved by the core schema, anchors and
//! aliases expanded, merge keys (`<<`) applied, duplicate keys kept for the converter to
//! report, sizes capped by [`limits`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::scalar::{float, integer, resolve_plain};
use super::{Node, Pos, Yaml};
use crate::limits;

/// Why the text could not be turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BuildError {
    /// Where.
    pub pos: Pos,
    /// What was expected and found.
    pub message: String,
}

/// The tree of `text`; `None` when it holds no document (empty, or only comments).
pub(super) fn build(text: &str) -> Result<Option<Yaml<'_>>, BuildError> {
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
    };
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|error| BuildError {
            pos: marker_pos(error.marker().line(), error.marker().col()),
            message: format!("invalid YAML: {}", error.info()),
        })?;
        builder.event(event, span)?;
    }
    Ok(builder.root)
}

/// The 1-based position of a parser marker (line 1-based, column 0-based).
fn marker_pos(line: usize, col: usize) -> Pos {
    Pos {
        line,
        column: col + 1,
    }
}

fn span_pos(span: &Span) -> Pos {
    marker_pos(span.start.line(), span.start.col())
}

/// Where the node's explicit tag is written, if it has one.
fn tag_pos(span: &Span) -> Option<Pos> {
    span.tag_start
        .map(|marker| marker_pos(marker.line(), marker.col()))
}

/// A collection being read.
enum Frame<'a> {
    Seq {
        pos: Pos,
        anchor: usize,
        /// Node count when the collection started (for the size of an anchored subtree).
        nodes_before: usize,
        items: Vec<Yaml<'a>>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        nodes_before: usize,
        entries: Vec<(Yaml<'a>, Yaml<'a>)>,
        /// Merged entries (`<<`), each with the number of explicit entries before it.
        merges: Vec<(usize, Vec<(Yaml<'a>, Yaml<'a>)>)>,
        /// The key read, waiting for its value; `true` when it is a merge key `<<`.
        key: Option<(Yaml<'a>, bool)>,
    },
}

struct Builder<'a> {
    stack: Vec<Frame<'a>>,
    /// Anchored nodes by parser id, with their number of nodes.
    anchors: HashMap<usize, (Yaml<'a>, usize)>,
    /// Nodes so far, alias expansions included.
    nodes: usize,
    root: Option<Yaml<'a>>,
    documents: usize,
}

impl<'a> Builder<'a> {
    fn event(&mut self, event: Event<'a>, span: Span) -> Result<(), BuildError> {
        let pos = span_pos(&span);
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(BuildError {
                        pos,
                        message: "expected one YAML document, found more than one (a second \
                                  `---` document)"
                            .to_string(),
                    });
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.count(1, pos)?;
                let is_merge_key = style == ScalarStyle::Plain && tag.is_none() && value == "<<";
                let node = scalar(value, style, tag.as_deref(), pos, tag_pos(&span))?;
                let source = match (span.start.byte_offset(), span.end.byte_offset()) {
                    (Some(start), Some(end)) if end >= start => Some((start, end - start)),
                    _ => None,
                };
                let yaml = Yaml::new(node, pos, source);
                if anchor != 0 {
                    self.anchors.insert(anchor, (yaml.clone(), 1));
                }
                self.push(yaml, is_merge_key)?;
            }
            Event::Alias(id) => {
                let size = self.anchors.get(&id).map_or(0, |(_, size)| *size);
                self.count(size, pos)?;
                let Some((anchored, _)) = self.anchors.get(&id) else {
                    return Err(BuildError {
                        pos,
                        message: "invalid YAML: alias to an unknown anchor".to_string(),
                    });
                };
                let mut node = anchored.clone();
                node.set_pos(pos);
                self.push(node, false)?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                collection_tag(tag.as_deref(), "seq", tag_pos(&span).unwrap_or(pos))?;
                self.open(pos)?;
                self.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    nodes_before: self.nodes - 1,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(_, anchor, tag) => {
                collection_tag(tag.as_deref(), "map", tag_pos(&span).unwrap_or(pos))?;
                self.open(pos)?;
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    nodes_before: self.nodes - 1,
                    entries: Vec::new(),
                    merges: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, nodes_before) = match self.stack.pop() {
                    Some(Frame::Seq {
                        pos,
                        anchor,
                        nodes_before,
                        items,
                    }) => (Yaml::new(Node::Seq(items), pos, None), anchor, nodes_before),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        nodes_before,
                        entries,
                        merges,
                        ..
                    }) => (
                        Yaml::new(Node::Map(merge(entries, merges)), pos, None),
                        anchor,
                        nodes_before,
                    ),
                    None => return Ok(()),
                };
                if anchor != 0 {
                    self.anchors
                        .insert(anchor, (node.clone(), self.nodes - nodes_before));
                }
                self.push(node, false)?;
            }
            // Stream boundaries, document ends and presentation events (comments, anchor
            // names) carry no data.
            _ => {}
        }
        Ok(())
    }

    /// Counts `added` nodes against [`limits::MAX_YAML_NODES`].
    fn count(&mut self, added: usize, pos: Pos) -> Result<(), BuildError> {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > limits::MAX_YAML_NODES {
            return Err(BuildError {
                pos,
                message: format!(
                    "the file has more than {} YAML values (keys, scalars, lists and mappings, \
                     aliases expanded), the most a workflow file may have",
                    limits::MAX_YAML_NODES
                ),
            });
        }
        Ok(())
    }

    /// Starts a collection: counts it and checks the nesting depth.
    fn open(&mut self, pos: Pos) -> Result<(), BuildError> {
        self.count(1, pos)?;
        if self.stack.len() >= limits::MAX_YAML_DEPTH {
            return Err(BuildError {
                pos,
                message: format!(
                    "the YAML nests lists and mappings deeper than {} levels",
                    limits::MAX_YAML_DEPTH
                ),
            });
        }
        Ok(())
    }

    /// Adds a finished node to the collection being read (or makes it the root).
    fn push(&mut self, node: Yaml<'a>, is_merge_key: bool) -> Result<(), BuildError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => *key = Some((node, is_merge_key)),
                Some((merge_key, true)) => {
                    merges.push((entries.len(), merge_source(node, Pos::of(&merge_key))?));
                }
                Some((key, false)) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

/// The entries a `<<` value brings: one mapping, or a list of mappings (earlier ones win).
fn merge_source(node: Yaml<'_>, key_pos: Pos) -> Result<Vec<(Yaml<'_>, Yaml<'_>)>, BuildError> {
    let error = || BuildError {
        pos: key_pos,
        message: "expected a mapping or a list of mappings after the merge key `<<`".to_string(),
    };
    match node.value {
        Node::Map(entries) => Ok(entries),
        Node::Seq(items) => {
            let mut all = Vec::new();
            for item in items {
                match item.value {
                    Node::Map(entries) => all.extend(entries),
                    _ => return Err(error()),
                }
            }
            Ok(all)
        }
        _ => Err(error()),
    }
}

/// The entries of a finished mapping: explicit entries in order, merged entries at the place
/// of their `<<` when no explicit entry (or earlier merged one) has the same key.
fn merge<'a>(
    entries: Vec<(Yaml<'a>, Yaml<'a>)>,
    merges: Vec<(usize, Vec<(Yaml<'a>, Yaml<'a>)>)>,
) -> Vec<(Yaml<'a>, Yaml<'a>)> {
    if merges.is_empty() {
        return entries;
    }
    let mut taken: HashSet<String> = entries.iter().map(|(key, _)| key_text(key)).collect();
    let mut out = Vec::with_capacity(entries.len());
    let mut explicit = entries.into_iter();
    let mut emitted = 0;
    for (before, merged) in merges {
        out.extend(explicit.by_ref().take(before - emitted));
        emitted = before;
        for (key, value) in merged {
            if taken.insert(key_text(&key)) {
                out.push((key, value));
            }
        }
    }
    out.extend(explicit);
    out
}

/// A key's identity for merging.
fn key_text(key: &Yaml<'_>) -> String {
    match &key.value {
        Node::Str(text) => text.to_string(),
        other => format!("{other:?}"),
    }
}

/// The YAML core schema prefix of `!!` tags.
const CORE: &str = "tag:yaml.org,2002:";

/// Resolves a scalar by its style and tag; errors point at the tag (`tag_pos`) when known.
fn scalar<'a>(
    value: Cow<'a, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
    tag_pos: Option<Pos>,
) -> Result<Node<'a>, BuildError> {
    let pos = tag_pos.unwrap_or(pos);
    let Some(tag) = tag else {
        return Ok(if style == ScalarStyle::Plain {
            resolve_plain(value)
        } else {
            Node::Str(value)
        });
    };
    if tag.handle() == "!" && tag.suffix().is_empty() {
        return Ok(Node::Str(value));
    }
    let invalid = |what: &str| BuildError {
        pos,
        message: format!("`{value}` is not a valid {what} (tag `{tag}`)"),
    };
    if tag.handle() != CORE {
        return Err(unsupported(tag, pos));
    }
    match tag.suffix() {
        "str" => Ok(Node::Str(value)),
        "null" => match resolve_plain(Cow::Borrowed(&*value)) {
            Node::Null => Ok(Node::Null),
            _ => Err(invalid("null")),
        },
        "bool" => match resolve_plain(Cow::Borrowed(&*value)) {
            Node::Bool(b) => Ok(Node::Bool(b)),
            _ => Err(invalid("boolean")),
        },
        "int" => integer(&value).ok_or_else(|| invalid("integer")),
        "float" => float(&value)
            .or_else(|| match integer(&value) {
                Some(Node::Int(v)) => Some(Node::Float(v as f64)),
                Some(Node::UInt(v)) => Some(Node::Float(v as f64)),
                other => other,
            })
            .ok_or_else(|| invalid("number")),
        _ => Err(unsupported(tag, pos)),
    }
}

/// Checks the tag of a sequence or mapping: none, or the core one for its kind.
fn collection_tag(tag: Option<&Tag>, kind: &str, pos: Pos) -> Result<(), BuildError> {
    match tag {
        None => Ok(()),
        Some(tag) if tag.handle() == CORE && tag.suffix() == kind => Ok(()),
        Some(tag) => Err(unsupported(tag, pos)),
    }
}

fn unsupported(tag: &Tag, pos: Pos) -> BuildError {
    BuildError {
        pos,
        message: format!(
            "unsupported tag `{tag}`: workflow files use plain YAML values (only the core tags \
             `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq` and `!!map` are accepted)"
        ),
    }
}
