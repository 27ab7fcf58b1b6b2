//! Cross-region replication in the store: the region's role and epoch, reading the log with
//! what replication must ship beside it, applying shipped batches on a standby, promotion,
//! demotion and rejoining.
//!
//! Only the PostgreSQL store implements [`ReplicationStore`]: a region that takes part in
//! disaster recovery keeps its log in PostgreSQL; the embedded store (`tandem run`) has no
//! region role and is always active.
//!
//! # Roles
//!
//! A store records one [`RegionState`]. A fresh store is `active` with region epoch 0 until
//! [`ReplicationStore::init_region`] says otherwise. Every write of a fenced handle
//! ([`super::LeaderFence`]) to a store whose role is not `active` is refused with
//! [`StoreError::NotActive`] in the write's own transaction (the role lives in the same row
//! as the leader fence and is checked by the same statement), so a demoted region's leader
//! cannot write one more checkpoint whatever it believes. `raise_fence` does not check the
//! role: a standby region elects leaders too.
//!
//! # Applying
//!
//! [`ReplicationStore::apply_replicated`] writes a batch in one transaction: checkpoints at
//! positions not above the applied position are skipped (a batch sent twice changes
//! nothing); the first new one must be exactly `applied + 1` and the rest consecutive, or the
//! batch is refused with [`StoreError::ReplicationGap`] and nothing is written. The run table
//! is rebuilt from the events (a `run_created` checkpoint inserts the run with its
//! [`RunOrigin`], a `run_finished` one sets its status), and the epoch allocator is raised
//! past every applied epoch, so a run claimed after promotion outranks every replicated
//! owner.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{CheckpointStore, Owner, StoreError, StoredWorkflow};
use crate::checkpoint::{Checkpoint, LogPosition, RunId, UnixMillis};

/// A region's role in disaster recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionRole {
    /// Its leader schedules runs and writes; its log is shipped to standbys.
    Active,
    /// It applies the active region's log and refuses to start runs.
    Standby,
    /// It was active, learned that another region was promoted with a higher region epoch,
    /// and holds an unreplicated tail: it refuses writes and does not apply until rejoined.
    Fenced,
}

impl RegionRole {
    /// `active`, `standby` or `fenced`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionRole::Active => "active",
            RegionRole::Standby => "standby",
            RegionRole::Fenced => "fenced",
        }
    }

    /// Parses [`RegionRole::as_str`]'s spelling.
    pub fn parse(text: &str) -> Option<RegionRole> {
        [RegionRole::Active, RegionRole::Standby, RegionRole::Fenced]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

impl std::fmt::Display for RegionRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Positions `[from, to]` of a fenced region's log that the active region never received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailRange {
    /// First position of the tail (the fork position + 1).
    pub from: LogPosition,
    /// Last position of the tail (the log's latest when the region was fenced).
    pub to: LogPosition,
}

/// A store's disaster-recovery state (one row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionState {
    /// The region this store belongs to; empty until [`ReplicationStore::init_region`].
    pub region: String,
    /// Its role.
    pub role: RegionRole,
    /// Its region epoch (0 until a promotion).
    pub region_epoch: u64,
    /// The region it knows as active (its own name when active).
    pub active_region: String,
    /// The last position applied from the active region (standby); 0 when none.
    pub applied_position: LogPosition,
    /// The last workflow registration applied (the source's `registration` number).
    pub applied_registration: u64,
    /// When the last batch was applied (ms since the Unix epoch).
    pub applied_at: Option<UnixMillis>,
    /// The source's commit time of the last applied checkpoint (ms since the Unix epoch).
    pub applied_recorded_at: Option<UnixMillis>,
    /// The source's latest position as the last applied batch reported it.
    pub source_latest_position: LogPosition,
    /// The last replicated position when this region was promoted; `None`: never promoted.
    pub promoted_at_position: Option<LogPosition>,
    /// Fenced: the unreplicated tail.
    pub tail: Option<TailRange>,
}

/// The side rows a run's creation stored beside its `run_created` checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrigin {
    /// The idempotency key of `create_run_once`.
    pub idempotency_key: Option<String>,
    /// The cron tick of `create_scheduled_run` (ms since the Unix epoch).
    pub schedule_tick: Option<UnixMillis>,
    /// The run's owner in the source region when it was created.
    pub owner: Owner,
}

/// A checkpoint as replication ships it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicatedCheckpoint {
    /// The checkpoint, with its source position, epoch and commit time.
    pub checkpoint: Checkpoint,
    /// Set exactly on `run_created` checkpoints.
    pub origin: Option<RunOrigin>,
}

/// A workflow registration as replication ships it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatedWorkflow {
    /// The source's registration number (orders registrations; a cursor for replication).
    pub registration: u64,
    /// The workflow.
    pub workflow: StoredWorkflow,
}

/// One batch shipped by the active region.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicatedBatch {
    /// The source region.
    pub source_region: String,
    /// Its region epoch.
    pub region_epoch: u64,
    /// Its latest position when it read the batch.
    pub source_latest_position: LogPosition,
    /// Consecutive checkpoints in log order (may be empty).
    pub checkpoints: Vec<ReplicatedCheckpoint>,
    /// Workflow registrations in registration order (may be empty).
    pub workflows: Vec<ReplicatedWorkflow>,
}

/// What replication reads from the source store for one batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicationSlice {
    /// Checkpoints after the asked position, in log order, with their origins.
    pub checkpoints: Vec<ReplicatedCheckpoint>,
    /// Registrations after the asked registration number, in order.
    pub workflows: Vec<ReplicatedWorkflow>,
}

/// A run with checkpoints in a tail (unreplicated, or archived by a rejoin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailRun {
    /// The run.
    pub run_id: RunId,
    /// Its workflow's name.
    pub workflow: String,
    /// Its checkpoints in the tail.
    pub checkpoints: u64,
    /// Whether the run was created in the tail (the active region never heard of it).
    pub created_in_tail: bool,
}

impl TailRun {
    /// `5 checkpoints, created in the tail` (or `1 checkpoint` when the run existed before
    /// the tail): what the tail's report and `tandem dr` say of the run after its id and
    /// workflow.
    pub fn checkpoints_text(&self) -> String {
        format!(
            "{} checkpoint{}{}",
            self.checkpoints,
            if self.checkpoints == 1 { "" } else { "s" },
            if self.created_in_tail {
                ", created in the tail"
            } else {
                ""
            }
        )
    }
}

/// What [`ReplicationStore::tail_report`] tells.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TailReport {
    /// Fenced: the current unreplicated tail and its runs.
    pub tail: Option<TailRange>,
    /// The runs of the current tail.
    pub runs: Vec<TailRun>,
    /// Checkpoints archived in `dr_tail` by earlier rejoins (kept, never deleted).
    pub archived_checkpoints: u64,
}

/// A store that takes part in cross-region replication (see the module docs).
#[async_trait]
pub trait ReplicationStore: CheckpointStore {
    /// The store's region state.
    async fn region_state(&self) -> Result<RegionState, StoreError>;

    /// Names the store's region at first start: when the store has no region yet, records
    /// `region` with `role` (`Active` or `Standby`) and `active_region` (`region` itself
    /// when active). When it has one, changes nothing and returns it.
    ///
    /// Errors: [`StoreError::RegionMismatch`] when the store belongs to another region;
    /// [`StoreError::InvalidAppend`] for `role` `Fenced` or an empty name.
    async fn init_region(
        &self,
        region: &str,
        role: RegionRole,
        active_region: &str,
    ) -> Result<RegionState, StoreError>;

    /// Up to `limit` checkpoints after `after_position` (with their [`RunOrigin`]s) and every
    /// workflow registration after `after_registration`, for shipping.
    async fn read_replication(
        &self,
        after_position: LogPosition,
        after_registration: u64,
        limit: usize,
    ) -> Result<ReplicationSlice, StoreError>;

    /// Applies `batch` on a standby, in one transaction (see the module docs), and returns
    /// the new state. `now` is the apply time recorded as `applied_at`.
    ///
    /// Errors: [`StoreError::NotStandby`] when the store is not a standby of
    /// `batch.source_region`; [`StoreError::StaleRegionEpoch`] when `batch.region_epoch` is
    /// lower than the store's; [`StoreError::ReplicationGap`]; [`StoreError::Corrupt`] for a
    /// checkpoint whose origin is missing or whose event does not fit. Nothing is written on
    /// error.
    async fn apply_replicated(
        &self,
        batch: &ReplicatedBatch,
        now: UnixMillis,
    ) -> Result<RegionState, StoreError>;

    /// Makes a standby active with `region_epoch`: records the applied position as
    /// `promoted_at_position`, and from then on refuses batches and accepts writes.
    ///
    /// Errors: [`StoreError::NotStandby`] when the role is not standby;
    /// [`StoreError::StaleRegionEpoch`] when `region_epoch` is not higher than the store's.
    async fn promote(&self, region_epoch: u64) -> Result<RegionState, StoreError>;

    /// Records that `new_active` is active with `region_epoch`, which forked from this log
    /// after `fork_position`. The role becomes `standby` (active region `new_active`) when the
    /// log has nothing after `fork_position`, else `fenced` with the tail
    /// `[fork_position + 1, latest]`. From its commit on, every fenced write is refused.
    /// Returns the state unchanged when `region_epoch` is not higher than the store's.
    async fn demote(
        &self,
        new_active: &str,
        region_epoch: u64,
        fork_position: LogPosition,
    ) -> Result<RegionState, StoreError>;

    /// Makes a fenced store a standby of its active region: in one transaction, copies the
    /// tail's checkpoints to the archive table `dr_tail`, deletes them and the runs,
    /// idempotency keys and schedule ticks they created, sets the runs they finished back to
    /// running, cuts the log head back to the fork position, and sets the applied position
    /// to it. A standby is returned unchanged.
    ///
    /// Errors: [`StoreError::NotStandby`] when the store is active.
    async fn rejoin(&self) -> Result<RegionState, StoreError>;

    /// The current tail's runs and the size of the archive.
    async fn tail_report(&self) -> Result<TailReport, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_run_counts_its_checkpoints_and_says_where_it_was_created() {
        let mut run = TailRun {
            run_id: RunId::new(),
            workflow: "w".into(),
            checkpoints: 1,
            created_in_tail: false,
        };
        assert_eq!(run.checkpoints_text(), "1 checkpoint");
        run.checkpoints = 5;
        run.created_in_tail = true;
        assert_eq!(run.checkpoints_text(), "5 checkpoints, created in the tail");
    }
}
