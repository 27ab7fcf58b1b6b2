//! Naming the region, promotion and demotion: each one transaction that locks the head first.

use super::{Head, bigint, not_standby, read_head, stale_region_epoch};
use crate::checkpoint::LogPosition;
use crate::store::StoreError;
use crate::store::postgres::Context;
use crate::store::postgres::error::{invalid, pg};
use crate::store::postgres::retry::Failure;
use crate::store::replication::{RegionRole, RegionState};

/// See [`crate::store::replication::ReplicationStore::init_region`]. A store that is named
/// as a standby must hold no checkpoint yet: a standby's log is the active region's,
/// position for position, and its own checkpoints would stand where the active region's
/// must go.
pub(in crate::store::postgres) async fn init_region(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    region: &str,
    role: RegionRole,
    active_region: &str,
) -> Result<RegionState, Failure> {
    let doing = "naming the store's region";
    if region.is_empty() {
        return Err(invalid(
            context,
            format!("{doing}: expected a region name, found an empty one"),
        )
        .into());
    }
    let active_region = match role {
        RegionRole::Active => region,
        RegionRole::Standby if active_region.is_empty() || active_region == region => {
            return Err(invalid(
                context,
                format!(
                    "{doing}: a standby needs the name of its active region, another than its own ({region}); found `{active_region}`"
                ),
            )
            .into());
        }
        RegionRole::Standby => active_region,
        RegionRole::Fenced => {
            return Err(invalid(
                context,
                format!(
                    "{doing}: expected the initial role active or standby for region {region}, found fenced (a region becomes fenced only by a demotion)"
                ),
            )
            .into());
        }
    };
    let failed = |error| pg(context, doing, error);
    let transaction = client.transaction().await.map_err(failed)?;
    let head = read_head(context, &transaction, true, doing).await?;
    if !head.state.region.is_empty() {
        if head.state.region != region {
            return Err(StoreError::RegionMismatch {
                expected: region.to_string(),
                found: head.state.region,
                location: context.location.clone(),
            }
            .into());
        }
        return Ok(head.state);
    }
    if role == RegionRole::Standby && head.last > 0 {
        return Err(invalid(
            context,
            format!(
                "{doing}: region {region} cannot start as a standby of {active_region}: the store holds {} checkpoints of its own, where the active region's log must go; start a standby from an empty database",
                head.last
            ),
        )
        .into());
    }
    transaction
        .execute("UPDATE log_head SET region_role = $1", &[&role.as_str()])
        .await
        .map_err(failed)?;
    transaction
        .execute(
            "UPDATE region_state SET region = $1, active_region = $2",
            &[&region, &active_region],
        )
        .await
        .map_err(failed)?;
    finish(context, transaction, doing).await
}

/// See [`crate::store::replication::ReplicationStore::promote`]. A retry (`attempt` > 1)
/// that finds the store active with `region_epoch` returns it: the first attempt
/// committed.
pub(in crate::store::postgres) async fn promote(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    region_epoch: u64,
    attempt: u32,
) -> Result<RegionState, Failure> {
    let doing = "promoting the region";
    let epoch_column = bigint(context, region_epoch, "a region epoch")?;
    let failed = |error| pg(context, doing, error);
    let transaction = client.transaction().await.map_err(failed)?;
    let Head { state, last } = read_head(context, &transaction, true, doing).await?;
    if attempt > 1 && state.role == RegionRole::Active && state.region_epoch == region_epoch {
        return Ok(state);
    }
    if state.role != RegionRole::Standby {
        return Err(not_standby(context, "promotion", &state, "standby").into());
    }
    if region_epoch <= state.region_epoch {
        return Err(
            stale_region_epoch(context, "promotion", region_epoch, "higher than", &state).into(),
        );
    }
    let last = bigint(context, last, "a position")?;
    transaction
        .execute(
            "UPDATE log_head SET region_role = 'active', region_epoch = $1",
            &[&epoch_column],
        )
        .await
        .map_err(failed)?;
    transaction
        .execute(
            "UPDATE region_state SET active_region = region, promoted_at_position = $1",
            &[&last],
        )
        .await
        .map_err(failed)?;
    // Past every stored epoch (applying kept it past the replicated ones already; this
    // also covers a store whose batches were applied by an older build).
    transaction
        .execute(
            "SELECT setval('epochs', m) FROM epochs, (SELECT greatest(
                 (SELECT coalesce(max(owner_epoch), 0) FROM runs),
                 (SELECT coalesce(max(epoch), 0) FROM checkpoints)) AS m) AS stored
             WHERE m >= 1 AND last_value <= m",
            &[],
        )
        .await
        .map_err(failed)?;
    finish(context, transaction, doing).await
}

/// See [`crate::store::replication::ReplicationStore::demote`]. Locks the head first, so a
/// fenced write waiting for it re-checks the new role and is refused. A demotion to a
/// standby asks for every workflow registration again (`applied_registration` 0: the
/// numbers are the new active region's; those present are skipped).
///
/// Errors: [`StoreError::InvalidAppend`] for an empty `new_active` or this store's own
/// region, a number above `i64::MAX`.
pub(in crate::store::postgres) async fn demote(
    context: &Context,
    client: &mut deadpool_postgres::Client,
    new_active: &str,
    region_epoch: u64,
    fork_position: LogPosition,
) -> Result<RegionState, Failure> {
    let doing = "demoting the region";
    if new_active.is_empty() {
        return Err(invalid(
            context,
            format!("{doing}: expected the name of the new active region, found an empty one"),
        )
        .into());
    }
    let epoch_column = bigint(context, region_epoch, "a region epoch")?;
    let fork = bigint(context, fork_position, "a fork position")?;
    let failed = |error| pg(context, doing, error);
    let transaction = client.transaction().await.map_err(failed)?;
    let Head { state, last } = read_head(context, &transaction, true, doing).await?;
    if new_active == state.region {
        return Err(invalid(
            context,
            format!(
                "{doing}: expected another region than this store's own ({new_active}) as the new active region"
            ),
        )
        .into());
    }
    if region_epoch <= state.region_epoch {
        return Ok(state);
    }
    let last = bigint(context, last, "a position")?;
    let role = if last <= fork {
        RegionRole::Standby
    } else {
        RegionRole::Fenced
    };
    transaction
        .execute(
            "UPDATE log_head SET region_role = $1, region_epoch = $2",
            &[&role.as_str(), &epoch_column],
        )
        .await
        .map_err(failed)?;
    match role {
        // Nothing after the fork: it applies the new active region's log from its own
        // latest position, and asks for every workflow registration again (their numbers
        // are the new active region's).
        RegionRole::Standby => {
            transaction
                .execute(
                    "UPDATE region_state SET active_region = $1, applied_position = $2,
                         applied_registration = 0, source_latest_position = $2,
                         tail_from = NULL, tail_to = NULL",
                    &[&new_active, &last],
                )
                .await
        }
        _ => {
            transaction
                .execute(
                    "UPDATE region_state SET active_region = $1, tail_from = $2, tail_to = $3",
                    &[&new_active, &(fork + 1), &last],
                )
                .await
        }
    }
    .map_err(failed)?;
    finish(context, transaction, doing).await
}

/// Reads the state written by `transaction` and commits it.
async fn finish(
    context: &Context,
    transaction: deadpool_postgres::Transaction<'_>,
    doing: &str,
) -> Result<RegionState, Failure> {
    let head = read_head(context, &transaction, false, doing).await?;
    transaction
        .commit()
        .await
        .map_err(|error| pg(context, doing, error))?;
    Ok(head.state)
}
