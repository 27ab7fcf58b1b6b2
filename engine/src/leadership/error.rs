//! [`LeadershipError`]: what went wrong talking to etcd or reading what is stored there.

use std::time::Duration;

/// Errors of [`cluster_status`](super::cluster_status) and
/// [`ElectionConfig::validate`](super::ElectionConfig::validate). The
/// [`Election`](super::Election) itself never fails: it logs etcd errors and retries.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipError {
    /// A config field holds a value that cannot work.
    #[error("invalid leader election setting {field}: expected {expected}, found {found}")]
    InvalidConfig {
        /// The field, e.g. `lease_ttl`.
        field: String,
        /// What it must be.
        expected: String,
        /// What it was.
        found: String,
    },
    /// etcd refused or failed a request.
    #[error("{doing} on etcd at {endpoints}: {error}")]
    Etcd {
        /// What was being done, e.g. `reading the members of region eu-west`.
        doing: String,
        /// The endpoints, comma-separated.
        endpoints: String,
        /// The client's error.
        #[source]
        error: etcd_client::Error,
    },
    /// etcd did not answer in time.
    #[error("{doing} on etcd at {endpoints}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        doing: String,
        /// The endpoints, comma-separated.
        endpoints: String,
        /// How long it waited.
        after: Duration,
    },
    /// etcd answered, but not in a way the election can use.
    #[error("{doing} on etcd at {endpoints}: {reason}")]
    Refused {
        /// What was being done.
        doing: String,
        /// The endpoints, comma-separated.
        endpoints: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A value stored under `/tandem/` is not what this version writes there.
    #[error("etcd key {key} holds {found}: expected {expected}")]
    Decode {
        /// The key.
        key: String,
        /// What it should hold.
        expected: String,
        /// What it holds (shortened) and why it does not parse.
        found: String,
    },
}
