//! Resolution of plain scalars by the YAML 1.2 core schema
//! (<https://yaml.org/spec/1.2.2/#1032-tag-resolution>): `null`, booleans, integers
//! (decimal, `0o` octal, `0x` hex) and floats (with `.inf` and `.nan`); anything else is a
//! string. `yes`/`no`/`on`/`off` are strings, as YAML 1.2 says.

use std::borrow::Cow;

use super::Node;

/// The value of a plain (unquoted) scalar.
pub(super) fn resolve_plain(text: Cow<'_, str>) -> Node<'_> {
    match &*text {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "true" | "True" | "TRUE" => return Node::Bool(true),
        "false" | "False" | "FALSE" => return Node::Bool(false),
        _ => {}
    }
    // Numbers start with a digit, a sign or a dot: most text is rejected at once.
    let numeric = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'));
    if numeric && let Some(number) = integer(&text).or_else(|| float(&text)) {
        return number;
    }
    Node::Str(text)
}

/// `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`.
pub(super) fn integer(text: &str) -> Option<Node<'static>> {
    if let Some(digits) = text.strip_prefix("0o") {
        return radix(digits, 8);
    }
    if let Some(digits) = text.strip_prefix("0x") {
        return radix(digits, 16);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if let Ok(value) = text.parse::<i64>() {
        return Some(Node::Int(value));
    }
    if let Ok(value) = text.trim_start_matches('+').parse::<u64>() {
        return Some(Node::UInt(value));
    }
    // Too large for 64 bits: still a number, kept approximately.
    text.parse::<f64>().ok().map(Node::Float)
}

fn radix(digits: &str, base: u32) -> Option<Node<'static>> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    match u64::from_str_radix(digits, base) {
        Ok(value) => Some(i64::try_from(value).map_or(Node::UInt(value), Node::Int)),
        Err(_) => Some(Node::Float(f64::INFINITY)),
    }
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `[-+]?.inf` or `.nan`.
pub(super) fn float(text: &str) -> Option<Node<'static>> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(Node::Float(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }));
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == text.len() => {
            return Some(Node::Float(f64::NAN));
        }
        _ => {}
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match fraction {
        Some(fraction) => {
            all_digits(whole) && all_digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !whole.is_empty() && all_digits(whole),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
        !digits.is_empty() && all_digits(digits)
    });
    if !mantissa_ok || !exponent_ok || (fraction.is_none() && exponent.is_none()) {
        return None;
    }
    text.parse::<f64>().ok().map(Node::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema_values() {
        let resolve_plain = |text: &'static str| resolve_plain(Cow::Borrowed(text));
        assert_eq!(resolve_plain("~"), Node::Null);
        assert_eq!(resolve_plain(""), Node::Null);
        assert_eq!(resolve_plain("True"), Node::Bool(true));
        assert_eq!(resolve_plain("-12"), Node::Int(-12));
        assert_eq!(resolve_plain("+7"), Node::Int(7));
        assert_eq!(resolve_plain("0x1F"), Node::Int(31));
        assert_eq!(resolve_plain("0o17"), Node::Int(15));
        assert_eq!(resolve_plain("18446744073709551615"), Node::UInt(u64::MAX));
        assert_eq!(resolve_plain("1.5"), Node::Float(1.5));
        assert_eq!(resolve_plain("1e3"), Node::Float(1000.0));
        assert_eq!(resolve_plain(".5"), Node::Float(0.5));
        assert_eq!(resolve_plain("-.inf"), Node::Float(f64::NEG_INFINITY));
        assert!(matches!(resolve_plain(".nan"), Node::Float(v) if v.is_nan()));
    }

    #[test]
    fn other_text_is_a_string() {
        let resolve_plain = |text: &'static str| resolve_plain(Cow::Borrowed(text));
        for text in [
            "yes",
            "off",
            "2024-01-01",
            "1.2.3",
            "30s",
            "0x",
            "1e",
            ".",
            "-",
            "+.nan",
        ] {
            assert_eq!(resolve_plain(text), Node::Str(text.into()), "{text}");
        }
    }
}
