//! Shipping while eight writers append to the active store: the standby's log ends equal,
//! position for position, and no batch is refused.

use std::sync::Arc;

use super::{ACTIVE, assert_same_store, finished, pair, ship, workflow};
use crate::checkpoint::{RunEnd, RunId, now_millis};
use crate::store::replication::ReplicationStore;
use crate::store::suite::{batch, created_event, owner, started};
use crate::store::{CheckpointStore, CreateOutcome};

const WRITERS: u32 = 8;
const BATCHES: u32 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_while_shipping_give_equal_logs() {
    let (active, standby) = pair().await;
    let active = Arc::new(active);
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let active = Arc::clone(&active);
        writers.push(tokio::spawn(async move {
            let run_id = RunId::new();
            let outcome = active
                .create_run_once(
                    &format!("writer-{writer}"),
                    run_id,
                    &owner("writer", writer),
                    created_event("concurrent", i64::from(writer)),
                )
                .await
                .unwrap();
            let CreateOutcome::Created(epoch) = outcome else {
                panic!("writer {writer}: expected a new run, found {outcome:?}");
            };
            for round in 0..BATCHES {
                let events: Vec<_> = (0..=round % 3)
                    .map(|n| started(writer, round * 3 + n))
                    .collect();
                active.append(epoch, batch(run_id, &events)).await.unwrap();
                if round % 10 == 0 {
                    let name = format!("w{writer}");
                    active
                        .put_workflow(&workflow(&name, i64::from(round)))
                        .await
                        .unwrap();
                }
            }
            if writer % 2 == 0 {
                let done = [finished(RunEnd::Succeeded)];
                active.append(epoch, batch(run_id, &done)).await.unwrap();
            }
        }));
    }
    let mut applied = 0;
    let mut rounds = 0;
    while writers.iter().any(|writer| !writer.is_finished()) {
        let state = standby.region_state().await.unwrap();
        let slice = active
            .read_replication(state.applied_position, state.applied_registration, 50)
            .await
            .unwrap();
        let batch = crate::store::replication::ReplicatedBatch {
            source_region: ACTIVE.into(),
            region_epoch: 0,
            source_latest_position: active.latest_position().await.unwrap(),
            checkpoints: slice.checkpoints,
            workflows: slice.workflows,
        };
        let state = standby
            .apply_replicated(&batch, now_millis())
            .await
            .unwrap();
        assert!(
            state.applied_position >= applied,
            "the applied position only grows"
        );
        applied = state.applied_position;
        rounds += 1;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    ship(&active, &standby, 50).await;
    assert!(
        rounds > 1,
        "shipping ran while the writers wrote ({rounds} rounds)"
    );
    assert_same_store(&active, &standby, ACTIVE).await;
}
