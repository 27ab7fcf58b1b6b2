//! Automatic heartbeats of one leased attempt, while its handler runs and until its result is
//! delivered.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ClientError;

use super::context::CancelReason;
use super::rpc::WorkerRpc;

/// Heartbeat period when the lease has no heartbeat timeout (to learn about cancellation).
pub(crate) const IDLE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest heartbeat period, whatever the timeout.
pub(crate) const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Longest wait before progress details set by the handler are sent.
pub(crate) const MAX_DETAILS_DELAY: Duration = Duration::from_secs(1);

/// How often to heartbeat an attempt whose lease has `heartbeat_timeout` (zero = none): a
/// third of it, so that two heartbeats may be lost or slow before the lease is; at least
/// [`MIN_HEARTBEAT_INTERVAL`]; [`IDLE_HEARTBEAT_INTERVAL`] without a timeout.
pub(crate) fn heartbeat_interval(heartbeat_timeout: Duration) -> Duration {
    if heartbeat_timeout.is_zero() {
        IDLE_HEARTBEAT_INTERVAL
    } else {
        (heartbeat_timeout / 3).max(MIN_HEARTBEAT_INTERVAL)
    }
}

/// Shortest gap between two heartbeats sent because the handler set new details.
pub(crate) fn details_gap(interval: Duration) -> Duration {
    interval.min(MAX_DETAILS_DELAY)
}

/// Longest wait for one heartbeat's reply: the heartbeat interval, at least 1 s.
pub(crate) fn call_limit(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(1))
}

/// When the server, last heard from at `last_contact`, has certainly taken back a lease with
/// `heartbeat_timeout` (zero = none: give up after [`IDLE_HEARTBEAT_INTERVAL`] × 6). Past it,
/// delivering the attempt's result is pointless.
pub(crate) fn lease_expiry(last_contact: Instant, heartbeat_timeout: Duration) -> Instant {
    let window = if heartbeat_timeout.is_zero() {
        IDLE_HEARTBEAT_INTERVAL * 6
    } else {
        heartbeat_timeout.max(Duration::from_secs(5))
    };
    last_contact + window
}

/// When the server last acknowledged something about one lease.
#[derive(Debug)]
pub(crate) struct LastContact(Mutex<Instant>);

impl LastContact {
    pub(crate) fn now() -> Arc<LastContact> {
        Arc::new(LastContact(Mutex::new(Instant::now())))
    }

    pub(crate) fn touch(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    pub(crate) fn get(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// True for a server's explicit refusal of a call about a lease (`NOT_FOUND`,
/// `FAILED_PRECONDITION`: the attempt is no longer leased to this worker; `INVALID_ARGUMENT`,
/// `ALREADY_EXISTS`: the request can never be accepted). Anything else (an unreachable server,
/// a follower's `not_leader`, a starting leader, an internal error during a failover) may pass:
/// the call is tried again.
pub(crate) fn is_refusal(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::NotFound { .. }
            | ClientError::FailedPrecondition { .. }
            | ClientError::InvalidArgument { .. }
            | ClientError::AlreadyExists { .. }
            | ClientError::InvalidEndpoint { .. }
    )
}

/// Heartbeats `lease_id` every [`heartbeat_interval`], and soon after the handler sets new
/// details, until aborted. Sets `cancel` when a reply says the run is being cancelled, or when
/// the server refuses the heartbeat ([`is_refusal`]: the lease is gone; then stops). Each
/// heartbeat follows the region's leader for at most [`call_limit`]; other failures (the leader
/// is changing, the server is unreachable) are logged and retried at the next tick, so the
/// attempt survives a failover that ends before its heartbeat timeout.
pub(crate) async fn keep_alive(
    rpc: WorkerRpc,
    lease_id: String,
    heartbeat_timeout: Duration,
    mut details: watch::Receiver<Option<String>>,
    cancel: watch::Sender<Option<CancelReason>>,
    last_contact: Arc<LastContact>,
) {
    let interval = heartbeat_interval(heartbeat_timeout);
    let gap = details_gap(interval);
    let mut next_due = Instant::now() + interval;
    let mut last_sent: Option<Instant> = None;
    let mut details_open = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_due) => {}
            changed = details.changed(), if details_open => {
                if changed.is_err() {
                    // The handler dropped its context: only timed heartbeats from now on.
                    details_open = false;
                    continue;
                }
                if let Some(sent) = last_sent {
                    tokio::time::sleep_until(sent + gap).await;
                }
            }
        }
        let text = details.borrow_and_update().clone().unwrap_or_default();
        last_sent = Some(Instant::now());
        next_due = Instant::now() + interval;
        // A heartbeat that hangs must not hold back the next one past the lease's timeout.
        let limit = call_limit(interval);
        let deadline = Instant::now() + limit;
        let reply = tokio::time::timeout(limit, rpc.heartbeat(&lease_id, text, deadline))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Other {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!("no heartbeat reply within {} ms", limit.as_millis()),
                    error_code: None,
                })
            });
        match reply {
            Ok(cancel_requested) => {
                last_contact.touch();
                if cancel_requested {
                    cancel.send_if_modified(|reason| {
                        if reason.is_none() {
                            tracing::info!(
                                "the run is being cancelled; asking the handler to stop"
                            );
                            *reason = Some(CancelReason::RunCancelled);
                            true
                        } else {
                            false
                        }
                    });
                }
            }
            Err(error) if !is_refusal(&error) => {
                tracing::warn!(%error, "heartbeat failed; retrying at the next tick");
            }
            Err(error) => {
                tracing::warn!(%error, "the server no longer leases this attempt to the worker");
                cancel.send_replace(Some(CancelReason::LeaseLost {
                    message: error.to_string(),
                }));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_a_third_of_the_timeout() {
        assert_eq!(
            heartbeat_interval(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_millis(3000)),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn interval_has_a_floor_and_a_default() {
        assert_eq!(
            heartbeat_interval(Duration::from_millis(60)),
            MIN_HEARTBEAT_INTERVAL
        );
        assert_eq!(heartbeat_interval(Duration::ZERO), IDLE_HEARTBEAT_INTERVAL);
    }

    #[test]
    fn details_are_sent_within_a_second_or_an_interval() {
        assert_eq!(details_gap(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(
            details_gap(Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn a_heartbeat_call_is_bounded_by_the_interval() {
        assert_eq!(call_limit(Duration::from_secs(10)), Duration::from_secs(10));
        assert_eq!(
            call_limit(Duration::from_millis(50)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn only_explicit_refusals_end_a_lease() {
        let refused = ClientError::NotFound {
            message: "lease r:0:1".to_string(),
            error_code: Some("unknown_lease".to_string()),
        };
        assert!(is_refusal(&refused));
        let ended = ClientError::FailedPrecondition {
            message: "timed out".to_string(),
            error_code: Some("lease_ended".to_string()),
        };
        assert!(is_refusal(&ended));
        for passing in [
            ClientError::NotLeader {
                endpoint: "http://b:1".to_string(),
                leader: None,
                message: "election under way".to_string(),
            },
            ClientError::LeaderStarting {
                endpoint: "http://a:1".to_string(),
                message: "resuming".to_string(),
            },
            ClientError::Unavailable {
                endpoint: "http://a:1".to_string(),
                message: "connection refused".to_string(),
                error_code: None,
            },
            ClientError::Other {
                code: tonic::Code::Internal,
                message: "h2 protocol error".to_string(),
                error_code: None,
            },
        ] {
            assert!(!is_refusal(&passing), "{passing:?}");
        }
    }

    #[test]
    fn lease_expiry_follows_the_timeout_with_a_floor() {
        let now = Instant::now();
        assert_eq!(
            lease_expiry(now, Duration::from_secs(60)),
            now + Duration::from_secs(60)
        );
        assert_eq!(
            lease_expiry(now, Duration::from_millis(300)),
            now + Duration::from_secs(5)
        );
        assert_eq!(
            lease_expiry(now, Duration::ZERO),
            now + Duration::from_secs(60)
        );
    }
}
