//! A worker task's `input` after its templates are checked, and its instantiation into an
//! [`InputValue`] per task instance (matrix values substituted).

use serde_json::Number;

use crate::input::InputValue;
use crate::raw::{RawInput, RawValue, Sp};
use crate::report::{Path, Report};
use crate::spec::TaskIndex;

use super::templates::{Checked, Context, Scope};

/// An `input` tree whose string templates have been checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum CheckedValue {
    Null,
    Bool(bool),
    Number(Number),
    Text(Checked),
    List(Vec<CheckedValue>),
    Map(Vec<(String, CheckedValue)>),
}

impl CheckedValue {
    /// Checks every string of `input` (at `path`) as a template used in `scope`. Without
    /// `input`, an empty mapping.
    pub(super) fn check(
        report: &mut Report,
        context: &mut Context<'_, '_>,
        input: Option<&Sp<RawInput>>,
        path: &Path<'_>,
        scope: &Scope,
    ) -> CheckedValue {
        let Some(input) = input else {
            return CheckedValue::Map(Vec::new());
        };
        CheckedValue::Map(check_entries(report, context, &input.value.0, path, scope))
    }

    /// Estimated size in bytes of one rendering in an instance of a task with `matrix`:
    /// template text (see [`Checked::expanded_len`]) and mapping keys.
    pub(super) fn expanded_len(&self, matrix: &[(String, Vec<String>)]) -> u64 {
        match self {
            CheckedValue::Null | CheckedValue::Bool(_) | CheckedValue::Number(_) => 0,
            CheckedValue::Text(checked) => checked.expanded_len(matrix),
            CheckedValue::List(items) => items
                .iter()
                .map(|item| item.expanded_len(matrix))
                .fold(0, u64::saturating_add),
            CheckedValue::Map(entries) => entries
                .iter()
                .map(|(key, value)| (key.len() as u64).saturating_add(value.expanded_len(matrix)))
                .fold(0, u64::saturating_add),
        }
    }

    /// The input of one instance (see [`Checked::instantiate`]).
    pub(super) fn instantiate(
        &self,
        combination: &[(String, String)],
        first_instance: &[TaskIndex],
    ) -> InputValue {
        match self {
            CheckedValue::Null => InputValue::Null,
            CheckedValue::Bool(value) => InputValue::Bool(*value),
            CheckedValue::Number(number) => InputValue::Number(number.clone()),
            CheckedValue::Text(checked) => {
                InputValue::String(checked.instantiate(combination, first_instance))
            }
            CheckedValue::List(items) => InputValue::List(
                items
                    .iter()
                    .map(|item| item.instantiate(combination, first_instance))
                    .collect(),
            ),
            CheckedValue::Map(entries) => InputValue::Map(
                entries
                    .iter()
                    .map(|(key, value)| {
                        (key.clone(), value.instantiate(combination, first_instance))
                    })
                    .collect(),
            ),
        }
    }
}

fn check_entries(
    report: &mut Report,
    context: &mut Context<'_, '_>,
    entries: &[(Sp<String>, Sp<RawValue>)],
    path: &Path<'_>,
    scope: &Scope,
) -> Vec<(String, CheckedValue)> {
    entries
        .iter()
        .map(|(key, value)| {
            let checked = check_value(report, context, value, &path.key(&key.value), scope);
            (key.value.clone(), checked)
        })
        .collect()
}

fn check_value(
    report: &mut Report,
    context: &mut Context<'_, '_>,
    value: &Sp<RawValue>,
    path: &Path<'_>,
    scope: &Scope,
) -> CheckedValue {
    match &value.value {
        RawValue::Null => CheckedValue::Null,
        RawValue::Bool(flag) => CheckedValue::Bool(*flag),
        RawValue::Number(number) => CheckedValue::Number(number.clone()),
        RawValue::Text(text) => {
            CheckedValue::Text(context.check(report, text, value.pos, path, scope))
        }
        RawValue::List(items) => CheckedValue::List(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| check_value(report, context, item, &path.index(index), scope))
                .collect(),
        ),
        RawValue::Map(entries) => {
            CheckedValue::Map(check_entries(report, context, entries, path, scope))
        }
    }
}
