//! The workflows registered with the store (table `workflows`) and the ticks of their
//! schedules that started a run (table `schedule_ticks`).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Context;
use super::error::{corrupt, sql};
use super::fence;
use super::write::{begin, commit, invalid};
use crate::checkpoint::UnixMillis;
use crate::store::{StoreError, StoredWorkflow};

const WORKFLOW_COLUMNS: &str = "name, version, source, file_name, registered_at";

/// See [`crate::store::CheckpointStore::put_workflow`]; `leader_epoch` is the handle's
/// (`None`: unfenced), checked first in the transaction.
pub(super) fn put_workflow(
    context: &Context,
    connection: &mut Connection,
    workflow: &StoredWorkflow,
    leader_epoch: Option<u64>,
) -> Result<bool, StoreError> {
    let doing = "registering a workflow";
    let transaction = begin(context, connection, doing)?;
    fence::check(context, &transaction, leader_epoch)?;
    let existing: Option<String> = transaction
        .prepare_cached("SELECT source FROM workflows WHERE name = ?1 AND version = ?2")
        .and_then(|mut statement| {
            statement
                .query_row(params![workflow.name, workflow.version], |row| row.get(0))
                .optional()
        })
        .map_err(|error| sql(context, doing, error))?;
    if let Some(source) = existing {
        return if source == workflow.source {
            // Keeps the leader epoch the check raised.
            commit(context, transaction, doing)?;
            Ok(false)
        } else {
            Err(different_text(context, workflow))
        };
    }
    transaction
        .prepare_cached(&format!(
            "INSERT INTO workflows ({WORKFLOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
        ))
        .and_then(|mut statement| {
            statement.execute(params![
                workflow.name,
                workflow.version,
                workflow.source,
                workflow.file_name,
                workflow.registered_at,
            ])
        })
        .map_err(|error| sql(context, doing, error))?;
    commit(context, transaction, doing)?;
    Ok(true)
}

/// See [`crate::store::CheckpointStore::get_workflow`]: the latest is the one registered last
/// (highest `registration`).
pub(super) fn get_workflow(
    context: &Context,
    connection: &mut Connection,
    name: &str,
    version: Option<&str>,
) -> Result<StoredWorkflow, StoreError> {
    let doing = "reading a workflow";
    let found = connection
        .prepare_cached(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows
             WHERE name = ?1 AND (?2 IS NULL OR version = ?2)
             ORDER BY registration DESC LIMIT 1"
        ))
        .and_then(|mut statement| {
            statement
                .query_row(params![name, version], |row| Ok(decode(context, row)))
                .optional()
        })
        .map_err(|error| sql(context, doing, error))?;
    match found {
        Some(workflow) => workflow,
        None => Err(StoreError::WorkflowNotFound {
            name: name.to_string(),
            version: version.map(str::to_string),
        }),
    }
}

/// See [`crate::store::CheckpointStore::list_workflows`]: the row registered last (highest
/// `registration`) of each name, in byte order of the names (SQLite's `BINARY` collation).
pub(super) fn list_workflows(
    context: &Context,
    connection: &mut Connection,
) -> Result<Vec<StoredWorkflow>, StoreError> {
    let doing = "listing workflows";
    let rows = connection
        .prepare_cached(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows AS w
             WHERE registration = (
                 SELECT max(registration) FROM workflows AS v WHERE v.name = w.name
             )
             ORDER BY name"
        ))
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok(decode(context, row)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|error| sql(context, doing, error))?;
    rows.into_iter().collect()
}

/// See [`crate::store::CheckpointStore::last_schedule_tick`].
pub(super) fn last_schedule_tick(
    context: &Context,
    connection: &mut Connection,
    workflow: &str,
) -> Result<Option<UnixMillis>, StoreError> {
    connection
        .prepare_cached("SELECT max(tick) FROM schedule_ticks WHERE workflow = ?1")
        .and_then(|mut statement| statement.query_row([workflow], |row| row.get(0)))
        .map_err(|error| sql(context, "reading the last schedule tick", error))
}

fn decode(context: &Context, row: &Row<'_>) -> Result<StoredWorkflow, StoreError> {
    let column = |index: usize, column: &str| -> Result<String, StoreError> {
        row.get(index).map_err(|error| {
            corrupt(
                context,
                format!("a row of table workflows: column {column}: {error}"),
            )
        })
    };
    Ok(StoredWorkflow {
        name: column(0, "name")?,
        version: column(1, "version")?,
        source: column(2, "source")?,
        file_name: column(3, "file_name")?,
        registered_at: row.get(4).map_err(|error| {
            corrupt(
                context,
                format!("a row of table workflows: column registered_at: {error}"),
            )
        })?,
    })
}

fn different_text(context: &Context, workflow: &StoredWorkflow) -> StoreError {
    invalid(context, crate::store::workflow_text_conflict(workflow))
}
