//! One leased attempt from start to reported result: parse the lease, run the handler with
//! heartbeats, stop it at the end of a shutdown's grace period, report how it ended.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::error::ClientError;
use crate::proto;

use super::context::{AttemptInfo, TaskContext};
use super::heartbeat::{LastContact, is_refusal, keep_alive, lease_expiry};
use super::rpc::WorkerRpc;
use super::stats::Counters;
use super::task_error::{Outputs, TaskError};
use super::{Handler, Handlers};

/// Error type of an attempt stopped by the worker's shutdown (retryable, so another worker
/// runs it).
pub const WORKER_SHUTDOWN: &str = "worker_shutdown";
/// Error type of an attempt whose handler panicked (retryable).
pub const HANDLER_PANIC: &str = "handler_panic";
/// Error type of an attempt whose `input_json` is not a JSON object (non-retryable).
pub const INVALID_INPUT: &str = "invalid_input";
/// Error type of an attempt whose outputs the server refused (non-retryable).
pub const INVALID_OUTPUTS: &str = "invalid_outputs";
/// Error type of an attempt of a type this worker has no handler for, or that arrived when it
/// had no free slot (retryable: another worker may take it).
pub const NOT_HANDLED: &str = "not_handled";

/// How an attempt ended, before it is reported.
#[derive(Debug)]
enum Outcome {
    Completed(Outputs),
    Failed(TaskError),
}

/// What the worker shares with every attempt.
#[derive(Clone)]
pub(crate) struct AttemptEnv {
    pub(crate) rpc: WorkerRpc,
    pub(crate) handlers: Arc<Handlers>,
    pub(crate) counters: Arc<Counters>,
    /// `Some(deadline)` once the worker shuts down: handlers still running then are stopped.
    pub(crate) shutdown_deadline: watch::Receiver<Option<Instant>>,
    pub(crate) shutdown_grace: Duration,
}

/// Runs `lease` to a reported result. `reply_traceparent` is the poll reply's `traceparent`
/// metadata (used when the lease carries none).
pub(crate) async fn run_attempt(
    env: AttemptEnv,
    lease: proto::TaskLease,
    reply_traceparent: Option<String>,
) {
    let span = tracing::info_span!(
        "tandem.attempt",
        queue = env.rpc.queue(),
        worker_id = env.rpc.worker_id(),
        workflow = %lease.workflow,
        run_id = %lease.run_id,
        task_id = %lease.task_id,
        attempt = lease.attempt,
        task_type = %lease.task_type,
        traceparent = tracing::field::Empty,
    );
    let traceparent = Some(lease.traceparent.clone())
        .filter(|text| !text.is_empty())
        .or(reply_traceparent);
    if let Some(traceparent) = &traceparent {
        span.record("traceparent", traceparent.as_str());
    }
    supervise(env, lease, traceparent).instrument(span).await;
}

/// Hands `lease` back without running it (failed, retryable, error type `not_handled`):
/// the server leased more attempts than the poll asked for, so no slot is free for it.
pub(crate) async fn refuse_attempt(env: AttemptEnv, lease: proto::TaskLease) {
    let error = TaskError::retryable(format!(
        "worker {} had no free slot for the attempt: the server leased more attempts than the poll's max_tasks",
        env.rpc.worker_id()
    ))
    .with_type(NOT_HANDLED);
    let heartbeat_timeout = Duration::from_millis(u64::from(lease.heartbeat_timeout_ms));
    tracing::warn!(task_id = %lease.task_id, run_id = %lease.run_id, "{error}");
    report(
        &env,
        &lease.lease_id,
        Outcome::Failed(error),
        heartbeat_timeout,
        &LastContact::now(),
    )
    .await;
}

async fn supervise(env: AttemptEnv, lease: proto::TaskLease, traceparent: Option<String>) {
    let last_contact = LastContact::now();
    let heartbeat_timeout = Duration::from_millis(u64::from(lease.heartbeat_timeout_ms));
    let Some(handler) = env.handlers.get(&lease.task_type).cloned() else {
        let error = TaskError::retryable(format!(
            "worker {} on queue {} has no handler for task type `{}` (it handles: {})",
            env.rpc.worker_id(),
            env.rpc.queue(),
            lease.task_type,
            env.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .with_type(NOT_HANDLED);
        report(
            &env,
            &lease.lease_id,
            Outcome::Failed(error),
            heartbeat_timeout,
            &last_contact,
        )
        .await;
        return;
    };
    let input = match parse_input(&lease.input_json) {
        Ok(input) => input,
        Err(message) => {
            let error = TaskError::non_retryable(format!("task {}: {message}", lease.task_id))
                .with_type(INVALID_INPUT);
            report(
                &env,
                &lease.lease_id,
                Outcome::Failed(error),
                heartbeat_timeout,
                &last_contact,
            )
            .await;
            return;
        }
    };
    let info = AttemptInfo {
        lease_id: lease.lease_id.clone(),
        run_id: lease.run_id,
        task_id: lease.task_id,
        attempt: lease.attempt,
        task_type: lease.task_type,
        input,
        idempotency_key: lease.idempotency_key,
        heartbeat_timeout,
        timeout: (lease.timeout_ms > 0).then(|| Duration::from_millis(lease.timeout_ms)),
        traceparent,
        workflow: lease.workflow,
    };
    let (context, channels) = TaskContext::new(info);
    let heartbeats = AbortOnDrop(tokio::spawn(
        keep_alive(
            env.rpc.clone(),
            lease.lease_id.clone(),
            heartbeat_timeout,
            channels.details,
            channels.cancel,
            last_contact.clone(),
        )
        .in_current_span(),
    ));
    tracing::debug!("attempt started");
    let outcome = run_handler(&env, handler, context).await;
    match &outcome {
        Outcome::Completed(outputs) => {
            tracing::debug!(outputs = outputs.len(), "attempt succeeded")
        }
        Outcome::Failed(error) => {
            tracing::info!(%error, retryable = error.is_retryable(), "attempt failed")
        }
    }
    // Heartbeats go on while the result is delivered: the attempt is leased until then.
    report(
        &env,
        &lease.lease_id,
        outcome,
        heartbeat_timeout,
        &last_contact,
    )
    .await;
    drop(heartbeats);
}

/// A spawned task that is aborted when this guard is dropped: when the attempt's own future is
/// dropped (the worker was dropped or its task aborted), its handler stops and its heartbeats
/// stop too, so the server takes the attempt back after its heartbeat timeout.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the handler in its own task (so a panic is caught) until it returns or the shutdown's
/// grace period ends.
async fn run_handler(env: &AttemptEnv, handler: Handler, context: TaskContext) -> Outcome {
    // Called inside the task, so that a handler panicking before it returns a future is
    // caught too.
    let mut handle = AbortOnDrop(tokio::spawn(
        async move { handler(context).await }.in_current_span(),
    ));
    let mut deadline = env.shutdown_deadline.clone();
    let stopped = async {
        let at = match deadline.wait_for(Option::is_some).await {
            Ok(value) => *value,
            Err(_) => None,
        };
        match at {
            Some(at) => tokio::time::sleep_until(at).await,
            // The worker is gone: nothing will stop the handler.
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        joined = &mut handle.0 => match joined {
            Ok(Ok(outputs)) => Outcome::Completed(outputs),
            Ok(Err(error)) => Outcome::Failed(error),
            Err(join) if join.is_panic() => Outcome::Failed(
                TaskError::retryable(format!(
                    "the handler panicked: {}",
                    panic_message(join.into_panic().as_ref())
                ))
                .with_type(HANDLER_PANIC),
            ),
            Err(join) => Outcome::Failed(
                TaskError::retryable(format!("the handler's task was cancelled: {join}"))
                    .with_type(WORKER_SHUTDOWN),
            ),
        },
        () = stopped => {
            handle.0.abort();
            env.counters.released();
            Outcome::Failed(
                TaskError::retryable(format!(
                    "worker {} shut down before the attempt finished (grace period {} ms)",
                    env.rpc.worker_id(),
                    env.shutdown_grace.as_millis()
                ))
                .with_type(WORKER_SHUTDOWN),
            )
        }
    }
}

/// Delivers the outcome, following the region's leader. Failures other than an explicit
/// refusal ([`is_refusal`]) are retried until the later of the lease's certain expiry and the
/// failover timeout from now: during a failover the new leader adopts the attempt and accepts
/// its result. Outputs the server refuses become a non-retryable failure of type
/// `invalid_outputs`.
async fn report(
    env: &AttemptEnv,
    lease_id: &str,
    mut outcome: Outcome,
    heartbeat_timeout: Duration,
    last_contact: &LastContact,
) {
    let mut backoff = Backoff::default();
    let failover_end = Instant::now() + env.rpc.failover_timeout();
    loop {
        let deadline = lease_expiry(last_contact.get(), heartbeat_timeout).max(failover_end);
        let result = match &outcome {
            Outcome::Completed(outputs) => env.rpc.complete(lease_id, outputs, deadline).await,
            Outcome::Failed(error) => env.rpc.fail(lease_id, error, deadline).await,
        };
        match result {
            Ok(()) => {
                match outcome {
                    Outcome::Completed(_) => env.counters.completed(),
                    Outcome::Failed(_) => env.counters.failed(),
                }
                return;
            }
            Err(ClientError::InvalidArgument { message, .. })
                if matches!(outcome, Outcome::Completed(_)) =>
            {
                tracing::warn!(%message, "the server refused the attempt's outputs; failing it");
                outcome = Outcome::Failed(
                    TaskError::non_retryable(format!("outputs refused by the server: {message}"))
                        .with_type(INVALID_OUTPUTS),
                );
            }
            Err(error) if !is_refusal(&error) && Instant::now() < deadline => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot deliver the attempt's result");
                tokio::time::sleep(delay).await;
            }
            Err(error) => {
                tracing::warn!(%error, "the attempt's result was not accepted; the engine decides what happens to the attempt");
                env.counters.undelivered();
                return;
            }
        }
    }
}

/// The lease's `input_json` as a JSON object (empty text = `{}`).
fn parse_input(text: &str) -> Result<serde_json::Value, String> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value),
        Ok(other) => Err(format!(
            "expected the input to be a JSON object, found {}",
            json_kind(&other)
        )),
        Err(error) => Err(format!("the input is not valid JSON: {error}")),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The text of a panic's payload (`panic!("...")` gives `&str` or `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-text panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use crate::failover::Endpoints;
    use crate::worker::context::tests::attempt_info;

    /// An environment whose server is never called by `run_handler`.
    fn env(grace: Duration) -> (AttemptEnv, watch::Sender<Option<Instant>>) {
        let endpoints =
            Endpoints::lazy(&ClientConfig::new("http://127.0.0.1:9")).expect("a valid address");
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let env = AttemptEnv {
            rpc: WorkerRpc::new(endpoints, "q".to_string(), "w1".to_string()),
            handlers: Arc::new(Handlers::new()),
            counters: Arc::new(Counters::default()),
            shutdown_deadline: deadline_rx,
            shutdown_grace: grace,
        };
        (env, deadline_tx)
    }

    fn handler<F, Fut>(body: F) -> Handler
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Outputs, TaskError>> + Send + 'static,
    {
        Arc::new(move |context| Box::pin(body(context)))
    }

    fn context() -> TaskContext {
        TaskContext::new(attempt_info()).0
    }

    #[tokio::test]
    async fn a_returning_handler_gives_its_result() {
        let (env, _deadline) = env(Duration::from_secs(1));
        let outcome = run_handler(
            &env,
            handler(|task: TaskContext| async move {
                Ok(Outputs::from([(
                    "task".to_string(),
                    task.task_id().to_string(),
                )]))
            }),
            context(),
        )
        .await;
        match outcome {
            Outcome::Completed(outputs) => assert_eq!(outputs["task"], "load"),
            other => panic!("expected Completed, found {other:?}"),
        }
        let outcome = run_handler(
            &env,
            handler(|_| async { Err(TaskError::non_retryable("no").with_type("bad")) }),
            context(),
        )
        .await;
        match outcome {
            Outcome::Failed(error) => {
                assert!(!error.is_retryable());
                assert_eq!(error.error_type(), Some("bad"));
            }
            other => panic!("expected Failed, found {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_the_attempt_retryably() {
        let (env, _deadline) = env(Duration::from_secs(1));
        let panics_at_once: Handler = Arc::new(|_| panic!("sync boom"));
        for body in [handler(|_| async { panic!("async boom") }), panics_at_once] {
            match run_handler(&env, body, context()).await {
                Outcome::Failed(error) => {
                    assert!(error.is_retryable());
                    assert_eq!(error.error_type(), Some(HANDLER_PANIC));
                    assert!(error.message().contains("boom"), "{error}");
                }
                other => panic!("expected Failed, found {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_handlers_finish_within_the_grace_period() {
        let (env, deadline) = env(Duration::from_secs(5));
        let slow = handler(|_| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(Outputs::new())
        });
        let running = tokio::spawn({
            let env = env.clone();
            async move { run_handler(&env, slow, context()).await }
        });
        tokio::task::yield_now().await;
        deadline.send_replace(Some(Instant::now() + Duration::from_secs(5)));
        let outcome = running.await.expect("no panic");
        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        assert_eq!(env.counters.snapshot().released, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_handlers_still_running_after_the_grace_period() {
        let (env, deadline) = env(Duration::from_secs(5));
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        let dropped_tx = Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
        let endless = handler(move |_| {
            // Dropped (closing the channel) when the handler's future is dropped.
            let guard = dropped_tx.lock().expect("unpoisoned").take();
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(Outputs::new())
            }
        });
        let started = Instant::now();
        let running = tokio::spawn({
            let env = env.clone();
            async move { run_handler(&env, endless, context()).await }
        });
        tokio::task::yield_now().await;
        deadline.send_replace(Some(Instant::now() + Duration::from_secs(5)));
        let outcome = running.await.expect("no panic");
        assert!(started.elapsed() >= Duration::from_secs(5));
        match outcome {
            Outcome::Failed(error) => {
                assert!(error.is_retryable());
                assert_eq!(error.error_type(), Some(WORKER_SHUTDOWN));
                assert!(error.message().contains("grace period 5000 ms"), "{error}");
            }
            other => panic!("expected Failed, found {other:?}"),
        }
        assert_eq!(env.counters.snapshot().released, 1);
        // The handler's task was aborted: its future is dropped.
        dropped_rx
            .await
            .expect_err("the sender is dropped with the future");
    }

    #[test]
    fn input_must_be_a_json_object() {
        assert_eq!(
            parse_input(r#"{"table": "t", "rows": 2}"#),
            Ok(serde_json::json!({"table": "t", "rows": 2}))
        );
        assert_eq!(parse_input(""), Ok(serde_json::json!({})));
        let error = parse_input("[1, 2]").expect_err("an array");
        assert!(error.contains("found an array"), "{error}");
        let error = parse_input("{").expect_err("truncated");
        assert!(error.contains("not valid JSON"), "{error}");
    }

    #[tokio::test]
    async fn panic_messages_are_recovered() {
        let joined = tokio::spawn(async { panic!("boom {}", 7) }).await;
        let payload = joined.expect_err("it panicked").into_panic();
        assert_eq!(panic_message(payload.as_ref()), "boom 7");
        let joined = tokio::spawn(async { std::panic::panic_any(42_u8) }).await;
        let payload = joined.expect_err("it panicked").into_panic();
        assert_eq!(panic_message(payload.as_ref()), "a non-text panic payload");
    }
}
