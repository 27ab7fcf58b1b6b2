//! Crash and resume through the real binary: `tandem run` is SIGKILLed mid-run (at several
//! points, sometimes its `tandem resume` too), then `tandem resume` finishes the run. Every
//! task must end succeeded, and no task may run again once its success was recorded.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{Workspace, read_first_line, run_id_of, signal};
use nix::sys::signal::Signal;

const RECORD: &str = r#"#!/bin/sh
# Records each execution of a task: a start line, some work, an end line.
set -e
mkdir -p exec
echo "start $TANDEM_ATTEMPT" >> "exec/$TANDEM_TASK_ID"
sleep 0.2
echo "end $TANDEM_ATTEMPT" >> "exec/$TANDEM_TASK_ID"
"#;

const WORKFLOW: &str = r#"
name: crashy
defaults:
  retry: { max_attempts: 20, initial_interval: 50ms, max_interval: 100ms }
tasks:
  first:
    run: ./record.sh
  fan:
    needs: [first]
    matrix: { i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }
    run: ./record.sh
  middle:
    needs: [fan]
    run: ./record.sh
  c1: { needs: [middle], run: ./record.sh }
  c2: { needs: [c1], run: ./record.sh }
  c3: { needs: [c2], run: ./record.sh }
  c4: { needs: [c3], run: ./record.sh }
  join:
    needs: [c4, fan]
"#;

fn setup() -> Workspace {
    let workspace = Workspace::new();
    let script = workspace.write("record.sh", RECORD);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    workspace.write("crashy.yaml", WORKFLOW);
    workspace
}

/// Starts `args`, waits `after`, SIGKILLs it, and asserts it really died of the kill (the
/// run had not finished).
fn run_and_kill(workspace: &Workspace, args: &[&str], after: Duration) -> String {
    let mut child = workspace.spawn(args);
    let first_line = read_first_line(&mut child);
    std::thread::sleep(after);
    signal(&child, Signal::SIGKILL);
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGKILL as i32),
        "`tandem {}` ended before it was killed ({status}); the kill point is too late",
        args.join(" ")
    );
    first_line
}

/// Parses `exec/TASK` files: for each task, its executions as (attempt, completed).
fn executions(workspace: &Workspace) -> BTreeMap<String, Vec<(u32, bool)>> {
    let mut all = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(workspace.path().join("exec")) else {
        return all;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let mut runs: Vec<(u32, bool)> = Vec::new();
        for line in text.lines() {
            let (kind, attempt) = line.split_once(' ').unwrap();
            let attempt: u32 = attempt.parse().unwrap();
            match kind {
                "start" => runs.push((attempt, false)),
                "end" => {
                    let run = runs
                        .iter_mut()
                        .rev()
                        .find(|(a, _)| *a == attempt)
                        .expect("end without start");
                    run.1 = true;
                }
                other => panic!("unexpected line kind {other}"),
            }
        }
        all.insert(entry.file_name().to_string_lossy().into_owned(), runs);
    }
    all
}

fn crash_and_resume(kill_points: &[Duration]) {
    let workspace = setup();
    let first = run_and_kill(
        &workspace,
        &["run", "crashy.yaml", "--parallelism", "3"],
        kill_points[0],
    );
    let run_id = run_id_of(&first);
    for &after in &kill_points[1..] {
        run_and_kill(&workspace, &["resume", &run_id], after);
    }
    let output = workspace.output(&["resume", &run_id, "--parallelism", "3"]);
    assert!(
        output.status.success(),
        "final resume failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let shown = workspace.show(&run_id);
    assert_eq!(shown["status"], "succeeded");
    let executions = executions(&workspace);
    let tasks = shown["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 19);
    for task in tasks {
        let id = task["id"].as_str().unwrap();
        assert_eq!(task["state"], "succeeded", "task {id}");
        let attempts = task["attempts"].as_array().unwrap();
        let (last, earlier) = attempts.split_last().unwrap();
        assert_eq!(last["outcome"]["status"], "succeeded", "task {id}");
        for attempt in earlier {
            // The only failures in this workflow are the crashes.
            assert_eq!(
                attempt["outcome"]["status"], "interrupted",
                "task {id}: {attempt}"
            );
        }
        let succeeded = last["attempt"].as_u64().unwrap() as u32;
        if id == "join" {
            assert!(
                !executions.contains_key(id),
                "an empty task runs no process"
            );
            continue;
        }
        let runs = executions
            .get(id)
            .unwrap_or_else(|| panic!("task {id} never executed"));
        let mut numbers: Vec<u32> = runs.iter().map(|(attempt, _)| *attempt).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(
            numbers.len(),
            runs.len(),
            "task {id}: an attempt executed twice: {runs:?}"
        );
        // Write-ahead: no execution without a recorded attempt; and nothing ran after the
        // recorded success.
        assert!(
            runs.iter().all(|(attempt, _)| *attempt <= succeeded),
            "task {id} ran again after attempt {succeeded} succeeded: {runs:?}"
        );
        assert!(
            runs.contains(&(succeeded, true)),
            "task {id}: the succeeded attempt {succeeded} did not complete: {runs:?}"
        );
    }
}

#[test]
fn crash_right_after_start() {
    crash_and_resume(&[Duration::from_millis(100)]);
}

#[test]
fn crash_during_the_fan_out() {
    crash_and_resume(&[Duration::from_millis(500)]);
}

#[test]
fn crash_after_the_fan_out() {
    crash_and_resume(&[Duration::from_millis(1_300)]);
}

#[test]
fn crash_in_the_chain() {
    crash_and_resume(&[Duration::from_millis(1_900)]);
}

#[test]
fn crash_the_run_and_then_the_resumes() {
    crash_and_resume(&[
        Duration::from_millis(400),
        Duration::from_millis(300),
        Duration::from_millis(600),
    ]);
}
