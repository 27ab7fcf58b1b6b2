//! [`crate::store::replication::ReplicationStore`] in PostgreSQL (schema: migration
//! `V3__region_replication.sql`).
//!
//! - The role and the region epoch are columns `region_role` and `region_epoch` of
//!   `log_head`, beside the leader fence, so that every fenced write checks the role in the
//!   statement that checks the leader epoch (see `fence.rs`). The rest of the state is the
//!   one-row table `region_state`.
//! - Every call that changes the state (`init_region`, `apply_replicated`, `promote`,
//!   `demote`, `rejoin`) first locks the head's row (`FOR NO KEY UPDATE`, which every write
//!   also takes), so it is serialized with every write: once a demotion has committed, no
//!   fenced write commits, including one that was waiting for the lock.
//! - Positions are shipped as they are (a standby's log is the active region's, position
//!   for position). Workflow registrations are shipped with the source's `registration`
//!   number, which is only a cursor (`applied_registration`): the standby registers them in
//!   that order under its own numbers, and the cursor starts again from 0 whenever the
//!   active region changes (a workflow present already with the same text is skipped).
//! - The epoch sequence `epochs` stays above every stored epoch: applying raises it past the
//!   batch's epochs, and promotion past every epoch in `runs` and `checkpoints`, so a run
//!   claimed after promotion outranks every replicated owner. (Raising a sequence is not
//!   transactional; a batch that is then rolled back leaves it higher, which is harmless.)

mod apply;
mod batch;
mod insert;
mod read;
mod rejoin;
mod roles;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::Context;
use super::error::{corrupt, invalid, pg};
use super::fence::role_from;
use super::read::column;
use super::retry::Failure;
use super::write::position_from;
use crate::checkpoint::LogPosition;
use crate::store::replication::{RegionState, TailRange};
use crate::store::{RoleRefusal, StoreError};

pub(super) use apply::apply_replicated;
pub(super) use batch::PreparedBatch;
pub(super) use read::read_replication;
pub(super) use rejoin::{rejoin, tail_report};
pub(super) use roles::{demote, init_region, promote};

/// The columns of [`RegionState`] and the head's position, from `log_head AS h` and
/// `region_state AS s`.
const STATE: &str = "SELECT s.region, h.region_role, h.region_epoch, s.active_region,
    s.applied_position, s.applied_registration, s.applied_at, s.applied_recorded_at,
    s.source_latest_position, s.promoted_at_position, s.tail_from, s.tail_to, h.last
FROM log_head AS h CROSS JOIN region_state AS s";

/// The region state and the head of the log, read together.
#[derive(Debug)]
pub(super) struct Head {
    /// The state.
    pub state: RegionState,
    /// `log_head.last`: the latest position.
    pub last: LogPosition,
}

/// See [`crate::store::replication::ReplicationStore::region_state`].
pub(super) async fn region_state(
    context: &Context,
    client: &impl GenericClient,
) -> Result<RegionState, Failure> {
    Ok(
        read_head(context, client, false, "reading the region state")
            .await?
            .state,
    )
}

/// Reads the state and the head; with `lock`, locks the head's row and the state's until
/// the transaction of `client` ends (waiting for every write in progress to commit).
pub(super) async fn read_head(
    context: &Context,
    client: &impl GenericClient,
    lock: bool,
    doing: &str,
) -> Result<Head, Failure> {
    let statement = if lock {
        client
            .prepare_cached(&format!("{STATE} FOR NO KEY UPDATE OF h, s"))
            .await
    } else {
        client.prepare_cached(STATE).await
    }
    .map_err(|error| pg(context, doing, error))?;
    let row = client
        .query_one(&statement, &[])
        .await
        .map_err(|error| pg(context, doing, error))?;
    Ok(decode_head(context, &row)?)
}

fn decode_head(context: &Context, row: &Row) -> Result<Head, StoreError> {
    let at = "the region state (tables log_head and region_state)";
    let get_position = |index: usize, name: &str| -> Result<LogPosition, StoreError> {
        let value: i64 = column(context, row, index, name, at)?;
        position_from(context, value, &format!("{at}: column {name}"))
    };
    let optional_position = |index: usize, name: &str| -> Result<Option<LogPosition>, StoreError> {
        let value: Option<i64> = column(context, row, index, name, at)?;
        value
            .map(|value| position_from(context, value, &format!("{at}: column {name}")))
            .transpose()
    };
    let role: &str = column(context, row, 1, "region_role", at)?;
    let region_epoch: i64 = column(context, row, 2, "region_epoch", at)?;
    let applied_registration: i64 = column(context, row, 5, "applied_registration", at)?;
    let tail = match (
        optional_position(10, "tail_from")?,
        optional_position(11, "tail_to")?,
    ) {
        (Some(from), Some(to)) => Some(TailRange { from, to }),
        (None, None) => None,
        (from, to) => {
            return Err(corrupt(
                context,
                format!(
                    "{at}: expected tail_from and tail_to both set or both NULL, found {from:?} and {to:?}"
                ),
            ));
        }
    };
    let non_negative = |value: i64, name: &str| {
        u64::try_from(value).map_err(|_| {
            corrupt(
                context,
                format!("{at}: column {name}: expected a non-negative number, found {value}"),
            )
        })
    };
    Ok(Head {
        state: RegionState {
            region: column(context, row, 0, "region", at)?,
            role: role_from(context, role)?,
            region_epoch: non_negative(region_epoch, "region_epoch")?,
            active_region: column(context, row, 3, "active_region", at)?,
            applied_position: get_position(4, "applied_position")?,
            applied_registration: non_negative(applied_registration, "applied_registration")?,
            applied_at: column(context, row, 6, "applied_at", at)?,
            applied_recorded_at: column(context, row, 7, "applied_recorded_at", at)?,
            source_latest_position: get_position(8, "source_latest_position")?,
            promoted_at_position: optional_position(9, "promoted_at_position")?,
            tail,
        },
        last: get_position(12, "last")?,
    })
}

/// The refusal of `action` (`promotion`, `rejoin`, `applying a batch from eu-west`) by a
/// store in `state`, which the call needs `expected` (`standby`).
pub(super) fn not_standby(
    context: &Context,
    action: &str,
    state: &RegionState,
    expected: &str,
) -> StoreError {
    StoreError::NotStandby(Box::new(RoleRefusal {
        action: action.to_string(),
        region: state.region.clone(),
        role: state.role.to_string(),
        active_region: state.active_region.clone(),
        expected: expected.to_string(),
        location: context.location.clone(),
    }))
}

/// The refusal of `action` carrying region epoch `given` by a store in `state`, which needs
/// one `expected` (`at least`, `higher than`) its own.
pub(super) fn stale_region_epoch(
    context: &Context,
    action: &str,
    given: u64,
    expected: &str,
    state: &RegionState,
) -> StoreError {
    StoreError::StaleRegionEpoch {
        action: action.to_string(),
        given,
        expected: expected.to_string(),
        current: state.region_epoch,
        location: context.location.clone(),
    }
}

/// `value` (a region epoch, a position, a registration number given by the caller, named by
/// `what`) as a bigint column.
///
/// Errors: [`StoreError::InvalidAppend`] above `i64::MAX`.
pub(super) fn bigint(context: &Context, value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        invalid(
            context,
            format!("expected {what} of at most {}, found {value}", i64::MAX),
        )
    })
}
