//! [`TempEtcd`]: a private single-member etcd server in a temp dir, on free ports.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use super::watchdog::Watchdog;

/// The environment variable naming the etcd binary (a file path); when set, `PATH` is not
/// searched.
pub const ETCD_BIN_ENV: &str = "TANDEM_ETCD_BIN";

/// How long a started server may take to answer a `get`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`TempEtcd::stop`] waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Attempts at finding free ports when another process takes the chosen ones first.
const PORT_ATTEMPTS: usize = 5;

/// Errors of [`TempEtcd`]: each says what was being done and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum TempEtcdError {
    /// The etcd binary is not installed where it was looked for.
    #[error(
        "etcd binary not found (looked for {searched}): install etcd (Debian: `apt-get install etcd-server`) or set TANDEM_ETCD_BIN to the path of the etcd binary"
    )]
    BinaryNotFound {
        /// Where it was looked for.
        searched: String,
    },
    /// A file system or process operation failed.
    #[error("{doing}: {error}")]
    Io {
        /// What was being done.
        doing: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// The server exited while it was starting.
    #[error("etcd for {endpoint} exited while starting ({status}); its log ({log_file}):{log}")]
    Exited {
        /// The client URL it was to serve.
        endpoint: String,
        /// Its exit status.
        status: String,
        /// The log file.
        log_file: String,
        /// The log's last lines.
        log: String,
    },
    /// The server runs but did not answer a `get` in time.
    #[error(
        "etcd on {endpoint} did not answer a `get` within {waited:?} (last error: {last_error}); its log ({log_file}):{log}"
    )]
    Unhealthy {
        /// The client URL.
        endpoint: String,
        /// How long it was given.
        waited: Duration,
        /// The last client error.
        last_error: String,
        /// The log file.
        log_file: String,
        /// The log's last lines.
        log: String,
    },
}

/// A private etcd server for tests and benchmarks: one member named `n1`, its data in a temp
/// dir (mode 0700), listening for clients and peers on two free ports on `127.0.0.1`, logging
/// to `etcd.log` in the temp dir. [`TempEtcd::start`] returns once the server answers a `get`.
///
/// The server can be stopped ([`stop`](TempEtcd::stop), graceful), killed
/// ([`kill`](TempEtcd::kill), SIGKILL), paused and resumed (SIGSTOP/SIGCONT), and started
/// again on the same data and ports ([`start_again`](TempEtcd::start_again)).
///
/// Dropping it kills the server and removes the directory. If this process dies without
/// dropping it, a watchdog process kills the server and removes the directory within a
/// second.
///
/// Binary: the file in [`ETCD_BIN_ENV`] when set, else `etcd` in the `PATH`. A missing binary
/// or a server that does not come up is an error, never a panic.
#[derive(Debug)]
pub struct TempEtcd {
    binary: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
    pid_file: PathBuf,
    ports: Mutex<Ports>,
    child: Mutex<Option<Child>>,
    _watchdog: Watchdog,
    // Last: removed after the server is killed and the watchdog is gone.
    _dir: tempfile::TempDir,
}

/// The client and peer ports (chosen at the first start, kept afterwards).
#[derive(Debug, Clone, Copy)]
struct Ports {
    client: u16,
    peer: u16,
}

impl TempEtcd {
    /// Creates the directory and starts the server, waiting until it answers a `get`
    /// (about 0.3 s).
    ///
    /// Errors: [`TempEtcdError::BinaryNotFound`], [`TempEtcdError::Exited`] or
    /// [`TempEtcdError::Unhealthy`] with the log's tail, [`TempEtcdError::Io`].
    pub async fn start() -> Result<TempEtcd, TempEtcdError> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("tandem-etcd-")
            .tempdir()
            .map_err(|error| io_error("creating a temp dir for etcd", error))?;
        let data_dir = dir.path().join("data");
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&data_dir)
                .map_err(|error| io_error(&format!("creating {}", data_dir.display()), error))?;
        }
        let pid_file = dir.path().join("etcd.pid");
        let watchdog = Watchdog::spawn(dir.path(), &kill_command(&pid_file)).map_err(|error| {
            TempEtcdError::Io {
                doing: "starting the watchdog that kills etcd after a crash".into(),
                error: std::io::Error::other(error.to_string()),
            }
        })?;
        let server = TempEtcd {
            binary,
            data_dir,
            log_file: dir.path().join("etcd.log"),
            pid_file,
            ports: Mutex::new(Ports { client: 0, peer: 0 }),
            child: Mutex::new(None),
            _watchdog: watchdog,
            _dir: dir,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            *lock(&server.ports) = free_ports()?;
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(error) if attempt < PORT_ATTEMPTS && port_taken(&error) => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// The client URL: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port())
    }

    /// The client URLs, as an etcd client takes them: one, [`TempEtcd::endpoint`].
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    /// The client port on 127.0.0.1.
    pub fn client_port(&self) -> u16 {
        lock(&self.ports).client
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file (stdout and stderr of every start, appended).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    /// Whether the server process is running (paused counts as running).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Stops the server gracefully (SIGTERM; SIGKILL after 10 s) and waits until it has
    /// exited, keeping its data and ports for [`TempEtcd::start_again`]. A no-op when it is
    /// not running.
    pub async fn stop(&self) -> Result<(), TempEtcdError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        // A paused server handles SIGTERM only once continued.
        self.signal(pid, Signal::SIGCONT)?;
        self.signal(pid, Signal::SIGTERM)?;
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        loop {
            if self.reap_if_exited()? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return self.kill();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the server (SIGKILL) and reaps it, keeping its data and ports for
    /// [`TempEtcd::start_again`]. A no-op when it is not running.
    pub fn kill(&self) -> Result<(), TempEtcdError> {
        let mut child = lock(&self.child);
        let Some(mut process) = child.take() else {
            return Ok(());
        };
        let _ = std::fs::remove_file(&self.pid_file);
        // An error here means it has exited already; `wait` reaps it either way.
        let _ = process.kill();
        process
            .wait()
            .map_err(|error| io_error("waiting for the killed etcd to exit", error))?;
        Ok(())
    }

    /// Freezes the server (SIGSTOP) and waits (up to a second) until every thread of it
    /// has stopped: its connections stay open but nothing is answered. A no-op when it is
    /// not running.
    pub fn pause(&self) -> Result<(), TempEtcdError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        self.signal(pid, Signal::SIGSTOP)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while !all_threads_stopped(pid) {
            if std::time::Instant::now() >= deadline {
                return Err(io_error(
                    &format!("pausing etcd (pid {pid})"),
                    std::io::Error::other("its threads did not all stop within 1 s of SIGSTOP"),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Lets a paused server go on (SIGCONT). A no-op when it is not running.
    pub fn resume(&self) -> Result<(), TempEtcdError> {
        match self.pid() {
            Some(pid) => self.signal(pid, Signal::SIGCONT),
            None => Ok(()),
        }
    }

    /// Starts the stopped or killed server again on the same data dir and ports, waiting
    /// until it answers a `get`. A no-op when it is running. Errors as [`TempEtcd::start`].
    pub async fn start_again(&self) -> Result<(), TempEtcdError> {
        if self.is_running() {
            return Ok(());
        }
        self.launch().await
    }

    /// Spawns the server on the chosen ports and waits until it answers.
    async fn launch(&self) -> Result<(), TempEtcdError> {
        let ports = *lock(&self.ports);
        let endpoint = self.endpoint();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|error| io_error(&format!("opening {}", self.log_file.display()), error))?;
        let log_copy = log
            .try_clone()
            .map_err(|error| io_error("duplicating the etcd log file handle", error))?;
        let peer = format!("http://127.0.0.1:{}", ports.peer);
        let mut command = Command::new(&self.binary);
        command
            .arg("--name=n1")
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=n1={peer}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_copy));
        let process = command.spawn().map_err(|error| {
            io_error(
                &format!("starting etcd (`{}`)", self.binary.display()),
                error,
            )
        })?;
        std::fs::write(&self.pid_file, process.id().to_string())
            .map_err(|error| io_error(&format!("writing {}", self.pid_file.display()), error))?;
        *lock(&self.child) = Some(process);
        match self.wait_healthy(&endpoint).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let _ = self.kill();
                Err(error)
            }
        }
    }

    /// Waits until the server answers a `get`, or fails when it exits or takes too long.
    async fn wait_healthy(&self, endpoint: &str) -> Result<(), TempEtcdError> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.exit_status()? {
                return Err(TempEtcdError::Exited {
                    endpoint: endpoint.to_string(),
                    status,
                    log_file: self.log_file.display().to_string(),
                    log: log_tail(&self.log_file),
                });
            }
            let last_error = match answers(endpoint).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if started.elapsed() >= HEALTH_TIMEOUT {
                return Err(TempEtcdError::Unhealthy {
                    endpoint: endpoint.to_string(),
                    waited: HEALTH_TIMEOUT,
                    last_error,
                    log_file: self.log_file.display().to_string(),
                    log: log_tail(&self.log_file),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status of a server that has exited (reaping it), `None` while it runs.
    fn exit_status(&self) -> Result<Option<String>, TempEtcdError> {
        let mut child = lock(&self.child);
        let Some(process) = child.as_mut() else {
            return Ok(Some("not running".into()));
        };
        match process.try_wait() {
            Ok(Some(status)) => {
                *child = None;
                let _ = std::fs::remove_file(&self.pid_file);
                Ok(Some(status.to_string()))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(io_error("checking whether etcd is still running", error)),
        }
    }

    /// Reaps the server if it has exited; whether it is gone.
    fn reap_if_exited(&self) -> Result<bool, TempEtcdError> {
        Ok(self.exit_status()?.is_some())
    }

    fn signal(&self, pid: u32, signal: Signal) -> Result<(), TempEtcdError> {
        let Ok(raw) = i32::try_from(pid) else {
            return Err(io_error(
                &format!("sending {signal} to etcd"),
                std::io::Error::other(format!("pid {pid} is out of range")),
            ));
        };
        match signal::kill(Pid::from_raw(raw), signal) {
            // Exited already (not yet reaped): nothing to signal.
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(error) => Err(io_error(
                &format!("sending {signal} to etcd (pid {pid})"),
                std::io::Error::from(error),
            )),
        }
    }
}

impl Drop for TempEtcd {
    fn drop(&mut self) {
        // A destructor cannot report errors. The fields are dropped next, in order: the
        // watchdog is killed, then the directory is removed.
        let _ = self.kill();
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc/PID/task/*/stat`);
/// `false` when they cannot be read.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // `pid (comm) STATE ...`: comm may hold spaces and parentheses.
            stat.rfind(')')
                .and_then(|end| stat[end + 1..].split_whitespace().next())
                .is_some_and(|state| state == "T")
        })
    })
}

/// Whether the server answers a `get` (connect and read within a second).
async fn answers(endpoint: &str) -> Result<(), String> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    let check = async {
        let mut client = etcd_client::Client::connect([endpoint], Some(options))
            .await
            .map_err(|error| format!("connecting: {error}"))?;
        client
            .get("tandem-health-check", None)
            .await
            .map_err(|error| format!("get: {error}"))?;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(result) => result,
        Err(_) => Err("no answer within 2 s".into()),
    }
}

/// `sh -c 'kill -9 PID'` with the pid read from `pid_file` when the watchdog runs (the
/// server's pid changes with every start; the file is removed once it is reaped).
fn kill_command(pid_file: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"pid=$(cat "$0" 2>/dev/null) && kill -9 "$pid""#)
        .arg(pid_file);
    command
}

/// The etcd binary: [`ETCD_BIN_ENV`] when set, else `etcd` in the `PATH`.
fn find_binary() -> Result<PathBuf, TempEtcdError> {
    if let Some(path) = std::env::var_os(ETCD_BIN_ENV) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(TempEtcdError::BinaryNotFound {
                searched: format!("{ETCD_BIN_ENV}={}", path.display()),
            })
        };
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    find_in(&dirs)
}

/// The first executable `etcd` in `dirs`.
fn find_in(dirs: &[PathBuf]) -> Result<PathBuf, TempEtcdError> {
    dirs.iter()
        .map(|dir| dir.join("etcd"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| TempEtcdError::BinaryNotFound {
            searched: format!(
                "`etcd` in the PATH ({})",
                dirs.iter()
                    .map(|dir| dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            ),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Two distinct ports on 127.0.0.1 that were free a moment ago.
fn free_ports() -> Result<Ports, TempEtcdError> {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .map_err(|error| io_error("finding a free port on 127.0.0.1", error))
    };
    let port = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|address| address.port())
            .map_err(|error| io_error("reading a bound port", error))
    };
    // Both listeners stay bound until both ports are read, so the ports differ.
    let (client, peer) = (bind()?, bind()?);
    Ok(Ports {
        client: port(&client)?,
        peer: port(&peer)?,
    })
}

/// Whether a start failed because another process took one of the chosen ports.
fn port_taken(error: &TempEtcdError) -> bool {
    matches!(error, TempEtcdError::Exited { log, .. } if log.contains("address already in use"))
}

/// The last 20 lines of the log.
fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(20);
            format!("\n{}", lines[start..].join("\n"))
        }
        Err(error) => format!(" cannot be read: {error}"),
    }
}

fn io_error(doing: &str, error: std::io::Error) -> TempEtcdError {
    TempEtcdError::Io {
        doing: doing.to_string(),
        error,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
