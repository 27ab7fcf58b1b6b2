//! The values that cross the remote executor's boundary: with workers (poll requests, leases,
//! heartbeat replies) and with the runs' drivers (attempts to enqueue, reports with acks).

use std::time::Duration;

use tandem_dsl::TaskIndex;
use tokio::sync::oneshot;

use crate::checkpoint::{AttemptOutcome, RunId};

/// Settings of a region's task queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Longest a poll waits for work; longer requested waits are cut to this. Default 60 s.
    pub max_poll_wait: Duration,
    /// Most attempts one poll leases; larger requests are cut to this. Default 1000.
    pub max_tasks_per_poll: usize,
    /// How many ended leases are remembered, so that a late heartbeat, completion or failure
    /// is told how and when its attempt ended (older ones get "unknown lease"). Default 10 000.
    pub remembered_ends: usize,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            max_poll_wait: Duration::from_secs(60),
            max_tasks_per_poll: 1000,
            remembered_ends: 10_000,
        }
    }
}

/// A worker's request for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRequest {
    /// The task queue (a task's `worker.queue`).
    pub queue: String,
    /// Who polls, for messages ("worker w1 stopped heartbeating").
    pub worker_id: String,
    /// Task types the worker handles; empty means any type on the queue.
    pub task_types: Vec<String>,
    /// Most attempts to lease, cut into `1..=`[`RemoteConfig::max_tasks_per_poll`].
    pub max_tasks: usize,
    /// Longest wait for a first attempt (cut to [`RemoteConfig::max_poll_wait`]); zero takes
    /// what is there without waiting.
    pub wait: Duration,
}

/// One attempt leased to a worker: the fields of proto `tandem.v1.TaskLease`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// `RUN_ID:TASK_INDEX:ATTEMPT`, the handle for heartbeat, complete and fail.
    pub lease_id: String,
    /// The run.
    pub run_id: RunId,
    /// Task instance id (`load[table=users]`).
    pub task_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The task's `worker.type`.
    pub task_type: String,
    /// The task's rendered `input:`, a JSON object.
    pub input: serde_json::Value,
    /// `RUN_ID/TASK_ID`: the same for every attempt of the task, across crashes.
    pub idempotency_key: String,
    /// The worker must heartbeat at least this often or lose the attempt.
    pub heartbeat_timeout: Duration,
    /// The attempt's timeout, counted from the lease; past it the attempt is taken back and
    /// ends timed out.
    pub timeout: Option<Duration>,
    /// W3C trace context of the attempt's span, when tracing is on.
    pub traceparent: Option<String>,
    /// The workflow's name.
    pub workflow: String,
}

/// What a heartbeat tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The run is being cancelled: the worker should stop and report with fail or complete
    /// (either one then ends the attempt as cancelled).
    pub cancel_requested: bool,
}

/// An attempt of a worker task to put on its queue (built by the runner from a
/// [`crate::scheduler::DispatchKind::Worker`] dispatch).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAttempt {
    /// Task instance index.
    pub task: TaskIndex,
    /// Task instance id.
    pub task_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The task queue (`worker.queue`).
    pub queue: String,
    /// The task type (`worker.type`).
    pub task_type: String,
    /// The rendered `input:` (a JSON object).
    pub input: serde_json::Value,
    /// Heartbeat at least this often, or the attempt is taken back.
    pub heartbeat_timeout: Duration,
    /// Per-attempt timeout, counted from the lease.
    pub timeout: Option<Duration>,
    /// W3C trace context of the attempt's span, when tracing is on.
    pub traceparent: Option<String>,
}

/// The end of a worker attempt, sent to its run's driver.
#[derive(Debug)]
pub struct RemoteReport {
    /// Task instance.
    pub task: TaskIndex,
    /// Attempt number.
    pub attempt: u32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Present when a worker waits for the result to be durable (complete, fail); absent for
    /// ends decided by the engine (heartbeat timeout, attempt timeout, cancellation).
    pub ack: Option<Ack>,
}

/// The promise, made by a run's driver, to tell a waiting worker call whether the attempt's
/// end was committed. Dropping it unanswered tells the caller the engine stopped.
#[derive(Debug)]
pub struct Ack(oneshot::Sender<Result<(), AckError>>);

/// Why a run's driver did not commit a reported attempt end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// The run does not expect this attempt's end (it is not running in the run's state).
    NotRecorded {
        /// Why, for people.
        reason: String,
    },
    /// The commit that held the end failed (store error or fenced); the run's driver stops.
    CommitFailed {
        /// The store's error.
        message: String,
    },
}

impl Ack {
    /// A new ack and the receiver the waiting call awaits.
    pub fn new() -> (Ack, oneshot::Receiver<Result<(), AckError>>) {
        let (sender, receiver) = oneshot::channel();
        (Ack(sender), receiver)
    }

    /// The attempt's end is committed.
    pub fn committed(self) {
        // The caller may have given up waiting (its request was cancelled); the end is
        // committed all the same.
        let _ = self.0.send(Ok(()));
    }

    /// The attempt's end was not committed, for `error`.
    pub fn refused(self, error: AckError) {
        let _ = self.0.send(Err(error));
    }
}
