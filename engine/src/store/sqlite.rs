//! The embedded checkpoint store: one SQLite file (default `.tandem/tandem.db`), no server.
//!
//! - Durability: WAL journal with `synchronous=FULL`, so every commit is fsync'd before an
//!   append returns `Ok`.
//! - Sharing: several processes may open the same file (two `tandem run` in one directory);
//!   writes take SQLite's write lock up front (`BEGIN IMMEDIATE`) and wait up to the busy
//!   timeout for it, so positions are assigned in commit order without gaps.
//! - Async: every call runs on tokio's blocking pool. A handle has one writer connection and
//!   one reader connection (each behind a mutex); in WAL mode readers see the last commit and
//!   are never blocked by a write in progress.
//! - Fencing by region leader ([`SqliteStore::fenced`]): the highest leader epoch is the
//!   `meta` row `leader_epoch`; each write of a fenced handle reads and raises it inside its
//!   transaction, which holds the database's write lock from its start, so the check is
//!   serialized with every write of every process and connection (see [`crate::store`]).
//! - Damage: a file that is not a SQLite database, a truncated one, or a SQLite database of
//!   another application is refused at open with [`StoreError::Corrupt`]; a store written by a
//!   newer Tandem with [`StoreError::SchemaTooNew`]. Damage found later (a malformed page, a
//!   payload that does not decode) gives [`StoreError::Corrupt`] naming what was found where.
//!
//! Layout of the file: see [`schema`] (tables `meta`, `runs`, `checkpoints`, `workflows`,
//! `idempotency_keys`, `schedule_ticks`, migrations).

mod catalog;
mod create;
mod error;
mod fence;
mod preflight;
mod read;
pub mod schema;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_crash;
#[cfg(test)]
mod tests_damage;
#[cfg(test)]
mod tests_fence;
#[cfg(test)]
mod tests_migrate;
#[cfg(test)]
mod tests_suite_faults;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use self::create::Once;
use super::columns::{check_idempotency_key, check_scheduled_workflow};
use super::{
    CheckpointStore, CreateOutcome, LeaderFence, Owner, RunFilter, RunSummary, StoreError,
    StoredWorkflow,
};
use crate::checkpoint::{Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunId, UnixMillis};

/// How [`SqliteStore::open_with`] opens a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Create the file (and its parent directories) when it does not exist. When `false`, a
    /// missing file is refused with [`StoreError::Backend`] (`no state store at PATH: ...`).
    pub create: bool,
    /// How long a write waits for another connection or process to release SQLite's write
    /// lock before it fails with [`StoreError::Backend`]. Default: 10 s.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            create: true,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// What every blocking job needs to name the store in errors.
#[derive(Debug)]
struct Context {
    /// The file path as given, for messages and [`CheckpointStore::location`].
    location: String,
    /// The file path.
    path: PathBuf,
    /// The busy timeout, quoted in lock errors.
    busy_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    context: Context,
    /// Used by every write (one write at a time per handle and its clones and fenced handles).
    writer: Mutex<Connection>,
    /// Used by every read, so reads do not wait behind a long write of this handle.
    reader: Mutex<Connection>,
}

/// The embedded, single-file [`CheckpointStore`]. Cheap to clone: clones share the same
/// connections. Open one handle per process; several processes may share the file.
///
/// A handle from [`SqliteStore::open`] is unfenced; [`SqliteStore::fenced`] makes one whose
/// writes carry a leader epoch (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// The leader epoch this handle's writes carry; `None`: unfenced.
    fence: Option<LeaderFence>,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and its parent directories when missing
    /// (an existing zero-length file is also initialized as an empty store).
    ///
    /// Blocking (file I/O, and possibly waiting up to the busy timeout for another process
    /// that is migrating the same file): call it before entering async code or through
    /// `tokio::task::spawn_blocking`.
    ///
    /// Errors: [`StoreError::Corrupt`] when the file is not a Tandem store (not a SQLite
    /// database, truncated, another application's database), [`StoreError::SchemaTooNew`],
    /// [`StoreError::Backend`] for I/O errors and a write lock held longer than the busy
    /// timeout.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Opens the store at `path`, which must exist (for read-only commands like
    /// `tandem show`): a missing file gives [`StoreError::Backend`] `no state store at PATH:
    /// ...`. Blocking and other errors as [`SqliteStore::open`].
    pub fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteOptions {
            create: false,
            ..SqliteOptions::default()
        };
        SqliteStore::open_with(path, options)
    }

    /// Opens the store at `path` with `options`; blocking and errors as [`SqliteStore::open`].
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let context = Context {
            location: path.display().to_string(),
            path: path.to_path_buf(),
            busy_timeout: options.busy_timeout,
        };
        preflight::check_file(&context, options.create)?;
        let base_flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer_flags = if options.create {
            base_flags | OpenFlags::SQLITE_OPEN_CREATE
        } else {
            base_flags
        };
        let mut writer = open_connection(&context, writer_flags)?;
        schema::migrate(&context, &mut writer)?;
        let reader = open_connection(&context, base_flags)?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(|error| error::sql(&context, "configuring the read connection", error))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                context,
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
            fence: None,
        })
    }

    /// A handle to the same store, sharing this one's connections, whose every write carries
    /// `fence`'s epoch at the time of the write: checked against the highest leader epoch the
    /// store has seen, and refused with [`StoreError::Superseded`] when lower (see the module
    /// docs). Replaces any fence of this handle.
    pub fn fenced(&self, fence: LeaderFence) -> SqliteStore {
        SqliteStore {
            inner: Arc::clone(&self.inner),
            fence: Some(fence),
        }
    }

    /// The leader epoch the coming write carries (`None`: unfenced).
    fn leader_epoch_now(&self) -> Option<u64> {
        self.fence.as_ref().map(LeaderFence::get)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.context.path
    }

    /// Runs `job` on the writer connection on tokio's blocking pool.
    async fn with_writer<T, F>(&self, what: &'static str, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Context, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_connection(what, |inner| &inner.writer, job).await
    }

    /// Runs `job` on the reader connection on tokio's blocking pool.
    async fn with_reader<T, F>(&self, what: &'static str, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Context, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_connection(what, |inner| &inner.reader, job).await
    }

    /// Runs `job` on tokio's blocking pool with the connection `pick` chooses, locked.
    async fn with_connection<T, F>(
        &self,
        what: &'static str,
        pick: fn(&Inner) -> &Mutex<Connection>,
        job: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Context, &mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let location = inner.context.location.clone();
        tokio::task::spawn_blocking(move || {
            // A job that panicked while holding the lock dropped its transaction, which rolled
            // back: the connection is usable.
            let mut connection = pick(&inner).lock().unwrap_or_else(PoisonError::into_inner);
            job(&inner.context, &mut connection)
        })
        .await
        .map_err(|error| worker_failed(location, what, error))?
    }
}

fn worker_failed(location: String, what: &str, error: tokio::task::JoinError) -> StoreError {
    StoreError::Backend {
        location,
        detail: format!("{what} failed in its worker thread: {error}"),
    }
}

/// Size in bytes the WAL file is truncated to after a checkpoint (SQLite `journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Opens one connection and sets what every connection needs: busy timeout, WAL,
/// `synchronous=FULL`, foreign keys.
fn open_connection(context: &Context, flags: OpenFlags) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(&context.path, flags)
        .map_err(|error| error::sql(context, "opening the database file", error))?;
    connection
        .busy_timeout(context.busy_timeout)
        .map_err(|error| error::sql(context, "setting the busy timeout", error))?;
    let mode = switch_to_wal(context, &connection)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend {
            location: context.location.clone(),
            detail: format!(
                "expected SQLite to use the WAL journal, found journal mode `{mode}` (is the file on a file system without shared memory support?)"
            ),
        });
    }
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(|error| error::sql(context, "setting synchronous=FULL", error))?;
    connection
        .pragma_update(None, "foreign_keys", true)
        .map_err(|error| error::sql(context, "enabling foreign keys", error))?;
    // A huge batch grows the WAL; once checkpointed, shrink it back to at most this size.
    connection
        .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(|error| error::sql(context, "setting the WAL size limit", error))?;
    Ok(connection)
}

/// Sets the WAL journal and returns the journal mode SQLite reports. Switching a new file
/// to WAL needs an exclusive lock, and when several connections try at once SQLite answers
/// `SQLITE_BUSY` to some of them *without* waiting (deadlock avoidance), so this retries
/// until the busy timeout has passed.
fn switch_to_wal(context: &Context, connection: &Connection) -> Result<String, StoreError> {
    let deadline = Instant::now() + context.busy_timeout;
    loop {
        match connection.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)) {
            Ok(mode) => return Ok(mode),
            Err(error)
                if matches!(
                    error.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => {
                return Err(error::sql(context, "switching to the WAL journal", error));
            }
        }
    }
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    fn location(&self) -> String {
        self.inner.context.location.clone()
    }

    async fn create_run(
        &self,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<Epoch, StoreError> {
        let owner = owner.clone();
        let leader_epoch = self.leader_epoch_now();
        self.with_writer("creating a run", move |context, connection| {
            let run = create::NewRun::new(context, run_id, &owner, &created)?;
            create::create_run(context, connection, &run, leader_epoch)
        })
        .await
    }

    async fn claim_run(&self, run_id: RunId, owner: &Owner) -> Result<Epoch, StoreError> {
        let owner = owner.clone();
        let leader_epoch = self.leader_epoch_now();
        self.with_writer("claiming a run", move |context, connection| {
            create::claim_run(context, connection, run_id, &owner, leader_epoch)
        })
        .await
    }

    async fn append(
        &self,
        epoch: Epoch,
        batch: Vec<NewCheckpoint>,
    ) -> Result<LogPosition, StoreError> {
        if batch.is_empty() {
            return self.latest_position().await;
        }
        let leader_epoch = self.leader_epoch_now();
        self.with_writer("appending checkpoints", move |context, connection| {
            write::append(context, connection, epoch, &batch, leader_epoch)
        })
        .await
    }

    async fn read_run(&self, run_id: RunId) -> Result<Vec<Checkpoint>, StoreError> {
        self.with_reader("reading a run", move |context, connection| {
            read::read_run(context, connection, run_id)
        })
        .await
    }

    async fn read_log(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        self.with_reader("reading the log", move |context, connection| {
            read::read_log(context, connection, after, limit)
        })
        .await
    }

    async fn latest_position(&self) -> Result<LogPosition, StoreError> {
        self.with_reader("reading the latest position", |context, connection| {
            read::latest_position(context, connection)
        })
        .await
    }

    async fn run_summary(&self, run_id: RunId) -> Result<RunSummary, StoreError> {
        self.with_reader("reading a run summary", move |context, connection| {
            read::run_summary(context, connection, run_id)
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let filter = filter.clone();
        self.with_reader("listing runs", move |context, connection| {
            read::list_runs(context, connection, &filter)
        })
        .await
    }

    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<bool, StoreError> {
        let workflow = workflow.clone();
        let leader_epoch = self.leader_epoch_now();
        self.with_writer("registering a workflow", move |context, connection| {
            catalog::put_workflow(context, connection, &workflow, leader_epoch)
        })
        .await
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<StoredWorkflow, StoreError> {
        let name = name.to_string();
        let version = version.map(str::to_string);
        self.with_reader("reading a workflow", move |context, connection| {
            catalog::get_workflow(context, connection, &name, version.as_deref())
        })
        .await
    }

    async fn create_run_once(
        &self,
        idempotency_key: &str,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        check_idempotency_key(&self.inner.context.location, run_id, idempotency_key)?;
        let key = idempotency_key.to_string();
        let owner = owner.clone();
        let leader_epoch = self.leader_epoch_now();
        self.with_writer("creating a run once", move |context, connection| {
            let run = create::NewRun::new(context, run_id, &owner, &created)?;
            create::create_run_once(context, connection, Once::Key(&key), &run, leader_epoch)
        })
        .await
    }

    async fn raise_fence(&self) -> Result<u64, StoreError> {
        let Some(leader_epoch) = self.leader_epoch_now() else {
            return Ok(0);
        };
        self.with_writer("raising the leader epoch", move |context, connection| {
            fence::raise_fence(context, connection, leader_epoch)
        })
        .await
    }

    async fn leader_epoch(&self) -> Result<u64, StoreError> {
        self.with_reader("reading the leader epoch", |context, connection| {
            fence::highest(context, connection)
        })
        .await
    }

    async fn list_workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        self.with_reader("listing workflows", |context, connection| {
            catalog::list_workflows(context, connection)
        })
        .await
    }

    async fn create_scheduled_run(
        &self,
        workflow: &str,
        tick: UnixMillis,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        check_scheduled_workflow(&self.inner.context.location, run_id, workflow, &created)?;
        let workflow = workflow.to_string();
        let owner = owner.clone();
        let leader_epoch = self.leader_epoch_now();
        self.with_writer("creating a scheduled run", move |context, connection| {
            let run = create::NewRun::new(context, run_id, &owner, &created)?;
            let once = Once::Tick {
                workflow: &workflow,
                tick,
            };
            create::create_run_once(context, connection, once, &run, leader_epoch)
        })
        .await
    }

    async fn last_schedule_tick(&self, workflow: &str) -> Result<Option<UnixMillis>, StoreError> {
        let workflow = workflow.to_string();
        self.with_reader(
            "reading the last schedule tick",
            move |context, connection| catalog::last_schedule_tick(context, connection, &workflow),
        )
        .await
    }
}
