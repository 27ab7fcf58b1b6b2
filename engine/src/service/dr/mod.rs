//! The server side of cross-region disaster recovery in `tandem serve` (with `[dr]`).
//!
//! - [`config`]: `[dr]` and `[replication]` as [`DrConfig`].
//! - [`role_watch`]: every replica reads its region's role every 250 ms; the replica leads
//!   only while elected *and* active ([`super::replica`]).
//! - [`progress`] and [`sync_gate`]: the leader writes through [`sync_gate::SyncGate`],
//!   which publishes each new latest position (waking the replication streams) and, in sync
//!   mode, holds a write until a standby acknowledged it (or degrades after the timeout).
//! - [`stream`]: `ReplicationService.Replicate`, the log pushed to a standby's replicator.
//! - [`dr_api`]: `DrService` (status, promote, demote, rejoin).
//! - [`peer_watch`]: the active region's leader asks its peers for their status and demotes
//!   its region when another one was promoted with a higher region epoch.
//! - [`wire`]: batches on the wire, both ways.

pub mod config;
pub mod dr_api;
pub mod peer_watch;
pub mod progress;
pub mod promotion;
pub mod role_watch;
pub mod stream;
pub mod sync_gate;
pub mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_election;
#[cfg(test)]
mod tests_promotion;
#[cfg(test)]
mod tests_sync;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::AbortHandle;

pub use config::{DrConfig, ReplicationConfig, ReplicationMode};
pub use dr_api::DrApi;
pub use stream::ReplicationApi;

use self::peer_watch::Peers;
use self::progress::ReplicationProgress;
use self::role_watch::RegionWatch;
use super::region::Region;
use super::replica::ReplicaRole;
use crate::store::replication::{RegionRole, RegionState, ReplicationStore};

/// What a region replica that takes part in disaster recovery holds beside its region.
pub(crate) struct Dr {
    pub(crate) config: DrConfig,
    /// The region's store as a replication store (the same database as the region's).
    pub(crate) store: Arc<dyn ReplicationStore>,
    pub(crate) watch: RegionWatch,
    pub(crate) progress: Arc<ReplicationProgress>,
    peers: Peers,
    /// The region epoch of the last active peer with this region's epoch that was reported
    /// (reported once per epoch).
    reported_twin: AtomicU64,
    /// Background tasks, stopped by [`Dr::stop`].
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Dr {
    /// The DR side of a replica of `region`; the watch starts at `initial` (read before the
    /// replica opens).
    pub(crate) fn new(
        config: DrConfig,
        store: Arc<dyn ReplicationStore>,
        initial: RegionState,
    ) -> Dr {
        let peers = Peers::new(config.peers.clone());
        Dr {
            config,
            store,
            watch: RegionWatch::new(initial),
            progress: Arc::new(ReplicationProgress::default()),
            peers,
            reported_twin: AtomicU64::new(u64::MAX),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts the role watch, and the peer checks when peers are configured.
    pub(crate) fn start(&self, region: &Region) {
        self.keep(self.watch.spawn_poller(self.store.clone()).abort_handle());
        if self.peers.is_empty() {
            return;
        }
        let region = region.clone();
        let interval = self.config.peer_check_interval;
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(dr) = region.dr() else {
                    return;
                };
                let leads = matches!(
                    region.role(),
                    ReplicaRole::Leading { .. } | ReplicaRole::Starting { .. }
                );
                if leads && dr.watch.get().role == RegionRole::Active {
                    dr.learn_from_peers().await;
                }
            }
        });
        self.keep(task.abort_handle());
    }

    /// Keeps a background task to stop with the others.
    pub(crate) fn keep(&self, task: AbortHandle) {
        self.lock_tasks().push(task);
    }

    /// Stops every background task (role watch, peer checks, the replica's follower of the
    /// region's role).
    pub(crate) fn stop(&self) {
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<AbortHandle>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the peers for their status (when this region is active); when one is active
    /// with a higher region epoch, demotes this region to it (standby without a tail,
    /// fenced with its tail logged at ERROR) and publishes the new state. Returns the new
    /// state when it demoted the region. Unreachable peers are logged at DEBUG only: a lost
    /// peer is the normal case of a disaster.
    pub(crate) async fn learn_from_peers(&self) -> Option<RegionState> {
        if self.peers.is_empty() {
            return None;
        }
        let own = match self.watch.refresh(self.store.as_ref()).await {
            Ok(own) => own,
            Err(error) => {
                tracing::warn!(%error, "cannot read this region's role to compare it with its peers'");
                return None;
            }
        };
        if own.role != RegionRole::Active {
            return None;
        }
        let mut newest: Option<tandem_api::RegionStatus> = None;
        for (name, status) in self.peers.statuses().await {
            let status = match status {
                Ok(status) => status,
                Err(error) => {
                    tracing::debug!(peer = %name, %error, "peer region did not answer");
                    continue;
                }
            };
            if status.region != name {
                tracing::warn!(peer = %name, answered = %status.region, "a `[dr] peers` entry reaches a region of another name");
            }
            if status.role != tandem_api::RegionRole::Active {
                continue;
            }
            if status.region_epoch == own.region_epoch
                && self.reported_twin.swap(own.region_epoch, Ordering::SeqCst) != own.region_epoch
            {
                tracing::error!(region = %own.region, peer = %status.region, region_epoch = own.region_epoch, "another region is active with this region's epoch: two regions accept writes; demote one of them (`tandem dr demote`)");
            }
            if status.region_epoch > own.region_epoch
                && newest
                    .as_ref()
                    .is_none_or(|newest| status.region_epoch > newest.region_epoch)
            {
                newest = Some(status);
            }
        }
        let peer = newest?;
        let fork = peer.promoted_at_position.unwrap_or(0);
        tracing::error!(region = %own.region, region_epoch = own.region_epoch, peer = %peer.region, peer_epoch = peer.region_epoch, fork_position = fork, "region {} was promoted with a higher region epoch: this region stops scheduling and refuses writes", peer.region);
        match self
            .store
            .demote(&peer.region, peer.region_epoch, fork)
            .await
        {
            Ok(state) => {
                self.watch.publish(state.clone());
                self.report_tail(&state).await;
                Some(state)
            }
            Err(error) => {
                tracing::error!(%error, peer = %peer.region, "cannot record the higher region epoch of the peer; asking again at the next check");
                None
            }
        }
    }

    /// Logs a fenced region's unreplicated tail at ERROR, with its runs (never dropped
    /// silently: `tandem dr status` shows it, `tandem dr rejoin` archives it).
    pub(crate) async fn report_tail(&self, state: &RegionState) {
        match state.role {
            RegionRole::Standby => {
                tracing::warn!(region = %state.region, active_region = %state.active_region, region_epoch = state.region_epoch, "this region is a standby now; nothing of its log was lost");
            }
            RegionRole::Fenced => {
                let report = match self.store.tail_report().await {
                    Ok(report) => report,
                    Err(error) => {
                        tracing::error!(region = %state.region, tail = ?state.tail, %error, "this region is fenced with an unreplicated tail, which cannot be listed now; see `tandem dr status`");
                        return;
                    }
                };
                let runs: Vec<String> = report
                    .runs
                    .iter()
                    .map(|run| {
                        format!(
                            "{} ({}, {} checkpoint{}{})",
                            run.run_id,
                            run.workflow,
                            run.checkpoints,
                            if run.checkpoints == 1 { "" } else { "s" },
                            if run.created_in_tail {
                                ", created in the tail"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                tracing::error!(
                    region = %state.region,
                    active_region = %state.active_region,
                    tail_from = report.tail.map(|tail| tail.from),
                    tail_to = report.tail.map(|tail| tail.to),
                    runs = %runs.join("; "),
                    "this region is fenced: these checkpoints were never replicated to the active region and are not part of its history; they are kept until `tandem dr rejoin` archives them"
                );
            }
            RegionRole::Active => {}
        }
    }
}
