//! The region leader fence in PostgreSQL: column `leader_epoch` of the one-row table
//! `log_head`.
//!
//! A fenced write raises it with `UPDATE log_head SET leader_epoch = $1 WHERE leader_epoch <=
//! $1`, in the write's transaction. The `UPDATE` takes the row's lock (held until the commit),
//! and a write that waited for that lock while another transaction raised the epoch
//! re-evaluates its `WHERE` on the committed new row version (READ COMMITTED's rule for
//! `UPDATE`), so it is refused. A plain `SELECT` would read its snapshot's value instead,
//! which is why every check goes through the `UPDATE` (appends and creations fold it into
//! their `UPDATE log_head`).

use deadpool_postgres::GenericClient;

use super::Context;
use super::error::{corrupt, pg};
use super::retry::Failure;
use crate::store::StoreError;
use crate::store::fence::{leader_epoch_column, leader_epoch_from, superseded};

/// The leader epoch a fenced handle's write carries, checked and encoded before any
/// connection is used (and kept across retries of the write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FenceEpoch {
    /// The epoch.
    pub epoch: u64,
    /// The epoch as column `leader_epoch`.
    pub column: i64,
}

impl FenceEpoch {
    /// `epoch` (`None` for an unfenced handle) ready for the statements.
    ///
    /// Errors: [`StoreError::InvalidAppend`] for an epoch above `i64::MAX`.
    pub fn new(context: &Context, epoch: Option<u64>) -> Result<Option<FenceEpoch>, StoreError> {
        epoch
            .map(|epoch| {
                Ok(FenceEpoch {
                    epoch,
                    column: leader_epoch_column(&context.location, epoch)?,
                })
            })
            .transpose()
    }
}

/// The epoch parameter of the statements: `NULL` for an unfenced write.
pub(super) fn parameter(fence: Option<FenceEpoch>) -> Option<i64> {
    fence.map(|fence| fence.column)
}

/// Checks `fence` against the highest leader epoch and raises it, in `client`'s transaction
/// (the row lock of `log_head` is held until it ends). Does nothing for an unfenced write.
///
/// Errors: [`StoreError::Superseded`] (the transaction must then be rolled back; this
/// statement changed nothing).
pub(super) async fn check(
    context: &Context,
    client: &impl GenericClient,
    fence: Option<FenceEpoch>,
    doing: &str,
) -> Result<(), Failure> {
    let Some(fence) = fence else {
        return Ok(());
    };
    if raise(context, client, fence, doing).await? {
        Ok(())
    } else {
        Err(refused(context, client, fence, doing).await)
    }
}

/// Raises the highest leader epoch to `fence`'s; `false` when it is higher.
async fn raise(
    context: &Context,
    client: &impl GenericClient,
    fence: FenceEpoch,
    doing: &str,
) -> Result<bool, Failure> {
    let statement = client
        .prepare_cached(
            "UPDATE log_head SET leader_epoch = $1 WHERE leader_epoch <= $1 RETURNING leader_epoch",
        )
        .await
        .map_err(|error| pg(context, doing, error))?;
    Ok(client
        .query_opt(&statement, &[&fence.column])
        .await
        .map_err(|error| pg(context, doing, error))?
        .is_some())
}

/// The refusal of a write carrying `fence`, whose check found a higher leader epoch: reads
/// that epoch for the message (a new statement, so it sees the raise that refused the
/// write).
pub(super) async fn refused(
    context: &Context,
    client: &impl GenericClient,
    fence: FenceEpoch,
    doing: &str,
) -> Failure {
    match highest(context, client, doing).await {
        Ok(highest) if highest > fence.epoch => {
            Failure::Final(superseded(&context.location, fence.epoch, highest))
        }
        Ok(highest) => Failure::Final(corrupt(
            context,
            format!(
                "{doing}: table log_head refused leader epoch {} although its leader_epoch is {highest}, not higher",
                fence.epoch
            ),
        )),
        Err(failure) => failure,
    }
}

/// Whether a write refused by its statement was refused by the leader fence: reads the
/// highest leader epoch (a new statement, so it sees a raise that committed meanwhile) and
/// returns the [`StoreError::Superseded`] when it is above `fence`'s epoch.
pub(super) async fn superseded_by(
    context: &Context,
    client: &impl GenericClient,
    fence: Option<FenceEpoch>,
    doing: &str,
) -> Result<Option<StoreError>, Failure> {
    let Some(fence) = fence else {
        return Ok(None);
    };
    let highest = highest(context, client, doing).await?;
    Ok((highest > fence.epoch).then(|| superseded(&context.location, fence.epoch, highest)))
}

/// See [`crate::store::CheckpointStore::raise_fence`] for a fenced handle: one statement.
pub(super) async fn raise_fence(
    context: &Context,
    client: &deadpool_postgres::Client,
    fence: FenceEpoch,
) -> Result<u64, Failure> {
    let doing = "raising the leader epoch";
    if raise(context, client, fence, doing).await? {
        Ok(fence.epoch)
    } else {
        Err(refused(context, client, fence, doing).await)
    }
}

/// See [`crate::store::CheckpointStore::leader_epoch`].
pub(super) async fn highest(
    context: &Context,
    client: &impl GenericClient,
    doing: &str,
) -> Result<u64, Failure> {
    let statement = client
        .prepare_cached("SELECT leader_epoch FROM log_head")
        .await
        .map_err(|error| pg(context, doing, error))?;
    let value: i64 = client
        .query_one(&statement, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|error| pg(context, doing, error))?;
    Ok(
        leader_epoch_from("column leader_epoch of table log_head", value)
            .map_err(|detail| corrupt(context, detail))?,
    )
}
