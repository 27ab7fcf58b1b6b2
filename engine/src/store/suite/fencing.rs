//! Fencing and refused writes: claims fence older epochs, epochs grow, invalid appends write nothing.

use super::fixtures::{
    append_ok, batch, created_event, latest, new_run, owner, read_run_ok, started, summary_ok,
};
use crate::checkpoint::{Epoch, NewCheckpoint, RunId};
use crate::store::{CheckpointStore, StoreError};

/// After `claim_run`, an append with the previous owner's epoch is refused whole with
/// `Fenced` (even the checkpoints of other runs in the same batch are not written); the new
/// owner's epoch is accepted.
pub async fn test_fencing(store: &dyn CheckpointStore) {
    let (run_a, old_epoch) = new_run(store, "fenced", 1).await;
    let (run_b, epoch_b) = new_run(store, "bystander", 2).await;
    append_ok(store, old_epoch, batch(run_a, &[started(0, 1)])).await;
    let new_epoch = store
        .claim_run(run_a, &owner("new-owner", 3))
        .await
        .unwrap_or_else(|error| panic!("claim_run failed: {error}"));
    assert!(new_epoch > old_epoch && new_epoch > epoch_b);
    let position = latest(store).await;

    let refused = store
        .append(old_epoch, batch(run_a, &[started(0, 2)]))
        .await;
    assert_eq!(
        refused,
        Err(StoreError::Fenced {
            run_id: run_a,
            epoch: old_epoch,
            owner_epoch: new_epoch
        }),
        "an append with the old owner's epoch must be fenced"
    );
    // Run B alone would accept `epoch_b`; the batch is refused whole because of run A.
    let mixed = vec![
        NewCheckpoint {
            run_id: run_b,
            event: started(1, 1),
        },
        NewCheckpoint {
            run_id: run_a,
            event: started(0, 2),
        },
    ];
    let refused = store.append(old_epoch.max(epoch_b), mixed).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { run_id, .. }) if run_id == run_a),
        "expected Fenced for run {run_a}, found {refused:?}"
    );
    assert_eq!(
        latest(store).await,
        position,
        "a fenced append writes nothing"
    );
    assert_eq!(
        read_run_ok(store, run_b).await.len(),
        1,
        "run B got nothing"
    );

    let accepted = append_ok(store, new_epoch, batch(run_a, &[started(0, 2)])).await;
    assert_eq!(accepted, position + 1, "the new owner's epoch is accepted");
    let accepted = append_ok(store, epoch_b, batch(run_b, &[started(1, 1)])).await;
    assert_eq!(
        accepted,
        position + 2,
        "run B's own owner is not fenced by run A's claim"
    );
    let last = read_run_ok(store, run_a).await;
    assert_eq!(
        last.last().map(|checkpoint| checkpoint.epoch),
        Some(new_epoch)
    );

    // A second claim fences the first claimant as well.
    let newest = store
        .claim_run(run_a, &owner("newest-owner", 4))
        .await
        .unwrap_or_else(|error| panic!("claim_run failed: {error}"));
    assert!(newest > new_epoch);
    assert!(matches!(
        store
            .append(new_epoch, batch(run_a, &[started(0, 3)]))
            .await,
        Err(StoreError::Fenced { .. })
    ));
}

/// Epochs from `create_run` and `claim_run` strictly grow across all runs of the store.
pub async fn test_epochs_grow_across_runs(store: &dyn CheckpointStore) {
    let mut epochs = Vec::new();
    let mut runs = Vec::new();
    for index in 0..4 {
        let (run_id, epoch) = new_run(store, "epochs", index).await;
        epochs.push(epoch);
        runs.push(run_id);
        let claimed = store
            .claim_run(runs[0], &owner("claimer", index as u32))
            .await
            .unwrap_or_else(|error| panic!("claim_run failed: {error}"));
        epochs.push(claimed);
    }
    for pair in epochs.windows(2) {
        assert!(
            pair[1] > pair[0],
            "expected every new epoch to be greater than all before, found the sequence {epochs:?}"
        );
    }
    assert!(epochs[0] > Epoch(0), "epochs start above 0");
}

/// Malformed appends are refused with `InvalidAppend` and write nothing: a `run_created`
/// event in `append`, a checkpoint for an unknown run (even beside valid ones), and a
/// `create_run` whose event is not `run_created`.
pub async fn test_invalid_appends_write_nothing(store: &dyn CheckpointStore) {
    let (run_id, epoch) = new_run(store, "invalid", 1).await;
    append_ok(store, epoch, batch(run_id, &[started(0, 1)])).await;
    let position = latest(store).await;
    let before = read_run_ok(store, run_id).await;

    let second_created = vec![
        NewCheckpoint {
            run_id,
            event: started(0, 2),
        },
        NewCheckpoint {
            run_id,
            event: created_event("invalid", 1),
        },
    ];
    let refused = store.append(epoch, second_created).await;
    assert!(
        matches!(&refused, Err(StoreError::InvalidAppend { location, .. }) if *location == store.location()),
        "a run_created in append: expected InvalidAppend, found {refused:?}"
    );

    let unknown = RunId::new();
    let with_unknown = vec![
        NewCheckpoint {
            run_id,
            event: started(0, 2),
        },
        NewCheckpoint {
            run_id: unknown,
            event: started(0, 1),
        },
    ];
    let refused = store.append(epoch, with_unknown).await;
    assert!(
        matches!(&refused, Err(StoreError::InvalidAppend { detail, .. }) if detail.contains(&unknown.to_string())),
        "a checkpoint of an unknown run: expected InvalidAppend naming {unknown}, found {refused:?}"
    );

    let other = RunId::new();
    let refused = store.create_run(other, &owner("x", 2), started(0, 1)).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidAppend { .. })),
        "create_run with an attempt_started event: expected InvalidAppend, found {refused:?}"
    );
    assert!(
        matches!(
            store.run_summary(other).await,
            Err(StoreError::RunNotFound { .. })
        ),
        "a refused create_run creates no run"
    );

    assert_eq!(
        latest(store).await,
        position,
        "refused appends write nothing"
    );
    assert_eq!(read_run_ok(store, run_id).await, before);
    let accepted = append_ok(store, epoch, batch(run_id, &[started(0, 2)])).await;
    assert_eq!(
        accepted,
        position + 1,
        "the store still accepts valid appends"
    );
}

/// Fencing holds across independent handles (two processes): a claim through `second`
/// fences an owner writing through `first`, and the refusal writes nothing.
pub async fn test_fencing_across_handles(
    first: &dyn CheckpointStore,
    second: &dyn CheckpointStore,
) {
    let (run_id, old_epoch) = new_run(first, "handles", 1).await;
    append_ok(first, old_epoch, batch(run_id, &[started(0, 1)])).await;
    let new_epoch = second
        .claim_run(run_id, &owner("second", 2))
        .await
        .unwrap_or_else(|error| panic!("claim_run through the second handle failed: {error}"));
    let position = latest(second).await;
    assert_eq!(
        latest(first).await,
        position,
        "both handles see the same log"
    );
    let refused = first
        .append(old_epoch, batch(run_id, &[started(0, 2)]))
        .await;
    assert_eq!(
        refused,
        Err(StoreError::Fenced {
            run_id,
            epoch: old_epoch,
            owner_epoch: new_epoch
        })
    );
    assert_eq!(latest(second).await, position, "nothing written");
    append_ok(second, new_epoch, batch(run_id, &[started(0, 2)])).await;
    assert_eq!(
        summary_ok(first, run_id).await.owner,
        owner("second", 2),
        "the first handle sees the claim"
    );
    let (other, other_epoch) = new_run(second, "handles", 3).await;
    assert!(other_epoch > new_epoch, "epochs grow across handles");
    assert_eq!(read_run_ok(first, other).await.len(), 1);
}
