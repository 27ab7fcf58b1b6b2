//! The checks both backends make between Tandem's values and the integer and text columns of
//! table `runs` (SQL integers are signed 64-bit): what may be written, and what a stored
//! value must be to be read. Each returns the detail of the backend's error
//! ([`StoreError::InvalidAppend`] for writes, [`StoreError::Corrupt`] for reads), except
//! [`check_idempotency_key`], which has no backend part.

use crate::checkpoint::{Epoch, Event, RunId, UnixMillis};
use crate::store::{Owner, RunStatus, StoreError};

/// The workflow, version and creation time (ms since the Unix epoch) of `created`, the first
/// checkpoint of run `run_id`, which must be an [`Event::RunCreated`].
///
/// Errors: the kind found instead, for [`StoreError::InvalidAppend`].
pub(crate) fn run_created_fields(
    run_id: RunId,
    created: &Event,
) -> Result<(&str, &str, UnixMillis), String> {
    match created {
        Event::RunCreated {
            workflow,
            version,
            at,
            ..
        } => Ok((workflow, version, *at)),
        _ => Err(format!(
            "the first checkpoint of run {run_id} must be a `run_created` event, found `{}`",
            created.kind()
        )),
    }
}

/// `owner`'s start time (clock ticks since boot) as column `owner_start_ticks`.
///
/// Errors: a start time above `i64::MAX` ticks, for [`StoreError::InvalidAppend`].
pub(crate) fn start_ticks_column(owner: &Owner) -> Result<i64, String> {
    i64::try_from(owner.start_ticks).map_err(|_| {
        format!(
            "expected the owner's start time of at most {} clock ticks, found {}",
            i64::MAX,
            owner.start_ticks
        )
    })
}

/// `epoch` as column `epoch`.
///
/// Errors: an epoch above `i64::MAX`, for [`StoreError::InvalidAppend`].
pub(crate) fn epoch_column(epoch: Epoch) -> Result<i64, String> {
    i64::try_from(epoch.0)
        .map_err(|_| format!("expected an epoch of at most {}, found {epoch}", i64::MAX))
}

/// Column `status` of the run described by `at` (`run RUN_ID in table runs`).
///
/// Errors: a spelling [`RunStatus::parse`] does not know, for [`StoreError::Corrupt`].
pub(crate) fn status_from(at: &str, status: &str) -> Result<RunStatus, String> {
    RunStatus::parse(status).ok_or_else(|| {
        format!("{at}: expected a run status (running, succeeded, failed, cancelled, timed_out), found `{status}`")
    })
}

/// Column `owner_pid` of the run described by `at` as a process id.
///
/// Errors: a value outside `0..=u32::MAX`, for [`StoreError::Corrupt`].
pub(crate) fn pid_from(at: &str, owner_pid: i64) -> Result<u32, String> {
    u32::try_from(owner_pid)
        .map_err(|_| format!("{at}: expected a process id in column owner_pid, found {owner_pid}"))
}

/// Refuses an empty `idempotency_key` for creating run `run_id` in the store at `location`.
///
/// Errors: [`StoreError::InvalidAppend`].
pub(crate) fn check_idempotency_key(
    location: &str,
    run_id: RunId,
    idempotency_key: &str,
) -> Result<(), StoreError> {
    if idempotency_key.is_empty() {
        return Err(StoreError::InvalidAppend {
            location: location.to_string(),
            detail: format!(
                "creating run {run_id}: expected a non-empty idempotency key, found an empty one"
            ),
        });
    }
    Ok(())
}

/// Refuses a scheduled run `run_id` of `workflow` whose `created` event is not a
/// `run_created` event of that workflow, for the store at `location`.
///
/// Errors: [`StoreError::InvalidAppend`].
pub(crate) fn check_scheduled_workflow(
    location: &str,
    run_id: RunId,
    workflow: &str,
    created: &Event,
) -> Result<(), StoreError> {
    let invalid = |detail: String| StoreError::InvalidAppend {
        location: location.to_string(),
        detail,
    };
    let (created_workflow, _, _) = run_created_fields(run_id, created).map_err(invalid)?;
    if created_workflow != workflow {
        return Err(invalid(format!(
            "scheduled run {run_id}: expected a `run_created` event of workflow `{workflow}` (the schedule's), found one of workflow `{created_workflow}`"
        )));
    }
    Ok(())
}
