//! `tandem dr status|promote|rejoin|switchover`: cross-region disaster recovery over the
//! regions of a DR topology file (`--topology FILE` / `TANDEM_DR_TOPOLOGY`). The operations
//! themselves live in the `tandem-dr` crate; this module parses arguments and prints.

#[path = "dr_drill.rs"]
mod dr_drill;
mod render;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tandem_dr::{DrClientConfig, DrError, Regions, SwitchoverOptions, Topology, TopologyError};

use super::{Failure, OutputFormat, exit, parse_duration_arg, runtime};

/// Arguments of `tandem dr`.
#[derive(Debug, Args)]
pub struct DrArgs {
    /// The DR topology file (TOML: `[regions.NAME] endpoints = ["http://host:port", ...]` per
    /// region; deploy/local/up.sh writes one).
    #[arg(long, global = true, env = "TANDEM_DR_TOPOLOGY", value_name = "FILE")]
    topology: Option<PathBuf>,

    #[command(subcommand)]
    command: DrCommand,
}

#[derive(Debug, Subcommand)]
enum DrCommand {
    /// Every region's role, region epoch, leader, log positions, lag and tail (exit 3 when a
    /// region does not answer).
    Status(OutputArgs),
    /// Make a standby region active after losing the active region (refused while the
    /// active region answers, unless --force).
    Promote(PromoteArgs),
    /// Make an old active region (fenced after a promotion elsewhere) a standby of the active
    /// region; its unreplicated tail is archived and listed.
    Rejoin(RejoinArgs),
    /// Planned, lossless hand-over: the active region stops writing, the standby catches up,
    /// then becomes active; replication reverses.
    Switchover(SwitchoverArgs),
    /// A disaster recovery drill: canary runs, a fault in the active region, promotion,
    /// verification, measured RPO and RTO against objectives (exit 0 passed, 1 a failed step
    /// or missed objective, 2 usage or preflight error).
    Drill(dr_drill::DrillArgs),
}

/// `--output`.
#[derive(Debug, Args)]
struct OutputArgs {
    /// Output format (JSON: the library's result; times in ms since the Unix epoch).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// Arguments of `tandem dr promote`.
#[derive(Debug, Args)]
struct PromoteArgs {
    /// The standby region to make active.
    #[arg(long, value_name = "NAME")]
    region: String,
    /// Promote even though the active region still answers (it is told to step down): only
    /// when that region is to be abandoned. For a planned hand-over use `switchover`.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Arguments of `tandem dr rejoin`.
#[derive(Debug, Args)]
struct RejoinArgs {
    /// The old active region to make a standby of the active region.
    #[arg(long, value_name = "NAME")]
    region: String,
    #[command(flatten)]
    output: OutputArgs,
}

/// Arguments of `tandem dr switchover`.
#[derive(Debug, Args)]
struct SwitchoverArgs {
    /// The standby region to hand over to.
    #[arg(long, value_name = "NAME")]
    to: String,
    /// How long the standby may take to catch up once the active region stopped writing;
    /// past it the hand-over is undone (the old active region is made active again).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_arg)]
    timeout: Duration,
    #[command(flatten)]
    output: OutputArgs,
}

/// `tandem dr ...`. Exit codes: 0 done; 1 refused (a precondition does not hold; nothing was
/// changed unless the message says so); 2 bad input (topology file, unknown region); 3 a
/// region unreachable or an error answer; 124 a switchover that timed out.
pub fn dr(args: DrArgs) -> Result<u8, Failure> {
    let topology = Topology::load_from(args.topology.as_deref()).map_err(topology_failure)?;
    let regions = Regions::new(topology, DrClientConfig::default());
    runtime()?.block_on(async move {
        match args.command {
            DrCommand::Status(output) => status(&regions, output.output).await,
            DrCommand::Drill(drill) => dr_drill::drill(regions.topology().clone(), drill).await,
            DrCommand::Promote(promote) => {
                let outcome = tandem_dr::promote(&regions, &promote.region, promote.force)
                    .await
                    .map_err(failure)?;
                let after = regions.status().await;
                render::print(promote.output.output, &outcome, &after, || {
                    render::promoted(&outcome)
                })?;
                Ok(exit::OK)
            }
            DrCommand::Rejoin(rejoin) => {
                let outcome = tandem_dr::rejoin(&regions, &rejoin.region)
                    .await
                    .map_err(failure)?;
                let after = regions.status().await;
                render::print(rejoin.output.output, &outcome, &after, || {
                    render::rejoined(&outcome)
                })?;
                Ok(exit::OK)
            }
            DrCommand::Switchover(switchover) => {
                let mut options = SwitchoverOptions::new(&switchover.to);
                options.timeout = switchover.timeout;
                let bar = render::CatchUpBar::new(switchover.output.output == OutputFormat::Table);
                let mut progress = |catch_up: &tandem_dr::CatchUp| bar.update(catch_up);
                let outcome = tandem_dr::switchover(&regions, &options, &mut progress).await;
                bar.finish();
                let outcome = outcome.map_err(failure)?;
                let after = regions.status().await;
                render::print(switchover.output.output, &outcome, &after, || {
                    render::switched(&outcome)
                })?;
                Ok(exit::OK)
            }
        }
    })
}

async fn status(regions: &Regions, output: OutputFormat) -> Result<u8, Failure> {
    let status = regions.status().await;
    match output {
        OutputFormat::Json => println!("{}", render::json(&status)?),
        OutputFormat::Table => println!("{}", render::status(&status)),
    }
    Ok(if status.regions.iter().all(|report| report.reachable) {
        exit::OK
    } else {
        exit::SYSTEM
    })
}

/// A topology file that cannot be used, or a region it lacks: bad input (exit 2).
fn topology_failure(error: TopologyError) -> Failure {
    Failure::invalid(error)
}

/// The exit code of a failed DR operation (see [`dr`]).
fn failure(error: DrError) -> Failure {
    match error {
        DrError::Topology(error) => topology_failure(error),
        DrError::Precondition(_) => Failure {
            code: exit::FAILED,
            message: error.to_string(),
        },
        DrError::TimedOut(_) => Failure {
            code: exit::TIMED_OUT,
            message: error.to_string(),
        },
        DrError::Unreachable { .. } | DrError::Refused { .. } | DrError::Protocol { .. } => {
            Failure::system(error)
        }
    }
}
