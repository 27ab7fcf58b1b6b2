//! The fault a live drill injects into the active region, and how the region is brought back.
//!
//! - `kill-region`: SIGKILL every process of the region at once: each pid of the files in
//!   `[regions.NAME.local] pid_dir`, their process groups and every descendant (PostgreSQL
//!   backends, shell attempts in their own groups), repeated until none is left. A pid whose
//!   process started after its pid file was last written is a reused pid and is left alone.
//!   Brought back with `start`.
//! - `partition`: runs `partition` (cut replication and client traffic; the region keeps
//!   running). Brought back with `heal`.
//!
//! [`capability`] refuses a fault the topology cannot do, naming the missing key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use tandem_engine::checkpoint::{LogPosition, UnixMillis, now_millis};

use super::command;
use crate::region_status::{RegionStatus, ReplicationMode};
use crate::topology::{LocalControl, Topology};

/// The fault of a live drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Kill every process of the active region (region loss).
    KillRegion,
    /// Cut the active region off (replication and client traffic); it keeps running.
    Partition,
}

impl FaultReport {
    /// True when the region was in sync replication mode, not degraded, as last read before
    /// the fault: then it acknowledged no write the standby did not hold.
    pub fn sync_held(&self) -> bool {
        self.active_replication_mode == Some(ReplicationMode::Sync)
            && self.active_sync_degraded_since_ms.is_none()
    }
}

impl Fault {
    /// `kill-region` or `partition`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::KillRegion => "kill-region",
            Fault::Partition => "partition",
        }
    }

    /// Parses [`Fault::as_str`]'s spelling.
    pub fn parse(text: &str) -> Option<Fault> {
        [Fault::KillRegion, Fault::Partition]
            .into_iter()
            .find(|fault| fault.as_str() == text)
    }
}

/// The fault as injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultReport {
    /// The fault.
    pub fault: Fault,
    /// The region it hit (the active one).
    pub region: String,
    /// When it started (t_fault), ms since the Unix epoch.
    pub at_ms: UnixMillis,
    /// When it was complete (processes gone, partition command done).
    pub done_at_ms: UnixMillis,
    /// The active region's latest log position as last read before the fault.
    pub active_latest_position: Option<LogPosition>,
    /// The active region's replication mode as last read before the fault.
    pub active_replication_mode: Option<ReplicationMode>,
    /// Sync mode: since when it had degraded to async, as last read before the fault.
    pub active_sync_degraded_since_ms: Option<UnixMillis>,
    /// `kill-region`: the processes named in `pid_dir` that were killed (file name → pid).
    pub killed: BTreeMap<String, i32>,
    /// `kill-region`: processes killed in all (with their groups and descendants).
    pub processes_killed: usize,
    /// `kill-region`: pid files left alone, and why.
    pub left_alone: Vec<String>,
    /// `partition`: the command run.
    pub command: Option<Vec<String>>,
    /// `partition`: the last lines of its output.
    pub output: Option<String>,
}

/// The local control of `region` that `fault` needs. Errors name the missing key of the
/// topology file: `[regions.NAME.local]` itself (with `pid_dir` and `start`), or its
/// `partition` / `heal`.
pub fn capability<'a>(
    topology: &'a Topology,
    region: &str,
    fault: Fault,
) -> Result<&'a LocalControl, String> {
    let entry = topology.region(region).map_err(|error| error.to_string())?;
    let file = topology.path.display();
    let Some(local) = &entry.local else {
        let needs = match fault {
            Fault::KillRegion => "`pid_dir` (to kill its processes) and `start` (to bring it back)",
            Fault::Partition => "`partition`, `heal` and `start`",
        };
        return Err(format!(
            "--fault {}: the topology {file} has no [regions.{region}.local] table for the active region {region}; a drill needs {needs} there (deploy/local/up.sh writes them)",
            fault.as_str()
        ));
    };
    if fault == Fault::Partition && local.partition.is_none() {
        return Err(format!(
            "--fault partition: [regions.{region}.local] of the topology {file} has no `partition` command (nor `heal`): this deployment cannot partition {region}; use --fault kill-region"
        ));
    }
    Ok(local)
}

/// Injects `fault` into `region` (whose local control is `local`); `before` is the region's
/// status as last read. `timeout` bounds the partition command and the wait for killed
/// processes to go. Errors: a text saying what could not be done.
pub async fn inject(
    fault: Fault,
    region: &str,
    local: &LocalControl,
    before: Option<&RegionStatus>,
    timeout: Duration,
) -> Result<FaultReport, String> {
    let mut report = FaultReport {
        fault,
        region: region.to_string(),
        at_ms: now_millis(),
        done_at_ms: 0,
        active_latest_position: before.map(|status| status.latest_position),
        active_replication_mode: before.map(|status| status.replication_mode),
        active_sync_degraded_since_ms: before.and_then(|status| status.sync_degraded_since_ms),
        killed: BTreeMap::new(),
        processes_killed: 0,
        left_alone: Vec::new(),
        command: None,
        output: None,
    };
    match fault {
        Fault::KillRegion => {
            let pid_dir = local.pid_dir.clone();
            let killed = tokio::task::spawn_blocking(move || kill_pid_dir(&pid_dir, timeout))
                .await
                .map_err(|error| format!("the kill task failed: {error}"))??;
            report.killed = killed.roots;
            report.processes_killed = killed.count;
            report.left_alone = killed.left_alone;
        }
        Fault::Partition => {
            let argv = local
                .partition
                .clone()
                .ok_or_else(|| format!("[regions.{region}.local] has no `partition` command"))?;
            let output = command::run(&argv, timeout).await?;
            report.command = Some(argv);
            report.output = Some(output);
        }
    }
    report.done_at_ms = now_millis();
    Ok(report)
}

/// Brings a region hit by `fault` back: runs its `start` (kill-region) or `heal`
/// (partition) command. Returns the command's last output lines.
pub async fn restore(
    fault: Fault,
    local: &LocalControl,
    timeout: Duration,
) -> Result<String, String> {
    let argv = match fault {
        Fault::KillRegion => local.start.clone(),
        Fault::Partition => local
            .heal
            .clone()
            .ok_or_else(|| "the topology gives no `heal` command".to_string())?,
    };
    command::run(&argv, timeout).await
}

/// What [`kill_pid_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Killed {
    /// The pid files' processes killed: file stem → pid.
    pub roots: BTreeMap<String, i32>,
    /// Processes killed in all.
    pub count: usize,
    /// Pid files left alone and why.
    pub left_alone: Vec<String>,
}

/// One process of the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessEntry {
    /// Its pid.
    pub pid: i32,
    /// Its parent.
    pub ppid: i32,
    /// Its process group.
    pub pgrp: i32,
    /// Its session.
    pub session: i32,
}

/// SIGKILLs every process of the pid files in `pid_dir` with their process groups, sessions
/// and descendants, until none is left (up to `timeout`). Never signals this process or its
/// ancestors. Errors: the directory cannot be read, holds no running process, or processes
/// are still there at the end.
pub fn kill_pid_dir(pid_dir: &Path, timeout: Duration) -> Result<Killed, String> {
    let mut killed = Killed::default();
    let mut names: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(pid_dir)
        .map_err(|error| format!("cannot read pid_dir {}: {error}", pid_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        })
        .filter(|(_, path)| path.is_file())
        .collect();
    names.sort();
    let boot =
        procfs::boot_time_secs().map_err(|error| format!("cannot read the boot time: {error}"))?;
    let ticks = procfs::ticks_per_second().max(1);
    for (name, path) in names {
        let stem = name.strip_suffix(".pid").unwrap_or(&name).to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let Some(pid) = text
            .trim()
            .lines()
            .next()
            .and_then(|line| line.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 1)
        else {
            killed
                .left_alone
                .push(format!("{name}: no pid in it (`{}`)", text.trim()));
            continue;
        };
        let Ok(stat) = procfs::process::Process::new(pid).and_then(|process| process.stat()) else {
            killed
                .left_alone
                .push(format!("{name}: pid {pid} is not running"));
            continue;
        };
        let started = boot + stat.starttime / ticks;
        let written = std::fs::metadata(&path)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |since| since.as_secs());
        if started > written.saturating_add(2) {
            killed.left_alone.push(format!(
                "{name}: pid {pid} started after the file was written (a reused pid)"
            ));
            continue;
        }
        if stat.state == 'Z' {
            killed
                .left_alone
                .push(format!("{name}: pid {pid} has exited"));
            continue;
        }
        killed.roots.insert(stem, pid);
    }
    if killed.roots.is_empty() {
        return Err(format!(
            "no running process found in pid_dir {} (is the region running? {})",
            pid_dir.display(),
            killed.left_alone.join("; ")
        ));
    }
    let own = own_lineage();
    let mut marked: BTreeSet<i32> = killed.roots.values().copied().collect();
    let deadline = SystemTime::now() + timeout;
    loop {
        let table = process_table();
        let targets: Vec<i32> = closure(&marked, &table)
            .into_iter()
            .filter(|pid| !own.contains(pid))
            .collect();
        if targets.is_empty() {
            break;
        }
        for &pid in &targets {
            marked.insert(pid);
            // Gone already: nothing to do.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if SystemTime::now() >= deadline {
            return Err(format!(
                "processes of the region still run after SIGKILL for {} s: {targets:?}",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    killed.count = marked.len();
    Ok(killed)
}

/// Every live (not zombie) process of `table` that is in `marked`, in the process group or
/// session of a marked process, or descends from one.
pub fn closure(marked: &BTreeSet<i32>, table: &[ProcessEntry]) -> BTreeSet<i32> {
    let mut found: BTreeSet<i32> = table
        .iter()
        .filter(|entry| {
            marked.contains(&entry.pid)
                || marked.contains(&entry.pgrp)
                || marked.contains(&entry.session)
        })
        .map(|entry| entry.pid)
        .collect();
    loop {
        let more: Vec<i32> = table
            .iter()
            .filter(|entry| !found.contains(&entry.pid) && found.contains(&entry.ppid))
            .map(|entry| entry.pid)
            .collect();
        if more.is_empty() {
            return found;
        }
        found.extend(more);
    }
}

/// Process `pid` with its group, session and descendants as the process table shows them
/// now, without this process and its ancestors.
pub fn tree_of(pid: i32) -> BTreeSet<i32> {
    let own = own_lineage();
    closure(&BTreeSet::from([pid]), &process_table())
        .into_iter()
        .filter(|member| !own.contains(member))
        .collect()
}

/// The live processes (zombies left out; they are gone, their parent only has to reap them).
fn process_table() -> Vec<ProcessEntry> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|process| process.stat().ok())
        .filter(|stat| stat.state != 'Z' && stat.state != 'X')
        .map(|stat| ProcessEntry {
            pid: stat.pid,
            ppid: stat.ppid,
            pgrp: stat.pgrp,
            session: stat.session,
        })
        .collect()
}

/// This process and its ancestors.
fn own_lineage() -> BTreeSet<i32> {
    let mut lineage = BTreeSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && lineage.insert(pid) {
        match procfs::process::Process::new(pid).and_then(|process| process.stat()) {
            Ok(stat) => pid = stat.ppid,
            Err(_) => break,
        }
    }
    lineage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i32, ppid: i32, pgrp: i32, session: i32) -> ProcessEntry {
        ProcessEntry {
            pid,
            ppid,
            pgrp,
            session,
        }
    }

    #[test]
    fn the_closure_takes_groups_sessions_and_descendants() {
        let table = vec![
            entry(1, 0, 1, 1),
            entry(100, 1, 100, 100),   // serve (own session)
            entry(101, 100, 101, 101), // shell attempt in its own group and session
            entry(102, 101, 101, 101), // its sleep
            entry(200, 1, 200, 200),   // postgres
            entry(201, 200, 201, 201), // a backend that called setsid
            entry(300, 1, 300, 300),   // an unrelated process
            entry(301, 1, 100, 100),   // reparented leftover of serve's group
        ];
        let roots: BTreeSet<i32> = [100, 200].into();
        let found = closure(&roots, &table);
        assert_eq!(found, [100, 101, 102, 200, 201, 301].into());
    }

    #[test]
    fn faults_parse_their_spelling() {
        assert_eq!(Fault::parse("kill-region"), Some(Fault::KillRegion));
        assert_eq!(Fault::parse("partition"), Some(Fault::Partition));
        assert_eq!(Fault::parse("kill"), None);
        assert_eq!(
            serde_json::to_value(Fault::KillRegion).unwrap(),
            "kill-region"
        );
    }

    fn topology(local: &str) -> Topology {
        let text = format!(
            "[regions.eu-west]\nendpoints = [\"http://127.0.0.1:7101\"]\n{local}\n[regions.us-east]\nendpoints = [\"http://127.0.0.1:7201\"]\n"
        );
        Topology::parse(&text, Path::new("/t/topology.toml")).unwrap()
    }

    #[test]
    fn a_fault_the_topology_cannot_do_names_the_missing_key() {
        let bare = topology("");
        let error = capability(&bare, "eu-west", Fault::KillRegion).unwrap_err();
        assert!(
            error.contains("[regions.eu-west.local]") && error.contains("pid_dir"),
            "{error}"
        );
        let no_partition =
            topology("[regions.eu-west.local]\npid_dir = \"/run/eu\"\nstart = [\"/bin/start\"]\n");
        assert!(capability(&no_partition, "eu-west", Fault::KillRegion).is_ok());
        let error = capability(&no_partition, "eu-west", Fault::Partition).unwrap_err();
        assert!(error.contains("no `partition` command"), "{error}");
        let error = capability(&no_partition, "nowhere", Fault::Partition).unwrap_err();
        assert!(error.contains("nowhere"), "{error}");
    }

    #[test]
    fn killing_a_pid_dir_kills_the_process_tree_and_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        // A process group leader with a child (the shape of a deploy/local process).
        let mut leader = std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 60 & wait"])
            .spawn()
            .unwrap();
        std::fs::write(dir.path().join("serve-1.pid"), format!("{}\n", leader.id())).unwrap();
        std::fs::write(dir.path().join("junk.pid"), "not a pid").unwrap();
        std::fs::write(dir.path().join("gone.pid"), "999999999").unwrap();
        // Let the child start.
        std::thread::sleep(Duration::from_millis(300));
        let table = process_table();
        let roots: BTreeSet<i32> = [leader.id() as i32].into();
        let tree = closure(&roots, &table);
        assert!(
            tree.len() >= 2,
            "expected the sh and its sleep, found {tree:?}"
        );
        let killed = kill_pid_dir(dir.path(), Duration::from_secs(5)).unwrap();
        assert_eq!(killed.roots.get("serve-1"), Some(&(leader.id() as i32)));
        assert!(killed.count >= 2, "{killed:?}");
        assert_eq!(killed.left_alone.len(), 2, "{killed:?}");
        let status = leader.wait().unwrap();
        assert!(!status.success());
        let after = process_table();
        assert!(
            tree.iter()
                .all(|pid| after.iter().all(|entry| entry.pid != *pid)),
            "{tree:?} still there"
        );

        let empty = tempfile::tempdir().unwrap();
        let error = kill_pid_dir(empty.path(), Duration::from_secs(1)).unwrap_err();
        assert!(error.contains("no running process"), "{error}");
    }
}
