//! The `serve-*` workloads of `tandem bench`: the region service, through a real `tandem serve`
//! process, against PostgreSQL with durable commits.
//!
//! Method. The bench starts its own PostgreSQL 15 ([`TempPostgres`]: a fresh cluster in a temp
//! dir, `fsync=on`, `synchronous_commit=on`), and for each workload a fresh database and a
//! fresh `tandem serve --listen 127.0.0.1:0 --postgres-url URL` child process with its default
//! settings (the bench's `TANDEM_*` variables are not passed on, except `TANDEM_LOG`). It
//! connects one SDK [`Client`], registers the workload's DAG file once, runs one unmeasured
//! sample (warm-up: connections, caches, and the worker's first poll), then `--repeat`
//! measured samples, one after the other. Each sample is timed in the bench process from the
//! first `StartRun` call to the reply that shows the (last) run finished: `Client::wait_run`,
//! a `WatchRun` stream opened right after `StartRun` returns, whose last update carries the
//! final state and the tasks. Every run must end `succeeded` with every task succeeded, or the
//! bench fails. At the end the children are stopped (killed if they do not stop, and always
//! when the bench fails or dies).
//!
//! - `serve-fanout-1k`: one root, 1,000 empty tasks that need it, one join; one run per sample.
//! - `serve-fanout-1k-workers`: the same DAG with every middle task a worker task
//!   (`worker: { queue: bench, type: noop }`), run by an SDK [`tandem_api::Worker`] (concurrency
//!   512) in a separate process, `tandem bench-worker`, whose handler returns empty outputs at
//!   once. Its count of completed attempts must match the tasks run.
//! - `serve-chain-200`: 200 empty tasks in sequence. Before each sample, one more connection
//!   (tokio-postgres, to another database of the same server) runs 200 one-row transactions
//!   one after the other, each `BEGIN; INSERT; COMMIT` in one round trip; their median latency
//!   is the single-client commit latency, and the sample's ratio is
//!   `run time / (200 x commit latency)`.
//! - `serve-concurrent-50`: 50 fanout-1k runs started at once (50 concurrent `StartRun` +
//!   `WatchRun` on one HTTP/2 connection); the time is until the last one finished, and the
//!   figure is task instances finished per second (50 x 1,002 / time).
//! - `serve-fanout-1k-ha`: `serve-fanout-1k` against a region of three replicas with leader
//!   election (a private etcd, `--lease-ttl 5s`; see [`super::failover::ReplicaSet`]): replica
//!   0 is started first and leads before the two others start, and the client, given the three
//!   addresses with replica 0 first, talks to it. Target: its median within 10% of
//!   `serve-fanout-1k`'s when both run in the same invocation (the ratio is printed);
//!   otherwise its figure is stated. The memory column is the leader's. When both run, they
//!   are set up together and their samples alternate (A B, B A, A B, ...; each has its own
//!   warm-up), so background load on the machine and drift fall on both alike; the idle one
//!   meanwhile does nothing but the leader's etcd keep-alive (every 1.25 s).
//!
//! `serve-failover` shares the private PostgreSQL; its method is in [`super::failover`].
//!
//! Every sample also records the serve process's peak resident memory so far (`VmHWM` of
//! `/proc/PID/status`; it includes the warm-up), and the server-side duration (the runs'
//! earliest creation to their latest finish, as the server records them, ms resolution).
//!
//! Machine notes: PostgreSQL, `tandem serve`, the worker process and the bench client all run
//! on this one machine and share its cores (2 on the reference machines) and its disk; the
//! commit latency above is this disk's fsync floor for one client, measured in the same
//! invocation so the ratio is independent of the disk.

use std::path::Path;
use std::time::{Duration, Instant};

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::Serialize;
use tandem_api::{Client, RegisteredWorkflow, Run, RunState, StartRun};
use tandem_engine::testing::TempPostgres;

use super::super::{Failure, runtime};
use super::commit::CommitProbe;
use super::failover::{self, FailoverResult, ReplicaSet};
use super::process::{ServeProcess, WorkerCounts, WorkerProcess};
use super::{chain, fan_out, max, median, min};

/// The task queue of the worker tasks.
const QUEUE: &str = "bench";
/// Their task type.
const TASK_TYPE: &str = "noop";
/// Attempts the worker process runs at once.
const WORKER_CONCURRENCY: usize = 512;
/// Tasks of `serve-chain-200`; also the commits of each commit-latency measurement.
const CHAIN_LENGTH: usize = 200;
/// Width of the fan-outs.
const FAN_OUT_WIDTH: usize = 1_000;
/// Runs started at once by `serve-concurrent-50`.
const CONCURRENT_RUNS: usize = 50;
/// Longest a sample may take before the bench gives up (a hung service fails the bench).
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(300);
/// `serve-fanout-1k-ha`'s median may be at most this times `serve-fanout-1k`'s (issue 4,
/// "Speed": not worse by more than 10% with three replicas running).
const HA_RATIO_LIMIT: f64 = 1.10;

/// A workload of the region service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceWorkload {
    /// fanout-1k with empty tasks, one run.
    Fanout1k,
    /// fanout-1k whose 1,000 middle tasks run in an SDK worker process.
    Fanout1kWorkers,
    /// chain-200 with empty tasks, and the commit latency of the same PostgreSQL.
    Chain200,
    /// 50 fanout-1k runs started at once.
    Concurrent50,
    /// fanout-1k with empty tasks, one run, against three replicas with leader election.
    Fanout1kHa,
}

/// What a service workload must stay under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceTarget {
    /// Median time from `StartRun` to finished, ms.
    RunMillis(f64),
    /// Median of `run time / (200 x commit latency)`.
    CommitRatio(f64),
    /// Median run time at most this times the median of `serve-fanout-1k` measured in the
    /// same invocation (no verdict without it).
    RatioToFanout1k(f64),
}

impl ServiceWorkload {
    /// The name given to `--workload`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceWorkload::Fanout1k => "serve-fanout-1k",
            ServiceWorkload::Fanout1kWorkers => "serve-fanout-1k-workers",
            ServiceWorkload::Chain200 => "serve-chain-200",
            ServiceWorkload::Concurrent50 => "serve-concurrent-50",
            ServiceWorkload::Fanout1kHa => "serve-fanout-1k-ha",
        }
    }

    /// The target (issues 3 and 4, "Speed"); `serve-concurrent-50` has none, its figures
    /// are stated.
    pub fn target(self) -> Option<ServiceTarget> {
        match self {
            ServiceWorkload::Fanout1k => Some(ServiceTarget::RunMillis(150.0)),
            ServiceWorkload::Fanout1kWorkers => Some(ServiceTarget::RunMillis(1_000.0)),
            ServiceWorkload::Chain200 => Some(ServiceTarget::CommitRatio(1.2)),
            ServiceWorkload::Concurrent50 => None,
            ServiceWorkload::Fanout1kHa => Some(ServiceTarget::RatioToFanout1k(HA_RATIO_LIMIT)),
        }
    }

    /// The workload's DAG file text.
    pub fn source(self) -> String {
        match self {
            ServiceWorkload::Fanout1k
            | ServiceWorkload::Concurrent50
            | ServiceWorkload::Fanout1kHa => fan_out("serve-fanout-1k", FAN_OUT_WIDTH, ""),
            ServiceWorkload::Fanout1kWorkers => fan_out(
                "serve-fanout-1k-workers",
                FAN_OUT_WIDTH,
                &format!("    worker: {{ queue: {QUEUE}, type: {TASK_TYPE} }}\n"),
            ),
            ServiceWorkload::Chain200 => chain("serve-chain-200", CHAIN_LENGTH),
        }
    }

    /// Task instances of one run.
    fn tasks_per_run(self) -> u32 {
        match self {
            ServiceWorkload::Chain200 => CHAIN_LENGTH as u32,
            _ => FAN_OUT_WIDTH as u32 + 2,
        }
    }

    /// Runs started at once per sample.
    fn runs_per_sample(self) -> usize {
        match self {
            ServiceWorkload::Concurrent50 => CONCURRENT_RUNS,
            _ => 1,
        }
    }
}

/// One measured sample of a service workload.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSample {
    /// From the first `StartRun` call to the reply showing the last run finished, ms.
    pub run_ms: f64,
    /// From the first `StartRun` call to the last `StartRun` reply, ms (part of `run_ms`).
    pub start_ms: f64,
    /// The runs' earliest creation to their latest finish, as the server records them, ms.
    pub server_run_ms: f64,
    /// Runs of the sample.
    pub runs: usize,
    /// Task instances finished (all succeeded).
    pub tasks: u64,
    /// `tasks / run_ms`, per second.
    pub tasks_per_s: f64,
    /// Peak resident memory of the serve process so far (warm-up included), KiB.
    pub serve_peak_rss_kib: u64,
    /// `serve-chain-200`: median single-client commit latency measured just before, ms.
    pub commit_ms: Option<f64>,
    /// `serve-chain-200`: `run_ms / (200 x commit_ms)`.
    pub commit_ratio: Option<f64>,
}

/// All samples of one service workload.
#[derive(Debug, Clone)]
pub struct ServiceResult {
    /// The workload.
    pub workload: ServiceWorkload,
    /// Its measured samples (the warm-up excluded).
    pub samples: Vec<ServiceSample>,
    /// What the worker process did (`serve-fanout-1k-workers` only), warm-up included.
    pub worker: Option<WorkerCounts>,
    /// `serve-fanout-1k-ha`: the median run time of `serve-fanout-1k` in the same invocation,
    /// ms.
    pub baseline_ms: Option<f64>,
}

impl ServiceResult {
    /// Whether the target was met (`None`: no target, or no baseline to compare with).
    pub fn verdict(&self) -> Option<bool> {
        Some(match self.workload.target()? {
            ServiceTarget::RunMillis(limit) => median(&self.column(|s| Some(s.run_ms))) < limit,
            ServiceTarget::CommitRatio(limit) => median(&self.column(|s| s.commit_ratio)) < limit,
            ServiceTarget::RatioToFanout1k(limit) => self.baseline_ratio()? <= limit,
        })
    }

    /// `serve-fanout-1k-ha`: its median run time / `serve-fanout-1k`'s, when both ran.
    pub fn baseline_ratio(&self) -> Option<f64> {
        let baseline = self.baseline_ms.filter(|baseline| *baseline > 0.0)?;
        Some(median(&self.column(|s| Some(s.run_ms))) / baseline)
    }

    fn column(&self, value: impl Fn(&ServiceSample) -> Option<f64>) -> Vec<f64> {
        self.samples.iter().filter_map(value).collect()
    }

    fn peak_rss_kib(&self) -> u64 {
        self.samples
            .iter()
            .map(|sample| sample.serve_peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    /// The result as one JSON row of `tandem bench -o json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "workload": self.workload.name(),
            "samples": self.samples,
            "serve_peak_rss_kib": self.peak_rss_kib(),
            "worker": self.worker,
            "ratio_to_serve_fanout_1k": self.baseline_ratio(),
            "target_met": self.verdict(),
        })
    }
}

/// What [`run_all`] measured.
#[derive(Debug, Clone)]
pub struct ServiceRun {
    /// One result per service workload, in the order asked.
    pub results: Vec<ServiceResult>,
    /// `serve-failover`, when asked.
    pub failover: Option<FailoverResult>,
}

/// Runs `workloads` (each `repeat` measured samples), then `serve-failover` when `failover`
/// is set (`max(repeat, 10)` failovers), against one private PostgreSQL; temp dirs (serve
/// state, logs) go under `dir`. The children are spawned from the calling thread, which must
/// live until this returns (it does: everything here runs on it).
///
/// When both `serve-fanout-1k` and `serve-fanout-1k-ha` are asked, they run as a pair (see
/// [`run_pair`]) and the latter's result carries the former's median as its baseline.
///
/// Errors: PostgreSQL, etcd or a child cannot be started, a call fails, a run does not
/// succeed, or a sample takes over 5 minutes; the error quotes the end of the serve (and
/// worker) logs.
pub fn run_all(
    exe: &Path,
    workloads: &[ServiceWorkload],
    failover: bool,
    repeat: u32,
    dir: &Path,
) -> Result<ServiceRun, Failure> {
    let runtime = runtime()?;
    let postgres = runtime.block_on(TempPostgres::start()).map_err(|error| {
        Failure::system(format!(
            "cannot start PostgreSQL for the serve-* benchmarks: {error}"
        ))
    })?;
    let context = Context {
        runtime: &runtime,
        postgres: &postgres,
        exe,
        dir,
    };
    let single = position(workloads, ServiceWorkload::Fanout1k);
    let replicated = position(workloads, ServiceWorkload::Fanout1kHa);
    let mut results: Vec<Option<ServiceResult>> = vec![None; workloads.len()];
    if let (Some(single), Some(replicated)) = (single, replicated) {
        let (baseline, mut ha) = run_pair(&context, [single, replicated], repeat)?;
        ha.baseline_ms = Some(median(&baseline.column(|s| Some(s.run_ms))));
        results[single] = Some(baseline);
        results[replicated] = Some(ha);
    }
    for (index, &workload) in workloads.iter().enumerate() {
        if results[index].is_none() {
            results[index] = Some(run_one(&context, workload, index, repeat)?);
        }
    }
    let failover = if failover {
        Some(failover::run(
            &runtime,
            &postgres,
            exe,
            repeat,
            dir,
            workloads.len(),
        )?)
    } else {
        None
    };
    Ok(ServiceRun {
        results: results.into_iter().flatten().collect(),
        failover,
    })
}

/// The index of the first `workload` in `workloads`.
fn position(workloads: &[ServiceWorkload], workload: ServiceWorkload) -> Option<usize> {
    workloads.iter().position(|&asked| asked == workload)
}

/// What every workload's set-up needs.
struct Context<'a> {
    runtime: &'a tokio::runtime::Runtime,
    postgres: &'a TempPostgres,
    exe: &'a Path,
    dir: &'a Path,
}

/// One workload: fresh database, serve (and worker) process, warm-up, `repeat` samples, stop.
fn run_one(
    context: &Context,
    workload: ServiceWorkload,
    index: usize,
    repeat: u32,
) -> Result<ServiceResult, Failure> {
    let mut prepared = Prepared::start(context, workload, index)?;
    for sample in 0..=repeat {
        prepared.sample(context.runtime, sample)?;
    }
    prepared.finish(repeat)
}

/// `serve-fanout-1k` and `serve-fanout-1k-ha` (at `indexes` of the workloads asked), compared
/// fairly: both are set up (each its own database; the standalone server and the three
/// replicas with their etcd stay up together), each gets its warm-up, then their samples
/// alternate in pairs whose order flips every time (A B, B A, A B, ...), so the machine's
/// background load and any drift fall on both alike. Only one of them runs a sample at a
/// time; the other is idle meanwhile. Returns (`serve-fanout-1k`, `serve-fanout-1k-ha`).
fn run_pair(
    context: &Context,
    indexes: [usize; 2],
    repeat: u32,
) -> Result<(ServiceResult, ServiceResult), Failure> {
    let mut single = Prepared::start(context, ServiceWorkload::Fanout1k, indexes[0])?;
    let mut replicated = Prepared::start(context, ServiceWorkload::Fanout1kHa, indexes[1])?;
    for sample in 0..=repeat {
        if sample % 2 == 0 {
            single.sample(context.runtime, sample)?;
            replicated.sample(context.runtime, sample)?;
        } else {
            replicated.sample(context.runtime, sample)?;
            single.sample(context.runtime, sample)?;
        }
    }
    Ok((single.finish(repeat)?, replicated.finish(repeat)?))
}

/// A workload ready to be sampled: its database, server(s), worker process and commit probe
/// up, its DAG file registered. Dropping it kills the processes.
struct Prepared {
    workload: ServiceWorkload,
    server: Server,
    worker: Option<WorkerProcess>,
    probe: Option<CommitProbe>,
    registered: RegisteredWorkflow,
    samples: Vec<ServiceSample>,
    // Last: removed after the processes are gone.
    _temp: tempfile::TempDir,
}

impl Prepared {
    /// Creates the database `bench_INDEX_NAME` (and `commit_probe_INDEX` for the chain),
    /// starts the server(s) (and the worker process), connects the probe and registers the
    /// workload's DAG file.
    fn start(
        context: &Context,
        workload: ServiceWorkload,
        index: usize,
    ) -> Result<Prepared, Failure> {
        let runtime = context.runtime;
        let temp = super::temp_dir_in(context.dir, "bench-serve-")?;
        let database = format!("bench_{index}_{}", workload.name().replace('-', "_"));
        let create = |name: String| {
            runtime
                .block_on(context.postgres.create_database(&name))
                .map_err(|error| Failure::system(format!("cannot create database {name}: {error}")))
        };
        let database_url = create(database)?;
        let probe_url = match workload {
            ServiceWorkload::Chain200 => Some(create(format!("commit_probe_{index}"))?),
            _ => None,
        };
        let server = Server::start(runtime, context.exe, workload, &database_url, temp.path())?;
        let worker = match workload {
            ServiceWorkload::Fanout1kWorkers => Some(WorkerProcess::start(
                context.exe,
                server.leader()?.url(),
                QUEUE,
                TASK_TYPE,
                WORKER_CONCURRENCY,
                temp.path(),
            )?),
            _ => None,
        };
        let ready = runtime.block_on(async {
            let registered = register(workload, server.client()).await?;
            let probe = match probe_url {
                Some(url) => Some(CommitProbe::connect(&url).await?),
                None => None,
            };
            Ok::<_, Failure>((registered, probe))
        });
        let (registered, probe) = match ready {
            Ok(ready) => ready,
            Err(failure) => return Err(with_logs(workload, &server, worker.as_ref(), failure)),
        };
        Ok(Prepared {
            workload,
            server,
            worker,
            probe,
            registered,
            samples: Vec::new(),
            _temp: temp,
        })
    }

    /// Sample `index` (0 = the warm-up, not kept).
    ///
    /// Errors: it fails or takes over 5 minutes; the error quotes the logs.
    fn sample(&mut self, runtime: &tokio::runtime::Runtime, index: u32) -> Result<(), Failure> {
        let measured = runtime.block_on(async {
            let serve = self.server.leader()?;
            tokio::time::timeout(
                SAMPLE_TIMEOUT,
                sample(
                    self.workload,
                    self.server.client(),
                    &self.registered,
                    serve,
                    self.probe.as_ref(),
                ),
            )
            .await
            .map_err(|_| {
                Failure::system(format!(
                    "sample {index} (0 = warm-up) did not finish within {} s",
                    SAMPLE_TIMEOUT.as_secs()
                ))
            })?
        });
        match measured {
            Ok(sample) => {
                if index > 0 {
                    self.samples.push(sample);
                }
                Ok(())
            }
            Err(failure) => Err(with_logs(
                self.workload,
                &self.server,
                self.worker.as_ref(),
                failure,
            )),
        }
    }

    /// Stops the worker process (checking it completed every attempt of the `repeat + 1`
    /// runs) and the server(s).
    fn finish(self, repeat: u32) -> Result<ServiceResult, Failure> {
        let Prepared {
            workload,
            server,
            worker,
            samples,
            ..
        } = self;
        let worker = match worker {
            Some(worker) => {
                let counts = worker.stop()?;
                let expected = u64::from(FAN_OUT_WIDTH as u32) * (u64::from(repeat) + 1);
                if counts.completed != expected {
                    return Err(Failure::system(format!(
                        "{}: expected the worker process to complete {expected} attempts ({} per run, {} runs with the warm-up), found {} completed ({} leased, {} not completed)",
                        workload.name(),
                        FAN_OUT_WIDTH,
                        repeat + 1,
                        counts.completed,
                        counts.leased,
                        counts.not_completed
                    )));
                }
                Some(counts)
            }
            None => None,
        };
        server.stop();
        Ok(ServiceResult {
            workload,
            samples,
            worker,
            baseline_ms: None,
        })
    }
}

/// `failure` of `workload` with the end of the serve (and worker) logs.
fn with_logs(
    workload: ServiceWorkload,
    server: &Server,
    worker: Option<&WorkerProcess>,
    failure: Failure,
) -> Failure {
    let worker_log = worker
        .map(|worker| format!("\nworker: {}", worker.log_tail()))
        .unwrap_or_default();
    Failure {
        code: failure.code,
        message: format!(
            "{}: {}\nserve: {}{worker_log}",
            workload.name(),
            failure.message,
            server.log_tails()
        ),
    }
}

/// The server(s) of a workload: one `tandem serve`, or a region of replicas.
enum Server {
    /// A standalone `tandem serve`, and a client of it.
    Single(ServeProcess, Client),
    /// Replicas with leader election; replica 0 leads.
    Replicas(Box<ReplicaSet>),
}

impl Server {
    /// Starts what `workload` needs: replicas for `serve-fanout-1k-ha`, one server otherwise.
    fn start(
        runtime: &tokio::runtime::Runtime,
        exe: &Path,
        workload: ServiceWorkload,
        database_url: &str,
        dir: &Path,
    ) -> Result<Server, Failure> {
        if workload == ServiceWorkload::Fanout1kHa {
            return Ok(Server::Replicas(Box::new(ReplicaSet::start(
                runtime,
                exe,
                database_url,
                dir,
                failover::REPLICAS,
                failover::LEASE_TTL,
            )?)));
        }
        let serve = ServeProcess::start(exe, database_url, dir)?;
        let client = runtime
            .block_on(Client::connect(serve.url()))
            .map_err(|error| Failure::system(format!("cannot connect to tandem serve: {error}")))?;
        Ok(Server::Single(serve, client))
    }

    /// The process that leads (the only one, or replica 0).
    fn leader(&self) -> Result<&ServeProcess, Failure> {
        match self {
            Server::Single(serve, _) => Ok(serve),
            Server::Replicas(replicas) => replicas
                .process(0)
                .ok_or_else(|| Failure::system("replica 0 is not running")),
        }
    }

    /// The client the samples use.
    fn client(&self) -> &Client {
        match self {
            Server::Single(_, client) => client,
            Server::Replicas(replicas) => replicas.client(),
        }
    }

    /// The end of the log(s), for error messages.
    fn log_tails(&self) -> String {
        match self {
            Server::Single(serve, _) => serve.log_tail(),
            Server::Replicas(replicas) => replicas.with_logs(Failure::system("")).message,
        }
    }

    /// Stops the process(es).
    fn stop(self) {
        match self {
            Server::Single(serve, _) => serve.stop(),
            Server::Replicas(replicas) => replicas.stop(),
        }
    }
}

/// Registers the workload's DAG file and checks its task count.
async fn register(
    workload: ServiceWorkload,
    client: &Client,
) -> Result<RegisteredWorkflow, Failure> {
    let registered = client
        .register_workflow(workload.source(), format!("{}.yaml", workload.name()))
        .await
        .map_err(|error| Failure::system(format!("RegisterWorkflow: {error}")))?;
    if registered.task_count != workload.tasks_per_run() {
        return Err(Failure::system(format!(
            "RegisterWorkflow: expected {} task instances, found {}",
            workload.tasks_per_run(),
            registered.task_count
        )));
    }
    Ok(registered)
}

/// One sample: the commit latency first (chain only), then the runs, timed.
async fn sample(
    workload: ServiceWorkload,
    client: &Client,
    workflow: &RegisteredWorkflow,
    serve: &ServeProcess,
    probe: Option<&CommitProbe>,
) -> Result<ServiceSample, Failure> {
    let commit_ms = match probe {
        Some(probe) => Some(median(&probe.latencies_ms(CHAIN_LENGTH).await?)),
        None => None,
    };
    let start = StartRun::new(&workflow.name).version(&workflow.version);
    let started = Instant::now();
    let runs = futures::future::try_join_all(
        (0..workload.runs_per_sample())
            .map(|_| start_and_wait(client, start.clone(), workload.tasks_per_run(), started)),
    )
    .await?;
    let run_ms = started.elapsed().as_secs_f64() * 1000.0;
    let start_ms = runs
        .iter()
        .map(|(_, replied)| replied.as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    let runs: Vec<Run> = runs.into_iter().map(|(run, _)| run).collect();
    let tasks = runs.iter().map(|run| u64::from(run.counts.total)).sum();
    let created = runs.iter().map(|run| run.created_at_unix_ms).min();
    let finished = runs.iter().filter_map(|run| run.finished_at_unix_ms).max();
    let server_run_ms = match (created, finished) {
        (Some(created), Some(finished)) => (finished - created) as f64,
        _ => 0.0,
    };
    Ok(ServiceSample {
        run_ms,
        start_ms,
        server_run_ms,
        runs: runs.len(),
        tasks,
        tasks_per_s: tasks as f64 / (run_ms / 1000.0),
        serve_peak_rss_kib: serve.peak_rss_kib()?,
        commit_ms,
        commit_ratio: commit_ms.map(|commit| run_ms / (CHAIN_LENGTH as f64 * commit)),
    })
}

/// Starts a run and waits until it finished; it must have succeeded with `tasks` tasks, all
/// succeeded. Returns it with the time from `since` to the `StartRun` reply.
pub(super) async fn start_and_wait(
    client: &Client,
    start: StartRun,
    tasks: u32,
    since: Instant,
) -> Result<(Run, Duration), Failure> {
    let started = client
        .start_run(start)
        .await
        .map_err(|error| Failure::system(format!("StartRun: {error}")))?;
    let replied = since.elapsed();
    let run = client
        .wait_run(&started.run_id)
        .await
        .map_err(|error| Failure::system(format!("WatchRun {}: {error}", started.run_id)))?;
    if run.state != RunState::Succeeded || run.counts.succeeded != tasks {
        return Err(Failure::system(format!(
            "run {}: expected succeeded with {tasks} tasks succeeded, found {} with {} of {} succeeded{}",
            run.run_id,
            run.state.as_str(),
            run.counts.succeeded,
            run.counts.total,
            run.reason
                .as_deref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default()
        )));
    }
    Ok((run, replied))
}

/// The results as a table for people.
pub fn table(results: &[ServiceResult]) -> Table {
    let mut out = Table::new();
    out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "WORKLOAD",
        "RUN median (min-max)",
        "START median",
        "SERVER median",
        "TASKS/S median",
        "SERVE PEAK RSS",
        "COMMIT median",
        "RUN / (200 x COMMIT)",
        "TARGET",
    ]);
    for result in results {
        let run = result.column(|s| Some(s.run_ms));
        let start = result.column(|s| Some(s.start_ms));
        let server = result.column(|s| Some(s.server_run_ms));
        let rate = result.column(|s| Some(s.tasks_per_s));
        let commit = result.column(|s| s.commit_ms);
        let ratio = result.column(|s| s.commit_ratio);
        let or_dash = |values: &[f64], text: String| {
            if values.is_empty() {
                "-".to_string()
            } else {
                text
            }
        };
        out.add_row(vec![
            result.workload.name().to_string(),
            format!("{:.1} ms ({:.1}-{:.1})", median(&run), min(&run), max(&run)),
            format!("{:.1} ms", median(&start)),
            format!("{:.0} ms", median(&server)),
            format!("{:.0}", median(&rate)),
            format!("{:.1} MiB", result.peak_rss_kib() as f64 / 1024.0),
            or_dash(&commit, format!("{:.2} ms", median(&commit))),
            or_dash(
                &ratio,
                format!(
                    "{:.2} ({:.2}-{:.2})",
                    median(&ratio),
                    min(&ratio),
                    max(&ratio)
                ),
            ),
            target_text(result),
        ]);
    }
    out
}

fn target_text(result: &ServiceResult) -> String {
    let Some(target) = result.workload.target() else {
        return "-".to_string();
    };
    let what = match target {
        ServiceTarget::RunMillis(limit) => format!("run < {limit} ms"),
        ServiceTarget::CommitRatio(limit) => format!("ratio < {limit}"),
        ServiceTarget::RatioToFanout1k(limit) => match result.baseline_ratio() {
            Some(ratio) => format!("run <= {limit:.2} x serve-fanout-1k ({ratio:.2})"),
            None => return "- (ratio needs serve-fanout-1k in the same run)".to_string(),
        },
    };
    match result.verdict() {
        Some(true) => format!("{what}: met"),
        _ => format!("{what}: MISSED"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_workloads_compile_to_the_expected_shapes() {
        for workload in [
            ServiceWorkload::Fanout1k,
            ServiceWorkload::Fanout1kWorkers,
            ServiceWorkload::Chain200,
            ServiceWorkload::Concurrent50,
            ServiceWorkload::Fanout1kHa,
        ] {
            let spec = tandem_dsl::compile(workload.name(), &workload.source())
                .unwrap_or_else(|errors| panic!("{}: {errors}", workload.name()));
            assert_eq!(
                spec.tasks.len(),
                workload.tasks_per_run() as usize,
                "{}",
                workload.name()
            );
        }
        let workers = ServiceWorkload::Fanout1kWorkers.source();
        assert_eq!(
            workers
                .matches("worker: { queue: bench, type: noop }")
                .count(),
            FAN_OUT_WIDTH
        );
    }

    fn result(workload: ServiceWorkload, runs: &[f64], ratios: &[f64]) -> ServiceResult {
        let samples = runs
            .iter()
            .zip(ratios.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(&run_ms, ratio)| ServiceSample {
                run_ms,
                start_ms: 1.0,
                server_run_ms: run_ms,
                runs: 1,
                tasks: 1_002,
                tasks_per_s: 1_002.0 / (run_ms / 1000.0),
                serve_peak_rss_kib: 1_024,
                commit_ms: ratio.map(|_| 2.5),
                commit_ratio: ratio.copied(),
            })
            .collect();
        ServiceResult {
            workload,
            samples,
            worker: None,
            baseline_ms: None,
        }
    }

    #[test]
    fn verdicts_compare_the_median_with_the_target() {
        assert_eq!(
            result(ServiceWorkload::Fanout1k, &[100.0, 140.0, 400.0], &[]).verdict(),
            Some(true)
        );
        assert_eq!(
            result(ServiceWorkload::Fanout1k, &[100.0, 160.0, 400.0], &[]).verdict(),
            Some(false)
        );
        assert_eq!(
            result(
                ServiceWorkload::Chain200,
                &[600.0, 600.0, 600.0],
                &[1.1, 1.3, 1.3]
            )
            .verdict(),
            Some(false)
        );
        assert_eq!(
            result(
                ServiceWorkload::Chain200,
                &[600.0, 600.0, 600.0],
                &[1.1, 1.0, 1.3]
            )
            .verdict(),
            Some(true)
        );
        assert_eq!(
            result(ServiceWorkload::Concurrent50, &[1.0], &[]).verdict(),
            None
        );
    }

    #[test]
    fn the_ha_fanout_is_compared_with_the_single_server_median() {
        assert_eq!(
            ServiceWorkload::Fanout1kHa.source(),
            ServiceWorkload::Fanout1k.source(),
            "the same DAG"
        );
        let mut ha = result(ServiceWorkload::Fanout1kHa, &[100.0, 109.0, 500.0], &[]);
        assert_eq!(ha.verdict(), None, "no baseline: the figure is stated");
        assert!(target_text(&ha).starts_with("- "), "{}", target_text(&ha));
        ha.baseline_ms = Some(100.0);
        assert_eq!(ha.baseline_ratio(), Some(1.09));
        assert_eq!(ha.verdict(), Some(true));
        assert_eq!(
            target_text(&ha),
            "run <= 1.10 x serve-fanout-1k (1.09): met"
        );
        ha.baseline_ms = Some(98.0);
        assert_eq!(ha.verdict(), Some(false), "1.11 x");
        assert!(target_text(&ha).ends_with("MISSED"));
        assert_eq!(ha.json()["ratio_to_serve_fanout_1k"], 109.0 / 98.0);
    }
}
