//! Tests of the I/O loop with the real embedded store and real processes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::*;
use crate::checkpoint::{AttemptOutcome, Checkpoint, Event, TaskEnd};
use crate::store::sqlite::SqliteStore;

mod failover;
mod remote;

type Driving = tokio::task::JoinHandle<Result<Finished, RunnerError>>;

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn CheckpointStore>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state").join("tandem.db")).unwrap();
        Fixture {
            dir,
            store: Arc::new(store),
        }
    }

    fn config(&self, parallelism: usize) -> RunnerConfig {
        RunnerConfig {
            parallelism,
            kill_grace: Duration::from_millis(300),
            state_dir: StateDir::new(self.dir.path().join("state")),
            remote: None,
        }
    }

    /// Writes `yaml` as `wf.yaml` in the fixture dir and creates a run of it.
    async fn create(&self, yaml: &str, clock: &RunClock) -> Prepared {
        let path = self.dir.path().join("wf.yaml");
        std::fs::write(&path, yaml).unwrap();
        let spec = tandem_dsl::compile("wf.yaml", yaml).unwrap();
        create_run(
            self.store.as_ref(),
            &current_owner(),
            &path,
            yaml.to_string(),
            spec,
            &[],
            clock,
        )
        .await
        .unwrap()
    }

    /// Starts driving a run of `yaml` in a task; returns the run id, the task, the control
    /// sender and the progress receiver.
    async fn start(
        &self,
        yaml: &str,
    ) -> (
        RunId,
        Driving,
        mpsc::UnboundedSender<Control>,
        watch::Receiver<Progress>,
    ) {
        self.start_with(yaml, self.config(4)).await
    }

    /// [`Fixture::start`] with `config`.
    async fn start_with(
        &self,
        yaml: &str,
        config: RunnerConfig,
    ) -> (
        RunId,
        Driving,
        mpsc::UnboundedSender<Control>,
        watch::Receiver<Progress>,
    ) {
        let clock = RunClock::start();
        let prepared = self.create(yaml, &clock).await;
        let run_id = prepared.run_id;
        let (controls, control_rx) = mpsc::unbounded_channel();
        let (progress, progress_rx) = watch::channel(Progress::default());
        let store = Arc::clone(&self.store);
        let driving = tokio::spawn(async move {
            drive(store, prepared, config, clock, control_rx, progress).await
        });
        (run_id, driving, controls, progress_rx)
    }

    /// Runs `yaml` to its end; returns how it ended and every checkpoint of the run.
    async fn run(&self, yaml: &str, parallelism: usize) -> (Finished, Vec<Checkpoint>) {
        let clock = RunClock::start();
        let prepared = self.create(yaml, &clock).await;
        let run_id = prepared.run_id;
        let (_controls, control_rx) = mpsc::unbounded_channel();
        let (progress, _) = watch::channel(Progress::default());
        let finished = drive(
            Arc::clone(&self.store),
            prepared,
            self.config(parallelism),
            clock,
            control_rx,
            progress,
        )
        .await
        .unwrap();
        let checkpoints = self.store.read_run(run_id).await.unwrap();
        (finished, checkpoints)
    }

    fn stdout(&self, finished: &Finished, task: &str, attempt: u32) -> String {
        let path = self.config(1).state_dir.attempt_file(
            finished.state.run_id,
            task,
            attempt,
            AttemptFile::Stdout,
        );
        std::fs::read_to_string(path).unwrap()
    }
}

fn started_at(checkpoints: &[Checkpoint]) -> Vec<(u32, i64)> {
    checkpoints
        .iter()
        .filter_map(|checkpoint| match checkpoint.event {
            Event::AttemptStarted { attempt, at, .. } => Some((attempt, at)),
            _ => None,
        })
        .collect()
}

fn retry_delays(checkpoints: &[Checkpoint]) -> Vec<i64> {
    let mut finished_at = 0;
    let mut delays = Vec::new();
    for checkpoint in checkpoints {
        match checkpoint.event {
            Event::AttemptFinished { at, .. } => finished_at = at,
            Event::RetryScheduled { due, .. } => delays.push(due - finished_at),
            _ => {}
        }
    }
    delays
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_wait_out_their_backoff_in_paused_time() {
    let fixture = Fixture::new();
    let yaml = "name: flaky\ntasks:\n  flaky:\n    run: exit 1\n    retry: { max_attempts: 4, initial_interval: 10s, backoff_coefficient: 2.0, max_interval: 25s, jitter: none }\n";
    let (finished, checkpoints) = fixture.run(yaml, 1).await;
    assert_eq!(finished.end, RunEnd::Failed);
    assert_eq!(retry_delays(&checkpoints), vec![10_000, 20_000, 25_000]);
    let starts = started_at(&checkpoints);
    assert_eq!(starts.len(), 4);
    // Each attempt starts once its backoff has passed on the (paused, auto-advancing) clock.
    for (pair, backoff) in starts.windows(2).zip([10_000, 20_000, 25_000]) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            (backoff..backoff + 1_000).contains(&gap),
            "attempt {} started {gap} ms after attempt {}, expected about {backoff} ms",
            pair[1].0,
            pair[0].0
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn full_jitter_delays_stay_within_the_backoff() {
    let fixture = Fixture::new();
    let yaml = "name: jitter\ntasks:\n  flaky:\n    run: exit 1\n    retry: { max_attempts: 6, initial_interval: 1m, backoff_coefficient: 1.0 }\n";
    let (_, checkpoints) = fixture.run(yaml, 1).await;
    let delays = retry_delays(&checkpoints);
    assert_eq!(delays.len(), 5);
    assert!(
        delays.iter().all(|delay| (0..=60_000).contains(delay)),
        "{delays:?}"
    );
    // Five uniform draws in [0, 60 s] that are all equal would mean no jitter at all.
    assert!(delays.iter().any(|delay| *delay != delays[0]), "{delays:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_env_and_matrix_reach_the_processes() {
    let fixture = Fixture::new();
    let yaml = r#"
name: outputs
params:
  greeting: hello
tasks:
  produce:
    run: |
      echo "path=/data/${{ params.greeting }}.csv" >> "$TANDEM_OUTPUT"
      printf 'multi<<EOF\nline one\nline two\nEOF\n' >> "$TANDEM_OUTPUT"
  shard:
    needs: [produce]
    matrix: { n: [1, 2, 3] }
    env: { SHARD: "${{ matrix.n }}" }
    run: echo "shard $SHARD of ${{ tasks.produce.outputs.path }}"
  consume:
    needs: [shard, produce]
    run: |
      echo "${{ tasks.produce.outputs.multi }}"
      echo "$TANDEM_RUN_ID $TANDEM_TASK_ID $TANDEM_ATTEMPT $TANDEM_IDEMPOTENCY_KEY"
"#;
    let (finished, _) = fixture.run(yaml, 4).await;
    assert_eq!(finished.end, RunEnd::Succeeded, "{}", finished.reason);
    let run_id = finished.state.run_id;
    assert_eq!(
        fixture.stdout(&finished, "shard[n=2]", 1),
        "shard 2 of /data/hello.csv\n"
    );
    assert_eq!(
        fixture.stdout(&finished, "consume", 1),
        format!("line one\nline two\n{run_id} consume 1 {run_id}/consume\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_attempts_whole_process_group() {
    let fixture = Fixture::new();
    let yaml =
        "name: slow\ntasks:\n  slow:\n    run: sleep 1000 & sleep 1000\n    timeout: 300ms\n";
    let (finished, checkpoints) = fixture.run(yaml, 1).await;
    assert_eq!(finished.end, RunEnd::Failed);
    let pid = checkpoints
        .iter()
        .find_map(|checkpoint| match checkpoint.event {
            Event::AttemptSpawned { pid, .. } => Some(pid),
            _ => None,
        })
        .expect("the attempt's process was recorded");
    assert!(checkpoints.iter().any(|checkpoint| matches!(
        checkpoint.event,
        Event::AttemptFinished {
            outcome: AttemptOutcome::TimedOut { timeout_ms: 300 },
            ..
        }
    )));
    let left = crate::executor::process::live_group_members(pid).unwrap();
    assert!(
        left.is_empty(),
        "processes of group {pid} still alive: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_running_tasks_and_records_the_run_cancelled() {
    let fixture = Fixture::new();
    let yaml = "name: long\ntasks:\n  a:\n    run: sleep 30\n  b:\n    run: trap '' TERM; sleep 30\n  c:\n    needs: [a]\n    run: echo never\n";
    let (run_id, driving, controls, mut progress_rx) = fixture.start(yaml).await;
    // Wait until both attempts are running, then cancel.
    progress_rx
        .wait_for(|progress| progress.counts.running == 2)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    controls
        .send(Control::Cancel {
            reason: "cancelled by test".into(),
        })
        .unwrap();
    let finished = driving.await.unwrap().unwrap();
    assert_eq!(finished.end, RunEnd::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5));
    let checkpoints = fixture.store.read_run(run_id).await.unwrap();
    let cancelled_attempts = checkpoints
        .iter()
        .filter(|checkpoint| {
            matches!(
                checkpoint.event,
                Event::AttemptFinished {
                    outcome: AttemptOutcome::Cancelled,
                    ..
                }
            )
        })
        .count();
    assert_eq!(cancelled_attempts, 2);
    for checkpoint in &checkpoints {
        if let Event::AttemptSpawned { pid, .. } = checkpoint.event {
            let left = crate::executor::process::live_group_members(pid).unwrap();
            assert!(left.is_empty(), "group {pid} survived the cancel: {left:?}");
        }
    }
    let summary = fixture.store.run_summary(run_id).await.unwrap();
    assert_eq!(summary.status, RunStatus::Cancelled);
    assert!(matches!(
        finished.state.task(2).status,
        crate::scheduler::TaskStatus::Ended(TaskEnd::Cancelled)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_owner_stops_and_kills_its_attempts() {
    let fixture = Fixture::new();
    let yaml = "name: fenced\ntasks:\n  a:\n    run: sleep 0.3\n  b:\n    run: sleep 30\n";
    let (run_id, driving, _controls, mut progress_rx) = fixture.start(yaml).await;
    progress_rx
        .wait_for(|progress| progress.counts.running == 2)
        .await
        .unwrap();
    // Another process takes the run over; the first one's next commit is refused.
    let other = Owner {
        host: "elsewhere".into(),
        pid: 1,
        start_ticks: 1,
    };
    fixture.store.claim_run(run_id, &other).await.unwrap();
    let error = driving.await.unwrap().unwrap_err();
    assert!(
        matches!(error, RunnerError::Store(StoreError::Fenced { .. })),
        "{error}"
    );
    let checkpoints = fixture.store.read_run(run_id).await.unwrap();
    assert!(
        !checkpoints
            .iter()
            .any(|checkpoint| matches!(checkpoint.event, Event::AttemptFinished { task: 0, .. }))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for checkpoint in &checkpoints {
        if let Event::AttemptSpawned { pid, .. } = checkpoint.event {
            let left = crate::executor::process::live_group_members(pid).unwrap();
            assert!(left.is_empty(), "group {pid} survived fencing: {left:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_refuses_finished_runs_and_live_owners() {
    let fixture = Fixture::new();
    let (finished, _) = fixture.run("name: done\ntasks:\n  a: {}\n", 1).await;
    let run_id = finished.state.run_id;
    let error = resume_run(fixture.store.as_ref(), &current_owner(), run_id, false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RunnerError::AlreadyFinished { .. }),
        "{error}"
    );

    let clock = RunClock::start();
    let prepared = fixture
        .create("name: open\ntasks:\n  a:\n    run: 'true'\n", &clock)
        .await;
    let live_elsewhere = Owner {
        host: current_owner().host,
        pid: 1,
        start_ticks: crate::executor::process::start_ticks(1).unwrap(),
    };
    let error = resume_run(
        fixture.store.as_ref(),
        &live_elsewhere,
        prepared.run_id,
        false,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, RunnerError::OwnerAlive { .. }), "{error}");
    // With force, the run is taken over and continues to the end.
    let taken = resume_run(
        fixture.store.as_ref(),
        &live_elsewhere,
        prepared.run_id,
        true,
    )
    .await
    .unwrap();
    assert!(taken.epoch > prepared.epoch);
    let (_controls, control_rx) = mpsc::unbounded_channel();
    let (progress, _) = watch::channel(Progress::default());
    let finished = drive(
        Arc::clone(&fixture.store),
        taken,
        fixture.config(1),
        clock,
        control_rx,
        progress,
    )
    .await
    .unwrap();
    assert_eq!(finished.end, RunEnd::Succeeded);
}

#[test]
fn attempt_files_live_under_the_state_dir() {
    let config = RunnerConfig {
        parallelism: 1,
        kill_grace: Duration::from_secs(1),
        state_dir: StateDir::new("/state"),
        remote: None,
    };
    let run_id = RunId::new();
    let request = attempt_request(
        run_id,
        Path::new("/wf"),
        &config,
        Dispatch {
            task: 3,
            task_id: "t[x=1]".into(),
            attempt: 2,
            kind: DispatchKind::Shell {
                command: "true".into(),
                working_dir: Some("sub".into()),
                env: vec![],
            },
            timeout: None,
        },
    )
    .expect("a shell dispatch");
    assert_eq!(request.working_dir, Path::new("/wf/sub"));
    assert_eq!(
        request.stdout_path,
        Path::new(&format!("/state/runs/{run_id}/t%5Bx=1%5D/2.stdout"))
    );
}
