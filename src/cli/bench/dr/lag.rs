//! `dr-lag`: the replication lag of each checkpoint while the active region runs 50
//! concurrent fanout-1k runs (the method is in [`super`]).

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_api::{Client, ClientConfig, RegisteredWorkflow, StartRun};
use tandem_engine::checkpoint::now_millis;

use super::super::super::{Failure, runtime};
use super::super::fan_out;
use super::super::service::start_and_wait;
use super::breakdown::{Breakdown, apply_busy};
use super::database::Database;
use super::deployment::{ACTIVE, Deployment, STANDBY};
use super::lag_report::{LagResult, LagSample, Load};
use super::machine::busy_cores;

/// The workload's name.
pub const NAME: &str = "dr-lag";
/// Runs started at once per sample.
pub const RUNS: usize = 50;
/// Runs of each reference sample (the lag without a backlog).
pub const REFERENCE_RUNS: usize = 1;
/// Width of the fan-out: one root, this many tasks, one join.
const FAN_OUT_WIDTH: usize = 1_000;
/// Task instances of one run.
const TASKS_PER_RUN: u32 = FAN_OUT_WIDTH as u32 + 2;
/// Longest a sample's runs may take before the bench gives up.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest the standby may take to apply a sample's window after its runs finished.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the machine's load is measured before each sample.
const BACKGROUND_INTERVAL: Duration = Duration::from_secs(1);

/// The DAG file: fanout-1k (one root, 1,000 empty tasks that need it, one join).
pub fn source() -> String {
    fan_out("dr-lag-fanout-1k", FAN_OUT_WIDTH, "")
}

/// Starts a deployment in `dir`, has both databases record commit times (restarting both
/// regions), measures one warm-up, then `repeat` times a sample of [`RUNS`] runs followed by
/// one of [`REFERENCE_RUNS`], and stops it.
///
/// Errors: the deployment cannot be started or restarted, a call or a database read fails, a
/// run does not succeed or takes over 5 minutes, the standby does not catch up within 2
/// minutes; the error quotes the logs of both regions.
pub fn run(exe: &Path, repeat: u32, dir: &Path) -> Result<LagResult, Failure> {
    let runtime = runtime()?;
    let deployment = Deployment::up(exe, dir, NAME)?;
    let measured = record_commit_times(&runtime, &deployment)
        .and_then(|()| runtime.block_on(measure(&deployment, repeat)))
        .map_err(|failure| deployment.failure(format!("{NAME}: {}", failure.message)));
    let stopped = deployment.down();
    let result = measured?;
    stopped?;
    Ok(result)
}

/// Sets `track_commit_timestamp = on` in both databases and restarts both regions (the
/// setting needs a restart of PostgreSQL), so that [`Breakdown`] can split the lags.
///
/// Errors: a statement or a restart fails.
fn record_commit_times(
    runtime: &tokio::runtime::Runtime,
    deployment: &Deployment,
) -> Result<(), Failure> {
    for region in [ACTIVE, STANDBY] {
        let url = deployment.postgres_url(region)?;
        runtime.block_on(async {
            Database::connect(url)
                .await?
                .enable_commit_timestamps()
                .await
        })?;
    }
    eprintln!("{NAME}: restarting both regions so that their databases record commit times");
    deployment.restart_region(ACTIVE)?;
    deployment.restart_region(STANDBY)
}

/// Checks the roles and that commit times are recorded, registers the DAG file on the active region, runs the warm-up and the
/// samples.
async fn measure(deployment: &Deployment, repeat: u32) -> Result<LagResult, Failure> {
    let active = Database::connect(deployment.postgres_url(ACTIVE)?).await?;
    let standby = Database::connect(deployment.postgres_url(STANDBY)?).await?;
    for (region, database, expected) in
        [(ACTIVE, &active, "active"), (STANDBY, &standby, "standby")]
    {
        let role = database.role().await?;
        if role != expected {
            return Err(Failure::system(format!(
                "expected {region} to be {expected}, found it {role}"
            )));
        }
        if !database.commit_timestamps().await? {
            return Err(Failure::system(format!(
                "expected {region}'s PostgreSQL to record commit times after its restart (track_commit_timestamp = on), found it off"
            )));
        }
    }
    let endpoints = deployment.region(ACTIVE)?.endpoints.clone();
    let client = Client::connect_with(ClientConfig::with_endpoints(endpoints))
        .await
        .map_err(|error| Failure::system(format!("cannot connect to {ACTIVE}: {error}")))?;
    let registered = client
        .register_workflow(source(), format!("{NAME}.yaml"))
        .await
        .map_err(|error| Failure::system(format!("RegisterWorkflow on {ACTIVE}: {error}")))?;
    if registered.task_count != TASKS_PER_RUN {
        return Err(Failure::system(format!(
            "RegisterWorkflow: expected {TASKS_PER_RUN} task instances, found {}",
            registered.task_count
        )));
    }
    let mut samples = Vec::new();
    let mut reference = Vec::new();
    for index in 0..=repeat {
        let runs: &[usize] = if index == 0 {
            &[RUNS]
        } else {
            &[RUNS, REFERENCE_RUNS]
        };
        for &runs in runs {
            let sample = tokio::time::timeout(
                SAMPLE_TIMEOUT + CATCH_UP_TIMEOUT + BACKGROUND_INTERVAL,
                sample(&client, &registered, &active, &standby, runs),
            )
            .await
            .map_err(|_| {
                Failure::system(format!(
                    "sample {index} (0 = warm-up) of {runs} run(s) did not finish within {} s",
                    (SAMPLE_TIMEOUT + CATCH_UP_TIMEOUT + BACKGROUND_INTERVAL).as_secs()
                ))
            })??;
            eprintln!(
                "{NAME}: sample {index}/{repeat}{}, {runs} run(s): {} checkpoints, lag p50 {} ms, p99 {} ms, max {} ms, {} batches applied, {:.2} cores busy before",
                if index == 0 { " (warm-up)" } else { "" },
                sample.lag.count,
                sample.lag.p50_ms,
                sample.lag.p99_ms,
                sample.lag.max_ms,
                sample.apply_batches,
                sample.background_cores
            );
            match (index, runs) {
                (0, _) => {}
                (_, RUNS) => samples.push(sample),
                _ => reference.push(sample),
            }
        }
    }
    Ok(LagResult { samples, reference })
}

/// One sample: the machine's load measured for a second, then `runs` runs started at once
/// on the active region and watched until they finished, then the wait until the standby
/// applied them, then their checkpoints' times read from the standby's database.
async fn sample(
    client: &Client,
    workflow: &RegisteredWorkflow,
    active: &Database,
    standby: &Database,
    runs: usize,
) -> Result<LagSample, Failure> {
    let background_cores = busy_cores(BACKGROUND_INTERVAL).await?;
    let before = active.latest_position().await?;
    let start = StartRun::new(&workflow.name).version(&workflow.version);
    let started = Instant::now();
    let finished_runs = tokio::time::timeout(
        SAMPLE_TIMEOUT,
        futures::future::try_join_all(
            (0..runs).map(|_| start_and_wait(client, start.clone(), TASKS_PER_RUN, started)),
        ),
    )
    .await
    .map_err(|_| {
        Failure::system(format!(
            "the {runs} run(s) did not finish within {} s",
            SAMPLE_TIMEOUT.as_secs()
        ))
    })??;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let finished_at_ms = now_millis();
    let finished = Instant::now();
    let after = active.latest_position().await?;
    standby.wait_applied(after, CATCH_UP_TIMEOUT).await?;
    let catch_up_ms = finished.elapsed().as_secs_f64() * 1000.0;
    let rows = standby.replicated(before, after).await?;
    let load = Load {
        runs: finished_runs.len(),
        tasks: finished_runs
            .iter()
            .map(|(run, _)| u64::from(run.counts.total))
            .sum(),
        load_ms,
        finished_at_ms,
        catch_up_ms,
        background_cores,
    };
    let mut sample = LagSample::of(&rows, load).ok_or_else(|| {
        Failure::system(format!(
            "expected the {runs} run(s) to write checkpoints after position {before}, found the log at {after}"
        ))
    })?;
    let standby_commits = standby.commit_times(before, after).await?;
    sample.breakdown = Breakdown::of(
        &rows,
        &active.commit_times(before, after).await?,
        &standby_commits,
    );
    sample.apply_busy_during_load =
        rows.iter()
            .map(|row| row.recorded_at)
            .min()
            .and_then(|first_recorded| {
                apply_busy(&rows, &standby_commits, first_recorded, finished_at_ms)
            });
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dag_is_fanout_1k() {
        let spec = tandem_dsl::compile(NAME, &source()).unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(spec.tasks.len(), TASKS_PER_RUN as usize);
        assert_eq!(
            spec.tasks.last().unwrap().upstream.len(),
            FAN_OUT_WIDTH,
            "the join needs every middle task"
        );
    }
}
