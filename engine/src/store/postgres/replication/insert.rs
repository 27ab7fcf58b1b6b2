//! The writes of an applied batch: its checkpoints, the runs they create (with their keys
//! and ticks), the owner epochs and end states of the runs they touch.

use std::collections::HashMap;

use uuid::Uuid;

use super::batch::{NewRun, Row};
use crate::store::postgres::write::{FINISH_RUNS, FinishedRuns};

/// Inserts `rows` and the runs, keys and ticks they create, raises the runs' owner epochs to
/// their checkpoints', and records the runs they finish (as an append does). `now` (ms since
/// the Unix epoch) is recorded as the checkpoints' `replicated_at`.
pub(super) async fn insert_rows(
    transaction: &deadpool_postgres::Transaction<'_>,
    rows: &[Row<'_>],
    now: i64,
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
            "INSERT INTO checkpoints (position, epoch, run_id, recorded_at, kind, payload,
                 replicated_at)
             SELECT p, e, r, t, k, j::json, $7
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
                &now,
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
