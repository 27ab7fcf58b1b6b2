//! [`TaskError`] and [`Outputs`]: what a task handler returns.

use std::collections::BTreeMap;
use std::fmt;

/// Outputs of a succeeded attempt, visible downstream as `${{ tasks.ID.outputs.KEY }}`.
///
/// The server refuses (and the worker then fails the attempt, non-retryable, with error type
/// `invalid_outputs`) more than 256 entries, keys not matching `[A-Za-z_][A-Za-z0-9_]*`, or more
/// than 1 MiB in total.
pub type Outputs = BTreeMap<String, String>;

/// Why a handler's attempt failed, and whether the engine may retry it.
///
/// Any `std::error::Error` converts into a retryable `TaskError` (so `?` works in handlers);
/// use [`TaskError::non_retryable`] for failures a retry cannot fix, and
/// [`TaskError::with_type`] to name the error type that a task's `retry.non_retryable_errors`
/// matches (Temporal's `NonRetryableErrorTypes`).
///
/// ```
/// use tandem_api::TaskError;
/// let error = TaskError::non_retryable("table `x` does not exist").with_type("missing_table");
/// assert!(!error.is_retryable());
/// assert_eq!(error.error_type(), Some("missing_table"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    message: String,
    retryable: bool,
    error_type: Option<String>,
}

impl TaskError {
    /// A failure the engine may retry per the task's retry policy.
    pub fn retryable(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: true,
            error_type: None,
        }
    }

    /// A failure that ends the task without further attempts.
    pub fn non_retryable(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: false,
            error_type: None,
        }
    }

    /// Sets the error type (matched against the task's `retry.non_retryable_errors`).
    pub fn with_type(mut self, error_type: impl Into<String>) -> TaskError {
        self.error_type = Some(error_type.into());
        self
    }

    /// What went wrong (sent as the attempt's error; the server keeps at most 64 KiB).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the engine may retry the task.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The error type, if set.
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_type {
            Some(error_type) => write!(f, "{error_type}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    /// A retryable failure whose message is the error and its sources, `: `-separated.
    fn from(error: E) -> TaskError {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            message = format!("{message}: {inner}");
            source = inner.source();
        }
        TaskError::retryable(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_retryability_and_type() {
        let error = TaskError::retryable("db busy");
        assert!(error.is_retryable());
        assert_eq!(error.error_type(), None);
        assert_eq!(error.to_string(), "db busy");
        let error = TaskError::non_retryable("bad input").with_type("invalid_input");
        assert!(!error.is_retryable());
        assert_eq!(error.to_string(), "invalid_input: bad input");
    }

    #[test]
    fn std_errors_convert_to_retryable() {
        fn parse(text: &str) -> Result<u32, TaskError> {
            Ok(text.parse::<u32>()?)
        }
        let error = parse("x").expect_err("not a number");
        assert!(error.is_retryable());
        assert!(error.message().contains("invalid digit"), "{error}");
    }
}
