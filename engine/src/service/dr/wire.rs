//! Replication batches on the wire: [`ReplicationSlice`] → `tandem.v1.LogBatch` for the
//! active side, and `LogBatch` → [`ReplicatedBatch`] for the applying side (the replicator
//! of `tandem-dr` and tests), with every field checked.
//!
//! Events travel as the store's JSON (serde) text of [`crate::checkpoint::Event`].

use tandem_api::proto;

use crate::checkpoint::{Checkpoint, Epoch, LogPosition, RunId, UnixMillis};
use crate::store::replication::{
    ReplicatedBatch, ReplicatedCheckpoint, ReplicatedWorkflow, ReplicationSlice, RunOrigin,
};
use crate::store::{Owner, StoredWorkflow};

/// A field of a received `LogBatch` that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LogBatch from region {source_region}: `{field}`: {message}")]
pub struct WireError {
    /// The sending region as the batch names it.
    pub source_region: String,
    /// The field path (`checkpoints[3].event_json`).
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

/// Most bytes of checkpoint and workflow text one `LogBatch` carries (estimated from the
/// text fields); a slice holding more is sent as several batches. Kept under 4 MiB, the
/// default largest message a tonic client accepts.
pub const MAX_BATCH_TEXT_BYTES: usize = 3 * 1024 * 1024;

/// Fixed bytes counted per checkpoint or workflow beside its text fields.
const PER_ITEM_BYTES: usize = 64;

/// The messages that ship `slice` from `source_region` (region epoch `region_epoch`, latest
/// position `latest`) at wall clock `sent_at`: one batch, or several consecutive ones when
/// the slice's text exceeds [`MAX_BATCH_TEXT_BYTES`] (the workflows travel in the first).
/// An empty slice gives one batch without checkpoints (a heartbeat).
pub fn batches_to_proto(
    source_region: &str,
    region_epoch: u64,
    latest: LogPosition,
    sent_at: UnixMillis,
    slice: ReplicationSlice,
) -> Vec<proto::LogBatch> {
    let batch = |checkpoints, workflows| proto::LogBatch {
        source_region: source_region.to_string(),
        region_epoch,
        latest_position: latest,
        sent_at_ms: sent_at,
        checkpoints,
        workflows,
    };
    let workflows: Vec<proto::ReplicatedWorkflow> =
        slice.workflows.into_iter().map(workflow_to_proto).collect();
    let mut size: usize = workflows.iter().map(workflow_size).sum();
    let mut batches = Vec::new();
    let mut pending_workflows = Some(workflows);
    let mut current = Vec::new();
    for replicated in slice.checkpoints {
        let checkpoint = checkpoint_to_proto(replicated);
        let item = checkpoint_size(&checkpoint);
        if !current.is_empty() && size + item > MAX_BATCH_TEXT_BYTES {
            let workflows = pending_workflows.take().unwrap_or_default();
            batches.push(batch(std::mem::take(&mut current), workflows));
            size = 0;
        }
        size += item;
        current.push(checkpoint);
    }
    if !current.is_empty() || batches.is_empty() {
        batches.push(batch(current, pending_workflows.take().unwrap_or_default()));
    }
    batches
}

fn checkpoint_size(checkpoint: &proto::ReplicatedCheckpoint) -> usize {
    let origin = checkpoint.origin.as_ref().map_or(0, |origin| {
        origin.idempotency_key.len() + origin.owner_host.len()
    });
    PER_ITEM_BYTES + checkpoint.event_json.len() + checkpoint.run_id.len() + origin
}

fn workflow_size(workflow: &proto::ReplicatedWorkflow) -> usize {
    PER_ITEM_BYTES
        + workflow.name.len()
        + workflow.version.len()
        + workflow.source.len()
        + workflow.file_name.len()
}

fn checkpoint_to_proto(replicated: ReplicatedCheckpoint) -> proto::ReplicatedCheckpoint {
    let ReplicatedCheckpoint { checkpoint, origin } = replicated;
    // Serializing an event cannot fail: every field is a string, number, map or enum.
    let event_json = serde_json::to_string(&checkpoint.event).unwrap_or_default();
    proto::ReplicatedCheckpoint {
        position: checkpoint.position,
        epoch: checkpoint.epoch.0,
        run_id: checkpoint.run_id.to_string(),
        recorded_at_ms: checkpoint.recorded_at,
        event_json,
        origin: origin.map(|origin| proto::RunOrigin {
            idempotency_key: origin.idempotency_key.unwrap_or_default(),
            schedule_tick_ms: origin.schedule_tick,
            owner_host: origin.owner.host,
            owner_pid: origin.owner.pid,
            owner_start_ticks: origin.owner.start_ticks,
        }),
    }
}

fn workflow_to_proto(replicated: ReplicatedWorkflow) -> proto::ReplicatedWorkflow {
    let ReplicatedWorkflow {
        registration,
        workflow,
    } = replicated;
    proto::ReplicatedWorkflow {
        registration,
        name: workflow.name,
        version: workflow.version,
        source: workflow.source,
        file_name: workflow.file_name,
        registered_at_ms: workflow.registered_at,
    }
}

/// The store's form of a received batch.
///
/// Errors: [`WireError`] naming the first field that does not decode (a run id that is not
/// a UUID, an event that is not an event's JSON, an empty workflow name or version).
pub fn batch_from_proto(batch: proto::LogBatch) -> Result<ReplicatedBatch, WireError> {
    let source_region = batch.source_region;
    let wire_error = |field: String, message: String| WireError {
        source_region: source_region.clone(),
        field,
        message,
    };
    let mut checkpoints = Vec::with_capacity(batch.checkpoints.len());
    for (index, checkpoint) in batch.checkpoints.into_iter().enumerate() {
        let run_id: RunId = checkpoint
            .run_id
            .parse()
            .map_err(|error| wire_error(format!("checkpoints[{index}].run_id"), error))?;
        let event = serde_json::from_str(&checkpoint.event_json).map_err(|error| {
            wire_error(
                format!("checkpoints[{index}].event_json"),
                format!("expected the JSON of a checkpoint event: {error}"),
            )
        })?;
        checkpoints.push(ReplicatedCheckpoint {
            checkpoint: Checkpoint {
                position: checkpoint.position,
                epoch: Epoch(checkpoint.epoch),
                run_id,
                recorded_at: checkpoint.recorded_at_ms,
                event,
            },
            origin: checkpoint.origin.map(|origin| RunOrigin {
                idempotency_key: (!origin.idempotency_key.is_empty())
                    .then_some(origin.idempotency_key),
                schedule_tick: origin.schedule_tick_ms,
                owner: Owner {
                    host: origin.owner_host,
                    pid: origin.owner_pid,
                    start_ticks: origin.owner_start_ticks,
                },
            }),
        });
    }
    let mut workflows = Vec::with_capacity(batch.workflows.len());
    for (index, workflow) in batch.workflows.into_iter().enumerate() {
        for (field, value) in [("name", &workflow.name), ("version", &workflow.version)] {
            if value.is_empty() {
                return Err(wire_error(
                    format!("workflows[{index}].{field}"),
                    "expected a non-empty text, found an empty one".into(),
                ));
            }
        }
        workflows.push(ReplicatedWorkflow {
            registration: workflow.registration,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::checkpoint::Event;

    fn checkpoint(position: LogPosition, source: &str) -> ReplicatedCheckpoint {
        ReplicatedCheckpoint {
            checkpoint: Checkpoint {
                position,
                epoch: Epoch(3),
                run_id: RunId::new(),
                recorded_at: 1_700_000_000_000,
                event: Event::RunCreated {
                    workflow: "w".into(),
                    version: "v1".into(),
                    source_path: "/state/w.yaml".into(),
                    source: source.into(),
                    params: BTreeMap::from([("day".into(), "1".into())]),
                    at: 1_700_000_000_000,
                },
            },
            origin: Some(RunOrigin {
                idempotency_key: Some("k".into()),
                schedule_tick: None,
                owner: Owner {
                    host: "h".into(),
                    pid: 7,
                    start_ticks: 9,
                },
            }),
        }
    }

    fn workflow() -> ReplicatedWorkflow {
        ReplicatedWorkflow {
            registration: 4,
            workflow: StoredWorkflow {
                name: "w".into(),
                version: "v1".into(),
                source: "name: w".into(),
                file_name: "w.yaml".into(),
                registered_at: 5,
            },
        }
    }

    #[test]
    fn a_slice_survives_the_round_trip() {
        let slice = ReplicationSlice {
            checkpoints: vec![checkpoint(1, "name: w"), checkpoint(2, "name: w")],
            workflows: vec![workflow()],
        };
        let batches = batches_to_proto("eu-west", 2, 9, 100, slice.clone());
        assert_eq!(batches.len(), 1);
        let batch = batch_from_proto(batches[0].clone()).unwrap();
        assert_eq!(batch.source_region, "eu-west");
        assert_eq!(batch.region_epoch, 2);
        assert_eq!(batch.source_latest_position, 9);
        assert_eq!(batch.checkpoints, slice.checkpoints);
        assert_eq!(batch.workflows, slice.workflows);
    }

    #[test]
    fn a_large_slice_is_split_in_order_with_the_workflows_first() {
        // A little over a third of the limit each: two fit in a batch, three do not.
        let big = "x".repeat(MAX_BATCH_TEXT_BYTES / 3);
        let slice = ReplicationSlice {
            checkpoints: (1..=5).map(|position| checkpoint(position, &big)).collect(),
            workflows: vec![workflow()],
        };
        let batches = batches_to_proto("eu-west", 0, 5, 100, slice);
        assert_eq!(
            batches.len(),
            3,
            "two of these checkpoints at most per batch"
        );
        let positions: Vec<u64> = batches
            .iter()
            .flat_map(|batch| batch.checkpoints.iter().map(|c| c.position))
            .collect();
        assert_eq!(positions, vec![1, 2, 3, 4, 5]);
        assert_eq!(batches[0].workflows.len(), 1);
        assert!(batches[1..].iter().all(|batch| batch.workflows.is_empty()));
    }

    #[test]
    fn an_empty_slice_is_one_heartbeat() {
        let batches = batches_to_proto("eu-west", 0, 5, 100, ReplicationSlice::default());
        assert_eq!(batches.len(), 1);
        assert!(batches[0].checkpoints.is_empty());
        assert_eq!(batches[0].latest_position, 5);
    }

    #[test]
    fn bad_fields_are_named() {
        let mut batch = batches_to_proto(
            "eu-west",
            0,
            1,
            100,
            ReplicationSlice {
                checkpoints: vec![checkpoint(1, "name: w")],
                workflows: vec![],
            },
        )
        .remove(0);
        batch.checkpoints[0].event_json = "{\"type\":\"nope\"}".into();
        let error = batch_from_proto(batch.clone()).unwrap_err();
        assert_eq!(error.field, "checkpoints[0].event_json");
        batch.checkpoints[0].run_id = "r1".into();
        let error = batch_from_proto(batch).unwrap_err();
        assert_eq!(error.field, "checkpoints[0].run_id");
        assert!(error.to_string().contains("eu-west"), "{error}");
    }
}
