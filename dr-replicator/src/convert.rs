//! Wire → store: a [`proto::LogBatch`] as the replicator received it, checked and turned into
//! the [`ReplicatedBatch`] that [`tandem_engine::store::ReplicationStore::apply_replicated`]
//! takes. Bad data is an error naming the source region and the position, never a panic.

use tandem_api::proto;
use tandem_engine::checkpoint::{Checkpoint, Epoch, Event, RunId};
use tandem_engine::store::replication::{
    ReplicatedBatch, ReplicatedCheckpoint, ReplicatedWorkflow, RunOrigin,
};
use tandem_engine::store::{Owner, StoredWorkflow};

/// A batch whose content cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad batch from region {source_region}: {detail}")]
pub struct BatchError {
    /// The region that sent it.
    pub source_region: String,
    /// What is wrong, naming the position (or registration) and the field.
    pub detail: String,
}

/// Checks `batch` and converts it. Rules: every checkpoint's `run_id` is a UUID and its
/// `event_json` decodes to an [`Event`]; `run_created` checkpoints carry an origin and no other
/// checkpoint does; positions strictly increase; registrations strictly increase and
/// workflows have a name and a version.
///
/// Errors: [`BatchError`] naming the source region and the first offending position.
pub fn batch_from_wire(batch: proto::LogBatch) -> Result<ReplicatedBatch, BatchError> {
    let source_region = batch.source_region;
    let bad = |detail: String| BatchError {
        source_region: source_region.clone(),
        detail,
    };
    if source_region.is_empty() {
        return Err(bad("the batch names no source region".to_string()));
    }
    let mut checkpoints = Vec::with_capacity(batch.checkpoints.len());
    let mut previous: Option<u64> = None;
    for checkpoint in batch.checkpoints {
        let position = checkpoint.position;
        if let Some(previous) = previous
            && position <= previous
        {
            return Err(bad(format!(
                "position {position}: expected positions in increasing order, found {position} after {previous}"
            )));
        }
        previous = Some(position);
        checkpoints.push(checkpoint_from_wire(checkpoint).map_err(bad)?);
    }
    let mut workflows = Vec::with_capacity(batch.workflows.len());
    let mut previous: Option<u64> = None;
    for workflow in batch.workflows {
        let registration = workflow.registration;
        if previous.is_some_and(|previous| registration <= previous) || registration == 0 {
            return Err(bad(format!(
                "workflow registration {registration}: expected registration numbers from 1 in increasing order{}",
                previous
                    .map(|previous| format!(", found {registration} after {previous}"))
                    .unwrap_or_default()
            )));
        }
        previous = Some(registration);
        if workflow.name.is_empty() || workflow.version.is_empty() {
            return Err(bad(format!(
                "workflow registration {registration}: expected a name and a version, found name `{}` version `{}`",
                workflow.name, workflow.version
            )));
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

fn checkpoint_from_wire(wire: proto::ReplicatedCheckpoint) -> Result<ReplicatedCheckpoint, String> {
    let position = wire.position;
    if position == 0 {
        return Err("position 0: expected positions from 1".to_string());
    }
    let run_id: RunId = wire
        .run_id
        .parse()
        .map_err(|error| format!("position {position}: `run_id`: {error}"))?;
    let event: Event = serde_json::from_str(&wire.event_json).map_err(|error| {
        format!(
            "position {position} (run {run_id}): `event_json` is not a checkpoint event: {error}"
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
            return Err(format!(
                "position {position} (run {run_id}): a `run_created` checkpoint without its origin (owner, idempotency key)"
            ));
        }
        (false, Some(_)) => {
            return Err(format!(
                "position {position} (run {run_id}): an origin on a checkpoint that does not create a run"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn created_json() -> String {
        serde_json::to_string(&Event::RunCreated {
            workflow: "w".into(),
            version: "v".into(),
            source_path: "/w.yaml".into(),
            source: "name: w".into(),
            params: Default::default(),
            at: 5,
        })
        .unwrap()
    }

    fn resumed_json() -> String {
        serde_json::to_string(&Event::RunResumed {
            at: 6,
            owner: "h/1".into(),
        })
        .unwrap()
    }

    fn origin() -> proto::RunOrigin {
        proto::RunOrigin {
            idempotency_key: "key-1".into(),
            schedule_tick_ms: None,
            owner_host: "host-a".into(),
            owner_pid: 42,
            owner_start_ticks: 7,
        }
    }

    const RUN: &str = "0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70";

    fn wire(
        position: u64,
        event_json: String,
        origin: Option<proto::RunOrigin>,
    ) -> proto::ReplicatedCheckpoint {
        proto::ReplicatedCheckpoint {
            position,
            epoch: 3,
            run_id: RUN.into(),
            recorded_at_ms: 1_000 + position as i64,
            event_json,
            origin,
        }
    }

    fn batch(checkpoints: Vec<proto::ReplicatedCheckpoint>) -> proto::LogBatch {
        proto::LogBatch {
            source_region: "eu-west".into(),
            region_epoch: 2,
            latest_position: 9,
            sent_at_ms: 1,
            checkpoints,
            workflows: vec![proto::ReplicatedWorkflow {
                registration: 4,
                name: "w".into(),
                version: "v".into(),
                source: "name: w".into(),
                file_name: "w.yaml".into(),
                registered_at_ms: 3,
            }],
        }
    }

    #[test]
    fn converts_checkpoints_origins_and_workflows() {
        let converted = batch_from_wire(batch(vec![
            wire(5, created_json(), Some(origin())),
            wire(6, resumed_json(), None),
        ]))
        .unwrap();
        assert_eq!(converted.source_region, "eu-west");
        assert_eq!(converted.region_epoch, 2);
        assert_eq!(converted.source_latest_position, 9);
        assert_eq!(converted.checkpoints.len(), 2);
        let first = &converted.checkpoints[0];
        assert_eq!(first.checkpoint.position, 5);
        assert_eq!(first.checkpoint.epoch, Epoch(3));
        assert_eq!(first.checkpoint.run_id.to_string(), RUN);
        assert_eq!(first.checkpoint.recorded_at, 1_005);
        let origin = first.origin.as_ref().unwrap();
        assert_eq!(origin.idempotency_key.as_deref(), Some("key-1"));
        assert_eq!(origin.owner.host, "host-a");
        assert_eq!(origin.owner.pid, 42);
        assert_eq!(converted.checkpoints[1].origin, None);
        assert_eq!(converted.workflows[0].registration, 4);
        assert_eq!(converted.workflows[0].workflow.file_name, "w.yaml");
    }

    #[test]
    fn an_empty_idempotency_key_is_none() {
        let mut plain = origin();
        plain.idempotency_key.clear();
        plain.schedule_tick_ms = Some(60_000);
        let converted = batch_from_wire(batch(vec![wire(1, created_json(), Some(plain))])).unwrap();
        let origin = converted.checkpoints[0].origin.as_ref().unwrap();
        assert_eq!(origin.idempotency_key, None);
        assert_eq!(origin.schedule_tick, Some(60_000));
    }

    fn error(batch: proto::LogBatch) -> String {
        batch_from_wire(batch).unwrap_err().to_string()
    }

    #[test]
    fn bad_data_names_the_region_and_the_position() {
        let text = error(batch(vec![wire(7, "{\"type\":\"nope\"}".into(), None)]));
        assert!(text.contains("region eu-west"), "{text}");
        assert!(text.contains("position 7"), "{text}");
        assert!(text.contains("event_json"), "{text}");
        let mut bad_run = wire(8, resumed_json(), None);
        bad_run.run_id = "not-a-uuid".into();
        let text = error(batch(vec![bad_run]));
        assert!(
            text.contains("position 8") && text.contains("run_id"),
            "{text}"
        );
        let text = error(batch(vec![wire(9, created_json(), None)]));
        assert!(
            text.contains("position 9") && text.contains("origin"),
            "{text}"
        );
        let text = error(batch(vec![wire(10, resumed_json(), Some(origin()))]));
        assert!(
            text.contains("position 10") && text.contains("origin"),
            "{text}"
        );
        let text = error(batch(vec![
            wire(4, resumed_json(), None),
            wire(4, resumed_json(), None),
        ]));
        assert!(text.contains("increasing"), "{text}");
        let text = error(batch(vec![wire(0, resumed_json(), None)]));
        assert!(text.contains("position 0"), "{text}");
    }

    #[test]
    fn bad_workflows_and_a_missing_region_are_refused() {
        let mut nameless = batch(vec![]);
        nameless.workflows[0].name.clear();
        assert!(error(nameless).contains("registration 4"));
        let mut unordered = batch(vec![]);
        let again = unordered.workflows[0].clone();
        unordered.workflows.push(again);
        assert!(error(unordered).contains("found 4 after 4"));
        let mut anonymous = batch(vec![]);
        anonymous.source_region.clear();
        assert!(error(anonymous).contains("no source region"));
    }
}
