//! The built-in shell executor: each attempt is `/bin/sh -c COMMAND` in its own process group.
//!
//! Life of an attempt (one tokio task each):
//! 1. the stdout, stderr and outputs files are created (with their parent directories);
//! 2. `/bin/sh -c COMMAND` is spawned as the leader of a new process group (pgid = pid), stdin
//!    null, stdout/stderr written straight to the files (no pipes, so nothing waits for a
//!    background process to close them), env = inherited + the task's env + `TANDEM_OUTPUT`,
//!    `TANDEM_RUN_ID`, `TANDEM_TASK_ID`, `TANDEM_ATTEMPT`, `TANDEM_IDEMPOTENCY_KEY`, and
//!    `TRACEPARENT` (W3C trace context of the attempt's span) when traces are exported;
//! 3. [`AttemptReport::Spawned`] is sent with the pid and its start time;
//! 4. the attempt waits for the shell to exit, its timeout, or a cancellation;
//! 5. whatever is left in the process group is stopped: SIGTERM (and SIGCONT, so stopped
//!    processes see it), then SIGKILL after [`ShellConfig::kill_grace`]; an exit on its own
//!    stops left-over background processes the same way;
//! 6. on exit code 0 the outputs file is parsed ([`super::outputs`]);
//! 7. exactly one [`AttemptReport::Finished`] is sent.
//!
//! # Parent-death signal
//! The shell is spawned with `PR_SET_PDEATHSIG = SIGKILL`, so it dies if Tandem dies. Linux
//! fires that signal when the *thread* that forked the child exits, not the process. So the fork
//! always happens inside the attempt's tokio task, i.e. on a runtime worker thread, which lives
//! as long as the runtime (or, on a current-thread runtime, on the thread in `block_on`), never
//! on a `spawn_blocking` thread (those end after 10 s idle). Do not use `block_in_place` on the
//! executor's runtime: it hands the current worker thread over to the blocking pool, where it
//! may end and take the attempts it forked with it. The signal does not reach the shell's own
//! children: what a crashed Tandem leaves behind is killed by
//! [`super::process::kill_leftover_group`] at `tandem resume`, from the recorded pid and start
//! time. A runtime that shuts down while attempts run SIGKILLs their groups (the attempt tasks
//! are dropped, and each kills its group on drop).
//!
//! # Pid reuse
//! Groups are signalled by number (`killpg`). Linux does not hand out a pid that is still used
//! as a process group id, and the leader's own pid stays taken until it is reaped, so the number
//! can only be reused after the group has emptied *and* the pid allocator (which counts upwards
//! and wraps at `pid_max`) has come round again between two checks a few milliseconds apart.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use tandem_dsl::TaskIndex;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::outputs::{OutputsError, read_outputs};
use super::process;
use super::{AttemptReport, AttemptRequest};
use crate::checkpoint::AttemptOutcome;

/// The shell that runs commands (`-c COMMAND`).
const SHELL: &str = "/bin/sh";

/// How long processes may take to disappear after SIGKILL before the attempt gives up waiting
/// for them (a process in uninterruptible sleep) and reports anyway.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// First and longest pause between checks of whether a process group is gone.
const POLL_MIN: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(50);

/// Delay before the first, and between further, `/proc` scans for a group that still exists
/// after its leader was reaped (to tell zombies, which nobody may reap, from live members).
const SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// Settings of the shell executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellConfig {
    /// Time between SIGTERM and SIGKILL when an attempt's process group is stopped (timeout,
    /// cancellation, or processes left behind by a shell that exited). Default 10 s.
    pub kill_grace: Duration,
}

impl Default for ShellConfig {
    fn default() -> Self {
        ShellConfig {
            kill_grace: Duration::from_secs(10),
        }
    }
}

/// How hard an attempt has been asked to stop. Only ever increases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StopLevel {
    /// Keep running.
    Run,
    /// Cancelled: SIGTERM, then SIGKILL after the grace.
    Terminate,
    /// SIGKILL now.
    KillNow,
}

/// Bookkeeping of one running attempt.
struct Entry {
    /// Tells this entry from a later one with the same key.
    id: u64,
    stop: watch::Sender<StopLevel>,
}

type Registry = Arc<Mutex<HashMap<(TaskIndex, u32), Entry>>>;

/// Runs shell attempts; see the [module docs](self).
///
/// Results arrive on the `reports` channel given to [`ShellExecutor::new`]: one
/// [`AttemptReport::Spawned`] when the process exists, and exactly one
/// [`AttemptReport::Finished`] per [`ShellExecutor::start`] call, sent after every process of
/// the attempt's group is gone. Dropping the executor kills every running attempt at once, as
/// [`ShellExecutor::kill_all_now`] does (their `Finished` reports still arrive).
pub struct ShellExecutor {
    reports: mpsc::UnboundedSender<AttemptReport>,
    config: ShellConfig,
    registry: Registry,
    next_id: u64,
    /// The runtime `new` was called in, if any.
    runtime: Option<tokio::runtime::Handle>,
}

impl ShellExecutor {
    /// An executor that sends its reports to `reports` (callable inside or outside a runtime).
    pub fn new(reports: mpsc::UnboundedSender<AttemptReport>, config: ShellConfig) -> Self {
        ShellExecutor {
            reports,
            config,
            registry: Registry::default(),
            next_id: 0,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Starts an attempt in a new tokio task and returns at once.
    ///
    /// The task (which forks the shell, see the parent-death note in the [module docs](self))
    /// runs on the runtime of the caller, or else on the runtime [`ShellExecutor::new`] was
    /// called in. Without either, or when the same task and attempt is already running, nothing
    /// is spawned and the attempt finishes at once as `Failed` with `retryable: false`.
    pub fn start(&mut self, mut request: AttemptRequest) {
        let key = (request.task, request.attempt);
        let refuse = |error: String| {
            tracing::error!(task_id = %request.task_id, attempt = request.attempt, "{error}");
            self.send_finished(
                &request,
                AttemptOutcome::Failed {
                    exit_code: None,
                    signal: None,
                    error,
                    retryable: false,
                    error_type: None,
                },
            );
        };
        let runtime = tokio::runtime::Handle::try_current().ok();
        let Some(runtime) = runtime.or_else(|| self.runtime.clone()) else {
            refuse("the shell executor was used outside a tokio runtime".to_owned());
            return;
        };
        let mut registry = lock(&self.registry);
        if registry.contains_key(&key) {
            drop(registry);
            refuse(format!(
                "attempt {} of task `{}` is already running; an attempt can only be started once",
                request.attempt, request.task_id
            ));
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let (stop, stop_rx) = watch::channel(StopLevel::Run);
        registry.insert(key, Entry { id, stop });
        drop(registry);

        let span = tracing::info_span!(
            "attempt",
            run_id = %request.run_id,
            task_id = %request.task_id,
            attempt = request.attempt
        );
        // W3C trace context of the attempt's span, after the task's env so it wins.
        if let Some(traceparent) = crate::telemetry::traceparent(&span) {
            request.env.push(("TRACEPARENT".to_owned(), traceparent));
        }
        let attempt = Attempt {
            request,
            grace: self.config.kill_grace,
            reports: self.reports.clone(),
            stop: stop_rx,
            stop_open: true,
        };
        let registry = Arc::clone(&self.registry);
        let reports = self.reports.clone();
        runtime.spawn(
            async move {
                let outcome = attempt.run().await;
                {
                    let mut registry = lock(&registry);
                    if registry.get(&key).is_some_and(|entry| entry.id == id) {
                        registry.remove(&key);
                    }
                }
                tracing::debug!(?outcome, "attempt finished");
                send(
                    &reports,
                    AttemptReport::Finished {
                        task: key.0,
                        attempt: key.1,
                        outcome,
                    },
                );
            }
            .instrument(span),
        );
    }

    /// Cancels a running attempt: SIGTERM to its process group, SIGKILL after the grace. Its
    /// outcome is [`AttemptOutcome::Cancelled`] (unless the shell had already exited on its
    /// own). Returns whether the attempt was running.
    pub fn cancel(&mut self, task: TaskIndex, attempt: u32) -> bool {
        match lock(&self.registry).get(&(task, attempt)) {
            Some(entry) => {
                raise(&entry.stop, StopLevel::Terminate);
                true
            }
            None => false,
        }
    }

    /// Cancels every running attempt (see [`ShellExecutor::cancel`]).
    pub fn cancel_all(&mut self) {
        self.raise_all(StopLevel::Terminate);
    }

    /// SIGKILLs the process group of every running attempt now, without grace (a second
    /// Ctrl-C). Attempts in their grace period after a cancel are killed too.
    pub fn kill_all_now(&mut self) {
        self.raise_all(StopLevel::KillNow);
    }

    /// How many attempts are running (started and not yet finished).
    pub fn running(&self) -> usize {
        lock(&self.registry).len()
    }

    fn raise_all(&self, level: StopLevel) {
        for entry in lock(&self.registry).values() {
            raise(&entry.stop, level);
        }
    }

    fn send_finished(&self, request: &AttemptRequest, outcome: AttemptOutcome) {
        send(
            &self.reports,
            AttemptReport::Finished {
                task: request.task,
                attempt: request.attempt,
                outcome,
            },
        );
    }
}

impl Drop for ShellExecutor {
    fn drop(&mut self) {
        self.raise_all(StopLevel::KillNow);
    }
}

impl std::fmt::Debug for ShellExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellExecutor")
            .field("config", &self.config)
            .field("running", &self.running())
            .finish()
    }
}

/// The state of one attempt's task.
struct Attempt {
    request: AttemptRequest,
    grace: Duration,
    reports: mpsc::UnboundedSender<AttemptReport>,
    stop: watch::Receiver<StopLevel>,
    /// False once the executor's side of `stop` is gone (no further stop requests can come).
    stop_open: bool,
}

/// Why the wait for the shell ended.
enum Waited {
    Exited(io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// The files of an attempt, ready for the process.
struct Files {
    stdout: File,
    stderr: File,
    /// Absolute path of the outputs file (the process may run elsewhere).
    outputs: PathBuf,
}

impl Attempt {
    /// Runs the attempt to its end and returns its outcome (sending `Spawned` on the way).
    async fn run(mut self) -> AttemptOutcome {
        if *self.stop.borrow_and_update() > StopLevel::Run {
            return AttemptOutcome::Cancelled;
        }
        let files = match prepare_files(&self.request).await {
            Ok(files) => files,
            Err(error) => return failed(None, None, error, true),
        };
        let mut child = match build_command(&self.request, files).spawn() {
            Ok(child) => child,
            Err(error) => {
                let error = spawn_error(&self.request.working_dir, error).await;
                return failed(None, None, error, true);
            }
        };
        let Some(pid) = child.id() else {
            // Only a child that was already waited for has no pid; this one was not.
            return failed(
                None,
                None,
                "the shell has no pid right after spawn".into(),
                true,
            );
        };
        let mut guard = GroupGuard {
            pgid: pid,
            armed: true,
        };
        let start_ticks = match process::start_ticks(pid) {
            Ok(ticks) => ticks,
            Err(error) => {
                // Without its start time a crash could not clean the group up safely.
                self.stop_group(&mut child, pid, None, StopLevel::KillNow)
                    .await;
                guard.armed = false;
                let error = format!("cannot read the start time of the shell (pid {pid}): {error}");
                return failed(None, None, error, true);
            }
        };
        tracing::debug!(pid, start_ticks, "shell spawned");
        send(
            &self.reports,
            AttemptReport::Spawned {
                task: self.request.task,
                attempt: self.request.attempt,
                pid,
                start_ticks,
            },
        );

        let deadline = self
            .request
            .timeout
            .and_then(|timeout| Instant::now().checked_add(timeout));
        let waited = self.wait_leader(&mut child, deadline).await;
        let (leader, outcome_of_stop) = match waited {
            Waited::Exited(status) => (Some(status), None),
            Waited::TimedOut => {
                let timeout = self.request.timeout.unwrap_or_default();
                let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                (None, Some(AttemptOutcome::TimedOut { timeout_ms }))
            }
            Waited::Cancelled => (None, Some(AttemptOutcome::Cancelled)),
        };
        let leader = self
            .stop_group(&mut child, pid, leader, StopLevel::Terminate)
            .await;
        guard.armed = false;
        if let Some(outcome) = outcome_of_stop {
            return outcome;
        }
        match leader {
            Some(Ok(status)) => self.exit_outcome(status).await,
            Some(Err(error)) => failed(
                None,
                None,
                format!("cannot wait for the shell (pid {pid}): {error}"),
                true,
            ),
            None => failed(
                None,
                None,
                format!("lost track of the shell (pid {pid})"),
                true,
            ),
        }
    }

    /// Waits for the shell to exit, the deadline to pass, or a stop request.
    async fn wait_leader(&mut self, child: &mut Child, deadline: Option<Instant>) -> Waited {
        let timeout = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                biased;
                status = child.wait() => return Waited::Exited(status),
                changed = next_level(&mut self.stop), if self.stop_open => match changed {
                    Some(StopLevel::Run) => {}
                    Some(_) => return Waited::Cancelled,
                    None => self.stop_open = false,
                },
                () = &mut timeout => return Waited::TimedOut,
            }
        }
    }

    /// Stops every process of group `pgid`: nothing to do when the group is already gone;
    /// otherwise SIGTERM + SIGCONT (or SIGKILL at once for [`StopLevel::KillNow`]), SIGKILL
    /// after the grace or when a kill-now request arrives, and wait until the group is gone
    /// (at most [`KILL_WAIT`] after SIGKILL). Reaps the shell if `leader` is `None`; returns
    /// its status.
    async fn stop_group(
        &mut self,
        child: &mut Child,
        pgid: u32,
        mut leader: Option<io::Result<ExitStatus>>,
        level: StopLevel,
    ) -> Option<io::Result<ExitStatus>> {
        let mut level = level.max(*self.stop.borrow());
        if leader.is_some() && !process::group_exists(pgid) {
            return leader;
        }
        let started = Instant::now();
        let mut killed_at = None;
        if level >= StopLevel::KillNow {
            process::signal_group(pgid, Signal::SIGKILL);
            killed_at = Some(started);
        } else {
            tracing::debug!(pgid, "sending SIGTERM to the process group");
            process::signal_group(pgid, Signal::SIGTERM);
            process::signal_group(pgid, Signal::SIGCONT);
        }
        let mut pause = POLL_MIN;
        let mut next_scan = started + SCAN_INTERVAL;
        loop {
            if leader.is_some() && group_gone(pgid, &mut next_scan).await {
                break;
            }
            let now = Instant::now();
            match killed_at {
                None if level >= StopLevel::KillNow
                    || started
                        .checked_add(self.grace)
                        .is_some_and(|end| now >= end) =>
                {
                    tracing::info!(pgid, "sending SIGKILL to the process group");
                    process::signal_group(pgid, Signal::SIGKILL);
                    killed_at = Some(now);
                }
                Some(at) if now >= at + KILL_WAIT => {
                    tracing::error!(
                        pgid,
                        "processes of the group are still alive {} s after SIGKILL \
                         (uninterruptible sleep?); reporting the attempt anyway",
                        KILL_WAIT.as_secs()
                    );
                    break;
                }
                _ => {}
            }
            tokio::select! {
                status = child.wait(), if leader.is_none() => leader = Some(status),
                changed = next_level(&mut self.stop), if self.stop_open => match changed {
                    Some(new) => level = level.max(new),
                    None => self.stop_open = false,
                },
                () = tokio::time::sleep(pause) => pause = (pause * 2).min(POLL_MAX),
            }
        }
        leader
    }

    /// The outcome of a shell that exited on its own with `status`.
    async fn exit_outcome(&self, status: ExitStatus) -> AttemptOutcome {
        if let Some(code) = status.code() {
            if code == 0 {
                return self.read_outputs().await;
            }
            return failed(Some(code), None, format!("exited with code {code}"), true);
        }
        if let Some(number) = status.signal() {
            let name = Signal::try_from(number).map_or("unknown signal", Signal::as_str);
            return failed(
                None,
                Some(number),
                format!("killed by signal {number} ({name})"),
                true,
            );
        }
        failed(None, None, format!("ended with {status}"), true)
    }

    /// `Succeeded` with the parsed outputs file, or `Failed` when it is invalid (not
    /// retryable: the command wrote it that way) or unreadable (retryable).
    async fn read_outputs(&self) -> AttemptOutcome {
        let path = self.request.outputs_path.clone();
        match tokio::task::spawn_blocking(move || read_outputs(&path)).await {
            Ok(Ok(outputs)) => AttemptOutcome::Succeeded { outputs },
            Ok(Err(error)) => failed(
                None,
                None,
                format!(
                    "the command exited with code 0 but its outputs ($TANDEM_OUTPUT) are invalid: {error}"
                ),
                matches!(error, OutputsError::Io { .. }),
            ),
            Err(error) => failed(
                None,
                None,
                format!("reading the outputs failed: {error}"),
                true,
            ),
        }
    }
}

/// Creates the attempt's files (and their parent directories).
async fn prepare_files(request: &AttemptRequest) -> Result<Files, String> {
    let outputs = std::path::absolute(&request.outputs_path).map_err(|error| {
        format!(
            "cannot make the outputs path `{}` absolute: {error}",
            request.outputs_path.display()
        )
    })?;
    let stdout = create_file(&request.stdout_path, "stdout").await?;
    let stderr = if request.stderr_path == request.stdout_path {
        stdout.try_clone().map_err(|error| {
            format!(
                "cannot share the stdout file `{}` with stderr: {error}",
                request.stdout_path.display()
            )
        })?
    } else {
        create_file(&request.stderr_path, "stderr").await?
    };
    create_file(&outputs, "outputs").await?;
    Ok(Files {
        stdout,
        stderr,
        outputs,
    })
}

/// Creates (or truncates) `path`, creating its parent directories first.
async fn create_file(path: &Path, what: &str) -> Result<File, String> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(parent).await.map_err(|error| {
            format!(
                "cannot create the directory `{}` for the {what} file: {error}",
                parent.display()
            )
        })?;
    }
    let file = tokio::fs::File::create(path).await.map_err(|error| {
        format!(
            "cannot create the {what} file `{}`: {error}",
            path.display()
        )
    })?;
    Ok(file.into_std().await)
}

/// `/bin/sh -c COMMAND` as the leader of a new process group, with the attempt's env and files.
fn build_command(request: &AttemptRequest, files: Files) -> Command {
    let mut command = Command::new(SHELL);
    command
        .arg("-c")
        .arg(&request.command)
        .current_dir(&request.working_dir)
        .envs(request.env.iter().map(|(key, value)| (key, value)))
        .env("TANDEM_OUTPUT", &files.outputs)
        .env("TANDEM_RUN_ID", request.run_id.to_string())
        .env("TANDEM_TASK_ID", &request.task_id)
        .env("TANDEM_ATTEMPT", request.attempt.to_string())
        .env("TANDEM_IDEMPOTENCY_KEY", request.idempotency_key())
        .stdin(Stdio::null())
        .stdout(Stdio::from(files.stdout))
        .stderr(Stdio::from(files.stderr))
        .process_group(0)
        .kill_on_drop(false);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only makes two system calls
    // (prctl, getppid) without allocating or taking locks, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || process::die_with_parent(parent));
    }
    command
}

/// A spawn error explained: the working directory is the usual culprit.
async fn spawn_error(working_dir: &Path, error: io::Error) -> String {
    match tokio::fs::metadata(working_dir).await {
        Err(problem) => format!(
            "cannot start the command: working directory `{}` cannot be used: {problem}",
            working_dir.display()
        ),
        Ok(metadata) if !metadata.is_dir() => format!(
            "cannot start the command: working directory `{}` is not a directory",
            working_dir.display()
        ),
        Ok(_) => format!(
            "cannot start `{SHELL} -c` in working directory `{}`: {error}",
            working_dir.display()
        ),
    }
}

/// Whether group `pgid` has no live member left: first the cheap null signal, then (at most
/// every [`SCAN_INTERVAL`]) a `/proc` scan that does not count zombies, which stay in the group
/// until someone reaps them and some init processes never do.
async fn group_gone(pgid: u32, next_scan: &mut Instant) -> bool {
    if !process::group_exists(pgid) {
        return true;
    }
    let now = Instant::now();
    if now < *next_scan {
        return false;
    }
    *next_scan = now + SCAN_INTERVAL;
    match tokio::task::spawn_blocking(move || process::live_group_members(pgid)).await {
        Ok(Ok(members)) => members.is_empty(),
        Ok(Err(error)) => {
            tracing::warn!(pgid, %error, "cannot list the process group's members");
            false
        }
        Err(_) => false,
    }
}

/// The next stop level after a change, or `None` when the executor side is gone.
async fn next_level(stop: &mut watch::Receiver<StopLevel>) -> Option<StopLevel> {
    stop.changed().await.ok()?;
    Some(*stop.borrow_and_update())
}

/// SIGKILLs the group if the attempt's task is dropped before the group was stopped (runtime
/// shutdown), so an attempt never outlives its executor.
struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            process::signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

fn failed(
    exit_code: Option<i32>,
    signal: Option<i32>,
    error: String,
    retryable: bool,
) -> AttemptOutcome {
    AttemptOutcome::Failed {
        exit_code,
        signal,
        error,
        retryable,
        error_type: None,
    }
}

/// Raises an attempt's stop level (it never goes down).
fn raise(stop: &watch::Sender<StopLevel>, level: StopLevel) {
    stop.send_if_modified(|current| {
        let raised = level > *current;
        if raised {
            *current = level;
        }
        raised
    });
}

fn send(reports: &mpsc::UnboundedSender<AttemptReport>, report: AttemptReport) {
    if reports.send(report).is_err() {
        tracing::debug!("attempt report dropped: the receiver is gone");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
