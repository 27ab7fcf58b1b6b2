//! The workflows registered with the store (table `workflows`) and the ticks of their
//! schedules that started a run (table `schedule_ticks`).

use tokio_postgres::Row;

use super::Context;
use super::error::{corrupt, invalid, pg};
use super::fence::{self, FenceEpoch};
use super::retry::Failure;
use crate::checkpoint::UnixMillis;
use crate::store::{StoreError, StoredWorkflow, workflow_text_conflict};

const WORKFLOW_COLUMNS: &str = "name, version, source, file_name, registered_at";

/// See [`crate::store::CheckpointStore::put_workflow`]; `fence` is the handle's leader epoch
/// (`None`: unfenced), checked first in the transaction (with the region's role). After a
/// connection lost during the commit, the retry finds the workflow stored and reports
/// `false`.
///
/// Registrations hold the head's row lock from before they take their `registration`
/// number until they commit (a fenced one through its check, an unfenced one by locking
/// the row), so numbers become visible in increasing order, as positions do: replication
/// reads them as a cursor (`registration > n`), which a number taken before an earlier
/// one's commit would make it skip.
pub(super) async fn put_workflow(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    workflow: &StoredWorkflow,
    fence: Option<FenceEpoch>,
) -> Result<bool, Failure> {
    let doing = "registering a workflow";
    let failed = |error| pg(context, doing, error);
    let client = client.transaction().await.map_err(failed)?;
    if fence.is_some() {
        fence::check(context, &client, fence, doing).await?;
    } else {
        let lock = client
            .prepare_cached("SELECT 1 FROM log_head FOR NO KEY UPDATE")
            .await
            .map_err(failed)?;
        client.query_one(&lock, &[]).await.map_err(failed)?;
    }
    let Some(source) = insert_workflow(&client, workflow).await.map_err(failed)? else {
        client.commit().await.map_err(failed)?;
        return Ok(true);
    };
    if source == workflow.source {
        // Keeps the leader epoch the check raised.
        client.commit().await.map_err(failed)?;
        Ok(false)
    } else {
        Err(Failure::Final(invalid(
            context,
            workflow_text_conflict(workflow),
        )))
    }
}

/// Inserts `workflow` in `transaction` under the next registration number unless (name,
/// version) is stored already: `None` when it was inserted, else the stored text (which the
/// caller compares with `workflow.source`: a version is the hash of its text). Used by
/// registrations and by the apply of replicated batches.
pub(super) async fn insert_workflow(
    transaction: &deadpool_postgres::Transaction<'_>,
    workflow: &StoredWorkflow,
) -> Result<Option<String>, tokio_postgres::Error> {
    let insert = transaction
        .prepare_cached(&format!(
            "INSERT INTO workflows ({WORKFLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name, version) DO NOTHING RETURNING 1"
        ))
        .await?;
    let inserted = transaction
        .query_opt(
            &insert,
            &[
                &workflow.name,
                &workflow.version,
                &workflow.source,
                &workflow.file_name,
                &workflow.registered_at,
            ],
        )
        .await?;
    if inserted.is_some() {
        return Ok(None);
    }
    let row = transaction
        .query_one(
            "SELECT source FROM workflows WHERE name = $1 AND version = $2",
            &[&workflow.name, &workflow.version],
        )
        .await?;
    Ok(Some(row.try_get(0)?))
}

/// See [`crate::store::CheckpointStore::get_workflow`]: the latest is the one registered last.
pub(super) async fn get_workflow(
    context: &Context,
    client: &deadpool_postgres::Client,
    name: &str,
    version: Option<&str>,
) -> Result<StoredWorkflow, Failure> {
    let doing = "reading a workflow";
    let statement = client
        .prepare_cached(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows
             WHERE name = $1 AND ($2::text IS NULL OR version = $2)
             ORDER BY registration DESC LIMIT 1"
        ))
        .await
        .map_err(|error| pg(context, doing, error))?;
    match client
        .query_opt(&statement, &[&name, &version])
        .await
        .map_err(|error| pg(context, doing, error))?
    {
        Some(row) => Ok(decode(context, &row)?),
        None => Err(Failure::Final(StoreError::WorkflowNotFound {
            name: name.to_string(),
            version: version.map(str::to_string),
        })),
    }
}

/// See [`crate::store::CheckpointStore::list_workflows`]: the row registered last of each
/// name, in byte order of the names (collation `C`, whatever the database's collation).
pub(super) async fn list_workflows(
    context: &Context,
    client: &deadpool_postgres::Client,
) -> Result<Vec<StoredWorkflow>, Failure> {
    let doing = "listing workflows";
    let statement = client
        .prepare_cached(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows AS w
             WHERE registration = (
                 SELECT max(registration) FROM workflows AS v WHERE v.name = w.name
             )
             ORDER BY name COLLATE \"C\""
        ))
        .await
        .map_err(|error| pg(context, doing, error))?;
    let rows = client
        .query(&statement, &[])
        .await
        .map_err(|error| pg(context, doing, error))?;
    Ok(rows
        .iter()
        .map(|row| decode(context, row))
        .collect::<Result<_, _>>()?)
}

/// See [`crate::store::CheckpointStore::last_schedule_tick`].
pub(super) async fn last_schedule_tick(
    context: &Context,
    client: &deadpool_postgres::Client,
    workflow: &str,
) -> Result<Option<UnixMillis>, Failure> {
    let doing = "reading the last schedule tick";
    let statement = client
        .prepare_cached("SELECT max(tick) FROM schedule_ticks WHERE workflow = $1")
        .await
        .map_err(|error| pg(context, doing, error))?;
    let tick: Option<i64> = client
        .query_one(&statement, &[&workflow])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|error| pg(context, doing, error))?;
    Ok(tick)
}

fn decode(context: &Context, row: &Row) -> Result<StoredWorkflow, StoreError> {
    let column = |index: usize, name: &str| -> Result<String, StoreError> {
        row.try_get(index).map_err(|error| {
            corrupt(
                context,
                format!("a row of table workflows: column {name}: {error}"),
            )
        })
    };
    Ok(StoredWorkflow {
        name: column(0, "name")?,
        version: column(1, "version")?,
        source: column(2, "source")?,
        file_name: column(3, "file_name")?,
        registered_at: row.try_get(4).map_err(|error| {
            corrupt(
                context,
                format!("a row of table workflows: column registered_at: {error}"),
            )
        })?,
    })
}
