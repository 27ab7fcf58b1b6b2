//! `tandem.v1.LogBatch` → [`ReplicatedBatch`]: a received batch, checked field by field
//! before the store sees it (the replicator of `tandem-dr`, and tests).

use std::fmt;

use tandem_api::proto;

use crate::checkpoint::{Checkpoint, Epoch, Event, LogPosition, RunId};
use crate::store::replication::{
    ReplicatedBatch, ReplicatedCheckpoint, ReplicatedWorkflow, RunOrigin,
};
use crate::store::{Owner, StoredWorkflow};

/// A received `LogBatch` that cannot be applied: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad LogBatch from region `{source_region}`: {place}: `{field}`: {message}")]
pub struct WireError {
    /// The sending region as the batch names it (empty when it names none).
    pub source_region: String,
    /// The checkpoint (by log position), workflow (by registration) or batch field at fault.
    pub place: WirePlace,
    /// The proto field at fault (`position`, `run_id`, `event_json`, `origin`,
    /// `registration`, `name`, `version`, `source_region`).
    pub field: &'static str,
    /// What was expected and what was found.
    pub message: String,
}

/// Where in a `LogBatch` a [`WireError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WirePlace {
    /// A field of the batch itself.
    Batch,
    /// The checkpoint at a log position; its run once the run id decoded.
    Position {
        /// The checkpoint's log position as sent.
        position: LogPosition,
        /// Its run, when its `run_id` decoded.
        run: Option<RunId>,
    },
    /// The workflow with this registration number.
    Registration(u64),
}

impl fmt::Display for WirePlace {
    /// `the batch`, `position 7`, `position 7 (run 0193…)`, `workflow registration 4`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WirePlace::Batch => formatter.write_str("the batch"),
            WirePlace::Position {
                position,
                run: None,
            } => write!(formatter, "position {position}"),
            WirePlace::Position {
                position,
                run: Some(run),
            } => write!(formatter, "position {position} (run {run})"),
            WirePlace::Registration(registration) => {
                write!(formatter, "workflow registration {registration}")
            }
        }
    }
}

/// The store's form of a received batch.
///
/// Rules (the store's log is gapless and ships in order; see
/// [`crate::store::replication`]):
/// - the batch names its source region;
/// - checkpoint positions start from 1 and are consecutive, in increasing order (the store
///   also refuses a first position that is not its applied position + 1);
/// - every `run_id` is a UUID and every `event_json` is the JSON of a checkpoint
///   [`Event`];
/// - a `run_created` checkpoint carries its origin (owner, idempotency key, schedule tick)
///   and no other checkpoint carries one;
/// - workflow registration numbers start from 1 and strictly increase; every workflow has a
///   name and a version.
///
/// An empty `idempotency_key` in an origin means none.
///
/// Errors: [`WireError`] for the first rule broken, naming the source region, the position
/// (and run) or registration, and the field.
pub fn batch_from_proto(batch: proto::LogBatch) -> Result<ReplicatedBatch, WireError> {
    let source_region = batch.source_region;
    let error = |place, field, message| WireError {
        source_region: source_region.clone(),
        place,
        field,
        message,
    };
    if source_region.is_empty() {
        return Err(error(
            WirePlace::Batch,
            "source_region",
            "expected the sending region's name, found an empty text".into(),
        ));
    }
    let mut checkpoints = Vec::with_capacity(batch.checkpoints.len());
    let mut previous: Option<LogPosition> = None;
    for checkpoint in batch.checkpoints {
        let position = checkpoint.position;
        let at = WirePlace::Position {
            position,
            run: None,
        };
        if position == 0 {
            return Err(error(
                at,
                "position",
                "expected log positions from 1, found 0".into(),
            ));
        }
        if let Some(previous) = previous
            && previous.checked_add(1) != Some(position)
        {
            return Err(error(
                at,
                "position",
                format!(
                    "expected consecutive positions in increasing order (position {previous} + 1 after position {previous}), found {position}"
                ),
            ));
        }
        previous = Some(position);
        checkpoints.push(
            checkpoint_from_proto(checkpoint)
                .map_err(|(place, field, message)| error(place, field, message))?,
        );
    }
    let mut workflows = Vec::with_capacity(batch.workflows.len());
    let mut previous: Option<u64> = None;
    for workflow in batch.workflows {
        let registration = workflow.registration;
        let at = WirePlace::Registration(registration);
        if registration == 0 {
            return Err(error(
                at,
                "registration",
                "expected registration numbers from 1, found 0".into(),
            ));
        }
        if let Some(previous) = previous
            && registration <= previous
        {
            return Err(error(
                at,
                "registration",
                format!(
                    "expected registration numbers in increasing order, found {registration} after {previous}"
                ),
            ));
        }
        previous = Some(registration);
        for (field, value) in [("name", &workflow.name), ("version", &workflow.version)] {
            if value.is_empty() {
                return Err(error(
                    at,
                    field,
                    format!(
                        "expected a non-empty text, found an empty one (workflow name `{}`, version `{}`)",
                        workflow.name, workflow.version
                    ),
                ));
            }
        }
        workflows.push(ReplicatedWorkflow {
            registration,
            workflow: StoredWorkflow {
                name: workflow.name,
                version: workflow.version,
                source: workflow.source,
                file_name: workflow.file_name,
                registered_at: workflow.registered_at_ms,
            },
        });
    }
    Ok(ReplicatedBatch {
        source_region,
        region_epoch: batch.region_epoch,
        source_latest_position: batch.latest_position,
        checkpoints,
        workflows,
    })
}

/// One checkpoint of a batch, or where and why it does not decode.
fn checkpoint_from_proto(
    wire: proto::ReplicatedCheckpoint,
) -> Result<ReplicatedCheckpoint, (WirePlace, &'static str, String)> {
    let position = wire.position;
    let run_id: RunId = wire.run_id.parse().map_err(|message| {
        (
            WirePlace::Position {
                position,
                run: None,
            },
            "run_id",
            message,
        )
    })?;
    let at = WirePlace::Position {
        position,
        run: Some(run_id),
    };
    let event: Event = serde_json::from_str(&wire.event_json).map_err(|error| {
        (
            at,
            "event_json",
            format!("expected the JSON of a checkpoint event: {error}"),
        )
    })?;
    let created = matches!(event, Event::RunCreated { .. });
    let origin = match (created, wire.origin) {
        (true, Some(origin)) => Some(RunOrigin {
            idempotency_key: Some(origin.idempotency_key).filter(|key| !key.is_empty()),
            schedule_tick: origin.schedule_tick_ms,
            owner: Owner {
                host: origin.owner_host,
                pid: origin.owner_pid,
                start_ticks: origin.owner_start_ticks,
            },
        }),
        (false, None) => None,
        (true, None) => {
            return Err((
                at,
                "origin",
                "expected the origin (owner, idempotency key, schedule tick) of a `run_created` checkpoint, found none".into(),
            ));
        }
        (false, Some(_)) => {
            return Err((
                at,
                "origin",
                format!(
                    "expected no origin on a `{}` checkpoint (only `run_created` carries one), found one",
                    event.kind()
                ),
            ));
        }
    };
    Ok(ReplicatedCheckpoint {
        checkpoint: Checkpoint {
            position,
            epoch: Epoch(wire.epoch),
            run_id,
            recorded_at: wire.recorded_at_ms,
            event,
        },
        origin,
    })
}
