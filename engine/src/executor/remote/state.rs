//! The task queues' bookkeeping, kept behind one mutex by [`super::TaskQueues`].
//!
//! Every method here is synchronous and takes the current time, so the rules can be read (and
//! tested) apart from tokio: which attempt a poll gets, when a lease expires, what a late call
//! is told. Reports to runs are returned as [`Delivery`]s and sent after the lock is released.
//!
//! - `attempts` holds every queued or leased attempt, by [`LeaseKey`] (ordered, so all the
//!   attempts of one run form one range).
//! - Each queue keeps one FIFO per task type of `(seq, key)`; a poll takes the lowest `seq`
//!   among the heads of the types it accepts, so the queue as a whole stays FIFO. Cancelled
//!   attempts are not searched for in the FIFOs: their entries are skipped when they reach a
//!   head (`live` counts the attempts that are really waiting).
//! - `deadlines` orders leased attempts by their next deadline (heartbeat or attempt timeout),
//!   for the expiry timer.
//! - An adopted attempt ([`State::adopt`]) is leased to [`Holder::Adopted`] and *unconfirmed*
//!   until its worker calls; an unconfirmed lease past its heartbeat deadline goes back to its
//!   queue (`Phase::Queued { adopted: true }`), where a late call of its worker still takes it
//!   back out.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use tandem_dsl::TaskIndex;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::error::RemoteError;
use super::lease_id::LeaseKey;
use super::tombstones::{EndReason, Ended, Holder, Tombstones, heartbeat_timeout_error};
use super::types::{Ack, HeartbeatReply, Lease, RemoteAttempt, RemoteReport};
use crate::checkpoint::{AttemptOutcome, RunId};

/// A report for a run's driver, to send once the lock is released.
pub(super) type Delivery = (mpsc::UnboundedSender<RemoteReport>, RemoteReport);

/// How a worker ends its attempt.
#[derive(Debug)]
pub(super) enum Finish {
    /// It succeeded with these outputs (already checked).
    Complete {
        /// Outputs.
        outputs: std::collections::BTreeMap<String, String>,
    },
    /// It failed.
    Fail {
        /// What went wrong.
        error: String,
        /// Whether the retry policy may retry it.
        retryable: bool,
        /// The error's type, matched against the task's `retry.non_retryable_errors`.
        error_type: Option<String>,
    },
}

/// An attempt end accepted from a worker, to send to its run with an ack.
#[derive(Debug)]
pub(super) struct Accepted {
    /// The run's report channel.
    pub(super) reports: mpsc::UnboundedSender<RemoteReport>,
    /// Task instance.
    pub(super) task: TaskIndex,
    /// Attempt number.
    pub(super) attempt: u32,
    /// The outcome to record.
    pub(super) outcome: AttemptOutcome,
    /// "attempt 2 of task `load` in run R", for errors.
    pub(super) name: String,
}

/// What [`State::expire`] found: reports for runs, queues to wake, the next deadline.
#[derive(Debug, Default)]
pub(super) struct Expired {
    /// Attempts taken back, to report to their runs.
    pub(super) deliveries: Vec<Delivery>,
    /// Notifiers of the queues that adopted attempts went back to, to wake their pollers.
    pub(super) woken: Vec<Arc<Notify>>,
    /// The earliest deadline left, if any.
    pub(super) next: Option<Instant>,
}

/// A run attached to the queues by its driver.
#[derive(Debug)]
struct RunSlot {
    /// Tells this attachment from a later one of the same run.
    generation: u64,
    /// The run was attached by a driver that resumed it and has not handed over the attempts
    /// it adopts yet ([`State::adopt`]): a call about an attempt of the run that the queues do
    /// not know may be about to be adopted, so it is told to retry.
    adopting: bool,
    /// The workflow's name, for leases.
    workflow: Arc<str>,
    /// Where the run's driver receives reports.
    reports: mpsc::UnboundedSender<RemoteReport>,
}

/// A queued or leased attempt.
#[derive(Debug)]
struct Entry {
    attempt: RemoteAttempt,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// Waiting in its queue; `seq` identifies its FIFO entry. `adopted`: it went back to the
    /// queue from an adopted lease whose worker never called, so that worker may still call
    /// (which takes it out of the queue again).
    Queued { seq: u64, adopted: bool },
    /// Leased to a worker.
    Leased(Held),
}

/// A leased attempt's lease.
#[derive(Debug)]
struct Held {
    worker: Holder,
    /// An adopted lease whose worker has not called yet: past its heartbeat deadline it goes
    /// back to its queue instead of failing.
    unconfirmed: bool,
    last_heartbeat: Instant,
    heartbeat_deadline: Instant,
    /// Lease time + the attempt's timeout.
    attempt_deadline: Option<Instant>,
    /// The earlier of the two deadlines: the attempt's key in `deadlines`.
    due: Instant,
    cancel_requested: bool,
    /// The last heartbeat's details, quoted in the heartbeat-timeout error.
    details: String,
}

impl Held {
    /// A lease of `attempt` to `worker` from `now`: the heartbeat timeout and the attempt's
    /// timeout count from now.
    fn new(worker: Holder, attempt: &RemoteAttempt, now: Instant) -> Held {
        let mut held = Held {
            worker,
            unconfirmed: false,
            last_heartbeat: now,
            heartbeat_deadline: now + attempt.heartbeat_timeout,
            attempt_deadline: attempt.timeout.map(|timeout| now + timeout),
            due: now,
            cancel_requested: false,
            details: String::new(),
        };
        held.due = held.due();
        held
    }

    fn due(&self) -> Instant {
        match self.attempt_deadline {
            Some(deadline) => deadline.min(self.heartbeat_deadline),
            None => self.heartbeat_deadline,
        }
    }
}

/// One named task queue.
#[derive(Debug)]
pub(super) struct Queue {
    /// Wakes the pollers of this queue when attempts arrive.
    pub(super) notify: Arc<Notify>,
    /// FIFO of `(seq, key)` per task type.
    by_type: HashMap<String, VecDeque<(u64, LeaseKey)>>,
    /// Attempts really waiting (the FIFOs may also hold cancelled ones).
    live: usize,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            notify: Arc::new(Notify::new()),
            by_type: HashMap::new(),
            live: 0,
        }
    }
}

/// Everything the task queues know; see the [module docs](self).
#[derive(Debug)]
pub(super) struct State {
    runs: HashMap<RunId, RunSlot>,
    attempts: BTreeMap<LeaseKey, Entry>,
    queues: HashMap<String, Queue>,
    deadlines: BTreeSet<(Instant, LeaseKey)>,
    tombstones: Tombstones,
    next_seq: u64,
    next_generation: u64,
}

impl State {
    /// Empty state remembering up to `remembered_ends` ended leases.
    pub(super) fn new(remembered_ends: usize) -> State {
        State {
            runs: HashMap::new(),
            attempts: BTreeMap::new(),
            queues: HashMap::new(),
            deadlines: BTreeSet::new(),
            tombstones: Tombstones::new(remembered_ends),
            next_seq: 0,
            next_generation: 0,
        }
    }

    /// Attaches run `run_id`: its attempts' ends go to `reports`. A previous attachment of the
    /// same run is dropped with its attempts. `adopting`: the run's driver resumed it and will
    /// call [`State::adopt`]; until then calls about unknown attempts of the run are told to
    /// retry. Returns the attachment's generation.
    pub(super) fn attach(
        &mut self,
        run_id: RunId,
        workflow: &str,
        reports: mpsc::UnboundedSender<RemoteReport>,
        adopting: bool,
        now: Instant,
    ) -> u64 {
        if self.runs.contains_key(&run_id) {
            self.drop_run(run_id, "a newer driver of the run took over", now);
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        self.runs.insert(
            run_id,
            RunSlot {
                generation,
                adopting,
                workflow: Arc::from(workflow),
                reports,
            },
        );
        generation
    }

    /// Detaches run `run_id` if `generation` is still its attachment, dropping its queued and
    /// leased attempts (a late call about them is told `why`).
    pub(super) fn detach(&mut self, run_id: RunId, generation: u64, why: &str, now: Instant) {
        if self.is_attached(run_id, generation) {
            self.drop_run(run_id, why, now);
        }
    }

    fn is_attached(&self, run_id: RunId, generation: u64) -> bool {
        self.runs
            .get(&run_id)
            .is_some_and(|slot| slot.generation == generation)
    }

    fn drop_run(&mut self, run_id: RunId, why: &str, now: Instant) {
        self.runs.remove(&run_id);
        let first = LeaseKey {
            run_id,
            task: 0,
            attempt: 0,
        };
        let last = LeaseKey {
            run_id,
            task: TaskIndex::MAX,
            attempt: u32::MAX,
        };
        let keys: Vec<LeaseKey> = self
            .attempts
            .range(first..=last)
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            let reason = EndReason::RunStopped {
                why: why.to_string(),
            };
            self.remove(key, reason, now);
        }
    }

    /// Number of queued or leased attempts.
    pub(super) fn attempt_count(&self) -> usize {
        self.attempts.len()
    }

    /// Number of attached runs.
    pub(super) fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Number of queues currently kept.
    pub(super) fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Queues `attempts` of run `run_id` (attachment `generation`). Returns the notifiers of
    /// the queues that received attempts, to wake their pollers once the lock is released.
    /// Attempts of a detached run, or already queued or leased, are ignored (and logged).
    pub(super) fn enqueue(
        &mut self,
        run_id: RunId,
        generation: u64,
        attempts: Vec<RemoteAttempt>,
    ) -> Vec<Arc<Notify>> {
        let mut woken: Vec<Arc<Notify>> = Vec::new();
        if !self.is_attached(run_id, generation) {
            tracing::warn!(%run_id, count = attempts.len(), "attempts of a detached run were not queued");
            return woken;
        }
        for attempt in attempts {
            let key = LeaseKey {
                run_id,
                task: attempt.task,
                attempt: attempt.attempt,
            };
            if self.attempts.contains_key(&key) {
                tracing::warn!(%key, task_id = %attempt.task_id, "attempt is already queued or leased; not queued again");
                continue;
            }
            self.next_seq += 1;
            let seq = self.next_seq;
            let queue = self
                .queues
                .entry(attempt.queue.clone())
                .or_insert_with(Queue::new);
            queue
                .by_type
                .entry(attempt.task_type.clone())
                .or_default()
                .push_back((seq, key));
            queue.live += 1;
            if !woken
                .iter()
                .any(|notify| Arc::ptr_eq(notify, &queue.notify))
            {
                woken.push(Arc::clone(&queue.notify));
            }
            self.attempts.insert(
                key,
                Entry {
                    attempt,
                    phase: Phase::Queued {
                        seq,
                        adopted: false,
                    },
                },
            );
        }
        woken
    }

    /// Adopts `attempts` of run `run_id` (attachment `generation`): each is leased to its
    /// unknown worker ([`Holder::Adopted`]) under its usual key, unconfirmed, with its
    /// heartbeat deadline (and attempt timeout, if any) counted from `now`. Ends the run's
    /// adopting window. Attempts of a detached run, or already queued or leased, are ignored
    /// (and logged). Returns whether the expiry timer must wake earlier than it planned.
    pub(super) fn adopt(
        &mut self,
        run_id: RunId,
        generation: u64,
        attempts: Vec<RemoteAttempt>,
        now: Instant,
    ) -> bool {
        let Some(slot) = self
            .runs
            .get_mut(&run_id)
            .filter(|slot| slot.generation == generation)
        else {
            tracing::warn!(%run_id, count = attempts.len(), "attempts of a detached run were not adopted");
            return false;
        };
        slot.adopting = false;
        let mut earlier = false;
        for attempt in attempts {
            let key = LeaseKey {
                run_id,
                task: attempt.task,
                attempt: attempt.attempt,
            };
            if self.attempts.contains_key(&key) {
                tracing::warn!(%key, task_id = %attempt.task_id, "attempt is already queued or leased; not adopted");
                continue;
            }
            let mut held = Held::new(Holder::Adopted, &attempt, now);
            held.unconfirmed = true;
            earlier |= self.track(key, held.due);
            tracing::info!(%key, task_id = %attempt.task_id, "worker attempt adopted; waiting for its worker");
            self.attempts.insert(
                key,
                Entry {
                    attempt,
                    phase: Phase::Leased(held),
                },
            );
        }
        earlier
    }

    /// Adds the deadline `due` of lease `key` to `deadlines`; returns whether it comes before
    /// every deadline known so far (the timer must wake earlier).
    fn track(&mut self, key: LeaseKey, due: Instant) -> bool {
        let earlier = self.deadlines.first().is_none_or(|(first, _)| due < *first);
        self.deadlines.insert((due, key));
        earlier
    }

    /// The run cancels an attempt. A queued one is removed and reported cancelled at once
    /// (the returned delivery); a leased one is marked, so its next heartbeat reply asks the
    /// worker to stop, and it gets one more heartbeat timeout from now to report (heartbeats
    /// no longer extend it). Unknown attempts are ignored.
    pub(super) fn cancel(
        &mut self,
        run_id: RunId,
        generation: u64,
        task: TaskIndex,
        attempt: u32,
        now: Instant,
    ) -> Option<Delivery> {
        if !self.is_attached(run_id, generation) {
            return None;
        }
        let key = LeaseKey {
            run_id,
            task,
            attempt,
        };
        let entry = self.attempts.get_mut(&key)?;
        match &mut entry.phase {
            Phase::Queued { .. } => {
                self.remove(key, EndReason::Cancelled { worker: None }, now)?;
                let reports = self.runs.get(&run_id)?.reports.clone();
                Some((
                    reports,
                    RemoteReport {
                        task,
                        attempt,
                        outcome: AttemptOutcome::Cancelled,
                        ack: None,
                    },
                ))
            }
            Phase::Leased(held) => {
                if !held.cancel_requested {
                    held.cancel_requested = true;
                    let heartbeat_deadline = now + entry.attempt.heartbeat_timeout;
                    held.heartbeat_deadline = heartbeat_deadline;
                    self.deadlines.remove(&(held.due, key));
                    held.due = held.due();
                    self.deadlines.insert((held.due, key));
                }
                None
            }
        }
    }

    /// The notifier of queue `name` (created if missing), for a poller to wait on.
    pub(super) fn watch_queue(&mut self, name: &str) -> Arc<Notify> {
        let queue = self
            .queues
            .entry(name.to_string())
            .or_insert_with(Queue::new);
        Arc::clone(&queue.notify)
    }

    /// Forgets queue `name` when nothing waits in it and no poller holds its notifier other
    /// than the caller, whose hold (`held`) is about to end.
    pub(super) fn release_queue(&mut self, name: &str, held: Option<&Arc<Notify>>) {
        let Some(queue) = self.queues.get(name) else {
            return;
        };
        let holders = match held {
            Some(held) if Arc::ptr_eq(held, &queue.notify) => 2,
            _ => 1,
        };
        if queue.live == 0 && Arc::strong_count(&queue.notify) == holders {
            self.queues.remove(name);
        }
    }

    /// Leases up to `max` attempts of queue `name` whose type is in `task_types` (any type when
    /// empty), oldest first, to `worker`. Returns the leases and whether the expiry timer must
    /// wake earlier than it planned.
    pub(super) fn take(
        &mut self,
        name: &str,
        task_types: &[String],
        max: usize,
        worker: &str,
        now: Instant,
    ) -> (Vec<Lease>, bool) {
        let mut leases = Vec::new();
        let mut earlier = false;
        let Some(queue) = self.queues.get_mut(name) else {
            return (leases, earlier);
        };
        let attempts = &mut self.attempts;
        while leases.len() < max && queue.live > 0 {
            let Some(key) = pop_oldest(queue, attempts, task_types) else {
                break;
            };
            queue.live -= 1;
            if queue.live == 0 {
                queue.by_type.clear();
            }
            let Some(entry) = attempts.get_mut(&key) else {
                continue;
            };
            let attempt = &entry.attempt;
            let held = Held::new(Holder::Worker(worker.to_string()), attempt, now);
            let workflow = self
                .runs
                .get(&key.run_id)
                .map(|slot| slot.workflow.to_string())
                .unwrap_or_default();
            leases.push(Lease {
                lease_id: key.to_string(),
                run_id: key.run_id,
                task_id: attempt.task_id.clone(),
                attempt: key.attempt,
                task_type: attempt.task_type.clone(),
                input: attempt.input.clone(),
                idempotency_key: format!("{}/{}", key.run_id, attempt.task_id),
                heartbeat_timeout: attempt.heartbeat_timeout,
                timeout: attempt.timeout,
                traceparent: attempt.traceparent.clone(),
                workflow,
            });
            if self
                .deadlines
                .first()
                .is_none_or(|(first, _)| held.due < *first)
            {
                earlier = true;
            }
            self.deadlines.insert((held.due, key));
            entry.phase = Phase::Leased(held);
        }
        (leases, earlier)
    }

    /// Renews the lease of `key`: its heartbeat deadline moves to now + the heartbeat timeout
    /// (unless the attempt is being cancelled) and `details` are kept. An adopted lease is
    /// confirmed; an adopted attempt that went back to its queue is leased to its worker
    /// again. Returns the reply and whether the expiry timer must wake earlier than it
    /// planned.
    pub(super) fn heartbeat(
        &mut self,
        key: LeaseKey,
        details: String,
        now: Instant,
    ) -> Result<(HeartbeatReply, bool), RemoteError> {
        let earlier = self.reclaim(key, now);
        let Some(entry) = self.attempts.get_mut(&key) else {
            return Err(self.gone(key, now));
        };
        let Phase::Leased(held) = &mut entry.phase else {
            return Err(not_leased(key, &entry.attempt));
        };
        held.unconfirmed = false;
        held.last_heartbeat = now;
        held.details = details;
        if !held.cancel_requested {
            held.heartbeat_deadline = now + entry.attempt.heartbeat_timeout;
            let due = held.due();
            if due != held.due {
                self.deadlines.remove(&(held.due, key));
                held.due = due;
                self.deadlines.insert((due, key));
            }
        }
        let reply = HeartbeatReply {
            cancel_requested: held.cancel_requested,
        };
        Ok((reply, earlier))
    }

    /// If `key` is an adopted attempt that went back to its queue (its worker had not called
    /// in time), takes it out of the queue and leases it to that worker again ([`Holder::Adopted`],
    /// deadlines from `now`): the call comes from the worker that was running it. Returns
    /// whether the expiry timer must wake earlier than it planned.
    fn reclaim(&mut self, key: LeaseKey, now: Instant) -> bool {
        let Some(entry) = self.attempts.get_mut(&key) else {
            return false;
        };
        let Phase::Queued { adopted: true, .. } = entry.phase else {
            return false;
        };
        // Its FIFO entry stays behind, dead: polls skip entries whose attempt is not queued
        // under that seq.
        if let Some(queue) = self.queues.get_mut(&entry.attempt.queue) {
            queue.live = queue.live.saturating_sub(1);
            if queue.live == 0 {
                queue.by_type.clear();
            }
        }
        let held = Held::new(Holder::Adopted, &entry.attempt, now);
        let due = held.due;
        tracing::info!(%key, task_id = %entry.attempt.task_id, "adopted worker attempt taken out of its queue: its worker called");
        entry.phase = Phase::Leased(held);
        let queue = entry.attempt.queue.clone();
        self.release_queue(&queue, None);
        self.track(key, due)
    }

    /// A worker ends the leased attempt `key`. The lease ends at once (a second call is told
    /// it already ended); the outcome is [`AttemptOutcome::Cancelled`] when the run asked for
    /// cancellation, else the worker's.
    pub(super) fn finish(
        &mut self,
        key: LeaseKey,
        finish: Finish,
        now: Instant,
    ) -> Result<Accepted, RemoteError> {
        self.reclaim(key, now);
        let Some(entry) = self.attempts.get(&key) else {
            return Err(self.gone(key, now));
        };
        let Phase::Leased(held) = &entry.phase else {
            return Err(not_leased(key, &entry.attempt));
        };
        let worker = held.worker.clone();
        let (outcome, reason) = if held.cancel_requested {
            let reason = EndReason::Cancelled {
                worker: Some(worker),
            };
            (AttemptOutcome::Cancelled, reason)
        } else {
            match finish {
                Finish::Complete { outputs } => (
                    AttemptOutcome::Succeeded { outputs },
                    EndReason::Completed { worker },
                ),
                Finish::Fail {
                    error,
                    retryable,
                    error_type,
                } => (
                    failed(error, retryable, error_type),
                    EndReason::Failed { worker },
                ),
            }
        };
        let Some(reports) = self.runs.get(&key.run_id).map(|slot| slot.reports.clone()) else {
            return Err(self.gone(key, now));
        };
        let entry = self.remove(key, reason, now);
        let name = entry
            .map(|entry| describe(key, &entry.attempt))
            .unwrap_or_default();
        Ok(Accepted {
            reports,
            task: key.task,
            attempt: key.attempt,
            outcome,
            name,
        })
    }

    /// Records that the end of `key` was not made durable, for later callers.
    pub(super) fn mark_not_durable(&mut self, key: &LeaseKey, why: String) {
        self.tombstones
            .set_reason(key, EndReason::RunStopped { why });
    }

    /// Takes back every leased attempt whose deadline is at or before `now`: an unconfirmed
    /// adopted lease past its heartbeat deadline goes back to its queue as the same attempt;
    /// every other one ends (cancelled, timed out, or failed for its heartbeat timeout) and is
    /// reported to its run.
    pub(super) fn expire(&mut self, now: Instant) -> Expired {
        let mut expired = Expired::default();
        while let Some(&(due, key)) = self.deadlines.first() {
            if due > now {
                expired.next = Some(due);
                return expired;
            }
            self.deadlines.pop_first();
            let Some(Entry {
                attempt,
                phase: Phase::Leased(held),
            }) = self.attempts.get(&key)
            else {
                continue;
            };
            let timed_out = held
                .attempt_deadline
                .is_some_and(|deadline| deadline <= now);
            if held.unconfirmed && !held.cancel_requested && !timed_out {
                if let Some(notify) = self.requeue_adopted(key)
                    && !expired
                        .woken
                        .iter()
                        .any(|known| Arc::ptr_eq(known, &notify))
                {
                    expired.woken.push(notify);
                }
                continue;
            }
            let (outcome, reason) = if held.cancel_requested {
                let reason = EndReason::Cancelled {
                    worker: Some(held.worker.clone()),
                };
                (AttemptOutcome::Cancelled, reason)
            } else if let (true, Some(timeout)) = (timed_out, attempt.timeout) {
                let outcome = AttemptOutcome::TimedOut {
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                };
                let reason = EndReason::TimedOut {
                    worker: held.worker.clone(),
                    timeout,
                };
                (outcome, reason)
            } else {
                let silent = now - held.last_heartbeat;
                let mut error =
                    heartbeat_timeout_error(&held.worker, silent, attempt.heartbeat_timeout);
                if !held.details.is_empty() {
                    let details: String = held.details.chars().take(200).collect();
                    error.push_str(&format!("; last details: {}", details.escape_debug()));
                }
                let outcome = failed(error, true, Some(HEARTBEAT_TIMEOUT.to_string()));
                let reason = EndReason::HeartbeatTimeout {
                    worker: held.worker.clone(),
                    silent,
                    limit: attempt.heartbeat_timeout,
                };
                (outcome, reason)
            };
            tracing::info!(%key, task_id = %attempt.task_id, ?outcome, "worker attempt taken back");
            let Some(reports) = self.runs.get(&key.run_id).map(|slot| slot.reports.clone()) else {
                continue;
            };
            self.remove(key, reason, now);
            expired.deliveries.push((
                reports,
                RemoteReport {
                    task: key.task,
                    attempt: key.attempt,
                    outcome,
                    ack: None::<Ack>,
                },
            ));
        }
        expired
    }

    /// Puts the adopted attempt `key`, whose worker never called, back on its queue as the
    /// same attempt (its deadline is already out of `deadlines`). Returns the queue's
    /// notifier, to wake its pollers; `None` for an unknown attempt.
    fn requeue_adopted(&mut self, key: LeaseKey) -> Option<Arc<Notify>> {
        let entry = self.attempts.get_mut(&key)?;
        self.next_seq += 1;
        let seq = self.next_seq;
        let queue = self
            .queues
            .entry(entry.attempt.queue.clone())
            .or_insert_with(Queue::new);
        queue
            .by_type
            .entry(entry.attempt.task_type.clone())
            .or_default()
            .push_back((seq, key));
        queue.live += 1;
        entry.phase = Phase::Queued { seq, adopted: true };
        tracing::info!(
            %key,
            task_id = %entry.attempt.task_id,
            queue = %entry.attempt.queue,
            "no word from the worker of an adopted attempt within its heartbeat timeout; the attempt is back on its queue"
        );
        Some(Arc::clone(&queue.notify))
    }

    /// The error for a call about `key`, which is neither queued nor leased.
    fn gone(&self, key: LeaseKey, now: Instant) -> RemoteError {
        match self.tombstones.get(&key) {
            Some(Ended {
                attempt,
                reason: EndReason::RunStopped { why },
                ..
            }) => RemoteError::Unavailable {
                attempt: attempt.clone(),
                reason: format!("its run is not driven here any more: {why}"),
            },
            Some(ended) => RemoteError::Ended {
                attempt: ended.attempt.clone(),
                how: ended.reason.describe(),
                ago: format!("{:.1} s", (now - ended.at).as_secs_f64()),
            },
            None if self.runs.get(&key.run_id).is_some_and(|slot| slot.adopting) => {
                RemoteError::Unavailable {
                    attempt: format!("the attempt of lease `{key}`"),
                    reason: "its run is being resumed by this engine, which has not taken over \
                             its leased attempts yet"
                        .to_string(),
                }
            }
            None => RemoteError::UnknownLease {
                lease_id: key.to_string(),
                remembered: self.tombstones.capacity(),
            },
        }
    }

    /// Removes attempt `key` from every index and remembers how it ended.
    fn remove(&mut self, key: LeaseKey, reason: EndReason, now: Instant) -> Option<Entry> {
        let entry = self.attempts.remove(&key)?;
        match &entry.phase {
            Phase::Queued { .. } => {
                if let Some(queue) = self.queues.get_mut(&entry.attempt.queue) {
                    queue.live = queue.live.saturating_sub(1);
                    if queue.live == 0 {
                        queue.by_type.clear();
                    }
                }
                self.release_queue(&entry.attempt.queue, None);
            }
            Phase::Leased(held) => {
                self.deadlines.remove(&(held.due, key));
            }
        }
        self.tombstones.record(
            key,
            Ended {
                attempt: describe(key, &entry.attempt),
                at: now,
                reason,
            },
        );
        Some(entry)
    }
}

/// The `error_type` of an attempt taken back because its worker stopped heartbeating.
pub const HEARTBEAT_TIMEOUT: &str = "heartbeat_timeout";

fn failed(error: String, retryable: bool, error_type: Option<String>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        exit_code: None,
        signal: None,
        error,
        retryable,
        error_type,
    }
}

/// "attempt 2 of task `load` in run R".
fn describe(key: LeaseKey, attempt: &RemoteAttempt) -> String {
    format!(
        "attempt {} of task `{}` in run {}",
        key.attempt, attempt.task_id, key.run_id
    )
}

fn not_leased(key: LeaseKey, attempt: &RemoteAttempt) -> RemoteError {
    RemoteError::NotLeased {
        attempt: describe(key, attempt),
        queue: attempt.queue.clone(),
    }
}

/// Pops the oldest live attempt of `queue` whose type is accepted, dropping the dead FIFO
/// entries it passes.
fn pop_oldest(
    queue: &mut Queue,
    attempts: &BTreeMap<LeaseKey, Entry>,
    task_types: &[String],
) -> Option<LeaseKey> {
    let alive = |seq: u64, key: &LeaseKey| matches!(attempts.get(key), Some(Entry { phase: Phase::Queued { seq: s, .. }, .. }) if *s == seq);
    let mut best: Option<(u64, String)> = None;
    let mut consider = |task_type: &String, fifo: &mut VecDeque<(u64, LeaseKey)>| {
        while let Some((seq, key)) = fifo.front() {
            if alive(*seq, key) {
                break;
            }
            fifo.pop_front();
        }
        if let Some((seq, _)) = fifo.front()
            && best.as_ref().is_none_or(|(best_seq, _)| seq < best_seq)
        {
            best = Some((*seq, task_type.clone()));
        }
    };
    if task_types.is_empty() {
        for (task_type, fifo) in queue.by_type.iter_mut() {
            consider(task_type, fifo);
        }
    } else {
        for task_type in task_types {
            if let Some(fifo) = queue.by_type.get_mut(task_type) {
                consider(task_type, fifo);
            }
        }
    }
    queue.by_type.retain(|_, fifo| !fifo.is_empty());
    let (_, task_type) = best?;
    let fifo = queue.by_type.get_mut(&task_type)?;
    let (_, key) = fifo.pop_front()?;
    if fifo.is_empty() {
        queue.by_type.remove(&task_type);
    }
    Some(key)
}
