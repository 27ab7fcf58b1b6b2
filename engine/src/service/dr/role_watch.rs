//! The role watch: every replica of a region that takes part in disaster recovery reads its
//! store's [`RegionState`] every [`POLL_INTERVAL`] and publishes it in a watch channel, so
//! the replica learns a promotion or demotion made by any process (`tandem dr`, another
//! replica, the replicator) within that interval. Changes made by this process are published
//! at once ([`RegionWatch::publish`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::promotion::PromotionTimes;
use crate::store::StoreError;
use crate::store::replication::{RegionRole, RegionState, ReplicationStore};

/// How often the store's region state is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The latest region state this replica read (see the module docs).
#[derive(Debug, Clone)]
pub struct RegionWatch {
    states: watch::Sender<RegionState>,
    /// Whether a state was published since `initial` (the first one is no change seen).
    published: Arc<AtomicBool>,
    promotions: Arc<PromotionTimes>,
}

impl RegionWatch {
    /// A watch starting at `initial` (a placeholder until the first read).
    pub fn new(initial: RegionState) -> RegionWatch {
        RegionWatch {
            states: watch::Sender::new(initial),
            published: Arc::new(AtomicBool::new(false)),
            promotions: Arc::new(PromotionTimes::default()),
        }
    }

    /// The promotions this watch saw, and the first dispatch after the latest one.
    pub fn promotions(&self) -> &PromotionTimes {
        &self.promotions
    }

    /// The latest state.
    pub fn get(&self) -> RegionState {
        self.states.borrow().clone()
    }

    /// The role and the active region when the latest state is not active (`None` when it
    /// is), without copying the state otherwise: what every leader call checks.
    pub fn not_active(&self) -> Option<(RegionRole, String)> {
        let state = self.states.borrow();
        (state.role != RegionRole::Active).then(|| (state.role, state.active_region.clone()))
    }

    /// Follows the state's changes.
    pub fn subscribe(&self) -> watch::Receiver<RegionState> {
        self.states.subscribe()
    }

    /// Publishes `state` when it differs from the latest one; returns whether it did.
    pub fn publish(&self, state: RegionState) -> bool {
        let first = !self.published.swap(true, Ordering::SeqCst);
        self.states.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                if !first {
                    self.promotions.observe(current, &state);
                }
                *current = state;
                true
            }
        })
    }

    /// Reads the store's state once and publishes it.
    ///
    /// Errors: the store's.
    pub async fn refresh(&self, store: &dyn ReplicationStore) -> Result<RegionState, StoreError> {
        let state = store.region_state().await?;
        self.publish(state.clone());
        Ok(state)
    }

    /// Reads the store's state every [`POLL_INTERVAL`] and publishes its changes, until the
    /// task is aborted. A failed read is logged (once per run of failures) and retried at the
    /// next tick; the last state read stays published meanwhile.
    pub fn spawn_poller(&self, store: Arc<dyn ReplicationStore>) -> tokio::task::JoinHandle<()> {
        let watch = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POLL_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                ticks.tick().await;
                match watch.refresh(store.as_ref()).await {
                    Ok(state) => {
                        if failing {
                            tracing::info!(region = %state.region, role = %state.role, "the region's role can be read again");
                        }
                        failing = false;
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "cannot read the region's role from the store; keeping the last one read");
                        }
                        failing = true;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(role: RegionRole) -> RegionState {
        RegionState {
            region: "eu-west".into(),
            role,
            region_epoch: 1,
            active_region: "eu-west".into(),
            applied_position: 0,
            applied_registration: 0,
            applied_at: None,
            applied_recorded_at: None,
            source_latest_position: 0,
            promoted_at_position: None,
            tail: None,
        }
    }

    #[test]
    fn only_changes_are_published() {
        let watch = RegionWatch::new(state(RegionRole::Active));
        let mut states = watch.subscribe();
        states.borrow_and_update();
        assert!(!watch.publish(state(RegionRole::Active)));
        assert!(!states.has_changed().unwrap());
        assert_eq!(watch.not_active(), None);
        assert!(watch.publish(state(RegionRole::Standby)));
        assert!(states.has_changed().unwrap());
        assert_eq!(watch.get().role, RegionRole::Standby);
        assert_eq!(
            watch.not_active(),
            Some((RegionRole::Standby, "eu-west".to_string()))
        );
    }

    #[test]
    fn a_promotion_is_seen_after_the_first_read_only() {
        let mut promoted = state(RegionRole::Active);
        promoted.region_epoch = 2;
        let watch = RegionWatch::new(state(RegionRole::Standby));
        watch.publish(promoted.clone());
        assert_eq!(
            watch.promotions().promoted_at(&promoted),
            0,
            "the first read replaces a placeholder"
        );
        let watch = RegionWatch::new(state(RegionRole::Standby));
        watch.publish(state(RegionRole::Standby));
        watch.publish(promoted.clone());
        assert!(watch.promotions().promoted_at(&promoted) > 0);
        assert_eq!(
            watch.promotions().promoted_at(&state(RegionRole::Active)),
            0,
            "another epoch"
        );
    }
}
