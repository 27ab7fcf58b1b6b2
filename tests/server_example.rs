//! The README's walk-through: `tandem serve`, the example worker (`examples/worker/main.rs`,
//! queue `loaders`) as its own process, and `tandem submit examples/worker.yaml --wait`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::postgres;
use common::server::{Server, fresh_database};

/// Builds (if needed) and returns the example worker binary of `tandem-api`.
fn example_worker() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            "tandem-api",
            "--example",
            "worker",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cannot build the example worker");
    // Test binaries live in target/PROFILE/deps; examples in target/PROFILE/examples.
    let deps = std::env::current_exe().unwrap();
    let profile_dir = deps.parent().unwrap().parent().unwrap();
    let worker = profile_dir.join("examples").join("worker");
    assert!(worker.exists(), "{} missing", worker.display());
    worker
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walk_through_runs_the_worker_example_to_success() {
    let worker_binary = tokio::task::spawn_blocking(example_worker).await.unwrap();
    let postgres = postgres::shared().await;
    let server = Server::start(&fresh_database(postgres).await, &[]);
    let mut worker = Command::new(worker_binary)
        .args([
            "--server",
            &server.url,
            "--concurrency",
            "4",
            "--batch-delay",
            "1ms",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example worker");
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "submit",
            "examples/worker.yaml",
            "--param",
            "rows=2000",
            "--wait",
            "--no-progress",
        ])
        .env("TANDEM_SERVER", &server.url)
        .current_dir(root)
        .output()
        .expect("run tandem submit");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{stderr}\n{}",
        server.log_text()
    );
    let run_id = stdout.lines().next().unwrap().trim().to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["status", &run_id, "--output", "json"])
        .env("TANDEM_SERVER", &server.url)
        .output()
        .unwrap();
    let run: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let tasks = run["tasks"].as_array().unwrap();
    let task = |id: &str| tasks.iter().find(|task| task["task_id"] == id).unwrap();
    assert_eq!(
        task("load")["attempts"],
        2,
        "the first attempt fails on purpose: {run}"
    );
    assert_eq!(task("load")["outputs"]["rows_loaded"], "2000", "{run}");
    assert_eq!(task("verify")["state"], "succeeded", "{run}");

    // Ctrl-C: the worker shuts down gracefully and exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = worker.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
