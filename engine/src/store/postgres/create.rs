//! The ownership transactions: create a run (at most once per idempotency key or schedule
//! tick), claim a run.

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::Context;
use super::error::{invalid, pg};
use super::fence::{self, FenceEpoch};
use super::retry::Failure;
use super::write::{committed_batch, epoch_from};
use crate::checkpoint::{Epoch, Event, RunId, now_millis};
use crate::store::columns::{run_created_fields, start_ticks_column};
use crate::store::{CreateOutcome, Owner, StoreError};

/// An owner as the columns of table `runs`.
#[derive(Debug)]
pub(super) struct OwnerColumns {
    host: String,
    pid: i64,
    start_ticks: i64,
}

impl OwnerColumns {
    /// Errors: [`StoreError::InvalidAppend`] for a start time above `i64::MAX` ticks.
    pub fn new(context: &Context, owner: &Owner) -> Result<OwnerColumns, StoreError> {
        let start_ticks = start_ticks_column(owner).map_err(|detail| invalid(context, detail))?;
        Ok(OwnerColumns {
            host: owner.host.clone(),
            pid: i64::from(owner.pid),
            start_ticks,
        })
    }
}

/// A run to create, checked and encoded before any connection is used.
#[derive(Debug)]
pub(super) struct NewRun {
    run_id: RunId,
    owner: OwnerColumns,
    workflow: String,
    version: String,
    created_at: i64,
    payload: String,
}

impl NewRun {
    /// Checks that `created` is a `run_created` event and encodes it. Errors:
    /// [`StoreError::InvalidAppend`].
    pub fn new(
        context: &Context,
        run_id: RunId,
        owner: &Owner,
        created: &Event,
    ) -> Result<NewRun, StoreError> {
        let (workflow, version, created_at) =
            run_created_fields(run_id, created).map_err(|detail| invalid(context, detail))?;
        let payload = serde_json::to_string(created).map_err(|error| {
            invalid(
                context,
                format!("the `run_created` event of run {run_id} does not serialize: {error}"),
            )
        })?;
        Ok(NewRun {
            run_id,
            owner: OwnerColumns::new(context, owner)?,
            workflow: workflow.to_string(),
            version: version.to_string(),
            created_at,
            payload,
        })
    }
}

/// What makes a creation happen at most once.
#[derive(Debug, Clone, Copy)]
pub(super) enum Once<'a> {
    /// Nothing: `create_run`.
    Never,
    /// An idempotency key (table `idempotency_keys`): `create_run_once`.
    Key(&'a str),
    /// A tick of a workflow's schedule (table `schedule_ticks`): `create_scheduled_run`.
    Tick {
        /// The workflow.
        workflow: &'a str,
        /// The tick, ms since the Unix epoch.
        tick: i64,
    },
}

/// Takes the next position (the head's row lock: creates and appends take turns from here
/// to `COMMIT`) and the next epoch, and inserts the run, its `run_created` checkpoint and the
/// write's id. A fenced creation (`$11` not `NULL`) also checks the region's role and checks
/// and raises the leader epoch in the head's `UPDATE` (see `fence.rs`). Returns the new run's
/// owner epoch (`NULL` when nothing was created) and whether the head was taken (0: a region
/// fence refused).
const CREATE_RUN: &str = "
WITH head AS (
    UPDATE log_head SET last = last + 1, leader_epoch = coalesce($11::bigint, leader_epoch)
    WHERE $11::bigint IS NULL OR (leader_epoch <= $11::bigint AND region_role = 'active')
    RETURNING last
), run AS (
    INSERT INTO runs (run_id, workflow, version, status, created_at, created_position,
        finished_at, owner_epoch, owner_host, owner_pid, owner_start_ticks)
    SELECT $1, $2, $3, 'running', $4, head.last, NULL, nextval('epochs'), $5, $6, $7 FROM head
    ON CONFLICT (run_id) DO NOTHING
    RETURNING created_position, owner_epoch
), batch AS (
    INSERT INTO batches (batch_id, last_position, epoch)
    SELECT $8, created_position, owner_epoch FROM run
), created AS (
    INSERT INTO checkpoints (position, epoch, run_id, recorded_at, kind, payload)
    SELECT created_position, owner_epoch, $1, $9, 'run_created', $10::text::json FROM run
)
SELECT (SELECT owner_epoch FROM run), (SELECT count(*) FROM head)";

/// See [`crate::store::CheckpointStore::create_run`] (`once` [`Once::Never`]),
/// [`crate::store::CheckpointStore::create_run_once`] and
/// [`crate::store::CheckpointStore::create_scheduled_run`]; `fence` is the handle's leader
/// epoch (`None`: unfenced). `batch_id` identifies the write across attempts: a retry
/// (`attempt` > 1) whose first attempt committed returns its outcome.
pub(super) async fn create_run(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    run: &NewRun,
    once: Once<'_>,
    fence: Option<FenceEpoch>,
    batch_id: Uuid,
    attempt: u32,
) -> Result<CreateOutcome, Failure> {
    if attempt > 1
        && let Some((_, epoch)) = committed_batch(context, client, batch_id).await?
    {
        return Ok(CreateOutcome::Created(epoch));
    }
    let doing = "creating a run";
    let failed = |error| pg(context, doing, error);
    let run_id = run.run_id.0;
    let transaction = client.transaction().await.map_err(failed)?;
    // Waits for a concurrent creation with the same key or tick to commit or roll back.
    if let Some(existing) = claim_once(&transaction, once, run_id)
        .await
        .map_err(failed)?
    {
        drop(transaction);
        if attempt > 1
            && existing == run_id
            && let Some((_, epoch)) = committed_batch(context, client, batch_id).await?
        {
            return Ok(CreateOutcome::Created(epoch));
        }
        // Nothing to write, but a superseded leader (or one of a region that is not
        // active) learns it here too.
        fence::check(context, &*client, fence, doing).await?;
        return Ok(CreateOutcome::Existing(RunId(existing)));
    }
    let statement = transaction
        .prepare_cached(CREATE_RUN)
        .await
        .map_err(failed)?;
    let row = transaction
        .query_one(
            &statement,
            &[
                &run_id,
                &run.workflow,
                &run.version,
                &run.created_at,
                &run.owner.host,
                &run.owner.pid,
                &run.owner.start_ticks,
                &batch_id,
                &now_millis(),
                &run.payload,
                &fence::parameter(fence),
            ],
        )
        .await
        .map_err(failed)?;
    let created: Option<i64> = row.try_get(0).map_err(failed)?;
    let took_head: i64 = row.try_get(1).map_err(failed)?;
    let Some(created) = created else {
        drop(transaction);
        // A retry whose first attempt created the run (and was still committing when the
        // retry started) finds it now.
        if attempt > 1
            && let Some((_, epoch)) = committed_batch(context, client, batch_id).await?
        {
            return Ok(CreateOutcome::Created(epoch));
        }
        if took_head == 0
            && let Some(fence) = fence
        {
            return Err(fence::refused(context, &*client, fence, doing).await);
        }
        return Err(Failure::Final(StoreError::RunExists {
            run_id: run.run_id,
            location: context.location.clone(),
        }));
    };
    let epoch = epoch_from(context, created, "the new run's epoch")?;
    transaction.commit().await.map_err(failed)?;
    Ok(CreateOutcome::Created(epoch))
}

/// Records `run_id` under `once`'s key or tick in `transaction`, unless it names a run
/// already: then returns that run (after waiting for a concurrent transaction that recorded
/// the same key or tick to end).
async fn claim_once(
    transaction: &deadpool_postgres::Transaction<'_>,
    once: Once<'_>,
    run_id: Uuid,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let (claim, find) = match once {
        Once::Never => return Ok(None),
        Once::Key(_) => (
            "INSERT INTO idempotency_keys (idempotency_key, run_id) VALUES ($1, $2)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING run_id",
            "SELECT run_id FROM idempotency_keys WHERE idempotency_key = $1",
        ),
        Once::Tick { .. } => (
            "INSERT INTO schedule_ticks (workflow, tick, run_id) VALUES ($1, $2, $3)
             ON CONFLICT (workflow, tick) DO NOTHING RETURNING run_id",
            "SELECT run_id FROM schedule_ticks WHERE workflow = $1 AND tick = $2",
        ),
    };
    // The key or (workflow, tick) parameters, which both statements start with.
    let slot: Vec<&(dyn ToSql + Sync)> = match &once {
        Once::Never => Vec::new(),
        Once::Key(key) => vec![key],
        Once::Tick { workflow, tick } => vec![workflow, tick],
    };
    let mut claim_params = slot.clone();
    claim_params.push(&run_id);
    let claim = transaction.prepare_cached(claim).await?;
    if transaction
        .query_opt(&claim, &claim_params)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let find = transaction.prepare_cached(find).await?;
    let existing: Uuid = transaction
        .query_one(&find, &slot)
        .await
        .and_then(|row| row.try_get(0))?;
    Ok(Some(existing))
}

/// See [`crate::store::CheckpointStore::claim_run`]; `fence` is the handle's leader epoch
/// (`None`: unfenced). The run's row lock orders the claim with appends to the run (which
/// lock it `FOR KEY SHARE`), and is taken before the head's (appends take them in that order
/// too). A retried claim claims again (a newer epoch for the same owner), which is harmless.
pub(super) async fn claim_run(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    run_id: RunId,
    owner: &OwnerColumns,
    fence: Option<FenceEpoch>,
) -> Result<Epoch, Failure> {
    let doing = "claiming a run";
    let failed = |error| pg(context, doing, error);
    let transaction = client.transaction().await.map_err(failed)?;
    let lock = transaction
        .prepare_cached("SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE")
        .await
        .map_err(failed)?;
    if transaction
        .query_opt(&lock, &[&run_id.0])
        .await
        .map_err(failed)?
        .is_none()
    {
        // No row locked: the head's lock may be taken here. A superseded leader (or one of
        // a region that is not active) learns that rather than the run's absence.
        fence::check(context, &transaction, fence, doing).await?;
        return Err(Failure::Final(StoreError::RunNotFound {
            run_id,
            location: context.location.clone(),
        }));
    }
    fence::check(context, &transaction, fence, doing).await?;
    let claim = transaction
        .prepare_cached(
            "UPDATE runs SET owner_epoch = nextval('epochs'), owner_host = $2, owner_pid = $3,
                owner_start_ticks = $4
             WHERE run_id = $1 RETURNING owner_epoch",
        )
        .await
        .map_err(failed)?;
    let epoch: i64 = transaction
        .query_one(
            &claim,
            &[&run_id.0, &owner.host, &owner.pid, &owner.start_ticks],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    transaction.commit().await.map_err(failed)?;
    Ok(epoch_from(context, epoch, "the claimed epoch")?)
}
