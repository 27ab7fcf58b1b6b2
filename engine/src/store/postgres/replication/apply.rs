//! Applying a replicated batch on a standby, in one transaction that locks the head first:
//! role and epoch checks, skipping what was applied, the gap check, then the checkpoints,
//! the runs they create and finish, the workflows, and the state.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::{Head, not_standby, read_head, stale_region_epoch};
use crate::checkpoint::{Event, LogPosition, UnixMillis};
use crate::store::columns::{run_created_fields, start_ticks_column};
use crate::store::postgres::Context;
use crate::store::postgres::error::{corrupt, pg};
use crate::store::postgres::retry::Failure;
use crate::store::postgres::write::{FINISH_RUNS, FinishedRuns};
use crate::store::replication::{RegionRole, RegionState, ReplicatedBatch};
use crate::store::{StoreError, StoredWorkflow, workflow_text_conflict};

/// The run a `run_created` checkpoint creates, as the columns of `runs` and its side rows.
#[derive(Debug)]
struct NewRun {
    workflow: String,
    version: String,
    created_at: i64,
    owner_host: String,
    owner_pid: i64,
    owner_start_ticks: i64,
    idempotency_key: Option<String>,
    schedule_tick: Option<i64>,
}

/// One checkpoint of the batch as the columns of `checkpoints`.
#[derive(Debug)]
struct Row<'a> {
    position: LogPosition,
    epoch: i64,
    run_id: Uuid,
    recorded_at: i64,
    kind: &'static str,
    payload: String,
    /// The event (for the runs it finishes).
    event: &'a Event,
    /// Set on `run_created` checkpoints.
    created: Option<NewRun>,
}

/// A batch checked and encoded before any connection is used (and kept across retries).
#[derive(Debug)]
pub(in crate::store::postgres) struct PreparedBatch<'a> {
    batch: &'a ReplicatedBatch,
    rows: Vec<Row<'a>>,
}

impl<'a> PreparedBatch<'a> {
    /// Errors ([`StoreError::Corrupt`], naming the checkpoint): a `run_created` checkpoint
    /// without its origin or another one with one, a number beyond a bigint, an event that
    /// does not serialize, workflows out of registration order.
    pub fn new(
        context: &Context,
        batch: &'a ReplicatedBatch,
    ) -> Result<PreparedBatch<'a>, StoreError> {
        let source = &batch.source_region;
        let damaged =
            |detail: String| corrupt(context, format!("a batch from region {source}: {detail}"));
        for (value, what) in [
            (batch.region_epoch, "a region epoch"),
            (batch.source_latest_position, "a latest position"),
        ] {
            if i64::try_from(value).is_err() {
                return Err(damaged(format!(
                    "expected {what} of at most {}, found {value}",
                    i64::MAX
                )));
            }
        }
        let mut rows = Vec::with_capacity(batch.checkpoints.len());
        for replicated in &batch.checkpoints {
            let checkpoint = &replicated.checkpoint;
            let kind = checkpoint.event.kind();
            let at = format!(
                "the checkpoint at position {} (`{kind}`, run {})",
                checkpoint.position, checkpoint.run_id
            );
            let bigint = |value: u64, what: &str| {
                i64::try_from(value).map_err(|_| {
                    damaged(format!(
                        "{at}: expected {what} of at most {}, found {value}",
                        i64::MAX
                    ))
                })
            };
            bigint(checkpoint.position, "a position")?;
            let epoch = bigint(checkpoint.epoch.0, "an epoch")?;
            let created = match (&checkpoint.event, &replicated.origin) {
                (Event::RunCreated { .. }, Some(origin)) => {
                    let (workflow, version, created_at) =
                        run_created_fields(checkpoint.run_id, &checkpoint.event)
                            .map_err(&damaged)?;
                    Some(NewRun {
                        workflow: workflow.to_string(),
                        version: version.to_string(),
                        created_at,
                        owner_host: format!("{source}/{}", origin.owner.host),
                        owner_pid: i64::from(origin.owner.pid),
                        owner_start_ticks: start_ticks_column(&origin.owner)
                            .map_err(|detail| damaged(format!("{at}: {detail}")))?,
                        idempotency_key: origin.idempotency_key.clone(),
                        schedule_tick: origin.schedule_tick,
                    })
                }
                (Event::RunCreated { .. }, None) => {
                    return Err(damaged(format!(
                        "{at}: expected the run's origin beside it, found none"
                    )));
                }
                (_, Some(_)) => {
                    return Err(damaged(format!(
                        "{at}: expected a run origin on run_created checkpoints only, found one here"
                    )));
                }
                (_, None) => None,
            };
            let payload = serde_json::to_string(&checkpoint.event)
                .map_err(|error| damaged(format!("{at}: the event does not serialize: {error}")))?;
            rows.push(Row {
                position: checkpoint.position,
                epoch,
                run_id: checkpoint.run_id.0,
                recorded_at: checkpoint.recorded_at,
                kind,
                payload,
                event: &checkpoint.event,
                created,
            });
        }
        let mut previous = 0;
        for replicated in &batch.workflows {
            if replicated.registration <= previous
                || i64::try_from(replicated.registration).is_err()
            {
                return Err(damaged(format!(
                    "expected workflow registrations in increasing order, each at most {}, found {} after {previous} (workflow `{}`)",
                    i64::MAX,
                    replicated.registration,
                    replicated.workflow.name
                )));
            }
            previous = replicated.registration;
        }
        Ok(PreparedBatch { batch, rows })
    }

    /// The checkpoints after `last`, which must start at `last + 1` and be consecutive.
    ///
    /// Errors: [`StoreError::ReplicationGap`].
    fn new_rows(&self, context: &Context, last: LogPosition) -> Result<&[Row<'a>], StoreError> {
        let Some(first) = self.rows.iter().position(|row| row.position > last) else {
            return Ok(&[]);
        };
        for (expected, row) in (last + 1..).zip(&self.rows[first..]) {
            if row.position != expected {
                return Err(StoreError::ReplicationGap {
                    expected,
                    found: row.position,
                    source_region: self.batch.source_region.clone(),
                    location: context.location.clone(),
                });
            }
        }
        Ok(&self.rows[first..])
    }
}

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
    insert_rows(&transaction, rows).await.map_err(failed)?;
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

/// Inserts `rows` and the runs, keys and ticks they create, raises the runs' owner epochs to
/// their checkpoints', and records the runs they finish (as an append does).
async fn insert_rows(
    transaction: &deadpool_postgres::Transaction<'_>,
    rows: &[Row<'_>],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let positions: Vec<i64> = rows.iter().map(|row| row.position as i64).collect();
    let epochs: Vec<i64> = rows.iter().map(|row| row.epoch).collect();
    let run_ids: Vec<Uuid> = rows.iter().map(|row| row.run_id).collect();
    let recorded_at: Vec<i64> = rows.iter().map(|row| row.recorded_at).collect();
    let kinds: Vec<&str> = rows.iter().map(|row| row.kind).collect();
    let payloads: Vec<&str> = rows.iter().map(|row| row.payload.as_str()).collect();
    let statement = transaction
        .prepare_cached(
            "INSERT INTO checkpoints (position, epoch, run_id, recorded_at, kind, payload)
             SELECT p, e, r, t, k, j::json
             FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::bigint[], $5::text[],
                 $6::text[]) AS c(p, e, r, t, k, j)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &positions,
                &epochs,
                &run_ids,
                &recorded_at,
                &kinds,
                &payloads,
            ],
        )
        .await?;
    insert_runs(transaction, rows).await?;
    let mut highest: HashMap<Uuid, i64> = HashMap::new();
    let mut finished = FinishedRuns::default();
    for row in rows {
        let epoch = highest.entry(row.run_id).or_insert(row.epoch);
        *epoch = (*epoch).max(row.epoch);
        finished.note(row.run_id, row.event);
    }
    let (runs, owner_epochs): (Vec<Uuid>, Vec<i64>) = highest.into_iter().unzip();
    let statement = transaction
        .prepare_cached(
            "UPDATE runs SET owner_epoch = m.epoch
             FROM unnest($1::uuid[], $2::bigint[]) AS m(run_id, epoch)
             WHERE runs.run_id = m.run_id AND runs.owner_epoch < m.epoch",
        )
        .await?;
    transaction
        .execute(&statement, &[&runs, &owner_epochs])
        .await?;
    if !finished.runs.is_empty() {
        let statement = transaction.prepare_cached(FINISH_RUNS).await?;
        transaction
            .execute(
                &statement,
                &[&finished.runs, &finished.statuses, &finished.at],
            )
            .await?;
    }
    Ok(())
}

/// Inserts the runs `rows` create (owned by the checkpoint's epoch and the source's owner,
/// its host prefixed with the source region), with their idempotency keys and schedule
/// ticks.
async fn insert_runs(
    transaction: &deadpool_postgres::Transaction<'_>,
    rows: &[Row<'_>],
) -> Result<(), tokio_postgres::Error> {
    let created: Vec<(&Row<'_>, &NewRun)> = rows
        .iter()
        .filter_map(|row| row.created.as_ref().map(|run| (row, run)))
        .collect();
    if created.is_empty() {
        return Ok(());
    }
    let run_ids: Vec<Uuid> = created.iter().map(|(row, _)| row.run_id).collect();
    let workflows: Vec<&str> = created
        .iter()
        .map(|(_, run)| run.workflow.as_str())
        .collect();
    let versions: Vec<&str> = created
        .iter()
        .map(|(_, run)| run.version.as_str())
        .collect();
    let created_at: Vec<i64> = created.iter().map(|(_, run)| run.created_at).collect();
    let positions: Vec<i64> = created.iter().map(|(row, _)| row.position as i64).collect();
    let epochs: Vec<i64> = created.iter().map(|(row, _)| row.epoch).collect();
    let hosts: Vec<&str> = created
        .iter()
        .map(|(_, run)| run.owner_host.as_str())
        .collect();
    let pids: Vec<i64> = created.iter().map(|(_, run)| run.owner_pid).collect();
    let ticks: Vec<i64> = created
        .iter()
        .map(|(_, run)| run.owner_start_ticks)
        .collect();
    let statement = transaction
        .prepare_cached(
            "INSERT INTO runs (run_id, workflow, version, status, created_at, created_position,
                 finished_at, owner_epoch, owner_host, owner_pid, owner_start_ticks)
             SELECT r, w, v, 'running', a, p, NULL, e, h, pid, ticks
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                 $6::bigint[], $7::text[], $8::bigint[], $9::bigint[])
                 AS n(r, w, v, a, p, e, h, pid, ticks)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &run_ids,
                &workflows,
                &versions,
                &created_at,
                &positions,
                &epochs,
                &hosts,
                &pids,
                &ticks,
            ],
        )
        .await?;
    let (keys, key_runs): (Vec<&str>, Vec<Uuid>) = created
        .iter()
        .filter_map(|(row, run)| Some((run.idempotency_key.as_deref()?, row.run_id)))
        .unzip();
    if !keys.is_empty() {
        let statement = transaction
            .prepare_cached(
                "INSERT INTO idempotency_keys (idempotency_key, run_id)
                 SELECT * FROM unnest($1::text[], $2::uuid[])",
            )
            .await?;
        transaction.execute(&statement, &[&keys, &key_runs]).await?;
    }
    let scheduled: Vec<(&str, i64, Uuid)> = created
        .iter()
        .filter_map(|(row, run)| Some((run.workflow.as_str(), run.schedule_tick?, row.run_id)))
        .collect();
    if !scheduled.is_empty() {
        let workflows: Vec<&str> = scheduled.iter().map(|(workflow, _, _)| *workflow).collect();
        let tick_values: Vec<i64> = scheduled.iter().map(|(_, tick, _)| *tick).collect();
        let tick_runs: Vec<Uuid> = scheduled.iter().map(|(_, _, run)| *run).collect();
        let statement = transaction
            .prepare_cached(
                "INSERT INTO schedule_ticks (workflow, tick, run_id)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[])",
            )
            .await?;
        transaction
            .execute(&statement, &[&workflows, &tick_values, &tick_runs])
            .await?;
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
    let insert = transaction
        .prepare_cached(
            "INSERT INTO workflows (name, version, source, file_name, registered_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, version) DO NOTHING RETURNING 1",
        )
        .await
        .map_err(failed)?;
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
        .await
        .map_err(failed)?;
    if inserted.is_some() {
        return Ok(());
    }
    let source: String = transaction
        .query_one(
            "SELECT source FROM workflows WHERE name = $1 AND version = $2",
            &[&workflow.name, &workflow.version],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
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
