//! The PostgreSQL checkpoint store: a region's shared, durable store (deadpool-postgres over
//! tokio-postgres).
//!
//! - Schema: refinery migrations embedded from `engine/migrations/`, applied at connect under
//!   an advisory lock (several replicas may start at once); a database migrated by a newer
//!   Tandem is refused with [`StoreError::SchemaTooNew`]. Tables: see the migrations.
//! - Durability: an append returns `Ok` after PostgreSQL's `COMMIT` returned, which with the
//!   default `synchronous_commit=on` means the WAL is flushed. Connect warns when the server
//!   runs with `fsync` or `synchronous_commit` off.
//! - Appends: one statement in its own transaction (one round trip, one commit) that checks
//!   fencing, takes positions and inserts the batch; see `write.rs`.
//! - Positions: handed out from the one-row table `log_head` (`UPDATE log_head SET last =
//!   last + n`) after the fencing check, and that row's lock is held until the commit. A
//!   later append waits for the earlier one's commit before it gets its positions, so
//!   positions become visible in order and a reader that has seen position N has seen every
//!   position below N, whatever the number of writers and connections. The cost: appends
//!   commit one at a time, at most about 1 / (commit latency) appends per second (about 600/s
//!   measured with 0.9 ms commits), whatever the pool size and the number of writers;
//!   throughput comes from batching many checkpoints per append. Reads never wait for it.
//! - Fencing by run owner: an append locks the rows of its runs (`FOR KEY SHARE`) and checks
//!   their owner epochs in its transaction; a claim locks the run `FOR UPDATE` and takes the
//!   next value of the store-wide sequence `epochs`, so a claim and an append of one run are
//!   ordered.
//! - Fencing by region leader ([`PostgresStore::fenced`]): the highest leader epoch is column
//!   `leader_epoch` of `log_head`. Each write of a fenced handle raises it with an `UPDATE
//!   log_head ... WHERE leader_epoch <= epoch` in its transaction (appends and creations in
//!   the `UPDATE` that takes their positions; claims after locking the run; registrations
//!   first), so the check holds the head's row lock until the commit, and a write that waited
//!   for that lock while another handle raised the epoch is re-checked against the committed
//!   value (READ COMMITTED re-evaluates an `UPDATE`'s `WHERE` on the new row version) and
//!   refused with [`StoreError::Superseded`]. Unfenced handles leave the column alone.
//! - PostgreSQL going away: every call retries connection failures (and serialization
//!   failures and deadlocks) with exponential backoff, logging a warning per retry, for up to
//!   [`PostgresConfig::retry_for`]; then it fails with [`StoreError::Backend`]. Each write
//!   carries a fresh id recorded in table `batches` in the same transaction, so a write whose
//!   `COMMIT` outcome was lost with the connection is not applied twice: the retry finds the
//!   id and returns the first outcome (which passed the fences when it committed). A retry
//!   that finds no committed id is checked like a first attempt.
//! - Cross-region replication ([`ReplicationStore`]): the region's role and epoch, shipping
//!   and applying the log, promotion, demotion and rejoining; see `replication.rs`. Every
//!   write of a fenced handle is refused with [`StoreError::NotActive`] when the region is not
//!   active, checked in the statement that checks the leader epoch.
//! - Errors name the server as `postgres://user@host:port/db` (never the password).

mod catalog;
mod connect;
mod create;
mod error;
mod fence;
mod migrate;
mod read;
mod replication;
mod retry;
mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_fence;
#[cfg(test)]
mod tests_outage;
#[cfg(test)]
mod tests_replication;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;

use self::create::Once;
use self::fence::FenceEpoch;
use self::retry::with_retry;
use super::columns::{check_idempotency_key, check_scheduled_workflow};
use super::replication::{
    RegionRole, RegionState, ReplicatedBatch, ReplicationSlice, ReplicationStore, TailReport,
};
use super::{
    CheckpointStore, CreateOutcome, LeaderFence, Owner, RunFilter, RunSummary, StoreError,
    StoredWorkflow,
};
use crate::checkpoint::{
    Checkpoint, Epoch, Event, LogPosition, NewCheckpoint, RunId, UnixMillis, now_millis,
};

pub use connect::redact_url;

/// How [`PostgresStore::connect`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq URL (`postgres://user:password@host:5432/db`) or key-value string
    /// (`host=... dbname=...`). TLS is not supported: use a local network or a Unix socket.
    pub url: String,
    /// Connections in the pool (at least 1). Appends commit one at a time (see the module
    /// docs), so more connections help concurrent reads. Default 16.
    pub pool_size: usize,
    /// How long opening one connection may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a call keeps retrying while PostgreSQL is unreachable (connection refused or
    /// lost, server restarting) before it fails with [`StoreError::Backend`]; zero: no retry.
    /// Also bounds waiting for the server at connect. Default 5 minutes.
    pub retry_for: Duration,
    /// Linux `TCP_USER_TIMEOUT`: a connection whose sent data stays unacknowledged this long
    /// (the server's host vanished) counts as lost and is retried. Default 30 s.
    pub tcp_user_timeout: Duration,
    /// `application_name` of the connections, shown in `pg_stat_activity`. Default `tandem`.
    pub application_name: String,
}

impl PostgresConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(5 * 60),
            tcp_user_timeout: Duration::from_secs(30),
            application_name: "tandem".into(),
        }
    }
}

/// What every call needs to name the store in errors and to retry.
#[derive(Debug)]
struct Context {
    /// `postgres://user@host:port/db`, without the password.
    location: String,
    /// See [`PostgresConfig::retry_for`].
    retry_for: Duration,
}

#[derive(Debug)]
struct Inner {
    context: Context,
    pool: Pool,
}

/// The PostgreSQL [`CheckpointStore`]. Cheap to clone: clones share the connection pool.
/// Several processes (engine replicas, tools) may use one database at once.
///
/// A handle from [`PostgresStore::connect`] is unfenced; [`PostgresStore::fenced`] makes one
/// whose writes carry a leader epoch (see the module docs).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// The leader epoch this handle's writes carry; `None`: unfenced.
    fence: Option<LeaderFence>,
}

impl PostgresStore {
    /// Connects to the database of `config.url`, waiting up to `config.retry_for` for the
    /// server to accept connections, and brings its schema to the newest version this build
    /// knows.
    ///
    /// Errors: [`StoreError::Backend`] for a URL that does not parse, a server that stays
    /// unreachable, refused authentication, a missing database, a failed migration;
    /// [`StoreError::SchemaTooNew`] when the database has a migration newer than this build.
    pub async fn connect(config: PostgresConfig) -> Result<PostgresStore, StoreError> {
        let (pool, context) = connect::pool(&config)?;
        let store = PostgresStore {
            inner: Arc::new(Inner { context, pool }),
            fence: None,
        };
        with_retry!(
            store,
            "connecting and migrating the schema",
            |client, _attempt| { migrate::migrate(&store.inner.context, &mut client) }
        )?;
        Ok(store)
    }

    /// A handle to the same store, sharing this one's connection pool, whose every write
    /// carries `fence`'s epoch at the time of the write: checked against the highest leader
    /// epoch the store has seen, and refused with [`StoreError::Superseded`] when lower (see
    /// the module docs). Replaces any fence of this handle.
    pub fn fenced(&self, fence: LeaderFence) -> PostgresStore {
        PostgresStore {
            inner: Arc::clone(&self.inner),
            fence: Some(fence),
        }
    }

    /// The epoch the coming write carries (`None`: unfenced), read once per call so that its
    /// retries carry the same one.
    fn fence_epoch(&self) -> Result<Option<FenceEpoch>, StoreError> {
        FenceEpoch::new(
            &self.inner.context,
            self.fence.as_ref().map(LeaderFence::get),
        )
    }

    /// The pool's counts (size, available connections, waiting callers), for metrics.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.inner.pool.status()
    }

    /// A pooled connection, or a failure to retry.
    async fn client(&self) -> Result<deadpool_postgres::Client, retry::Failure> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|failure| error::pool(&self.inner.context, failure))
    }
}

#[async_trait]
impl CheckpointStore for PostgresStore {
    fn location(&self) -> String {
        self.inner.context.location.clone()
    }

    async fn create_run(
        &self,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<Epoch, StoreError> {
        let context = &self.inner.context;
        let run = create::NewRun::new(context, run_id, owner, &created)?;
        let fence = self.fence_epoch()?;
        let batch_id = uuid::Uuid::now_v7();
        let outcome = with_retry!(self, "creating a run", |client, attempt| {
            create::create_run(
                context,
                &mut client,
                &run,
                Once::Never,
                fence,
                batch_id,
                attempt,
            )
        })?;
        match outcome {
            CreateOutcome::Created(epoch) => Ok(epoch),
            CreateOutcome::Existing(existing) => Err(StoreError::Backend {
                location: self.location(),
                detail: format!(
                    "creating run {run_id} without an idempotency key reported the existing run {existing}"
                ),
            }),
        }
    }

    async fn claim_run(&self, run_id: RunId, owner: &Owner) -> Result<Epoch, StoreError> {
        let context = &self.inner.context;
        let owner = create::OwnerColumns::new(context, owner)?;
        let fence = self.fence_epoch()?;
        with_retry!(self, "claiming a run", |client, _attempt| {
            create::claim_run(context, &mut client, run_id, &owner, fence)
        })
    }

    async fn append(
        &self,
        epoch: Epoch,
        batch: Vec<NewCheckpoint>,
    ) -> Result<LogPosition, StoreError> {
        if batch.is_empty() {
            return self.latest_position().await;
        }
        let context = &self.inner.context;
        let encoded = write::Encoded::new(context, epoch, &batch)?;
        let fence = self.fence_epoch()?;
        let batch_id = uuid::Uuid::now_v7();
        with_retry!(self, "appending checkpoints", |client, attempt| {
            write::append(context, &mut client, &encoded, fence, batch_id, attempt)
        })
    }

    async fn read_run(&self, run_id: RunId) -> Result<Vec<Checkpoint>, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "reading a run", |client, _attempt| {
            read::read_run(context, &client, run_id)
        })
    }

    async fn read_log(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "reading the log", |client, _attempt| {
            read::read_log(context, &client, after, limit)
        })
    }

    async fn latest_position(&self) -> Result<LogPosition, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "reading the latest position", |client, _attempt| {
            read::latest_position(context, &client)
        })
    }

    async fn run_summary(&self, run_id: RunId) -> Result<RunSummary, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "reading a run summary", |client, _attempt| {
            read::run_summary(context, &client, run_id)
        })
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "listing runs", |client, _attempt| {
            read::list_runs(context, &client, filter)
        })
    }

    async fn put_workflow(&self, workflow: &StoredWorkflow) -> Result<bool, StoreError> {
        let context = &self.inner.context;
        let fence = self.fence_epoch()?;
        with_retry!(self, "registering a workflow", |client, _attempt| {
            catalog::put_workflow(context, &mut client, workflow, fence)
        })
    }

    async fn get_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<StoredWorkflow, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "reading a workflow", |client, _attempt| {
            catalog::get_workflow(context, &client, name, version)
        })
    }

    async fn create_run_once(
        &self,
        idempotency_key: &str,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        let context = &self.inner.context;
        check_idempotency_key(&context.location, run_id, idempotency_key)?;
        let run = create::NewRun::new(context, run_id, owner, &created)?;
        let fence = self.fence_epoch()?;
        let batch_id = uuid::Uuid::now_v7();
        with_retry!(self, "creating a run once", |client, attempt| {
            create::create_run(
                context,
                &mut client,
                &run,
                Once::Key(idempotency_key),
                fence,
                batch_id,
                attempt,
            )
        })
    }

    async fn raise_fence(&self) -> Result<u64, StoreError> {
        let Some(fence) = self.fence_epoch()? else {
            return Ok(0);
        };
        let context = &self.inner.context;
        with_retry!(self, "raising the leader epoch", |client, _attempt| {
            fence::raise_fence(context, &client, fence)
        })
    }

    async fn leader_epoch(&self) -> Result<u64, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "reading the leader epoch", |client, _attempt| {
            fence::highest(context, &client, "reading the leader epoch")
        })
    }

    async fn list_workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "listing workflows", |client, _attempt| {
            catalog::list_workflows(context, &client)
        })
    }

    async fn create_scheduled_run(
        &self,
        workflow: &str,
        tick: UnixMillis,
        run_id: RunId,
        owner: &Owner,
        created: Event,
    ) -> Result<CreateOutcome, StoreError> {
        let context = &self.inner.context;
        check_scheduled_workflow(&context.location, run_id, workflow, &created)?;
        let run = create::NewRun::new(context, run_id, owner, &created)?;
        let fence = self.fence_epoch()?;
        let batch_id = uuid::Uuid::now_v7();
        with_retry!(self, "creating a scheduled run", |client, attempt| {
            create::create_run(
                context,
                &mut client,
                &run,
                Once::Tick { workflow, tick },
                fence,
                batch_id,
                attempt,
            )
        })
    }

    async fn last_schedule_tick(&self, workflow: &str) -> Result<Option<UnixMillis>, StoreError> {
        let context = &self.inner.context;
        with_retry!(
            self,
            "reading the last schedule tick",
            |client, _attempt| { catalog::last_schedule_tick(context, &client, workflow) }
        )
    }
}

#[async_trait]
impl ReplicationStore for PostgresStore {
    async fn region_state(&self) -> Result<RegionState, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "reading the region state", |client, _attempt| {
            replication::region_state(context, &client)
        })
    }

    async fn init_region(
        &self,
        region: &str,
        role: RegionRole,
        active_region: &str,
    ) -> Result<RegionState, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "naming the store's region", |client, _attempt| {
            replication::init_region(context, &mut client, region, role, active_region)
        })
    }

    async fn read_replication(
        &self,
        after_position: LogPosition,
        after_registration: u64,
        limit: usize,
    ) -> Result<ReplicationSlice, StoreError> {
        let context = &self.inner.context;
        with_retry!(
            self,
            "reading the log for replication",
            |client, _attempt| {
                replication::read_replication(
                    context,
                    &client,
                    after_position,
                    after_registration,
                    limit,
                )
            }
        )
    }

    async fn apply_replicated(
        &self,
        batch: &ReplicatedBatch,
        now: UnixMillis,
    ) -> Result<RegionState, StoreError> {
        let context = &self.inner.context;
        let prepared = replication::PreparedBatch::new(context, batch)?;
        with_retry!(self, "applying a replicated batch", |client, _attempt| {
            replication::apply_replicated(context, &mut client, &prepared, now)
        })
    }

    async fn promote(&self, region_epoch: u64) -> Result<RegionState, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "promoting the region", |client, attempt| {
            replication::promote(context, &mut client, region_epoch, attempt)
        })
    }

    async fn demote(
        &self,
        new_active: &str,
        region_epoch: u64,
        fork_position: LogPosition,
    ) -> Result<RegionState, StoreError> {
        let context = &self.inner.context;
        with_retry!(self, "demoting the region", |client, _attempt| {
            replication::demote(
                context,
                &mut client,
                new_active,
                region_epoch,
                fork_position,
            )
        })
    }

    async fn rejoin(&self) -> Result<RegionState, StoreError> {
        let context = &self.inner.context;
        let now = now_millis();
        with_retry!(self, "rejoining as a standby", |client, _attempt| {
            replication::rejoin(context, &mut client, now)
        })
    }

    async fn tail_report(&self) -> Result<TailReport, StoreError> {
        let context = &self.inner.context;
        with_retry!(
            self,
            "reporting the unreplicated tail",
            |client, _attempt| { replication::tail_report(context, &mut client) }
        )
    }
}
