//! The append transaction, and what the write transactions share.

use std::collections::HashMap;

use uuid::Uuid;

use super::Context;
use super::error::{backend, corrupt, invalid, is_unique_violation, pg};
use super::retry::Failure;
use crate::checkpoint::{Epoch, Event, LogPosition, NewCheckpoint, now_millis};
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
    /// The `run_finished` checkpoints: run, status, end time; in batch order.
    finished: Vec<(Uuid, &'static str, i64)>,
}

impl Encoded {
    /// Errors ([`StoreError::InvalidAppend`]): an epoch above `i64::MAX`, a `run_created`
    /// event (runs are created with `create_run`), an event that does not serialize.
    pub fn new(
        context: &Context,
        epoch: Epoch,
        batch: &[NewCheckpoint],
    ) -> Result<Encoded, StoreError> {
        if i64::try_from(epoch.0).is_err() {
            return Err(invalid(
                context,
                format!("expected an epoch of at most {}, found {epoch}", i64::MAX),
            ));
        }
        let mut encoded = Encoded {
            epoch,
            run_ids: Vec::with_capacity(batch.len()),
            kinds: Vec::with_capacity(batch.len()),
            payloads: Vec::with_capacity(batch.len()),
            runs: Vec::new(),
            finished: Vec::new(),
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
                    encoded
                        .finished
                        .push((run_id, RunStatus::from(*state).as_str(), *at));
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

/// Takes the positions (the head's row lock, held to `COMMIT`, so positions are handed out in
/// commit order), records the write's id and inserts the checkpoints, in one statement.
/// `$1` batch size, `$2` batch id, `$3` epoch, `$4` commit time, `$5`-`$7` per checkpoint:
/// run id, kind, payload.
const APPEND: &str = "
WITH head AS (
    UPDATE log_head SET last = last + $1 RETURNING last
), batch AS (
    INSERT INTO batches (batch_id, last_position, epoch) SELECT $2, last, $3 FROM head
), appended AS (
    INSERT INTO checkpoints (position, epoch, run_id, recorded_at, kind, payload)
    SELECT head.last - $1 + item.number, $3, item.run_id, $4, item.kind, item.payload::json
    FROM head, unnest($5::uuid[], $6::text[], $7::text[])
        WITH ORDINALITY AS item(run_id, kind, payload, number)
)
SELECT last FROM head";

/// See [`crate::store::CheckpointStore::append`]; the batch is not empty. `batch_id`
/// identifies the write across attempts: a retry (`attempt` > 1) whose first attempt
/// committed returns that attempt's position instead of appending again.
pub(super) async fn append(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    encoded: &Encoded,
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
    let epoch = encoded.epoch.0 as i64;
    let transaction = client.transaction().await.map_err(failed)?;
    check_owners(context, &transaction, encoded).await?;
    if !encoded.finished.is_empty() {
        let finish = transaction
            .prepare_cached("UPDATE runs SET status = $2, finished_at = $3 WHERE run_id = $1")
            .await
            .map_err(failed)?;
        for (run_id, status, at) in &encoded.finished {
            transaction
                .execute(&finish, &[run_id, status, at])
                .await
                .map_err(|error| pg(context, "recording the end of a run", error))?;
        }
    }
    let statement = transaction.prepare_cached(APPEND).await.map_err(failed)?;
    let size = encoded.run_ids.len() as i64;
    let appended = transaction
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
            ],
        )
        .await;
    let last: i64 = match appended.and_then(|row| row.try_get(0)) {
        Ok(last) => last,
        Err(error) if is_unique_violation(&error, "batches_pkey") => {
            // The first attempt committed while this one waited for the head's lock.
            drop(transaction);
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
    transaction.commit().await.map_err(failed)?;
    Ok(position_from(context, last, "the appended position")?)
}

/// Locks the rows of the batch's runs (`FOR KEY SHARE`: appends do not block each other, a
/// claim's `FOR UPDATE` waits for this transaction, or this one for the claim's) and checks,
/// in batch order, that each run exists and is not owned by a newer epoch.
async fn check_owners(
    context: &Context,
    transaction: &deadpool_postgres::Transaction<'_>,
    encoded: &Encoded,
) -> Result<(), Failure> {
    let doing = "checking the runs' owner epochs";
    let statement = transaction
        .prepare_cached("SELECT run_id, owner_epoch FROM runs WHERE run_id = ANY($1) FOR KEY SHARE")
        .await
        .map_err(|error| pg(context, doing, error))?;
    let rows = transaction
        .query(&statement, &[&encoded.runs])
        .await
        .map_err(|error| pg(context, doing, error))?;
    let mut owners: HashMap<Uuid, Epoch> = HashMap::with_capacity(rows.len());
    for row in rows {
        let run_id: Uuid = row.try_get(0).map_err(|error| pg(context, doing, error))?;
        let owner_epoch: i64 = row.try_get(1).map_err(|error| pg(context, doing, error))?;
        owners.insert(run_id, epoch_from(context, owner_epoch, "an owner epoch")?);
    }
    let total = encoded.run_ids.len();
    for (index, run_id) in encoded.run_ids.iter().enumerate() {
        match owners.get(run_id) {
            None => {
                return Err(Failure::Final(invalid(
                    context,
                    format!(
                        "checkpoint {} of {total} (`{}`) is for run {run_id}, which does not exist: create it first",
                        index + 1,
                        encoded.kinds[index]
                    ),
                )));
            }
            Some(owner_epoch) if encoded.epoch < *owner_epoch => {
                return Err(Failure::Final(StoreError::Fenced {
                    run_id: crate::checkpoint::RunId(*run_id),
                    epoch: encoded.epoch,
                    owner_epoch: *owner_epoch,
                }));
            }
            Some(_) => {}
        }
    }
    Ok(())
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
