//! The child processes of the service benchmarks: a `tandem serve` ([`ServeProcess`]) and a
//! `tandem bench-worker` ([`WorkerProcess`]), both this very binary.
//!
//! Both are killed when their guard is dropped (so also when a benchmark fails half-way) and
//! when the bench process dies (`PR_SET_PDEATHSIG = SIGKILL`, requested for the spawning
//! thread, which is the thread of the runtime's `block_on`: it lives as long as the bench).
//! Their stderr goes to a log file whose tail is quoted in errors.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use tandem_engine::executor::process::die_with_parent;

use super::super::Failure;

/// How long `tandem serve` may take to print its `listening on ADDR` line (it connects to
/// PostgreSQL and applies the schema migrations first).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child gets to exit after it was asked to stop, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Bytes of a log's end quoted in errors.
const LOG_TAIL_BYTES: u64 = 4_000;
/// The region name every bench server serves.
pub const REGION: &str = "bench";

/// A running `tandem serve` (SIGKILLed on drop).
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    url: String,
    log: PathBuf,
}

/// How to start one `tandem serve`: `--listen ADDR --region bench --postgres-url URL`, plus
/// the leader election flags of a replica.
#[derive(Debug, Clone)]
pub struct ServeOptions<'a> {
    /// The database.
    pub postgres_url: &'a str,
    /// Where its state directory (`NAME-state`) and log (`NAME.log`, appended to) go.
    pub dir: &'a Path,
    /// Names the state directory and log in `dir`.
    pub name: String,
    /// The address to listen on, `127.0.0.1:0` for a free port.
    pub listen: String,
    /// Leader election flags; `None`: a standalone server.
    pub election: Option<ElectionOptions>,
}

/// The leader election flags of a replica: `--etcd-endpoints URL --member-id ID --lease-ttl
/// Ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionOptions {
    /// The etcd client URL, `http://127.0.0.1:PORT`.
    pub etcd_endpoint: String,
    /// The replica's member id (the same across its restarts).
    pub member_id: String,
    /// The leader lease's TTL, whole seconds.
    pub lease_ttl: Duration,
}

impl<'a> ServeOptions<'a> {
    /// A standalone server named `serve` on a free port of 127.0.0.1.
    pub fn new(postgres_url: &'a str, dir: &'a Path) -> ServeOptions<'a> {
        ServeOptions {
            postgres_url,
            dir,
            name: "serve".to_string(),
            listen: "127.0.0.1:0".to_string(),
            election: None,
        }
    }

    /// The arguments after the global ones: `serve --listen ... [--etcd-endpoints ...]`.
    pub fn serve_args(&self) -> Vec<String> {
        let mut args = vec![
            "serve".to_string(),
            "--listen".to_string(),
            self.listen.clone(),
            "--region".to_string(),
            REGION.to_string(),
            "--postgres-url".to_string(),
            self.postgres_url.to_string(),
        ];
        if let Some(election) = &self.election {
            args.extend([
                "--etcd-endpoints".to_string(),
                election.etcd_endpoint.clone(),
                "--member-id".to_string(),
                election.member_id.clone(),
                "--lease-ttl".to_string(),
                format!("{}s", election.lease_ttl.as_secs()),
            ]);
        }
        args
    }
}

impl ServeProcess {
    /// Starts `exe serve` against `postgres_url` with its state directory and log in `dir`,
    /// without leader election, on a free port: [`ServeProcess::start_with`] with
    /// [`ServeOptions::new`].
    ///
    /// Errors: as [`ServeProcess::start_with`].
    pub fn start(exe: &Path, postgres_url: &str, dir: &Path) -> Result<ServeProcess, Failure> {
        ServeProcess::start_with(exe, &ServeOptions::new(postgres_url, dir))
    }

    /// Starts `exe serve` as `options` say and waits until it prints `listening on ADDR` on
    /// stdout (a replica with leader election prints it as a follower, before it is elected).
    ///
    /// Its environment is this process's minus every `TANDEM_*` variable except `TANDEM_LOG`,
    /// so a user's `TANDEM_CONFIG`, `TANDEM_PARALLELISM`, ... do not change what is measured:
    /// the server runs with its defaults and the flags of `options`.
    ///
    /// Errors: it cannot be started, exits, or prints no address within 60 s (the error quotes
    /// its log).
    pub fn start_with(exe: &Path, options: &ServeOptions) -> Result<ServeProcess, Failure> {
        let log = options.dir.join(format!("{}.log", options.name));
        let mut command = Command::new(exe);
        command
            .arg("--state-dir")
            .arg(options.dir.join(format!("{}-state", options.name)))
            .args(options.serve_args())
            .current_dir(options.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(append_log_file(&log)?);
        scrub_environment(&mut command);
        let mut child = spawn(&mut command, "tandem serve")?;
        let Some(stdout) = child.stdout.take() else {
            stop_now(&mut child);
            return Err(Failure::system(
                "tandem serve started without a stdout pipe",
            ));
        };
        let (address_tx, address_rx) = mpsc::channel();
        // Reads stdout to its end (so the server never blocks on a full pipe) and sends the
        // address of the first `listening on ADDR` line.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = listening_address(&line) {
                    let _ = address_tx.send(address);
                }
            }
        });
        let started = Instant::now();
        let address = loop {
            match address_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(address) => break address,
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < START_TIMEOUT => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(Failure::system(format!(
                            "tandem serve exited ({status}) before it listened; its log ({}):\n{}",
                            log.display(),
                            log_tail(&log)
                        )));
                    }
                }
                Err(_) => {
                    stop_now(&mut child);
                    return Err(Failure::system(format!(
                        "tandem serve printed no `listening on ADDR` line within {} s; its log ({}):\n{}",
                        START_TIMEOUT.as_secs(),
                        log.display(),
                        log_tail(&log)
                    )));
                }
            }
        };
        Ok(ServeProcess {
            child,
            url: format!("http://{address}"),
            log,
        })
    }

    /// The server's address, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident set size so far, KiB (`VmHWM` of `/proc/PID/status`).
    pub fn peak_rss_kib(&self) -> Result<u64, Failure> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path)
            .map_err(|error| Failure::system(format!("cannot read {path}: {error}")))?;
        vm_hwm_kib(&status).ok_or_else(|| {
            Failure::system(format!("{path}: expected a line `VmHWM: N kB`, found none"))
        })
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        format!("its log ({}):\n{}", self.log.display(), log_tail(&self.log))
    }

    /// Kills it at once (SIGKILL, as `kill -9`) and reaps it.
    pub fn kill(mut self) {
        stop_now(&mut self.child);
    }

    /// Asks it to stop (SIGTERM), waits up to 10 s, then kills it.
    pub fn stop(mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        stop_gracefully(&mut self.child, || {
            let _ = kill(pid, Signal::SIGTERM);
        });
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        stop_now(&mut self.child);
    }
}

/// A running `tandem --server URL bench-worker ...` (SIGKILLed on drop). It runs until its
/// stdin closes, then prints its [`tandem_api::WorkerStats`] as JSON on stdout.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

/// What a worker did, as `tandem bench-worker` prints it when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerCounts {
    /// Attempts leased to it.
    pub leased: u64,
    /// Attempts it completed (acknowledged by the server).
    pub completed: u64,
    /// Attempts it failed, released at shutdown, or could not deliver.
    pub not_completed: u64,
}

impl WorkerProcess {
    /// Starts `exe --server URL bench-worker --queue Q --type T --concurrency N`, with its log
    /// in `dir`. It connects (and retries) on its own; a first run through it shows it polls.
    pub fn start(
        exe: &Path,
        server_url: &str,
        queue: &str,
        task_type: &str,
        concurrency: usize,
        dir: &Path,
    ) -> Result<WorkerProcess, Failure> {
        let log = dir.join("worker.log");
        let mut command = Command::new(exe);
        command
            .arg("--server")
            .arg(server_url)
            .args(["bench-worker", "--queue", queue, "--type", task_type])
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(&log)?);
        scrub_environment(&mut command);
        let mut child = spawn(&mut command, "tandem bench-worker")?;
        let stdin = child.stdin.take();
        Ok(WorkerProcess { child, stdin, log })
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        format!("its log ({}):\n{}", self.log.display(), log_tail(&self.log))
    }

    /// Closes its stdin (it stops polling and finishes running attempts), waits up to 10 s,
    /// and returns what it printed.
    ///
    /// Errors: it did not exit in time (then it is killed), failed, or printed no counts.
    pub fn stop(mut self) -> Result<WorkerCounts, Failure> {
        let mut stdout = self.child.stdout.take();
        let (output_tx, output_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(stdout) = stdout.as_mut() {
                let _ = stdout.read_to_string(&mut text);
            }
            let _ = output_tx.send(text);
        });
        let stdin = self.stdin.take();
        let status = stop_gracefully(&mut self.child, move || drop(stdin));
        let output = output_rx
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        match status {
            Some(status) if status.success() => {}
            Some(status) => {
                return Err(Failure::system(format!(
                    "tandem bench-worker failed ({status}); {}",
                    self.log_tail()
                )));
            }
            None => {
                return Err(Failure::system(format!(
                    "tandem bench-worker did not stop within {} s of its stdin closing (killed); {}",
                    STOP_GRACE.as_secs(),
                    self.log_tail()
                )));
            }
        }
        serde_json::from_str(output.trim()).map_err(|error| {
            Failure::system(format!(
                "tandem bench-worker: expected its counts as JSON on stdout ({error}), found `{}`",
                output.trim()
            ))
        })
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        stop_now(&mut self.child);
    }
}

/// The `ADDR` of a line like `tandem serve: region R listening on 127.0.0.1:4321 (...)`.
pub fn listening_address(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on ")?;
    let address = rest.split_whitespace().next()?;
    (!address.is_empty()).then(|| address.to_string())
}

/// The value of `VmHWM:` in the text of a `/proc/PID/status` file, KiB.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Removes every `TANDEM_*` variable but `TANDEM_LOG` from `command`'s environment, and asks
/// for logs without colour codes (they go to a file).
pub(super) fn scrub_environment(command: &mut Command) {
    command.env("NO_COLOR", "1");
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("TANDEM_") && text != "TANDEM_LOG" {
            command.env_remove(&name);
        }
    }
}

fn log_file(path: &Path) -> Result<std::fs::File, Failure> {
    std::fs::File::create(path)
        .map_err(|error| Failure::system(format!("cannot create {}: {error}", path.display())))
}

/// `path` opened for appending (created when missing), so a restarted server's log follows
/// the previous process's.
fn append_log_file(path: &Path) -> Result<std::fs::File, Failure> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| Failure::system(format!("cannot open {}: {error}", path.display())))
}

/// Spawns `command` so that it gets SIGKILL when the spawning thread ends.
fn spawn(command: &mut Command, what: &str) -> Result<Child, Failure> {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes two system calls
    // (prctl, getppid) without allocating or taking locks, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || die_with_parent(parent));
    }
    command
        .spawn()
        .map_err(|error| Failure::system(format!("cannot start {what}: {error}")))
}

/// Runs `ask` (which asks the child to stop), waits up to [`STOP_GRACE`] for it to exit and
/// kills it otherwise. Returns its exit status when it exited by itself.
fn stop_gracefully(child: &mut Child, ask: impl FnOnce()) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    ask();
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    stop_now(child);
    None
}

/// SIGKILL (if still running) and reap.
fn stop_now(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The last few KB of a log file (or why it cannot be read).
pub(super) fn log_tail(path: &Path) -> String {
    use std::io::{Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => return format!("(cannot read {}: {error})", path.display()),
    };
    let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let start = length.saturating_sub(LOG_TAIL_BYTES);
    let _ = file.seek(SeekFrom::Start(start));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // Start at a whole line.
        text = match text.split_once('\n') {
            Some((_, rest)) => format!("[...]\n{rest}"),
            None => text,
        };
    }
    if text.trim().is_empty() {
        "(empty)".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_of_the_listening_line() {
        assert_eq!(
            listening_address(
                "tandem serve: region bench listening on 127.0.0.1:40123 (0 runs resumed)"
            ),
            Some("127.0.0.1:40123".to_string())
        );
        assert_eq!(listening_address("listening on "), None);
        assert_eq!(listening_address("connected to PostgreSQL"), None);
    }

    #[test]
    fn serve_arguments_with_and_without_election() {
        let dir = Path::new("/tmp/x");
        let standalone = ServeOptions::new("postgres://db", dir);
        assert_eq!(
            standalone.serve_args(),
            [
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--region",
                "bench",
                "--postgres-url",
                "postgres://db"
            ]
        );
        let replica = ServeOptions {
            name: "replica-1".to_string(),
            listen: "127.0.0.1:4000".to_string(),
            election: Some(ElectionOptions {
                etcd_endpoint: "http://127.0.0.1:2379".to_string(),
                member_id: "replica-1".to_string(),
                lease_ttl: Duration::from_secs(5),
            }),
            ..standalone
        };
        let args = replica.serve_args();
        assert_eq!(args[2], "127.0.0.1:4000");
        assert_eq!(
            args[7..],
            [
                "--etcd-endpoints",
                "http://127.0.0.1:2379",
                "--member-id",
                "replica-1",
                "--lease-ttl",
                "5s"
            ]
        );
    }

    #[test]
    fn vm_hwm_of_a_status_file() {
        let status = "Name:\ttandem\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(12_345));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
        assert!(vm_hwm_kib(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap() > 0);
    }
}
