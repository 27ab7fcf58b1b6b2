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
    /// The runs the batch finishes.
    finished: FinishedRuns,
}

/// The runs a batch of checkpoints finishes, as the parameters of the `UPDATE runs` that
/// projects them (appends here, replicated batches in `replication/apply.rs`): for each run
/// its status and end time from its last `run_finished` event in the batch.
#[derive(Debug, Default)]
pub(super) struct FinishedRuns {
    /// The runs.
    pub runs: Vec<Uuid>,
    /// Their status (column `status`).
    pub statuses: Vec<&'static str>,
    /// Their end time (column `finished_at`, ms since the Unix epoch).
    pub at: Vec<i64>,
}

impl FinishedRuns {
    /// Notes `event` of run `run_id`, the batch's next checkpoint: a `run_finished` event sets
    /// the run's status and end time (a later one in the batch wins); others change nothing.
    pub fn note(&mut self, run_id: Uuid, event: &Event) {
        let Event::RunFinished { state, at, .. } = event else {
            return;
        };
        let status = RunStatus::from(*state).as_str();
        match self.runs.iter().position(|run| *run == run_id) {
            Some(earlier) => {
                self.statuses[earlier] = status;
                self.at[earlier] = *at;
            }
            None => {
                self.runs.push(run_id);
                self.statuses.push(status);
                self.at.push(*at);
            }
        }
    }
}

/// Sets the status and end time of the runs in `$1` to `$2` and `$3` (a [`FinishedRuns`]).
pub(super) const FINISH_RUNS: &str = "
UPDATE runs SET status = f.status, finished_at = f.at
FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS f(run_id, status, at)
WHERE runs.run_id = f.run_id";

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
            finished: FinishedRuns::default(),
        };
        for (index, checkpoint) in batch.iter().enumerate() {
            let run_id = checkpoint.run_id.0;
            let kind = checkpoint.event.kind();
            let at = || format!("checkpoint {} of {} (run {run_id})", index + 1, batch.len());
            if let Event::RunCreated { .. } = &checkpoint.event {
                return Err(invalid(
                    context,
                    format!(
                        "{} is a `run_created` event: runs are created with create_run, not appended",
                        at()
                    ),
                ));
            }
            encoded.finished.note(run_id, &checkpoint.event);
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
///    `NULL`) also checks the region's role and checks and raises the leader epoch there
///    (see `fence.rs`: a head updated meanwhile is re-checked in its committed version);
/// 3. record the write id, insert the checkpoints, record finished runs.
///
/// When step 1 or the region fences refuse, nothing is written, and step 1's verdict and the
/// runs' owner epochs come back for the error. `$1` batch size, `$2` write id, `$3` epoch, `$4` commit time,
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
    WHERE (SELECT accepted FROM verdict)
        AND ($12::bigint IS NULL OR (leader_epoch <= $12::bigint AND region_role = 'active'))
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
    ARRAY(SELECT owner_epoch FROM owners), (SELECT accepted FROM verdict)";

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
                &encoded.finished.runs,
                &encoded.finished.statuses,
                &encoded.finished.at,
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
            if let Some(error) = fence::region_refusal(context, &*client, fence, doing).await? {
                return Err(Failure::Final(error));
            }
            let accepted: bool = row.try_get(3).map_err(failed)?;
            if accepted {
                // Only the region fences refused, and neither does now: the region was
                // promoted after the statement. Nothing was written: try again.
                return Err(Failure::Transient(format!(
                    "{doing}: refused by the region fence, but the region is active now (it was promoted meanwhile)"
                )));
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
