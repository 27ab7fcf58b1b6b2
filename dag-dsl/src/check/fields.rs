//! Checks of single values: names, durations, trigger rules and retry policies (with the
//! field-by-field merge of a task's `retry` over `defaults.retry`).

use std::time::Duration;

use crate::duration::{format_duration, parse_with_help};
use crate::names::{self, NameKind};
use crate::raw::{DurationText, RawRetry, Sp, TriggerRuleText};
use crate::report::{Report, child, did_you_mean, item, one_of};
use crate::spec::{Jitter, RetryPolicy, TriggerRule};
use crate::yaml::Pos;

/// Checks a name's spelling; reports at `pos` on `path`. Returns whether it is valid.
pub(super) fn name(report: &mut Report, kind: NameKind, name: &Sp<String>, path: &str) -> bool {
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
    path: &str,
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
    path: &str,
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
}

/// Checks the values of a `retry` mapping at `path`. Bad fields are reported and left unset.
pub(super) fn retry_fields(report: &mut Report, raw: &RawRetry, path: &str) -> RetryFields {
    let mut fields = RetryFields::default();
    if let Some(attempts) = &raw.max_attempts {
        match u32::try_from(attempts.value) {
            Ok(value) if value >= 1 => fields.max_attempts = Some(value),
            _ => report.error(
                attempts.pos,
                &child(path, "max_attempts"),
                format!(
                    "expected a number of attempts from 1 (no retry) to {}, found `{}`",
                    u32::MAX,
                    attempts.value
                ),
            ),
        }
    }
    if let Some(text) = &raw.initial_interval {
        fields.initial_interval = duration(report, text, &child(path, "initial_interval"), false)
            .map(|d| Sp::new(d, text.pos));
    }
    if let Some(text) = &raw.max_interval {
        fields.max_interval = duration(report, text, &child(path, "max_interval"), false)
            .map(|d| Sp::new(d, text.pos));
    }
    if let Some(coefficient) = &raw.backoff_coefficient {
        if coefficient.value.is_finite() && coefficient.value >= 1.0 {
            fields.backoff_coefficient = Some(coefficient.value);
        } else {
            report.error(
                coefficient.pos,
                &child(path, "backoff_coefficient"),
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
                &child(path, "jitter"),
                format!(
                    "unknown jitter `{}`, expected `full` or `none`",
                    names::shorten(other)
                ),
                did_you_mean(other, ["full", "none"]),
            ),
        }
    }
    if let Some(codes) = &raw.non_retryable_exit_codes {
        let codes_path = child(path, "non_retryable_exit_codes");
        let mut valid = Vec::with_capacity(codes.value.len());
        for (index, code) in codes.value.iter().enumerate() {
            match i32::try_from(code.value.0) {
                Ok(value) if (1..=255).contains(&value) => valid.push(value),
                _ => report.error(
                    code.pos,
                    &item(&codes_path, index),
                    format!(
                        "expected an exit code from 1 to 255, found `{}`",
                        code.value.0
                    ),
                ),
            }
        }
        valid.sort_unstable();
        valid.dedup();
        fields.non_retryable_exit_codes = Some(valid);
    }
    fields
}

/// Where a retry policy's fields come from, for [`merge_retry`].
pub(super) struct RetryLayer<'a> {
    /// The checked fields.
    pub fields: &'a RetryFields,
    /// Field path of the `retry` mapping (`defaults.retry`, `tasks.load.retry`).
    pub path: &'a str,
}

/// Merges `task` over `defaults` over the built-in defaults, field by field, and checks that
/// `max_interval` is at least `initial_interval`. A violation is reported on the layer that
/// set one of the two (the task when it set either; reported once for `defaults`).
pub(super) fn merge_retry(
    report: &mut Report,
    defaults: Option<RetryLayer<'_>>,
    task: Option<RetryLayer<'_>>,
) -> RetryPolicy {
    let builtin = RetryPolicy::default();
    let layers: Vec<&RetryLayer<'_>> = defaults.iter().chain(task.iter()).collect();
    let pick = |get: &dyn Fn(&RetryFields) -> Option<Sp<Duration>>| {
        layers
            .iter()
            .rev()
            .find_map(|layer| get(layer.fields).map(|value| (value, layer.path)))
    };
    let initial = pick(&|f| f.initial_interval.clone());
    let max = pick(&|f| f.max_interval.clone());
    let initial_interval = initial
        .as_ref()
        .map_or(builtin.initial_interval, |(d, _)| d.value);
    let max_interval = match &max {
        Some((d, _)) => d.value,
        None => initial_interval
            .checked_mul(100)
            .unwrap_or(Duration::MAX),
    };
    if let Some((max_value, max_path)) = &max
        && max_value.value < initial_interval
    {
        // Report on the innermost layer that set either field, so a bad `defaults.retry` is
        // reported once and not again for every task.
        let innermost = layers.last().map(|layer| layer.path).unwrap_or_default();
        let from = |path: &str| {
            if path == innermost {
                String::new()
            } else {
                format!(" (from `{path}`)")
            }
        };
        let initial_from = initial.as_ref().map_or(" (the default)".to_string(), |(_, p)| from(p));
        let location: Option<(Pos, String)> = if *max_path == innermost {
            Some((max_value.pos, child(max_path, "max_interval")))
        } else {
            initial
                .as_ref()
                .filter(|(_, path)| *path == innermost)
                .map(|(value, path)| (value.pos, child(path, "initial_interval")))
        };
        if let Some((pos, path)) = location {
            report.error(
                pos,
                &path,
                format!(
                    "`max_interval` {}{} is less than `initial_interval` {}{initial_from}",
                    format_duration(max_value.value),
                    from(max_path),
                    format_duration(initial_interval),
                ),
            );
        }
    }
    let get = |pick_field: &dyn Fn(&RetryFields) -> bool| {
        layers.iter().rev().find(|layer| pick_field(layer.fields)).map(|l| l.fields)
    };
    RetryPolicy {
        max_attempts: get(&|f| f.max_attempts.is_some())
            .and_then(|f| f.max_attempts)
            .unwrap_or(builtin.max_attempts),
        initial_interval,
        backoff_coefficient: get(&|f| f.backoff_coefficient.is_some())
            .and_then(|f| f.backoff_coefficient)
            .unwrap_or(builtin.backoff_coefficient),
        max_interval,
        jitter: get(&|f| f.jitter.is_some())
            .and_then(|f| f.jitter)
            .unwrap_or(builtin.jitter),
        non_retryable_exit_codes: get(&|f| f.non_retryable_exit_codes.is_some())
            .and_then(|f| f.non_retryable_exit_codes.clone())
            .unwrap_or(builtin.non_retryable_exit_codes),
    }
}
