//! A replicated batch checked and encoded for applying: the columns of its checkpoints and
//! of the runs they create, and which of them continue the applied log.

use uuid::Uuid;

use crate::checkpoint::{Event, LogPosition};
use crate::store::StoreError;
use crate::store::columns::{run_created_fields, start_ticks_column};
use crate::store::postgres::Context;
use crate::store::postgres::error::corrupt;
use crate::store::replication::ReplicatedBatch;

/// The run a `run_created` checkpoint creates, as the columns of `runs` and its side rows.
#[derive(Debug)]
pub(super) struct NewRun {
    /// Column `workflow`.
    pub workflow: String,
    /// Column `version`.
    pub version: String,
    /// Column `created_at` (the event's time, ms since the Unix epoch).
    pub created_at: i64,
    /// Column `owner_host`: the source's host prefixed with the source region
    /// (`eu-west/host`), so no process of this region is taken for the run's owner.
    pub owner_host: String,
    /// Column `owner_pid`.
    pub owner_pid: i64,
    /// Column `owner_start_ticks`.
    pub owner_start_ticks: i64,
    /// The row of `idempotency_keys`, if the run was created with a key.
    pub idempotency_key: Option<String>,
    /// The row of `schedule_ticks` (with `workflow`), if a schedule's tick created it.
    pub schedule_tick: Option<i64>,
}

/// One checkpoint of the batch as the columns of `checkpoints`.
#[derive(Debug)]
pub(super) struct Row<'a> {
    /// The source's position (it fits a bigint).
    pub position: LogPosition,
    /// Column `epoch`.
    pub epoch: i64,
    /// Column `run_id`.
    pub run_id: Uuid,
    /// Column `recorded_at`: the source's commit time.
    pub recorded_at: i64,
    /// Column `kind`.
    pub kind: &'static str,
    /// Column `payload`: the event as JSON.
    pub payload: String,
    /// The event (for the runs it finishes).
    pub event: &'a Event,
    /// Set on `run_created` checkpoints.
    pub created: Option<NewRun>,
}

/// A batch checked and encoded before any connection is used (and kept across retries).
#[derive(Debug)]
pub(in crate::store::postgres) struct PreparedBatch<'a> {
    /// The batch as shipped.
    pub batch: &'a ReplicatedBatch,
    /// Its checkpoints, encoded, in its order.
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
    pub(super) fn new_rows(
        &self,
        context: &Context,
        last: LogPosition,
    ) -> Result<&[Row<'a>], StoreError> {
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
