//! The load of the replication test: SDK clients, each registering a small shell DAG of its
//! own and starting runs of it (with idempotency keys), then waiting for them.

use tandem_api::{Client, RunState, StartRun, TaskState};

/// A diamond of four shell tasks, named after its client (`CLIENT`), with a param.
const DIAMOND: &str = r#"
name: dr-load-CLIENT
params:
  n: "0"
tasks:
  first:
    env:
      N: ${{ params.n }}
    run: echo "run $N of client CLIENT"
  left:
    needs: [first]
    run: sleep 0.2
  right:
    needs: [first]
    run: "true"
  last:
    needs: [left, right]
    run: echo done
"#;

/// Tasks of [`DIAMOND`].
pub const TASKS: usize = 4;

/// The idempotency key of run `run` of client `client`.
pub fn key(client: usize, run: usize) -> String {
    format!("dr-load-{client}-{run}")
}

/// Client `index`'s load on `client`: registers its workflow, starts `runs` runs of it with
/// keys [`key`] (the first key sent twice must return the same run), waits for each and
/// checks it succeeded with every task succeeded at its first attempt. Returns (key, run id)
/// of each run.
pub async fn client_load(client: Client, index: usize, runs: usize) -> Vec<(String, String)> {
    let name = index.to_string();
    let registered = client
        .register_workflow(
            DIAMOND.replace("CLIENT", &name),
            format!("load-{name}.yaml"),
        )
        .await
        .unwrap_or_else(|error| panic!("client {index}: register: {error}"));
    let mut started = Vec::with_capacity(runs);
    for run in 0..runs {
        let key = key(index, run);
        let reply = client
            .start_run(
                StartRun::new(&registered.name)
                    .version(&registered.version)
                    .param("n", run.to_string())
                    .idempotency_key(&key),
            )
            .await
            .unwrap_or_else(|error| panic!("client {index}: start run {run}: {error}"));
        assert!(reply.created, "client {index}: key {key} is new");
        started.push((key, reply.run_id));
    }
    let again = client
        .start_run(StartRun::new(&registered.name).idempotency_key(&started[0].0))
        .await
        .unwrap_or_else(|error| panic!("client {index}: start again: {error}"));
    assert!(
        !again.created,
        "client {index}: the key {} was used",
        started[0].0
    );
    assert_eq!(
        again.run_id, started[0].1,
        "client {index}: same key, same run"
    );
    for (key, run_id) in &started {
        let run = client
            .wait_run(run_id.clone())
            .await
            .unwrap_or_else(|error| panic!("client {index}: wait for {run_id}: {error}"));
        assert_eq!(run.state, RunState::Succeeded, "run {run_id} (key {key})");
        assert_eq!(run.tasks.len(), TASKS, "run {run_id}");
        for task in &run.tasks {
            assert_eq!(
                (task.state, task.attempts),
                (TaskState::Succeeded, 1),
                "run {run_id} task {}",
                task.task_id
            );
        }
    }
    started
}
