//! Helpers for tests that drive the real `tandem` binary.

#![allow(dead_code)]

pub mod cluster;
pub mod deployment;
pub mod postgres;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temp directory holding workflow files and a state directory, and the binary to run.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Writes `text` to `name` inside the workspace and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A `tandem` command with this workspace's state dir, run from the workspace.
    pub fn tandem(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .current_dir(self.path())
            .env("TANDEM_STATE_DIR", self.state_dir())
            .env_remove("TANDEM_LOG");
        command
    }

    /// Runs `tandem ARGS` to completion.
    pub fn output(&self, args: &[&str]) -> Output {
        self.tandem().args(args).output().expect("run tandem")
    }

    /// Starts `tandem ARGS` with piped stdout/stderr.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.tandem()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tandem")
    }

    /// `tandem show RUN_ID --output json`, parsed.
    pub fn show(&self, run_id: &str) -> serde_json::Value {
        let output = self.output(&["show", run_id, "--output", "json"]);
        assert!(
            output.status.success(),
            "tandem show failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("show prints JSON")
    }
}

/// The run id from the first stdout line of `tandem run` (`run RUN_ID (...)`).
pub fn run_id_of(stdout: &str) -> String {
    let first = stdout.lines().next().unwrap_or_default();
    first
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no run id in first line {first:?}"))
        .to_string()
}

/// Reads the first line of a child's stdout (blocking until it is printed).
pub fn read_first_line(child: &mut Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read stdout");
    line
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Sends `signal` to the process.
pub fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
        .expect("send signal");
}
