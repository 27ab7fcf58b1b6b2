//! [`WorkerStats`]: what a worker did, counted while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of a worker's attempts, returned by [`crate::Worker::run_until`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Attempts leased to this worker.
    pub leased: u64,
    /// Attempts reported as succeeded (and acknowledged).
    pub completed: u64,
    /// Attempts reported as failed (and acknowledged), including released ones.
    pub failed: u64,
    /// Attempts whose handler was still running at the end of the shutdown grace period
    /// (stopped and reported as failed, retryable, error type `worker_shutdown`).
    pub released: u64,
    /// Attempts whose result the server refused (lease lost or timed out) or could not be
    /// reached to take before the lease expired.
    pub undelivered: u64,
}

/// The live counters behind [`WorkerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    leased: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    released: AtomicU64,
    undelivered: AtomicU64,
}

impl Counters {
    pub(crate) fn leased(&self, count: u64) {
        self.leased.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn released(&self) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn undelivered(&self) {
        self.undelivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            leased: self.leased.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            undelivered: self.undelivered.load(Ordering::Relaxed),
        }
    }
}
