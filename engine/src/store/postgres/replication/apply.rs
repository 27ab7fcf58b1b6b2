//! Applying a replicated batch on a standby, in one transaction that locks the head first:
//! role and epoch checks, skipping what was applied, the gap check, then the checkpoints,
//! the runs they create and finish, the workflows, and the state.

use std::collections::HashSet;

use uuid::Uuid;

use super::batch::{PreparedBatch, Row};
use super::insert::insert_rows;
use super::{Head, not_standby, read_head, stale_region_epoch};
use crate::checkpoint::UnixMillis;
use crate::store::postgres::Context;
use crate::store::postgres::catalog::insert_workflow;
use crate::store::postgres::error::{corrupt, pg};
use crate::store::postgres::retry::Failure;
use crate::store::replication::{RegionRole, RegionState};
use crate::store::{StoredWorkflow, workflow_text_conflict};

/// See [`crate::store::replication::ReplicationStore::apply_replicated`].
pub(in crate::store::postgres) async fn apply_replicated(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    prepared: &PreparedBatch<'_>,
    now: UnixMillis,
) -> Result<RegionState, Failure> {
    let batch = prepared.batch;
    let source = &batch.source_region;
    let doing = "applying a replicated batch";
    let failed = |error| write_failure(context, doing, error);
    let transaction = client.transaction().await.map_err(failed)?;
    let Head { state, last } = read_head(context, &transaction, true, doing).await?;
    let action = format!("applying a batch from {source}");
    if state.role != RegionRole::Standby || state.active_region != *source {
        return Err(
            not_standby(context, &action, &state, &format!("a standby of {source}")).into(),
        );
    }
    if batch.region_epoch < state.region_epoch {
        return Err(
            stale_region_epoch(context, &action, batch.region_epoch, "at least", &state).into(),
        );
    }
    let rows = prepared.new_rows(context, last)?;
    check_runs(context, &transaction, rows, source).await?;
    insert_rows(&transaction, rows, now).await.map_err(failed)?;
    let workflows: Vec<&StoredWorkflow> = batch
        .workflows
        .iter()
        .filter(|replicated| replicated.registration > state.applied_registration)
        .map(|replicated| &replicated.workflow)
        .collect();
    for workflow in &workflows {
        put_workflow(context, &transaction, workflow).await?;
    }
    let applied_registration = batch
        .workflows
        .iter()
        .map(|replicated| replicated.registration)
        .fold(state.applied_registration, u64::max);
    let new_last = rows.last().map_or(last, |row| row.position);
    let as_bigint = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    transaction
        .execute(
            "UPDATE log_head SET last = $1, region_epoch = $2",
            &[&as_bigint(new_last), &as_bigint(batch.region_epoch)],
        )
        .await
        .map_err(failed)?;
    transaction
        .execute(
            "UPDATE region_state SET applied_position = $1, applied_registration = $2,
                 applied_at = $3, applied_recorded_at = coalesce($4, applied_recorded_at),
                 source_latest_position = greatest(source_latest_position, $5, $1)",
            &[
                &as_bigint(new_last),
                &as_bigint(applied_registration),
                &now,
                &rows.last().map(|row| row.recorded_at),
                &as_bigint(batch.source_latest_position),
            ],
        )
        .await
        .map_err(failed)?;
    if let Some(highest) = rows
        .iter()
        .map(|row| row.epoch)
        .max()
        .filter(|epoch| *epoch >= 1)
    {
        transaction
            .execute(
                "SELECT setval('epochs', $1) FROM epochs WHERE last_value <= $1",
                &[&highest],
            )
            .await
            .map_err(failed)?;
    }
    let head = read_head(context, &transaction, false, doing).await?;
    transaction.commit().await.map_err(failed)?;
    Ok(head.state)
}

/// Refuses (with [`StoreError::Corrupt`]) a batch that creates a run this store has, or
/// writes to one it has not and the batch does not create first.
async fn check_runs(
    context: &Context,
    transaction: &deadpool_postgres::Transaction<'_>,
    rows: &[Row<'_>],
    source: &str,
) -> Result<(), Failure> {
    let runs: Vec<Uuid> = rows
        .iter()
        .map(|row| row.run_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if runs.is_empty() {
        return Ok(());
    }
    let doing = "checking the runs of a replicated batch";
    let existing: HashSet<Uuid> = transaction
        .query("SELECT run_id FROM runs WHERE run_id = ANY($1)", &[&runs])
        .await
        .map_err(|error| pg(context, doing, error))?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(|error| pg(context, doing, error))?;
    let mut created = HashSet::new();
    for row in rows {
        let at = format!(
            "a batch from region {source}: the checkpoint at position {} (`{}`, run {})",
            row.position, row.kind, row.run_id
        );
        let known = existing.contains(&row.run_id) || created.contains(&row.run_id);
        if row.created.is_some() {
            if known {
                return Err(corrupt(
                    context,
                    format!("{at} creates a run this store has already"),
                )
                .into());
            }
            created.insert(row.run_id);
        } else if !known {
            return Err(corrupt(
                context,
                format!(
                    "{at} is for a run this store does not have (its run_created was not applied)"
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// Registers a replicated workflow under the next local registration number, unless the
/// store has it already with the same text.
///
/// Errors: [`StoreError::Corrupt`] when it has it with another text (a version is the
/// hash of its text).
async fn put_workflow(
    context: &Context,
    transaction: &deadpool_postgres::Transaction<'_>,
    workflow: &StoredWorkflow,
) -> Result<(), Failure> {
    let doing = "registering a replicated workflow";
    let failed = |error| write_failure(context, doing, error);
    let Some(source) = insert_workflow(transaction, workflow)
        .await
        .map_err(failed)?
    else {
        return Ok(());
    };
    if source == workflow.source {
        Ok(())
    } else {
        Err(corrupt(
            context,
            format!("{doing}: {}", workflow_text_conflict(workflow)),
        )
        .into())
    }
}

/// Maps an error of the apply's writes: a violated constraint (a key, a tick or a run that
/// the store has already, SQLSTATE class 23) means the batch does not fit the store
/// ([`StoreError::Corrupt`]); anything else as [`pg`] maps it.
fn write_failure(context: &Context, doing: &str, error: tokio_postgres::Error) -> Failure {
    if let Some(db) = error.as_db_error()
        && db.code().code().starts_with("23")
    {
        let constraint = db.constraint().unwrap_or("?");
        return Failure::Final(corrupt(
            context,
            format!(
                "{doing}: the batch does not fit this store: {} (constraint {constraint}, SQLSTATE {})",
                db.message(),
                db.code().code()
            ),
        ));
    }
    pg(context, doing, error)
}
