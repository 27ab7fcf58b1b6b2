//! [`TaskContext`]: what a handler knows about its attempt, and how it reports progress and
//! learns that it should stop.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::task_error::TaskError;

/// Why a handler is asked to stop before it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// A heartbeat reply said the run is being cancelled: stop and return (an error or
    /// outputs).
    RunCancelled,
    /// The server no longer leases the attempt to this worker (it timed out, or its result was
    /// already recorded): whatever the handler returns will be refused.
    LeaseLost {
        /// The server's reply.
        message: String,
    },
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelReason::RunCancelled => f.write_str("the run is being cancelled"),
            CancelReason::LeaseLost { message } => {
                write!(
                    f,
                    "the attempt is no longer leased to this worker: {message}"
                )
            }
        }
    }
}

/// One leased attempt of a task, as its handler sees it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    attempt: AttemptInfo,
    details: watch::Sender<Option<String>>,
    cancel: watch::Receiver<Option<CancelReason>>,
}

/// The fields of a lease a handler may read (built from a `TaskLease`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttemptInfo {
    pub(crate) lease_id: String,
    pub(crate) run_id: String,
    pub(crate) task_id: String,
    pub(crate) attempt: u32,
    pub(crate) task_type: String,
    pub(crate) input: serde_json::Value,
    pub(crate) idempotency_key: String,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) traceparent: Option<String>,
    pub(crate) workflow: String,
}

/// The worker's ends of a context's channels.
#[derive(Debug)]
pub(crate) struct ContextChannels {
    /// Progress details set by [`TaskContext::heartbeat`] (`None` until the first call).
    pub(crate) details: watch::Receiver<Option<String>>,
    /// Set once when the handler should stop.
    pub(crate) cancel: watch::Sender<Option<CancelReason>>,
}

impl TaskContext {
    /// A context for `attempt` and the worker's ends of its channels.
    pub(crate) fn new(attempt: AttemptInfo) -> (TaskContext, ContextChannels) {
        let (details_tx, details_rx) = watch::channel(None);
        let (cancel_tx, cancel_rx) = watch::channel(None);
        let context = TaskContext {
            inner: Arc::new(Inner {
                attempt,
                details: details_tx,
                cancel: cancel_rx,
            }),
        };
        let channels = ContextChannels {
            details: details_rx,
            cancel: cancel_tx,
        };
        (context, channels)
    }

    /// The run id (UUIDv7 text).
    pub fn run_id(&self) -> &str {
        &self.inner.attempt.run_id
    }

    /// The task instance id (`load`, `transform[shard=1]`).
    pub fn task_id(&self) -> &str {
        &self.inner.attempt.task_id
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt.attempt
    }

    /// The task's `worker.type` (the handler's registered type).
    pub fn task_type(&self) -> &str {
        &self.inner.attempt.task_type
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        &self.inner.attempt.workflow
    }

    /// The task's rendered `input:` (a JSON object).
    pub fn input(&self) -> &serde_json::Value {
        &self.inner.attempt.input
    }

    /// The input deserialized into `T`; a mismatch is a non-retryable [`TaskError`] of type
    /// `invalid_input` that says what did not match.
    pub fn input_as<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        T::deserialize(&self.inner.attempt.input).map_err(|error| {
            TaskError::non_retryable(format!(
                "input of task {} (type {}): {error}",
                self.task_id(),
                self.task_type()
            ))
            .with_type("invalid_input")
        })
    }

    /// `RUN_ID/TASK_ID`: the same for every attempt of this task, across crashes and failovers
    /// (use it to make side effects idempotent).
    pub fn idempotency_key(&self) -> &str {
        &self.inner.attempt.idempotency_key
    }

    /// The W3C `traceparent` of the attempt's span, when the server traces.
    pub fn traceparent(&self) -> Option<&str> {
        self.inner.attempt.traceparent.as_deref()
    }

    /// The lease's heartbeat timeout (zero = none). The worker heartbeats automatically at
    /// about a third of it.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.inner.attempt.heartbeat_timeout
    }

    /// The attempt's timeout, if any; past it the server takes the attempt back.
    pub fn timeout(&self) -> Option<Duration> {
        self.inner.attempt.timeout
    }

    /// Records progress `details` (JSON or text; the server keeps at most 64 KiB). The worker
    /// sends the latest details with a heartbeat soon (at most about once a second), and with
    /// every automatic heartbeat after that. Never blocks.
    pub fn heartbeat(&self, details: impl Into<String>) {
        self.inner.details.send_replace(Some(details.into()));
    }

    /// True once the handler should stop (see [`TaskContext::cancel_reason`]).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.borrow().is_some()
    }

    /// Why the handler should stop, if it should.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.inner.cancel.borrow().clone()
    }

    /// Completes when the handler should stop (the run is being cancelled, or the lease was
    /// lost), with the reason; pends forever otherwise. Use it in `tokio::select!` around work.
    pub async fn cancelled(&self) -> CancelReason {
        let mut cancel = self.inner.cancel.clone();
        let reason = match cancel.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The worker dropped its end: the attempt is over for the worker, never cancelled
            // by it again.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn attempt_info() -> AttemptInfo {
        AttemptInfo {
            lease_id: "lease-1".to_string(),
            run_id: "run-1".to_string(),
            task_id: "load".to_string(),
            attempt: 2,
            task_type: "load_table".to_string(),
            input: serde_json::json!({"table": "users", "rows": 3}),
            idempotency_key: "run-1/load".to_string(),
            heartbeat_timeout: Duration::from_secs(3),
            timeout: None,
            traceparent: None,
            workflow: "etl".to_string(),
        }
    }

    #[test]
    fn exposes_the_lease() {
        let (context, _channels) = TaskContext::new(attempt_info());
        assert_eq!(context.run_id(), "run-1");
        assert_eq!(context.attempt(), 2);
        assert_eq!(context.idempotency_key(), "run-1/load");
        assert_eq!(context.input()["table"], "users");
    }

    #[test]
    fn input_as_names_the_mismatch() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Wanted {
            table: String,
            rows: String,
        }
        let (context, _channels) = TaskContext::new(attempt_info());
        let error = context.input_as::<Wanted>().expect_err("rows is a number");
        assert!(!error.is_retryable());
        assert_eq!(error.error_type(), Some("invalid_input"));
        assert!(error.message().contains("task load"), "{error}");
    }

    #[tokio::test]
    async fn heartbeat_details_reach_the_worker_and_cancel_reaches_the_handler() {
        let (context, mut channels) = TaskContext::new(attempt_info());
        context.heartbeat("10%");
        assert!(channels.details.has_changed().expect("sender alive"));
        assert_eq!(channels.details.borrow_and_update().as_deref(), Some("10%"));
        assert!(!context.is_cancelled());
        let waiting = tokio::spawn({
            let context = context.clone();
            async move { context.cancelled().await }
        });
        channels
            .cancel
            .send_replace(Some(CancelReason::RunCancelled));
        assert_eq!(
            waiting.await.expect("the waiter finishes"),
            CancelReason::RunCancelled
        );
        assert!(context.is_cancelled());
        assert_eq!(context.cancel_reason(), Some(CancelReason::RunCancelled));
    }
}
