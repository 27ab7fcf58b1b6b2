//! `tandem dr drill`: a disaster recovery drill on a deployment of two (or more) regions,
//! with measured RPO and RTO against objectives. [`run`] takes [`DrillOptions`] and returns a
//! [`DrillReport`] (or a [`DrillError`] when the drill was refused before it touched
//! anything).
//!
//! Live mode ([`DrillMode::Live`], module [`live`]):
//! 1. [`preflight`]: every region answers, exactly one is active, its standby is connected;
//! 2. [`canary`]: canary runs started on the active region and caught in flight;
//! 3. [`fault`]: `kill-region` or `partition` of the active region (t_fault recorded);
//! 4. promote: the standby is promoted with [`crate::promote()`] (no `--force`: the active
//!    region does not answer any more);
//! 5. [`verify`]: every canary completes in the new active region, no succeeded task ran
//!    again;
//! 6. [`measure`]: the old region is brought back (`start` or `heal`), learns the new epoch
//!    and reports its tail: RPO; RTO from the new active's first dispatch;
//! 7. [`failback`] (`--failback`): rejoin, catch up, switch over back, canaries intact.
//!
//! Isolated mode ([`DrillMode::Isolated`], module [`isolated`]): a copy of the standby's
//! database is promoted on its own ports; production is only read.
//!
//! When a step fails after the fault, the old region is still brought back (step
//! `restore`), so a failed drill leaves the deployment whole.

pub mod canary;
pub mod command;
pub mod failback;
pub mod fault;
pub mod isolated;
pub mod live;
pub mod measure;
pub mod preflight;
pub mod report;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tandem_api::ClientConfig;
use tandem_engine::checkpoint::RunId;

pub use fault::Fault;
pub use report::{
    DrillReport, EXIT_FAILED, EXIT_PASSED, EXIT_USAGE, Outcome, Step, StepObserver, StepReport,
    Verdict,
};

use crate::region_client::DrClientConfig;
use crate::topology::Topology;
use report::StepTimer;

/// The promotion of a live drill (the outcome of [`crate::promote()`]).
pub type PromotionReport = crate::promote::PromoteOutcome;

/// Where the drill's recovery happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillMode {
    /// Inject the fault into the active region and promote the standby.
    Live,
    /// Promote a copy of the standby's database on its own ports; production is only read.
    Isolated,
}

impl DrillMode {
    /// `live` or `isolated`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillMode::Live => "live",
            DrillMode::Isolated => "isolated",
        }
    }
}

/// Default `--rpo`.
pub const DEFAULT_RPO: Duration = Duration::from_secs(1);
/// Default `--rto`.
pub const DEFAULT_RTO: Duration = Duration::from_secs(10);
/// Default `--canaries`.
pub const DEFAULT_CANARIES: u32 = 3;
/// Default `--canary-tasks`.
pub const DEFAULT_CANARY_TASKS: u32 = 60;
/// Default `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Env var naming PostgreSQL's program directory for `--mode isolated`.
pub const PG_BIN_ENV: &str = "TANDEM_PG_BIN";
/// PostgreSQL's program directory when neither `--pg-bin` nor [`PG_BIN_ENV`] is given.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// What to drill and how.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The deployment.
    pub topology: Topology,
    /// The fault to inject; required in live mode, unused in isolated mode.
    pub fault: Option<Fault>,
    /// Live or isolated.
    pub mode: DrillMode,
    /// RPO objective (history lost). Default 1 s.
    pub rpo: Duration,
    /// RTO objective (fault to first dispatch in the new active region). Default 10 s.
    pub rto: Duration,
    /// Live mode: bring the old region back as active afterwards.
    pub failback: bool,
    /// Canary runs started on the active region (1 to 100). Default 3.
    pub canaries: u32,
    /// Tasks per canary run ([`canary::MIN_TASKS`] to [`canary::MAX_TASKS`]). Default 60.
    pub canary_tasks: u32,
    /// Bound of each wait of the drill (canaries in flight, completion, a region coming
    /// back or catching up, each command). Default 120 s.
    pub timeout: Duration,
    /// The standby to promote; needed only when several regions follow the active one.
    pub standby: Option<String>,
    /// Isolated mode: PostgreSQL's programs (`initdb`, `pg_ctl`, `pg_dump`, `psql`).
    pub pg_bin: PathBuf,
    /// Isolated mode: the `tandem` program that serves the copy; `None`: this program.
    pub tandem_program: Option<PathBuf>,
    /// Timeouts of the DR calls.
    pub client: DrClientConfig,
    /// The drill's id; `None`: a new UUIDv7.
    pub drill_id: Option<String>,
    /// Told of each step as it ends; `None`: nobody.
    pub progress: Option<StepObserver>,
}

impl DrillOptions {
    /// A live drill of `topology` with `fault` and the defaults.
    pub fn new(topology: Topology, fault: Fault) -> DrillOptions {
        DrillOptions {
            topology,
            fault: Some(fault),
            mode: DrillMode::Live,
            rpo: DEFAULT_RPO,
            rto: DEFAULT_RTO,
            failback: false,
            canaries: DEFAULT_CANARIES,
            canary_tasks: DEFAULT_CANARY_TASKS,
            timeout: DEFAULT_TIMEOUT,
            standby: None,
            pg_bin: std::env::var_os(PG_BIN_ENV)
                .filter(|dir| !dir.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_PG_BIN), PathBuf::from),
            tandem_program: None,
            client: DrClientConfig::default(),
            drill_id: None,
            progress: None,
        }
    }

    /// An isolated drill of `topology` with the defaults.
    pub fn isolated(topology: Topology) -> DrillOptions {
        DrillOptions {
            fault: None,
            mode: DrillMode::Isolated,
            ..DrillOptions::new(topology, Fault::KillRegion)
        }
    }
}

/// A drill refused before it touched anything (exit code [`EXIT_USAGE`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrillError {
    /// The options or the topology cannot make this drill.
    #[error("{0}")]
    Usage(String),
    /// The deployment is not in a state to drill.
    #[error("preflight failed: {0}")]
    Preflight(String),
}

impl DrillError {
    /// The exit code of `tandem dr drill` for this error.
    pub fn exit_code(&self) -> u8 {
        EXIT_USAGE
    }
}

/// Runs a drill (see the module docs).
///
/// Errors: [`DrillError::Usage`] for options out of range, a live drill without a fault, or
/// a topology that cannot do the fault (naming the missing key) or lacks the standby's
/// `postgres_url` in isolated mode; [`DrillError::Preflight`] when a region does not answer,
/// there is not exactly one active region, or the standby is not connected. Everything that
/// goes wrong later is in the report (a failed step, exit code [`EXIT_FAILED`]).
pub async fn run(options: DrillOptions) -> Result<DrillReport, DrillError> {
    check_options(&options)?;
    let drill_id = options
        .drill_id
        .clone()
        .unwrap_or_else(|| RunId::new().0.to_string());
    let fault = match options.mode {
        DrillMode::Live => options.fault,
        DrillMode::Isolated => None,
    };
    let mut report = DrillReport::new(
        &drill_id,
        options.mode,
        fault,
        &options.topology.path.display().to_string(),
    );
    report.observer = options.progress.clone();
    let timer = StepTimer::start(Step::Preflight);
    let found = preflight::check(
        &options.topology,
        options.standby.as_deref(),
        options.client,
    )
    .await
    .map_err(DrillError::Preflight)?;
    match (options.mode, fault) {
        (DrillMode::Live, Some(fault)) => {
            fault::capability(&options.topology, &found.active, fault)
                .map_err(DrillError::Usage)?;
        }
        (DrillMode::Live, None) => {
            return Err(DrillError::Usage(
                "--fault: a live drill needs a fault: kill-region or partition".to_string(),
            ));
        }
        (DrillMode::Isolated, _) => {
            let has_url = options
                .topology
                .regions
                .get(&found.standby)
                .and_then(|entry| entry.local.as_ref())
                .is_some_and(|local| local.postgres_url.is_some());
            if !has_url {
                return Err(DrillError::Usage(format!(
                    "--mode isolated: the topology {} has no `postgres_url` in [regions.{}.local]: the isolated drill copies the standby's database from it (deploy/local/up.sh writes it)",
                    options.topology.path.display(),
                    found.standby
                )));
            }
            if options.fault.is_some() {
                report.notes.push(
                    "--fault is not used in isolated mode: the copy is promoted as after the loss of the active region; production is only read"
                        .to_string(),
                );
            }
        }
    }
    let active_status = found
        .regions
        .iter()
        .find(|status| status.region == found.active);
    report.push(timer.finish(
        Outcome::Passed,
        format!(
            "{} active (region epoch {}, latest position {}); {} standby, replication connected (last batch {} ms ago), lag {} positions{}",
            found.active,
            active_status.map_or(0, |status| status.region_epoch),
            active_status.map_or(0, |status| status.latest_position),
            found.standby,
            found.applied_age_ms,
            found.lag.positions,
            found.lag.millis.map_or(String::new(), |ms| format!(", {ms} ms"))
        ),
    ));
    report.active_region = Some(found.active.clone());
    report.standby_region = Some(found.standby.clone());
    match (options.mode, fault) {
        (DrillMode::Live, Some(fault)) => {
            live::run(&options, &drill_id, &found, fault, &mut report).await;
        }
        _ => isolated::run(&options, &drill_id, &found, &mut report).await,
    }
    report.preflight = Some(found);
    Ok(report.finish(options.rpo, options.rto))
}

fn check_options(options: &DrillOptions) -> Result<(), DrillError> {
    if !(1..=canary::MAX_CANARIES).contains(&options.canaries) {
        return Err(DrillError::Usage(format!(
            "--canaries: expected 1 to {} canary runs, found {}",
            canary::MAX_CANARIES,
            options.canaries
        )));
    }
    canary::wave_widths(options.canary_tasks).map_err(DrillError::Usage)?;
    if options.timeout < Duration::from_secs(1) {
        return Err(DrillError::Usage(format!(
            "--timeout: expected at least 1s, found {} ms",
            options.timeout.as_millis()
        )));
    }
    if options.mode == DrillMode::Isolated && options.failback {
        return Err(DrillError::Usage(
            "--failback: only with --mode live (an isolated drill changes no region)".to_string(),
        ));
    }
    if options.mode == DrillMode::Live && options.fault.is_none() {
        return Err(DrillError::Usage(
            "--fault: a live drill needs a fault: kill-region or partition".to_string(),
        ));
    }
    Ok(())
}

/// The SDK settings of the drill's clients of a region with `endpoints`: short connect and
/// request timeouts, a failover timeout of at most 15 s (or `--timeout`).
pub fn client_config(endpoints: &[String], options: &DrillOptions) -> ClientConfig {
    ClientConfig::with_endpoints(endpoints.iter().cloned())
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(10))
        .failover_timeout(options.timeout.min(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn topology() -> Topology {
        Topology::parse(
            "[regions.eu-west]\nendpoints = [\"http://127.0.0.1:9\"]\n[regions.us-east]\nendpoints = [\"http://127.0.0.1:10\"]\n",
            Path::new("/t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn options_out_of_range_are_usage_errors() {
        let mut options = DrillOptions::new(topology(), Fault::KillRegion);
        assert!(check_options(&options).is_ok());
        options.canaries = 0;
        assert!(
            check_options(&options)
                .unwrap_err()
                .to_string()
                .contains("--canaries")
        );
        let mut options = DrillOptions::new(topology(), Fault::KillRegion);
        options.canary_tasks = 3;
        assert!(
            check_options(&options)
                .unwrap_err()
                .to_string()
                .contains("--canary-tasks")
        );
        let mut options = DrillOptions::isolated(topology());
        options.failback = true;
        let error = check_options(&options).unwrap_err();
        assert!(error.to_string().contains("--failback"));
        assert_eq!(error.exit_code(), EXIT_USAGE);
        let mut options = DrillOptions::new(topology(), Fault::KillRegion);
        options.fault = None;
        assert!(
            check_options(&options)
                .unwrap_err()
                .to_string()
                .contains("--fault")
        );
    }

    #[tokio::test]
    async fn an_unreachable_deployment_fails_the_preflight() {
        let mut options = DrillOptions::new(topology(), Fault::KillRegion);
        options.client = DrClientConfig {
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            leader_timeout: Duration::from_millis(500),
        };
        let error = run(options).await.unwrap_err();
        assert!(matches!(error, DrillError::Preflight(_)), "{error}");
        assert!(error.to_string().contains("eu-west"), "{error}");
    }
}
