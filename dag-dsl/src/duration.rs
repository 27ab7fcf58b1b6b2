//! Durations as written in workflow files: `250ms`, `30s`, `10m`, `2h`, `1h30m`.
//!
//! Parsing is `humantime`'s (units `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, `w` and their long
//! spellings such as `sec`, `min`, `hours`, combinable as `1h 30m` or `1h30m`); formatting is
//! the compact form `1h30m` that parses back to the same value.

use std::time::Duration;

/// The first words of every "bad duration" message.
const EXPECTED: &str = "expected a duration like `30s`, `10m` or `250ms`";

/// Parses a duration such as `250ms`, `30s`, `10m`, `2h` or `1h30m`.
///
/// Errors: ``expected a duration like `30s`, `10m` or `250ms`, found `TEXT` `` followed by
/// the reason (missing unit, unknown unit, number too large).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_with_help(text).map_err(|(message, help)| format!("{message} ({help})"))
}

/// Like [`parse_duration`], but the error comes as (message, hint) for a diagnostic.
pub(crate) fn parse_with_help(text: &str) -> Result<Duration, (String, String)> {
    let trimmed = text.trim();
    humantime::parse_duration(trimmed).map_err(|error| {
        let message = format!("{EXPECTED}, found `{}`", crate::names::shorten(text));
        let help = match error {
            humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
                format!("add a unit, e.g. `{value}s` or `{value}m`")
            }
            humantime::DurationError::UnknownUnit { unit, .. } => format!(
                "unknown unit `{unit}`; units are `ms`, `s`, `m`, `h`, `d` (also `sec`, `min`, \
                 `hours`, ...)"
            ),
            humantime::DurationError::NumberOverflow => {
                "the number is too large for a duration".to_string()
            }
            humantime::DurationError::Empty => "the value is empty".to_string(),
            _ => "write a number followed by a unit, e.g. `90s`, `1.5h` or `1h30m`".to_string(),
        };
        (message, help)
    })
}

/// Formats a duration compactly, largest unit first, zero parts left out: `250ms`, `30s`,
/// `10m`, `1h30m`, `36h`, `1s500ms`, `0s`. Hours are the largest unit. The text parses back
/// to the same duration with [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        ((secs / 60) % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from((nanos / 1_000) % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let mut out = String::new();
    for (value, unit) in parts {
        if value > 0 {
            out.push_str(&value.to_string());
            out.push_str(unit);
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn errors_say_what_was_expected_and_found() {
        assert_eq!(
            parse_with_help("ten minutes").unwrap_err().0,
            "expected a duration like `30s`, `10m` or `250ms`, found `ten minutes`"
        );
        assert_eq!(
            parse_with_help("30").unwrap_err().1,
            "add a unit, e.g. `30s` or `30m`"
        );
        assert!(
            parse_duration("10 parsecs")
                .unwrap_err()
                .contains("`parsecs`")
        );
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn format_round_trips(secs in 0u64..10_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
