//! A two-region deployment of `deploy/local/` for the `dr-*` workloads: `up.sh` in a fresh run
//! dir on a free block of ports, with this very binary as `--tandem`; `down.sh` when it is
//! dropped.
//!
//! The processes of the deployment are daemons of their own sessions (see
//! `deploy/local/README.md`): they do not die with the bench. Every way out of a workload
//! drops its [`Deployment`], which runs `down.sh`; only a bench killed by a signal leaves one
//! running, and the run dir printed when it started names it (`down.sh --run-dir DIR`).

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tandem_dr::{RegionEntry, Topology};

use super::super::super::Failure;
use super::super::process::{log_tail, scrub_environment};

/// The active region (the first of `up.sh --regions`).
pub const ACTIVE: &str = "eu-west";
/// The standby region.
pub const STANDBY: &str = "us-east";
/// `tandem serve` replicas per region (`up.sh`'s default).
pub const REPLICAS: u32 = 2;
/// Ports one region takes (`deploy/local/README.md`: region k uses B+100k .. B+100k+99).
const PORTS_PER_REGION: u16 = 100;
/// Lowest base port tried: under Linux's ephemeral range (32768-60999 by default), so that
/// outgoing connections do not take the ports between the check and `up.sh`.
const FIRST_BASE_PORT: u16 = 20_000;
/// Base ports tried, one block of two regions apart.
const BASE_PORT_CANDIDATES: u16 = 60;

/// A running deployment (stopped and removed by `down.sh` when dropped).
pub struct Deployment {
    topology: Topology,
    // Last: stops the processes when dropped.
    run: RunDir,
}

/// The run dir of a deployment that may be running: `down.sh` when dropped.
struct RunDir {
    scripts: PathBuf,
    path: PathBuf,
    running: bool,
    // Last: removed after down.sh (which removes the run dir itself).
    _temp: tempfile::TempDir,
}

impl Deployment {
    /// Starts eu-west (active) and us-east (standby), [`REPLICAS`] replicas each, async
    /// replication, with `up.sh --tandem EXE --run-dir DIR --base-port PORT`: DIR a fresh
    /// directory `bench-dr-LABEL-*` under `dir` (opened to the user `postgres`, who owns the
    /// PostgreSQL clusters when the bench runs as root), PORT the first of 200 ports that are
    /// all free on 127.0.0.1. The scripts get this process's environment minus every `TANDEM_*`
    /// variable except `TANDEM_LOG`.
    ///
    /// Errors: the scripts are not where this binary was built from, no free block of ports,
    /// `up.sh` fails (its output and the end of the processes' logs are quoted), or the
    /// topology it wrote cannot be read.
    pub fn up(exe: &Path, dir: &Path, label: &str) -> Result<Deployment, Failure> {
        let scripts = scripts_dir()?;
        let temp = super::super::temp_dir_in(dir, &format!("bench-dr-{label}-"))?;
        let run_dir = std::fs::canonicalize(temp.path()).map_err(|error| {
            Failure::system(format!("cannot resolve {}: {error}", temp.path().display()))
        })?;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755)).map_err(
            |error| {
                Failure::system(format!(
                    "cannot open {} to other users: {error}",
                    run_dir.display()
                ))
            },
        )?;
        let base_port = free_base_port()?;
        eprintln!(
            "{label}: starting {ACTIVE} (active) and {STANDBY} (standby) in {} on ports {}-{} (if the bench is killed: {} --run-dir {})",
            run_dir.display(),
            base_port,
            base_port + 2 * PORTS_PER_REGION - 1,
            scripts.join("down.sh").display(),
            run_dir.display()
        );
        let mut run = RunDir {
            scripts,
            path: run_dir,
            running: true,
            _temp: temp,
        };
        let output = run.script(
            "up.sh",
            &[
                "--tandem".as_ref(),
                exe.as_os_str(),
                "--run-dir".as_ref(),
                run.path.as_os_str(),
                "--base-port".as_ref(),
                base_port.to_string().as_ref(),
                "--replicas".as_ref(),
                REPLICAS.to_string().as_ref(),
                "--mode".as_ref(),
                "async".as_ref(),
                "--regions".as_ref(),
                format!("{ACTIVE},{STANDBY}").as_ref(),
            ],
        )?;
        if !output.status.success() {
            // up.sh stopped what it started; the run dir only holds its logs.
            run.running = false;
            return Err(run.failure(format!(
                "deploy/local/up.sh failed ({}): {}",
                output.status,
                output_text(&output)
            )));
        }
        let topology = match Topology::load(&run.path.join("topology.toml")) {
            Ok(topology) => topology,
            Err(error) => {
                return Err(run.failure(format!("the topology up.sh wrote is unreadable: {error}")));
            }
        };
        let deployment = Deployment { topology, run };
        for region in [ACTIVE, STANDBY] {
            deployment.postgres_url(region)?;
        }
        Ok(deployment)
    }

    /// The topology file `up.sh` wrote.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// `region`'s entry of the topology.
    ///
    /// Errors: the topology has no such region.
    pub fn region(&self, region: &str) -> Result<&RegionEntry, Failure> {
        self.topology
            .region(region)
            .map_err(|error| Failure::system(error.to_string()))
    }

    /// The URL of `region`'s PostgreSQL database (`postgres_url` of the topology).
    ///
    /// Errors: the topology has no such region, or no `postgres_url` for it.
    pub fn postgres_url(&self, region: &str) -> Result<&str, Failure> {
        self.region(region)?
            .local
            .as_ref()
            .and_then(|local| local.postgres_url.as_deref())
            .ok_or_else(|| {
                Failure::system(format!(
                    "{}: expected `regions.{region}.local.postgres_url`, found none",
                    self.topology.path.display()
                ))
            })
    }

    /// Stops every process of `region` and starts it again with the same data
    /// (`region.sh stop`, then `region.sh start`, which waits until it has a leader).
    ///
    /// Errors: either command fails (its output is quoted).
    pub fn restart_region(&self, region: &str) -> Result<(), Failure> {
        for action in ["stop", "start"] {
            let output = self.run.script(
                "region.sh",
                &[
                    action.as_ref(),
                    region.as_ref(),
                    "--run-dir".as_ref(),
                    self.run.path.as_os_str(),
                ],
            )?;
            if !output.status.success() {
                return Err(self.failure(format!(
                    "deploy/local/region.sh {action} {region} failed ({}): {}",
                    output.status,
                    output_text(&output)
                )));
            }
        }
        Ok(())
    }

    /// `message` followed by the end of the logs of both regions' first replica and
    /// replicator.
    pub fn failure(&self, message: impl std::fmt::Display) -> Failure {
        self.run.failure(message)
    }

    /// Stops everything and removes the run dir (`down.sh`).
    ///
    /// Errors: `down.sh` fails (its output is quoted).
    pub fn down(mut self) -> Result<(), Failure> {
        self.run.down()
    }
}

impl RunDir {
    /// `message` followed by the end of the logs of both regions' first replica and
    /// replicator.
    fn failure(&self, message: impl std::fmt::Display) -> Failure {
        let mut text = message.to_string();
        for region in [ACTIVE, STANDBY] {
            for process in ["serve-1", "replicate"] {
                let log = self
                    .path
                    .join(region)
                    .join("logs")
                    .join(format!("{process}.log"));
                if log.exists() {
                    text.push_str(&format!(
                        "\n{region} {process} ({}):\n{}",
                        log.display(),
                        log_tail(&log)
                    ));
                }
            }
        }
        Failure::system(text)
    }

    /// Stops everything and removes the run dir (`down.sh`); nothing when it is not running.
    ///
    /// Errors: `down.sh` fails (its output is quoted).
    fn down(&mut self) -> Result<(), Failure> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let output = self.script("down.sh", &["--run-dir".as_ref(), self.path.as_os_str()])?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Failure::system(format!(
                "deploy/local/down.sh --run-dir {} failed ({}): {}",
                self.path.display(),
                output.status,
                output_text(&output)
            )))
        }
    }

    /// Runs `deploy/local/NAME ARGS` to its end, output captured.
    fn script(&self, name: &str, args: &[&std::ffi::OsStr]) -> Result<Output, Failure> {
        let program = self.scripts.join(name);
        let mut command = Command::new(&program);
        command.args(args).stdin(std::process::Stdio::null());
        scrub_environment(&mut command);
        command
            .output()
            .map_err(|error| Failure::system(format!("cannot run {}: {error}", program.display())))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(failure) = self.down() {
            eprintln!("{}", failure.message);
        }
    }
}

/// `deploy/local/` of the source tree this binary was built from.
///
/// Errors: `up.sh` is not there (a binary moved away from its tree).
fn scripts_dir() -> Result<PathBuf, Failure> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local");
    if dir.join("up.sh").is_file() {
        Ok(dir)
    } else {
        Err(Failure::system(format!(
            "the dr-* workloads start deploy/local/up.sh of the Tandem source tree this binary was built from; expected {}, found no such file",
            dir.join("up.sh").display()
        )))
    }
}

/// The first base port `B` (from [`FIRST_BASE_PORT`], a step of 200, starting at an offset
/// taken from this process's id so that two benches rarely try the same block) such that every
/// port `B .. B+199` can be bound on 127.0.0.1 now.
///
/// Errors: none of [`BASE_PORT_CANDIDATES`] blocks is free.
fn free_base_port() -> Result<u16, Failure> {
    let block = 2 * PORTS_PER_REGION;
    let offset = (std::process::id() % u32::from(BASE_PORT_CANDIDATES)) as u16;
    for index in 0..BASE_PORT_CANDIDATES {
        let base = FIRST_BASE_PORT + ((offset + index) % BASE_PORT_CANDIDATES) * block;
        if (base..base + block).all(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()) {
            return Ok(base);
        }
    }
    Err(Failure::system(format!(
        "no block of {block} free ports on 127.0.0.1 from {FIRST_BASE_PORT} to {} for the deployment",
        FIRST_BASE_PORT + BASE_PORT_CANDIDATES * block - 1
    )))
}

/// A script's stdout and stderr, for errors.
fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_are_found_in_the_source_tree() {
        let dir = scripts_dir().unwrap();
        assert!(dir.join("down.sh").is_file());
        assert!(dir.join("region.sh").is_file());
    }

    #[test]
    fn a_free_base_port_has_its_whole_block_free() {
        let base = free_base_port().unwrap();
        assert!(base >= FIRST_BASE_PORT);
        assert_eq!((base - FIRST_BASE_PORT) % (2 * PORTS_PER_REGION), 0);
        assert!(u32::from(base) + 200 <= u32::from(u16::MAX));
    }
}
