//! Replication batches on the wire: [`ReplicationSlice`] → `tandem.v1.LogBatch` for the
//! active side ([`batches_to_proto`]), and `LogBatch` →
//! [`ReplicatedBatch`](crate::store::replication::ReplicatedBatch) for the applying
//! side ([`batch_from_proto`]: the replicator of `tandem-dr` and tests), with every field
//! checked.
//!
//! Events travel as the store's JSON (serde) text of [`crate::checkpoint::Event`].

mod decode;

use tandem_api::proto;

pub use self::decode::{WireError, WirePlace, batch_from_proto};
use crate::checkpoint::{LogPosition, UnixMillis};
use crate::store::replication::{ReplicatedCheckpoint, ReplicatedWorkflow, ReplicationSlice};

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

#[cfg(test)]
mod tests;
