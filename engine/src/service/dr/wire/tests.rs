use std::collections::BTreeMap;

use super::*;
use crate::checkpoint::{Checkpoint, Epoch, Event, RunId};
use crate::store::replication::RunOrigin;
use crate::store::{Owner, StoredWorkflow};

// --- encoding, and the round trip ---

fn created(position: LogPosition, source: &str) -> ReplicatedCheckpoint {
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
    let mut scheduled = created(2, "name: w");
    scheduled.origin = Some(RunOrigin {
        idempotency_key: None,
        schedule_tick: Some(60_000),
        owner: Owner {
            host: "h".into(),
            pid: 8,
            start_ticks: 10,
        },
    });
    let resumed = ReplicatedCheckpoint {
        checkpoint: Checkpoint {
            position: 3,
            epoch: Epoch(4),
            run_id: scheduled.checkpoint.run_id,
            recorded_at: 1_700_000_000_500,
            event: Event::RunResumed {
                at: 1_700_000_000_500,
                owner: "h/8".into(),
            },
        },
        origin: None,
    };
    let slice = ReplicationSlice {
        checkpoints: vec![created(1, "name: w"), scheduled, resumed],
        workflows: vec![workflow()],
    };
    let batches = batches_to_proto("eu-west", 2, 9, 100, slice.clone());
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].sent_at_ms, 100);
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
        checkpoints: (1..=5).map(|position| created(position, &big)).collect(),
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
    for batch in batches {
        batch_from_proto(batch).expect("each part decodes on its own");
    }
}

#[test]
fn an_empty_slice_is_one_heartbeat() {
    let batches = batches_to_proto("eu-west", 0, 5, 100, ReplicationSlice::default());
    assert_eq!(batches.len(), 1);
    assert!(batches[0].checkpoints.is_empty());
    assert_eq!(batches[0].latest_position, 5);
    let batch = batch_from_proto(batches[0].clone()).unwrap();
    assert!(batch.checkpoints.is_empty() && batch.workflows.is_empty());
    assert_eq!(batch.source_latest_position, 5);
}

// --- decoding hand-built batches ---

const RUN: &str = "0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70";

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

fn run() -> RunId {
    RUN.parse().unwrap()
}

#[test]
fn converts_checkpoints_origins_and_workflows() {
    let converted = batch_from_proto(batch(vec![
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
    assert_eq!(first.checkpoint.run_id, run());
    assert_eq!(first.checkpoint.recorded_at, 1_005);
    assert_eq!(first.checkpoint.event.kind(), "run_created");
    let origin = first.origin.as_ref().unwrap();
    assert_eq!(origin.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(origin.schedule_tick, None);
    assert_eq!(origin.owner.host, "host-a");
    assert_eq!(origin.owner.pid, 42);
    assert_eq!(origin.owner.start_ticks, 7);
    assert_eq!(converted.checkpoints[1].checkpoint.position, 6);
    assert_eq!(converted.checkpoints[1].origin, None);
    let workflow = &converted.workflows[0];
    assert_eq!(workflow.registration, 4);
    assert_eq!(
        (
            workflow.workflow.name.as_str(),
            workflow.workflow.version.as_str()
        ),
        ("w", "v")
    );
    assert_eq!(workflow.workflow.source, "name: w");
    assert_eq!(workflow.workflow.file_name, "w.yaml");
    assert_eq!(workflow.workflow.registered_at, 3);
}

#[test]
fn an_empty_idempotency_key_is_none() {
    let mut plain = origin();
    plain.idempotency_key.clear();
    plain.schedule_tick_ms = Some(60_000);
    let converted = batch_from_proto(batch(vec![wire(1, created_json(), Some(plain))])).unwrap();
    let origin = converted.checkpoints[0].origin.as_ref().unwrap();
    assert_eq!(origin.idempotency_key, None);
    assert_eq!(origin.schedule_tick, Some(60_000));
}

fn refused(batch: proto::LogBatch) -> WireError {
    batch_from_proto(batch).expect_err("a batch that must be refused")
}

#[test]
fn bad_checkpoints_name_the_region_the_position_and_the_field() {
    let error = refused(batch(vec![wire(7, "{\"type\":\"nope\"}".into(), None)]));
    assert_eq!(error.source_region, "eu-west");
    assert_eq!(
        error.place,
        WirePlace::Position {
            position: 7,
            run: Some(run())
        }
    );
    assert_eq!(error.field, "event_json");
    let text = error.to_string();
    assert!(
        text.contains("region `eu-west`") && text.contains(&format!("position 7 (run {RUN})")),
        "{text}"
    );

    let mut bad_run = wire(8, resumed_json(), None);
    bad_run.run_id = "not-a-uuid".into();
    let error = refused(batch(vec![bad_run]));
    assert_eq!(
        (error.place, error.field),
        (
            WirePlace::Position {
                position: 8,
                run: None
            },
            "run_id"
        )
    );
    assert!(error.message.contains("not-a-uuid"), "{error}");

    let error = refused(batch(vec![wire(9, created_json(), None)]));
    assert_eq!(error.field, "origin");
    assert!(error.to_string().contains("position 9"), "{error}");
    assert!(error.message.contains("run_created"), "{error}");

    let error = refused(batch(vec![wire(10, resumed_json(), Some(origin()))]));
    assert_eq!(error.field, "origin");
    assert!(error.to_string().contains("position 10"), "{error}");
    assert!(error.message.contains("run_resumed"), "{error}");

    let error = refused(batch(vec![wire(0, resumed_json(), None)]));
    assert_eq!(
        (error.place, error.field),
        (
            WirePlace::Position {
                position: 0,
                run: None
            },
            "position"
        )
    );
}

#[test]
fn positions_must_be_consecutive_and_in_order() {
    for (positions, found) in [([4, 4], 4), ([5, 4], 4), ([4, 6], 6)] {
        let error = refused(batch(
            positions
                .iter()
                .map(|&position| wire(position, resumed_json(), None))
                .collect(),
        ));
        assert_eq!(
            (error.place, error.field),
            (
                WirePlace::Position {
                    position: found,
                    run: None
                },
                "position"
            ),
            "{positions:?}"
        );
        assert!(
            error
                .message
                .contains(&format!("after position {}", positions[0])),
            "{error}"
        );
    }
    let ordered = batch((4..=6).map(|p| wire(p, resumed_json(), None)).collect());
    assert_eq!(batch_from_proto(ordered).unwrap().checkpoints.len(), 3);
}

#[test]
fn bad_workflows_and_a_missing_region_are_refused() {
    let mut nameless = batch(vec![]);
    nameless.workflows[0].name.clear();
    let error = refused(nameless);
    assert_eq!(
        (error.place, error.field),
        (WirePlace::Registration(4), "name")
    );
    assert!(
        error.to_string().contains("workflow registration 4"),
        "{error}"
    );

    let mut versionless = batch(vec![]);
    versionless.workflows[0].version.clear();
    assert_eq!(refused(versionless).field, "version");

    let mut repeated = batch(vec![]);
    let again = repeated.workflows[0].clone();
    repeated.workflows.push(again);
    let error = refused(repeated);
    assert_eq!(error.field, "registration");
    assert!(error.message.contains("found 4 after 4"), "{error}");

    let mut unnumbered = batch(vec![]);
    unnumbered.workflows[0].registration = 0;
    assert_eq!(refused(unnumbered).place, WirePlace::Registration(0));

    let mut anonymous = batch(vec![]);
    anonymous.source_region.clear();
    let error = refused(anonymous);
    assert_eq!(
        (error.place, error.field),
        (WirePlace::Batch, "source_region")
    );
}
