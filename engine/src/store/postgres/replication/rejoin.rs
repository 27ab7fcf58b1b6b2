//! A fenced region's tail: archiving it and cutting the log back (rejoin), and reporting it.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::{Head, bigint, not_standby, read_head};
use crate::checkpoint::{RunId, UnixMillis};
use crate::store::postgres::Context;
use crate::store::postgres::error::{corrupt, pg};
use crate::store::postgres::read::column;
use crate::store::postgres::retry::Failure;
use crate::store::replication::{RegionRole, RegionState, TailRange, TailReport, TailRun};

/// The statements of a rejoin after the archive, in order; `$1` is the fork position.
/// Runs the tail finished (and did not create) are running again; the runs it created go
/// with their keys and ticks (so the active region's runs for the same keys and ticks can be
/// applied), then the checkpoints and the write ids that point past the fork.
const CUT: [&str; 6] = [
    "UPDATE runs SET status = 'running', finished_at = NULL
     WHERE created_position <= $1 AND run_id IN (
         SELECT run_id FROM checkpoints WHERE position > $1 AND kind = 'run_finished')",
    "DELETE FROM idempotency_keys WHERE run_id IN (
         SELECT run_id FROM runs WHERE created_position > $1)",
    "DELETE FROM schedule_ticks WHERE run_id IN (
         SELECT run_id FROM runs WHERE created_position > $1)",
    "DELETE FROM runs WHERE created_position > $1",
    "DELETE FROM checkpoints WHERE position > $1",
    "DELETE FROM batches WHERE last_position > $1",
];

/// See [`crate::store::replication::ReplicationStore::rejoin`]; `now` is the archive time.
/// The whole log after the fork is archived and cut, whatever was written after the
/// demotion recorded the tail.
pub(in crate::store::postgres) async fn rejoin(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    now: UnixMillis,
) -> Result<RegionState, Failure> {
    let doing = "rejoining as a standby";
    let failed = |error| pg(context, doing, error);
    let transaction = client.transaction().await.map_err(failed)?;
    let Head { state, .. } = read_head(context, &transaction, true, doing).await?;
    let tail = match (state.role, state.tail) {
        (RegionRole::Standby, _) => return Ok(state),
        (RegionRole::Active, _) => {
            return Err(not_standby(context, "rejoin", &state, "fenced or standby").into());
        }
        (RegionRole::Fenced, Some(tail)) => tail,
        (RegionRole::Fenced, None) => {
            return Err(corrupt(
                context,
                format!(
                    "{doing}: the region is fenced but no tail is recorded in table region_state"
                ),
            )
            .into());
        }
    };
    let fork = bigint(context, tail.from - 1, "a fork position")?;
    let region_epoch = bigint(context, state.region_epoch, "a region epoch")?;
    transaction
        .execute(
            "INSERT INTO dr_tail (region_epoch, position, epoch, run_id, recorded_at, kind,
                 payload, archived_at, fork_position, active_region)
             SELECT $1, position, epoch, run_id, recorded_at, kind, payload, $2, $3, $4
             FROM checkpoints WHERE position > $3",
            &[&region_epoch, &now, &fork, &state.active_region],
        )
        .await
        .map_err(failed)?;
    for statement in CUT {
        transaction
            .execute(statement, &[&fork])
            .await
            .map_err(failed)?;
    }
    transaction
        .execute(
            "UPDATE log_head SET last = $1, region_role = 'standby'",
            &[&fork],
        )
        .await
        .map_err(failed)?;
    transaction
        .execute(
            "UPDATE region_state SET applied_position = $1, applied_registration = 0,
                 source_latest_position = $1, tail_from = NULL, tail_to = NULL",
            &[&fork],
        )
        .await
        .map_err(failed)?;
    let head = read_head(context, &transaction, false, doing).await?;
    transaction.commit().await.map_err(failed)?;
    Ok(head.state)
}

/// See [`crate::store::replication::ReplicationStore::tail_report`]: one read-only
/// transaction (one snapshot), the runs in the order of their first tail checkpoint.
pub(in crate::store::postgres) async fn tail_report(
    context: &Context,
    client: &mut deadpool_postgres::Client,
) -> Result<TailReport, Failure> {
    let doing = "reporting the unreplicated tail";
    let failed = |error| pg(context, doing, error);
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(failed)?;
    let Head { state, .. } = read_head(context, &transaction, false, doing).await?;
    let archived: i64 = transaction
        .query_one("SELECT count(*) FROM dr_tail", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    let mut report = TailReport {
        tail: None,
        runs: Vec::new(),
        archived_checkpoints: u64::try_from(archived).unwrap_or(0),
    };
    if state.role == RegionRole::Fenced
        && let Some(tail) = state.tail
    {
        report.runs = tail_runs(context, &transaction, tail).await?;
        report.tail = Some(tail);
    }
    Ok(report)
}

/// The runs with checkpoints after the fork of `tail`.
async fn tail_runs(
    context: &Context,
    client: &impl GenericClient,
    tail: TailRange,
) -> Result<Vec<TailRun>, Failure> {
    let doing = "reading the runs of the unreplicated tail";
    let fork = bigint(context, tail.from - 1, "a fork position")?;
    let rows = client
        .query(
            "SELECT c.run_id, r.workflow, count(*), coalesce(r.created_position > $1, false)
             FROM checkpoints AS c LEFT JOIN runs AS r ON r.run_id = c.run_id
             WHERE c.position > $1
             GROUP BY c.run_id, r.workflow, r.created_position ORDER BY min(c.position)",
            &[&fork],
        )
        .await
        .map_err(|error| pg(context, doing, error))?;
    let mut runs = Vec::with_capacity(rows.len());
    for row in &rows {
        let run_id: Uuid = column(context, row, 0, "run_id", "a checkpoint of the tail")?;
        let at = format!("run {run_id} of the unreplicated tail");
        let workflow: Option<String> = column(context, row, 1, "workflow", &at)?;
        let Some(workflow) = workflow else {
            return Err(corrupt(
                context,
                format!("{at}: expected its row in table runs, found none"),
            )
            .into());
        };
        let checkpoints: i64 = column(context, row, 2, "count", &at)?;
        runs.push(TailRun {
            run_id: RunId(run_id),
            workflow,
            checkpoints: u64::try_from(checkpoints).unwrap_or(0),
            created_in_tail: column(context, row, 3, "created_position", &at)?,
        });
    }
    Ok(runs)
}
