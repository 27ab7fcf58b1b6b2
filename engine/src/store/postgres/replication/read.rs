//! Reading the log for shipping: checkpoints with the origins of the runs they create, and
//! workflow registrations.

use deadpool_postgres::GenericClient;

use crate::checkpoint::LogPosition;
use crate::store::columns::pid_from;
use crate::store::postgres::Context;
use crate::store::postgres::error::{corrupt, pg};
use crate::store::postgres::read::{column, decode_checkpoint};
use crate::store::postgres::retry::Failure;
use crate::store::replication::{
    ReplicatedCheckpoint, ReplicatedWorkflow, ReplicationSlice, RunOrigin,
};
use crate::store::{Owner, StoreError, StoredWorkflow};

/// Checkpoints after `$1` (at most `$2`), each `run_created` one with its run's key, tick
/// and owner (one statement: one snapshot, in which a position is visible only with every
/// lower one, see `write.rs`).
const CHECKPOINTS: &str = "
SELECT c.position, c.epoch, c.run_id, c.recorded_at, c.kind, c.payload::text,
    r.run_id IS NOT NULL, k.idempotency_key, t.tick, r.owner_host, r.owner_pid,
    r.owner_start_ticks
FROM checkpoints AS c
LEFT JOIN runs AS r ON c.kind = 'run_created' AND r.run_id = c.run_id
LEFT JOIN idempotency_keys AS k ON k.run_id = r.run_id
LEFT JOIN schedule_ticks AS t ON t.run_id = r.run_id
WHERE c.position > $1 ORDER BY c.position LIMIT $2";

/// Registrations after `$1`, in order.
const WORKFLOWS: &str = "
SELECT registration, name, version, source, file_name, registered_at
FROM workflows WHERE registration > $1 ORDER BY registration";

/// See [`crate::store::replication::ReplicationStore::read_replication`].
pub(in crate::store::postgres) async fn read_replication(
    context: &Context,
    client: &impl GenericClient,
    after_position: LogPosition,
    after_registration: u64,
    limit: usize,
) -> Result<ReplicationSlice, Failure> {
    let doing = "reading the log for replication";
    let failed = |error| pg(context, doing, error);
    let mut slice = ReplicationSlice::default();
    // Positions and registration numbers are bigints: none is above i64::MAX.
    if let Ok(after) = i64::try_from(after_position) {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let statement = client.prepare_cached(CHECKPOINTS).await.map_err(failed)?;
        let rows = client
            .query(&statement, &[&after, &limit])
            .await
            .map_err(failed)?;
        slice.checkpoints = rows
            .iter()
            .map(|row| decode(context, row))
            .collect::<Result<_, _>>()?;
    }
    if let Ok(after) = i64::try_from(after_registration) {
        let statement = client.prepare_cached(WORKFLOWS).await.map_err(failed)?;
        let rows = client.query(&statement, &[&after]).await.map_err(failed)?;
        slice.workflows = rows
            .iter()
            .map(|row| decode_workflow(context, row))
            .collect::<Result<_, _>>()?;
    }
    Ok(slice)
}

/// Decodes a row of [`CHECKPOINTS`].
fn decode(
    context: &Context,
    row: &tokio_postgres::Row,
) -> Result<ReplicatedCheckpoint, StoreError> {
    let checkpoint = decode_checkpoint(context, row)?;
    if checkpoint.event.kind() != "run_created" {
        return Ok(ReplicatedCheckpoint {
            checkpoint,
            origin: None,
        });
    }
    let at = format!(
        "the run_created checkpoint at position {} (run {})",
        checkpoint.position, checkpoint.run_id
    );
    let has_run: bool = column(context, row, 6, "run_id", &at)?;
    if !has_run {
        return Err(corrupt(
            context,
            format!("{at}: expected its run in table runs, found none"),
        ));
    }
    let pid: i64 = column(context, row, 10, "owner_pid", &at)?;
    let start_ticks: i64 = column(context, row, 11, "owner_start_ticks", &at)?;
    let owner = Owner {
        host: column(context, row, 9, "owner_host", &at)?,
        pid: pid_from(&at, pid).map_err(|detail| corrupt(context, detail))?,
        start_ticks: u64::try_from(start_ticks).map_err(|_| {
            corrupt(
                context,
                format!("{at}: expected non-negative start ticks, found {start_ticks}"),
            )
        })?,
    };
    Ok(ReplicatedCheckpoint {
        origin: Some(RunOrigin {
            idempotency_key: column(context, row, 7, "idempotency_key", &at)?,
            schedule_tick: column(context, row, 8, "tick", &at)?,
            owner,
        }),
        checkpoint,
    })
}

/// Decodes a row of [`WORKFLOWS`].
fn decode_workflow(
    context: &Context,
    row: &tokio_postgres::Row,
) -> Result<ReplicatedWorkflow, StoreError> {
    let at = "a row of table workflows";
    let registration: i64 = column(context, row, 0, "registration", at)?;
    Ok(ReplicatedWorkflow {
        registration: u64::try_from(registration).map_err(|_| {
            corrupt(
                context,
                format!("{at}: expected a positive registration number, found {registration}"),
            )
        })?,
        workflow: StoredWorkflow {
            name: column(context, row, 1, "name", at)?,
            version: column(context, row, 2, "version", at)?,
            source: column(context, row, 3, "source", at)?,
            file_name: column(context, row, 4, "file_name", at)?,
            registered_at: column(context, row, 5, "registered_at", at)?,
        },
    })
}
