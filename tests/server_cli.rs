//! The CLI clients of a Tandem server (`submit`, `status`, `cancel`, `watch`, `runs
//! --server`) run as real processes against a real `tandem serve`, checking what they print
//! and their exit codes.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Workspace;
use common::postgres;
use common::server::{Server, fresh_database};

async fn server() -> Server {
    let postgres = postgres::shared().await;
    Server::start(&fresh_database(postgres).await, &[])
}

/// Runs `command` to its end; kills it and fails after `limit`.
fn finish(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tandem");
    let started = Instant::now();
    while child.try_wait().expect("wait for tandem").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("read its output");
            panic!(
                "{command:?} still runs after {limit:?}\nstdout: {}\nstderr: {}",
                text(&output.stdout),
                text(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("read its output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `tandem --server URL ARGS` in `workspace`, to its end (at most 60 s).
fn tandem(workspace: &Workspace, server: &str, args: &[&str]) -> Output {
    let mut command = workspace.tandem();
    command
        .env_remove("TANDEM_SERVER")
        .args(["--server", server])
        .args(args);
    finish(command, Duration::from_secs(60))
}

/// Asserts the exit code, showing the output when it differs.
fn expect_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The run id `tandem submit` printed (its only stdout line without --wait, the first with).
fn printed_run_id(output: &Output) -> String {
    let stdout = text(&output.stdout);
    let first = stdout.lines().next().unwrap_or_default().trim().to_string();
    uuid_like(&first);
    first
}

fn uuid_like(text: &str) {
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    assert_eq!(groups, vec![8, 4, 4, 4, 12], "not a run id: {text:?}");
    assert!(
        text.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "not a run id: {text:?}"
    );
}

/// `tandem status RUN_ID --output json`, parsed.
fn status_json(workspace: &Workspace, server: &str, run_id: &str) -> serde_json::Value {
    let output = tandem(workspace, server, &["status", run_id, "--output", "json"]);
    expect_code(&output, 0);
    serde_json::from_slice(&output.stdout).expect("status prints JSON")
}

const GREET_DAG: &str = r#"
name: cli-greet
params:
  who: world
tasks:
  hello:
    run: echo "said=hi ${{ params.who }}" >> "$TANDEM_OUTPUT"
"#;

const FAILING_DAG: &str = r#"
name: cli-fails
tasks:
  boom:
    run: exit 3
"#;

#[tokio::test(flavor = "multi_thread")]
async fn submit_status_watch_and_runs_against_a_server() {
    let server = server().await;
    let url = server.url.clone();
    let workspace = Workspace::new();
    workspace.write("greet.yaml", GREET_DAG);
    workspace.write("fails.yaml", FAILING_DAG);

    // submit with a param prints the run id; watch follows it to its end.
    let output = tandem(
        &workspace,
        &url,
        &["submit", "greet.yaml", "--param", "who=there"],
    );
    expect_code(&output, 0);
    let greeted = printed_run_id(&output);
    assert_eq!(text(&output.stdout).lines().count(), 1, "only the run id");
    assert!(
        text(&output.stderr).contains(&url),
        "{}",
        text(&output.stderr)
    );
    let output = tandem(&workspace, &url, &["watch", &greeted, "--no-progress"]);
    expect_code(&output, 0);
    assert!(
        text(&output.stdout).contains(&format!("run {greeted} succeeded")),
        "{}",
        text(&output.stdout)
    );

    // status, as a table and as JSON.
    let output = tandem(&workspace, &url, &["status", &greeted]);
    expect_code(&output, 0);
    let table = text(&output.stdout);
    for needle in [
        greeted.as_str(),
        "cli-greet",
        "state:    succeeded",
        "who=there",
        "hello",
        "said=hi there",
    ] {
        assert!(table.contains(needle), "`{needle}` missing from:\n{table}");
    }
    let json = status_json(&workspace, &url, &greeted);
    assert_eq!(json["run_id"], greeted.as_str());
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["params"]["who"], "there");
    assert_eq!(json["tasks"][0]["task_id"], "hello");
    assert_eq!(json["tasks"][0]["state"], "succeeded");
    assert_eq!(json["tasks"][0]["attempts"], 1);
    assert_eq!(json["tasks"][0]["outputs"]["said"], "hi there");

    // submit --wait: the run's exit code (the server through TANDEM_SERVER this time).
    let mut command = workspace.tandem();
    command
        .env("TANDEM_SERVER", &url)
        .args(["submit", "greet.yaml", "--wait", "--no-progress"]);
    let output = finish(command, Duration::from_secs(60));
    expect_code(&output, 0);
    let waited = printed_run_id(&output);
    assert!(
        text(&output.stdout).contains(&format!("run {waited} succeeded")),
        "{}",
        text(&output.stdout)
    );
    let output = tandem(
        &workspace,
        &url,
        &["submit", "fails.yaml", "--wait", "--no-progress"],
    );
    expect_code(&output, 1);
    let failed = printed_run_id(&output);
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&format!("run {failed} failed")), "{stdout}");
    assert!(stdout.contains("boom"), "{stdout}");
    assert_eq!(status_json(&workspace, &url, &failed)["state"], "failed");

    // runs --server: newest first, filtered by workflow.
    let output = tandem(&workspace, &url, &["runs", "--output", "json"]);
    expect_code(&output, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let listed: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row["run_id"].as_str().unwrap(),
                row["workflow"].as_str().unwrap(),
                row["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (failed.as_str(), "cli-fails", "failed"),
            (waited.as_str(), "cli-greet", "succeeded"),
            (greeted.as_str(), "cli-greet", "succeeded"),
        ]
    );
    let output = tandem(
        &workspace,
        &url,
        &["runs", "--workflow", "cli-greet", "--output", "json"],
    );
    expect_code(&output, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|row| row["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![waited.as_str(), greeted.as_str()]);
    let output = tandem(&workspace, &url, &["runs"]);
    expect_code(&output, 0);
    let table = text(&output.stdout);
    for needle in [&failed, &waited, &greeted] {
        assert!(
            table.contains(needle.as_str()),
            "{needle} missing:\n{table}"
        );
    }
    // The local state dir was not used: its store holds none of these runs.
    let output = workspace.output(&["runs", "--output", "json"]);
    assert!(
        !text(&output.stdout).contains(&greeted),
        "{}",
        text(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_makes_watch_exit_130() {
    let server = server().await;
    let url = server.url.clone();
    let workspace = Workspace::new();
    workspace.write(
        "slow.yaml",
        "name: cli-slow\ntasks:\n  wait:\n    run: sleep 600\n",
    );
    let output = tandem(&workspace, &url, &["submit", "slow.yaml"]);
    expect_code(&output, 0);
    let run_id = printed_run_id(&output);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let json = status_json(&workspace, &url, &run_id);
        if json["tasks"][0]["state"] == "running" {
            assert_eq!(json["state"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "never ran: {json}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let output = tandem(&workspace, &url, &["cancel", &run_id]);
    expect_code(&output, 0);
    let said = text(&output.stdout);
    assert!(
        said.contains(&format!("run {run_id} is being cancelled"))
            || said.contains(&format!("run {run_id} cancelled")),
        "{said}"
    );
    let output = tandem(&workspace, &url, &["watch", &run_id, "--no-progress"]);
    expect_code(&output, 130);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!("run {run_id} cancelled")),
        "{stdout}"
    );
    let json = status_json(&workspace, &url, &run_id);
    assert_eq!(json["state"], "cancelled");
    assert_eq!(json["tasks"][0]["state"], "cancelled");
    // Cancelling again changes nothing and says so.
    let output = tandem(&workspace, &url, &["cancel", &run_id]);
    expect_code(&output, 0);
    assert!(
        text(&output.stdout).contains(&format!("run {run_id} cancelled")),
        "{}",
        text(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_and_an_unreachable_server_exits_3() {
    let server = server().await;
    let url = server.url.clone();
    let workspace = Workspace::new();

    // An unknown run.
    let unknown = "01936b2e-0000-7000-8000-000000000000";
    for command in ["status", "cancel", "watch"] {
        let output = tandem(&workspace, &url, &[command, unknown]);
        expect_code(&output, 2);
        let stderr = text(&output.stderr);
        assert!(stderr.contains("not found"), "{command}: {stderr}");
        assert!(stderr.contains(unknown), "{command}: {stderr}");
    }

    // A workflow file with errors: each at file:line:column; nothing is registered.
    workspace.write(
        "bad.yaml",
        "name: cli-bad\ntasks:\n  a:\n    needs: [missing]\n    run: true\n  b:\n    run: ${{ params.nope }}\n",
    );
    let output = tandem(&workspace, &url, &["submit", "bad.yaml"]);
    expect_code(&output, 2);
    let stderr = text(&output.stderr);
    for needle in ["bad.yaml:4:13:", "`missing`", "bad.yaml:7:10:", "`nope`"] {
        assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    }
    assert!(
        text(&output.stdout).trim().is_empty(),
        "no run id: {}",
        text(&output.stdout)
    );
    let output = tandem(&workspace, &url, &["runs", "--output", "json"]);
    expect_code(&output, 0);
    assert_eq!(text(&output.stdout).trim(), "[]");

    // No server at that address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    workspace.write("ok.yaml", GREET_DAG);
    for args in [
        vec!["status", unknown],
        vec!["submit", "ok.yaml"],
        vec!["runs"],
    ] {
        let output = tandem(&workspace, &nowhere, &args);
        expect_code(&output, 3);
        let stderr = text(&output.stderr);
        assert!(stderr.contains(&nowhere), "{args:?}: {stderr}");
    }
}
