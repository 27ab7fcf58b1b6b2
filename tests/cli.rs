//! The `tandem` command line end to end: real binary, real processes, real state files.

mod common;

use std::time::{Duration, Instant};

use common::{Workspace, read_first_line, run_id_of, signal, wait_until};
use nix::sys::signal::Signal;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_prints_every_error_with_its_place_and_exits_1() {
    let workspace = Workspace::new();
    workspace.write(
        "bad.yaml",
        "name: bad\ntasks:\n  a:\n    run: echo\n    retyr: {}\n  b:\n    needs: [nope]\n",
    );
    workspace.write("good.yaml", "name: good\ntasks:\n  a: {}\n");
    let output = workspace.output(&["validate", "good.yaml", "bad.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        stdout.contains("good.yaml: ok (workflow `good`, 1 task)"),
        "{stdout}"
    );
    assert!(stderr.contains("bad.yaml:5:5: error: tasks.a"), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:7:13: error: tasks.b.needs[0]"),
        "{stderr}"
    );
    assert!(stderr.contains("2 errors found"), "{stderr}");
}

#[test]
fn a_run_prints_its_id_first_and_can_be_inspected() {
    let workspace = Workspace::new();
    workspace.write(
        "hello.yaml",
        r#"
name: hello
params:
  who: world
tasks:
  greet:
    run: |
      echo "hello ${{ params.who }}"
      echo "greeting=hello ${{ params.who }}" >> "$TANDEM_OUTPUT"
      echo "to stderr" >&2
  shout:
    needs: [greet]
    run: echo "${{ tasks.greet.outputs.greeting }}!" | tr a-z A-Z
"#,
    );
    let output = workspace.output(&["run", "hello.yaml", "--param", "who=tandem"]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.starts_with("run "), "{stdout}");
    let run_id = run_id_of(&stdout);
    assert!(
        stdout.contains(&format!("run {run_id} succeeded in")),
        "{stdout}"
    );

    let logs = workspace.output(&["logs", &run_id, "shout"]);
    assert_eq!(text(&logs.stdout), "HELLO TANDEM!\n");
    let logs = workspace.output(&["logs", &run_id, "greet", "--stream", "stderr"]);
    assert_eq!(text(&logs.stdout), "to stderr\n");

    let shown = workspace.show(&run_id);
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["params"]["who"], "tandem");
    assert_eq!(shown["tasks"][0]["outputs"]["greeting"], "hello tandem");
    assert_eq!(shown["tasks"][1]["exit_code"], 0);

    let runs = workspace.output(&["runs", "--output", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["status"], "succeeded");
}

#[test]
fn a_failed_run_exits_1_and_shows_why() {
    let workspace = Workspace::new();
    workspace.write(
        "fail.yaml",
        "name: fail\ntasks:\n  boom:\n    run: exit 3\n  after:\n    needs: [boom]\n    run: echo never\n",
    );
    let output = workspace.output(&["run", "fail.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    let run_id = run_id_of(&text(&output.stdout));
    let shown = workspace.show(&run_id);
    assert_eq!(shown["status"], "failed");
    assert_eq!(shown["tasks"][0]["state"], "failed");
    assert_eq!(shown["tasks"][0]["exit_code"], 3);
    assert_eq!(shown["tasks"][1]["state"], "upstream_failed");
}

#[test]
fn ctrl_c_cancels_cleanly_and_leaves_nothing_running() {
    let workspace = Workspace::new();
    workspace.write(
        "long.yaml",
        "name: long\ntasks:\n  a:\n    run: echo $$ > a.pid; sleep 30\n  b:\n    run: trap 'echo bye' TERM; echo $$ > b.pid; sleep 30 & wait\n",
    );
    let mut child = workspace.spawn(&["run", "long.yaml", "--kill-grace", "2s"]);
    let run_id = run_id_of(&read_first_line(&mut child));
    let pid_files = [
        workspace.path().join("a.pid"),
        workspace.path().join("b.pid"),
    ];
    assert!(wait_until(Duration::from_secs(10), || pid_files
        .iter()
        .all(
            |file| std::fs::read_to_string(file).is_ok_and(|text| text.ends_with('\n'))
        )));
    let started = Instant::now();
    signal(&child, Signal::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    for file in &pid_files {
        let pid: u32 = std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Process groups are gone: the shell and its `sleep` (zombies waiting for a reaper
        // do not count).
        let left = tandem_engine::executor::process::live_group_members(pid).unwrap();
        assert!(
            left.is_empty(),
            "process group {pid} survived the cancel: {left:?}"
        );
    }
    let shown = workspace.show(&run_id);
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["tasks"][0]["state"], "cancelled");
    assert_eq!(
        shown["tasks"][0]["attempts"][0]["outcome"]["status"],
        "cancelled"
    );
}

#[test]
fn the_deadline_stops_the_run_with_exit_124() {
    let workspace = Workspace::new();
    workspace.write(
        "deadline.yaml",
        "name: deadline\ndeadline: 500ms\ntasks:\n  slow:\n    run: sleep 30\n",
    );
    let started = Instant::now();
    let output = workspace.output(&["run", "deadline.yaml", "--kill-grace", "1s"]);
    assert_eq!(output.status.code(), Some(124), "{}", text(&output.stdout));
    assert!(started.elapsed() < Duration::from_secs(10));
    let run_id = run_id_of(&text(&output.stdout));
    assert_eq!(workspace.show(&run_id)["status"], "timed_out");
}

#[test]
fn bad_params_and_unknown_runs_are_input_errors() {
    let workspace = Workspace::new();
    workspace.write(
        "p.yaml",
        "name: p\nparams:\n  day: ~\ntasks:\n  a:\n    run: echo ${{ params.day }}\n",
    );
    let missing = workspace.output(&["run", "p.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("param `day` of workflow `p` has no default"),
        "{}",
        text(&missing.stderr)
    );
    let unknown = workspace.output(&["run", "p.yaml", "--param", "dya=1"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown param `dya`"));

    let ok = workspace.output(&["run", "p.yaml", "-p", "day=2024-01-01"]);
    assert!(ok.status.success());
    let no_run = workspace.output(&["resume", "0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70"]);
    assert_eq!(no_run.status.code(), Some(2));
    assert!(
        text(&no_run.stderr).contains("not found"),
        "{}",
        text(&no_run.stderr)
    );
    let not_an_id = workspace.output(&["show", "nope"]);
    assert_eq!(not_an_id.status.code(), Some(2));
    assert!(text(&not_an_id.stderr).contains("expected a run id"));
}

#[test]
fn a_damaged_state_file_gives_a_clear_error_not_a_panic() {
    let workspace = Workspace::new();
    workspace.write("ok.yaml", "name: ok\ntasks:\n  a: {}\n");
    assert!(workspace.output(&["run", "ok.yaml"]).status.success());
    let store = workspace.state_dir().join("tandem.db");
    let mut bytes = std::fs::read(&store).unwrap();
    // Overwrite the SQLite header and the first pages with garbage.
    for byte in bytes.iter_mut().take(8192) {
        *byte = 0xA5;
    }
    std::fs::write(&store, &bytes).unwrap();
    let _ = std::fs::remove_file(workspace.state_dir().join("tandem.db-wal"));
    let _ = std::fs::remove_file(workspace.state_dir().join("tandem.db-shm"));
    for args in [&["runs"][..], &["run", "ok.yaml"][..]] {
        let output = workspace.output(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("is damaged"), "{args:?}: {stderr}");
        assert!(stderr.contains("tandem.db"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Read-only commands on a directory without a store say so.
    let empty = Workspace::new();
    let output = empty.output(&["runs"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        text(&output.stderr).contains("no state store"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn graph_and_schema() {
    let workspace = Workspace::new();
    workspace.write(
        "g.yaml",
        "name: g\ntasks:\n  a: {}\n  b:\n    needs: [a]\n    matrix: { n: [1, 2] }\n",
    );
    let dot = text(&workspace.output(&["graph", "g.yaml"]).stdout);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("b[n=1]"), "{dot}");
    let mermaid = text(
        &workspace
            .output(&["graph", "g.yaml", "--format", "mermaid"])
            .stdout,
    );
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");
    let schema = workspace.output(&["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert!(schema["properties"]["tasks"].is_object(), "{schema}");
}
