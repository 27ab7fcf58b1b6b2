//! The reads, and the decoding of rows into checkpoints and run summaries. Anything stored
//! that does not decode is reported as [`StoreError::Corrupt`] naming the row.

use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, Params, Row, Statement, TransactionBehavior};

use super::Context;
use super::error::{corrupt, sql};
use crate::checkpoint::{Checkpoint, Epoch, LogPosition, RunId};
use crate::store::codec::decode_event;
use crate::store::columns::{pid_from, status_from};
use crate::store::{Owner, RunFilter, RunStatus, RunSummary, StoreError};

/// Checkpoints with their run ids (`c` the checkpoint, `r` its run). A left join, so a
/// checkpoint whose run row is missing is reported rather than skipped.
const SELECT_CHECKPOINTS: &str = "SELECT c.position, c.epoch, r.run_id, c.recorded_at, c.kind, \
     c.payload, c.run_key FROM checkpoints AS c LEFT JOIN runs AS r ON r.run_key = c.run_key";
const RUN_COLUMNS: &str = "run_id, workflow, version, status, created_at, finished_at, \
     owner_epoch, owner_host, owner_pid, owner_start_ticks";

/// See [`crate::store::CheckpointStore::read_run`]. The existence check and the read see the
/// same snapshot.
pub(super) fn read_run(
    context: &Context,
    connection: &mut Connection,
    run_id: RunId,
) -> Result<Vec<Checkpoint>, StoreError> {
    let doing = "reading a run";
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(|error| sql(context, doing, error))?;
    let run_key: Option<i64> = transaction
        .prepare_cached("SELECT run_key FROM runs WHERE run_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([run_id.0.as_bytes()], |row| row.get(0))
                .optional()
        })
        .map_err(|error| sql(context, doing, error))?;
    let Some(run_key) = run_key else {
        return Err(StoreError::RunNotFound {
            run_id,
            location: context.location.clone(),
        });
    };
    let checkpoints = {
        let mut statement = transaction
            .prepare_cached(&format!(
                "{SELECT_CHECKPOINTS} WHERE c.run_key = ?1 ORDER BY c.position"
            ))
            .map_err(|error| sql(context, doing, error))?;
        collect_checkpoints(context, &mut statement, [run_key], doing)?
    };
    transaction
        .finish()
        .map_err(|error| sql(context, doing, error))?;
    Ok(checkpoints)
}

/// See [`crate::store::CheckpointStore::read_log`].
pub(super) fn read_log(
    context: &Context,
    connection: &mut Connection,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<Checkpoint>, StoreError> {
    let doing = "reading the log";
    let Ok(after) = i64::try_from(after) else {
        // Positions are SQLite integers: none is above i64::MAX.
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = connection
        .prepare_cached(&format!(
            "{SELECT_CHECKPOINTS} WHERE c.position > ?1 ORDER BY c.position LIMIT ?2"
        ))
        .map_err(|error| sql(context, doing, error))?;
    collect_checkpoints(context, &mut statement, [after, limit], doing)
}

/// See [`crate::store::CheckpointStore::latest_position`].
pub(super) fn latest_position(
    context: &Context,
    connection: &mut Connection,
) -> Result<LogPosition, StoreError> {
    let position: i64 = connection
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM checkpoints")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(|error| sql(context, "reading the latest position", error))?;
    u64::try_from(position).map_err(|_| {
        corrupt(
            context,
            format!("expected non-negative log positions, found {position}"),
        )
    })
}

/// See [`crate::store::CheckpointStore::run_summary`].
pub(super) fn run_summary(
    context: &Context,
    connection: &mut Connection,
    run_id: RunId,
) -> Result<RunSummary, StoreError> {
    let doing = "reading a run summary";
    let mut statement = connection
        .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"))
        .map_err(|error| sql(context, doing, error))?;
    let mut rows = statement
        .query([run_id.0.as_bytes()])
        .map_err(|error| sql(context, doing, error))?;
    match rows.next().map_err(|error| sql(context, doing, error))? {
        Some(row) => decode_run(context, row),
        None => Err(StoreError::RunNotFound {
            run_id,
            location: context.location.clone(),
        }),
    }
}

/// See [`crate::store::CheckpointStore::list_runs`]: newest (highest run id) first.
pub(super) fn list_runs(
    context: &Context,
    connection: &mut Connection,
    filter: &RunFilter,
) -> Result<Vec<RunSummary>, StoreError> {
    let doing = "listing runs";
    // A negative LIMIT means no limit in SQLite.
    let limit = match filter.limit {
        0 => -1,
        limit => i64::try_from(limit).unwrap_or(i64::MAX),
    };
    // Run ids are stored as their 16 bytes, big-endian: byte order is `RunId` order.
    let before = filter.before.map(|run_id| run_id.0.as_bytes().to_vec());
    let mut statement = connection
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE (?1 IS NULL OR workflow = ?1) AND (?2 IS NULL OR status = ?2)
                AND (?3 IS NULL OR run_id < ?3)
             ORDER BY run_id DESC LIMIT ?4"
        ))
        .map_err(|error| sql(context, doing, error))?;
    let mut rows = statement
        .query(rusqlite::params![
            filter.workflow,
            filter.status.map(RunStatus::as_str),
            before,
            limit
        ])
        .map_err(|error| sql(context, doing, error))?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next().map_err(|error| sql(context, doing, error))? {
        runs.push(decode_run(context, row)?);
    }
    Ok(runs)
}

fn collect_checkpoints<P: Params>(
    context: &Context,
    statement: &mut Statement<'_>,
    params: P,
    doing: &str,
) -> Result<Vec<Checkpoint>, StoreError> {
    let mut rows = statement
        .query(params)
        .map_err(|error| sql(context, doing, error))?;
    let mut checkpoints = Vec::new();
    while let Some(row) = rows.next().map_err(|error| sql(context, doing, error))? {
        checkpoints.push(decode_checkpoint(context, row)?);
    }
    Ok(checkpoints)
}

/// Decodes a row of [`SELECT_CHECKPOINTS`].
fn decode_checkpoint(context: &Context, row: &Row<'_>) -> Result<Checkpoint, StoreError> {
    let position: i64 = column(context, row, 0, "position", "a checkpoint")?;
    let at = format!("the checkpoint at position {position}");
    let epoch: i64 = column(context, row, 1, "epoch", &at)?;
    let run_id: Option<Vec<u8>> = column(context, row, 2, "run_id", &at)?;
    let Some(run_id) = run_id else {
        let run_key: i64 = column(context, row, 6, "run_key", &at)?;
        return Err(corrupt(
            context,
            format!("{at}: expected its run (run_key {run_key}) in table runs, found none"),
        ));
    };
    let recorded_at: i64 = column(context, row, 3, "recorded_at", &at)?;
    let kind: String = column(context, row, 4, "kind", &at)?;
    let payload = row
        .get_ref(5)
        .and_then(|value| Ok(value.as_str()?))
        .map_err(|error| corrupt(context, format!("{at}: column payload: {error}")))?;
    let event = decode_event(&at, &kind, payload).map_err(|detail| corrupt(context, detail))?;
    Ok(Checkpoint {
        position: non_negative(context, position, "position", &at)?,
        epoch: Epoch(non_negative(context, epoch, "epoch", &at)?),
        run_id: decode_run_id(context, &run_id, &at)?,
        recorded_at,
        event,
    })
}

/// Decodes a row of [`RUN_COLUMNS`].
fn decode_run(context: &Context, row: &Row<'_>) -> Result<RunSummary, StoreError> {
    let raw_id: Vec<u8> = column(context, row, 0, "run_id", "a row of table runs")?;
    let run_id = decode_run_id(context, &raw_id, "a row of table runs")?;
    let at = format!("run {run_id} in table runs");
    let status: String = column(context, row, 3, "status", &at)?;
    let status = status_from(&at, &status).map_err(|detail| corrupt(context, detail))?;
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
        owner_epoch: Epoch(non_negative(context, owner_epoch, "owner_epoch", &at)?),
        owner: Owner {
            host: column(context, row, 7, "owner_host", &at)?,
            pid: pid_from(&at, owner_pid).map_err(|detail| corrupt(context, detail))?,
            start_ticks: non_negative(context, owner_start_ticks, "owner_start_ticks", &at)?,
        },
    })
}

/// Column `index` (named `name`) of `row` (described by `at`), or `Corrupt`.
fn column<T: FromSql>(
    context: &Context,
    row: &Row<'_>,
    index: usize,
    name: &str,
    at: &str,
) -> Result<T, StoreError> {
    row.get(index)
        .map_err(|error| corrupt(context, format!("{at}: column {name}: {error}")))
}

fn non_negative(context: &Context, value: i64, name: &str, at: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| {
        corrupt(
            context,
            format!("{at}: expected a non-negative {name}, found {value}"),
        )
    })
}

fn decode_run_id(context: &Context, bytes: &[u8], at: &str) -> Result<RunId, StoreError> {
    uuid::Uuid::from_slice(bytes).map(RunId).map_err(|_| {
        corrupt(
            context,
            format!(
                "{at}: expected a 16-byte run id in column run_id, found {} bytes",
                bytes.len()
            ),
        )
    })
}
