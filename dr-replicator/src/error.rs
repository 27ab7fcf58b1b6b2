//! [`DrError`]: how a `tandem dr` operation (status, promote, rejoin, switchover) fails.

use tandem_api::ClientError;

use crate::topology::TopologyError;

/// A failed DR operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrError {
    /// The topology file is missing, unreadable, invalid, or lacks a region asked for.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// No replica of the region answered (each endpoint's failure is listed).
    #[error("region {region} is unreachable: {}", failures.join("; "))]
    Unreachable {
        /// The region.
        region: String,
        /// One line per endpoint tried: `http://host:port: what failed`.
        failures: Vec<String>,
    },
    /// A replica of the region answered the call with an error.
    #[error("region {region} refused {call} at {endpoint}: {error}")]
    Refused {
        /// The region.
        region: String,
        /// The call (`Promote`, `Demote`, ...).
        call: String,
        /// The replica that answered.
        endpoint: String,
        /// Its answer (boxed: it is large).
        error: Box<ClientError>,
    },
    /// A replica answered with something this client cannot read.
    #[error("region {region} ({endpoint}) sent an unreadable {call} reply: {detail}")]
    Protocol {
        /// The region.
        region: String,
        /// The call.
        call: String,
        /// The replica.
        endpoint: String,
        /// What was expected and what was found.
        detail: String,
    },
    /// The operation's own precondition does not hold (e.g. promoting while the active region
    /// answers without `--force`); nothing was changed unless the message says otherwise.
    #[error("{0}")]
    Precondition(String),
    /// The operation did not finish in time; the message says what was done and what not.
    #[error("{0}")]
    TimedOut(String),
}

impl DrError {
    /// The gRPC `tandem-error-code` of a [`DrError::Refused`] answer, if any.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            DrError::Refused { error, .. } => error.error_code(),
            _ => None,
        }
    }
}
