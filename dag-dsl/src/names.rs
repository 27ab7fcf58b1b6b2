//! Spelling rules for the names a workflow file declares.

use crate::limits;

/// What a name names, with its spelling rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    /// The workflow `name`: `[A-Za-z0-9_-]+`.
    Workflow,
    /// A task id (a key of `tasks`): `[A-Za-z0-9_-]+`.
    Task,
    /// A param name: `[A-Za-z_][A-Za-z0-9_-]*`.
    Param,
    /// A matrix dimension: `[A-Za-z_][A-Za-z0-9_-]*`.
    MatrixDimension,
    /// An output key in `${{ tasks.ID.outputs.KEY }}`: `[A-Za-z_][A-Za-z0-9_-]*` (the keys a
    /// task can write to `$TANDEM_OUTPUT`).
    OutputKey,
    /// An environment variable: `[A-Za-z_][A-Za-z0-9_]*`, not starting with `TANDEM_`.
    EnvVar,
    /// A worker task queue (`worker.queue`): `[A-Za-z_][A-Za-z0-9_.-]*`, at most
    /// [`limits::MAX_WORKER_NAME_BYTES`] bytes.
    Queue,
    /// A worker task type (`worker.type`): same rule as [`NameKind::Queue`].
    TaskType,
}

/// Prefix of the environment variables Tandem sets for every attempt.
pub(crate) const RESERVED_ENV_PREFIX: &str = "TANDEM_";

impl NameKind {
    /// What the name is, in messages: `task id`, `env var name`, ...
    pub(crate) fn noun(self) -> &'static str {
        match self {
            NameKind::Workflow => "workflow name",
            NameKind::Task => "task id",
            NameKind::Param => "param name",
            NameKind::MatrixDimension => "matrix dimension name",
            NameKind::OutputKey => "output key",
            NameKind::EnvVar => "env var name",
            NameKind::Queue => "queue name",
            NameKind::TaskType => "task type",
        }
    }

    /// The rule, in words.
    pub(crate) fn rule(self) -> &'static str {
        match self {
            NameKind::Workflow | NameKind::Task => "letters, digits, `-` and `_`",
            NameKind::Param | NameKind::MatrixDimension | NameKind::OutputKey => {
                "a letter or `_`, then letters, digits, `-` and `_`"
            }
            NameKind::EnvVar => "a letter or `_`, then letters, digits and `_`",
            NameKind::Queue | NameKind::TaskType => {
                "a letter or `_`, then letters, digits, `_`, `-` and `.` (at most 128 bytes)"
            }
        }
    }

    /// The rule as a JSON Schema (ECMA-262) pattern.
    pub(crate) fn pattern(self) -> &'static str {
        match self {
            NameKind::Workflow | NameKind::Task => "^[A-Za-z0-9_-]+$",
            NameKind::Param | NameKind::MatrixDimension | NameKind::OutputKey => {
                "^[A-Za-z_][A-Za-z0-9_-]*$"
            }
            NameKind::EnvVar => "^(?!TANDEM_)[A-Za-z_][A-Za-z0-9_]*$",
            NameKind::Queue | NameKind::TaskType => "^[A-Za-z_][A-Za-z0-9_.-]*$",
        }
    }
}

/// Checks `name` against the rule of `kind`. The error says what was expected and found.
pub(crate) fn check(kind: NameKind, name: &str) -> Result<(), String> {
    let first_ok = |c: char| match kind {
        NameKind::Workflow | NameKind::Task => c.is_ascii_alphanumeric() || c == '-' || c == '_',
        _ => c.is_ascii_alphabetic() || c == '_',
    };
    let rest_ok = |c: char| match kind {
        NameKind::EnvVar => c.is_ascii_alphanumeric() || c == '_',
        NameKind::Queue | NameKind::TaskType => {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
        }
        _ => c.is_ascii_alphanumeric() || c == '-' || c == '_',
    };
    let mut chars = name.chars();
    let valid = match chars.next() {
        None => false,
        Some(first) => first_ok(first) && chars.all(rest_ok),
    };
    if valid
        && matches!(kind, NameKind::Queue | NameKind::TaskType)
        && name.len() > limits::MAX_WORKER_NAME_BYTES
    {
        return Err(format!(
            "invalid {}: expected at most {} bytes, found {} bytes (`{}`)",
            kind.noun(),
            limits::MAX_WORKER_NAME_BYTES,
            name.len(),
            shorten(name)
        ));
    }
    if !valid {
        let found = if name.is_empty() {
            "an empty name".to_string()
        } else {
            format!("`{}`", shorten(name))
        };
        return Err(format!(
            "invalid {}: expected {}, found {found}",
            kind.noun(),
            kind.rule()
        ));
    }
    if kind == NameKind::EnvVar && name.starts_with(RESERVED_ENV_PREFIX) {
        return Err(format!(
            "env var `{name}` is reserved: names starting with `{RESERVED_ENV_PREFIX}` are set \
             by Tandem for every attempt"
        ));
    }
    Ok(())
}

/// `text` for quoting in messages: cut to at most 60 characters (with `...` when cut), and
/// control characters escaped (`\n`, `\t`, `\u{1b}`) so a message stays on one line.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::with_capacity(text.len().min(MAX + 3));
    for (count, c) in text.chars().enumerate() {
        if count == MAX {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_allow_leading_digits_and_dashes() {
        assert!(check(NameKind::Task, "1-extract_x").is_ok());
        assert!(check(NameKind::Task, "a.b").is_err());
        assert!(check(NameKind::Task, "").is_err());
        assert!(check(NameKind::Workflow, "nightly etl").is_err());
    }

    #[test]
    fn params_and_dimensions_start_with_a_letter() {
        assert!(check(NameKind::Param, "day-of_week").is_ok());
        assert!(check(NameKind::Param, "_x").is_ok());
        assert!(check(NameKind::Param, "1x").is_err());
        assert!(check(NameKind::MatrixDimension, "os.arch").is_err());
    }

    #[test]
    fn env_names_have_no_dashes_and_no_reserved_prefix() {
        assert!(check(NameKind::EnvVar, "LANG").is_ok());
        assert!(check(NameKind::EnvVar, "MY-VAR").is_err());
        let reserved = check(NameKind::EnvVar, "TANDEM_RUN").unwrap_err();
        assert!(reserved.contains("reserved"), "{reserved}");
    }

    #[test]
    fn queues_and_task_types_allow_dots_and_have_a_length_limit() {
        assert!(check(NameKind::Queue, "eu-west.loaders_2").is_ok());
        assert!(check(NameKind::TaskType, "load_table").is_ok());
        assert!(check(NameKind::Queue, "2loaders").is_err());
        assert!(check(NameKind::TaskType, "load table").is_err());
        assert!(check(NameKind::Queue, &"q".repeat(128)).is_ok());
        let long = check(NameKind::Queue, &"q".repeat(129)).unwrap_err();
        assert!(
            long.contains("at most 128 bytes, found 129 bytes"),
            "{long}"
        );
    }

    #[test]
    fn control_characters_are_escaped_in_messages() {
        assert_eq!(shorten("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(shorten(&"é".repeat(61)), "é".repeat(60) + "...");
    }

    #[test]
    fn long_names_are_shortened_in_messages() {
        let name = "x".repeat(100) + " y";
        let message = check(NameKind::Task, &name).unwrap_err();
        assert!(message.len() < 150, "{message}");
    }
}
