//! The workflows registered with the store (table `workflows`).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Context;
use super::error::{corrupt, sql};
use super::write::{begin, commit, invalid};
use crate::store::{StoreError, StoredWorkflow};

const WORKFLOW_COLUMNS: &str = "name, version, source, file_name, registered_at";

/// See [`crate::store::CheckpointStore::put_workflow`].
pub(super) fn put_workflow(
    context: &Context,
    connection: &mut Connection,
    workflow: &StoredWorkflow,
) -> Result<bool, StoreError> {
    let doing = "registering a workflow";
    let transaction = begin(context, connection, doing)?;
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
