//! The remote executor: attempts of `worker:` tasks run in worker processes that long-poll
//! named task queues (the gRPC `WorkerService` is a thin layer over [`TaskQueues`]).
//!
//! Life of a worker attempt:
//! 1. After the run's `AttemptStarted` checkpoint is committed, the run's driver queues the
//!    attempt on its task queue ([`RunQueues::enqueue`]).
//! 2. A worker's [`TaskQueues::poll`] leases it (oldest first among the task types the worker
//!    accepts) under the lease id `RUN_ID:TASK_INDEX:ATTEMPT`. The lease must be renewed by
//!    [`TaskQueues::heartbeat`] within the task's heartbeat timeout; the task's timeout, if
//!    any, counts from the lease.
//! 3. The worker ends it with [`TaskQueues::complete`] or [`TaskQueues::fail`]. The end goes
//!    to the run's driver as a [`RemoteReport`] carrying an [`Ack`], and the call returns only
//!    once the driver has committed the resulting `AttemptFinished` checkpoint (so a result
//!    acknowledged to a worker survives a crash). Drivers commit every report that is ready
//!    in one batch, so many concurrent completions share one commit.
//! 4. Or the engine ends it: one timer per [`TaskQueues`] takes back leases past their
//!    heartbeat deadline (a retryable failure of error type [`HEARTBEAT_TIMEOUT`]) or their
//!    attempt timeout ([`AttemptOutcome::TimedOut`](crate::checkpoint::AttemptOutcome)).
//!
//! Once a lease has ended, later calls with its id are refused and change nothing; the last
//! [`RemoteConfig::remembered_ends`] ends are remembered to say how and when the lease ended.
//!
//! Cancellation ([`RunQueues::cancel`]): a queued attempt is removed and reported cancelled at
//! once; a leased one is marked, the worker learns it from its next heartbeat reply, and the
//! attempt ends cancelled when the worker reports (whatever it reports) or, at the latest, one
//! heartbeat timeout after the cancellation. When a run's driver stops, its [`RunQueues`] is
//! dropped and every queued or leased attempt of the run leaves the queues.
//!
//! ## Adoption after a failover
//!
//! The queues live in the memory of the engine that drives the run. When another engine (a
//! new leader, or `tandem resume`) resumes the run from its checkpoints, the worker attempts
//! that were in flight may still be running in live workers, which will find the new engine
//! and call it with the lease ids they hold. The resuming driver attaches with
//! [`TaskQueues::attach_resumed_run`] and, once its `RunResumed` checkpoint is committed,
//! hands those attempts to [`RunQueues::adopt`]:
//!
//! - Each becomes leased, under its usual lease id `RUN_ID:TASK_INDEX:ATTEMPT`, to a worker
//!   the queues do not know by name, with a heartbeat deadline of now + its heartbeat timeout.
//!   A heartbeat, completion or failure under that id is accepted as for any lease: the worker
//!   simply continues. The attempt's timeout, if the task has one, counts from the adoption.
//! - If the deadline passes without a call, the attempt goes back on its queue **as the same
//!   attempt**: no attempt is consumed and no failure is recorded, and the next poll leases it
//!   to another worker (from then on like any lease: its timeouts count from that lease, and
//!   silence is a heartbeat-timeout failure). If the first worker calls after all while the
//!   attempt waits in its queue, the call takes it back out and is accepted. Delivery is
//!   at-least-once: both workers may run the attempt. Their lease ids are the same (the id
//!   names the attempt), so the queues cannot tell them apart: the first end reported is
//!   recorded and the other worker's later calls are told the attempt already ended.
//! - Between the attachment and the adoption, a call about an attempt of the run that the
//!   queues do not know is told to retry ([`RemoteError::Unavailable`]) rather than that its
//!   lease is unknown, since it may be about to be adopted.
//! - Cancellation works on adopted attempts as on leased (or, once back on the queue, queued)
//!   ones.

mod error;
mod lease_id;
mod limits;
mod state;
mod timer;
mod tombstones;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tandem_dsl::TaskIndex;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use self::error::{RemoteError, RemoteErrorKind};
pub use self::lease_id::{LEASE_ID_SHAPE, LeaseKey};
pub use self::limits::{
    MAX_DETAILS_BYTES, MAX_ERROR_BYTES, MAX_ERROR_TYPE_BYTES, MAX_OUTPUTS, check_outputs,
};
pub use self::state::HEARTBEAT_TIMEOUT;
use self::state::{Finish, State};
pub use self::types::{
    Ack, AckError, HeartbeatReply, Lease, PollRequest, RemoteAttempt, RemoteConfig, RemoteReport,
};
use crate::checkpoint::RunId;

/// The task queues of a region: where runs put worker attempts and workers lease them.
///
/// Cheap to clone (all clones share the queues); see the [module docs](self). The expiry
/// timer is a tokio task started by the first lease and stopped when the last clone (and the
/// last [`RunQueues`]) is dropped.
#[derive(Clone)]
pub struct TaskQueues {
    handle: Arc<Handle>,
}

/// Owner of the shared state and of the timer task.
struct Handle {
    shared: Arc<Shared>,
    timer: OnceLock<AbortHandle>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.get() {
            timer.abort();
        }
    }
}

/// What the timer task shares with the handles.
struct Shared {
    state: Mutex<State>,
    config: RemoteConfig,
    /// Wakes the timer when a deadline earlier than the ones it knows appears.
    timer_wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state completes under the lock without panicking paths, so a
        // poisoned lock (a panic elsewhere while holding it) still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for TaskQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.handle.shared.lock();
        f.debug_struct("TaskQueues")
            .field("config", &self.handle.shared.config)
            .field("runs", &state.run_count())
            .field("attempts", &state.attempt_count())
            .field("queues", &state.queue_count())
            .finish()
    }
}

impl TaskQueues {
    /// Empty task queues with `config`.
    pub fn new(config: RemoteConfig) -> TaskQueues {
        TaskQueues {
            handle: Arc::new(Handle {
                shared: Arc::new(Shared {
                    state: Mutex::new(State::new(config.remembered_ends)),
                    config,
                    timer_wake: Notify::new(),
                }),
                timer: OnceLock::new(),
            }),
        }
    }

    /// The settings these queues were made with.
    pub fn config(&self) -> &RemoteConfig {
        &self.handle.shared.config
    }

    /// Leases up to `request.max_tasks` attempts of `request.queue` whose type is one of
    /// `request.task_types` (any when empty), oldest first. Waits up to `request.wait` for a
    /// first one and returns as soon as there is at least one; an empty result means none
    /// arrived in time. `max_tasks` is cut into `1..=`[`RemoteConfig::max_tasks_per_poll`]
    /// and `wait` to [`RemoteConfig::max_poll_wait`].
    ///
    /// Dropping the returned future before it completes leases nothing.
    pub async fn poll(&self, request: PollRequest) -> Vec<Lease> {
        let shared = &self.handle.shared;
        let max = request
            .max_tasks
            .clamp(1, shared.config.max_tasks_per_poll.max(1));
        let deadline = Instant::now() + request.wait.min(shared.config.max_poll_wait);
        let watch = QueueWatch::new(shared, &request.queue);
        loop {
            // Registered before looking, so an enqueue right after the look still wakes us.
            let woken = watch.notify().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (leases, earlier) = shared.lock().take(
                &request.queue,
                &request.task_types,
                max,
                &request.worker_id,
                Instant::now(),
            );
            if !leases.is_empty() {
                self.start_timer();
                if earlier {
                    shared.timer_wake.notify_one();
                }
                tracing::debug!(queue = %request.queue, worker = %request.worker_id, count = leases.len(), "attempts leased");
                return leases;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Renews lease `lease_id` (see [`LEASE_ID_SHAPE`]) and keeps `details` (progress, at
    /// most [`MAX_DETAILS_BYTES`]) with the attempt. The reply says whether the run asked
    /// the worker to stop.
    ///
    /// Errors: [`RemoteError::InvalidLeaseId`], [`RemoteError::InvalidArgument`],
    /// [`RemoteError::UnknownLease`], [`RemoteError::NotLeased`], [`RemoteError::Ended`] (how
    /// and when it ended), [`RemoteError::Unavailable`] (its run is not driven here).
    pub async fn heartbeat(
        &self,
        lease_id: &str,
        details: String,
    ) -> Result<HeartbeatReply, RemoteError> {
        let key: LeaseKey = lease_id.parse()?;
        limits::check_details(&details)?;
        let shared = &self.handle.shared;
        let (reply, earlier) = shared.lock().heartbeat(key, details, Instant::now())?;
        if earlier {
            // An adopted attempt was taken out of its queue: its new deadline may come first.
            self.start_timer();
            shared.timer_wake.notify_one();
        }
        Ok(reply)
    }

    /// The worker completed the attempt of lease `lease_id` with `outputs` (checked by
    /// [`check_outputs`]). Returns once the run's `AttemptFinished` checkpoint is committed.
    /// If the run asked for cancellation meanwhile, the attempt is recorded as cancelled.
    ///
    /// Errors: those of [`TaskQueues::heartbeat`], and [`RemoteError::NotAccepted`] (the run
    /// did not expect this result), [`RemoteError::Unavailable`] (the commit failed or the
    /// run's driver stopped: the result is not durable).
    pub async fn complete(
        &self,
        lease_id: &str,
        outputs: BTreeMap<String, String>,
    ) -> Result<(), RemoteError> {
        let key: LeaseKey = lease_id.parse()?;
        check_outputs(&outputs)?;
        self.finish(key, Finish::Complete { outputs }).await
    }

    /// The worker failed the attempt of lease `lease_id`: `error` (at most
    /// [`MAX_ERROR_BYTES`]) says what went wrong; `retryable: false` ends the task without
    /// further attempts, as does an `error_type` listed in the task's
    /// `retry.non_retryable_errors`. Returns once the run's `AttemptFinished` checkpoint is
    /// committed. Errors: as [`TaskQueues::complete`].
    pub async fn fail(
        &self,
        lease_id: &str,
        error: String,
        retryable: bool,
        error_type: Option<String>,
    ) -> Result<(), RemoteError> {
        let key: LeaseKey = lease_id.parse()?;
        limits::check_failure(&error, error_type.as_deref())?;
        let finish = Finish::Fail {
            error,
            retryable,
            error_type,
        };
        self.finish(key, finish).await
    }

    async fn finish(&self, key: LeaseKey, finish: Finish) -> Result<(), RemoteError> {
        let shared = &self.handle.shared;
        let accepted = shared.lock().finish(key, finish, Instant::now())?;
        let (ack, committed) = Ack::new();
        let report = RemoteReport {
            task: accepted.task,
            attempt: accepted.attempt,
            outcome: accepted.outcome,
            ack: Some(ack),
        };
        let not_durable = |why: String| {
            shared.lock().mark_not_durable(&key, why.clone());
            RemoteError::Unavailable {
                attempt: accepted.name.clone(),
                reason: why,
            }
        };
        if accepted.reports.send(report).is_err() {
            return Err(not_durable("the run's driver has stopped".to_string()));
        }
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AckError::NotRecorded { reason })) => Err(RemoteError::NotAccepted {
                attempt: accepted.name,
                reason,
            }),
            Ok(Err(AckError::CommitFailed { message })) => Err(not_durable(format!(
                "the commit of the result failed: {message}"
            ))),
            Err(_) => Err(not_durable(
                "the run's driver stopped before committing the result".to_string(),
            )),
        }
    }

    /// Attaches the run `run_id` of workflow `workflow` (called by its driver): returns the
    /// run's handle on the queues and the channel on which the ends of its worker attempts
    /// arrive. Attaching a run again drops the attempts of the previous attachment.
    pub fn attach_run(
        &self,
        run_id: RunId,
        workflow: &str,
    ) -> (RunQueues, mpsc::UnboundedReceiver<RemoteReport>) {
        self.attach(run_id, workflow, false)
    }

    /// [`TaskQueues::attach_run`] for a driver that resumes the run from its checkpoints and
    /// will hand over the worker attempts it adopts with [`RunQueues::adopt`]. Until then, a
    /// worker call about an attempt of the run that the queues do not know is told to retry
    /// ([`RemoteError::Unavailable`]) instead of that its lease is unknown.
    pub fn attach_resumed_run(
        &self,
        run_id: RunId,
        workflow: &str,
    ) -> (RunQueues, mpsc::UnboundedReceiver<RemoteReport>) {
        self.attach(run_id, workflow, true)
    }

    fn attach(
        &self,
        run_id: RunId,
        workflow: &str,
        adopting: bool,
    ) -> (RunQueues, mpsc::UnboundedReceiver<RemoteReport>) {
        let (reports, receiver) = mpsc::unbounded_channel();
        let generation =
            self.handle
                .shared
                .lock()
                .attach(run_id, workflow, reports, adopting, Instant::now());
        let run = RunQueues {
            queues: self.clone(),
            run_id,
            generation,
            detached: false,
        };
        (run, receiver)
    }

    fn start_timer(&self) {
        self.handle.timer.get_or_init(|| {
            tokio::spawn(timer::run(Arc::clone(&self.handle.shared))).abort_handle()
        });
    }
}

/// One run's handle on the [`TaskQueues`], held by its driver. Dropping it (or
/// [`RunQueues::detach`]) removes every queued or leased attempt of the run.
#[derive(Debug)]
pub struct RunQueues {
    queues: TaskQueues,
    run_id: RunId,
    generation: u64,
    detached: bool,
}

impl RunQueues {
    /// The run.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// Puts `attempts` on their queues (in order) and wakes the pollers of those queues.
    pub fn enqueue(&self, attempts: Vec<RemoteAttempt>) {
        if attempts.is_empty() {
            return;
        }
        let woken =
            self.queues
                .handle
                .shared
                .lock()
                .enqueue(self.run_id, self.generation, attempts);
        for notify in woken {
            notify.notify_waiters();
        }
    }

    /// Adopts `attempts`, worker attempts of the run that were in flight under the run's
    /// previous owner (see the [module docs](self#adoption-after-a-failover)): each is leased
    /// under its usual lease id to its (unknown) worker until one heartbeat timeout from now;
    /// if no call comes by then, it goes back on its queue as the same attempt. Ends the
    /// window opened by [`TaskQueues::attach_resumed_run`] (call it even with no attempt).
    /// Attempts already queued or leased, or of a detached run, are ignored (and logged).
    pub fn adopt(&self, attempts: Vec<RemoteAttempt>) {
        let shared = &self.queues.handle.shared;
        let adopted = !attempts.is_empty();
        let earlier = shared
            .lock()
            .adopt(self.run_id, self.generation, attempts, Instant::now());
        if adopted {
            self.queues.start_timer();
        }
        if earlier {
            shared.timer_wake.notify_one();
        }
    }

    /// Cancels attempt `attempt` of `task`: a queued attempt is reported cancelled at once;
    /// a leased one is asked to stop through its next heartbeat reply and ends cancelled when
    /// its worker reports or one heartbeat timeout from now passes. Unknown attempts are
    /// ignored.
    pub fn cancel(&self, task: TaskIndex, attempt: u32) {
        let delivery = self.queues.handle.shared.lock().cancel(
            self.run_id,
            self.generation,
            task,
            attempt,
            Instant::now(),
        );
        if let Some((reports, report)) = delivery {
            let _ = reports.send(report);
        }
        // The lease's deadline may have moved earlier.
        self.queues.handle.shared.timer_wake.notify_one();
    }

    /// Detaches the run: its queued and leased attempts leave the queues, and later worker
    /// calls about them are told `why` (and to retry later).
    pub fn detach(mut self, why: &str) {
        self.detach_now(why);
    }

    fn detach_now(&mut self, why: &str) {
        if !self.detached {
            self.detached = true;
            self.queues.handle.shared.lock().detach(
                self.run_id,
                self.generation,
                why,
                Instant::now(),
            );
        }
    }
}

impl Drop for RunQueues {
    fn drop(&mut self) {
        self.detach_now("its driver stopped");
    }
}

/// A poller's hold on a queue's notifier; releases the queue when dropped.
struct QueueWatch<'a> {
    shared: &'a Shared,
    name: &'a str,
    notify: Arc<Notify>,
}

impl<'a> QueueWatch<'a> {
    fn new(shared: &'a Shared, name: &'a str) -> QueueWatch<'a> {
        let notify = shared.lock().watch_queue(name);
        QueueWatch {
            shared,
            name,
            notify,
        }
    }

    fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for QueueWatch<'_> {
    fn drop(&mut self) {
        self.shared
            .lock()
            .release_queue(self.name, Some(&self.notify));
    }
}
