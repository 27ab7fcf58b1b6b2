//! Processes and process groups, read from `/proc` (Linux only).
//!
//! Every shell attempt runs as the leader of its own process group, whose id is the leader's
//! pid. [`start_ticks`] records when that leader started, so that after a crash
//! [`kill_leftover_group`] can stop whatever the attempt left running without touching
//! unrelated processes that later reused the number.
//!
//! Blocking: these functions read `/proc` and (for [`kill_leftover_group`]) sleep; call them
//! from `tokio::task::spawn_blocking` in async code.

use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use procfs::ProcError;
use procfs::process::{Process, Stat};

/// How long [`kill_leftover_group`] waits for killed processes to disappear.
pub const LEFTOVER_KILL_WAIT: Duration = Duration::from_secs(5);

/// Interval between checks while waiting for killed processes to disappear.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The start time of process `pid`, in clock ticks since boot (`/proc/PID/stat` field 22,
/// `starttime`; see proc_pid_stat(5)). Together with the pid it identifies a process: a later
/// process that reuses the pid has a larger start time.
///
/// # Errors
/// `NotFound` when no such process exists; other errors when `/proc` cannot be read.
pub fn start_ticks(pid: u32) -> io::Result<u64> {
    Ok(stat_of(pid)?.starttime)
}

/// Kills (SIGKILL) what is left of the process group of a crashed owner's attempt, and waits
/// (at most [`LEFTOVER_KILL_WAIT`]) until those processes are gone. Returns how many processes
/// were killed (0 when nothing was left).
///
/// `pid` is the recorded group leader (its pid is the group id) and `start_ticks` its recorded
/// [`start_ticks`]. The rule, relying on Linux never handing out a pid that is still in use
/// as a process group id:
/// - if a process with pid `pid` exists and its start time differs from `start_ticks`, the pid
///   was reused, which means the attempt's group had emptied first: nothing is killed;
/// - otherwise every live process whose process group is `pid` and whose start time is
///   `>= start_ticks` is killed (members of a group always start after its leader).
///
/// The one case the rule cannot tell apart: the attempt's group emptied, the number was
/// reused by a new group leader that has exited again, and that new group still has members;
/// those would be killed. This needs the pid space to wrap around between the crash and the
/// resume and is rare. Processes that left the group (`setsid`, `setpgid`) are not found.
/// Zombies count as gone (they hold no resources but a pid, and are reaped by their parent).
///
/// # Errors
/// `InvalidInput` for pid 0 or 1 or a pid above `i32::MAX` (never an attempt's group), errors
/// reading `/proc` or sending a signal (other than the process having exited meanwhile), and
/// `TimedOut` when killed processes are still there after [`LEFTOVER_KILL_WAIT`] (e.g. stuck in
/// uninterruptible sleep), naming them.
pub fn kill_leftover_group(pid: u32, start_ticks: u64) -> io::Result<usize> {
    let pgid = checked_pgid(pid)?;
    if nix::unistd::getpgrp() == pgid {
        // Our own group: the recorded group has emptied (its number was reused by us).
        return Ok(0);
    }
    match stat_of(pid) {
        Ok(leader) if leader.starttime != start_ticks => return Ok(0),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let own_pid = std::process::id();
    let mut killed = Vec::new();
    for (member, member_start) in live_group_members(pid)? {
        if member == own_pid || member_start < start_ticks {
            continue;
        }
        match kill(Pid::from_raw(member as i32), Signal::SIGKILL) {
            Ok(()) => killed.push((member, member_start)),
            Err(Errno::ESRCH) => {}
            Err(errno) => {
                return Err(io::Error::new(
                    io::Error::from(errno).kind(),
                    format!(
                        "cannot kill process {member} of leftover process group {pid}: {errno}"
                    ),
                ));
            }
        }
    }
    let deadline = Instant::now() + LEFTOVER_KILL_WAIT;
    loop {
        let mut remaining = Vec::new();
        for &(member, member_start) in &killed {
            match stat_of(member) {
                Ok(stat) if stat.starttime == member_start && !is_gone(&stat) => {
                    remaining.push(member)
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        if remaining.is_empty() {
            return Ok(killed.len());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "processes {remaining:?} of leftover process group {pid} are still alive {} s \
                     after SIGKILL (uninterruptible sleep?)",
                    LEFTOVER_KILL_WAIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The live (not zombie, not dead) processes whose process group is `pgid`, as
/// `(pid, start_ticks)` pairs. Processes that exit while `/proc` is being read are skipped.
///
/// # Errors
/// When `/proc` cannot be listed.
pub fn live_group_members(pgid: u32) -> io::Result<Vec<(u32, u64)>> {
    let processes = procfs::process::all_processes().map_err(|error| proc_error(error, "/proc"))?;
    let mut members = Vec::new();
    for process in processes {
        // A process that disappears between listing and reading is simply not a member.
        let Ok(process) = process else { continue };
        let Ok(stat) = process.stat() else { continue };
        if stat.pgrp as i64 == pgid as i64 && !is_gone(&stat) {
            members.push((stat.pid as u32, stat.starttime));
        }
    }
    Ok(members)
}

/// Whether any process (zombies included) is in process group `pgid`, by sending it the null
/// signal. A group whose members belong to another user counts as existing.
pub(crate) fn group_exists(pgid: u32) -> bool {
    let Ok(pgid) = checked_pgid(pgid) else {
        return false;
    };
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// Sends `signal` to every process of group `pgid`. Returns false when the group no longer
/// exists (ESRCH); other failures (EPERM) are logged and count as sent.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(group) = checked_pgid(pgid) else {
        return false;
    };
    match killpg(group, signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(errno) => {
            tracing::warn!(pgid, %signal, %errno, "cannot signal process group");
            true
        }
    }
}

/// Zombie (`Z`) or dead (`X`, `x`): exited, only waiting to be reaped.
fn is_gone(stat: &Stat) -> bool {
    matches!(stat.state, 'Z' | 'X' | 'x')
}

/// `pid` as a process group id we may signal: never 0 (our own group), 1 (init) or negative.
fn checked_pgid(pid: u32) -> io::Result<Pid> {
    match i32::try_from(pid) {
        Ok(raw) if raw > 1 => Ok(Pid::from_raw(raw)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "expected a process group id between 2 and {}, found {pid}",
                i32::MAX
            ),
        )),
    }
}

fn stat_of(pid: u32) -> io::Result<Stat> {
    let path = format!("/proc/{pid}/stat");
    let raw = i32::try_from(pid).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("expected a process id up to {}, found {pid}", i32::MAX),
        )
    })?;
    Process::new(raw)
        .and_then(|process| process.stat())
        .map_err(|error| proc_error(error, &path))
}

/// A procfs error as an `io::Error` that names the file.
fn proc_error(error: ProcError, path: &str) -> io::Error {
    let kind = match &error {
        ProcError::NotFound(_) => io::ErrorKind::NotFound,
        ProcError::PermissionDenied(_) => io::ErrorKind::PermissionDenied,
        ProcError::Io(inner, _) => inner.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("cannot read {path}: {error}"))
}

/// In a forked child before `exec` (a `pre_exec` hook): asks for SIGKILL when the forking
/// thread ends (`PR_SET_PDEATHSIG`), and fails the spawn with `ESRCH` if `parent` (the
/// forking process's pid) is already gone, since it could have died before the request took
/// effect. Makes only two system calls (prctl, getppid), without allocating or taking locks,
/// so it is async-signal-safe.
pub fn die_with_parent(parent: u32) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)?;
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(io::Error::from_raw_os_error(
            nix::errno::Errno::ESRCH as i32,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};

    #[test]
    fn start_ticks_of_self_and_of_a_missing_process() {
        let own = start_ticks(std::process::id()).unwrap();
        assert!(own > 0);
        let mut child = Command::new("true").spawn().unwrap();
        let child_ticks = start_ticks(child.id()).unwrap();
        assert!(child_ticks >= own, "{child_ticks} < {own}");
        child.wait().unwrap();
        let error = start_ticks(child.id()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        assert!(
            error
                .to_string()
                .contains(&format!("/proc/{}/stat", child.id()))
        );
    }

    #[test]
    fn refuses_pids_that_are_never_attempt_groups() {
        for pid in [0, 1, u32::MAX] {
            let error = kill_leftover_group(pid, 0).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{pid}: {error}");
        }
    }

    /// Starts `sh -c SCRIPT` as the leader of a new group, records it, waits for the leader to
    /// exit and returns its (pid, start ticks).
    fn orphaned_group(script: &str) -> (u32, u64) {
        let mut leader = Command::new("sh")
            .arg("-c")
            .arg(script)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = leader.id();
        // The leader is our child, so until it is reaped its stat stays readable.
        let ticks = start_ticks(pid).unwrap();
        assert!(leader.wait().unwrap().success());
        (pid, ticks)
    }

    #[test]
    fn kills_an_orphaned_group() {
        let (pid, ticks) = orphaned_group("sleep 1000 & sleep 1000 & exit 0");
        let before = live_group_members(pid).unwrap();
        assert_eq!(before.len(), 2, "{before:?}");
        assert!(before.iter().all(|&(_, start)| start >= ticks));

        assert_eq!(kill_leftover_group(pid, ticks).unwrap(), 2);
        assert_eq!(live_group_members(pid).unwrap(), vec![]);
        // Nothing left: a second call kills nothing.
        assert_eq!(kill_leftover_group(pid, ticks).unwrap(), 0);
    }

    #[test]
    fn does_not_kill_processes_started_before_the_recorded_leader() {
        let (pid, ticks) = orphaned_group("sleep 1000 & exit 0");
        // Recorded as if the leader had started later than every member: nothing matches.
        assert_eq!(kill_leftover_group(pid, ticks + 1_000_000).unwrap(), 0);
        assert_eq!(live_group_members(pid).unwrap().len(), 1);
        assert_eq!(kill_leftover_group(pid, ticks).unwrap(), 1);
        assert!(live_group_members(pid).unwrap().is_empty());
    }

    #[test]
    fn a_reused_leader_pid_means_the_group_is_not_ours() {
        // A live leader whose start time differs from the recorded one: nothing is touched.
        let mut leader = Command::new("sh")
            .arg("-c")
            .arg("sleep 1000 & wait")
            .process_group(0)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = leader.id();
        let ticks = start_ticks(pid).unwrap();
        assert_eq!(
            kill_leftover_group(pid, ticks.saturating_sub(1)).unwrap(),
            0
        );
        assert!(leader.try_wait().unwrap().is_none(), "leader was killed");
        // With the right start time, both the leader and its child are killed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while live_group_members(pid).unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "background sleep never started");
            std::thread::sleep(POLL_INTERVAL);
        }
        assert_eq!(kill_leftover_group(pid, ticks).unwrap(), 2);
        assert!(!leader.wait().unwrap().success());
        assert!(live_group_members(pid).unwrap().is_empty());
    }

    #[test]
    fn group_helpers_see_groups_come_and_go() {
        let (pid, _) = orphaned_group("sleep 1000 & exit 0");
        assert!(group_exists(pid));
        assert!(signal_group(pid, Signal::SIGKILL));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live_group_members(pid).unwrap().is_empty() {
            assert!(Instant::now() < deadline, "group {pid} survived SIGKILL");
            std::thread::sleep(POLL_INTERVAL);
        }
        assert!(!group_exists(0));
        assert!(!signal_group(1, Signal::SIGKILL));
    }
}
