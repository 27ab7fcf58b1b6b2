//! `tandem bench`: scheduler throughput and memory on standard workloads.
//!
//! Method: every sample runs in a fresh child process (`tandem bench --child WORKLOAD`), so
//! memory figures are that workload's alone. The child generates the workload's DAG file,
//! compiles it, creates a fresh embedded store in a temporary directory under the state
//! directory (same disk as real state, `synchronous=FULL`: every commit is fsync'd), and times
//! the run from `create_run` to the end of `drive` (the run's first and last checkpoint
//! committed). It reports that time, the compile time, commits, checkpoints and its peak
//! resident memory (`VmHWM` of `/proc/self/status`). The parent also times the whole child
//! process, which adds process start-up, and reports median, min and max over `--repeat`
//! samples. `append-200k` and `commit-1k` time the store alone (no scheduler).
//!
//! The `serve-*` workloads measure the region service instead: a real `tandem serve` process
//! over a private PostgreSQL, driven through the SDK; their method is in [`service`], and that
//! of `serve-failover` (kill -9 of the leader of three replicas) in [`failover`]. They run
//! only when named with `--workload`, as do the `dr-*` workloads (cross-region replication
//! lag and DR drills on a two-region `deploy/local/` deployment; method in [`dr`]).

mod commit;
mod dr;
mod failover;
mod process;
mod service;
pub mod worker;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::{Deserialize, Serialize};
use tandem_engine::checkpoint::{Event, NewCheckpoint, RunEnd};
use tandem_engine::paths::StateDir;
use tandem_engine::runner::{self, Progress, RunClock, RunnerConfig, current_owner};
use tandem_engine::store::CheckpointStore;
use tandem_engine::store::sqlite::SqliteStore;
use tokio::sync::{mpsc, watch};

use super::{Failure, OutputFormat, exit, runtime};
use dr::{DrResult, DrWorkload};
use failover::FailoverResult;
use service::{ServiceResult, ServiceRun, ServiceWorkload};

/// Standard workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// One root, 1,000 empty tasks that need it, one join needing all of them.
    #[value(name = "fanout-1k")]
    Fanout1k,
    /// 200 empty tasks in sequence.
    #[value(name = "chain-200")]
    Chain200,
    /// One root, 100,000 empty tasks that need it, one join: peak memory.
    #[value(name = "fanout-100k")]
    Fanout100k,
    /// Compile (parse + validate) the fanout-100k file only.
    #[value(name = "validate-100k")]
    Validate100k,
    /// fanout-1k where every task runs a process (`true`), at parallelism = CPUs.
    #[value(name = "fanout-1k-shell")]
    Fanout1kShell,
    /// The store alone: one append of 200,000 small checkpoints (one commit).
    #[value(name = "append-200k")]
    Append200k,
    /// The store alone: 1,000 appends of one checkpoint each (1,000 fsync'd commits).
    #[value(name = "commit-1k")]
    Commit1k,
    /// Through `tandem serve` on PostgreSQL: fanout-1k, StartRun to finished.
    #[value(name = "serve-fanout-1k")]
    ServeFanout1k,
    /// Through `tandem serve`: fanout-1k whose 1,000 tasks run in an SDK worker process.
    #[value(name = "serve-fanout-1k-workers")]
    ServeFanout1kWorkers,
    /// Through `tandem serve`: chain-200, against 200 x the commit latency of the database.
    #[value(name = "serve-chain-200")]
    ServeChain200,
    /// Through `tandem serve`: 50 fanout-1k runs at once: tasks/s and the server's peak memory.
    #[value(name = "serve-concurrent-50")]
    ServeConcurrent50,
    /// serve-fanout-1k against three replicas with leader election (etcd), through the leader.
    #[value(name = "serve-fanout-1k-ha")]
    ServeFanout1kHa,
    /// Three replicas with leader election: time from kill -9 of the leader to the next
    /// leader's first dispatch, over max(--repeat, 10) failovers.
    #[value(name = "serve-failover")]
    ServeFailover,
    /// Two regions (deploy/local): replication lag p50/p99/max while the active region runs
    /// 50 fanout-1k runs at once.
    #[value(name = "dr-lag")]
    DrLag,
    /// Two regions (deploy/local): RTO and RPO of `tandem dr drill --fault kill-region`, a
    /// fresh deployment per drill.
    #[value(name = "dr-drill")]
    DrDrill,
}

impl Workload {
    const DEFAULT: [Workload; 7] = [
        Workload::Fanout1k,
        Workload::Chain200,
        Workload::Fanout100k,
        Workload::Validate100k,
        Workload::Fanout1kShell,
        Workload::Append200k,
        Workload::Commit1k,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Fanout1k => "fanout-1k",
            Workload::Chain200 => "chain-200",
            Workload::Fanout100k => "fanout-100k",
            Workload::Validate100k => "validate-100k",
            Workload::Fanout1kShell => "fanout-1k-shell",
            Workload::Append200k => "append-200k",
            Workload::Commit1k => "commit-1k",
            Workload::ServeFanout1k
            | Workload::ServeFanout1kWorkers
            | Workload::ServeChain200
            | Workload::ServeConcurrent50
            | Workload::ServeFanout1kHa => self.service().map_or("", ServiceWorkload::name),
            Workload::ServeFailover => failover::NAME,
            Workload::DrLag | Workload::DrDrill => self.dr().map_or("", DrWorkload::name),
        }
    }

    /// Whether this is a `serve-*` workload (run in the bench process against `tandem serve`).
    fn is_served(self) -> bool {
        self.service().is_some() || self == Workload::ServeFailover || self.dr().is_some()
    }

    /// The `dr-*` workload this is, if it is one.
    fn dr(self) -> Option<DrWorkload> {
        match self {
            Workload::DrLag => Some(DrWorkload::Lag),
            Workload::DrDrill => Some(DrWorkload::Drill),
            _ => None,
        }
    }

    /// The service workload this is, if it is one (`serve-*`).
    fn service(self) -> Option<ServiceWorkload> {
        match self {
            Workload::ServeFanout1k => Some(ServiceWorkload::Fanout1k),
            Workload::ServeFanout1kWorkers => Some(ServiceWorkload::Fanout1kWorkers),
            Workload::ServeChain200 => Some(ServiceWorkload::Chain200),
            Workload::ServeConcurrent50 => Some(ServiceWorkload::Concurrent50),
            Workload::ServeFanout1kHa => Some(ServiceWorkload::Fanout1kHa),
            _ => None,
        }
    }

    /// The target, as (what is measured, limit): time in ms or peak memory in MiB. The
    /// targets of the `serve-*` workloads are [`ServiceWorkload::target`] and
    /// [`failover::FailoverResult::verdict`].
    fn target(self) -> Option<Target> {
        match self {
            Workload::Fanout1k => Some(Target::RunMillis(100.0)),
            Workload::Chain200 => Some(Target::RunMillis(600.0)),
            Workload::Fanout100k => Some(Target::PeakMib(300.0)),
            Workload::Validate100k => Some(Target::CompileMillis(2000.0)),
            Workload::Fanout1kShell | Workload::Append200k | Workload::Commit1k => None,
            Workload::ServeFanout1k
            | Workload::ServeFanout1kWorkers
            | Workload::ServeChain200
            | Workload::ServeConcurrent50
            | Workload::ServeFanout1kHa
            | Workload::ServeFailover
            | Workload::DrLag
            | Workload::DrDrill => None,
        }
    }

    /// The workload's DAG file text.
    fn source(self) -> String {
        match self {
            Workload::Fanout1k | Workload::Append200k | Workload::Commit1k => {
                fan_out("fanout-1000", 1_000, "")
            }
            Workload::Fanout1kShell => fan_out("fanout-1000", 1_000, "    run: true\n"),
            Workload::Fanout100k | Workload::Validate100k => fan_out("fanout-100000", 100_000, ""),
            Workload::Chain200 => chain("chain-200", 200),
            Workload::ServeFanout1k
            | Workload::ServeFanout1kWorkers
            | Workload::ServeChain200
            | Workload::ServeConcurrent50
            | Workload::ServeFanout1kHa => self
                .service()
                .map(ServiceWorkload::source)
                .unwrap_or_default(),
            Workload::ServeFailover => failover::source(),
            Workload::DrLag => dr::lag::source(),
            Workload::DrDrill => {
                tandem_dr::drill::canary::canary_source(tandem_dr::drill::DEFAULT_CANARY_TASKS)
                    .unwrap_or_default()
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    RunMillis(f64),
    CompileMillis(f64),
    PeakMib(f64),
}

/// A DAG file `name`: one root, `width` tasks that need it (each with the lines of `body`,
/// indented by four spaces), one join that needs them all.
fn fan_out(name: &str, width: usize, body: &str) -> String {
    let mut text = format!("name: {name}\ntasks:\n  root: {{}}\n");
    for index in 0..width {
        text.push_str(&format!("  t{index}:\n    needs: [root]\n{body}"));
    }
    text.push_str("  join:\n    needs: [");
    for index in 0..width {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!("t{index}"));
    }
    text.push_str("]\n");
    text
}

/// A DAG file `name`: `length` empty tasks in sequence (`t0` .. `t{length-1}`).
fn chain(name: &str, length: usize) -> String {
    let mut text = format!("name: {name}\ntasks:\n  t0: {{}}\n");
    for index in 1..length {
        text.push_str(&format!("  t{index}:\n    needs: [t{}]\n", index - 1));
    }
    text
}

/// Arguments of `tandem bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Workloads to run [default: all but the `serve-*` ones, which start PostgreSQL and
    /// `tandem serve` and run only when named].
    #[arg(long = "workload", short = 'w', value_enum, value_name = "NAME")]
    workloads: Vec<Workload>,
    /// Samples per workload (each in a fresh process).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// Directory for the temporary stores (default: the state directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Internal: run one sample of this workload in this process and print it as JSON.
    #[arg(long, hide = true, value_enum)]
    child: Option<Workload>,
}

/// One sample, as printed by a child.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sample {
    compile_ms: f64,
    run_ms: f64,
    commits: u64,
    checkpoints: u64,
    peak_rss_kib: u64,
    #[serde(default)]
    process_ms: f64,
}

/// `tandem bench`.
pub fn bench(args: BenchArgs) -> Result<u8, Failure> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(".tandem"));
    std::fs::create_dir_all(&dir)
        .map_err(|error| Failure::system(format!("cannot create {}: {error}", dir.display())))?;
    if let Some(workload) = args.child {
        if workload.is_served() {
            return Err(Failure::invalid(format!(
                "bench --child: expected a local workload, found {} (the serve-* workloads run in the bench process)",
                workload.name()
            )));
        }
        let sample = child(workload, &dir)?;
        println!(
            "{}",
            serde_json::to_string(&sample).map_err(Failure::system)?
        );
        return Ok(exit::OK);
    }
    let workloads = if args.workloads.is_empty() {
        Workload::DEFAULT.to_vec()
    } else {
        args.workloads.clone()
    };
    let exe = std::env::current_exe()
        .map_err(|error| Failure::system(format!("cannot find the tandem binary: {error}")))?;
    let (served, local): (Vec<Workload>, Vec<Workload>) = workloads
        .into_iter()
        .partition(|workload| workload.is_served());
    let mut results = Vec::new();
    for workload in local {
        let mut samples = Vec::new();
        for _ in 0..args.repeat {
            samples.push(sample_in_child(&exe, workload, &dir)?);
        }
        results.push((workload, samples));
    }
    let failover_asked = served.contains(&Workload::ServeFailover);
    let dr_asked: Vec<DrWorkload> = served.iter().filter_map(|workload| workload.dr()).collect();
    let served: Vec<ServiceWorkload> = served.into_iter().filter_map(Workload::service).collect();
    let ServiceRun {
        results: service_results,
        failover: failover_result,
    } = if served.is_empty() && !failover_asked {
        ServiceRun {
            results: Vec::new(),
            failover: None,
        }
    } else {
        service::run_all(&exe, &served, failover_asked, args.repeat, &dir)?
    };
    let dr_results = if dr_asked.is_empty() {
        Vec::new()
    } else {
        dr::run_all(&exe, &dr_asked, args.repeat, &dir)?
    };
    let mut missed = service_results
        .iter()
        .any(|result| result.verdict() == Some(false))
        || failover_result
            .as_ref()
            .is_some_and(|result| !result.verdict())
        || dr_results.iter().any(|result| !result.verdict());
    match args.output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = results
                .iter()
                .map(|(workload, samples)| {
                    let verdict = verdict(*workload, samples);
                    missed |= verdict == Some(false);
                    serde_json::json!({
                        "workload": workload.name(),
                        "samples": samples,
                        "target_met": verdict,
                    })
                })
                .chain(service_results.iter().map(ServiceResult::json))
                .chain(failover_result.iter().map(FailoverResult::json))
                .chain(dr_results.iter().map(DrResult::json))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).map_err(Failure::system)?
            );
        }
        OutputFormat::Table if results.is_empty() => {}
        OutputFormat::Table => {
            let mut out = Table::new();
            out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
                "WORKLOAD",
                "RUN median (min-max)",
                "COMPILE median",
                "PROCESS median",
                "COMMITS",
                "CHECKPOINTS",
                "PEAK RSS max",
                "TARGET",
            ]);
            for (workload, samples) in &results {
                let verdict = verdict(*workload, samples);
                missed |= verdict == Some(false);
                let run: Vec<f64> = samples.iter().map(|s| s.run_ms).collect();
                let compile: Vec<f64> = samples.iter().map(|s| s.compile_ms).collect();
                let process: Vec<f64> = samples.iter().map(|s| s.process_ms).collect();
                let peak = samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
                out.add_row(vec![
                    workload.name().to_string(),
                    format!("{:.1} ms ({:.1}-{:.1})", median(&run), min(&run), max(&run)),
                    format!("{:.1} ms", median(&compile)),
                    format!("{:.1} ms", median(&process)),
                    samples[0].commits.to_string(),
                    samples[0].checkpoints.to_string(),
                    format!("{:.1} MiB", peak as f64 / 1024.0),
                    target_text(*workload, verdict),
                ]);
            }
            println!("{out}");
            println!(
                "{} samples per workload, each in a fresh process; RUN = first to last checkpoint committed (fsync on); PROCESS = whole child process, start-up included.",
                args.repeat
            );
        }
    }
    if args.output == OutputFormat::Table && !service_results.is_empty() {
        if !results.is_empty() {
            println!();
        }
        println!("{}", service::table(&service_results));
        println!(
            "{} samples per workload after one warm-up, one tandem serve per workload (serve-fanout-1k-ha: three replicas with etcd leader election, the client talking to the leader; when serve-fanout-1k runs too, both are up together and their samples alternate) on a private PostgreSQL (fsync and synchronous_commit on); RUN = first StartRun call to the WatchRun reply showing the (last) run finished, in the client; START = first StartRun call to the last StartRun reply; SERVER = the runs' creation to finish as the server records them; COMMIT = median single-client one-row commit on the same PostgreSQL, measured before each sample.",
            args.repeat
        );
        for result in &service_results {
            if let Some(worker) = result.worker {
                println!(
                    "{}: the worker process completed {} attempts (warm-up included).",
                    result.workload.name(),
                    worker.completed
                );
            }
            if let Some(ratio) = result.baseline_ratio() {
                println!(
                    "{}: median run time {ratio:.3} x that of serve-fanout-1k in this invocation.",
                    result.workload.name()
                );
            }
        }
    }
    if let (OutputFormat::Table, Some(result)) = (args.output, &failover_result) {
        if !results.is_empty() || !service_results.is_empty() {
            println!();
        }
        println!("{}", result.table());
        println!("{}", result.sample_table());
        println!(
            "{} failovers of 3 replicas (etcd leader election, lease TTL {} s) on the private PostgreSQL, while runs of a chain of {} shell tasks keep being dispatched; FAILOVER = kill -9 of the leader to the `at` of the first AttemptStarted the next leader committed (wall clock of this machine); EPOCH GROWTH = etcd revisions between the two leader keys; AUDIT = every run succeeded, every task succeeded exactly once.",
            result.samples.len(),
            result.lease_ttl.as_secs(),
            failover::CHAIN_LENGTH
        );
        for problem in &result.audit.problems {
            println!("audit: {problem}");
        }
    }
    if args.output == OutputFormat::Table {
        for (index, result) in dr_results.iter().enumerate() {
            if index > 0
                || !results.is_empty()
                || !service_results.is_empty()
                || failover_result.is_some()
            {
                println!();
            }
            println!("{}", result.text());
        }
    }
    Ok(if missed { exit::FAILED } else { exit::OK })
}

fn verdict(workload: Workload, samples: &[Sample]) -> Option<bool> {
    let target = workload.target()?;
    Some(match target {
        Target::RunMillis(limit) => {
            median(&samples.iter().map(|s| s.run_ms).collect::<Vec<_>>()) < limit
        }
        Target::CompileMillis(limit) => {
            median(&samples.iter().map(|s| s.compile_ms).collect::<Vec<_>>()) < limit
        }
        Target::PeakMib(limit) => {
            samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0 < limit
        }
    })
}

fn target_text(workload: Workload, verdict: Option<bool>) -> String {
    let Some(target) = workload.target() else {
        return "-".to_string();
    };
    let what = match target {
        Target::RunMillis(limit) => format!("run < {limit} ms"),
        Target::CompileMillis(limit) => format!("compile < {limit} ms"),
        Target::PeakMib(limit) => format!("peak < {limit} MiB"),
    };
    match verdict {
        Some(true) => format!("{what}: met"),
        _ => format!("{what}: MISSED"),
    }
}

fn sample_in_child(exe: &Path, workload: Workload, dir: &Path) -> Result<Sample, Failure> {
    let started = Instant::now();
    let output = Command::new(exe)
        .arg("bench")
        .arg("--child")
        .arg(workload.name())
        .arg("--dir")
        .arg(dir)
        .output()
        .map_err(|error| Failure::system(format!("cannot start a bench child: {error}")))?;
    let process_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !output.status.success() {
        return Err(Failure::system(format!(
            "bench child for {} failed ({}): {}",
            workload.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let mut sample: Sample = serde_json::from_slice(&output.stdout).map_err(|error| {
        Failure::system(format!(
            "bench child for {} printed no sample ({error}): {}",
            workload.name(),
            String::from_utf8_lossy(&output.stdout)
        ))
    })?;
    sample.process_ms = process_ms;
    Ok(sample)
}

fn child(workload: Workload, dir: &Path) -> Result<Sample, Failure> {
    let source = workload.source();
    let compile_started = Instant::now();
    let spec = tandem_dsl::compile(workload.name(), &source).map_err(|diagnostics| {
        Failure::system(format!("bench workload does not compile:\n{diagnostics}"))
    })?;
    let compile_ms = compile_started.elapsed().as_secs_f64() * 1000.0;
    if workload == Workload::Validate100k {
        return Ok(Sample {
            compile_ms,
            run_ms: 0.0,
            commits: 0,
            checkpoints: 0,
            peak_rss_kib: peak_rss_kib(),
            process_ms: 0.0,
        });
    }
    let temp = temp_dir_in(dir, "bench-")?;
    let state_dir = StateDir::new(temp.path());
    let store: Arc<dyn CheckpointStore> = Arc::new(SqliteStore::open(&state_dir.store_file())?);
    let file = temp.path().join(format!("{}.yaml", workload.name()));
    std::fs::write(&file, &source).map_err(Failure::system)?;
    if matches!(workload, Workload::Append200k | Workload::Commit1k) {
        let mut sample =
            runtime()?.block_on(store_only(workload, store.as_ref(), &file, source, spec))?;
        sample.compile_ms = compile_ms;
        return Ok(sample);
    }
    let parallelism = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    runtime()?.block_on(async {
        let clock = RunClock::start();
        let started = Instant::now();
        let prepared = runner::create_run(
            store.as_ref(),
            &current_owner(),
            &file,
            source,
            spec,
            &[],
            &clock,
        )
        .await
        .map_err(Failure::system)?;
        let (_controls, control_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let config = RunnerConfig {
            parallelism,
            kill_grace: Duration::from_secs(10),
            state_dir: state_dir.clone(),
            remote: None,
        };
        let finished = runner::drive(
            Arc::clone(&store),
            prepared,
            config,
            clock,
            control_rx,
            progress_tx,
        )
        .await
        .map_err(Failure::system)?;
        let run_ms = started.elapsed().as_secs_f64() * 1000.0;
        if finished.end != RunEnd::Succeeded {
            return Err(Failure::system(format!(
                "bench run of {} ended {}: {}",
                workload.name(),
                finished.end,
                finished.reason
            )));
        }
        let progress = *progress_rx.borrow();
        Ok(Sample {
            compile_ms,
            run_ms,
            // One more commit and checkpoint: the run's creation.
            commits: progress.commits + 1,
            checkpoints: progress.checkpoints + 1,
            peak_rss_kib: peak_rss_kib(),
            process_ms: 0.0,
        })
    })
}

/// Times the store alone: a run is created, then `append-200k` appends 200,000
/// `attempt_started` checkpoints in one commit and `commit-1k` appends one checkpoint 1,000
/// times (each its own fsync'd commit).
async fn store_only(
    workload: Workload,
    store: &dyn CheckpointStore,
    file: &Path,
    source: String,
    spec: tandem_dsl::WorkflowSpec,
) -> Result<Sample, Failure> {
    let clock = RunClock::start();
    let prepared = runner::create_run(store, &current_owner(), file, source, spec, &[], &clock)
        .await
        .map_err(Failure::system)?;
    let checkpoint = |attempt: u32| NewCheckpoint {
        run_id: prepared.run_id,
        event: Event::AttemptStarted {
            task: 1,
            attempt,
            at: clock.now(),
        },
    };
    let (commits, checkpoints) = if workload == Workload::Append200k {
        (1, 200_000)
    } else {
        (1_000, 1)
    };
    let started = Instant::now();
    for commit in 0..commits {
        let batch = (0..checkpoints)
            .map(|index| checkpoint(commit * checkpoints + index + 1))
            .collect();
        store.append(prepared.epoch, batch).await?;
    }
    Ok(Sample {
        compile_ms: 0.0,
        run_ms: started.elapsed().as_secs_f64() * 1000.0,
        commits: u64::from(commits),
        checkpoints: u64::from(commits * checkpoints),
        peak_rss_kib: peak_rss_kib(),
        process_ms: 0.0,
    })
}

/// Peak resident set size of this process in KiB (`VmHWM` of `/proc/self/status`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// A fresh temp directory named `PREFIX…` inside `dir` (removed when dropped).
fn temp_dir_in(dir: &Path, prefix: &str) -> Result<tempfile::TempDir, Failure> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .map_err(|error| {
            Failure::system(format!(
                "cannot create a temp dir in {}: {error}",
                dir.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_compile_to_the_expected_shapes() {
        let fan_out = tandem_dsl::compile("f", &Workload::Fanout1k.source()).unwrap();
        assert_eq!(fan_out.tasks.len(), 1_002);
        assert_eq!(fan_out.tasks.last().unwrap().upstream.len(), 1_000);
        let chain = tandem_dsl::compile("c", &Workload::Chain200.source()).unwrap();
        assert_eq!(chain.tasks.len(), 200);
        assert_eq!(chain.tasks[199].upstream, vec![198]);
    }

    #[test]
    fn median_of_even_and_odd_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
