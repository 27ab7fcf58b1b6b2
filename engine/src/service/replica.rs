//! The replica's role in its region: whether it leads (schedules and writes) or follows, and
//! the hand-overs between the two.
//!
//! With leader election ([`crate::leadership`]), a replica starts as a follower. When it is
//! elected with epoch E it:
//! 1. sets its store handle's [`LeaderFence`](crate::store::LeaderFence) to E and raises the
//!    store's fence to E before anything else, so no write of an older leader is accepted
//!    after that point ([`crate::store::CheckpointStore::raise_fence`]);
//! 2. resumes every non-terminal run from its checkpoints;
//! 3. waits until each resumed run has committed its `RunResumed` (its in-flight worker
//!    attempts are then adopted by the task queues) and starts the cron schedules' ticker;
//! 4. and only then answers calls that need the leader ([`ReplicaRole::Leading`]); until then
//!    they get `leader_starting`, which the SDK retries.
//!
//! When it stops leading (its lease could not be renewed in time, another replica was
//! elected, or the store refused its epoch) it stops every driver at once, which kills its
//! shell attempts and drops its worker attempts from the task queues, resets its fence to 0
//! (every later write of this handle is refused) and becomes a follower. Without leader
//! election (a single replica, no `[etcd]`), the replica leads with epoch 0 from the start.
//!
//! # Regions in disaster recovery
//!
//! With `[dr]` ([`super::dr`]) the replica leads only while it is elected *and* its region's
//! role (read by the role watch every 250 ms) is `active`. An elected replica of a standby or
//! fenced region raises the store's fence but resumes nothing and starts no ticker
//! ([`ReplicaRole::Standby`]); it answers reads, replication and DR calls, and refuses the
//! others with `region_not_active` naming the active region (followers of such a region
//! refuse them the same way). When the region is promoted, the elected replica takes over as
//! above (after asking its peers whether another region was promoted with a higher epoch);
//! when it is demoted, or when the store refuses a write with
//! [`StoreError::NotActive`], it stops every driver at once like a step-down but keeps its
//! fence and its place in the election (the region's role changed, not its leader).

use crate::leadership::{Election, LeaderInfo, Role};
use crate::store::StoreError;
use crate::store::replication::{RegionRole, RegionState};

use super::error::ServiceError;
use super::region::Region;
use std::time::Duration;
use tokio::sync::watch;

/// What a replica may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRole {
    /// It leads with `epoch` and has taken over the region's runs: it schedules and writes.
    Leading {
        /// The leader epoch its writes carry (0 without leader election).
        epoch: u64,
    },
    /// It was elected with `epoch` and is still raising the store's fence and resuming runs.
    Starting {
        /// The leader epoch.
        epoch: u64,
    },
    /// It was elected with `epoch` (and raised the store's fence) but its region is not
    /// active: it drives no run and refuses calls that schedule or write with
    /// `region_not_active` (disaster recovery only).
    Standby {
        /// The leader epoch.
        epoch: u64,
        /// The region's role (`Standby` or `Fenced`).
        region_role: RegionRole,
        /// The region the store knows as active.
        active_region: String,
    },
    /// Another replica leads (`leader`), or none is known (election under way, etcd
    /// unreachable).
    Following {
        /// The leader, when one is known.
        leader: Option<LeaderInfo>,
    },
}

impl ReplicaRole {
    /// `leader`, `starting`, `standby` or `follower`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplicaRole::Leading { .. } => "leader",
            ReplicaRole::Starting { .. } => "starting",
            ReplicaRole::Standby { .. } => "standby",
            ReplicaRole::Following { .. } => "follower",
        }
    }

    /// The leader epoch of an elected replica (leading, starting or standby).
    pub fn elected_epoch(&self) -> Option<u64> {
        match self {
            ReplicaRole::Leading { epoch }
            | ReplicaRole::Starting { epoch }
            | ReplicaRole::Standby { epoch, .. } => Some(*epoch),
            ReplicaRole::Following { .. } => None,
        }
    }
}

/// What [`Region::open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// No leader election: this replica leads and resumed this many runs.
    Standalone {
        /// Runs resumed.
        resumed: usize,
    },
    /// Leader election runs in the background; the replica follows until it is elected.
    Elected,
    /// No leader election, and the region is not active (disaster recovery): this replica
    /// leads a standby region, resumes nothing, and takes over when the region is promoted.
    Standby {
        /// The region's role.
        role: RegionRole,
    },
}

/// Longest wait of a takeover for the resumed runs' first commits before it serves calls.
const FIRST_COMMITS_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest pause between two tries of a takeover step that failed on a store outage.
const MAX_TAKEOVER_DELAY: Duration = Duration::from_secs(5);

/// What the election says about this replica: elected with an epoch, or following a
/// leader (when one is known).
type Elected = Result<u64, Option<LeaderInfo>>;

impl Region {
    /// The replica's role now.
    pub fn role(&self) -> ReplicaRole {
        self.inner.role.borrow().clone()
    }

    /// Follows the replica's role changes.
    pub fn subscribe_role(&self) -> tokio::sync::watch::Receiver<ReplicaRole> {
        self.inner.role.subscribe()
    }

    /// Starts the replica. Without leader election it raises the store's fence with epoch 0
    /// (refused when the database belongs to a region with leader election), resumes every
    /// unfinished run and leads. With leader election it follows the election in the
    /// background and returns at once.
    ///
    /// With disaster recovery it first reads the region's role (and starts the role watch
    /// and the peer checks): a standalone replica of a region that is not active resumes
    /// nothing ([`Opened::Standby`]), and one of an active region first asks its peers
    /// whether another region was promoted.
    ///
    /// Errors (standalone only, and reading the region's role): the store's, and
    /// [`StoreError::Superseded`] when the database has seen a leader epoch.
    pub async fn open(&self) -> Result<Opened, ServiceError> {
        if let Some(dr) = self.dr() {
            dr.watch.refresh(dr.store.as_ref()).await?;
            dr.start(self);
        }
        match self.inner.election.clone() {
            Some(election) => {
                let region = self.clone();
                let follow = tokio::spawn(async move { region.follow(Some(election)).await });
                if let Some(dr) = self.dr() {
                    dr.keep(follow.abort_handle());
                }
                Ok(Opened::Elected)
            }
            None => {
                self.inner.fence.set(0);
                self.inner.store.raise_fence().await?;
                let opened = match self.dr() {
                    Some(dr) => {
                        if dr.watch.get().role == RegionRole::Active {
                            dr.learn_from_peers().await;
                        }
                        let state = dr.watch.get();
                        if state.role == RegionRole::Active {
                            None
                        } else {
                            self.inner.role.send_replace(standby_role(0, &state));
                            Some(Opened::Standby { role: state.role })
                        }
                    }
                    None => None,
                };
                let opened = match opened {
                    Some(opened) => opened,
                    None => {
                        let term = self.begin_term();
                        self.inner
                            .role
                            .send_replace(ReplicaRole::Starting { epoch: 0 });
                        let resumed = self.resume_all_in(term).await?;
                        self.start_ticker(term);
                        self.inner
                            .role
                            .send_replace(ReplicaRole::Leading { epoch: 0 });
                        Opened::Standalone { resumed }
                    }
                };
                if let Some(dr) = self.dr() {
                    // Promotions and demotions of a standalone replica.
                    let region = self.clone();
                    let follow = tokio::spawn(async move { region.follow(None).await });
                    dr.keep(follow.abort_handle());
                }
                Ok(opened)
            }
        }
    }

    /// Ok when this replica leads and has taken over the region's runs; otherwise
    /// [`ServiceError::LeaderStarting`], [`ServiceError::NotLeader`] or
    /// [`ServiceError::RegionNotActive`].
    pub fn require_leader(&self) -> Result<(), ServiceError> {
        self.leader_term().map(|_| ())
    }

    /// Ok when this replica is its region's elected leader, whatever the region's role
    /// (leading, starting or standby): what replication and DR calls need. Otherwise
    /// [`ServiceError::NotLeader`].
    pub fn require_region_leader(&self) -> Result<(), ServiceError> {
        match self.role() {
            ReplicaRole::Following { leader } => Err(self.not_leader(leader)),
            _ => Ok(()),
        }
    }

    /// Stops leading (drivers and ticker stop) and leaves the election, so another replica
    /// takes over at once: what a replica does before it exits. With disaster recovery, the
    /// role watch and the peer checks stop first.
    pub async fn close(&self) {
        if let Some(dr) = self.dr() {
            dr.stop();
        }
        self.step_down(None);
        if let Some(election) = &self.inner.election {
            election.shutdown().await;
        }
    }

    /// The current term when this replica leads and has taken over; otherwise the error a
    /// caller that needs the leader gets: [`ServiceError::RegionNotActive`] (the region is
    /// not active, whoever leads it), [`ServiceError::LeaderStarting`] or
    /// [`ServiceError::NotLeader`] (naming the leader when one is known).
    pub(super) fn leader_term(&self) -> Result<u64, ServiceError> {
        if let Some((role, active_region)) = self.dr().and_then(|dr| dr.watch.not_active()) {
            return Err(self.region_not_active(role, active_region));
        }
        match self.role() {
            ReplicaRole::Leading { .. } => {
                let drivers = self.drivers();
                if drivers.leading {
                    Ok(drivers.term)
                } else {
                    Err(self.not_leader(None))
                }
            }
            ReplicaRole::Starting { epoch } => Err(ServiceError::LeaderStarting {
                region: self.name().to_string(),
                member_id: self.inner.config.member_id.clone(),
                epoch,
            }),
            ReplicaRole::Standby {
                region_role,
                active_region,
                ..
            } => Err(self.region_not_active(region_role, active_region)),
            ReplicaRole::Following { leader } => Err(self.not_leader(leader)),
        }
    }

    fn not_leader(&self, leader: Option<LeaderInfo>) -> ServiceError {
        ServiceError::NotLeader {
            region: self.name().to_string(),
            member_id: self.inner.config.member_id.clone(),
            leader,
        }
    }

    fn region_not_active(&self, role: RegionRole, active_region: String) -> ServiceError {
        ServiceError::RegionNotActive {
            region: self.name().to_string(),
            role,
            active_region,
        }
    }

    /// Turns a store refusal met while serving a call in `term` into the end of leading and
    /// the error the caller gets: a refused leader epoch steps down (`not_leader`), a region
    /// that is not active any more stops the drivers (`region_not_active`). Other errors
    /// pass through.
    pub(super) fn check_superseded(&self, term: u64, error: ServiceError) -> ServiceError {
        match &error {
            ServiceError::Store(store @ StoreError::Superseded { .. }) => {
                self.superseded(term, store);
                self.not_leader(None)
            }
            ServiceError::Store(
                store @ StoreError::NotActive {
                    role,
                    active_region,
                    ..
                },
            ) => {
                self.superseded(term, store);
                self.region_not_active(*role, active_region.clone())
            }
            _ => error,
        }
    }

    /// The store refused a write of `term`: because another replica leads with a newer
    /// epoch ([`StoreError::Superseded`]: stop at once and give up the election key), or
    /// because the region is not active any more ([`StoreError::NotActive`]: stop every
    /// driver, keep the election key, and stand by). Other errors change nothing.
    pub(super) fn superseded(&self, term: u64, error: &StoreError) {
        if !self.term_leads(term) {
            return;
        }
        match error {
            StoreError::Superseded { .. } => {
                tracing::error!(region = %self.name(), %error, "the store refused this replica's leader epoch; stepping down");
                self.step_down(None);
                if let Some(election) = &self.inner.election {
                    election.step_down(&error.to_string());
                }
            }
            StoreError::NotActive {
                role,
                active_region,
                ..
            } => {
                tracing::error!(region = %self.name(), %error, "the store refused a write: the region is not active any more; stopping every run driver");
                let state = RegionState {
                    role: *role,
                    active_region: active_region.clone(),
                    ..self
                        .region_state()
                        .unwrap_or_else(|| placeholder(self.name()))
                };
                self.stand_down(&state);
                if let Some(dr) = self.dr() {
                    let dr = dr.clone();
                    tokio::spawn(async move {
                        if let Err(error) = dr.watch.refresh(dr.store.as_ref()).await {
                            tracing::warn!(%error, "cannot read the region's role after a refused write");
                        }
                    });
                }
            }
            _ => {}
        }
    }

    /// Stops leading: every driver and the ticker stop, the fence drops to 0, and the
    /// replica follows `leader`.
    fn step_down(&self, leader: Option<LeaderInfo>) {
        let was = self.role();
        let stopped = self.stop_all();
        self.stop_ticker();
        self.inner.fence.set(0);
        self.inner
            .role
            .send_replace(ReplicaRole::Following { leader });
        if !matches!(was, ReplicaRole::Following { .. }) {
            tracing::warn!(region = %self.name(), stopped, "stopped leading: this replica follows now");
        }
    }

    /// The region stopped being active under a leading replica: every driver and the ticker
    /// stop at once (like a step-down), but the replica keeps its epoch, its fence and its
    /// election key, as the leader of a region that is `state.role` now.
    fn stand_down(&self, state: &RegionState) {
        let Some(epoch) = self.role().elected_epoch() else {
            return;
        };
        let stopped = self.stop_all();
        self.stop_ticker();
        self.inner.role.send_replace(standby_role(epoch, state));
        tracing::warn!(region = %self.name(), role = %state.role, active_region = %state.active_region, stopped, "the region is not active: stopped every run driver; this replica stays its leader and resumes the runs if the region is promoted again");
    }

    /// Follows the election (when there is one) and the region's role (with disaster
    /// recovery) until the election ends.
    async fn follow(self, election: Option<Election>) {
        let mut roles = election.as_ref().map(Election::subscribe);
        let mut states = self.dr().map(|dr| dr.watch.subscribe());
        loop {
            let elected: Elected = match roles.as_mut() {
                Some(roles) => match roles.borrow_and_update().clone() {
                    Role::Leader { epoch, .. } => Ok(epoch),
                    Role::Follower { leader } => Err(leader),
                },
                None => Ok(0),
            };
            let region = states
                .as_mut()
                .map(|states| states.borrow_and_update().clone());
            self.reconcile(elected, region.as_ref());
            tokio::select! {
                changed = changed(roles.as_mut()) => {
                    if changed.is_err() {
                        self.step_down(None);
                        return;
                    }
                }
                changed = changed(states.as_mut()) => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Brings the replica's role in line with the election's word and the region's role
    /// (`None`: no disaster recovery, the region counts as active).
    fn reconcile(&self, elected: Elected, region: Option<&RegionState>) {
        let current = self.role();
        let epoch = match elected {
            Ok(epoch) => epoch,
            Err(leader) => {
                match current {
                    ReplicaRole::Following { .. } => {
                        self.inner
                            .role
                            .send_replace(ReplicaRole::Following { leader });
                    }
                    _ => self.step_down(leader),
                }
                return;
            }
        };
        match region.filter(|state| state.role != RegionRole::Active) {
            None => {
                let promoted = match &current {
                    ReplicaRole::Leading { epoch: e } | ReplicaRole::Starting { epoch: e }
                        if *e == epoch =>
                    {
                        return;
                    }
                    ReplicaRole::Following { .. } => false,
                    ReplicaRole::Standby { epoch: e, .. } if *e == epoch => true,
                    _ => {
                        self.step_down(None);
                        false
                    }
                };
                let term = self.begin_term();
                self.inner.fence.set(epoch);
                self.inner
                    .role
                    .send_replace(ReplicaRole::Starting { epoch });
                if promoted {
                    if let Some(dr) = self.dr() {
                        dr.progress.promoted();
                    }
                    tracing::info!(region = %self.name(), epoch, "the region is active now; taking over its runs");
                } else {
                    tracing::info!(region = %self.name(), epoch, "elected leader; taking over the region's runs");
                }
                let region = self.clone();
                tokio::spawn(async move { region.take_over(epoch, term).await });
            }
            Some(state) => match &current {
                ReplicaRole::Standby { epoch: e, .. } if *e == epoch => {
                    let standby = standby_role(epoch, state);
                    if current != standby {
                        self.inner.role.send_replace(standby);
                    }
                }
                ReplicaRole::Leading { epoch: e } | ReplicaRole::Starting { epoch: e }
                    if *e == epoch =>
                {
                    self.stand_down(state);
                }
                _ => {
                    if !matches!(current, ReplicaRole::Following { .. }) {
                        self.step_down(None);
                    }
                    self.inner.fence.set(epoch);
                    self.inner.role.send_replace(standby_role(epoch, state));
                    tracing::info!(region = %self.name(), epoch, role = %state.role, active_region = %state.active_region, "elected leader of a region that is not active: raising the fence, resuming no run");
                    let region = self.clone();
                    tokio::spawn(async move { region.stand_by(epoch).await });
                }
            },
        }
    }

    /// The leader of a region that is not active raises the store's fence (retried through
    /// store outages while it stands by with `epoch`).
    async fn stand_by(self, epoch: u64) {
        let mut delay = Duration::from_millis(100);
        let standing_by = |region: &Region| matches!(region.role(), ReplicaRole::Standby { epoch: e, .. } if e == epoch);
        loop {
            if !standing_by(&self) {
                return;
            }
            match self.inner.store.raise_fence().await {
                Ok(_) => return,
                Err(error @ StoreError::Superseded { .. }) => {
                    if standing_by(&self) {
                        tracing::error!(region = %self.name(), %error, "the store refused this replica's leader epoch; stepping down");
                        self.step_down(None);
                        if let Some(election) = &self.inner.election {
                            election.step_down(&error.to_string());
                        }
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(region = %self.name(), epoch, %error, "raising the store's fence failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_TAKEOVER_DELAY);
                }
            }
        }
    }

    /// Steps 1–4 of the module doc for `term`, retried through store outages while the term
    /// lasts. With disaster recovery, the peers are asked first: when another region was
    /// promoted with a higher epoch, this region is demoted and the takeover ends (the role
    /// watch then stands this replica down).
    async fn take_over(self, epoch: u64, term: u64) {
        if let Some(dr) = self.dr()
            && dr.learn_from_peers().await.is_some()
        {
            return;
        }
        let mut delay = Duration::from_millis(100);
        loop {
            if !self.term_leads(term) {
                return;
            }
            let result = match self.inner.store.raise_fence().await {
                Ok(_) => self.resume_all_in(term).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(resumed) => {
                    self.first_commits(term, FIRST_COMMITS_TIMEOUT).await;
                    if !self.term_leads(term) {
                        return;
                    }
                    self.start_ticker(term);
                    let drivers = self.drivers();
                    if drivers.leading && drivers.term == term {
                        self.inner.role.send_replace(ReplicaRole::Leading { epoch });
                        tracing::info!(region = %self.name(), epoch, resumed, "leading the region");
                    }
                    return;
                }
                Err(error) if error.ends_leadership() => {
                    self.superseded(term, &error);
                    return;
                }
                Err(error) => {
                    tracing::warn!(region = %self.name(), epoch, %error, "taking over the region's runs failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_TAKEOVER_DELAY);
                }
            }
        }
    }
}

/// The role of an elected replica (epoch `epoch`) of a region in `state` (not active).
fn standby_role(epoch: u64, state: &RegionState) -> ReplicaRole {
    ReplicaRole::Standby {
        epoch,
        region_role: state.role,
        active_region: state.active_region.clone(),
    }
}

/// A region state naming only `region` (used when none was read yet).
pub(super) fn placeholder(region: &str) -> RegionState {
    RegionState {
        region: region.to_string(),
        role: RegionRole::Standby,
        region_epoch: 0,
        active_region: String::new(),
        applied_position: 0,
        applied_registration: 0,
        applied_at: None,
        applied_recorded_at: None,
        source_latest_position: 0,
        promoted_at_position: None,
        tail: None,
    }
}

/// The next change of `receiver`; never, without one.
async fn changed<T>(
    receiver: Option<&mut watch::Receiver<T>>,
) -> Result<(), watch::error::RecvError> {
    match receiver {
        Some(receiver) => receiver.changed().await,
        None => std::future::pending().await,
    }
}
