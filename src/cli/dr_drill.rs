//! `tandem dr drill`: arguments, progress on stderr, the report on stdout (a table, or JSON
//! with `--output json`). The drill itself is `tandem_dr::drill::run`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tandem_dr::Topology;
use tandem_dr::drill::{
    self, DEFAULT_PG_BIN, DrillOptions, Fault, Outcome, StepObserver, StepReport,
};

use super::{Failure, OutputFormat, parse_duration_arg};

/// Arguments of `tandem dr drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The fault injected into the active region (live mode): kill every process of the
    /// region, or cut its replication and client traffic. Needs `[regions.NAME.local]` in the
    /// topology (`pid_dir` and `start`; `partition` and `heal`).
    #[arg(long, value_enum, value_name = "FAULT")]
    fault: Option<FaultArg>,
    /// Recovery point objective: most history (time between the last replicated and the
    /// last lost checkpoint) the failover may lose.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_arg)]
    rpo: Duration,
    /// Recovery time objective: most time from the fault to the first task dispatched in the
    /// new active region.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_arg)]
    rto: Duration,
    /// Afterwards, make the old active region a standby again, let it catch up and switch
    /// over back to it; check every canary run is intact there.
    #[arg(long)]
    failback: bool,
    /// live: inject the fault and promote the standby; isolated: promote a copy of the
    /// standby's database on its own ports (production is only read; needs `postgres_url` in
    /// the standby's `[regions.NAME.local]`).
    #[arg(long, value_enum, default_value_t = ModeArg::Live)]
    mode: ModeArg,
    /// Canary runs started on the active region before the fault.
    #[arg(long, value_name = "N", default_value_t = drill::DEFAULT_CANARIES)]
    canaries: u32,
    /// Tasks per canary run (8 to 602): start, waves of 1-2 s sleeps, join.
    #[arg(long, value_name = "N", default_value_t = drill::DEFAULT_CANARY_TASKS)]
    canary_tasks: u32,
    /// Bound of each wait (canaries in flight, their completion, a region coming back or
    /// catching up, each command).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_arg)]
    timeout: Duration,
    /// The standby to promote, when several regions follow the active one.
    #[arg(long, value_name = "NAME")]
    standby: Option<String>,
    /// PostgreSQL's programs for --mode isolated (initdb, pg_ctl, pg_dump, psql).
    #[arg(long, env = "TANDEM_PG_BIN", value_name = "DIR", default_value = DEFAULT_PG_BIN)]
    pg_bin: PathBuf,
    /// Output format of the report (JSON: every figure; times in ms since the Unix epoch,
    /// durations in ms).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// `--fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FaultArg {
    /// Kill every process of the active region (region loss).
    KillRegion,
    /// Cut the active region off; it keeps running.
    Partition,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// Fault the active region, promote the standby.
    Live,
    /// Promote a copy of the standby; production is only read.
    Isolated,
}

/// Runs the drill on `topology`. Exit codes: 0 every step passed and every objective was
/// met; 1 a step or a verification failed, or an objective was missed; 2 usage or preflight
/// error (nothing was touched).
pub async fn drill(topology: Topology, args: DrillArgs) -> Result<u8, Failure> {
    let options = options(topology, &args);
    let report = drill::run(options).await.map_err(Failure::invalid)?;
    match args.output {
        OutputFormat::Json => println!("{}", report.to_json()),
        OutputFormat::Table => println!("{}", report.render_table()),
    }
    Ok(report.exit_code)
}

fn options(topology: Topology, args: &DrillArgs) -> DrillOptions {
    let fault = args.fault.map(|fault| match fault {
        FaultArg::KillRegion => Fault::KillRegion,
        FaultArg::Partition => Fault::Partition,
    });
    let mut options = match args.mode {
        ModeArg::Live => DrillOptions {
            fault,
            ..DrillOptions::new(topology, Fault::KillRegion)
        },
        ModeArg::Isolated => DrillOptions {
            fault,
            ..DrillOptions::isolated(topology)
        },
    };
    options.rpo = args.rpo;
    options.rto = args.rto;
    options.failback = args.failback;
    options.canaries = args.canaries;
    options.canary_tasks = args.canary_tasks;
    options.timeout = args.timeout;
    options.standby = args.standby.clone();
    options.pg_bin = args.pg_bin.clone();
    if !args.quiet {
        options.progress = Some(StepObserver(Arc::new(print_step)));
    }
    options
}

/// One progress line on stderr: `drill: preflight passed (120 ms): ...`.
fn print_step(step: &StepReport) {
    let mark = match step.outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "FAILED",
        Outcome::Skipped => "skipped",
    };
    eprintln!(
        "drill: {} {mark} ({}): {}",
        step.step.as_str(),
        drill::report::format_ms(step.duration_ms),
        step.detail
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tandem_dr::drill::DrillMode;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: DrillArgs,
    }

    fn topology() -> Topology {
        Topology::parse(
            "[regions.a]\nendpoints = [\"http://127.0.0.1:9\"]\n",
            std::path::Path::new("/t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn flags_reach_the_options() {
        let parsed = Wrapper::try_parse_from([
            "drill",
            "--fault",
            "partition",
            "--rpo",
            "500ms",
            "--rto",
            "5s",
            "--failback",
            "--canaries",
            "2",
            "--canary-tasks",
            "30",
            "--timeout",
            "90s",
            "--standby",
            "b",
            "-q",
        ])
        .unwrap();
        let options = options(topology(), &parsed.args);
        assert_eq!(options.fault, Some(Fault::Partition));
        assert_eq!(options.mode, DrillMode::Live);
        assert_eq!(options.rpo, Duration::from_millis(500));
        assert_eq!(options.rto, Duration::from_secs(5));
        assert!(options.failback);
        assert_eq!((options.canaries, options.canary_tasks), (2, 30));
        assert_eq!(options.timeout, Duration::from_secs(90));
        assert_eq!(options.standby.as_deref(), Some("b"));
        assert!(options.progress.is_none());
    }

    #[test]
    fn defaults_and_isolated_mode() {
        let parsed = Wrapper::try_parse_from(["drill", "--mode", "isolated"]).unwrap();
        let options = options(topology(), &parsed.args);
        assert_eq!(options.mode, DrillMode::Isolated);
        assert_eq!(options.fault, None);
        assert_eq!(options.rpo, Duration::from_secs(1));
        assert_eq!(options.rto, Duration::from_secs(10));
        assert_eq!(options.canaries, 3);
        assert_eq!(options.canary_tasks, 60);
        assert!(options.progress.is_some());
        assert!(Wrapper::try_parse_from(["drill", "--fault", "flood"]).is_err());
    }
}
