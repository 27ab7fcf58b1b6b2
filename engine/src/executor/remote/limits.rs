//! Limits on what a worker reports, checked before anything changes.
//!
//! The limits are those documented in `api/proto/tandem/v1/worker_service.proto`; output keys
//! follow the rule of `${{ tasks.ID.outputs.KEY }}` in the workflow language (the same rule as
//! `$TANDEM_OUTPUT` keys of shell tasks), so every output a worker publishes can be referenced.

use std::collections::BTreeMap;

use super::error::RemoteError;
use super::lease_id::shorten;
use crate::executor::outputs::MAX_OUTPUTS_BYTES;

/// Most output entries of one completed attempt.
pub const MAX_OUTPUTS: usize = 256;

/// Most bytes of a failure's `error` text (64 KiB).
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Most bytes of a heartbeat's `details` (64 KiB).
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;

/// Most bytes of a failure's `error_type`.
pub const MAX_ERROR_TYPE_BYTES: usize = 256;

/// Checks outputs: at most [`MAX_OUTPUTS`] entries, keys matching `[A-Za-z_][A-Za-z0-9_-]*`,
/// keys and values together at most [`MAX_OUTPUTS_BYTES`] (1 MiB).
///
/// Errors: [`RemoteError::InvalidArgument`] with the field path (`outputs` or
/// `outputs["KEY"]`), the rule or limit and what was found.
pub fn check_outputs(outputs: &BTreeMap<String, String>) -> Result<(), RemoteError> {
    if outputs.len() > MAX_OUTPUTS {
        return Err(RemoteError::InvalidArgument {
            field: "outputs".into(),
            problem: format!(
                "expected at most {MAX_OUTPUTS} entries, found {}",
                outputs.len()
            ),
        });
    }
    let mut total = 0usize;
    for (key, value) in outputs {
        if !is_output_key(key) {
            return Err(RemoteError::InvalidArgument {
                field: format!("outputs[{}]", shorten(key)),
                problem: "expected a key of a letter or `_`, then letters, digits, `-` and `_` \
                          ([A-Za-z_][A-Za-z0-9_-]*), so templates can reference it"
                    .into(),
            });
        }
        total = total.saturating_add(key.len()).saturating_add(value.len());
    }
    if total > MAX_OUTPUTS_BYTES {
        return Err(RemoteError::InvalidArgument {
            field: "outputs".into(),
            problem: format!(
                "expected at most {MAX_OUTPUTS_BYTES} bytes (1 MiB) of keys and values, found \
                 {total}; publish large data elsewhere and put its location in the outputs"
            ),
        });
    }
    Ok(())
}

/// Checks a failure's `error` text and `error_type` against [`MAX_ERROR_BYTES`] and
/// [`MAX_ERROR_TYPE_BYTES`]; an error type must not be empty when given.
pub fn check_failure(error: &str, error_type: Option<&str>) -> Result<(), RemoteError> {
    check_size("error", error, MAX_ERROR_BYTES)?;
    if let Some(error_type) = error_type {
        if error_type.is_empty() {
            return Err(RemoteError::InvalidArgument {
                field: "error_type".into(),
                problem: "expected a non-empty error type or none, found an empty string".into(),
            });
        }
        check_size("error_type", error_type, MAX_ERROR_TYPE_BYTES)?;
    }
    Ok(())
}

/// Checks a heartbeat's `details` against [`MAX_DETAILS_BYTES`].
pub fn check_details(details: &str) -> Result<(), RemoteError> {
    check_size("details", details, MAX_DETAILS_BYTES)
}

fn check_size(field: &str, text: &str, limit: usize) -> Result<(), RemoteError> {
    if text.len() > limit {
        return Err(RemoteError::InvalidArgument {
            field: field.into(),
            problem: format!("expected at most {limit} bytes, found {}", text.len()),
        });
    }
    Ok(())
}

/// Whether `key` matches `[A-Za-z_][A-Za-z0-9_-]*`.
fn is_output_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn good_outputs_pass() {
        check_outputs(&outputs(&[("path", "/x"), ("_a-b_9", ""), ("Z", "ü")])).unwrap();
        check_outputs(&BTreeMap::new()).unwrap();
    }

    #[test]
    fn bad_keys_name_the_field() {
        for key in ["", "9lives", "has space", "dot.ted", "ü"] {
            let error = check_outputs(&outputs(&[("ok", "1"), (key, "v")])).unwrap_err();
            let RemoteError::InvalidArgument { field, problem } = &error else {
                panic!("{error:?}");
            };
            assert_eq!(field, &format!("outputs[{key:?}]"));
            assert!(problem.contains("[A-Za-z_][A-Za-z0-9_-]*"), "{problem}");
        }
    }

    #[test]
    fn too_many_or_too_large_outputs_name_the_limit() {
        let many: BTreeMap<String, String> = (0..=MAX_OUTPUTS)
            .map(|index| (format!("k{index}"), String::new()))
            .collect();
        let error = check_outputs(&many).unwrap_err().to_string();
        assert_eq!(error, "outputs: expected at most 256 entries, found 257");

        let big = outputs(&[("a", &"x".repeat(MAX_OUTPUTS_BYTES))]);
        let error = check_outputs(&big).unwrap_err().to_string();
        assert!(
            error.contains("at most 1048576 bytes (1 MiB)") && error.contains("found 1048577"),
            "{error}"
        );
        let exact = outputs(&[("a", &"x".repeat(MAX_OUTPUTS_BYTES - 1))]);
        check_outputs(&exact).unwrap();
    }

    #[test]
    fn failure_and_details_sizes() {
        check_failure("boom", Some("Timeout")).unwrap();
        check_failure(&"e".repeat(MAX_ERROR_BYTES), None).unwrap();
        let error = check_failure(&"e".repeat(MAX_ERROR_BYTES + 1), None)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "error: expected at most 65536 bytes, found 65537");
        let error = check_failure("boom", Some("")).unwrap_err().to_string();
        assert!(
            error.starts_with("error_type: expected a non-empty"),
            "{error}"
        );
        let error = check_failure("boom", Some(&"t".repeat(300)))
            .unwrap_err()
            .to_string();
        assert_eq!(error, "error_type: expected at most 256 bytes, found 300");
        check_details(&"d".repeat(MAX_DETAILS_BYTES)).unwrap();
        assert!(check_details(&"d".repeat(MAX_DETAILS_BYTES + 1)).is_err());
    }
}
