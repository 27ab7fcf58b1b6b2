//! Checks of single values: names, durations, trigger rules and retry policies (with the
//! field-by-field merge of a task's `retry` over `defaults.retry`).

use std::time::Duration;

use crate::duration::{format_duration, parse_with_help};
use crate::limits;
use crate::names::{self, NameKind};
use crate::raw::{DurationText, RawRetry, Sp, TriggerRuleText};
use crate::report::{Path, Report, did_you_mean, one_of};
use crate::spec::{Jitter, RetryPolicy, TriggerRule};
use crate::yaml::Pos;

/// Checks a name's spelling; reports at `pos` on `path`. Returns whether it is valid.
pub(super) fn name(
    report: &mut Report,
    kind: NameKind,
    name: &Sp<String>,
    path: &Path<'_>,
) -> bool {
    match names::check(kind, &name.value) {
        Ok(()) => true,
        Err(message) => {
            report.error(name.pos, path, message);
            false
        }
    }
}

/// Parses a duration; with `positive`, zero is refused too.
pub(super) fn duration(
    report: &mut Report,
    text: &Sp<DurationText>,
    path: &Path<'_>,
    positive: bool,
) -> Option<Duration> {
    match parse_with_help(&text.value.0) {
        Ok(duration) if positive && duration.is_zero() => {
            report.error(
                text.pos,
                path,
                format!("expected a duration above zero, found `{}`", text.value.0),
            );
            None
        }
        Ok(duration) => Some(duration),
        Err((message, help)) => {
            report.error_with_help(text.pos, path, message, help);
            None
        }
    }
}

/// Parses a trigger rule.
pub(super) fn trigger_rule(
    report: &mut Report,
    text: &Sp<TriggerRuleText>,
    path: &Path<'_>,
) -> Option<TriggerRule> {
    let found = &text.value.0;
    if let Some(rule) = TriggerRule::parse(found) {
        return Some(rule);
    }
    let accepted: Vec<&str> = TriggerRule::ALL.iter().map(|(_, name)| *name).collect();
    let help = did_you_mean(found, accepted.iter().copied());
    report.push(
        text.pos,
        path,
        format!(
            "unknown trigger rule `{}`, expected one of {}",
            names::shorten(found),
            one_of(&accepted)
        ),
        help,
    );
    None
}

/// The fields of one `retry` mapping after checking, each with its position.
#[derive(Debug, Clone, Default)]
pub(super) struct RetryFields {
    max_attempts: Option<u32>,
    initial_interval: Option<Sp<Duration>>,
    backoff_coefficient: Option<f64>,
    max_interval: Option<Sp<Duration>>,
    jitter: Option<Jitter>,
    non_retryable_exit_codes: Option<Vec<i32>>,
    non_retryable_errors: Option<Vec<String>>,
}

/// Checks the values of a `retry` mapping at `path`. Bad fields are reported and left unset.
pub(super) fn retry_fields(report: &mut Report, raw: &RawRetry, path: &Path<'_>) -> RetryFields {
    let mut fields = RetryFields::default();
    if let Some(attempts) = &raw.max_attempts {
        match u32::try_from(attempts.value) {
            Ok(value) if value >= 1 => fields.max_attempts = Some(value),
            _ => report.error(
                attempts.pos,
                &path.key("max_attempts"),
                format!(
                    "expected a number of attempts from 1 (no retry) to {}, found `{}`",
                    u32::MAX,
                    attempts.value
                ),
            ),
        }
    }
    if let Some(text) = &raw.initial_interval {
        fields.initial_interval = duration(report, text, &path.key("initial_interval"), false)
            .map(|d| Sp::new(d, text.pos));
    }
    if let Some(text) = &raw.max_interval {
        fields.max_interval =
            duration(report, text, &path.key("max_interval"), false).map(|d| Sp::new(d, text.pos));
    }
    if let Some(coefficient) = &raw.backoff_coefficient {
        if coefficient.value.is_finite() && coefficient.value >= 1.0 {
            fields.backoff_coefficient = Some(coefficient.value);
        } else {
            report.error(
                coefficient.pos,
                &path.key("backoff_coefficient"),
                format!(
                    "expected a backoff coefficient of at least 1.0, found `{}`",
                    coefficient.value
                ),
            );
        }
    }
    if let Some(jitter) = &raw.jitter {
        match jitter.value.0.as_str() {
            "full" => fields.jitter = Some(Jitter::Full),
            "none" => fields.jitter = Some(Jitter::None),
            other => report.push(
                jitter.pos,
                &path.key("jitter"),
                format!(
                    "unknown jitter `{}`, expected `full` or `none`",
                    names::shorten(other)
                ),
                did_you_mean(other, ["full", "none"]),
            ),
        }
    }
    if let Some(codes) = &raw.non_retryable_exit_codes {
        let codes_path = path.key("non_retryable_exit_codes");
        let mut valid = Vec::with_capacity(codes.value.len());
        for code in &codes.value {
            match i32::try_from(code.value.code) {
                Ok(value) if (1..=255).contains(&value) => valid.push(value),
                _ => report.error(
                    code.pos,
                    &codes_path.index(code.value.index),
                    format!(
                        "expected an exit code from 1 to 255, found `{}`",
                        code.value.code
                    ),
                ),
            }
        }
        valid.sort_unstable();
        valid.dedup();
        fields.non_retryable_exit_codes = Some(valid);
    }
    if let Some(types) = &raw.non_retryable_errors {
        let types_path = path.key("non_retryable_errors");
        let mut valid = Vec::with_capacity(types.value.len());
        for error_type in &types.value {
            let text = &error_type.value.text;
            match error_type_problem(text) {
                None => valid.push(text.clone()),
                Some(problem) => report.error(
                    error_type.pos,
                    &types_path.index(error_type.value.index),
                    format!(
                        "expected an error type of 1 to {} bytes without control characters, \
                         found {problem}",
                        limits::MAX_ERROR_TYPE_BYTES
                    ),
                ),
            }
        }
        valid.sort_unstable();
        valid.dedup();
        fields.non_retryable_errors = Some(valid);
    }
    fields
}

/// What is wrong with an error type, as the "found" part of a message; `None` when valid.
fn error_type_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        Some("an empty string".to_string())
    } else if text.len() > limits::MAX_ERROR_TYPE_BYTES {
        Some(format!("{} bytes", text.len()))
    } else if text.chars().any(char::is_control) {
        Some(format!(
            "`{}`, which has a control character",
            names::shorten(text)
        ))
    } else {
        None
    }
}

/// One layer of a retry policy for [`merge_retry`].
pub(super) struct RetryLayer<'a> {
    /// The checked fields.
    pub fields: &'a RetryFields,
    /// Field path of the `retry` mapping (`defaults.retry`, `tasks.load.retry`).
    pub path: &'a Path<'a>,
}

/// Merges `task` over `defaults` over the built-in defaults, field by field, and checks that
/// `max_interval` is at least `initial_interval`. A violation is reported on the innermost
/// layer given, and only when that layer set one of the two fields, so a bad
/// `defaults.retry` is reported once (when checked alone) and not again for every task.
pub(super) fn merge_retry(
    report: &mut Report,
    defaults: Option<RetryLayer<'_>>,
    task: Option<RetryLayer<'_>>,
) -> RetryPolicy {
    let builtin = RetryPolicy::default();
    let layers: Vec<RetryLayer<'_>> = defaults.into_iter().chain(task).collect();
    // The innermost layer that sets a field wins.
    let last = |set: &dyn Fn(&RetryFields) -> bool| layers.iter().rposition(|l| set(l.fields));
    let initial = last(&|f| f.initial_interval.is_some());
    let max = last(&|f| f.max_interval.is_some());
    let initial_interval = initial
        .and_then(|i| layers[i].fields.initial_interval.as_ref())
        .map_or(builtin.initial_interval, |d| d.value);
    let max_set = max.and_then(|i| layers[i].fields.max_interval.as_ref().map(|d| (i, d)));
    let max_interval = match max_set {
        Some((_, d)) => d.value,
        None => initial_interval.checked_mul(100).unwrap_or(Duration::MAX),
    };
    let innermost = layers.len().checked_sub(1);
    if let Some((max_layer, max_value)) = max_set
        && max_value.value < initial_interval
    {
        let from = |layer: usize| {
            if Some(layer) == innermost {
                String::new()
            } else {
                format!(" (from `{}`)", layers[layer].path)
            }
        };
        let initial_from = initial.map_or(" (the default)".to_string(), from);
        let location: Option<(Pos, Path<'_>)> = if Some(max_layer) == innermost {
            Some((max_value.pos, layers[max_layer].path.key("max_interval")))
        } else {
            initial
                .filter(|&layer| Some(layer) == innermost)
                .and_then(|layer| {
                    let value = layers[layer].fields.initial_interval.as_ref()?;
                    Some((value.pos, layers[layer].path.key("initial_interval")))
                })
        };
        if let Some((pos, path)) = location {
            report.error(
                pos,
                &path,
                format!(
                    "`max_interval` {}{} is less than `initial_interval` {}{initial_from}",
                    format_duration(max_value.value),
                    from(max_layer),
                    format_duration(initial_interval),
                ),
            );
        }
    }
    let field = |set: &dyn Fn(&RetryFields) -> bool| last(set).map(|i| layers[i].fields);
    RetryPolicy {
        max_attempts: field(&|f| f.max_attempts.is_some())
            .and_then(|f| f.max_attempts)
            .unwrap_or(builtin.max_attempts),
        initial_interval,
        backoff_coefficient: field(&|f| f.backoff_coefficient.is_some())
            .and_then(|f| f.backoff_coefficient)
            .unwrap_or(builtin.backoff_coefficient),
        max_interval,
        jitter: field(&|f| f.jitter.is_some())
            .and_then(|f| f.jitter)
            .unwrap_or(builtin.jitter),
        non_retryable_exit_codes: field(&|f| f.non_retryable_exit_codes.is_some())
            .and_then(|f| f.non_retryable_exit_codes.clone())
            .unwrap_or(builtin.non_retryable_exit_codes),
        non_retryable_errors: field(&|f| f.non_retryable_errors.is_some())
            .and_then(|f| f.non_retryable_errors.clone())
            .unwrap_or(builtin.non_retryable_errors),
    }
}
