//! The ownership transactions: create a run (at most once per idempotency key or schedule
//! tick), claim a run.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::Context;
use super::error::sql;
use super::fence;
use super::write::{
    allocate_epoch, begin, commit, encode, find_run, invalid, latest_position, owner_columns,
};
use crate::checkpoint::{Epoch, Event, RunId, now_millis};
use crate::store::columns::run_created_fields;
use crate::store::{CreateOutcome, Owner, StoreError};

/// A run to create, checked and encoded before the write lock is taken.
pub(super) struct NewRun<'a> {
    run_id: RunId,
    owner: &'a Owner,
    owner_pid: i64,
    owner_start_ticks: i64,
    workflow: &'a str,
    version: &'a str,
    created_at: i64,
    kind: &'static str,
    payload: String,
}

impl<'a> NewRun<'a> {
    /// Checks that `created` is a `run_created` event and encodes it. Errors:
    /// [`StoreError::InvalidAppend`].
    pub fn new(
        context: &Context,
        run_id: RunId,
        owner: &'a Owner,
        created: &'a Event,
    ) -> Result<NewRun<'a>, StoreError> {
        let (workflow, version, created_at) =
            run_created_fields(run_id, created).map_err(|detail| invalid(context, detail))?;
        let (owner_pid, owner_start_ticks) = owner_columns(context, owner)?;
        Ok(NewRun {
            run_id,
            owner,
            owner_pid,
            owner_start_ticks,
            workflow,
            version,
            created_at,
            kind: created.kind(),
            payload: encode(context, created)?,
        })
    }
}

/// See [`crate::store::CheckpointStore::create_run`]; `leader_epoch` is the handle's
/// (`None`: unfenced), checked first in the transaction.
pub(super) fn create_run(
    context: &Context,
    connection: &mut Connection,
    run: &NewRun<'_>,
    leader_epoch: Option<u64>,
) -> Result<Epoch, StoreError> {
    let transaction = begin(context, connection, "creating a run")?;
    fence::check(context, &transaction, leader_epoch)?;
    let (epoch, _) = insert_run(context, &transaction, run)?;
    commit(context, transaction, "recording the new run")?;
    Ok(epoch)
}

/// What makes a creation happen at most once.
#[derive(Debug, Clone, Copy)]
pub(super) enum Once<'a> {
    /// An idempotency key (table `idempotency_keys`, not empty): `create_run_once`.
    Key(&'a str),
    /// A tick of a workflow's schedule (table `schedule_ticks`): `create_scheduled_run`.
    Tick {
        /// The workflow.
        workflow: &'a str,
        /// The tick, ms since the Unix epoch.
        tick: i64,
    },
}

impl Once<'_> {
    /// What was being done, for errors.
    fn doing(self) -> &'static str {
        match self {
            Once::Key(_) => "creating a run once per idempotency key",
            Once::Tick { .. } => "creating a run once per schedule tick",
        }
    }

    /// The key or tick, for errors.
    fn describe(self) -> String {
        match self {
            Once::Key(key) => format!("idempotency key `{key}`"),
            Once::Tick { workflow, tick } => {
                format!("tick {tick} of the schedule of workflow `{workflow}`")
            }
        }
    }
}

/// See [`crate::store::CheckpointStore::create_run_once`] ([`Once::Key`]) and
/// [`crate::store::CheckpointStore::create_scheduled_run`] ([`Once::Tick`]); `leader_epoch`
/// is the handle's (`None`: unfenced), checked first in the transaction.
pub(super) fn create_run_once(
    context: &Context,
    connection: &mut Connection,
    once: Once<'_>,
    run: &NewRun<'_>,
    leader_epoch: Option<u64>,
) -> Result<CreateOutcome, StoreError> {
    let doing = once.doing();
    let transaction = begin(context, connection, doing)?;
    fence::check(context, &transaction, leader_epoch)?;
    let existing: Option<Vec<u8>> = match once {
        Once::Key(key) => transaction
            .prepare_cached(
                "SELECT r.run_id FROM idempotency_keys AS k JOIN runs AS r ON r.run_key = k.run_key
                 WHERE k.idempotency_key = ?1",
            )
            .and_then(|mut statement| statement.query_row([key], |row| row.get(0)).optional()),
        Once::Tick { workflow, tick } => transaction
            .prepare_cached(
                "SELECT r.run_id FROM schedule_ticks AS t JOIN runs AS r ON r.run_key = t.run_key
                 WHERE t.workflow = ?1 AND t.tick = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![workflow, tick], |row| row.get(0))
                    .optional()
            }),
    }
    .map_err(|error| sql(context, doing, error))?;
    if let Some(bytes) = existing {
        let run_id = uuid::Uuid::from_slice(&bytes).map(RunId).map_err(|_| {
            super::error::corrupt(
                context,
                format!(
                    "{}: expected a 16-byte run id in column run_id, found {} bytes",
                    once.describe(),
                    bytes.len()
                ),
            )
        })?;
        // Keeps the leader epoch the check raised.
        commit(context, transaction, doing)?;
        return Ok(CreateOutcome::Existing(run_id));
    }
    let (epoch, run_key) = insert_run(context, &transaction, run)?;
    match once {
        Once::Key(key) => transaction
            .prepare_cached(
                "INSERT INTO idempotency_keys (idempotency_key, run_key) VALUES (?1, ?2)",
            )
            .and_then(|mut statement| statement.execute(params![key, run_key])),
        Once::Tick { workflow, tick } => transaction
            .prepare_cached(
                "INSERT INTO schedule_ticks (workflow, tick, run_key) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut statement| statement.execute(params![workflow, tick, run_key])),
    }
    .map_err(|error| {
        sql(
            context,
            &format!("remembering the {}", once.describe()),
            error,
        )
    })?;
    commit(context, transaction, doing)?;
    Ok(CreateOutcome::Created(epoch))
}

/// Inserts the run row and its `run_created` checkpoint; returns the owner epoch and the
/// run key. Errors: [`StoreError::RunExists`].
fn insert_run(
    context: &Context,
    transaction: &Transaction<'_>,
    run: &NewRun<'_>,
) -> Result<(Epoch, i64), StoreError> {
    if find_run(context, transaction, run.run_id)?.is_some() {
        return Err(StoreError::RunExists {
            run_id: run.run_id,
            location: context.location.clone(),
        });
    }
    let epoch = allocate_epoch(context, transaction)?;
    let position = latest_position(context, transaction)? + 1;
    let doing = "recording the new run";
    transaction
        .prepare_cached(
            "INSERT INTO runs (run_id, workflow, version, status, created_at, created_position,
                finished_at, owner_epoch, owner_host, owner_pid, owner_start_ticks)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, NULL, ?6, ?7, ?8, ?9)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                run.run_id.0.as_bytes(),
                run.workflow,
                run.version,
                run.created_at,
                position,
                epoch,
                run.owner.host,
                run.owner_pid,
                run.owner_start_ticks,
            ])
        })
        .map_err(|error| sql(context, doing, error))?;
    let run_key = transaction.last_insert_rowid();
    transaction
        .prepare_cached(
            "INSERT INTO checkpoints (position, epoch, run_key, recorded_at, kind, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                position,
                epoch,
                run_key,
                now_millis(),
                run.kind,
                run.payload,
            ])
        })
        .map_err(|error| sql(context, doing, error))?;
    Ok((Epoch(epoch as u64), run_key))
}

/// See [`crate::store::CheckpointStore::claim_run`]; `leader_epoch` is the handle's (`None`:
/// unfenced), checked first in the transaction.
pub(super) fn claim_run(
    context: &Context,
    connection: &mut Connection,
    run_id: RunId,
    owner: &Owner,
    leader_epoch: Option<u64>,
) -> Result<Epoch, StoreError> {
    let (owner_pid, owner_start_ticks) = owner_columns(context, owner)?;
    let transaction = begin(context, connection, "claiming a run")?;
    fence::check(context, &transaction, leader_epoch)?;
    let Some((run_key, _)) = find_run(context, &transaction, run_id)? else {
        return Err(StoreError::RunNotFound {
            run_id,
            location: context.location.clone(),
        });
    };
    let epoch = allocate_epoch(context, &transaction)?;
    let doing = "recording the run's new owner";
    transaction
        .prepare_cached(
            "UPDATE runs SET owner_epoch = ?2, owner_host = ?3, owner_pid = ?4,
                owner_start_ticks = ?5
             WHERE run_key = ?1",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                run_key,
                epoch,
                owner.host,
                owner_pid,
                owner_start_ticks,
            ])
        })
        .map_err(|error| sql(context, doing, error))?;
    commit(context, transaction, doing)?;
    Ok(Epoch(epoch as u64))
}
