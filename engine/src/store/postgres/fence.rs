//! The region fences in PostgreSQL: columns `leader_epoch` (the leader fence) and
//! `region_role` (the region's role, see [`crate::store::replication`]) of the one-row table
//! `log_head`.
//!
//! A fenced write raises the leader epoch with `UPDATE log_head SET leader_epoch = $1 WHERE
//! leader_epoch <= $1 AND region_role = 'active'`, in the write's transaction. The `UPDATE`
//! takes the row's lock (held until the commit), and a write that waited for that lock while
//! another transaction raised the epoch or changed the role re-evaluates its `WHERE` on the
//! committed new row version (READ COMMITTED's rule for `UPDATE`), so it is refused. A plain
//! `SELECT` would read its snapshot's values instead, which is why every check goes through
//! the `UPDATE` (appends and creations fold it into their `UPDATE log_head`). `raise_fence`
//! checks the leader epoch only: a standby region elects leaders too.

use deadpool_postgres::GenericClient;

use super::Context;
use super::error::{corrupt, pg};
use super::retry::Failure;
use crate::store::StoreError;
use crate::store::fence::{leader_epoch_column, leader_epoch_from, superseded};
use crate::store::replication::RegionRole;

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

/// What a refused statement was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The leader epoch only (`raise_fence`).
    Leader,
    /// The leader epoch and the region's role (every other fenced write).
    LeaderAndRole,
}

/// The epoch parameter of the statements: `NULL` for an unfenced write.
pub(super) fn parameter(fence: Option<FenceEpoch>) -> Option<i64> {
    fence.map(|fence| fence.column)
}

/// Checks `fence` against the highest leader epoch and the region's role, and raises the
/// leader epoch, in `client`'s transaction (the row lock of `log_head` is held until it
/// ends). Does nothing for an unfenced write.
///
/// Errors: [`StoreError::Superseded`], [`StoreError::NotActive`] (the transaction must then
/// be rolled back; this statement changed nothing).
pub(super) async fn check(
    context: &Context,
    client: &impl GenericClient,
    fence: Option<FenceEpoch>,
    doing: &str,
) -> Result<(), Failure> {
    let Some(fence) = fence else {
        return Ok(());
    };
    if raise(context, client, fence, Guard::LeaderAndRole, doing).await? {
        Ok(())
    } else {
        Err(refused(context, client, fence, doing).await)
    }
}

/// Raises the highest leader epoch to `fence`'s; `false` when it is higher (or, with
/// [`Guard::LeaderAndRole`], when the region is not active).
async fn raise(
    context: &Context,
    client: &impl GenericClient,
    fence: FenceEpoch,
    guard: Guard,
    doing: &str,
) -> Result<bool, Failure> {
    let statement = match guard {
        Guard::Leader => {
            "UPDATE log_head SET leader_epoch = $1 WHERE leader_epoch <= $1 RETURNING leader_epoch"
        }
        Guard::LeaderAndRole => {
            "UPDATE log_head SET leader_epoch = $1
             WHERE leader_epoch <= $1 AND region_role = 'active' RETURNING leader_epoch"
        }
    };
    let statement = client
        .prepare_cached(statement)
        .await
        .map_err(|error| pg(context, doing, error))?;
    Ok(client
        .query_opt(&statement, &[&fence.column])
        .await
        .map_err(|error| pg(context, doing, error))?
        .is_some())
}

/// The refusal of a write carrying `fence`, whose check (leader epoch and role) refused it:
/// reads the head (a new statement, so it sees the change that refused the write).
/// [`StoreError::Superseded`] when a higher leader epoch is recorded, else
/// [`StoreError::NotActive`] when the region is not active; when neither holds any more
/// (the region was promoted since), a transient failure, so that the write is tried again.
pub(super) async fn refused(
    context: &Context,
    client: &impl GenericClient,
    fence: FenceEpoch,
    doing: &str,
) -> Failure {
    match region_refusal(context, client, Some(fence), doing).await {
        Ok(Some(error)) => Failure::Final(error),
        Ok(None) => Failure::Transient(format!(
            "{doing}: refused by the region fence, but the leader epoch {} is not superseded and the region is active now (it was promoted meanwhile)",
            fence.epoch
        )),
        Err(failure) => failure,
    }
}

/// Whether a write refused by its statement was refused by the region fences: reads the
/// head (a new statement, so it sees a change that committed meanwhile) and returns
/// [`StoreError::Superseded`] when its leader epoch is above `fence`'s (reported first: the
/// caller must step down), else [`StoreError::NotActive`] when the region's role is not
/// active. `None` for an unfenced write, or when neither fence refuses.
pub(super) async fn region_refusal(
    context: &Context,
    client: &impl GenericClient,
    fence: Option<FenceEpoch>,
    doing: &str,
) -> Result<Option<StoreError>, Failure> {
    let Some(fence) = fence else {
        return Ok(None);
    };
    let head = head(context, client, doing).await?;
    if head.leader_epoch > fence.epoch {
        return Ok(Some(superseded(
            &context.location,
            fence.epoch,
            head.leader_epoch,
        )));
    }
    if head.role != RegionRole::Active {
        return Ok(Some(StoreError::NotActive {
            region: head.region,
            role: head.role,
            active_region: head.active_region,
            location: context.location.clone(),
        }));
    }
    Ok(None)
}

/// See [`crate::store::CheckpointStore::raise_fence`] for a fenced handle: one statement,
/// whatever the region's role.
pub(super) async fn raise_fence(
    context: &Context,
    client: &deadpool_postgres::Client,
    fence: FenceEpoch,
) -> Result<u64, Failure> {
    let doing = "raising the leader epoch";
    if raise(context, client, fence, Guard::Leader, doing).await? {
        return Ok(fence.epoch);
    }
    let highest = highest(context, client, doing).await?;
    if highest > fence.epoch {
        Err(Failure::Final(superseded(
            &context.location,
            fence.epoch,
            highest,
        )))
    } else {
        Err(Failure::Final(corrupt(
            context,
            format!(
                "{doing}: table log_head refused leader epoch {} although its leader_epoch is {highest}, not higher",
                fence.epoch
            ),
        )))
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

/// What a refusal reports: the head's fences and the region's names.
struct Head {
    leader_epoch: u64,
    role: RegionRole,
    region: String,
    active_region: String,
}

/// Reads [`Head`] in a new statement.
async fn head(
    context: &Context,
    client: &impl GenericClient,
    doing: &str,
) -> Result<Head, Failure> {
    let statement = client
        .prepare_cached(
            "SELECT h.leader_epoch, h.region_role, s.region, s.active_region
             FROM log_head AS h CROSS JOIN region_state AS s",
        )
        .await
        .map_err(|error| pg(context, doing, error))?;
    let row = client
        .query_one(&statement, &[])
        .await
        .map_err(|error| pg(context, doing, error))?;
    let failed = |error| pg(context, doing, error);
    let leader_epoch: i64 = row.try_get(0).map_err(failed)?;
    let role: &str = row.try_get(1).map_err(failed)?;
    Ok(Head {
        leader_epoch: leader_epoch_from("column leader_epoch of table log_head", leader_epoch)
            .map_err(|detail| corrupt(context, detail))?,
        role: role_from(context, role)?,
        region: row.try_get(2).map_err(failed)?,
        active_region: row.try_get(3).map_err(failed)?,
    })
}

/// Column `region_role` of table `log_head` as a [`RegionRole`].
///
/// Errors: [`StoreError::Corrupt`] for a spelling [`RegionRole::parse`] does not know.
pub(super) fn role_from(context: &Context, role: &str) -> Result<RegionRole, StoreError> {
    RegionRole::parse(role).ok_or_else(|| {
        corrupt(
            context,
            format!(
                "column region_role of table log_head: expected active, standby or fenced, found `{role}`"
            ),
        )
    })
}
