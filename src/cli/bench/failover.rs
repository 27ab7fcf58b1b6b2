//! `serve-failover`: how long a region is without a leader that dispatches, from `kill -9` of
//! the leader to the first task dispatched by the next one (issue 4, "Speed").
//!
//! Method. The bench starts a private etcd ([`tandem_engine::testing::TempEtcd`]), uses a fresh
//! database of its private PostgreSQL (see [`super::service`]), and starts three `tandem
//! serve` replicas of one region, each with `--etcd-endpoints URL --member-id replica-N
//! --lease-ttl 5s` ([`LEASE_TTL`], the default TTL) and its defaults otherwise; replica 0 is
//! started first and leads. Through an SDK [`tandem_api::Client`] of the three, a background
//! loop keeps the region busy: runs of a chain of 200 shell tasks `sleep 0.05`, each with
//! `retry: {max_attempts: 20, initial_interval: 100ms, backoff_coefficient: 1.0, jitter:
//! none}` (an attempt interrupted by a kill is retried after 100 ms), one run after the other,
//! each started with an idempotency key and watched until it finished.
//!
//! Each sample (at least 10: `max(--repeat, 10)`):
//! 1. waits 1 s plus a part of the keep-alive period (TTL / 4) that differs from sample to
//!    sample, so the kills fall at different points of the leader's keep-alive cycle;
//! 2. asks any live replica `GetClusterStatus` for the leader, and notes the log's latest
//!    position;
//! 3. notes `t0`, the wall clock in ms since the Unix epoch, sends the leader SIGKILL and
//!    reaps it;
//! 4. reads the region's checkpoint log after that position with its own unfenced
//!    `PostgresStore` (`read_log`), until it finds the first `AttemptStarted` with `at ≥ t0`
//!    of a run the new leader took over (its `RunResumed` with `at ≥ t0`, or created after
//!    the killed process was gone; see [`scan`]); the sample is `at − t0`. An
//!    `AttemptStarted` is committed before its attempt is dispatched, so `at` is the dispatch
//!    time as the new leader's clock reads it. Both clocks are this machine's wall clock (all
//!    processes run here), so the difference needs no clock synchronisation; the polling of
//!    the log does not enter the figure;
//! 5. asks for the new leader and its epoch (it must be another replica with a higher epoch);
//! 6. starts the killed replica again (a new process, same member id and address) and waits
//!    until the three are members of the region again.
//!
//! The figure includes the wait for the killed leader's lease to expire in etcd (at most the
//! TTL after its last keep-alive), the election, the new leader's fencing of the store and
//! resuming of the runs, and, when the kill interrupted an attempt, its 100 ms retry backoff.
//! Target: median and max under TTL + 1 s.
//!
//! At the end the loop lets its current run finish; every run must have succeeded, and an
//! audit of the whole log checks that every run finished `succeeded`, that every task has
//! exactly one successful `AttemptFinished` (none twice), and counts the interrupted attempts
//! and the resumes.

mod audit;
mod driver;
mod replicas;
mod report;
mod scan;

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_engine::checkpoint::{Checkpoint, Event, now_millis};
use tandem_engine::store::CheckpointStore;
use tandem_engine::store::postgres::{PostgresConfig, PostgresStore};
use tandem_engine::testing::TempPostgres;
use tokio::runtime::Runtime;

use super::super::Failure;
use audit::Audit;
use driver::RunDriver;
pub use replicas::ReplicaSet;
pub use report::FailoverResult;
use report::FailoverSample;
use scan::{Dispatch, DispatchScan};

/// The workload's name.
pub const NAME: &str = "serve-failover";
/// The replicas' leader lease TTL (`tandem serve`'s default).
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// Replicas of the region.
pub const REPLICAS: usize = 3;
/// Fewest failovers measured (issue 4: at least 10).
pub const MIN_SAMPLES: u32 = 10;
/// Tasks of the chain: with 50 ms of sleep, a process start and its checkpoints per task, a
/// run takes a fraction of the samples' time, so several runs start and finish during them.
pub const CHAIN_LENGTH: usize = 200;
/// The shell command of every task.
const TASK_COMMAND: &str = "sleep 0.05";
/// Pause before each kill, on top of a part of the keep-alive period.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the new leader's first dispatch may take to appear in the log before the bench
/// gives up (a failover that never completes fails the bench).
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two reads of the log that found nothing new.
const LOG_POLL: Duration = Duration::from_millis(20);
/// Checkpoints per `read_log` call.
const READ_PAGE: usize = 5_000;

/// The DAG file: a chain of [`CHAIN_LENGTH`] shell tasks, retried after an interruption.
pub fn source() -> String {
    let mut text = format!(
        "name: {NAME}\ndefaults:\n  retry:\n    max_attempts: 20\n    initial_interval: 100ms\n    backoff_coefficient: 1.0\n    jitter: none\ntasks:\n  t0:\n    run: {TASK_COMMAND}\n"
    );
    for index in 1..CHAIN_LENGTH {
        text.push_str(&format!(
            "  t{index}:\n    needs: [t{}]\n    run: {TASK_COMMAND}\n",
            index - 1
        ));
    }
    text
}

/// Samples measured for `--repeat repeat`: at least [`MIN_SAMPLES`].
pub fn samples(repeat: u32) -> u32 {
    repeat.max(MIN_SAMPLES)
}

/// Runs the benchmark against a fresh database `bench_INDEX_serve_failover` of `postgres`;
/// temp dirs (replica state, logs) go under `dir`. Must be called on the thread that owns
/// `runtime` (children are spawned from it).
///
/// Errors: etcd, PostgreSQL or a replica cannot be started or reached, a failover does not
/// complete within 60 s, the new leader is not another replica with a higher epoch, or a run
/// does not succeed; the error quotes the replicas' logs.
pub fn run(
    runtime: &Runtime,
    postgres: &TempPostgres,
    exe: &Path,
    repeat: u32,
    dir: &Path,
    index: usize,
) -> Result<FailoverResult, Failure> {
    let temp = super::temp_dir_in(dir, "bench-failover-")?;
    let database = format!("bench_{index}_serve_failover");
    let url = runtime
        .block_on(postgres.create_database(&database))
        .map_err(|error| Failure::system(format!("cannot create database {database}: {error}")))?;
    let mut replicas = ReplicaSet::start(runtime, exe, &url, temp.path(), REPLICAS, LEASE_TTL)?;
    let result = measure(runtime, &mut replicas, &url, samples(repeat))
        .map_err(|failure| replicas.with_logs(prefixed(failure)));
    replicas.stop();
    result
}

/// Registers the chain, starts the run loop, measures `count` failovers, finishes the loop
/// and audits the log.
fn measure(
    runtime: &Runtime,
    replicas: &mut ReplicaSet,
    url: &str,
    count: u32,
) -> Result<FailoverResult, Failure> {
    let store = runtime.block_on(PostgresStore::connect(PostgresConfig {
        pool_size: 2,
        ..PostgresConfig::new(url)
    }))?;
    let client = replicas.client().clone();
    let registered = runtime
        .block_on(client.register_workflow(source(), format!("{NAME}.yaml")))
        .map_err(|error| Failure::system(format!("RegisterWorkflow: {error}")))?;
    if registered.task_count != CHAIN_LENGTH as u32 {
        return Err(Failure::system(format!(
            "RegisterWorkflow: expected {CHAIN_LENGTH} task instances, found {}",
            registered.task_count
        )));
    }
    let driver = runtime.block_on(async {
        RunDriver::start(
            client,
            registered.name.clone(),
            registered.version.clone(),
            CHAIN_LENGTH as u32,
        )
    });
    runtime.block_on(first_dispatch(&store))?;
    let mut samples = Vec::new();
    for index in 0..count {
        if driver.has_ended() {
            // It ended by itself: on an error, which `finish` returns.
            runtime.block_on(driver.finish())?;
            return Err(Failure::system("the run loop ended before the samples"));
        }
        std::thread::sleep(settle(index));
        let sample = failover(runtime, replicas, &store)?;
        eprintln!(
            "{NAME}: failover {}/{count}: {} (epoch {}) killed, {} (epoch {}) dispatched after {} ms",
            index + 1,
            sample.killed,
            sample.killed_epoch,
            sample.new_leader,
            sample.new_epoch,
            sample.failover_ms
        );
        samples.push(sample);
    }
    let runs = runtime.block_on(driver.finish())?;
    let log = runtime.block_on(whole_log(&store))?;
    Ok(FailoverResult {
        lease_ttl: LEASE_TTL,
        samples,
        runs_succeeded: runs.len(),
        audit: Audit::of(&log, CHAIN_LENGTH as u32),
    })
}

/// One failover: find the leader, kill it, find the next leader's first dispatch, restart
/// the killed replica and wait until it is a member again.
fn failover(
    runtime: &Runtime,
    replicas: &mut ReplicaSet,
    store: &PostgresStore,
) -> Result<FailoverSample, Failure> {
    let (killed, leader) = runtime.block_on(replicas.leader())?;
    let after = runtime.block_on(store.latest_position())?;
    let t0 = now_millis();
    replicas.kill(killed);
    let reaped = now_millis();
    let dispatch = runtime.block_on(new_leader_dispatch(
        store,
        DispatchScan::new(t0, reaped, after),
    ))?;
    let (next, new_leader) = runtime.block_on(replicas.leader())?;
    if next == killed || new_leader.epoch <= leader.epoch {
        return Err(Failure::system(format!(
            "after killing {} (epoch {}), expected another replica to lead with a higher epoch, found {} (epoch {})",
            leader.member_id, leader.epoch, new_leader.member_id, new_leader.epoch
        )));
    }
    replicas.restart(killed)?;
    runtime.block_on(replicas.wait_for_members(Some((killed, t0))))?;
    Ok(FailoverSample {
        killed: leader.member_id,
        killed_epoch: leader.epoch,
        new_leader: new_leader.member_id,
        new_epoch: new_leader.epoch,
        killed_at_unix_ms: t0,
        dispatched_at_unix_ms: dispatch.at,
        failover_ms: dispatch.at - t0,
        resumed_run: dispatch.resumed,
    })
}

/// The pause before failover `index` (from 0): [`SETTLE`] plus `(7 x index mod 10) / 10` of
/// the keep-alive period (TTL / 4), so ten samples fall at ten different points of it.
fn settle(index: u32) -> Duration {
    let keep_alive = LEASE_TTL / 4;
    SETTLE + keep_alive * ((7 * index) % 10) / 10
}

/// Reads the log with `scan` until the new leader's first dispatch shows.
///
/// Errors: none within [`DISPATCH_TIMEOUT`], or the store fails.
async fn new_leader_dispatch(
    store: &PostgresStore,
    mut scan: DispatchScan,
) -> Result<Dispatch, Failure> {
    let started = Instant::now();
    loop {
        let page = store.read_log(scan.cursor(), READ_PAGE).await?;
        if let Some(dispatch) = scan.feed(&page) {
            return Ok(dispatch);
        }
        if started.elapsed() > DISPATCH_TIMEOUT {
            return Err(Failure::system(format!(
                "no task was dispatched by a new leader within {} s of the kill (log read up to position {})",
                DISPATCH_TIMEOUT.as_secs(),
                scan.cursor()
            )));
        }
        if page.len() < READ_PAGE {
            tokio::time::sleep(LOG_POLL).await;
        }
    }
}

/// Waits until the log holds an `AttemptStarted` (the run loop's first run dispatches).
async fn first_dispatch(store: &PostgresStore) -> Result<(), Failure> {
    let started = Instant::now();
    let mut after = 0;
    loop {
        let page = store.read_log(after, READ_PAGE).await?;
        if page
            .iter()
            .any(|checkpoint| matches!(checkpoint.event, Event::AttemptStarted { .. }))
        {
            return Ok(());
        }
        after = page.last().map_or(after, |checkpoint| checkpoint.position);
        if started.elapsed() > DISPATCH_TIMEOUT {
            return Err(Failure::system(format!(
                "the first run dispatched no task within {} s",
                DISPATCH_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(LOG_POLL).await;
    }
}

/// Every checkpoint of the log, in order.
async fn whole_log(store: &PostgresStore) -> Result<Vec<Checkpoint>, Failure> {
    let mut log: Vec<Checkpoint> = Vec::new();
    loop {
        let after = log.last().map_or(0, |checkpoint| checkpoint.position);
        let page = store.read_log(after, READ_PAGE).await?;
        if page.is_empty() {
            return Ok(log);
        }
        log.extend(page);
    }
}

/// `failure` with the workload's name in front.
fn prefixed(failure: Failure) -> Failure {
    Failure {
        code: failure.code,
        message: format!("{NAME}: {}", failure.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_compiles_with_its_retry_policy() {
        let spec = tandem_dsl::compile(NAME, &source()).unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(spec.tasks.len(), CHAIN_LENGTH);
        assert_eq!(
            spec.tasks[CHAIN_LENGTH - 1].upstream,
            vec![CHAIN_LENGTH as u32 - 2]
        );
        assert_eq!(source().matches(TASK_COMMAND).count(), CHAIN_LENGTH);
        let retry = &spec.tasks[7].retry;
        assert_eq!(retry.max_attempts, 20);
        assert_eq!(retry.initial_interval, Duration::from_millis(100));
        assert_eq!(retry.backoff_coefficient, 1.0);
        assert_eq!(retry.jitter, tandem_dsl::Jitter::None);
    }

    #[test]
    fn at_least_ten_samples() {
        assert_eq!(samples(1), 10);
        assert_eq!(samples(10), 10);
        assert_eq!(samples(25), 25);
    }

    #[test]
    fn kills_are_spread_over_the_keep_alive_period() {
        let mut offsets: Vec<Duration> = (0..10).map(|index| settle(index) - SETTLE).collect();
        offsets.sort();
        offsets.dedup();
        assert_eq!(offsets.len(), 10);
        assert_eq!(offsets[0], Duration::ZERO);
        assert!(offsets[9] < LEASE_TTL / 4);
    }
}
