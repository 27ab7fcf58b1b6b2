//! [`ReplicationProgress`]: what this replica knows about shipping its log, shared by the
//! store decorator that its leader writes through ([`super::sync_gate`]), the replication
//! stream ([`super::stream`]) and the status call ([`super::dr_api`]):
//!
//! - the latest position this replica committed (published after each write; it wakes the
//!   streams at once instead of their 50 ms poll);
//! - the highest position a standby acknowledged, and which standby streams now;
//! - in sync mode, since when the region has degraded to async (no acknowledgement within
//!   the sync timeout), and the way back: a standby that catches up (acknowledges the latest
//!   published position, or the end of a batch that held everything committed when it was
//!   read) restores sync.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::checkpoint::{LogPosition, UnixMillis, now_millis};

/// The acknowledgement side of sync replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncState {
    /// The highest position a standby acknowledged holding durably (0: none yet).
    pub acked: LogPosition,
    /// Set while sync mode has degraded to async (ms since the Unix epoch).
    pub degraded_since: Option<UnixMillis>,
}

/// What [`ReplicationProgress::wait_for_standby`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A standby acknowledged the position.
    Acked,
    /// The region was degraded already: the write did not wait.
    Degraded,
    /// Nothing acknowledged the position within the timeout: the region degraded now.
    TimedOut,
}

/// One region replica's replication progress (see the module docs).
#[derive(Debug)]
pub struct ReplicationProgress {
    latest: watch::Sender<LogPosition>,
    sync: watch::Sender<SyncState>,
    standby: Mutex<Option<Connected>>,
}

#[derive(Debug, Clone)]
struct Connected {
    region: String,
    id: u64,
}

impl Default for ReplicationProgress {
    fn default() -> Self {
        ReplicationProgress {
            latest: watch::Sender::new(0),
            sync: watch::Sender::new(SyncState::default()),
            standby: Mutex::new(None),
        }
    }
}

impl ReplicationProgress {
    /// Records that this replica committed up to `position` (positions published out of
    /// order by concurrent writers keep the highest).
    pub fn publish_latest(&self, position: LogPosition) {
        self.latest.send_if_modified(|latest| {
            if position > *latest {
                *latest = position;
                true
            } else {
                false
            }
        });
    }

    /// The highest position this replica published.
    pub fn latest(&self) -> LogPosition {
        *self.latest.borrow()
    }

    /// Follows [`ReplicationProgress::publish_latest`].
    pub fn subscribe_latest(&self) -> watch::Receiver<LogPosition> {
        self.latest.subscribe()
    }

    /// The acknowledgement state now.
    pub fn sync_state(&self) -> SyncState {
        *self.sync.borrow()
    }

    /// Records a standby's acknowledgement of `position`. `caught_up` says the standby held
    /// everything this region had committed when the acknowledged batch was read; it (or an
    /// acknowledgement of the latest published position) ends a degradation.
    pub fn record_ack(&self, position: LogPosition, caught_up: bool) {
        let latest = self.latest();
        let mut restored = None;
        self.sync.send_if_modified(|state| {
            let mut changed = false;
            if position > state.acked {
                state.acked = position;
                changed = true;
            }
            if let Some(since) = state.degraded_since
                && (caught_up || state.acked >= latest)
            {
                state.degraded_since = None;
                restored = Some(since);
                changed = true;
            }
            changed
        });
        if let Some(since) = restored {
            tracing::info!(
                acked = position,
                degraded_for_ms = now_millis().saturating_sub(since),
                "the standby caught up: sync replication is back"
            );
        }
    }

    /// Sync mode, after a write that committed up to `position`: waits until a standby
    /// acknowledged it, at most `timeout`. When the region is degraded the write does not
    /// wait; when the timeout passes the region degrades (logged at WARN) and every write
    /// waiting returns.
    pub async fn wait_for_standby(&self, position: LogPosition, timeout: Duration) -> SyncOutcome {
        let mut states = self.sync.subscribe();
        {
            let state = states.borrow_and_update();
            if state.acked >= position {
                return SyncOutcome::Acked;
            }
            if state.degraded_since.is_some() {
                return SyncOutcome::Degraded;
            }
        }
        let waited = tokio::time::timeout(
            timeout,
            states.wait_for(|state| state.acked >= position || state.degraded_since.is_some()),
        )
        .await;
        match waited {
            Ok(Ok(state)) if state.acked >= position => SyncOutcome::Acked,
            Ok(_) => SyncOutcome::Degraded,
            Err(_) => {
                self.degrade(position, timeout);
                SyncOutcome::TimedOut
            }
        }
    }

    /// The region has just been promoted: no standby holds its log yet (the one it knew is
    /// the lost region, or the old active that rejoins later), so sync mode starts degraded
    /// and writes do not wait until a standby catches up with this region (an ack of the
    /// latest position ends it, as after a timeout). Without this, the first write after a
    /// promotion would wait the whole sync timeout for a standby that cannot answer, and add
    /// it to the RTO.
    pub fn promoted(&self) {
        let since = now_millis();
        let changed = self.sync.send_if_modified(|state| {
            if state.degraded_since.is_none() {
                state.degraded_since = Some(since);
                true
            } else {
                false
            }
        });
        if changed {
            tracing::warn!(
                "the region was promoted and no standby holds its log yet: sync replication runs as async until a standby catches up"
            );
        }
    }

    fn degrade(&self, position: LogPosition, timeout: Duration) {
        let standby = self.standby();
        let mut degraded = false;
        self.sync.send_if_modified(|state| {
            if state.degraded_since.is_none() && state.acked < position {
                state.degraded_since = Some(now_millis());
                degraded = true;
                true
            } else {
                false
            }
        });
        if degraded {
            tracing::warn!(
                position,
                acked = self.sync_state().acked,
                timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                standby = standby.as_deref().unwrap_or("none connected"),
                "sync replication degraded to async: no standby acknowledged the write within the sync timeout; writes no longer wait until a standby catches up"
            );
        }
    }

    /// Records that `standby_region` streams now (connection `id`); it replaces any other.
    pub fn connected(&self, standby_region: &str, id: u64) {
        *self.lock() = Some(Connected {
            region: standby_region.to_string(),
            id,
        });
    }

    /// Records that connection `id` ended (nothing changes when another one replaced it).
    pub fn disconnected(&self, id: u64) {
        let mut standby = self.lock();
        if standby.as_ref().is_some_and(|connected| connected.id == id) {
            *standby = None;
        }
    }

    /// The standby region streaming now, if any.
    pub fn standby(&self) -> Option<String> {
        self.lock()
            .as_ref()
            .map(|connected| connected.region.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Connected>> {
        self.standby.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_waits_for_its_ack() {
        let progress = std::sync::Arc::new(ReplicationProgress::default());
        progress.publish_latest(5);
        let waiter = {
            let progress = progress.clone();
            tokio::spawn(async move { progress.wait_for_standby(5, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "no ack yet");
        progress.record_ack(4, false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "an ack of an earlier position");
        progress.record_ack(5, false);
        assert_eq!(waiter.await.unwrap(), SyncOutcome::Acked);
    }

    #[tokio::test(start_paused = true)]
    async fn a_promoted_region_starts_degraded_until_a_standby_catches_up() {
        let progress = ReplicationProgress::default();
        progress.publish_latest(7);
        progress.promoted();
        let started = tokio::time::Instant::now();
        assert_eq!(
            progress.wait_for_standby(7, Duration::from_secs(5)).await,
            SyncOutcome::Degraded,
            "no wait right after a promotion"
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        progress.record_ack(7, false);
        assert_eq!(progress.sync_state().degraded_since, None, "caught up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_degrades_until_the_standby_catches_up() {
        let progress = ReplicationProgress::default();
        progress.publish_latest(3);
        assert_eq!(
            progress
                .wait_for_standby(3, Duration::from_millis(500))
                .await,
            SyncOutcome::TimedOut
        );
        assert!(progress.sync_state().degraded_since.is_some());
        progress.publish_latest(4);
        assert_eq!(
            progress.wait_for_standby(4, Duration::from_secs(5)).await,
            SyncOutcome::Degraded,
            "a degraded region does not wait"
        );
        progress.record_ack(3, false);
        assert!(
            progress.sync_state().degraded_since.is_some(),
            "behind the latest position and not caught up"
        );
        progress.record_ack(3, true);
        assert_eq!(progress.sync_state().degraded_since, None, "caught up");
        progress.publish_latest(9);
        progress
            .wait_for_standby(9, Duration::from_millis(100))
            .await;
        progress.record_ack(9, false);
        assert_eq!(
            progress.sync_state(),
            SyncState {
                acked: 9,
                degraded_since: None
            },
            "an ack of the latest position restores sync"
        );
    }

    #[test]
    fn positions_and_connections_keep_the_newest() {
        let progress = ReplicationProgress::default();
        progress.publish_latest(7);
        progress.publish_latest(5);
        assert_eq!(progress.latest(), 7);
        progress.record_ack(6, false);
        progress.record_ack(2, false);
        assert_eq!(progress.sync_state().acked, 6);
        progress.connected("us-east", 1);
        progress.connected("us-east", 2);
        progress.disconnected(1);
        assert_eq!(progress.standby().as_deref(), Some("us-east"));
        progress.disconnected(2);
        assert_eq!(progress.standby(), None);
    }
}
