//! Tests of the shell executor with real processes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::*;
use crate::checkpoint::RunId;

/// Longest a test waits for any single report.
const REPORT_WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    dir: TempDir,
    run_id: RunId,
    executor: ShellExecutor,
    reports: UnboundedReceiver<AttemptReport>,
}

fn fixture(kill_grace: Duration) -> Fixture {
    let (sender, reports) = mpsc::unbounded_channel();
    Fixture {
        dir: tempfile::tempdir().unwrap(),
        run_id: RunId::new(),
        executor: ShellExecutor::new(sender, ShellConfig { kill_grace }),
        reports,
    }
}

impl Fixture {
    /// A request for attempt 1 of `task`, with its files under `runs/taskN/` (not created).
    fn request(&self, task: TaskIndex, command: &str) -> AttemptRequest {
        let files = self.dir.path().join("runs").join(format!("task{task}"));
        AttemptRequest {
            run_id: self.run_id,
            task,
            task_id: format!("task{task}"),
            attempt: 1,
            command: command.to_owned(),
            working_dir: self.dir.path().to_path_buf(),
            env: Vec::new(),
            timeout: None,
            stdout_path: files.join("1.stdout"),
            stderr_path: files.join("1.stderr"),
            outputs_path: files.join("1.outputs"),
        }
    }

    async fn next_report(&mut self) -> AttemptReport {
        tokio::time::timeout(REPORT_WAIT, self.reports.recv())
            .await
            .expect("no report within the wait")
            .expect("report channel closed")
    }

    /// Waits for the `Spawned` report of the next attempt and returns its pid.
    async fn spawned(&mut self) -> u32 {
        match self.next_report().await {
            AttemptReport::Spawned {
                pid, start_ticks, ..
            } => {
                // Short commands may be gone already; a live one must match.
                if let Ok(now) = process::start_ticks(pid) {
                    assert_eq!(now, start_ticks);
                }
                assert!(start_ticks > 0);
                pid
            }
            other => panic!("expected Spawned, got {other:?}"),
        }
    }

    async fn finished(&mut self) -> AttemptOutcome {
        match self.next_report().await {
            AttemptReport::Finished { outcome, .. } => outcome,
            other => panic!("expected Finished, got {other:?}"),
        }
    }

    /// Starts `request`, waits for it to finish, and returns its pid and outcome.
    async fn run(&mut self, request: AttemptRequest) -> (u32, AttemptOutcome) {
        self.executor.start(request);
        let pid = self.spawned().await;
        let outcome = self.finished().await;
        assert_eq!(self.executor.running(), 0);
        (pid, outcome)
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|process| process.stat())
        .is_ok_and(|stat| !matches!(stat.state, 'Z' | 'X' | 'x'))
}

fn assert_group_gone(pgid: u32) {
    let members = process::live_group_members(pgid).unwrap();
    assert!(members.is_empty(), "group {pgid} still has {members:?}");
}

/// Waits until group `pgid` has at least `count` live members.
async fn wait_members(pgid: u32, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while process::live_group_members(pgid).unwrap().len() < count {
        assert!(
            Instant::now() < deadline,
            "group {pgid} never had {count} members"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `path` contains `text`, and returns the contents.
async fn wait_for_text(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let contents = std::fs::read_to_string(path).unwrap_or_default();
        if contents.contains(text) {
            return contents;
        }
        assert!(
            Instant::now() < deadline,
            "`{text}` never appeared in {path:?}: {contents:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// A command that ignores SIGTERM (the background `sleep` inherits the ignored disposition),
/// says `ready` once that is in place, and runs until killed.
const IGNORES_SIGTERM: &str = "trap '' TERM; sleep 1000 & echo ready; wait; wait";

#[tokio::test(flavor = "multi_thread")]
async fn environment_is_inherited_extended_and_tandem_variables_win() {
    let mut fixture = fixture(Duration::from_secs(5));
    let mut request = fixture.request(4, "");
    request.task_id = "transform[shard=1]".into();
    request.attempt = 3;
    request.env = vec![
        ("GREETING".into(), "hello world".into()),
        ("HOME".into(), "/custom/home".into()),
        ("TANDEM_ATTEMPT".into(), "999".into()),
    ];
    std::fs::create_dir_all(request.outputs_path.parent().unwrap()).unwrap();
    std::fs::write(&request.outputs_path, "stale=1\n").unwrap();
    request.command = r#"printf '%s\n' "$GREETING" "$HOME" "$TANDEM_RUN_ID" "$TANDEM_TASK_ID" \
        "$TANDEM_ATTEMPT" "$TANDEM_IDEMPOTENCY_KEY" "$TANDEM_OUTPUT" "$(pwd)"
        [ -n "$PATH" ] && echo path-inherited
        [ -f "$TANDEM_OUTPUT" ] && [ ! -s "$TANDEM_OUTPUT" ] && echo outputs-empty"#
        .into();
    let (_, outcome) = fixture.run(request.clone()).await;
    assert_eq!(
        outcome,
        AttemptOutcome::Succeeded {
            outputs: BTreeMap::new()
        }
    );
    let stdout = std::fs::read_to_string(&request.stdout_path).unwrap();
    let working_dir = request.working_dir.canonicalize().unwrap();
    let expected = [
        "hello world".to_owned(),
        "/custom/home".to_owned(),
        fixture.run_id.to_string(),
        "transform[shard=1]".to_owned(),
        "3".to_owned(),
        format!("{}/transform[shard=1]", fixture.run_id),
        request.outputs_path.display().to_string(),
        working_dir.display().to_string(),
        "path-inherited".to_owned(),
        "outputs-empty".to_owned(),
    ];
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_are_parsed_from_the_output_file() {
    let mut fixture = fixture(Duration::from_secs(5));
    let request = fixture.request(
        0,
        r#"echo "count=3" >> "$TANDEM_OUTPUT"
           printf 'report<<EOF\nline one\n\nline=three\nEOF\n' >> "$TANDEM_OUTPUT"
           echo "count=4" >> "$TANDEM_OUTPUT""#,
    );
    let (_, outcome) = fixture.run(request).await;
    assert_eq!(
        outcome,
        AttemptOutcome::Succeeded {
            outputs: outputs(&[("count", "4"), ("report", "line one\n\nline=three")])
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_outputs_fail_without_retry() {
    let mut fixture = fixture(Duration::from_secs(5));
    let request = fixture.request(0, r#"printf 'ok=1\nnot an output\n' > "$TANDEM_OUTPUT""#);
    let (_, outcome) = fixture.run(request).await;
    let AttemptOutcome::Failed {
        error, retryable, ..
    } = outcome
    else {
        panic!("expected Failed, got {outcome:?}");
    };
    assert!(!retryable);
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("not an output"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_go_to_their_files() {
    let mut fixture = fixture(Duration::from_secs(5));
    let request = fixture.request(0, "echo to-stdout; echo to-stderr >&2; echo more");
    let (_, outcome) = fixture.run(request.clone()).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(
        std::fs::read_to_string(&request.stdout_path).unwrap(),
        "to-stdout\nmore\n"
    );
    assert_eq!(
        std::fs::read_to_string(&request.stderr_path).unwrap(),
        "to-stderr\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_zero_exit_is_a_retryable_failure() {
    let mut fixture = fixture(Duration::from_secs(5));
    let request = fixture.request(0, "echo failing; exit 3");
    let (_, outcome) = fixture.run(request).await;
    assert_eq!(
        outcome,
        AttemptOutcome::Failed {
            exit_code: Some(3),
            signal: None,
            error: "exited with code 3".into(),
            retryable: true,
            error_type: None,
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn death_by_signal_is_reported() {
    let mut fixture = fixture(Duration::from_secs(5));
    let request = fixture.request(0, "kill -KILL $$");
    let (_, outcome) = fixture.run(request).await;
    let AttemptOutcome::Failed {
        exit_code,
        signal,
        error,
        retryable,
        error_type: None,
    } = outcome
    else {
        panic!("expected Failed, got {outcome:?}");
    };
    assert_eq!((exit_code, signal, retryable), (None, Some(9), true));
    assert!(error.contains("SIGKILL"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_the_whole_group() {
    let mut fixture = fixture(Duration::from_secs(5));
    let mut request = fixture.request(0, "sleep 1000 & sleep 1000");
    request.timeout = Some(Duration::from_millis(400));
    let started = Instant::now();
    fixture.executor.start(request);
    let pid = fixture.spawned().await;
    // The shell (or the `sleep` it became) and the background `sleep`.
    wait_members(pid, 2).await;
    let outcome = fixture.finished().await;
    let elapsed = started.elapsed();
    assert_eq!(outcome, AttemptOutcome::TimedOut { timeout_ms: 400 });
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    // `sleep` dies of SIGTERM: no need to wait for the grace.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_group_gone(pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn background_processes_of_a_finished_shell_are_killed() {
    let mut fixture = fixture(Duration::from_secs(5));
    let request = fixture.request(
        0,
        "sleep 1000 & echo $!; echo done=yes >> \"$TANDEM_OUTPUT\"",
    );
    let started = Instant::now();
    let (pid, outcome) = fixture.run(request.clone()).await;
    assert_eq!(
        outcome,
        AttemptOutcome::Succeeded {
            outputs: outputs(&[("done", "yes")])
        }
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let background: u32 = std::fs::read_to_string(&request.stdout_path)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(background, pid);
    assert!(!alive(background), "background sleep {background} survived");
    assert_group_gone(pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_escalates_to_sigkill_after_the_grace() {
    let grace = Duration::from_millis(300);
    let mut fixture = fixture(grace);
    let request = fixture.request(7, IGNORES_SIGTERM);
    let stdout = request.stdout_path.clone();
    fixture.executor.start(request);
    let pid = fixture.spawned().await;
    wait_for_text(&stdout, "ready").await;
    wait_members(pid, 2).await;
    assert_eq!(fixture.executor.running(), 1);

    let cancelled = Instant::now();
    assert!(fixture.executor.cancel(7, 1));
    assert!(!fixture.executor.cancel(7, 2), "attempt 2 never started");
    let outcome = fixture.finished().await;
    let elapsed = cancelled.elapsed();
    assert_eq!(outcome, AttemptOutcome::Cancelled);
    assert!(elapsed >= grace, "killed before the grace: {elapsed:?}");
    assert!(elapsed < grace + Duration::from_secs(2), "{elapsed:?}");
    assert_group_gone(pid);
    assert_eq!(fixture.executor.running(), 0);
    assert!(
        !fixture.executor.cancel(7, 1),
        "finished attempts are forgotten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_all_now_does_not_wait_for_the_grace() {
    let mut fixture = fixture(Duration::from_secs(60));
    let mut pids = Vec::new();
    for task in 0..2 {
        let request = fixture.request(task, IGNORES_SIGTERM);
        let stdout = request.stdout_path.clone();
        fixture.executor.start(request);
        pids.push(fixture.spawned().await);
        wait_for_text(&stdout, "ready").await;
    }
    for &pid in &pids {
        wait_members(pid, 2).await;
    }
    // A cancel in its 60 s grace, then a second Ctrl-C.
    fixture.executor.cancel_all();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fixture.executor.running(), 2, "SIGTERM is ignored");
    let killed = Instant::now();
    fixture.executor.kill_all_now();
    for _ in 0..2 {
        assert_eq!(fixture.finished().await, AttemptOutcome::Cancelled);
    }
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
    for pid in pids {
        assert_group_gone(pid);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_executor_kills_its_attempts() {
    let mut fixture = fixture(Duration::from_secs(60));
    let request = fixture.request(0, IGNORES_SIGTERM);
    let stdout = request.stdout_path.clone();
    fixture.executor.start(request);
    let pid = fixture.spawned().await;
    wait_for_text(&stdout, "ready").await;
    let (sender, _) = mpsc::unbounded_channel();
    drop(std::mem::replace(
        &mut fixture.executor,
        ShellExecutor::new(sender, ShellConfig::default()),
    ));
    assert_eq!(fixture.finished().await, AttemptOutcome::Cancelled);
    assert_group_gone(pid);
}

#[test]
fn runtime_shutdown_kills_running_groups() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pid = runtime.block_on(async {
        let (sender, mut reports) = mpsc::unbounded_channel();
        let mut executor = ShellExecutor::new(sender, ShellConfig::default());
        let fixture_dir = dir.path().to_path_buf();
        executor.start(AttemptRequest {
            run_id: RunId::new(),
            task: 0,
            task_id: "t".into(),
            attempt: 1,
            command: "sleep 1000 & sleep 1000".into(),
            working_dir: fixture_dir.clone(),
            env: Vec::new(),
            timeout: None,
            stdout_path: fixture_dir.join("out"),
            stderr_path: fixture_dir.join("err"),
            outputs_path: fixture_dir.join("outputs"),
        });
        let Some(AttemptReport::Spawned { pid, .. }) = reports.recv().await else {
            panic!("expected Spawned");
        };
        wait_members(pid, 2).await;
        // Leak the executor so that only the runtime's shutdown stops the attempt.
        std::mem::forget(executor);
        pid
    });
    drop(runtime);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !process::live_group_members(pid).unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "group {pid} survived the runtime"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_working_dir_is_a_retryable_spawn_failure() {
    let mut fixture = fixture(Duration::from_secs(5));
    let mut request = fixture.request(0, "echo never");
    request.working_dir = fixture.dir.path().join("no-such-dir");
    fixture.executor.start(request);
    // No Spawned report: the process never existed.
    let outcome = fixture.finished().await;
    let AttemptOutcome::Failed {
        exit_code,
        error,
        retryable,
        ..
    } = outcome
    else {
        panic!("expected Failed, got {outcome:?}");
    };
    assert_eq!(exit_code, None);
    assert!(retryable);
    assert!(error.contains("working directory"), "{error}");
    assert!(error.contains("no-such-dir"), "{error}");
    assert!(error.contains("No such file or directory"), "{error}");
    assert_eq!(fixture.executor.running(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_stdout_path_fails_before_spawn() {
    let mut fixture = fixture(Duration::from_secs(5));
    let mut request = fixture.request(0, "echo never");
    let blocker = fixture.dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    request.stdout_path = blocker.join("1.stdout");
    fixture.executor.start(request);
    let outcome = fixture.finished().await;
    let AttemptOutcome::Failed { error, .. } = outcome else {
        panic!("expected Failed, got {outcome:?}");
    };
    assert!(error.contains("stdout"), "{error}");
    assert!(error.contains(&blocker.display().to_string()), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn same_attempt_cannot_run_twice_at_once() {
    let mut fixture = fixture(Duration::from_secs(5));
    fixture.executor.start(fixture.request(0, "sleep 1000"));
    let pid = fixture.spawned().await;
    fixture.executor.start(fixture.request(0, "echo twin"));
    let outcome = fixture.finished().await;
    let AttemptOutcome::Failed {
        error, retryable, ..
    } = outcome
    else {
        panic!("expected Failed, got {outcome:?}");
    };
    assert!(!retryable);
    assert!(error.contains("already running"), "{error}");
    assert_eq!(fixture.executor.running(), 1);
    assert!(fixture.executor.cancel(0, 1));
    assert_eq!(fixture.finished().await, AttemptOutcome::Cancelled);
    assert_group_gone(pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_right_after_start_is_reported_once() {
    let mut fixture = fixture(Duration::from_secs(5));
    fixture.executor.start(fixture.request(0, "sleep 1000"));
    fixture.executor.cancel(0, 1);
    let mut finished = 0;
    while finished == 0 {
        match fixture.next_report().await {
            AttemptReport::Spawned { pid, .. } => {
                let outcome = fixture.finished().await;
                assert_eq!(outcome, AttemptOutcome::Cancelled);
                assert_group_gone(pid);
                finished += 1;
            }
            AttemptReport::Finished { outcome, .. } => {
                assert_eq!(outcome, AttemptOutcome::Cancelled);
                finished += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        fixture.reports.try_recv().is_err(),
        "a second report arrived"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_concurrent_attempts_are_each_reported_once() {
    const ATTEMPTS: u32 = 200;
    let mut fixture = fixture(Duration::from_secs(5));
    let mut requests = Vec::new();
    for task in 0..ATTEMPTS {
        requests.push(fixture.request(
            task,
            r#"echo "$TANDEM_TASK_ID"; echo "task=$TANDEM_TASK_ID" > "$TANDEM_OUTPUT""#,
        ));
    }
    for request in &requests {
        fixture.executor.start(request.clone());
    }
    assert!(fixture.executor.running() > 0);
    let mut spawned: HashMap<TaskIndex, usize> = HashMap::new();
    let mut finished: HashMap<TaskIndex, AttemptOutcome> = HashMap::new();
    while finished.len() < ATTEMPTS as usize {
        match fixture.next_report().await {
            AttemptReport::Spawned { task, attempt, .. } => {
                assert_eq!(attempt, 1);
                assert!(!finished.contains_key(&task), "Spawned after Finished");
                *spawned.entry(task).or_default() += 1;
            }
            AttemptReport::Finished {
                task,
                attempt,
                outcome,
            } => {
                assert_eq!(attempt, 1);
                assert!(
                    finished.insert(task, outcome).is_none(),
                    "task {task} finished twice"
                );
            }
        }
    }
    assert_eq!(fixture.executor.running(), 0);
    assert_eq!(spawned.len(), ATTEMPTS as usize);
    assert!(spawned.values().all(|&count| count == 1), "{spawned:?}");
    for request in &requests {
        let expected = format!("task{}", request.task);
        assert_eq!(
            finished[&request.task],
            AttemptOutcome::Succeeded {
                outputs: outputs(&[("task", &expected)])
            }
        );
        assert_eq!(
            std::fs::read_to_string(&request.stdout_path).unwrap(),
            format!("{expected}\n")
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        fixture.reports.try_recv().is_err(),
        "an extra report arrived"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_outside_the_runtime_uses_the_runtime_of_new() {
    let mut fixture = fixture(Duration::from_secs(5));
    let request = fixture.request(0, "echo from-thread");
    let stdout = request.stdout_path.clone();
    let mut executor = fixture.executor;
    let executor_back = std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        executor.start(request);
        executor
    })
    .join()
    .unwrap();
    fixture.executor = executor_back;
    fixture.spawned().await;
    assert!(fixture.finished().await.is_success());
    assert_eq!(std::fs::read_to_string(stdout).unwrap(), "from-thread\n");
}

#[test]
fn without_any_runtime_the_attempt_fails_at_once() {
    let (sender, mut reports) = mpsc::unbounded_channel();
    let mut executor = ShellExecutor::new(sender, ShellConfig::default());
    let dir = tempfile::tempdir().unwrap();
    executor.start(AttemptRequest {
        run_id: RunId::new(),
        task: 5,
        task_id: "t".into(),
        attempt: 2,
        command: "echo never".into(),
        working_dir: dir.path().to_path_buf(),
        env: Vec::new(),
        timeout: None,
        stdout_path: dir.path().join("out"),
        stderr_path: dir.path().join("err"),
        outputs_path: dir.path().join("outputs"),
    });
    let Ok(AttemptReport::Finished {
        task: 5,
        attempt: 2,
        outcome: AttemptOutcome::Failed {
            error, retryable, ..
        },
    }) = reports.try_recv()
    else {
        panic!("expected an immediate Failed report");
    };
    assert!(!retryable);
    assert!(error.contains("outside a tokio runtime"), "{error}");
    assert!(!dir.path().join("out").exists());
}
