//! Collecting errors while compiling: every check adds to one [`Report`] instead of stopping,
//! and [`Report::finish`] sorts them by position into [`Diagnostics`].

use std::fmt;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::names::shorten;
use crate::yaml::Pos;

/// A field path like `tasks.load.needs[1]`, built on the stack as the checks descend and
/// only turned into text when an error is reported (most paths never are).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    /// The whole file (displayed as nothing).
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    /// The field or entry `key` below this path: `tasks` → `tasks.load`.
    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }

    /// The list item `index` below this path: `needs` → `needs[1]`.
    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at_root = match self.parent {
            Some(parent) => {
                parent.fmt(f)?;
                matches!(parent.segment, Segment::Root)
            }
            None => true,
        };
        match self.segment {
            Segment::Root => Ok(()),
            Segment::Key(key) if at_root => f.write_str(&shorten(key)),
            Segment::Key(key) => write!(f, ".{}", shorten(key)),
            Segment::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// The errors found so far in one file.
#[derive(Debug)]
pub(crate) struct Report {
    file: String,
    errors: Vec<(Pos, Diagnostic)>,
}

impl Report {
    /// An empty report for `file` (the name shown in messages).
    pub(crate) fn new(file: &str) -> Report {
        Report {
            file: file.to_string(),
            errors: Vec::new(),
        }
    }

    /// Records an error at `pos` on field `path`.
    pub(crate) fn error(&mut self, pos: Pos, path: &Path<'_>, message: impl Into<String>) {
        self.push(pos, path, message.into(), None);
    }

    /// Records an error with a hint.
    pub(crate) fn error_with_help(
        &mut self,
        pos: Pos,
        path: &Path<'_>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(pos, path, message.into(), Some(help.into()));
    }

    /// Records an error with an optional hint.
    pub(crate) fn push(
        &mut self,
        pos: Pos,
        path: &Path<'_>,
        message: String,
        help: Option<String>,
    ) {
        let diagnostic = Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message,
            help,
        };
        self.errors.push((pos, diagnostic));
    }

    /// Whether any error was recorded.
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// `Ok(value)` when no error was recorded, else every error sorted by line, column and
    /// path (errors at the same place keep the order they were found in).
    pub(crate) fn finish<T>(mut self, value: Option<T>) -> Result<T, Diagnostics> {
        if self.errors.is_empty()
            && let Some(value) = value
        {
            return Ok(value);
        }
        self.errors
            .sort_by(|(a, da), (b, db)| a.cmp(b).then_with(|| da.path.cmp(&db.path)));
        let mut diagnostics: Vec<Diagnostic> = self.errors.into_iter().map(|(_, d)| d).collect();
        diagnostics.dedup();
        if diagnostics.is_empty() {
            // A check returned no value without saying why: never report success for it.
            diagnostics.push(Diagnostic {
                file: self.file,
                line: 0,
                column: 0,
                path: String::new(),
                message: "the workflow could not be compiled".to_string(),
                help: None,
            });
        }
        Err(Diagnostics(diagnostics))
    }
}

/// Candidate lists longer than this get no "did you mean" (keeps hostile files fast).
const MAX_SUGGESTION_CANDIDATES: usize = 10_000;

/// The candidate closest to `word`, if it is close enough to be a likely typo (a small
/// Damerau-Levenshtein distance relative to the length and fewer edits than the shorter
/// word has characters, or a different letter case).
pub(crate) fn suggest<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, &str)> = None;
    for (seen, candidate) in candidates.into_iter().enumerate() {
        if seen >= MAX_SUGGESTION_CANDIDATES {
            return None;
        }
        if candidate == word {
            continue;
        }
        let shorter = word.chars().count().min(candidate.chars().count());
        let distance = if candidate.eq_ignore_ascii_case(word) {
            0
        } else {
            let length_gap = candidate.len().abs_diff(word.len());
            if length_gap > limit {
                continue;
            }
            strsim::damerau_levenshtein(word, candidate)
        };
        // An edit for every character is a different word, not a typo (`a` vs `1`).
        if distance <= limit && distance < shorter && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate.to_string())
}

/// `did you mean `X`?` for the closest candidate, if any.
pub(crate) fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    suggest(word, candidates).map(|candidate| format!("did you mean `{candidate}`?"))
}

/// `` `a`, `b` or `c` `` (`` `a` `` alone, "nothing" for an empty list).
pub(crate) fn one_of<S: AsRef<str>>(items: &[S]) -> String {
    quoted_list(items, "or")
}

/// `` `a`, `b` and `c` `` (`` `a` `` alone, "nothing" for an empty list).
pub(crate) fn all_of<S: AsRef<str>>(items: &[S]) -> String {
    quoted_list(items, "and")
}

/// The items quoted in backticks, separated by commas, the last one by `conjunction`.
fn quoted_list<S: AsRef<str>>(items: &[S], conjunction: &str) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("`{}`", item.as_ref()))
        .collect();
    match quoted.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let fields = ["needs", "run", "retry", "timeout"];
        assert_eq!(suggest("retyr", fields), Some("retry".to_string()));
        assert_eq!(suggest("neds", fields), Some("needs".to_string()));
        assert_eq!(suggest("Run", fields), Some("run".to_string()));
        assert_eq!(suggest("banana", fields), None);
        assert_eq!(suggest("run", fields), None);
        assert_eq!(suggest("a", ["1", "b"]), None);
        assert_eq!(suggest("ab", ["ac"]), Some("ac".to_string()));
    }

    #[test]
    fn lists_read_naturally() {
        assert_eq!(one_of::<&str>(&[]), "nothing");
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(all_of(&["a", "b", "c"]), "`a`, `b` and `c`");
    }

    #[test]
    fn paths_display_like_field_accessors() {
        let tasks = Path::ROOT.key("tasks");
        let load = tasks.key("load");
        let needs = load.key("needs");
        assert_eq!(needs.index(1).to_string(), "tasks.load.needs[1]");
        assert_eq!(Path::ROOT.to_string(), "");
        assert_eq!(Path::ROOT.key("name").to_string(), "name");
    }

    #[test]
    fn finish_sorts_by_position() {
        let mut report = Report::new("f.yaml");
        report.error(Pos { line: 3, column: 1 }, &Path::ROOT.key("b"), "second");
        report.error(Pos { line: 1, column: 5 }, &Path::ROOT.key("a"), "first");
        let errors = report.finish::<()>(None).unwrap_err();
        assert_eq!(errors.0[0].message, "first");
        assert_eq!(errors.0[1].message, "second");
    }

    #[test]
    fn finish_without_errors_gives_the_value() {
        assert_eq!(Report::new("f").finish(Some(7)), Ok(7));
        assert!(Report::new("f").finish::<u8>(None).is_err());
    }
}
