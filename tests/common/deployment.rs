//! A complete two-region deployment on loopback made by `deploy/local/up.sh` (per region an
//! etcd, a PostgreSQL, two `tandem serve` replicas, `tandem replicate` and the forwarders a
//! partition cuts), for the cross-region DR tests.
//!
//! Each [`Deployment`] lives in a temp dir of its own on a free block of 200 ports, runs the
//! `tandem` binary of this test build, and is stopped with `down.sh` when dropped, also when
//! the test panics (the regions' logs are printed first). A watchdog process stops it too if
//! the test process dies without dropping it. Several deployments at once would be too much
//! for a 2-core machine: tests take [`serial`] first.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tandem_api::{Client, ClientConfig, RegionStatus};
use tandem_dr::Topology;

/// The region up.sh makes active.
pub const ACTIVE: &str = "eu-west";
/// The region up.sh makes its standby.
pub const STANDBY: &str = "us-east";

/// Set (to anything) to keep the run dir of a failed test (its path is printed).
pub const KEEP_ENV: &str = "TANDEM_DR_TEST_KEEP";

/// Ports a deployment of two regions takes from its base (up.sh: region k uses
/// base + 100k .. base + 100k + 99).
const BLOCK: u16 = 200;
/// Bases are picked from here up to [`LAST_BASE`]: below Linux's ephemeral port range
/// (32768..), so outgoing connections never take a deployment's port.
const FIRST_BASE: u16 = 20_000;
const LAST_BASE: u16 = 32_400;

/// Log lines of each process printed when a test fails.
const LOG_LINES: usize = 150;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the DR tests of this process one at a time (a test that failed does not block the
/// others).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Replication mode of every region (`up.sh --mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The active region acknowledges writes without waiting for the standby.
    Async,
    /// The active region acknowledges a write once the standby holds it.
    Sync,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
        }
    }
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code; `None`: killed by a signal (or by the time-out).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Finished {
    /// The whole output, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A running two-region deployment ([`ACTIVE`] active, [`STANDBY`] standby).
pub struct Deployment {
    /// The run dir given to up.sh.
    pub run_dir: PathBuf,
    /// Its first port.
    pub base_port: u16,
    /// `RUN_DIR/topology.toml`, parsed.
    pub topology: Topology,
    dir: Option<tempfile::TempDir>,
    watchdog: Option<Child>,
}

/// `deploy/local/NAME`.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/local")
        .join(name)
}

/// Candidates this process has gone through: each deployment takes a block after the last
/// one taken, so a test never reuses the ports of the one before (whose last connections
/// may linger). Starts at a place spread by the process id.
static BLOCKS_TRIED: AtomicUsize = AtomicUsize::new(0);

/// A base port of a block of [`BLOCK`] ports none of which is in use now.
fn free_block() -> u16 {
    let count = usize::from((LAST_BASE - FIRST_BASE) / BLOCK + 1);
    let start = std::process::id() as usize * 7;
    for _ in 0..count {
        let candidate = (start + BLOCKS_TRIED.fetch_add(1, Ordering::SeqCst)) % count;
        let base = FIRST_BASE + BLOCK * candidate as u16;
        let free = (base..base + BLOCK).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free block of {BLOCK} ports between {FIRST_BASE} and {LAST_BASE}");
}

impl Deployment {
    /// Starts a deployment in `mode` (2 replicas per region) and waits until up.sh says it
    /// is up (every replica answers, each region has a leader). Panics with up.sh's output
    /// and the regions' logs when it cannot.
    pub fn up(mode: Mode) -> Deployment {
        let dir = tempfile::Builder::new()
            .prefix("tandem-dr-test-")
            .tempdir()
            .expect("a temp dir");
        // PostgreSQL runs as the user `postgres` when the tests run as root: it must reach
        // the run dir.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("open the temp dir to the postgres user");
        for attempt in 0..3 {
            let base_port = free_block();
            let run_dir = dir.path().join(format!("run-{attempt}"));
            let output = Command::new(script("up.sh"))
                .arg("--run-dir")
                .arg(&run_dir)
                .args(["--base-port", &base_port.to_string()])
                .args(["--mode", mode.as_str()])
                .args(["--tandem", env!("CARGO_BIN_EXE_tandem")])
                .env_remove("TANDEM_BIN")
                .stdin(Stdio::null())
                .output()
                .expect("run deploy/local/up.sh");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            if output.status.success() {
                let path = run_dir.join("topology.toml");
                let topology = Topology::load(&path)
                    .unwrap_or_else(|error| panic!("up.sh wrote a bad topology: {error}"));
                let mut deployment = Deployment {
                    run_dir,
                    base_port,
                    topology,
                    dir: Some(dir),
                    watchdog: None,
                };
                deployment.watchdog = Some(deployment.start_watchdog());
                return deployment;
            }
            let logs = logs_of(&run_dir);
            let _ = Command::new(script("down.sh"))
                .arg("--run-dir")
                .arg(&run_dir)
                .output();
            // A port taken by another program after our check (up.sh's own check, or a
            // process's bind): another block. Any other failure is the test's.
            let port_taken = stderr.contains("is in use")
                || logs.to_lowercase().contains("address already in use");
            let failure = format!(
                "deploy/local/up.sh --base-port {base_port} --mode {} failed ({}):\n--- stdout:\n{}\n--- stderr:\n{stderr}\n{logs}",
                mode.as_str(),
                output.status,
                String::from_utf8_lossy(&output.stdout)
            );
            if port_taken && attempt < 2 {
                eprintln!("a port was taken; trying another block. {failure}");
                continue;
            }
            panic!("{failure}");
        }
        unreachable!("the third attempt returns or panics");
    }

    /// A process that stops the deployment (and removes its temp dir) once this test
    /// process is gone, if it did not do it itself.
    fn start_watchdog(&self) -> Child {
        let dir = self.run_dir.parent().unwrap_or(&self.run_dir);
        Command::new("sh")
            .args([
                "-c",
                "while kill -0 \"$0\" 2>/dev/null; do sleep 1; done; \"$1\" --run-dir \"$2\"; rm -rf -- \"$3\"",
                &std::process::id().to_string(),
            ])
            .arg(script("down.sh"))
            .arg(&self.run_dir)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C to the tests does not stop it.
            .process_group(0)
            .spawn()
            .expect("start the deployment's watchdog")
    }

    /// The public endpoints of `region`'s replicas.
    pub fn endpoints(&self, region: &str) -> Vec<String> {
        self.topology
            .region(region)
            .unwrap_or_else(|error| panic!("{error}"))
            .endpoints
            .clone()
    }

    /// `region`'s PostgreSQL URL (database `tandem`).
    pub fn postgres_url(&self, region: &str) -> String {
        self.topology
            .region(region)
            .ok()
            .and_then(|entry| entry.local.as_ref())
            .and_then(|local| local.postgres_url.clone())
            .unwrap_or_else(|| panic!("the topology has no postgres_url for {region}"))
    }

    /// `RUN_DIR/topology.toml`.
    pub fn topology_path(&self) -> PathBuf {
        self.topology.path.clone()
    }

    /// An SDK client of `region`'s replicas (follows its leader; connects on first use, so it
    /// is made inside a tokio runtime).
    pub fn client(&self, region: &str) -> Client {
        Client::connect_lazy(
            ClientConfig::with_endpoints(self.endpoints(region))
                .connect_timeout(Duration::from_secs(2))
                .request_timeout(Duration::from_secs(10))
                .failover_timeout(Duration::from_secs(30)),
        )
        .expect("an SDK client of the region")
    }

    /// `region`'s DR status as one of its replicas answers it.
    pub async fn status(&self, region: &str) -> RegionStatus {
        self.client(region)
            .region_status()
            .await
            .unwrap_or_else(|error| panic!("status of {region}: {error}"))
    }

    /// Runs `tandem ARGS` against this deployment's topology, killing it after `timeout`.
    pub async fn tandem(&self, args: &[&str], timeout: Duration) -> Finished {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .args(args)
            .env("TANDEM_DR_TOPOLOGY", self.topology_path())
            .env_remove("TANDEM_CONFIG")
            .env_remove("TANDEM_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        run(command, timeout, &format!("tandem {}", args.join(" "))).await
    }

    /// Runs `deploy/local/region.sh ACTION REGION` on this deployment.
    pub async fn region_sh(&self, action: &str, region: &str) -> Finished {
        let mut command = tokio::process::Command::new(script("region.sh"));
        command
            .args([action, region])
            .arg("--run-dir")
            .arg(&self.run_dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        run(
            command,
            Duration::from_secs(120),
            &format!("region.sh {action} {region}"),
        )
        .await
    }

    /// The last lines of every process's log of every region.
    pub fn logs(&self) -> String {
        logs_of(&self.run_dir)
    }
}

/// Runs `command` with piped output, killed after `timeout` (panics then, naming `what`).
async fn run(mut command: tokio::process::Command, timeout: Duration, what: &str) -> Finished {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {what}: {error}"));
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Finished {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Ok(Err(error)) => panic!("{what}: {error}"),
        Err(_) => panic!("{what} did not finish within {timeout:?} (killed)"),
    }
}

/// The last [`LOG_LINES`] lines of each log of each region under `run_dir` (initdb's and the
/// forwarders' left out).
fn logs_of(run_dir: &Path) -> String {
    let mut out = String::new();
    let Ok(regions) = std::fs::read_dir(run_dir) else {
        return format!("(no run dir {})", run_dir.display());
    };
    let mut regions: Vec<PathBuf> = regions
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("logs").is_dir())
        .collect();
    regions.sort();
    for region in regions {
        let Ok(files) = std::fs::read_dir(region.join("logs")) else {
            continue;
        };
        let mut files: Vec<PathBuf> = files
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("forward-") || name == "initdb.log" {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(LOG_LINES);
            let _ = writeln!(
                out,
                "===== {}/{name} (last {} of {} lines)",
                region
                    .file_name()
                    .map(|name| name.to_string_lossy())
                    .unwrap_or_default(),
                lines.len() - from,
                lines.len()
            );
            for line in &lines[from..] {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!(
                "the deployment's logs ({}):\n{}",
                self.run_dir.display(),
                self.logs()
            );
        }
        let keep = failed && std::env::var_os(KEEP_ENV).is_some();
        let mut down = Command::new(script("down.sh"));
        down.arg("--run-dir").arg(&self.run_dir);
        if keep {
            down.arg("--keep");
        }
        match down.output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "down.sh --run-dir {} failed ({}): {}{}",
                self.run_dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => eprintln!("cannot run down.sh: {error}"),
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if keep && let Some(dir) = self.dir.take() {
            eprintln!(
                "{KEEP_ENV} is set: the run dir {} is kept",
                dir.keep().display()
            );
        }
    }
}
