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
//!   its region when another one was promoted with a higher region epoch; `tail_log` logs
//!   what a demoted region kept (its unreplicated tail).
//! - [`promotion`]: when the region was promoted and first dispatched afterwards.
//! - [`wire`]: batches on the wire, both ways.

pub mod config;
pub mod dr_api;
pub mod peer_watch;
pub mod progress;
pub mod promotion;
pub mod role_watch;
pub mod stream;
pub mod sync_gate;
mod tail_log;
pub mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_election;
#[cfg(test)]
mod tests_promotion;
#[cfg(test)]
mod tests_sync;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::task::AbortHandle;

pub use config::{DrConfig, ReplicationConfig, ReplicationMode};
pub use dr_api::DrApi;
pub use stream::ReplicationApi;

use self::peer_watch::Peers;
use self::progress::ReplicationProgress;
use self::role_watch::RegionWatch;
use super::region::Region;
use crate::store::replication::{RegionState, ReplicationStore};

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

    /// Starts the role watch, and the peer checks ([`peer_watch`]) when peers are
    /// configured.
    pub(crate) fn start(&self, region: &Region) {
        self.keep(self.watch.spawn_poller(self.store.clone()).abort_handle());
        self.spawn_peer_checks(region);
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
}
