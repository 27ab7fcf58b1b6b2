//! Talking to etcd: one connection with per-request timeouts, recognising etcd's answers,
//! backoff between attempts, and rate-limited warnings.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tandem_api::Backoff;

use super::error::LeadershipError;

/// Interval of HTTP/2 pings that detect a dead connection. etcd closes connections that ping
/// more often than every 5 s (its `--grpc-keepalive-min-time`).
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// A client for `endpoints` whose requests are bounded by `timeout`.
#[derive(Clone)]
pub(super) struct Etcd {
    /// The client (cheap to clone; one connection per endpoint).
    pub client: Client,
    /// The endpoints, comma-separated, for messages.
    pub endpoints: String,
    /// Longest wait for one request.
    pub timeout: Duration,
}

impl Etcd {
    /// Connects to `endpoints`.
    ///
    /// Errors: [`LeadershipError::Etcd`] for an invalid URL or a refused connection,
    /// [`LeadershipError::Timeout`] when connecting takes longer than `timeout`.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Etcd, LeadershipError> {
        let listed = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(PING_INTERVAL, timeout)
            .with_keep_alive_while_idle(false);
        let connecting = Client::connect(endpoints, Some(options));
        let client = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(LeadershipError::Etcd {
                    doing: "connecting".into(),
                    endpoints: listed,
                    error,
                });
            }
            Err(_) => {
                return Err(LeadershipError::Timeout {
                    doing: "connecting".into(),
                    endpoints: listed,
                    after: timeout,
                });
            }
        };
        Ok(Etcd {
            client,
            endpoints: listed,
            timeout,
        })
    }

    /// Awaits `request` for at most the request timeout; `doing` names it in errors.
    pub async fn run<T>(
        &self,
        doing: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, LeadershipError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(|error| self.error(doing, error)),
            Err(_) => Err(LeadershipError::Timeout {
                doing: doing.to_string(),
                endpoints: self.endpoints.clone(),
                after: self.timeout,
            }),
        }
    }

    /// `error` as a [`LeadershipError::Etcd`] naming what was being done.
    pub fn error(&self, doing: &str, error: etcd_client::Error) -> LeadershipError {
        LeadershipError::Etcd {
            doing: doing.to_string(),
            endpoints: self.endpoints.clone(),
            error,
        }
    }

    /// Revokes `lease` (deleting every key on it); a lease that is gone already counts as
    /// revoked.
    pub async fn revoke(&self, lease: i64) -> Result<(), LeadershipError> {
        let mut client = self.client.clone();
        match self
            .run(
                &format!("revoking lease {lease:x}"),
                client.lease_revoke(lease),
            )
            .await
        {
            Err(error) if is_lease_not_found(&error) => Ok(()),
            other => other.map(drop),
        }
    }
}

/// Whether etcd said the lease does not exist (expired or revoked).
pub(super) fn is_lease_not_found(error: &LeadershipError) -> bool {
    matches!(error, LeadershipError::Etcd { error, .. } if etcd_says_lease_not_found(error))
}

/// Whether etcd said the lease does not exist: `etcdserver: requested lease not found` as a
/// status, or the client's own check of a first keep-alive answer with TTL 0.
pub(super) fn etcd_says_lease_not_found(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.message().contains("lease not found"),
        etcd_client::Error::LeaseKeepAliveError(message) => message.contains("lease not found"),
        _ => false,
    }
}

/// Whether etcd said the election has no leader (`election: no leader`).
pub(super) fn is_no_leader(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains("no leader"))
}

/// Exponential backoff with jitter between attempts at reaching etcd: from 100 ms, doubling,
/// up to `max`; each pause is drawn between half and all of the current step (the SDK's
/// [`Backoff`] with jitter 0.5).
pub(super) fn backoff(max: Duration) -> Backoff {
    Backoff::new(FIRST_STEP.min(max), max).with_jitter(0.5)
}

/// The first step of a [`backoff`].
const FIRST_STEP: Duration = Duration::from_millis(100);

/// Consecutive failures of one activity, logged without flooding: a warning at the first
/// failure and every 20th after, an info line when it works again.
#[derive(Debug)]
pub(super) struct Failures {
    activity: String,
    count: u64,
}

impl Failures {
    /// Failures of `activity` (e.g. `renewing lease 694d…`).
    pub fn new(activity: impl Into<String>) -> Failures {
        Failures {
            activity: activity.into(),
            count: 0,
        }
    }

    /// Records one failure.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.count += 1;
        if self.count == 1 || self.count.is_multiple_of(20) {
            tracing::warn!(
                failures = self.count,
                "{} failed (retrying): {error}",
                self.activity
            );
        } else {
            tracing::debug!(failures = self.count, "{} failed: {error}", self.activity);
        }
    }

    /// Records a success.
    pub fn recovered(&mut self) {
        if self.count > 0 {
            tracing::info!(failures = self.count, "{} works again", self.activity);
        }
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_backoff_grows_to_its_maximum_and_resets() {
        let mut backoff = backoff(Duration::from_millis(1000));
        let pauses: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(pauses[0] >= Duration::from_millis(50) && pauses[0] <= FIRST_STEP);
        for pause in &pauses {
            assert!(*pause <= Duration::from_millis(1000), "{pause:?}");
        }
        assert!(pauses[7] >= Duration::from_millis(500), "{pauses:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_STEP);
    }

    #[test]
    fn leadership_recognises_etcd_answers() {
        let lease = etcd_client::Error::GRpcStatus(tonic::Status::not_found(
            "etcdserver: requested lease not found",
        ));
        assert!(etcd_says_lease_not_found(&lease));
        let keeper = etcd_client::Error::LeaseKeepAliveError("lease not found".into());
        assert!(etcd_says_lease_not_found(&keeper));
        let other =
            etcd_client::Error::GRpcStatus(tonic::Status::unavailable("connection refused"));
        assert!(!etcd_says_lease_not_found(&other));
        let none = etcd_client::Error::GRpcStatus(tonic::Status::unknown("election: no leader"));
        assert!(is_no_leader(&none));
        assert!(!is_no_leader(&other));
    }
}
