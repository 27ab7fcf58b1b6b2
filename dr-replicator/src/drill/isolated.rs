//! `--mode isolated`: proves that the standby's state can be recovered without touching
//! production, which is only read.
//!
//! 1. copy: the standby's database (`[regions.NAME.local] postgres_url`) is copied with
//!    `pg_dump | psql` (one consistent snapshot) into a fresh PostgreSQL cluster (`initdb` in
//!    a temporary directory, a free port, PostgreSQL run as `postgres` when the drill runs as
//!    root). The standby's lag at that moment is the RPO a region loss would have cost.
//! 2. start-copy: one `tandem serve` on the copy, on its own free port, without leader
//!    election, with `[dr] role = "standby"` and no peers: it never contacts production (no
//!    `TANDEM_*` setting of the drill's environment is passed on). Its role comes from the
//!    copied store: a standby of the active region. The copy's leader fence
//!    (`log_head.leader_epoch`, which replica of the standby region may write, an etcd
//!    revision of that region) is reset to 0 first, in the copy only: the copy is a new
//!    one-replica region without etcd, and a server without leader election refuses a
//!    database that has seen a leader epoch. The region's role, region epoch, applied
//!    position and log are left as copied.
//! 3. promote-copy: the non-terminal runs of the copy are read, then the copy is promoted
//!    through `DrService.Promote`.
//! 4. verify-copy: each copied non-terminal run must complete with no task that had
//!    succeeded running again, and a new canary run started on the copy must succeed (the
//!    copy schedules new work). RTO = the copy's first dispatch − the promotion request.
//!    The copied runs' shell tasks run on this machine again, in the copy's state dir;
//!    worker tasks would wait for workers, and none polls the copy.
//! 5. cleanup: the server (and the processes it started) and the cluster are stopped and the
//!    directory deleted, whatever happened before.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::TryStreamExt;
use serde::Serialize;
use tandem_api::{Client, ListRuns, RunState};
use tandem_engine::checkpoint::now_millis;
use tandem_engine::store::replication::RegionRole;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::canary::{self, CanaryRun};
use super::command;
use super::measure::{self, Rpo, RpoMethod, RtoMethod};
use super::preflight::Preflight;
use super::report::{DrillReport, Outcome, Step, StepTimer};
use super::verify::{self, CanaryCheck, RunSnapshot};
use super::{DrillOptions, client_config};
use crate::region_client::RegionClient;
use crate::region_status::{Lag, RegionStatus};

/// What the isolated drill copied, started and verified.
#[derive(Debug, Clone, Serialize)]
pub struct IsolatedReport {
    /// The standby whose database was copied.
    pub source_region: String,
    /// Its database (password hidden).
    pub source_database: String,
    /// The temporary directory of the copy (deleted at the end).
    pub copy_dir: String,
    /// The copy's PostgreSQL port.
    pub copy_postgres_port: u16,
    /// The copy's `tandem serve` address.
    pub copy_endpoint: Option<String>,
    /// The copied leader fence (`log_head.leader_epoch`) that was reset to 0 in the copy.
    pub copied_leader_epoch: Option<u64>,
    /// The standby's status right before the copy.
    pub standby_at_copy: Option<RegionStatus>,
    /// Its lag then.
    pub lag_at_copy: Option<Lag>,
    /// The copy's status after its promotion.
    pub promoted: Option<RegionStatus>,
    /// Each copied non-terminal run's verification.
    pub runs: Vec<CanaryCheck>,
    /// The canary run started on the promoted copy.
    pub probe: Option<CanaryCheck>,
}

/// Runs the isolated drill's steps after the preflight, filling `report`.
pub(super) async fn run(
    options: &DrillOptions,
    drill_id: &str,
    preflight: &Preflight,
    report: &mut DrillReport,
) {
    let standby = preflight.standby.clone();
    let Some(source_url) = options
        .topology
        .regions
        .get(&standby)
        .and_then(|entry| entry.local.as_ref())
        .and_then(|local| local.postgres_url.clone())
    else {
        // Checked by `super::run` before the preflight.
        report.push(StepTimer::start(Step::Copy).finish(
            Outcome::Failed,
            format!("[regions.{standby}.local] postgres_url is missing from the topology"),
        ));
        return;
    };
    let mut isolated = IsolatedReport {
        source_region: standby.clone(),
        source_database: redact(&source_url),
        copy_dir: String::new(),
        copy_postgres_port: 0,
        copy_endpoint: None,
        copied_leader_epoch: None,
        standby_at_copy: None,
        lag_at_copy: None,
        promoted: None,
        runs: Vec::new(),
        probe: None,
    };
    let mut copy: Option<Copy> = None;
    steps(
        options,
        drill_id,
        preflight,
        &source_url,
        &mut isolated,
        &mut copy,
        report,
    )
    .await;
    let timer = StepTimer::start(Step::Cleanup);
    let cleanup = match copy.take() {
        Some(copy) => copy.remove(options.timeout).await,
        None => Ok("nothing was created".to_string()),
    };
    report.push(match cleanup {
        Ok(detail) => timer.finish(Outcome::Passed, detail),
        Err(error) => timer.finish(Outcome::Failed, error),
    });
    report.isolated = Some(isolated);
}

async fn steps(
    options: &DrillOptions,
    drill_id: &str,
    preflight: &Preflight,
    source_url: &str,
    isolated: &mut IsolatedReport,
    copy_slot: &mut Option<Copy>,
    report: &mut DrillReport,
) {
    let later = [Step::StartCopy, Step::PromoteCopy, Step::VerifyCopy];
    // 1. copy
    let timer = StepTimer::start(Step::Copy);
    let standby_client = RegionClient::new(
        &preflight.standby,
        &options.topology.regions[&preflight.standby].endpoints,
        options.client,
    );
    if let Ok(status) = standby_client.status().await {
        isolated.lag_at_copy = status.lag(now_millis());
        isolated.standby_at_copy = Some(status);
    }
    let copy = match Copy::create(&options.pg_bin, options.timeout).await {
        Ok(copy) => copy_slot.insert(copy),
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error));
            report.skip(&later);
            return;
        }
    };
    isolated.copy_dir = copy.dir.path().display().to_string();
    isolated.copy_postgres_port = copy.port;
    if let Err(error) = copy.load(source_url, options.timeout).await {
        report.push(timer.finish(Outcome::Failed, error));
        report.skip(&later);
        return;
    }
    match copy.reset_leader_fence(options.timeout).await {
        Ok(epoch) => isolated.copied_leader_epoch = Some(epoch),
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error));
            report.skip(&later);
            return;
        }
    }
    let lag = isolated.lag_at_copy;
    report.rpo = Some(Rpo {
        lost_checkpoints: lag.map(|lag| lag.positions),
        acknowledged_lost_checkpoints: lag.map(|lag| lag.positions),
        tail_checkpoints: 0,
        split_brain_checkpoints: None,
        tail: None,
        tail_runs: Vec::new(),
        fork_position: isolated
            .standby_at_copy
            .as_ref()
            .map(|status| status.applied_position),
        last_replicated_at_ms: isolated
            .standby_at_copy
            .as_ref()
            .and_then(|status| status.applied_recorded_at_ms),
        last_lost_at_ms: None,
        first_split_brain_at_ms: None,
        millis: lag.and_then(|lag| lag.millis),
        method: Some(RpoMethod::ReplicationLag),
    });
    report.push(timer.finish(
        Outcome::Passed,
        format!(
            "{}'s database copied into a temporary cluster on port {} (its leader fence {} reset to 0 in the copy){}",
            preflight.standby,
            copy.port,
            isolated.copied_leader_epoch.unwrap_or(0),
            lag.map_or(String::new(), |lag| format!(
                "; the standby lagged {} positions{}",
                lag.positions,
                lag.millis.map_or(String::new(), |ms| format!(", {ms} ms"))
            ))
        ),
    ));

    // 2. start-copy
    let timer = StepTimer::start(Step::StartCopy);
    let program = match options
        .tandem_program
        .clone()
        .map_or_else(std::env::current_exe, Ok)
    {
        Ok(program) => program,
        Err(error) => {
            report.push(timer.finish(
                Outcome::Failed,
                format!("cannot find the tandem program to serve the copy: {error}"),
            ));
            report.skip(&[Step::PromoteCopy, Step::VerifyCopy]);
            return;
        }
    };
    let status = match copy
        .serve(&program, &preflight.standby, &preflight.active, options)
        .await
    {
        Ok(status) => status,
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error));
            report.skip(&[Step::PromoteCopy, Step::VerifyCopy]);
            return;
        }
    };
    let endpoint = copy.endpoint.clone().unwrap_or_default();
    isolated.copy_endpoint = Some(endpoint.clone());
    report.push(timer.finish(
        Outcome::Passed,
        format!(
            "tandem serve on the copy at {endpoint}: {} {} of {} (region epoch {}), applied position {}",
            status.region, status.role, status.active_region, status.region_epoch, status.applied_position
        ),
    ));

    // 3. promote-copy
    let timer = StepTimer::start(Step::PromoteCopy);
    let client = match Client::connect_lazy(client_config(std::slice::from_ref(&endpoint), options))
    {
        Ok(client) => client,
        Err(error) => {
            report.push(timer.finish(
                Outcome::Failed,
                format!("cannot make a client of {endpoint}: {error}"),
            ));
            report.skip(&[Step::VerifyCopy]);
            return;
        }
    };
    let copied: Result<Vec<CanaryRun>, String> = client
        .list_all_runs(ListRuns {
            state: Some(RunState::Running),
            page_size: 1000,
            ..ListRuns::default()
        })
        .map_err(|error| format!("cannot list the copy's running runs: {error}"))
        .try_collect::<Vec<_>>()
        .await
        .map(|runs| {
            runs.into_iter()
                .enumerate()
                .map(|(index, run)| CanaryRun {
                    index: u32::try_from(index + 1).unwrap_or(u32::MAX),
                    run_id: run.run_id,
                    idempotency_key: String::new(),
                    created: false,
                    at_fault: None,
                })
                .collect()
        });
    let copied = match copied {
        Ok(copied) => copied,
        Err(error) => {
            report.push(timer.finish(Outcome::Failed, error));
            report.skip(&[Step::VerifyCopy]);
            return;
        }
    };
    // Read before the promotion: exactly the state the standby held.
    let mut snapshots = verify::snapshot_all(&client, &copied).await;
    let copy_region = RegionClient::new(
        &preflight.standby,
        std::slice::from_ref(&endpoint),
        options.client,
    );
    let asked_at = now_millis();
    let promoted = match copy_region.promote(status.region_epoch + 1).await {
        Ok(promoted) if promoted.role == RegionRole::Active => promoted,
        Ok(other) => {
            report.push(timer.finish(
                Outcome::Failed,
                format!(
                    "the copy answered the promotion as {}, expected active",
                    other.role
                ),
            ));
            report.skip(&[Step::VerifyCopy]);
            return;
        }
        Err(error) => {
            report.push(timer.finish(
                Outcome::Failed,
                format!("promoting the copy failed: {error}"),
            ));
            report.skip(&[Step::VerifyCopy]);
            return;
        }
    };
    report.push(timer.finish(
        Outcome::Passed,
        format!(
            "the copy is active with region epoch {} ({} running run(s) copied); production was not told",
            promoted.region_epoch,
            copied.len()
        ),
    ));
    isolated.promoted = Some(promoted.clone());

    // 4. verify-copy
    let timer = StepTimer::start(Step::VerifyCopy);
    let mut runs = copied;
    let probe = match canary::start(
        &client,
        &format!("{drill_id}-copy"),
        1,
        options.canary_tasks,
    )
    .await
    {
        Ok((_, mut started)) => started.pop(),
        Err(error) => {
            report.notes.push(format!(
                "no canary could be started on the promoted copy: {error}"
            ));
            None
        }
    };
    if let Some(mut probe) = probe.clone() {
        probe.index = u32::try_from(runs.len() + 1).unwrap_or(u32::MAX);
        let snapshot = client
            .get_run(probe.run_id.clone())
            .await
            .map(|run| Some(RunSnapshot::of(&run, now_millis())));
        snapshots.push(snapshot);
        runs.push(probe);
    }
    let (mut checks, observed) = verify::wait_all(&client, &runs, snapshots, options.timeout).await;
    let first_dispatch = copy_region
        .status()
        .await
        .ok()
        .and_then(|status| status.first_dispatch_at_ms);
    report.rto = Some(measure::rto(
        asked_at,
        promoted.promoted_at_ms,
        first_dispatch,
        observed,
        RtoMethod::CopyPromotionToFirstDispatch,
    ));
    if probe.is_some() {
        isolated.probe = checks.pop();
    }
    isolated.runs = checks;
    let all: Vec<&CanaryCheck> = isolated
        .runs
        .iter()
        .chain(isolated.probe.as_ref())
        .collect();
    let bad: Vec<String> = all
        .iter()
        .filter(|check| !check.verdict.passes())
        .map(|check| format!("run {}: {}", check.run_id, check.detail))
        .collect();
    let outcome = if bad.is_empty() && isolated.probe.is_some() {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
    let detail = if bad.is_empty() {
        format!(
            "{} copied run(s) completed with no succeeded task run again{}",
            isolated.runs.len(),
            if isolated.probe.is_some() {
                "; a new canary run succeeded on the copy"
            } else {
                "; no canary could be started on the copy"
            }
        )
    } else {
        bad.join("; ")
    };
    report.push(timer.finish(outcome, detail));
}

/// The temporary PostgreSQL cluster of the copy and the `tandem serve` on it.
struct Copy {
    dir: tempfile::TempDir,
    port: u16,
    pg_bin: PathBuf,
    /// PostgreSQL programs run as the `postgres` user (the drill runs as root).
    as_postgres: bool,
    cluster_running: bool,
    server: Option<Child>,
    endpoint: Option<String>,
}

impl Copy {
    /// A new cluster in a temporary directory, started on a free port, with an empty
    /// database `tandem`.
    async fn create(pg_bin: &Path, timeout: Duration) -> Result<Copy, String> {
        for tool in ["initdb", "pg_ctl", "pg_dump", "psql"] {
            if !pg_bin.join(tool).is_file() {
                return Err(format!(
                    "{} is missing: the isolated drill needs PostgreSQL's programs (give --pg-bin DIR or set TANDEM_PG_BIN)",
                    pg_bin.join(tool).display()
                ));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("tandem-drill-copy-")
            .tempdir()
            .map_err(|error| format!("cannot create a temporary directory: {error}"))?;
        let as_postgres = running_as_root();
        let mut copy = Copy {
            dir,
            port: free_port()?,
            pg_bin: pg_bin.to_path_buf(),
            as_postgres,
            cluster_running: false,
            server: None,
            endpoint: None,
        };
        if as_postgres {
            command::run(
                &strings(&["chown", "postgres:", &copy.dir.path().display().to_string()]),
                timeout,
            )
            .await
            .map_err(|error| {
                format!("cannot give the copy's directory to the postgres user: {error}")
            })?;
        }
        let data = copy.data_dir();
        copy.pg(
            &[
                "initdb",
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            timeout,
        )
        .await?;
        let log = copy.dir.path().join("postgres.log").display().to_string();
        let settings = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off",
            copy.port
        );
        copy.pg(
            &[
                "pg_ctl", "-D", &data, "-l", &log, "-o", &settings, "-w", "-t", "60", "start",
            ],
            timeout,
        )
        .await?;
        copy.cluster_running = true;
        copy.pg(
            &[
                "psql",
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &copy.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE tandem",
            ],
            timeout,
        )
        .await?;
        Ok(copy)
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/tandem", self.port)
    }

    /// Runs PostgreSQL program `args[0]` of `pg_bin` with the rest as arguments (as
    /// `postgres` when needed).
    async fn pg(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        let program = self.pg_bin.join(args[0]).display().to_string();
        let mut argv: Vec<String> = Vec::new();
        if self.as_postgres {
            argv.extend(strings(&["runuser", "-u", "postgres", "--"]));
        }
        argv.push(program);
        argv.extend(strings(&args[1..]));
        command::run(&argv, timeout).await
    }

    /// Copies database `source` into the cluster: `pg_dump | psql` (one consistent snapshot
    /// of the source; nothing is written there).
    async fn load(&self, source: &str, timeout: Duration) -> Result<(), String> {
        let mut dump = Command::new(self.pg_bin.join("pg_dump"));
        dump.args(["--no-owner", "--no-privileges", "--dbname", source])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut dump = dump
            .spawn()
            .map_err(|error| format!("cannot run pg_dump: {error}"))?;
        let piped: Stdio = dump
            .stdout
            .take()
            .ok_or("pg_dump's output is not a pipe")?
            .try_into()
            .map_err(|error| format!("cannot pipe pg_dump into psql: {error}"))?;
        let mut load = Command::new(self.pg_bin.join("psql"));
        load.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname", &self.url()])
            .stdin(piped)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let load = load
            .spawn()
            .map_err(|error| format!("cannot run psql: {error}"))?;
        let both = async { tokio::join!(dump.wait_with_output(), load.wait_with_output()) };
        let (dumped, loaded) = tokio::time::timeout(timeout, both).await.map_err(|_| {
            format!(
                "copying {} took more than {} s",
                redact(source),
                timeout.as_secs()
            )
        })?;
        let dumped = dumped.map_err(|error| format!("waiting for pg_dump failed: {error}"))?;
        let loaded = loaded.map_err(|error| format!("waiting for psql failed: {error}"))?;
        if !dumped.status.success() {
            return Err(format!(
                "pg_dump of {} failed ({}): {}",
                redact(source),
                dumped.status,
                command::tail(&String::from_utf8_lossy(&dumped.stderr))
            ));
        }
        if !loaded.status.success() {
            return Err(format!(
                "loading the dump into the copy failed ({}): {}",
                loaded.status,
                command::tail(&String::from_utf8_lossy(&loaded.stderr))
            ));
        }
        Ok(())
    }

    /// Resets the copy's leader fence to 0 (see the module docs); returns the copied value.
    async fn reset_leader_fence(&self, timeout: Duration) -> Result<u64, String> {
        let port = self.port.to_string();
        let psql = |sql: &'static str| {
            let pg_bin = &self.pg_bin;
            let port = &port;
            async move {
                command::run(
                    &strings(&[
                        &pg_bin.join("psql").display().to_string(),
                        "-X",
                        "-q",
                        "-tA",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        port,
                        "-U",
                        "postgres",
                        "-d",
                        "tandem",
                        "-c",
                        sql,
                    ]),
                    timeout,
                )
                .await
            }
        };
        let copied = psql("SELECT leader_epoch FROM log_head").await?;
        let copied: u64 = copied.trim().parse().map_err(|_| {
            format!("the copy's log_head.leader_epoch: expected a number, found `{copied}`")
        })?;
        psql("UPDATE log_head SET leader_epoch = 0").await?;
        Ok(copied)
    }

    /// Starts `tandem serve` on the copy as region `region` (a standby of `active`) on a
    /// free port and waits until it answers `GetRegionStatus` as a standby.
    async fn serve(
        &mut self,
        program: &Path,
        region: &str,
        active: &str,
        options: &DrillOptions,
    ) -> Result<RegionStatus, String> {
        let port = free_port()?;
        let config = self.dir.path().join("region.toml");
        let text = format!(
            "# The isolated drill's copy of {region}: standalone, no peers, never reaches production.\n\
             region = {region:?}\nlisten = \"127.0.0.1:{port}\"\n\n[postgres]\nurl = {url:?}\npool_size = 4\n\n\
             [dr]\nrole = \"standby\"\nactive_region = {active:?}\npeers = {{}}\n",
            url = self.url()
        );
        std::fs::write(&config, text)
            .map_err(|error| format!("cannot write {}: {error}", config.display()))?;
        let log_path = self.dir.path().join("serve.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cannot share {}: {error}", log_path.display()))?;
        let mut serve = Command::new(program);
        serve
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        // The drill's own settings (TANDEM_POSTGRES_URL, ...) must not reach the copy.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TANDEM_") {
                serve.env_remove(name);
            }
        }
        let child = serve
            .spawn()
            .map_err(|error| format!("cannot run {} serve: {error}", program.display()))?;
        self.server = Some(child);
        let endpoint = format!("http://127.0.0.1:{port}");
        self.endpoint = Some(endpoint.clone());
        let client = RegionClient::new(region, std::slice::from_ref(&endpoint), options.client);
        let deadline = Instant::now() + options.timeout;
        loop {
            if let Some(server) = self.server.as_mut()
                && let Ok(Some(status)) = server.try_wait()
            {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "tandem serve on the copy exited ({}{}): {}",
                    status,
                    status
                        .signal()
                        .map_or(String::new(), |signal| format!(", signal {signal}")),
                    command::tail(&log)
                ));
            }
            match client.status().await {
                Ok(status) if status.role == RegionRole::Standby => return Ok(status),
                Ok(status) => {
                    return Err(format!(
                        "the copy answered as {} {} (expected a standby: the copied store's role)",
                        status.region, status.role
                    ));
                }
                Err(error) if Instant::now() >= deadline => {
                    return Err(format!(
                        "tandem serve on the copy did not answer within {} s: {error} (log {})",
                        options.timeout.as_secs(),
                        log_path.display()
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s; then every process it left) and the
    /// cluster, and deletes the directory.
    async fn remove(mut self, timeout: Duration) -> Result<String, String> {
        let mut problems: Vec<String> = Vec::new();
        if let Some(mut server) = self.server.take() {
            stop_server(&mut server).await;
        }
        if self.cluster_running {
            let data = self.data_dir();
            match self
                .pg(
                    &["pg_ctl", "-D", &data, "-m", "immediate", "-w", "stop"],
                    timeout,
                )
                .await
            {
                Ok(_) => self.cluster_running = false,
                Err(error) => problems.push(error),
            }
        }
        let path = self.dir.path().display().to_string();
        // Dropping `self` removes the directory (and stops a cluster still running).
        drop(self);
        if std::path::Path::new(&path).exists() {
            problems.push(format!("{path} could not be deleted"));
        }
        if problems.is_empty() {
            Ok(format!(
                "the copy's server and cluster stopped, {path} deleted"
            ))
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_mut()
            && let Some(pid) = server.id()
        {
            kill_tree(pid as i32);
        }
        if self.cluster_running {
            let data = self.data_dir();
            let mut argv: Vec<String> = Vec::new();
            if self.as_postgres {
                argv.extend(strings(&["runuser", "-u", "postgres", "--"]));
            }
            argv.push(self.pg_bin.join("pg_ctl").display().to_string());
            argv.extend(strings(&["-D", &data, "-m", "immediate", "-w", "stop"]));
            // Best effort from a destructor: the cluster dies with its directory otherwise.
            let _ = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Stops `server` and every process it started (shell attempts in their own groups).
async fn stop_server(server: &mut Child) {
    let Some(pid) = server.id() else {
        return;
    };
    let tree = tokio::task::spawn_blocking(move || super::fault::tree_of(pid as i32))
        .await
        .unwrap_or_default();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    if tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .is_err()
    {
        let _ = server.kill().await;
    }
    for pid in tree {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn kill_tree(pid: i32) {
    for member in super::fault::tree_of(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(member),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|item| item.to_string()).collect()
}

/// A TCP port free on 127.0.0.1 now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free port on 127.0.0.1: {error}"))
}

fn running_as_root() -> bool {
    procfs::process::Process::myself()
        .and_then(|process| process.status())
        .is_ok_and(|status| status.euid == 0)
}

/// `url` with its password, if any, replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://tandem:s3cret@db:5432/tandem"),
            "postgres://tandem:***@db:5432/tandem"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:7230/tandem"),
            "postgres://postgres@127.0.0.1:7230/tandem"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port().unwrap();
        assert!(port > 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
