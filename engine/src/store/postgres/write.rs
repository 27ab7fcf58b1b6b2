//! The append transaction, and what the write transactions share.

use std::collections::HashMap;

use uuid::Uuid;

use super::Context;
use super::error::{backend, corrupt, invalid, is_unique_violation, pg};
use super::fence::{self, FenceEpoch};
use super::retry::Failure;
use crate::checkpoint::{Epoch, Event, LogPosition, NewCheckpoint, now_millis};
use crate::store::columns::epoch_column;
use crate::store::{RunStatus, StoreError};

/// A batch checked and encoded before any connection is used (and kept across retries).
#[derive(Debug)]
pub(super) struct Encoded {
    epoch: Epoch,
    /// The run of each checkpoint.
    run_ids: Vec<Uuid>,
    /// The event kind of each checkpoint.
    kinds: Vec<&'static str>,
    /// The event of each checkpoint as JSON.
    payloads: Vec<String>,
    /// Every run the batch touches, once.
    runs: Vec<Uuid>,
    /// The runs the batch finishes, with their status and end time (the last `run_finished`
    /// of each run in the batch).
    finished_runs: Vec<Uuid>,
    finished_statuses: Vec<&'static str>,
    finished_at: Vec<i64>,
}

impl Encoded {
    /// Errors ([`StoreError::InvalidAppend`]): an epoch above `i64::MAX`, a `run_created`
    /// event (runs are created with `create_run`), an event that does not serialize.
    pub fn new(
        context: &Context,
        epoch: Epoch,
        batch: &[NewCheckpoint],
    ) -> Result<Encoded, StoreError> {
        epoch_column(epoch).map_err(|detail| invalid(context, detail))?;
        let mut encoded = Encoded {
            epoch,
            run_ids: Vec::with_capacity(batch.len()),
            kinds: Vec::with_capacity(batch.len()),
            payloads: Vec::with_capacity(batch.len()),
            runs: Vec::new(),
            finished_runs: Vec::new(),
            finished_statuses: Vec::new(),
            finished_at: Vec::new(),
        };
        for (index, checkpoint) in batch.iter().enumerate() {
            let run_id = checkpoint.run_id.0;
            let kind = checkpoint.event.kind();
            let at = || format!("checkpoint {} of {} (run {run_id})", index + 1, batch.len());
            match &checkpoint.event {
                Event::RunCreated { .. } => {
                    return Err(invalid(
                        context,
                        format!(
                            "{} is a `run_created` event: runs are created with create_run, not appended",
                            at()
                        ),
                    ));
                }
                Event::RunFinished { state, at, .. } => {
                    let status = RunStatus::from(*state).as_str();
                    match encoded.finished_runs.iter().position(|run| *run == run_id) {
                        Some(earlier) => {
                            encoded.finished_statuses[earlier] = status;
                            encoded.finished_at[earlier] = *at;
                        }
                        None => {
                            encoded.finished_runs.push(run_id);
                            encoded.finished_statuses.push(status);
                            encoded.finished_at.push(*at);
                        }
                    }
                }
                _ => {}
            }
            let payload = serde_json::to_string(&checkpoint.event).map_err(|error| {
                invalid(
                    context,
                    format!("{} (`{kind}`) does not serialize: {error}", at()),
                )
            })?;
            if encoded.runs.last() != Some(&run_id) && !encoded.runs.contains(&run_id) {
                encoded.runs.push(run_id);
            }
            encoded.run_ids.push(run_id);
            encoded.kinds.push(kind);
            encoded.payloads.push(payload);
        }
        Ok(encoded)
    }
}

/// The whole append, one statement in its own (implicit) transaction, so it costs one round
/// trip and one commit:
/// 1. lock the batch's runs `FOR KEY SHARE` (appends do not block each other; a claim's
///    `FOR UPDATE` waits for this append, or this append for the claim) and decide whether
///    every run exists and accepts the epoch;
/// 2. only then take the positions from the head of the log, whose row lock is held until
///    the commit, so positions are handed out in commit order; a fenced append (`$12` not
///    `NULL`) also checks and raises the leader epoch there (see `fence.rs`: a head updated
///    meanwhile is re-checked in its committed version);
/// 3. record the write id, insert the checkpoints, record finished runs.
///
/// When step 1 or the leader fence refuses, nothing is written and the runs' owner epochs
/// come back for the error. `$1` batch size, `$2` write id, `$3` epoch, `$4` commit time,
/// `$5`-`$7` per checkpoint: run id, kind, payload; `$8` the runs; `$9`-`$11` the finished
/// runs, their status and end time; `$12` the leader epoch (`NULL`: unfenced).
const APPEND: &str = "
WITH owners AS (
    SELECT run_id, owner_epoch FROM runs WHERE run_id = ANY($8::uuid[]) FOR KEY SHARE
), verdict AS (
    SELECT count(*) = cardinality($8::uuid[]) AND coalesce(bool_and(owner_epoch <= $3), true)
        AS accepted
    FROM owners
), head AS (
    UPDATE log_head SET last = last + $1, leader_epoch = coalesce($12::bigint, leader_epoch)
    WHERE (SELECT accepted FROM verdict) AND ($12::bigint IS NULL OR leader_epoch <= $12::bigint)
    RETURNING last
), batch AS (
    INSERT INTO batches (batch_id, last_position, epoch) SELECT $2, last, $3 FROM head
), appended AS (
    INSERT INTO checkpoints (position, epoch, run_id, recorded_at, kind, payload)
    SELECT head.last - $1 + item.number, $3, item.run_id, $4, item.kind, item.payload::json
    FROM head, unnest($5::uuid[], $6::text[], $7::text[])
        WITH ORDINALITY AS item(run_id, kind, payload, number)
), finished AS (
    UPDATE runs SET status = f.status, finished_at = f.at
    FROM head, unnest($9::uuid[], $10::text[], $11::bigint[]) AS f(run_id, status, at)
    WHERE runs.run_id = f.run_id
)
SELECT (SELECT last FROM head), ARRAY(SELECT run_id FROM owners),
    ARRAY(SELECT owner_epoch FROM owners)";

/// See [`crate::store::CheckpointStore::append`]; the batch is not empty; `fence` is the
/// handle's leader epoch (`None`: unfenced). `batch_id` identifies the write across attempts:
/// a retry (`attempt` > 1) whose first attempt committed returns that attempt's position
/// instead of appending again, also when the retry itself is refused (the first attempt was
/// checked when it committed).
pub(super) async fn append(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    encoded: &Encoded,
    fence: Option<FenceEpoch>,
    batch_id: Uuid,
    attempt: u32,
) -> Result<LogPosition, Failure> {
    if attempt > 1
        && let Some((last, _)) = committed_batch(context, client, batch_id).await?
    {
        return Ok(last);
    }
    let doing = "appending checkpoints";
    let failed = |error| pg(context, doing, error);
    let statement = client.prepare_cached(APPEND).await.map_err(failed)?;
    let size = encoded.run_ids.len() as i64;
    let epoch = encoded.epoch.0 as i64;
    let appended = client
        .query_one(
            &statement,
            &[
                &size,
                &batch_id,
                &epoch,
                &now_millis(),
                &encoded.run_ids,
                &encoded.kinds,
                &encoded.payloads,
                &encoded.runs,
                &encoded.finished_runs,
                &encoded.finished_statuses,
                &encoded.finished_at,
                &fence::parameter(fence),
            ],
        )
        .await;
    let row = match appended {
        Ok(row) => row,
        Err(error) if is_unique_violation(&error, "batches_pkey") => {
            // The first attempt committed while this one waited for the head's lock.
            return match committed_batch(context, client, batch_id).await? {
                Some((last, _)) => Ok(last),
                None => Err(Failure::Final(backend(
                    context,
                    format!(
                        "{doing}: write {batch_id} is recorded as committed but cannot be found"
                    ),
                ))),
            };
        }
        Err(error) => return Err(failed(error)),
    };
    let last: Option<i64> = row.try_get(0).map_err(failed)?;
    match last {
        Some(last) => Ok(position_from(context, last, "the appended position")?),
        None => {
            // Refused. A first attempt still committing when this statement started has
            // finished now (it held the head's lock), so a new statement sees it.
            if attempt > 1
                && let Some((last, _)) = committed_batch(context, client, batch_id).await?
            {
                return Ok(last);
            }
            if let Some(error) = fence::superseded_by(context, &*client, fence, doing).await? {
                return Err(Failure::Final(error));
            }
            let runs: Vec<Uuid> = row.try_get(1).map_err(failed)?;
            let epochs: Vec<i64> = row.try_get(2).map_err(failed)?;
            Err(Failure::Final(refusal(context, encoded, &runs, &epochs)?))
        }
    }
}

/// Why the append was refused, for the first checkpoint (in batch order) whose run does
/// not exist or is owned by a newer epoch; `runs` and `owner_epochs` are what the append
/// found.
fn refusal(
    context: &Context,
    encoded: &Encoded,
    runs: &[Uuid],
    owner_epochs: &[i64],
) -> Result<StoreError, StoreError> {
    let mut owners: HashMap<Uuid, Epoch> = HashMap::with_capacity(runs.len());
    for (run_id, owner_epoch) in runs.iter().zip(owner_epochs) {
        owners.insert(
            *run_id,
            epoch_from(context, *owner_epoch, "an owner epoch")?,
        );
    }
    let total = encoded.run_ids.len();
    for (index, run_id) in encoded.run_ids.iter().enumerate() {
        match owners.get(run_id) {
            None => {
                return Ok(invalid(
                    context,
                    format!(
                        "checkpoint {} of {total} (`{}`) is for run {run_id}, which does not exist: create it first",
                        index + 1,
                        encoded.kinds[index]
                    ),
                ));
            }
            Some(owner_epoch) if encoded.epoch < *owner_epoch => {
                return Ok(StoreError::Fenced {
                    run_id: crate::checkpoint::RunId(*run_id),
                    epoch: encoded.epoch,
                    owner_epoch: *owner_epoch,
                });
            }
            Some(_) => {}
        }
    }
    Err(backend(
        context,
        format!(
            "appending {total} checkpoints: PostgreSQL refused the batch, but every run exists and accepts epoch {} (owners found: {runs:?})",
            encoded.epoch
        ),
    ))
}

/// The last position and epoch recorded by the committed write `batch_id`, if it committed.
pub(super) async fn committed_batch(
    context: &Context,
    client: &tokio_postgres::Client,
    batch_id: Uuid,
) -> Result<Option<(LogPosition, Epoch)>, Failure> {
    let doing = "looking for an earlier attempt of this write";
    let row = client
        .query_opt(
            "SELECT last_position, epoch FROM batches WHERE batch_id = $1",
            &[&batch_id],
        )
        .await
        .map_err(|error| pg(context, doing, error))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let last: i64 = row.try_get(0).map_err(|error| pg(context, doing, error))?;
    let epoch: i64 = row.try_get(1).map_err(|error| pg(context, doing, error))?;
    Ok(Some((
        position_from(context, last, "a recorded position")?,
        epoch_from(context, epoch, "a recorded epoch")?,
    )))
}

/// A stored position as a [`LogPosition`]; `what` names it in the error.
pub(super) fn position_from(
    context: &Context,
    value: i64,
    what: &str,
) -> Result<LogPosition, StoreError> {
    u64::try_from(value).map_err(|_| {
        corrupt(
            context,
            format!("{what}: expected a non-negative position, found {value}"),
        )
    })
}

/// A stored epoch as an [`Epoch`]; `what` names it in the error.
pub(super) fn epoch_from(context: &Context, value: i64, what: &str) -> Result<Epoch, StoreError> {
    u64::try_from(value).map(Epoch).map_err(|_| {
        corrupt(
            context,
            format!("{what}: expected a non-negative epoch, found {value}"),
        )
    })
}
