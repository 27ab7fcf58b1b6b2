//! The append transaction, and the helpers every write transaction shares. Each write takes
//! SQLite's write lock first (`BEGIN IMMEDIATE`, waiting up to the busy timeout), checks
//! everything, writes, and commits; any error drops the transaction, which rolls it back.

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{
    Connection, OptionalExtension, Statement, Transaction, TransactionBehavior, params,
};

use super::Context;
use super::error::{corrupt, sql};
use super::fence;
use crate::checkpoint::{Epoch, Event, LogPosition, NewCheckpoint, RunId, now_millis};
use crate::store::columns::{epoch_column, start_ticks_column};
use crate::store::{Owner, RunStatus, StoreError};

/// See [`crate::store::CheckpointStore::append`]; `batch` is not empty; `leader_epoch` is
/// the handle's (`None`: unfenced), checked first in the transaction.
pub(super) fn append(
    context: &Context,
    connection: &mut Connection,
    epoch: Epoch,
    batch: &[NewCheckpoint],
    leader_epoch: Option<u64>,
) -> Result<LogPosition, StoreError> {
    let epoch_value = epoch_column(epoch).map_err(|detail| invalid(context, detail))?;
    if let Some((index, checkpoint)) = batch
        .iter()
        .enumerate()
        .find(|(_, checkpoint)| matches!(checkpoint.event, Event::RunCreated { .. }))
    {
        return Err(invalid(
            context,
            format!(
                "checkpoint {} of {} (run {}) is a `run_created` event: runs are created with create_run, not appended",
                index + 1,
                batch.len(),
                checkpoint.run_id
            ),
        ));
    }
    // Encoded before the write lock is taken, so the lock is held only for the inserts.
    let payloads = Payloads::encode(context, batch)?;
    let transaction = begin(context, connection, "appending checkpoints")?;
    fence::check(context, &transaction, leader_epoch)?;
    let run_keys = check_fencing(context, &transaction, epoch, batch)?;
    let base = latest_position(context, &transaction)?;
    let recorded_at = now_millis();
    let doing = "appending checkpoints";
    {
        let bind_row = |statement: &mut Statement<'_>, row: usize, offset: usize| {
            let checkpoint = &batch[offset];
            let first = row * INSERT_COLUMNS + 1;
            statement.raw_bind_parameter(first, epoch_value)?;
            statement.raw_bind_parameter(first + 1, run_keys[offset])?;
            statement.raw_bind_parameter(first + 2, recorded_at)?;
            statement.raw_bind_parameter(first + 3, checkpoint.event.kind())?;
            statement.raw_bind_parameter(first + 4, payloads.get(offset))
        };
        let full_chunks = batch.len() - batch.len() % INSERT_CHUNK;
        if full_chunks > 0 {
            let mut insert = transaction
                .prepare_cached(&INSERT_CHUNK_SQL)
                .map_err(|error| sql(context, doing, error))?;
            for chunk_start in (0..full_chunks).step_by(INSERT_CHUNK) {
                for row in 0..INSERT_CHUNK {
                    bind_row(&mut insert, row, chunk_start + row)
                        .map_err(|error| sql(context, doing, error))?;
                }
                insert
                    .raw_execute()
                    .map_err(|error| sql(context, doing, error))?;
            }
        }
        let mut insert = transaction
            .prepare_cached(INSERT_APPENDED)
            .map_err(|error| sql(context, doing, error))?;
        for offset in full_chunks..batch.len() {
            bind_row(&mut insert, 0, offset).map_err(|error| sql(context, doing, error))?;
            insert
                .raw_execute()
                .map_err(|error| sql(context, doing, error))?;
        }
        let mut finish = transaction
            .prepare_cached("UPDATE runs SET status = ?2, finished_at = ?3 WHERE run_key = ?1")
            .map_err(|error| sql(context, doing, error))?;
        for (checkpoint, run_key) in batch.iter().zip(&run_keys) {
            if let Event::RunFinished { state, at, .. } = &checkpoint.event {
                finish
                    .execute(params![run_key, RunStatus::from(*state).as_str(), at])
                    .map_err(|error| sql(context, "recording the end of a run", error))?;
            }
        }
    }
    // SQLite gave each row the highest row id plus one; check it before committing.
    let last = base + batch.len() as i64;
    let found = transaction.last_insert_rowid();
    if found != last {
        return Err(StoreError::Backend {
            location: context.location.clone(),
            detail: format!(
                "appending {} checkpoints after position {base}: expected them to end at position {last}, found {found}; nothing was written",
                batch.len()
            ),
        });
    }
    commit(context, transaction, doing)?;
    Ok(last as u64)
}

/// The JSON payloads of a batch, in one buffer.
struct Payloads {
    text: String,
    /// End offset in `text` of each payload.
    ends: Vec<usize>,
}

impl Payloads {
    fn encode(context: &Context, batch: &[NewCheckpoint]) -> Result<Payloads, StoreError> {
        let mut bytes = Vec::with_capacity(batch.len() * 64);
        let mut ends = Vec::with_capacity(batch.len());
        for (index, checkpoint) in batch.iter().enumerate() {
            serde_json::to_writer(&mut bytes, &checkpoint.event).map_err(|error| {
                invalid(
                    context,
                    format!(
                        "checkpoint {} of {} (`{}`) does not serialize: {error}",
                        index + 1,
                        batch.len(),
                        checkpoint.event.kind()
                    ),
                )
            })?;
            ends.push(bytes.len());
        }
        // serde_json writes UTF-8.
        let text = String::from_utf8(bytes).map_err(|error| {
            invalid(
                context,
                format!("serialized checkpoints are not UTF-8: {error}"),
            )
        })?;
        Ok(Payloads { text, ends })
    }

    /// The payload of checkpoint `index`.
    fn get(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.text[start..self.ends[index]]
    }
}

/// Rows per multi-row `INSERT` (fewer statement executions for big batches); 5 parameters a
/// row stay well under SQLite's limit of 32766.
const INSERT_CHUNK: usize = 64;
/// Columns (parameters) per appended row.
const INSERT_COLUMNS: usize = 5;

/// `INSERT` of [`INSERT_CHUNK`] rows.
static INSERT_CHUNK_SQL: LazyLock<String> = LazyLock::new(|| {
    let rows: Vec<String> = (0..INSERT_CHUNK)
        .map(|row| {
            let first = row * INSERT_COLUMNS + 1;
            let params: Vec<String> = (first..first + INSERT_COLUMNS)
                .map(|index| format!("?{index}"))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!("{INSERT_APPENDED_COLUMNS} VALUES {}", rows.join(", "))
});

/// Appends rows without a position: SQLite assigns the highest row id plus one (cheaper than
/// an explicit row id, which needs a uniqueness check), checked in [`append`].
const INSERT_APPENDED_COLUMNS: &str =
    "INSERT INTO checkpoints (epoch, run_key, recorded_at, kind, payload)";
const INSERT_APPENDED: &str = "INSERT INTO checkpoints (epoch, run_key, recorded_at, kind, payload)
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// Refuses the batch when a run it touches does not exist or is owned by a newer epoch;
/// returns the run key of each checkpoint.
fn check_fencing(
    context: &Context,
    transaction: &Transaction<'_>,
    epoch: Epoch,
    batch: &[NewCheckpoint],
) -> Result<Vec<i64>, StoreError> {
    let mut checked: HashMap<RunId, i64> = HashMap::new();
    let mut run_keys = Vec::with_capacity(batch.len());
    let mut previous: Option<(RunId, i64)> = None;
    for (index, checkpoint) in batch.iter().enumerate() {
        let run_id = checkpoint.run_id;
        if let Some((previous_id, run_key)) = previous
            && previous_id == run_id
        {
            run_keys.push(run_key);
            continue;
        }
        let run_key = match checked.get(&run_id) {
            Some(run_key) => *run_key,
            None => {
                let Some((run_key, owner_epoch)) = find_run(context, transaction, run_id)? else {
                    return Err(invalid(
                        context,
                        format!(
                            "checkpoint {} of {} (`{}`) is for run {run_id}, which does not exist: create it first",
                            index + 1,
                            batch.len(),
                            checkpoint.event.kind()
                        ),
                    ));
                };
                if epoch < owner_epoch {
                    return Err(StoreError::Fenced {
                        run_id,
                        epoch,
                        owner_epoch,
                    });
                }
                checked.insert(run_id, run_key);
                run_key
            }
        };
        previous = Some((run_id, run_key));
        run_keys.push(run_key);
    }
    Ok(run_keys)
}

/// The run key and owner epoch of `run_id`, or `None` when the run does not exist.
pub(super) fn find_run(
    context: &Context,
    transaction: &Transaction<'_>,
    run_id: RunId,
) -> Result<Option<(i64, Epoch)>, StoreError> {
    let row: Option<(i64, i64)> = transaction
        .prepare_cached("SELECT run_key, owner_epoch FROM runs WHERE run_id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([run_id.0.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|error| sql(context, "reading the run's owner epoch", error))?;
    let Some((run_key, owner_epoch)) = row else {
        return Ok(None);
    };
    let owner_epoch = u64::try_from(owner_epoch).map(Epoch).map_err(|_| {
        corrupt(
            context,
            format!("run {run_id}: expected a non-negative owner epoch, found {owner_epoch}"),
        )
    })?;
    Ok(Some((run_key, owner_epoch)))
}

/// Hands out the next epoch of the store-wide counter (within the caller's transaction).
pub(super) fn allocate_epoch(
    context: &Context,
    transaction: &Transaction<'_>,
) -> Result<i64, StoreError> {
    let doing = "allocating an epoch";
    let next: Option<i64> = transaction
        .prepare_cached("SELECT value FROM meta WHERE key = 'next_epoch'")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)).optional())
        .map_err(|error| sql(context, doing, error))?;
    let next = match next {
        Some(next) if (1..i64::MAX).contains(&next) => next,
        Some(next) => {
            return Err(corrupt(
                context,
                format!(
                    "expected the next epoch (meta.next_epoch) to be between 1 and {}, found {next}",
                    i64::MAX - 1
                ),
            ));
        }
        None => {
            return Err(corrupt(
                context,
                "expected the row `next_epoch` in table meta, found none".into(),
            ));
        }
    };
    transaction
        .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'next_epoch'")
        .and_then(|mut statement| statement.execute([next + 1]))
        .map_err(|error| sql(context, doing, error))?;
    Ok(next)
}

/// The highest position (0 for an empty log), read inside the write transaction.
pub(super) fn latest_position(
    context: &Context,
    transaction: &Transaction<'_>,
) -> Result<i64, StoreError> {
    transaction
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM checkpoints")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(|error| sql(context, "reading the latest position", error))
}

pub(super) fn begin<'c>(
    context: &Context,
    connection: &'c mut Connection,
    doing: &str,
) -> Result<Transaction<'c>, StoreError> {
    connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|error| sql(context, &format!("{doing}: taking the write lock"), error))
}

pub(super) fn commit(
    context: &Context,
    transaction: Transaction<'_>,
    doing: &str,
) -> Result<(), StoreError> {
    transaction
        .commit()
        .map_err(|error| sql(context, &format!("{doing}: committing"), error))
}

pub(super) fn encode(context: &Context, event: &Event) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|error| {
        invalid(
            context,
            format!("the `{}` event does not serialize: {error}", event.kind()),
        )
    })
}

/// The owner's pid and start ticks as SQLite integers.
pub(super) fn owner_columns(context: &Context, owner: &Owner) -> Result<(i64, i64), StoreError> {
    let start_ticks = start_ticks_column(owner).map_err(|detail| invalid(context, detail))?;
    Ok((i64::from(owner.pid), start_ticks))
}

pub(super) fn invalid(context: &Context, detail: String) -> StoreError {
    StoreError::InvalidAppend {
        location: context.location.clone(),
        detail,
    }
}
