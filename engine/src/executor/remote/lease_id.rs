//! Lease ids: `RUN_ID:TASK_INDEX:ATTEMPT`, e.g. `0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70:4:2`.
//!
//! A lease id names the attempt itself, not a random token, so the engine that drives the run
//! (today or after a failover) can recognise a worker's lease from the id alone.

use std::fmt;
use std::str::FromStr;

use tandem_dsl::TaskIndex;

use super::error::RemoteError;
use crate::checkpoint::RunId;

/// The shape of a lease id, in error messages.
pub const LEASE_ID_SHAPE: &str = "RUN_ID:TASK_INDEX:ATTEMPT (a UUID, a task index and an attempt number from 1, like \
     0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70:4:2)";

/// Longest lease id accepted, in bytes (a UUID is 36, two u32 at most 10 each, two colons).
const MAX_LEASE_ID_BYTES: usize = 64;

/// The attempt a lease id names: run, task instance index and attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// The run.
    pub run_id: RunId,
    /// Task instance index in the run's workflow.
    pub task: TaskIndex,
    /// Attempt number, from 1.
    pub attempt: u32,
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.run_id, self.task, self.attempt)
    }
}

impl FromStr for LeaseKey {
    type Err = RemoteError;

    /// Parses `RUN_ID:TASK_INDEX:ATTEMPT`. Errors: [`RemoteError::InvalidLeaseId`] naming the
    /// expected shape and what was wrong.
    fn from_str(text: &str) -> Result<LeaseKey, RemoteError> {
        let invalid = |problem: String| RemoteError::InvalidLeaseId {
            found: shorten(text),
            problem,
        };
        if text.len() > MAX_LEASE_ID_BYTES {
            return Err(invalid(format!(
                "it is {} bytes long, more than the {MAX_LEASE_ID_BYTES} bytes a lease id can have",
                text.len()
            )));
        }
        let mut parts = text.split(':');
        let (Some(run), Some(task), Some(attempt), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            let colons = text.matches(':').count();
            return Err(invalid(format!(
                "it has {colons} `:` separators, expected 2"
            )));
        };
        let run_id = uuid::Uuid::try_parse(run)
            .map(RunId)
            .map_err(|error| invalid(format!("the run id `{run}` is not a UUID: {error}")))?;
        let task = parse_number(task)
            .ok_or_else(|| invalid(format!("the task index `{task}` is not a number")))?;
        let attempt = parse_number(attempt)
            .filter(|attempt| *attempt >= 1)
            .ok_or_else(|| {
                invalid(format!(
                    "the attempt `{attempt}` is not a number from 1 to {}",
                    u32::MAX
                ))
            })?;
        Ok(LeaseKey {
            run_id,
            task,
            attempt,
        })
    }
}

/// Parses a plain decimal u32 (no sign, no spaces).
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Quotes `text` for a message, shortened to 80 characters.
pub(super) fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = LeaseKey {
            run_id: RunId::new(),
            task: 17,
            attempt: 3,
        };
        let text = key.to_string();
        assert_eq!(text, format!("{}:17:3", key.run_id));
        assert_eq!(text.parse::<LeaseKey>().unwrap(), key);
    }

    #[test]
    fn bad_ids_name_the_shape_and_the_problem() {
        let run = RunId::new();
        for (text, problem) in [
            ("", "0 `:` separators"),
            ("abc", "0 `:` separators"),
            (&format!("{run}:1:2:3") as &str, "3 `:` separators"),
            ("not-a-uuid:1:1", "is not a UUID"),
            (&format!("{run}:x:1"), "task index `x` is not a number"),
            (&format!("{run}:-1:1"), "task index `-1` is not a number"),
            (&format!("{run}:1:0"), "attempt `0` is not a number from 1"),
            (&format!("{run}:1:99999999999"), "attempt `99999999999`"),
            (&format!("{run}: 1:1"), "task index ` 1`"),
            (&"9".repeat(200), "more than the 64 bytes"),
        ] {
            let error = text.parse::<LeaseKey>().unwrap_err();
            let message = error.to_string();
            assert!(matches!(error, RemoteError::InvalidLeaseId { .. }));
            assert!(message.contains(problem), "{message}");
            assert!(message.contains("RUN_ID:TASK_INDEX:ATTEMPT"), "{message}");
        }
    }
}
