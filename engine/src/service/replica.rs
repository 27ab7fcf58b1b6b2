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

use crate::leadership::{Election, LeaderInfo, Role};
use crate::store::StoreError;

use super::error::ServiceError;
use super::region::Region;
use std::time::Duration;

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
    /// Another replica leads (`leader`), or none is known (election under way, etcd
    /// unreachable).
    Following {
        /// The leader, when one is known.
        leader: Option<LeaderInfo>,
    },
}

impl ReplicaRole {
    /// `leader`, `starting` or `follower`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplicaRole::Leading { .. } => "leader",
            ReplicaRole::Starting { .. } => "starting",
            ReplicaRole::Following { .. } => "follower",
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
}

/// Longest wait of a takeover for the resumed runs' first commits before it serves calls.
const FIRST_COMMITS_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest pause between two tries of a takeover step that failed on a store outage.
const MAX_TAKEOVER_DELAY: Duration = Duration::from_secs(5);

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
    /// Errors (standalone only): the store's, and [`StoreError::Superseded`] when the
    /// database has seen a leader epoch.
    pub async fn open(&self) -> Result<Opened, ServiceError> {
        match self.inner.election.clone() {
            Some(election) => {
                let region = self.clone();
                tokio::spawn(async move { region.follow_election(election).await });
                Ok(Opened::Elected)
            }
            None => {
                self.inner.fence.set(0);
                self.inner.store.raise_fence().await?;
                let term = self.begin_term();
                self.inner
                    .role
                    .send_replace(ReplicaRole::Starting { epoch: 0 });
                let resumed = self.resume_all_in(term).await?;
                self.start_ticker(term);
                self.inner
                    .role
                    .send_replace(ReplicaRole::Leading { epoch: 0 });
                Ok(Opened::Standalone { resumed })
            }
        }
    }

    /// Ok when this replica leads and has taken over the region's runs; otherwise
    /// [`ServiceError::LeaderStarting`] or [`ServiceError::NotLeader`].
    pub fn require_leader(&self) -> Result<(), ServiceError> {
        self.leader_term().map(|_| ())
    }

    /// Stops leading (drivers and ticker stop) and leaves the election, so another replica
    /// takes over at once: what a replica does before it exits.
    pub async fn close(&self) {
        self.step_down(None);
        if let Some(election) = &self.inner.election {
            election.shutdown().await;
        }
    }

    /// The current term when this replica leads and has taken over; otherwise the error a
    /// caller that needs the leader gets: [`ServiceError::LeaderStarting`] or
    /// [`ServiceError::NotLeader`] (naming the leader when one is known).
    pub(super) fn leader_term(&self) -> Result<u64, ServiceError> {
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

    /// Turns a store refusal of this replica's epoch met while serving a call in `term` into
    /// a step-down and the `not_leader` error; other errors pass through.
    pub(super) fn check_superseded(&self, term: u64, error: ServiceError) -> ServiceError {
        match &error {
            ServiceError::Store(store @ StoreError::Superseded { .. }) => {
                self.superseded(term, store);
                self.not_leader(None)
            }
            _ => error,
        }
    }

    /// The store refused a write of `term` because another replica leads with a newer epoch:
    /// stop at once and give up the election key.
    pub(super) fn superseded(&self, term: u64, error: &StoreError) {
        if !self.term_leads(term) {
            return;
        }
        tracing::error!(region = %self.name(), %error, "the store refused this replica's leader epoch; stepping down");
        self.step_down(None);
        if let Some(election) = &self.inner.election {
            election.step_down(&error.to_string());
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

    async fn follow_election(self, election: Election) {
        let mut roles = election.subscribe();
        loop {
            let role = roles.borrow_and_update().clone();
            match role {
                Role::Leader { epoch, .. } => {
                    let current = self.role();
                    let same = matches!(current, ReplicaRole::Leading { epoch: e } | ReplicaRole::Starting { epoch: e } if e == epoch);
                    if !same {
                        if !matches!(current, ReplicaRole::Following { .. }) {
                            self.step_down(None);
                        }
                        let term = self.begin_term();
                        self.inner.fence.set(epoch);
                        self.inner
                            .role
                            .send_replace(ReplicaRole::Starting { epoch });
                        tracing::info!(region = %self.name(), epoch, "elected leader; taking over the region's runs");
                        let region = self.clone();
                        tokio::spawn(async move { region.take_over(epoch, term).await });
                    }
                }
                Role::Follower { leader } => match self.role() {
                    ReplicaRole::Following { .. } => {
                        self.inner
                            .role
                            .send_replace(ReplicaRole::Following { leader });
                    }
                    _ => self.step_down(leader),
                },
            }
            if roles.changed().await.is_err() {
                self.step_down(None);
                return;
            }
        }
    }

    /// Steps 1–4 of the module doc for `term`, retried through store outages while the term
    /// lasts.
    async fn take_over(self, epoch: u64, term: u64) {
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
                Err(error @ StoreError::Superseded { .. }) => {
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
