//! [`Worker`]: runs attempts of tasks declared with `worker: { queue, type }` by long-polling
//! a task queue of a Tandem server.
//!
//! ```no_run
//! use tandem_api::{Outputs, TaskContext, TaskError, Worker};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let worker = Worker::builder("http://127.0.0.1:7233", "loaders")
//!     .handler("load_table", |task: TaskContext| async move {
//!         let table = task.input()["table"].as_str().unwrap_or_default().to_string();
//!         if table.is_empty() {
//!             return Err(TaskError::non_retryable("input.table is missing").with_type("bad_input"));
//!         }
//!         task.heartbeat(format!("loading {table}"));
//!         Ok(Outputs::from([("rows_loaded".to_string(), "42".to_string())]))
//!     })
//!     .concurrency(8)
//!     .build()?;
//! let stats = worker.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! println!("{} attempts completed", stats.completed);
//! # Ok(())
//! # }
//! ```

mod attempt;
mod context;
mod heartbeat;
mod rpc;
mod stats;
mod task_error;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::failover::Endpoints;

pub use attempt::{HANDLER_PANIC, INVALID_INPUT, INVALID_OUTPUTS, NOT_HANDLED, WORKER_SHUTDOWN};
pub use context::{CancelReason, TaskContext};
pub use stats::WorkerStats;
pub use task_error::{Outputs, TaskError};

use attempt::{AttemptEnv, refuse_attempt, run_attempt};
use rpc::WorkerRpc;
use stats::Counters;

/// The future a handler returns.
type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outputs, TaskError>> + Send>>;
/// A registered handler.
type Handler = Arc<dyn Fn(TaskContext) -> HandlerFuture + Send + Sync>;
/// Handlers by task type.
type Handlers = BTreeMap<String, Handler>;

/// Most attempts one poll may ask for (`PollTasksRequest.max_tasks`).
const MAX_TASKS_PER_POLL: usize = 1000;
/// Longest long-poll wait the server accepts (`PollTasksRequest.wait_ms`).
const MAX_POLL_WAIT: Duration = Duration::from_secs(60);
/// Longest queue name (`PollTasksRequest.queue`), bytes.
const MAX_QUEUE_BYTES: usize = 128;
/// Longest worker id (`PollTasksRequest.worker_id`), bytes.
const MAX_WORKER_ID_BYTES: usize = 256;

/// A worker's configuration is unusable (returned by [`WorkerBuilder::build`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerConfigError {
    /// The server address is malformed.
    #[error(transparent)]
    Endpoint(#[from] ClientError),
    /// No handler was registered.
    #[error(
        "worker for queue `{queue}` has no handlers: register at least one with .handler(TYPE, ..)"
    )]
    NoHandlers {
        /// The queue.
        queue: String,
    },
    /// Two handlers for one task type.
    #[error("task type `{task_type}` has two handlers; register each type once")]
    DuplicateHandler {
        /// The task type.
        task_type: String,
    },
    /// The queue name is empty or longer than 128 bytes.
    #[error("queue name: expected 1..=128 bytes, found {bytes} (`{queue}`)")]
    Queue {
        /// The queue name.
        queue: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// A task type is empty.
    #[error("task type: expected a non-empty name")]
    EmptyTaskType,
    /// The worker id is empty or longer than 256 bytes.
    #[error("worker id: expected 1..=256 bytes, found {bytes}")]
    WorkerId {
        /// Its length in bytes.
        bytes: usize,
    },
}

/// Builds a [`Worker`]: see [`Worker::builder`].
pub struct WorkerBuilder {
    config: ClientConfig,
    queue: String,
    worker_id: Option<String>,
    handlers: Vec<(String, Handler)>,
    concurrency: usize,
    poll_wait: Duration,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("queue", &self.queue)
            .field("worker_id", &self.worker_id)
            .field(
                "handlers",
                &self
                    .handlers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("concurrency", &self.concurrency)
            .field("poll_wait", &self.poll_wait)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl WorkerBuilder {
    /// Default most attempts running at once.
    pub const DEFAULT_CONCURRENCY: usize = 10;
    /// Default long-poll wait.
    pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(20);
    /// Default time running handlers get to finish after shutdown starts.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

    /// Registers the handler of attempts of `task_type` (a task's `worker.type`). The handler
    /// gets the attempt's [`TaskContext`] and returns its [`Outputs`] or a [`TaskError`]; it
    /// runs in its own tokio task (a panic fails the attempt, retryable, and the worker goes
    /// on).
    pub fn handler<F, Fut>(mut self, task_type: impl Into<String>, handler: F) -> WorkerBuilder
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outputs, TaskError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |context| Box::pin(handler(context)));
        self.handlers.push((task_type.into(), handler));
        self
    }

    /// Most attempts running at once (at least 1; default [`Self::DEFAULT_CONCURRENCY`]).
    /// Polls ask for at most the free slots.
    pub fn concurrency(mut self, slots: usize) -> WorkerBuilder {
        self.concurrency = slots.max(1);
        self
    }

    /// The id the server records for this worker (at most 256 bytes); default
    /// `HOSTNAME-PID`.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> WorkerBuilder {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// How long one poll waits for attempts (at most 60 s; default
    /// [`Self::DEFAULT_POLL_WAIT`]).
    pub fn poll_wait(mut self, wait: Duration) -> WorkerBuilder {
        self.poll_wait = wait.min(MAX_POLL_WAIT);
        self
    }

    /// How long handlers still running at shutdown may go on before they are stopped and
    /// their attempts failed (retryable, error type `worker_shutdown`); default
    /// [`Self::DEFAULT_SHUTDOWN_GRACE`].
    pub fn shutdown_grace(mut self, grace: Duration) -> WorkerBuilder {
        self.shutdown_grace = grace;
        self
    }

    /// Checks the configuration. Does not connect: [`Worker::run_until`] does, and retries
    /// while the server is unavailable.
    pub fn build(self) -> Result<Worker, WorkerConfigError> {
        self.config.check()?;
        if self.queue.is_empty() || self.queue.len() > MAX_QUEUE_BYTES {
            return Err(WorkerConfigError::Queue {
                bytes: self.queue.len(),
                queue: self.queue,
            });
        }
        let worker_id = self.worker_id.unwrap_or_else(default_worker_id);
        if worker_id.is_empty() || worker_id.len() > MAX_WORKER_ID_BYTES {
            return Err(WorkerConfigError::WorkerId {
                bytes: worker_id.len(),
            });
        }
        if self.handlers.is_empty() {
            return Err(WorkerConfigError::NoHandlers { queue: self.queue });
        }
        let mut handlers = Handlers::new();
        for (task_type, handler) in self.handlers {
            if task_type.is_empty() {
                return Err(WorkerConfigError::EmptyTaskType);
            }
            if handlers.contains_key(&task_type) {
                return Err(WorkerConfigError::DuplicateHandler { task_type });
            }
            handlers.insert(task_type, handler);
        }
        Ok(Worker {
            config: self.config,
            queue: self.queue,
            worker_id,
            handlers: Arc::new(handlers),
            concurrency: self.concurrency,
            poll_wait: self.poll_wait,
            shutdown_grace: self.shutdown_grace,
        })
    }
}

/// A worker of one task queue: polls for attempts of the task types it has handlers for, runs
/// at most `concurrency` of them at once, heartbeats each automatically, and reports how each
/// ended. See the module docs for an example.
pub struct Worker {
    config: ClientConfig,
    queue: String,
    worker_id: String,
    handlers: Arc<Handlers>,
    concurrency: usize,
    poll_wait: Duration,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("endpoints", &self.config.endpoints())
            .field("queue", &self.queue)
            .field("worker_id", &self.worker_id)
            .field("task_types", &self.handlers.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Worker {
    /// A builder for a worker of `queue` (1..=128 bytes) on the server `config` (an address
    /// `http://host:port`, or a [`ClientConfig`]).
    pub fn builder(config: impl Into<ClientConfig>, queue: impl Into<String>) -> WorkerBuilder {
        WorkerBuilder {
            config: config.into(),
            queue: queue.into(),
            worker_id: None,
            handlers: Vec::new(),
            concurrency: WorkerBuilder::DEFAULT_CONCURRENCY,
            poll_wait: WorkerBuilder::DEFAULT_POLL_WAIT,
            shutdown_grace: WorkerBuilder::DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// The id the server records for this worker.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Polls and runs attempts until `shutdown` completes, then shuts down gracefully: stops
    /// polling at once (an attempt leased by a poll cut off there is taken back by the server
    /// after its heartbeat timeout), lets running handlers finish for the grace period, stops
    /// the ones still running then and fails their attempts (retryable, error type
    /// `worker_shutdown`) so the engine retries them elsewhere, and returns once every result
    /// is delivered (or its lease has expired).
    ///
    /// While the server is unavailable it retries with backoff (100 ms doubling to 10 s).
    /// Errors: a poll refused for good (e.g. [`ClientError::InvalidArgument`] for a bad queue
    /// name) stops polling, shuts down as above and is returned.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerStats, ClientError> {
        let endpoints = Endpoints::lazy(&self.config)?;
        let rpc = WorkerRpc::new(endpoints, self.queue.clone(), self.worker_id.clone());
        let span = tracing::info_span!(
            "tandem.worker",
            endpoint = %rpc.endpoints(),
            queue = %self.queue,
            worker_id = %self.worker_id
        );
        let counters = Arc::new(Counters::default());
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let env = AttemptEnv {
            rpc: rpc.clone(),
            handlers: self.handlers.clone(),
            counters: counters.clone(),
            shutdown_deadline: deadline_rx,
            shutdown_grace: self.shutdown_grace,
        };
        let mut attempts = JoinSet::new();
        let result = self
            .poll_loop(&rpc, &env, &mut attempts, shutdown)
            .instrument(span.clone())
            .await;
        deadline_tx.send_replace(Some(Instant::now() + self.shutdown_grace));
        span.in_scope(|| {
            tracing::info!(
                running = attempts.len(),
                grace_ms = self.shutdown_grace.as_millis() as u64,
                "worker stopped polling; waiting for running attempts"
            )
        });
        while let Some(joined) = attempts.join_next().await {
            if let Err(error) = joined {
                // Attempt supervisors catch handler panics; this is a bug of the SDK itself.
                span.in_scope(|| tracing::error!(%error, "an attempt supervisor failed"));
            }
        }
        result.map(|()| counters.snapshot())
    }

    /// Polls until `shutdown` or an error that retrying cannot fix.
    async fn poll_loop(
        &self,
        rpc: &WorkerRpc,
        env: &AttemptEnv,
        attempts: &mut JoinSet<()>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        let task_types: Vec<String> = self.handlers.keys().cloned().collect();
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::default();
        tracing::info!(
            task_types = %task_types.join(","),
            concurrency = self.concurrency,
            "worker polling"
        );
        loop {
            while attempts.try_join_next().is_some() {}
            let mut permits = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                permits = free_slots(&slots) => permits,
            };
            let max_tasks = u32::try_from(permits.num_permits()).unwrap_or(u32::MAX);
            let polled = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                polled = rpc.poll(&task_types, max_tasks, self.poll_wait) => polled,
            };
            match polled {
                Ok(polled) => {
                    if backoff.failures() > 0 {
                        tracing::info!("reached the server again");
                    }
                    backoff.reset();
                    env.counters.leased(polled.leases.len() as u64);
                    let single = polled.leases.len() == 1;
                    for lease in polled.leases {
                        let traceparent = if single {
                            polled.traceparent.clone()
                        } else {
                            None
                        };
                        let env = env.clone();
                        match permits.split(1) {
                            Some(slot) => attempts.spawn(
                                async move {
                                    let _slot: OwnedSemaphorePermit = slot;
                                    run_attempt(env, lease, traceparent).await;
                                }
                                .in_current_span(),
                            ),
                            None => attempts.spawn(refuse_attempt(env, lease).in_current_span()),
                        };
                    }
                }
                Err(error) if error.is_transient() => {
                    let delay = backoff.next_delay();
                    if backoff.failures() == 1 {
                        tracing::warn!(%error, "cannot poll; retrying with backoff");
                    } else {
                        tracing::debug!(%error, retry_in_ms = delay.as_millis() as u64, "cannot poll");
                    }
                    tokio::select! {
                        biased;
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "polling refused; shutting down");
                    return Err(error);
                }
            }
        }
    }
}

/// Waits for at least one free slot and takes every free one (at most
/// [`MAX_TASKS_PER_POLL`]).
async fn free_slots(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    let first = slots.clone().acquire_owned().await;
    // The semaphore is never closed.
    let Ok(mut permits) = first else {
        return std::future::pending().await;
    };
    let more = slots.available_permits().min(MAX_TASKS_PER_POLL - 1);
    if more > 0
        && let Ok(extra) = slots
            .clone()
            .try_acquire_many_owned(u32::try_from(more).unwrap_or(u32::MAX))
    {
        permits.merge(extra);
    }
    permits
}

/// `HOSTNAME-PID` (`worker-PID` when the host name is unknown).
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok_handler(_: TaskContext) -> Result<Outputs, TaskError> {
        Ok(Outputs::new())
    }

    #[test]
    fn build_checks_the_configuration() {
        let error = Worker::builder("http://127.0.0.1:1", "q")
            .build()
            .expect_err("no handlers");
        assert!(
            matches!(error, WorkerConfigError::NoHandlers { .. }),
            "{error}"
        );
        let error = Worker::builder("http://127.0.0.1:1", "q")
            .handler("a", ok_handler)
            .handler("a", ok_handler)
            .build()
            .expect_err("twice");
        assert_eq!(
            error,
            WorkerConfigError::DuplicateHandler {
                task_type: "a".to_string()
            }
        );
        let error = Worker::builder("http://127.0.0.1:1", "")
            .handler("a", ok_handler)
            .build()
            .expect_err("empty queue");
        assert!(error.to_string().contains("1..=128 bytes"), "{error}");
        let error = Worker::builder("https://127.0.0.1:1", "q")
            .handler("a", ok_handler)
            .build()
            .expect_err("TLS");
        assert!(matches!(error, WorkerConfigError::Endpoint(_)), "{error}");
        let error = Worker::builder("http://127.0.0.1:1", "q")
            .handler("", ok_handler)
            .build()
            .expect_err("empty type");
        assert_eq!(error, WorkerConfigError::EmptyTaskType);
        let worker = Worker::builder("127.0.0.1:1", "q")
            .handler("a", ok_handler)
            .worker_id("w1")
            .build()
            .expect("valid");
        assert_eq!(worker.worker_id(), "w1");
    }

    #[test]
    fn default_worker_id_names_the_process() {
        let id = default_worker_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.len() <= MAX_WORKER_ID_BYTES);
    }

    #[tokio::test]
    async fn free_slots_takes_every_free_slot_and_waits_for_one() {
        let slots = Arc::new(Semaphore::new(3));
        let taken = slots.clone().acquire_owned().await.expect("open");
        let mut permits = free_slots(&slots).await;
        assert_eq!(permits.num_permits(), 2);
        let one = permits.split(1).expect("two held");
        assert_eq!(permits.num_permits(), 1);
        drop(permits);
        // One slot is free again; the next poll asks for exactly one.
        assert_eq!(free_slots(&slots).await.num_permits(), 1);
        drop(one);
        drop(taken);
        assert_eq!(slots.available_permits(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retried_until_shutdown() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let worker = Worker::builder(format!("http://127.0.0.1:{port}"), "q")
            .handler("a", ok_handler)
            .build()
            .expect("valid");
        // With nothing listening every poll fails as UNAVAILABLE; the worker keeps retrying and
        // stops cleanly at shutdown.
        let stats = worker
            .run_until(tokio::time::sleep(Duration::from_secs(1)))
            .await
            .expect("retried, not failed");
        assert_eq!(stats, WorkerStats::default());
    }
}
