//! A bounded memory of recently ended leases, to tell a late caller how and when its attempt
//! ended instead of "unknown lease".

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::lease_id::LeaseKey;

/// Who holds (or held) a lease, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Holder {
    /// The worker that leased the attempt from these queues, by its `worker_id` (may be
    /// empty).
    Worker(String),
    /// The worker of a lease adopted from the run's previous owner: these queues never leased
    /// the attempt, so they do not know the worker's name.
    Adopted,
}

impl fmt::Display for Holder {
    /// "worker `w1`", "an unnamed worker", or "the worker of the lease adopted from the run's
    /// previous owner".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Worker(worker) => f.write_str(&worker_name(worker)),
            Holder::Adopted => {
                f.write_str("the worker of the lease adopted from the run's previous owner")
            }
        }
    }
}

/// How a lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EndReason {
    /// The worker completed it.
    Completed {
        /// Who.
        worker: Holder,
    },
    /// The worker failed it.
    Failed {
        /// Who.
        worker: Holder,
    },
    /// The worker stopped heartbeating.
    HeartbeatTimeout {
        /// The worker that held it.
        worker: Holder,
        /// Time since the last heartbeat (or the lease).
        silent: Duration,
        /// The attempt's heartbeat timeout.
        limit: Duration,
    },
    /// The attempt's timeout passed.
    TimedOut {
        /// The worker that held it.
        worker: Holder,
        /// The timeout.
        timeout: Duration,
    },
    /// The run cancelled the attempt.
    Cancelled {
        /// The worker that held it, if it was leased.
        worker: Option<Holder>,
    },
    /// The run's driver stopped (or could not commit the result): the run is not driven here.
    RunStopped {
        /// Why.
        why: String,
    },
}

impl EndReason {
    /// Says how the lease ended, for a message like "... is no longer leased: HOW, 3.0 s ago".
    pub(super) fn describe(&self) -> String {
        match self {
            EndReason::Completed { worker } => format!("it was already completed by {worker}"),
            EndReason::Failed { worker } => format!("it was already failed by {worker}"),
            EndReason::HeartbeatTimeout {
                worker,
                silent,
                limit,
            } => format!(
                "it was taken back because {}",
                heartbeat_timeout_error(worker, *silent, *limit)
            ),
            EndReason::TimedOut { worker, timeout } => format!(
                "it timed out after {} (its timeout) while leased to {worker}",
                tandem_dsl::format_duration(*timeout),
            ),
            EndReason::Cancelled {
                worker: Some(worker),
            } => format!("it was cancelled by its run while leased to {worker}"),
            EndReason::Cancelled { worker: None } => {
                "it was cancelled by its run before any worker took it".to_string()
            }
            EndReason::RunStopped { why } => format!("its run is not driven here any more: {why}"),
        }
    }
}

/// The error recorded for an attempt whose worker stopped heartbeating.
pub(super) fn heartbeat_timeout_error(
    worker: &Holder,
    silent: Duration,
    limit: Duration,
) -> String {
    format!(
        "{worker} stopped heartbeating: no heartbeat for {:.1} s (heartbeat_timeout is {})",
        silent.as_secs_f64(),
        tandem_dsl::format_duration(limit)
    )
}

/// "worker `w1`", or "an unnamed worker".
fn worker_name(worker: &str) -> String {
    if worker.is_empty() {
        "an unnamed worker".to_string()
    } else {
        let shown: String = worker.chars().take(80).collect();
        format!("worker `{}`", shown.escape_debug())
    }
}

/// A remembered end.
#[derive(Debug, Clone)]
pub(super) struct Ended {
    /// "attempt 2 of task `load` in run R".
    pub(super) attempt: String,
    /// When (tokio's clock).
    pub(super) at: Instant,
    /// How.
    pub(super) reason: EndReason,
}

/// The last `capacity` ended leases, oldest forgotten first.
#[derive(Debug)]
pub(super) struct Tombstones {
    capacity: usize,
    order: VecDeque<LeaseKey>,
    ended: HashMap<LeaseKey, Ended>,
}

impl Tombstones {
    /// Remembers at most `capacity` ends.
    pub(super) fn new(capacity: usize) -> Tombstones {
        Tombstones {
            capacity,
            order: VecDeque::new(),
            ended: HashMap::new(),
        }
    }

    /// How many ends are remembered at most.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records (or replaces) the end of `key`.
    pub(super) fn record(&mut self, key: LeaseKey, ended: Ended) {
        if self.capacity == 0 {
            return;
        }
        if self.ended.insert(key, ended).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.ended.remove(&oldest);
                }
            }
        }
    }

    /// The recorded end of `key`, if still remembered.
    pub(super) fn get(&self, key: &LeaseKey) -> Option<&Ended> {
        self.ended.get(key)
    }

    /// Replaces the reason of a remembered end (keeps its time).
    pub(super) fn set_reason(&mut self, key: &LeaseKey, reason: EndReason) {
        if let Some(ended) = self.ended.get_mut(key) {
            ended.reason = reason;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::RunId;

    fn key(attempt: u32) -> LeaseKey {
        LeaseKey {
            run_id: RunId(uuid::Uuid::nil()),
            task: 0,
            attempt,
        }
    }

    fn ended(worker: &str) -> Ended {
        Ended {
            attempt: "attempt".into(),
            at: Instant::now(),
            reason: EndReason::Completed {
                worker: Holder::Worker(worker.into()),
            },
        }
    }

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut tombstones = Tombstones::new(2);
        tombstones.record(key(1), ended("a"));
        tombstones.record(key(2), ended("b"));
        tombstones.record(key(1), ended("c")); // a replacement does not count twice
        tombstones.record(key(3), ended("d"));
        assert!(tombstones.get(&key(1)).is_none());
        assert!(tombstones.get(&key(2)).is_some());
        assert_eq!(
            tombstones.get(&key(3)).unwrap().reason.describe(),
            "it was already completed by worker `d`"
        );
        tombstones.set_reason(&key(3), EndReason::RunStopped { why: "x".into() });
        assert_eq!(
            tombstones.get(&key(3)).unwrap().reason.describe(),
            "its run is not driven here any more: x"
        );
        let mut none = Tombstones::new(0);
        none.record(key(1), ended("a"));
        assert!(none.get(&key(1)).is_none());
    }

    #[test]
    fn messages() {
        let w1 = Holder::Worker("w1".into());
        assert_eq!(
            heartbeat_timeout_error(&w1, Duration::from_millis(10_200), Duration::from_secs(10)),
            "worker `w1` stopped heartbeating: no heartbeat for 10.2 s (heartbeat_timeout is 10s)"
        );
        assert_eq!(
            Holder::Worker(String::new()).to_string(),
            "an unnamed worker"
        );
        let adopted = EndReason::Completed {
            worker: Holder::Adopted,
        };
        assert_eq!(
            adopted.describe(),
            "it was already completed by the worker of the lease adopted from the run's previous owner"
        );
    }
}
