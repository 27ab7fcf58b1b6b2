//! [`PromotionTimes`]: when this region was promoted and when it dispatched its first task
//! afterwards, for `RegionStatus.promoted_at_ms` and `first_dispatch_at_ms` (the drill's
//! RTO ends at the first dispatch).
//!
//! - The promotion time is the time this replica saw its region become active with a new
//!   region epoch: at once when it promoted the region itself (`DrService.Promote`), else
//!   within the role watch's 250 ms. It lives in memory: a replica started after the
//!   promotion reports 0 (the store records the promoted position, not the time).
//! - The first dispatch is the commit time of the first `attempt_started` checkpoint after
//!   `promoted_at_position`, found by reading the log from there (at most
//!   [`MAX_SCAN_PER_CALL`] checkpoints per status call, resuming where the last call
//!   stopped) and kept once found.

use std::sync::{Mutex, PoisonError};

use crate::checkpoint::{Event, LogPosition, UnixMillis, now_millis};
use crate::store::StoreError;
use crate::store::replication::{RegionRole, RegionState, ReplicationStore};

/// Most checkpoints one status call reads looking for the first dispatch.
pub const MAX_SCAN_PER_CALL: usize = 10_000;

/// Checkpoints per read of that scan.
const PAGE: usize = 1_000;

/// See the module docs.
#[derive(Debug, Default)]
pub struct PromotionTimes {
    inner: Mutex<Times>,
}

#[derive(Debug, Default)]
struct Times {
    /// (region epoch, when this replica saw the region become active with it).
    promoted: Option<(u64, UnixMillis)>,
    /// The scan for the first dispatch of the promotion at this position.
    scan: Option<Scan>,
}

#[derive(Debug, Clone, Copy)]
struct Scan {
    promoted_at_position: LogPosition,
    scanned_to: LogPosition,
    found: Option<UnixMillis>,
}

impl PromotionTimes {
    /// Records a state change seen by this replica (`before` → `after`): a region that
    /// became active with a higher region epoch was promoted now.
    pub fn observe(&self, before: &RegionState, after: &RegionState) {
        if before.role != RegionRole::Active
            && after.role == RegionRole::Active
            && after.region_epoch > before.region_epoch
        {
            self.lock().promoted = Some((after.region_epoch, now_millis()));
        }
    }

    /// When this replica saw the region promoted to `state`'s epoch (0: not seen).
    pub fn promoted_at(&self, state: &RegionState) -> UnixMillis {
        match self.lock().promoted {
            Some((epoch, at)) if epoch == state.region_epoch => at,
            _ => 0,
        }
    }

    /// The commit time of the first `attempt_started` after `state`'s promotion (0: none
    /// yet, or the region was never promoted).
    ///
    /// Errors: the store's.
    pub async fn first_dispatch_at(
        &self,
        store: &dyn ReplicationStore,
        state: &RegionState,
    ) -> Result<UnixMillis, StoreError> {
        let Some(promoted_at_position) = state.promoted_at_position else {
            return Ok(0);
        };
        let mut scan = match self.lock().scan {
            Some(scan) if scan.promoted_at_position == promoted_at_position => scan,
            _ => Scan {
                promoted_at_position,
                scanned_to: promoted_at_position,
                found: None,
            },
        };
        let mut read = 0;
        while scan.found.is_none() && read < MAX_SCAN_PER_CALL {
            let page = store.read_log(scan.scanned_to, PAGE).await?;
            let Some(last) = page.last() else {
                break;
            };
            scan.scanned_to = last.position;
            read += page.len();
            scan.found = page
                .iter()
                .find(|checkpoint| matches!(checkpoint.event, Event::AttemptStarted { .. }))
                .map(|checkpoint| checkpoint.recorded_at);
            if page.len() < PAGE {
                break;
            }
        }
        self.lock().scan = Some(scan);
        Ok(scan.found.unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Times> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
