//! [`Replicator`]: pulls the active region's checkpoint log into this region's store while
//! this region is a standby (`tandem replicate`; one process per region, in every region).
//!
//! Loop, until the shutdown future completes:
//! 1. read the store's [`RegionState`];
//! 2. not a standby (active or fenced): idle, read it again after
//!    [`ReplicatorConfig::poll_interval`];
//! 3. standby of region A: open `ReplicationService.Replicate` on A's replicas
//!    ([`ReplicatorConfig::peers`]; the last one that streamed first; a `not_leader` reply's
//!    `tandem-leader-address` is followed at once), send [`proto::ReplicateStart`] from the
//!    store's applied position and registration and region epoch, then for each
//!    [`proto::LogBatch`]: check and convert it
//!    ([`tandem_engine::service::dr::wire::batch_from_proto`]), apply it with
//!    [`ReplicationStore::apply_replicated`] (one transaction; a repeated batch changes
//!    nothing; a gap is refused), and acknowledge the new applied position
//!    ([`proto::ReplicateAck`], what the active region's sync mode waits for);
//! 4. the session ends when the role or the active region changes (read every poll interval,
//!    so a promotion, rejoin or switchover redirects replication without a restart), when no
//!    batch came for [`ReplicatorConfig::stall_timeout`] (the source sends one at least every
//!    second), or on any error; after an error it waits ([`Backoff`], reset by every applied
//!    batch) and starts over at 1.
//!
//! Shutdown is honoured between batches: a batch being applied is committed (or not) whole.

mod progress;
mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_api::{Backoff, proto};
use tandem_engine::store::replication::{RegionRole, RegionState, ReplicationStore};
use tokio::sync::watch;

pub use progress::{Phase, ReplicatorStatus};

use self::session::SessionEnd;

/// Settings of a [`Replicator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorConfig {
    /// This region's name (the store must belong to it).
    pub region: String,
    /// The other regions' replicas: region name → `http://host:port` addresses (`[dr] peers`).
    pub peers: BTreeMap<String, Vec<String>>,
    /// How often the role is read while idle, and while streaming. Default 250 ms.
    pub poll_interval: Duration,
    /// A stream that delivers no batch for this long is dropped and opened again (the source
    /// sends a heartbeat batch at least every second). Default 5 s.
    pub stall_timeout: Duration,
    /// Time to open a connection to one replica, and for its answer to `Replicate`.
    /// Default 3 s.
    pub connect_timeout: Duration,
    /// Most checkpoints per batch asked of the source; 0: the source's default (1000).
    pub max_batch: u32,
    /// First wait after a failure. Default 100 ms.
    pub retry_initial: Duration,
    /// Longest wait after failures. Default 5 s.
    pub retry_max: Duration,
    /// How often progress is logged at INFO while streaming. Default 10 s.
    pub log_interval: Duration,
}

impl ReplicatorConfig {
    /// Defaults for region `region` with `peers`.
    pub fn new(region: impl Into<String>, peers: BTreeMap<String, Vec<String>>) -> Self {
        ReplicatorConfig {
            region: region.into(),
            peers,
            poll_interval: Duration::from_millis(250),
            stall_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            max_batch: 0,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            log_interval: Duration::from_secs(10),
        }
    }
}

/// A replicator that cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicatorError {
    /// The store belongs to another region, or to none yet.
    #[error(
        "the store {location} belongs to region `{found}`, but the replicator is configured for region `{expected}`{}",
        if found.is_empty() { " (the store has no region yet: initialize it with init_region, as `tandem replicate` and `tandem serve` do)" } else { "" }
    )]
    RegionMismatch {
        /// The configured region.
        expected: String,
        /// The store's region (empty: none).
        found: String,
        /// The store.
        location: String,
    },
}

/// Pulls the active region's log into this region's store (see the module docs).
pub struct Replicator {
    store: Arc<dyn ReplicationStore>,
    config: ReplicatorConfig,
    status: watch::Sender<ReplicatorStatus>,
    /// The replica to try first (region, `http://host:port`): the last one that streamed, or
    /// the leader a follower named.
    preferred: Option<(String, String)>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("store", &self.store.location())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Replicator {
    /// A replicator of `store` (this region's store) with `config`; it does nothing until
    /// [`Replicator::run`].
    pub fn new(store: Arc<dyn ReplicationStore>, config: ReplicatorConfig) -> Replicator {
        let (status, _) = watch::channel(ReplicatorStatus::new(&config.region));
        Replicator {
            store,
            config,
            status,
            preferred: None,
        }
    }

    /// Its status, updated as it goes (phase, source, positions, counters, last error).
    pub fn status(&self) -> watch::Receiver<ReplicatorStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` completes (then `Ok`), or until the store turns out to belong to
    /// another region ([`ReplicatorError::RegionMismatch`]). Every other failure is logged,
    /// published in the status, and retried.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ReplicatorError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Backoff::new(self.config.retry_initial, self.config.retry_max);
        let result = loop {
            let state = tokio::select! {
                _ = &mut shutdown => break Ok(()),
                state = self.store.region_state() => state,
            };
            let state = match state {
                Ok(state) => state,
                Err(error) => {
                    let message = format!("reading the region state: {error}");
                    tracing::warn!(region = %self.config.region, "replication: {message}");
                    self.fail(message);
                    if self.pause(backoff.next_delay(), &mut shutdown).await {
                        break Ok(());
                    }
                    continue;
                }
            };
            if state.region != self.config.region {
                break Err(ReplicatorError::RegionMismatch {
                    expected: self.config.region.clone(),
                    found: state.region.clone(),
                    location: self.store.location(),
                });
            }
            self.observe(&state);
            if state.role != RegionRole::Standby {
                self.set_phase(Phase::Idle, None);
                backoff.reset();
                if self.pause(self.config.poll_interval, &mut shutdown).await {
                    break Ok(());
                }
                continue;
            }
            let (end, progressed) = self.session(&state, &mut shutdown).await;
            if progressed {
                backoff.reset();
            }
            match end {
                SessionEnd::Shutdown => break Ok(()),
                SessionEnd::RoleChanged => {
                    tracing::info!(region = %self.config.region, "replication: the region's role or active region changed");
                    self.set_phase(Phase::Connecting, None);
                }
                SessionEnd::Redirect(leader) => {
                    tracing::info!(region = %self.config.region, %leader, "replication: following the source region's leader");
                    self.preferred = Some((state.active_region.clone(), leader));
                }
                SessionEnd::Failed(message) => {
                    tracing::warn!(region = %self.config.region, active_region = %state.active_region, "replication: {message}");
                    self.fail(message);
                    if self.pause(backoff.next_delay(), &mut shutdown).await {
                        break Ok(());
                    }
                }
            }
        };
        self.set_phase(Phase::Stopped, None);
        result
    }

    /// Sleeps `delay`; true when the shutdown came first.
    async fn pause(
        &self,
        delay: Duration,
        shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> bool {
        tokio::select! {
            _ = shutdown.as_mut() => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }

    fn observe(&self, state: &RegionState) {
        self.status.send_modify(|status| status.observe(state));
    }

    fn set_phase(&self, phase: Phase, source: Option<String>) {
        self.status.send_modify(|status| {
            status.phase = phase;
            status.connected_source = source;
        });
    }

    fn fail(&self, message: String) {
        self.status.send_modify(|status| {
            status.phase = Phase::Retrying;
            status.connected_source = None;
            status.last_error = Some(message);
        });
    }

    /// The message that opens a stream from `state`.
    fn start_message(&self, state: &RegionState) -> proto::StandbyMessage {
        proto::StandbyMessage {
            message: Some(proto::standby_message::Message::Start(
                proto::ReplicateStart {
                    standby_region: self.config.region.clone(),
                    after_position: state.applied_position,
                    after_registration: state.applied_registration,
                    region_epoch: state.region_epoch,
                    max_batch: self.config.max_batch,
                },
            )),
        }
    }
}
