//! The reads, and the decoding of rows into checkpoints and run summaries. Anything stored
//! that does not decode is reported as [`StoreError::Corrupt`] naming the row.

use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use super::Context;
use super::error::{corrupt, pg};
use super::retry::Failure;
use super::write::{epoch_from, position_from};
use crate::checkpoint::{Checkpoint, LogPosition, RunId};
use crate::store::codec::decode_event;
use crate::store::columns::{pid_from, status_from};
use crate::store::{Owner, RunFilter, RunStatus, RunSummary, StoreError};

pub(super) const CHECKPOINT_COLUMNS: &str =
    "position, epoch, run_id, recorded_at, kind, payload::text";
const RUN_COLUMNS: &str = "run_id, workflow, version, status, created_at, finished_at, \
     owner_epoch, owner_host, owner_pid, owner_start_ticks";

/// See [`crate::store::CheckpointStore::read_run`]. One statement, so the existence check
/// and the checkpoints come from one snapshot: a run row with no checkpoint joined is damage.
pub(super) async fn read_run(
    context: &Context,
    client: &deadpool_postgres::Client,
    run_id: RunId,
) -> Result<Vec<Checkpoint>, Failure> {
    let doing = "reading a run";
    let statement = client
        .prepare_cached(
            "SELECT c.position, c.epoch, r.run_id, c.recorded_at, c.kind, c.payload::text
             FROM runs AS r LEFT JOIN checkpoints AS c ON c.run_id = r.run_id
             WHERE r.run_id = $1 ORDER BY c.position",
        )
        .await
        .map_err(|error| pg(context, doing, error))?;
    let rows = client
        .query(&statement, &[&run_id.0])
        .await
        .map_err(|error| pg(context, doing, error))?;
    if rows.is_empty() {
        return Err(Failure::Final(StoreError::RunNotFound {
            run_id,
            location: context.location.clone(),
        }));
    }
    let position: Option<i64> = column(context, &rows[0], 0, "position", "a checkpoint")?;
    if position.is_none() {
        return Err(Failure::Final(corrupt(
            context,
            format!(
                "run {run_id} is in table runs but has no checkpoint, not even its run_created"
            ),
        )));
    }
    Ok(rows
        .iter()
        .map(|row| decode_checkpoint(context, row))
        .collect::<Result<_, _>>()?)
}

/// See [`crate::store::CheckpointStore::read_log`].
pub(super) async fn read_log(
    context: &Context,
    client: &deadpool_postgres::Client,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<Checkpoint>, Failure> {
    let doing = "reading the log";
    let Ok(after) = i64::try_from(after) else {
        // Positions are bigints: none is above i64::MAX.
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let statement = client
        .prepare_cached(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints
             WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .await
        .map_err(|error| pg(context, doing, error))?;
    let rows = client
        .query(&statement, &[&after, &limit])
        .await
        .map_err(|error| pg(context, doing, error))?;
    Ok(rows
        .iter()
        .map(|row| decode_checkpoint(context, row))
        .collect::<Result<_, _>>()?)
}

/// See [`crate::store::CheckpointStore::latest_position`]: the head of the log as of the
/// last commit (it moves with the checkpoints, in the same transactions).
pub(super) async fn latest_position(
    context: &Context,
    client: &deadpool_postgres::Client,
) -> Result<LogPosition, Failure> {
    let doing = "reading the latest position";
    let statement = client
        .prepare_cached("SELECT last FROM log_head")
        .await
        .map_err(|error| pg(context, doing, error))?;
    let last: i64 = client
        .query_one(&statement, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|error| pg(context, doing, error))?;
    Ok(position_from(context, last, "the head of the log")?)
}

/// See [`crate::store::CheckpointStore::run_summary`].
pub(super) async fn run_summary(
    context: &Context,
    client: &deadpool_postgres::Client,
    run_id: RunId,
) -> Result<RunSummary, Failure> {
    let doing = "reading a run summary";
    let statement = client
        .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"))
        .await
        .map_err(|error| pg(context, doing, error))?;
    match client
        .query_opt(&statement, &[&run_id.0])
        .await
        .map_err(|error| pg(context, doing, error))?
    {
        Some(row) => Ok(decode_run(context, &row)?),
        None => Err(Failure::Final(StoreError::RunNotFound {
            run_id,
            location: context.location.clone(),
        })),
    }
}

/// See [`crate::store::CheckpointStore::list_runs`]: newest (highest run id) first.
pub(super) async fn list_runs(
    context: &Context,
    client: &deadpool_postgres::Client,
    filter: &RunFilter,
) -> Result<Vec<RunSummary>, Failure> {
    let doing = "listing runs";
    let limit: Option<i64> = match filter.limit {
        0 => None,
        limit => Some(i64::try_from(limit).unwrap_or(i64::MAX)),
    };
    let statement = client
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE ($1::text IS NULL OR workflow = $1) AND ($2::text IS NULL OR status = $2)
                AND ($3::uuid IS NULL OR run_id < $3)
             ORDER BY run_id DESC LIMIT $4"
        ))
        .await
        .map_err(|error| pg(context, doing, error))?;
    let rows = client
        .query(
            &statement,
            &[
                &filter.workflow,
                &filter.status.map(RunStatus::as_str),
                &filter.before.map(|run_id| run_id.0),
                &limit,
            ],
        )
        .await
        .map_err(|error| pg(context, doing, error))?;
    Ok(rows
        .iter()
        .map(|row| decode_run(context, row))
        .collect::<Result<_, _>>()?)
}

/// Decodes a row of [`CHECKPOINT_COLUMNS`].
pub(super) fn decode_checkpoint(context: &Context, row: &Row) -> Result<Checkpoint, StoreError> {
    let position: i64 = column(context, row, 0, "position", "a checkpoint")?;
    let at = format!("the checkpoint at position {position}");
    let epoch: i64 = column(context, row, 1, "epoch", &at)?;
    let run_id: Uuid = column(context, row, 2, "run_id", &at)?;
    let recorded_at: i64 = column(context, row, 3, "recorded_at", &at)?;
    let kind: &str = column(context, row, 4, "kind", &at)?;
    let payload: &str = column(context, row, 5, "payload", &at)?;
    let event = decode_event(&at, kind, payload).map_err(|detail| corrupt(context, detail))?;
    Ok(Checkpoint {
        position: position_from(context, position, &at)?,
        epoch: epoch_from(context, epoch, &at)?,
        run_id: RunId(run_id),
        recorded_at,
        event,
    })
}

/// Decodes a row of [`RUN_COLUMNS`].
fn decode_run(context: &Context, row: &Row) -> Result<RunSummary, StoreError> {
    let run_id = RunId(column(context, row, 0, "run_id", "a row of table runs")?);
    let at = format!("run {run_id} in table runs");
    let status: &str = column(context, row, 3, "status", &at)?;
    let status = status_from(&at, status).map_err(|detail| corrupt(context, detail))?;
    let owner_epoch: i64 = column(context, row, 6, "owner_epoch", &at)?;
    let owner_pid: i64 = column(context, row, 8, "owner_pid", &at)?;
    let owner_start_ticks: i64 = column(context, row, 9, "owner_start_ticks", &at)?;
    Ok(RunSummary {
        run_id,
        workflow: column(context, row, 1, "workflow", &at)?,
        version: column(context, row, 2, "version", &at)?,
        status,
        created_at: column(context, row, 4, "created_at", &at)?,
        finished_at: column(context, row, 5, "finished_at", &at)?,
        owner_epoch: epoch_from(context, owner_epoch, &at)?,
        owner: Owner {
            host: column(context, row, 7, "owner_host", &at)?,
            pid: pid_from(&at, owner_pid).map_err(|detail| corrupt(context, detail))?,
            start_ticks: u64::try_from(owner_start_ticks).map_err(|_| {
                corrupt(
                    context,
                    format!("{at}: expected non-negative start ticks, found {owner_start_ticks}"),
                )
            })?,
        },
    })
}

/// Column `index` (named `name`) of `row` (described by `at`), or `Corrupt`.
pub(super) fn column<'r, T: FromSql<'r>>(
    context: &Context,
    row: &'r Row,
    index: usize,
    name: &str,
    at: &str,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|error| corrupt(context, format!("{at}: column {name}: {error}")))
}
