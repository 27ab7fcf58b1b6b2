//! Positions inside a scalar: where exactly a `${{ ... }}` starts in the file.
//!
//! The YAML tree gives the position of a whole value. When the value is written on one line
//! exactly as it reads (a plain scalar, or a quoted one without escapes), the position of a
//! character inside it is that position plus its offset; otherwise (block scalars, escapes,
//! folded lines) errors point at the value itself.

use std::cell::OnceCell;

use crate::yaml::Pos;

/// Finds positions in the file text.
pub(crate) struct Locator<'a> {
    source: &'a str,
    /// Byte offset where each line starts, computed on first use (only errors need it).
    line_starts: OnceCell<Vec<usize>>,
}

impl<'a> Locator<'a> {
    /// A locator over the file text.
    pub(crate) fn new(source: &'a str) -> Locator<'a> {
        Locator {
            source,
            line_starts: OnceCell::new(),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            let mut starts = vec![0];
            starts.extend(self.source.match_indices('\n').map(|(index, _)| index + 1));
            starts
        })
    }

    /// The position of character `offset` of `value`, a scalar written at `pos`; `pos` itself
    /// when the value is not written verbatim on one line.
    pub(crate) fn inside(&self, pos: Pos, value: &str, offset: usize) -> Pos {
        match self.verbatim_start(pos, value) {
            Some(start) => Pos {
                line: start.line,
                column: start.column + offset,
            },
            None => pos,
        }
    }

    /// Where the characters of `value` start, if the file spells it verbatim at `pos`
    /// (possibly after an opening quote).
    fn verbatim_start(&self, pos: Pos, value: &str) -> Option<Pos> {
        if value.contains('\n') || pos.line == 0 || pos.column == 0 {
            return None;
        }
        let line_starts = self.line_starts();
        let line_start = *line_starts.get(pos.line - 1)?;
        let line_end = line_starts
            .get(pos.line)
            .map_or(self.source.len(), |next| next - 1);
        let line = self.source.get(line_start..line_end)?;
        let (byte, _) = line.char_indices().nth(pos.column - 1)?;
        let rest = &line[byte..];
        if rest.starts_with(value) {
            return Some(pos);
        }
        let quoted = rest.strip_prefix(['"', '\''])?;
        quoted.starts_with(value).then_some(Pos {
            line: pos.line,
            column: pos.column + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_quoted_values_are_located_inside() {
        let source = "a: echo ${{ x }}\nb: \"é ${{ y }}\"\n";
        let locator = Locator::new(source);
        assert_eq!(
            locator.inside(Pos { line: 1, column: 4 }, "echo ${{ x }}", 5),
            Pos { line: 1, column: 9 }
        );
        assert_eq!(
            locator.inside(Pos { line: 2, column: 4 }, "é ${{ y }}", 2),
            Pos { line: 2, column: 7 }
        );
    }

    #[test]
    fn other_values_keep_their_own_position() {
        let source = "a: |\n  echo ${{ x }}\n";
        let locator = Locator::new(source);
        let pos = Pos { line: 1, column: 4 };
        assert_eq!(locator.inside(pos, "echo ${{ x }}\n", 5), pos);
        assert_eq!(
            locator.inside(Pos { line: 9, column: 1 }, "x", 0),
            Pos { line: 9, column: 1 }
        );
    }
}
