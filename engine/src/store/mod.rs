//! Checkpoint stores: the one interface every backend implements, and its shared test suite.
//!
//! A store keeps the region's checkpoint log (positions from 1, no gaps), one row per run (a
//! projection of the log for listing), the fencing state, the workflows registered with a
//! region, the idempotency keys of run creations and the runs started by cron schedules.
//!
//! # Fencing
//!
//! Two fences, checked in the transaction of the write they guard:
//!
//! - **Run owners.** Every run has an *owner epoch*; an append carrying a lower epoch for that
//!   run is refused with [`StoreError::Fenced`]. Owner epochs are allocated by the store
//!   (`create_run`, `claim_run`) and grow across all runs.
//! - **Region leader.** The store records the highest *leader epoch* it has seen (the creation
//!   revision of the region's etcd leader key; 0 = none yet). A handle made with a
//!   [`LeaderFence`] (`PostgresStore::fenced`, `SqliteStore::fenced`) carries the fence's
//!   current epoch on every write (`create_run`, `create_run_once`, `create_scheduled_run`,
//!   `claim_run`, `append`, `put_workflow`, `raise_fence`): in the write's own transaction the
//!   store checks `epoch >= highest` and raises the highest to `epoch`; otherwise the write
//!   changes nothing and fails with [`StoreError::Superseded`], and the caller (an ex-leader,
//!   paused or partitioned while another replica took over) must stop writing. The check is
//!   serialized with every other fenced write (PostgreSQL: the row lock of `log_head`; SQLite:
//!   the database write lock), so once a new leader's [`CheckpointStore::raise_fence`] has
//!   returned, no write of an older leader commits, including one that was already waiting for
//!   the lock. A handle made without a fence (`tandem run`, tools, tests) skips this check.
//!   When a write is refused by both fences, `Superseded` is reported.

mod codec;
mod columns;
mod fence;
pub mod postgres;
pub mod replication;
pub mod sqlite;
pub mod suite;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunEnd, RunId, UnixMillis,
};

pub use fence::LeaderFence;

/// Who owns (writes) a run: a process on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// reused pid is not mistaken for the owner.
    pub start_ticks: u64,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

/// State of a run as the store's run table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Not finished (it may be running, or its process may have died: see `tandem resume`).
    Running,
    /// Finished without a failed task.
    Succeeded,
    /// Finished with at least one failed task.
    Failed,
    /// Cancelled on request.
    Cancelled,
    /// Stopped at its deadline.
    TimedOut,
}

impl RunStatus {
    /// The snake_case spelling (`running`, `succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::TimedOut => "timed_out",
        }
    }

    /// Parses the snake_case spelling.
    pub fn parse(text: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::TimedOut,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// Whether the run has finished.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

impl From<RunEnd> for RunStatus {
    fn from(end: RunEnd) -> Self {
        match end {
            RunEnd::Succeeded => RunStatus::Succeeded,
            RunEnd::Failed => RunStatus::Failed,
            RunEnd::Cancelled => RunStatus::Cancelled,
            RunEnd::TimedOut => RunStatus::TimedOut,
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the run table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run.
    pub run_id: RunId,
    /// Workflow name.
    pub workflow: String,
    /// Workflow version (hex SHA-256 of the file text).
    pub version: String,
    /// Current state.
    pub status: RunStatus,
    /// When the run was created (ms since the Unix epoch).
    pub created_at: UnixMillis,
    /// When it finished, if it has.
    pub finished_at: Option<UnixMillis>,
    /// The epoch of its current owner.
    pub owner_epoch: Epoch,
    /// Its current owner.
    pub owner: Owner,
}

/// Which runs [`CheckpointStore::list_runs`] returns: newest first, that is in descending
/// run id order (run ids are UUIDv7, ordered by creation time).
///
/// To page through runs, pass the last run id of a page as `before` of the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of this workflow name.
    pub workflow: Option<String>,
    /// Only runs in this state.
    pub status: Option<RunStatus>,
    /// At most this many runs (0 means no limit).
    pub limit: usize,
    /// Only runs whose id sorts before this one (created before it).
    pub before: Option<RunId>,
}

/// A workflow registered with a region: its DAG file text under (name, version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWorkflow {
    /// Workflow name (the file's `name:`).
    pub name: String,
    /// Workflow version (hex SHA-256 of the file text).
    pub version: String,
    /// The DAG file's text.
    pub source: String,
    /// The file's name as given at registration, for messages (`nightly.yaml`).
    pub file_name: String,
    /// When it was registered (ms since the Unix epoch).
    pub registered_at: UnixMillis,
}

/// What [`CheckpointStore::create_run_once`] and [`CheckpointStore::create_scheduled_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The key (or schedule tick) was unused: the run was created with this owner epoch.
    Created(Epoch),
    /// The key (or schedule tick) was used before: it names this run, and nothing was created.
    Existing(RunId),
}

/// Errors of a [`CheckpointStore`]. `location` names the store (a file path, a database URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The write carries an epoch older than the run's owner epoch: another process owns the
    /// run now. The caller must stop writing to it.
    #[error(
        "write to run {run_id} refused: epoch {epoch} is older than the run's owner epoch {owner_epoch} (another process took the run over)"
    )]
    Fenced {
        /// The run.
        run_id: RunId,
        /// The epoch the write carried.
        epoch: Epoch,
        /// The run's owner epoch in the store.
        owner_epoch: Epoch,
    },
    /// The write carries a leader epoch older than the newest the store has seen (region
    /// fencing, see the module docs): another replica leads the region now. Nothing was
    /// written; the caller must stop writing and step down.
    #[error(
        "write refused: leader epoch {epoch} is older than leader epoch {highest}, the newest this store ({location}) has seen: another replica leads the region now"
    )]
    Superseded {
        /// The leader epoch the write carried.
        epoch: u64,
        /// The highest leader epoch the store has seen.
        highest: u64,
        /// The store.
        location: String,
    },
    /// No run with this id.
    #[error("run {run_id} not found in {location}")]
    RunNotFound {
        /// The run id asked for.
        run_id: RunId,
        /// The store.
        location: String,
    },
    /// A run with this id exists already.
    #[error("run {run_id} already exists in {location}")]
    RunExists {
        /// The run id.
        run_id: RunId,
        /// The store.
        location: String,
    },
    /// The store's content cannot be read: not a Tandem store, a damaged file, a record that
    /// does not decode. Nothing is written to a damaged store.
    #[error("state store {location} is damaged: {detail}")]
    Corrupt {
        /// The store.
        location: String,
        /// What was expected and what was found.
        detail: String,
    },
    /// No workflow registered under this name (and version, when one was asked for).
    #[error("{}", workflow_not_found(name, version.as_deref()))]
    WorkflowNotFound {
        /// The workflow name asked for.
        name: String,
        /// The version asked for; `None` when the latest was asked for.
        version: Option<String>,
    },
    /// The store was written by a newer Tandem with a schema this build does not know.
    #[error(
        "state store {location} has schema version {found}, newer than the {supported} this build of Tandem knows: upgrade Tandem"
    )]
    SchemaTooNew {
        /// The store.
        location: String,
        /// The store's schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// The append was malformed (the caller's bug or bad input), e.g. a checkpoint for a run
    /// that does not exist. Nothing was written.
    #[error("invalid append to {location}: {detail}")]
    InvalidAppend {
        /// The store.
        location: String,
        /// What was wrong.
        detail: String,
    },
    /// The write was refused because this store's region is not active (it is a standby
    /// applying another region's log, or a fenced ex-active region): starting runs and
    /// writing checkpoints happen in the active region only. Nothing was written.
    #[error(
        "write refused: region {region} is {role}, not active (the active region is {active_region}); store {location}"
    )]
    NotActive {
        /// This store's region.
        region: String,
        /// Its role (`Standby` or `Fenced`).
        role: replication::RegionRole,
        /// The region it knows as active.
        active_region: String,
        /// The store.
        location: String,
    },
    /// A replication call needs a standby store (or, for `apply`, a standby of the batch's
    /// source region) and found another role. Boxed: the refusal's six texts would make every
    /// `Result<_, StoreError>` large.
    #[error("{0}")]
    NotStandby(Box<RoleRefusal>),
    /// A replicated batch does not continue the applied log: its first new position is not
    /// the applied position + 1, or its positions are not consecutive. Nothing was written.
    #[error(
        "replication gap in {location}: expected position {expected}, found {found} (batch from region {source_region})"
    )]
    ReplicationGap {
        /// The position expected next.
        expected: u64,
        /// The position found.
        found: u64,
        /// The batch's source region.
        source_region: String,
        /// The store.
        location: String,
    },
    /// A region epoch lower than (or, for promotion, not higher than) the store's.
    #[error(
        "{action} refused: region epoch {given} is not {expected} region epoch {current} of store {location}"
    )]
    StaleRegionEpoch {
        /// What was asked.
        action: String,
        /// The epoch given.
        given: u64,
        /// `at least` or `higher than`.
        expected: String,
        /// The store's region epoch.
        current: u64,
        /// The store.
        location: String,
    },
    /// The store belongs to another region than the one configured.
    #[error(
        "store {location} belongs to region {found}, but this process is configured for region {expected}"
    )]
    RegionMismatch {
        /// The configured region.
        expected: String,
        /// The store's region.
        found: String,
        /// The store.
        location: String,
    },
    /// Any other failure of the backend (I/O error, database locked for too long, ...).
    #[error("state store {location}: {detail}")]
    Backend {
        /// The store.
        location: String,
        /// The backend's error.
        detail: String,
    },
}

/// What [`StoreError::NotStandby`] says: a DR call refused by a store in the wrong role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{action} refused: region {region} of store {location} is {role} (active region {active_region}), expected {expected}"
)]
pub struct RoleRefusal {
    /// What was asked (`applying a batch from eu-west`, `promotion`, `rejoin`).
    pub action: String,
    /// This store's region.
    pub region: String,
    /// Its role.
    pub role: String,
    /// The region it knows as active.
    pub active_region: String,
    /// What the call needs.
    pub expected: String,
    /// The store.
    pub location: String,
}

impl StoreError {
    /// Whether this refusal ends the writer's leadership: [`StoreError::Superseded`] (another
    /// replica leads the region) or [`StoreError::NotActive`] (the region is not active any
    /// more). Every path of a leader that meets one stops leading
    /// (`service::replica`'s `superseded`).
    pub fn ends_leadership(&self) -> bool {
        matches!(
            self,
            StoreError::Superseded { .. } | StoreError::NotActive { .. }
        )
    }
}

/// The detail of the [`StoreError::InvalidAppend`] for a (name, version) registered before
/// with another text.
pub(crate) fn workflow_text_conflict(workflow: &StoredWorkflow) -> String {
    format!(
        "workflow `{}` version {} is registered already with a text other than the one given (from {}): a version names one text (the SHA-256 of the file)",
        workflow.name, workflow.version, workflow.file_name
    )
}

fn workflow_not_found(name: &str, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("workflow `{name}` version {version} is not registered"),
        None => format!("no version of workflow `{name}` is registered"),
    }
}

/// The durable home of checkpoints. Implementations: [`sqlite::SqliteStore`] (embedded, one
/// file) and [`postgres::PostgresStore`] (a region's shared store). Every implementation must
/// pass [`suite`].
///
/// Guarantees every implementation gives:
/// - an append is atomic and durable when it returns `Ok` (fsync'd);
/// - positions are assigned at commit, from 1, strictly increasing and without gaps, so a
///   reader that has seen position N has seen every position below N;
/// - an append carrying an epoch lower than the owner epoch of any run it touches is refused
///   whole with [`StoreError::Fenced`];
/// - a handle made with a [`LeaderFence`] has each write (every method below that changes
///   the store) checked against the highest leader epoch in the write's transaction and
///   refused with [`StoreError::Superseded`] when its epoch is lower (see the module docs);
///   a handle made without one skips that check;
/// - bad input never corrupts stored data: a refused write writes nothing.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Where the store lives (a file path, a database URL), for messages.
    fn location(&self) -> String;

    /// Creates run `run_id` with `owner`: allocates a fresh epoch (greater than every epoch
    /// allocated before), makes it the run's owner epoch, and appends `created` (which must be
    /// an [`Event::RunCreated`]) as the run's first checkpoint, in one transaction.
    ///
    /// Returns the owner epoch. Errors: [`StoreError::RunExists`], [`StoreError::InvalidAppend`]
    /// when `created` is not a `RunCreated` event, [`StoreError::Superseded`].
    async fn create_run(
        &self,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<Epoch, StoreError>;

    /// Takes over run `run_id` for `owner`: allocates a fresh epoch and makes it the run's owner
    /// epoch, so every later append by a previous owner is refused.
    ///
    /// Returns the new epoch. Errors: [`StoreError::RunNotFound`], [`StoreError::Superseded`].
    async fn claim_run(&self, run_id: RunId, owner: &Owner) -> Result<Epoch, StoreError>;

    /// Appends `batch` atomically (one commit), all checkpoints carrying `epoch`, and returns
    /// the position of the last one (or the latest position for an empty batch).
    ///
    /// Updates the run table from the events it carries ([`Event::RunFinished`] sets the run's
    /// status). Errors: [`StoreError::Fenced`], [`StoreError::InvalidAppend`] (unknown run, a
    /// second `RunCreated`), [`StoreError::Superseded`]; nothing is written then. An empty
    /// batch writes nothing and is not checked against the leader fence.
    async fn append(
        &self,
        epoch: Epoch,
        batch: Vec<NewCheckpoint>,
    ) -> Result<LogPosition, StoreError>;

    /// Every checkpoint of run `run_id`, in log order. Errors: [`StoreError::RunNotFound`].
    async fn read_run(&self, run_id: RunId) -> Result<Vec<Checkpoint>, StoreError>;

    /// Up to `limit` checkpoints with position greater than `after`, in log order (what
    /// replication ships).
    async fn read_log(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError>;

    /// The highest committed position (0 for an empty log).
    async fn latest_position(&self) -> Result<LogPosition, StoreError>;

    /// The run table row of `run_id`. Errors: [`StoreError::RunNotFound`].
    async fn run_summary(&self, run_id: RunId) -> Result<RunSummary, StoreError>;

    /// Runs matching `filter`, newest first (descending run id).
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError>;

    /// Registers `workflow` under (name, version). Returns `true` when it was stored now,
    /// `false` when that version was registered before with the same text (then nothing
    /// changes, including its registration time and order).
    ///
    /// Errors: [`StoreError::InvalidAppend`] when that (name, version) is registered with a
    /// different text (a version is the hash of the text, so the caller computed it wrong),
    /// [`StoreError::Superseded`] (also when the version was registered before).
    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<bool, StoreError>;

    /// The workflow registered as (`name`, `version`), or with `version` `None` the version of
    /// `name` registered last. Errors: [`StoreError::WorkflowNotFound`].
    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<StoredWorkflow, StoreError>;

    /// Creates a run at most once per `idempotency_key`, atomically: when the key is unused,
    /// does what [`CheckpointStore::create_run`] does and remembers the key for `run_id` in the
    /// same transaction ([`CreateOutcome::Created`]); when the key names a run already, creates
    /// nothing and returns that run ([`CreateOutcome::Existing`]), whatever `run_id`, `owner`
    /// and `created` say. Concurrent calls with one key create one run.
    ///
    /// Errors: those of `create_run`, and [`StoreError::InvalidAppend`] for an empty key. A
    /// fenced handle whose epoch is superseded gets [`StoreError::Superseded`] whether or not
    /// the key was used.
    async fn create_run_once(
        &self,
        idempotency_key: &str,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError>;

    /// Records this handle's leader epoch as the highest the store has seen, refusing it when
    /// the store has seen a higher one. A new leader calls it before its first write, so that
    /// from its return on every write of an older leader is refused.
    ///
    /// Returns the highest leader epoch (this handle's); `Ok(0)` without touching the store
    /// for a handle made without a [`LeaderFence`]. Errors: [`StoreError::Superseded`].
    async fn raise_fence(&self) -> Result<u64, StoreError>;

    /// The highest leader epoch the store has seen (0 when no fenced handle ever wrote).
    async fn leader_epoch(&self) -> Result<u64, StoreError>;

    /// The latest registered version (as [`CheckpointStore::get_workflow`] with no version
    /// gives it) of every workflow name, ordered by name (byte order); empty when none is
    /// registered.
    async fn list_workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError>;

    /// Starts the run of `workflow`'s cron schedule for `tick` (the tick's time, ms since the
    /// Unix epoch) at most once, atomically: when no run was created for (`workflow`, `tick`),
    /// does what [`CheckpointStore::create_run`] does and records the tick for `run_id` in the
    /// same transaction ([`CreateOutcome::Created`]); otherwise creates nothing and returns
    /// that tick's run ([`CreateOutcome::Existing`]), whatever `run_id`, `owner` and `created`
    /// say. Concurrent calls for one tick create one run.
    ///
    /// Errors: those of `create_run`; [`StoreError::InvalidAppend`] when `created` is a run of
    /// another workflow than `workflow`; [`StoreError::Superseded`] (also when the tick's run
    /// exists).
    async fn create_scheduled_run(
        &self,
        workflow: &str,
        tick: UnixMillis,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError>;

    /// The latest tick of `workflow`'s schedule that has a run (the highest `tick` given to a
    /// successful [`CheckpointStore::create_scheduled_run`]), or `None` when none has.
    async fn last_schedule_tick(&self, workflow: &str) -> Result<Option<UnixMillis>, StoreError>;
}
