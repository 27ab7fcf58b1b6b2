//! Checks of a task's `matrix`.

use std::collections::HashMap;

use crate::limits;
use crate::names::{NameKind, shorten};
use crate::raw::{DimensionKeys, Entries, MatrixValues, Sp};
use crate::report::{Path, Report};

use super::fields;

/// Checks a `matrix` at `path`: at least one dimension, valid names, non-empty lists without
/// repeated values or characters reserved by instance ids, at most [`limits::MAX_MATRIX_INSTANCES`] combinations. Returns the
/// dimensions (also the invalid ones, so templates naming them are not reported again) and
/// the number of combinations.
pub(super) fn check_matrix(
    report: &mut Report,
    matrix: &Entries<DimensionKeys, Sp<MatrixValues>>,
    path: &Path<'_>,
) -> (Vec<(String, Vec<String>)>, u64) {
    if matrix.entries.is_empty() {
        report.error(
            matrix.pos,
            path,
            "expected at least one matrix dimension, found an empty mapping",
        );
        return (Vec::new(), 0);
    }
    let mut dimensions = Vec::with_capacity(matrix.entries.len());
    let mut combinations: u64 = 1;
    for (name, values) in &matrix.entries {
        let dimension_path = path.key(&name.value);
        fields::name(report, NameKind::MatrixDimension, name, &dimension_path);
        if values.value.0.is_empty() {
            report.error(
                values.pos,
                &dimension_path,
                format!(
                    "matrix dimension `{}` has no values: expected a non-empty list",
                    name.value
                ),
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(values.value.0.len());
        let mut texts = Vec::with_capacity(values.value.0.len());
        for (index, value) in values.value.0.iter().enumerate() {
            if let Some(bad) = value.value.0.chars().find(|&c| is_reserved(c)) {
                report.error(
                    value.pos,
                    &dimension_path.index(index),
                    format!(
                        "matrix value `{}` contains {}: values may not contain `,`, `=`, `[`, \
                         `]` or control characters, which would make instance ids \
                         (`task[dim=value,...]`) ambiguous",
                        shorten(&value.value.0),
                        describe_char(bad)
                    ),
                );
            }
            if let Some(first) = seen.get(value.value.0.as_str()) {
                report.error(
                    value.pos,
                    &dimension_path.index(index),
                    format!(
                        "value `{}` appears twice in matrix dimension `{}` (also at `{}`): \
                         instance ids would repeat",
                        shorten(&value.value.0),
                        name.value,
                        dimension_path.index(*first)
                    ),
                );
                continue;
            }
            seen.insert(&value.value.0, index);
            texts.push(value.value.0.clone());
        }
        combinations = combinations.saturating_mul(texts.len() as u64);
        dimensions.push((name.value.clone(), texts));
    }
    if combinations > limits::MAX_MATRIX_INSTANCES {
        report.error(
            matrix.pos,
            path,
            format!(
                "the matrix has {combinations} combinations, more than the limit of {} \
                 instances per task",
                limits::MAX_MATRIX_INSTANCES
            ),
        );
    }
    (dimensions, combinations)
}

/// Characters a matrix value may not contain: the separators of instance ids, and control
/// characters (line breaks, tabs, ...).
fn is_reserved(c: char) -> bool {
    matches!(c, ',' | '=' | '[' | ']') || c.is_control()
}

/// A character for a message: `` `,` `` or `a line break`.
fn describe_char(c: char) -> String {
    match c {
        '\n' | '\r' => "a line break".to_string(),
        '\t' => "a tab".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}
