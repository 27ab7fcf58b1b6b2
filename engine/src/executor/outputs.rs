//! Parser of the `$TANDEM_OUTPUT` file, through which a shell attempt publishes outputs.
//!
//! The format is GitHub Actions' `$GITHUB_OUTPUT` convention
//! (<https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands#setting-an-output-parameter>):
//!
//! ```text
//! KEY=VALUE                 one line; VALUE is everything after the first `=` (may be empty)
//! KEY<<DELIMITER            a multi-line value: the lines up to a line that is exactly
//! line one                  DELIMITER, joined with `\n` (no trailing newline)
//! line two
//! DELIMITER
//! ```
//!
//! Rules:
//! - Keys match `[A-Za-z_][A-Za-z0-9_-]*`.
//! - A line is a heredoc start when `<<` comes before any `=` in it; otherwise it is `KEY=VALUE`.
//! - Lines end at `\n`; one `\r` before it is dropped too, so files written with CRLF endings
//!   read the same.
//! - Blank lines outside heredocs are ignored; inside a heredoc they are part of the value.
//! - When a key appears more than once, the later value wins.
//! - The file must be UTF-8 and at most [`MAX_OUTPUTS_BYTES`] long.
//!
//! Errors name the 1-based line number, what was expected and what was found.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Largest accepted outputs file, in bytes (1 MiB).
pub const MAX_OUTPUTS_BYTES: usize = 1024 * 1024;

/// The longest excerpt of a bad line quoted in an error, in characters.
const EXCERPT_CHARS: usize = 60;

/// Why an outputs file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutputsError {
    /// The file is larger than [`MAX_OUTPUTS_BYTES`].
    #[error(
        "outputs are {size} bytes, more than the limit of {limit} bytes (1 MiB); publish large \
         data as files and put their paths in the outputs"
    )]
    TooLarge {
        /// Size found, in bytes (at least `limit + 1` when the exact size is unknown).
        size: u64,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A line is not valid UTF-8.
    #[error("line {line}: expected UTF-8 text, found invalid bytes: {found}")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
        /// The line, lossily decoded and shortened.
        found: String,
    },
    /// A line is neither `KEY=VALUE` nor `KEY<<DELIMITER`, or its key is invalid.
    #[error("line {line}: expected {expected}, found {found}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What the line should have looked like.
        expected: &'static str,
        /// What it contained (quoted and shortened).
        found: String,
    },
    /// A `KEY<<DELIMITER` value never saw its closing delimiter line.
    #[error(
        "line {line}: the multi-line value of `{key}` is not terminated: expected a line that is \
         exactly `{delimiter}`, found the end of the outputs"
    )]
    UnterminatedHeredoc {
        /// 1-based line number of the `KEY<<DELIMITER` line.
        line: usize,
        /// The key being defined.
        key: String,
        /// The delimiter that was expected.
        delimiter: String,
    },
    /// The file could not be read.
    #[error("cannot read outputs file `{path}`: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        message: String,
    },
}

impl OutputsError {
    /// Whether the error comes from reading the file (possibly transient) rather than from
    /// its contents (which no retry of the same reading can fix).
    pub fn is_io(&self) -> bool {
        matches!(self, OutputsError::Io { .. })
    }
}

/// Reads and parses the outputs file at `path` (blocking I/O: call it from
/// `tokio::task::spawn_blocking` in async code). Reads at most `MAX_OUTPUTS_BYTES + 1` bytes,
/// so a runaway file costs no more than that.
///
/// # Errors
/// [`OutputsError::Io`] when the file cannot be opened or read, otherwise the errors of
/// [`parse_outputs`].
pub fn read_outputs(path: &Path) -> Result<BTreeMap<String, String>, OutputsError> {
    let io_error = |error: std::io::Error| OutputsError::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUTS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() > MAX_OUTPUTS_BYTES {
        let size = std::fs::metadata(path)
            .map(|metadata| metadata.len())
            .unwrap_or(bytes.len() as u64);
        return Err(OutputsError::TooLarge {
            size: size.max(bytes.len() as u64),
            limit: MAX_OUTPUTS_BYTES,
        });
    }
    parse_outputs(&bytes)
}

/// Parses the contents of an outputs file (see the module docs for the format) into a map from
/// key to value.
///
/// # Errors
/// [`OutputsError::TooLarge`] above [`MAX_OUTPUTS_BYTES`], [`OutputsError::NotUtf8`],
/// [`OutputsError::Malformed`] for a line that is not `KEY=VALUE` / `KEY<<DELIMITER` or has an
/// invalid key or an empty delimiter, and [`OutputsError::UnterminatedHeredoc`].
pub fn parse_outputs(bytes: &[u8]) -> Result<BTreeMap<String, String>, OutputsError> {
    if bytes.len() > MAX_OUTPUTS_BYTES {
        return Err(OutputsError::TooLarge {
            size: bytes.len() as u64,
            limit: MAX_OUTPUTS_BYTES,
        });
    }
    let mut outputs = BTreeMap::new();
    let mut lines = split_lines(bytes);
    while let Some((number, line)) = lines.next() {
        let line = decode(number, line)?;
        if line.trim().is_empty() {
            continue;
        }
        let heredoc_at = line.find("<<");
        let equals_at = line.find('=');
        match (heredoc_at, equals_at) {
            (Some(heredoc), equals) if equals.is_none_or(|equals| heredoc < equals) => {
                let key = check_key(number, &line[..heredoc], line)?;
                let delimiter = &line[heredoc + 2..];
                if delimiter.is_empty() {
                    return Err(OutputsError::Malformed {
                        line: number,
                        expected: "a delimiter after `<<` (`KEY<<DELIMITER`)",
                        found: excerpt(line),
                    });
                }
                let mut value_lines = Vec::new();
                let mut terminated = false;
                for (value_number, value_line) in lines.by_ref() {
                    let value_line = decode(value_number, value_line)?;
                    if value_line == delimiter {
                        terminated = true;
                        break;
                    }
                    value_lines.push(value_line);
                }
                if !terminated {
                    return Err(OutputsError::UnterminatedHeredoc {
                        line: number,
                        key: key.to_owned(),
                        delimiter: delimiter.to_owned(),
                    });
                }
                outputs.insert(key.to_owned(), value_lines.join("\n"));
            }
            (_, Some(equals)) => {
                let key = check_key(number, &line[..equals], line)?;
                outputs.insert(key.to_owned(), line[equals + 1..].to_owned());
            }
            (_, None) => {
                return Err(OutputsError::Malformed {
                    line: number,
                    expected: "`KEY=VALUE` or `KEY<<DELIMITER`",
                    found: excerpt(line),
                });
            }
        }
    }
    Ok(outputs)
}

/// Splits at `\n` (dropping one `\r` before it), numbering lines from 1. A final empty piece
/// after a trailing newline is not a line.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let trailing_newline = bytes.last() == Some(&b'\n');
    let mut pieces: Vec<&[u8]> = bytes.split(|byte| *byte == b'\n').collect();
    if trailing_newline || bytes.is_empty() {
        pieces.pop();
    }
    pieces.into_iter().enumerate().map(|(index, piece)| {
        let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
        (index + 1, piece)
    })
}

fn decode(number: usize, line: &[u8]) -> Result<&str, OutputsError> {
    std::str::from_utf8(line).map_err(|_| OutputsError::NotUtf8 {
        line: number,
        found: excerpt(&String::from_utf8_lossy(line)),
    })
}

/// Checks `key` against `[A-Za-z_][A-Za-z0-9_-]*`.
fn check_key<'a>(number: usize, key: &'a str, line: &str) -> Result<&'a str, OutputsError> {
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|rest| rest.is_ascii_alphanumeric() || rest == '_' || rest == '-');
    if valid {
        Ok(key)
    } else {
        Err(OutputsError::Malformed {
            line: number,
            expected: "a key matching [A-Za-z_][A-Za-z0-9_-]* before `=` or `<<`",
            found: format!("key {} in line {}", excerpt(key), excerpt(line)),
        })
    }
}

/// The text quoted (with escapes for control characters) and cut at [`EXCERPT_CHARS`].
fn excerpt(text: &str) -> String {
    let mut shown = String::from("`");
    for (index, character) in text.chars().enumerate() {
        if index == EXCERPT_CHARS {
            shown.push_str("...");
            break;
        }
        let _ = write!(shown, "{}", character.escape_debug());
    }
    shown.push('`');
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<BTreeMap<String, String>, OutputsError> {
        parse_outputs(text.as_bytes())
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn key_value_lines_and_blank_lines() {
        let parsed = parse("a=1\n\n  \nb_2-x=hello world\nempty=\neq=x=y\n").unwrap();
        assert_eq!(
            parsed,
            map(&[
                ("a", "1"),
                ("b_2-x", "hello world"),
                ("empty", ""),
                ("eq", "x=y")
            ])
        );
    }

    #[test]
    fn empty_input_gives_no_outputs() {
        assert_eq!(parse("").unwrap(), BTreeMap::new());
        assert_eq!(parse("\n\n").unwrap(), BTreeMap::new());
    }

    #[test]
    fn heredoc_values_keep_inner_lines() {
        let text = "json<<EOF\n{\n\n  \"a\": 1\n}\nEOF\nafter=yes\n";
        assert_eq!(
            parse(text).unwrap(),
            map(&[("json", "{\n\n  \"a\": 1\n}"), ("after", "yes")])
        );
        // An empty heredoc, a delimiter containing `=`, and a value line that merely contains
        // the delimiter.
        let text = "e<<END\nEND\nk<<A=B\nx A=B\nA=B\n";
        assert_eq!(parse(text).unwrap(), map(&[("e", ""), ("k", "x A=B")]));
    }

    #[test]
    fn equals_before_heredoc_marker_is_a_plain_value() {
        assert_eq!(parse("a=b<<c\n").unwrap(), map(&[("a", "b<<c")]));
    }

    #[test]
    fn later_lines_win() {
        assert_eq!(
            parse("a=1\na<<X\n2\nX\nb=1\nb=3").unwrap(),
            map(&[("a", "2"), ("b", "3")])
        );
    }

    #[test]
    fn crlf_line_endings() {
        assert_eq!(
            parse("a=1\r\nm<<EOF\r\nx\r\nEOF\r\n").unwrap(),
            map(&[("a", "1"), ("m", "x")])
        );
    }

    #[test]
    fn malformed_line_names_line_and_expectation() {
        let error = parse("a=1\njust text\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: expected `KEY=VALUE` or `KEY<<DELIMITER`, found `just text`"
        );
    }

    #[test]
    fn invalid_keys_are_refused() {
        for (text, key) in [
            ("1a=x", "1a"),
            ("=x", ""),
            ("a b=x", "a b"),
            ("é=x", "é"),
            ("-a<<E\nE", "-a"),
        ] {
            let error = parse(text).unwrap_err();
            let OutputsError::Malformed { line, found, .. } = &error else {
                panic!("expected Malformed for {text:?}, got {error:?}");
            };
            assert_eq!(*line, 1);
            assert!(found.contains(&format!("key `{key}`")), "{error}");
            assert!(error.to_string().contains("[A-Za-z_][A-Za-z0-9_-]*"));
        }
    }

    #[test]
    fn empty_delimiter_is_refused() {
        let error = parse("ok=1\nkey<<\nvalue\n").unwrap_err();
        assert!(
            matches!(error, OutputsError::Malformed { line: 2, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("a delimiter after `<<`"));
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        let error = parse("a=1\nbody<<EOF\nline\nEOFX\n").unwrap_err();
        assert_eq!(
            error,
            OutputsError::UnterminatedHeredoc {
                line: 2,
                key: "body".into(),
                delimiter: "EOF".into()
            }
        );
        assert!(error.to_string().contains("line 2"));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let error = parse_outputs(b"a=1\nb=\xff\xfe\n").unwrap_err();
        assert!(
            matches!(error, OutputsError::NotUtf8 { line: 2, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn long_lines_are_shortened_in_errors() {
        let line = "x".repeat(1000);
        let message = parse(&line).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("...`"));
    }

    #[test]
    fn size_limit_is_enforced() {
        let mut text = "a=".to_string();
        text.push_str(&"x".repeat(MAX_OUTPUTS_BYTES - 2));
        assert_eq!(parse(&text).unwrap()["a"].len(), MAX_OUTPUTS_BYTES - 2);
        text.push('x');
        let error = parse(&text).unwrap_err();
        assert_eq!(
            error,
            OutputsError::TooLarge {
                size: MAX_OUTPUTS_BYTES as u64 + 1,
                limit: MAX_OUTPUTS_BYTES
            }
        );
        assert!(error.to_string().contains("1048576 bytes (1 MiB)"));
    }

    #[test]
    fn read_outputs_reads_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "a=1\n").unwrap();
        assert_eq!(read_outputs(&path).unwrap(), map(&[("a", "1")]));

        std::fs::write(&path, vec![b'x'; MAX_OUTPUTS_BYTES + 10]).unwrap();
        assert_eq!(
            read_outputs(&path).unwrap_err(),
            OutputsError::TooLarge {
                size: MAX_OUTPUTS_BYTES as u64 + 10,
                limit: MAX_OUTPUTS_BYTES
            }
        );

        let missing = dir.path().join("missing");
        let error = read_outputs(&missing).unwrap_err();
        assert!(error.is_io());
        assert!(error.to_string().contains("missing"), "{error}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_outputs(&bytes);
        }

        #[test]
        fn line_oriented_garbage_never_panics(
            lines in proptest::collection::vec("[a-zA-Z_=<\\-\r é0-9]{0,12}", 0..20)
        ) {
            let _ = parse(&lines.join("\n"));
        }

        #[test]
        fn written_pairs_read_back(
            pairs in proptest::collection::btree_map(
                "[A-Za-z_][A-Za-z0-9_-]{0,8}",
                "[^\n\r]{0,20}",
                0..8,
            )
        ) {
            prop_assume!(pairs.values().all(|value| value != "__END__"));
            let mut text = String::new();
            for (key, value) in &pairs {
                text.push_str(&format!("{key}<<__END__\n{value}\n__END__\n"));
            }
            prop_assert_eq!(parse(&text).unwrap(), pairs);
        }
    }
}
