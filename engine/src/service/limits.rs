//! Limits on request fields, checked before anything is done, so that a malformed or oversized
//! request gets `INVALID_ARGUMENT` naming the field path and the limit.

use super::error::ServiceError;
use crate::checkpoint::RunId;

/// Largest DAG file text accepted by `RegisterWorkflow`, in bytes (8 MiB). Larger workflows can
/// still run locally with `tandem run`, which reads files up to the DSL's own limit.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024 * 1024;
/// Largest gRPC message the server decodes, in bytes (16 MiB); above [`MAX_SOURCE_BYTES`] so
/// an oversized workflow gets our message rather than the transport's.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Longest file name, workflow name, queue, task type or worker id, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Most params in a `StartRun`.
pub const MAX_PARAMS: usize = 1_000;
/// Longest param value, in bytes (64 KiB).
pub const MAX_PARAM_VALUE_BYTES: usize = 64 * 1024;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Longest cancel reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Largest `page_size` of `ListRuns`; 0 means [`DEFAULT_PAGE_SIZE`].
pub const MAX_PAGE_SIZE: u32 = 1_000;
/// `page_size` used when the request gives 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Most attempts one `PollTasks` leases.
pub const MAX_POLL_TASKS: u32 = 1_000;
/// Longest long poll, in milliseconds.
pub const MAX_POLL_WAIT_MS: u32 = 60_000;
/// Long poll used when the request gives 0, in milliseconds.
pub const DEFAULT_POLL_WAIT_MS: u32 = 30_000;
/// Most task types in one `PollTasks`.
pub const MAX_TASK_TYPES: usize = 256;

/// An `INVALID_ARGUMENT` error for `field`.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks that `value` is at most `max` bytes.
pub fn at_most(field: &str, value: &str, max: usize) -> Result<(), ServiceError> {
    if value.len() > max {
        return Err(invalid(
            field,
            format!("expected at most {max} bytes, found {} bytes", value.len()),
        ));
    }
    Ok(())
}

/// Checks that `value` is 1..=`max` bytes.
pub fn required(field: &str, value: &str, max: usize) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(invalid(field, "expected a value, found an empty string"));
    }
    at_most(field, value, max)
}

/// Parses a run id (UUID text).
pub fn run_id(field: &str, value: &str) -> Result<RunId, ServiceError> {
    if value.is_empty() {
        return Err(invalid(
            field,
            "expected a run id (a UUID), found an empty string",
        ));
    }
    value.parse().map_err(|_| {
        let shown: String = value.chars().take(64).collect();
        invalid(
            field,
            format!("expected a run id (a UUID like 0192e4c8-7b1a-7cc3-9d2e-4f5a6b7c8d9e), found `{shown}`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_the_limit() {
        let error = at_most("reason", &"x".repeat(2000), MAX_REASON_BYTES).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid request field `reason`: expected at most 1024 bytes, found 2000 bytes"
        );
        let error = run_id("run_id", "nope").unwrap_err();
        assert!(error.to_string().contains("`run_id`"), "{error}");
        assert!(error.to_string().contains("found `nope`"), "{error}");
        assert!(required("workflow", "", 10).is_err());
        assert!(run_id("run_id", &RunId::new().to_string()).is_ok());
    }
}
