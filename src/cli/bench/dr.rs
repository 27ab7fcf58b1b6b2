//! The `dr-*` workloads of `tandem bench`: cross-region disaster recovery (issue 5, "Speed")
//! on a real two-region deployment of `deploy/local/` on this machine.
//!
//! Deployment ([`deployment`]). `deploy/local/up.sh --tandem EXE --run-dir DIR --base-port B
//! --replicas 2 --mode async --regions eu-west,us-east`: EXE is this very binary, DIR a fresh
//! directory under `--dir`, B the first of 200 ports that are all free on 127.0.0.1. Each
//! region has its own etcd, PostgreSQL 15 (`fsync=on`, `synchronous_commit=on`), two `tandem
//! serve` replicas (a pool of 16 connections each for the engine, and one of 4 for the
//! replication streams and DR calls) and `tandem replicate`, with the settings
//! `up.sh` writes; eu-west is active, us-east its standby, async replication; every address
//! another region or a client uses goes through a `socat` forwarder. `down.sh` stops and
//! removes it at the end (also when the bench fails). Everything runs on this one machine and
//! shares its cores (2 on the reference machines) and its disk with whatever else runs there:
//! BACKGROUND says how busy the machine was.
//!
//! `dr-lag` ([`lag`]): one deployment. First both databases are set to record commit times
//! (`ALTER SYSTEM SET track_commit_timestamp = on`, then `region.sh stop` and `start` of each
//! region, which that setting needs). The fanout-1k DAG (one root, 1,000 empty tasks that
//! need it, one join: 1,002 task instances; empty tasks run in the server, as in
//! `serve-fanout-1k`) is registered on eu-west through the SDK, then one warm-up sample of
//! 50 runs, then `--repeat` times a sample of 50 runs followed by a reference sample of one
//! run (the lag without a backlog). A sample:
//! 1. measures how busy the machine is for 1 s (`/proc/stat`, the deployment idle:
//!    BACKGROUND, in cores);
//! 2. reads eu-west's last log position (`log_head.last`, from its PostgreSQL);
//! 3. starts the runs at once on eu-west (concurrent `StartRun` + `WatchRun` on one HTTP/2
//!    connection) and waits until every one finished `succeeded` with every task succeeded;
//! 4. reads eu-west's last position again: the load window is the positions between the two
//!    reads (every checkpoint of the runs; nothing else writes meanwhile);
//! 5. waits until us-east's `region_state.applied_position` reaches the window's end (read
//!    every 10 ms; the wait is CATCH-UP);
//! 6. reads from us-east's PostgreSQL (`postgres_url` of the topology) every checkpoint of
//!    the window, which must all be there, in order, each with a `replicated_at`, and the
//!    commit time of the transaction that wrote each checkpoint in both databases.
//!
//! The lag of a checkpoint is `replicated_at - recorded_at` (ms): `recorded_at` is eu-west's
//! leader's wall clock read when it sends the append statement that commits the checkpoint,
//! `replicated_at` the us-east replicator's wall clock read right before the transaction that
//! applies the batch holding it. Both are this machine's clock, so the difference needs no
//! clock synchronisation. It includes the source's commit (the append statement: its wait for
//! the log head's row lock, which appends hold until they commit, its inserts and its
//! commit), the leader's wake-up on its commit and its read of the log (up to 5,000
//! checkpoints a read), the push over gRPC, the replicator's decoding, and the wait behind
//! the applies of earlier batches; not the apply transaction itself. Figures: p50, p99, max
//! and count per sample and over every checkpoint of all samples of a kind; the target is
//! p99 < 200 ms over all checkpoints of the 50-run samples. SOURCE RATE = checkpoints of the
//! window per second as eu-west wrote them (first to last `recorded_at`); THROUGHPUT = the
//! same count over the first `recorded_at` to the last `replicated_at` (what replication
//! sustained end to end); APPLIED DURING / AFTER LOAD = the standby's pace until the bench saw
//! the last run finish, and from then on; APPLYING = the share of the load the replicator
//! spent inside apply transactions (near 100%: the apply is the bottleneck; well under: it
//! waited for batches).
//!
//! The second table splits each lag at the source's commit and follows the apply to the
//! standby's commit ([`breakdown`], from `pg_xact_commit_timestamp`): SOURCE COMMIT, SHIPPING,
//! APPLY, and END TO END = `recorded_at` to the standby's commit (the lag plus the apply).
//!
//! `dr-drill` ([`drill`]): `--repeat` drills, each on a fresh deployment (without the
//! commit-time setting): [`tandem_dr::drill::run`] with `--fault kill-region` and its
//! defaults (3 canary runs of 60 tasks, RPO objective 1 s, RTO objective 10 s), the same as
//! `tandem dr drill --fault kill-region`. The drill promotes us-east as soon as eu-west is
//! killed: the time a person or a monitor takes to decide on a failover is not in the
//! figures. RTO = the fault's start (just before SIGKILL of every process of eu-west) to the
//! first dispatch in the promoted us-east (the `at` of its first `AttemptStarted`, as us-east
//! reports it); FAULT TO PROMOTION = the part until us-east was promoted. RPO = the history
//! lost: the commit time of eu-west's last lost checkpoint minus that of its last replicated
//! one, read from eu-west's unreplicated tail once it came back fenced, with the tail's size
//! in checkpoints. Targets: in every drill, RTO < 10 s, RPO < 1 s, and the drill passed
//! (every canary completed in us-east, no succeeded task ran again).
//!
//! Both run only when named with `--workload`.

mod breakdown;
mod database;
mod deployment;
pub mod drill;
mod drill_report;
pub mod lag;
mod lag_report;
mod machine;
mod stats;

use std::path::Path;

use super::super::Failure;
use drill_report::DrillResult;
use lag_report::LagResult;

/// A `dr-*` workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrWorkload {
    /// Replication lag under 50 concurrent fanout-1k runs.
    Lag,
    /// RTO and RPO of `tandem dr drill --fault kill-region`.
    Drill,
}

impl DrWorkload {
    /// The name given to `--workload`.
    pub fn name(self) -> &'static str {
        match self {
            DrWorkload::Lag => lag::NAME,
            DrWorkload::Drill => drill::NAME,
        }
    }
}

/// What one `dr-*` workload measured.
#[derive(Debug, Clone)]
pub enum DrResult {
    /// `dr-lag`.
    Lag(LagResult),
    /// `dr-drill`.
    Drill(DrillResult),
}

impl DrResult {
    /// Whether its target was met.
    pub fn verdict(&self) -> bool {
        match self {
            DrResult::Lag(result) => result.verdict(),
            DrResult::Drill(result) => result.verdict(),
        }
    }

    /// The result as one JSON row of `tandem bench -o json`.
    pub fn json(&self) -> serde_json::Value {
        match self {
            DrResult::Lag(result) => result.json(),
            DrResult::Drill(result) => result.json(),
        }
    }

    /// The result for people: its table, then its target line(s).
    pub fn text(&self) -> String {
        match self {
            DrResult::Lag(result) => format!(
                "{}\n{}{} sample(s) of {} fanout-1k runs at once on {} after one warm-up, each followed by a reference sample of {} run; lag = the standby's replicated_at - the source's recorded_at of each checkpoint (one machine clock; the source's commit, the shipping and the wait behind earlier applies included, the standby's apply transaction not: see APPLY); BACKGROUND = cores busy on the machine in the second before the sample. Method: src/cli/bench/dr.rs.\n{}",
                result.table(),
                result
                    .breakdown_table()
                    .map(|table| format!("{table}\nSOURCE COMMIT = recorded_at to the source's commit (append statement, log-head lock queue); SHIPPING = to replicated_at (read, push, decode, wait behind earlier applies); APPLY = to the standby's commit of the batch; END TO END = recorded_at to the standby's commit (commit times: track_commit_timestamp).\n"))
                    .unwrap_or_default(),
                result.samples.len(),
                lag::RUNS,
                deployment::ACTIVE,
                lag::REFERENCE_RUNS,
                result.target_text()
            ),
            DrResult::Drill(result) => format!(
                "{}\n{} drill(s) with --fault kill-region, each on a fresh deployment ({} active, {} standby, async); RTO = fault to the first dispatch in the promoted region; RPO = history lost (commit times of the lost tail).\n{}",
                result.table(),
                result.samples.len(),
                deployment::ACTIVE,
                deployment::STANDBY,
                result.target_text()
            ),
        }
    }
}

/// Runs `workloads` in order, `repeat` samples each; temp dirs go under `dir`; `exe` is this
/// binary (the deployments' `tandem`).
///
/// Errors: see [`lag::run`] and [`drill::run`].
pub fn run_all(
    exe: &Path,
    workloads: &[DrWorkload],
    repeat: u32,
    dir: &Path,
) -> Result<Vec<DrResult>, Failure> {
    workloads
        .iter()
        .map(|workload| match workload {
            DrWorkload::Lag => lag::run(exe, repeat, dir).map(DrResult::Lag),
            DrWorkload::Drill => drill::run(exe, repeat, dir).map(DrResult::Drill),
        })
        .collect()
}
