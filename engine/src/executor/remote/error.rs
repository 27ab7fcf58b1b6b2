//! Errors of the remote executor's worker-facing calls, and the gRPC class of each.

use super::lease_id::LEASE_ID_SHAPE;

/// Why a worker's call (heartbeat, complete, fail) was refused. Nothing refused changes a run.
///
/// Each variant belongs to one [`RemoteErrorKind`] (see [`RemoteError::kind`]), which the
/// gRPC layer maps to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The lease id does not have the shape `RUN_ID:TASK_INDEX:ATTEMPT`.
    #[error("lease_id: expected {LEASE_ID_SHAPE}, found {found}: {problem}")]
    InvalidLeaseId {
        /// The id given (quoted, shortened).
        found: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A field of the request breaks a rule (outputs, error text, details).
    #[error("{field}: {problem}")]
    InvalidArgument {
        /// Path of the field, like `outputs["bad key"]` or `error`.
        field: String,
        /// What was expected and what was found, with the limit.
        problem: String,
    },
    /// No attempt is leased under this id, and none ended recently under it.
    #[error(
        "no attempt is leased under lease id `{lease_id}`: it was never leased by this engine, \
         or it ended long ago (only the last {remembered} ended leases are remembered)"
    )]
    UnknownLease {
        /// The lease id.
        lease_id: String,
        /// How many ended leases the engine remembers.
        remembered: usize,
    },
    /// The attempt waits in its queue and was never leased: only the worker that polled it
    /// may report on it.
    #[error(
        "{attempt} is not leased to any worker: it waits in queue `{queue}`; only a worker that \
         received it from a poll can heartbeat, complete or fail it"
    )]
    NotLeased {
        /// "attempt 2 of task `load` in run R".
        attempt: String,
        /// Its queue.
        queue: String,
    },
    /// The attempt's lease ended earlier (completed, failed, timed out, cancelled).
    #[error("{attempt} is no longer leased: {how}, {ago} ago; this call changes nothing")]
    Ended {
        /// "attempt 2 of task `load` in run R".
        attempt: String,
        /// How the lease ended ("it timed out: worker w1 stopped heartbeating ...").
        how: String,
        /// How long ago, like `3.2 s`.
        ago: String,
    },
    /// The run's driver did not record the attempt's end (the run no longer expects it).
    #[error("{attempt}: the run did not record this result: {reason}")]
    NotAccepted {
        /// "attempt 2 of task `load` in run R".
        attempt: String,
        /// Why.
        reason: String,
    },
    /// The run is not driven by this engine right now (its driver stopped, a commit failed):
    /// the result is not durable. A retry may succeed once the run is driven again.
    #[error("{attempt}: the engine could not record this result durably: {reason}; retry later")]
    Unavailable {
        /// "attempt 2 of task `load` in run R".
        attempt: String,
        /// Why.
        reason: String,
    },
}

/// The class of a [`RemoteError`], one per gRPC status code it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// `INVALID_ARGUMENT`: a malformed lease id or field.
    InvalidArgument,
    /// `NOT_FOUND`: an unknown lease.
    NotFound,
    /// `FAILED_PRECONDITION`: the attempt is not (or no longer) leased, or its end was not
    /// recorded.
    FailedPrecondition,
    /// `UNAVAILABLE`: the result could not be made durable now.
    Unavailable,
}

impl RemoteError {
    /// The class of this error (its gRPC status code).
    pub fn kind(&self) -> RemoteErrorKind {
        match self {
            RemoteError::InvalidLeaseId { .. } | RemoteError::InvalidArgument { .. } => {
                RemoteErrorKind::InvalidArgument
            }
            RemoteError::UnknownLease { .. } => RemoteErrorKind::NotFound,
            RemoteError::NotLeased { .. }
            | RemoteError::Ended { .. }
            | RemoteError::NotAccepted { .. } => RemoteErrorKind::FailedPrecondition,
            RemoteError::Unavailable { .. } => RemoteErrorKind::Unavailable,
        }
    }
}
