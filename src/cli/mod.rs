//! Command-line arguments, dispatch to the commands, and exit codes.

mod bench;
mod cancel;
mod cluster;
mod dr;
mod graph;
mod logs;
mod progress;
mod remote;
mod remote_runs;
mod replicate;
mod run;
mod runs;
mod serve;
mod serve_config;
mod show;
mod shutdown;
mod status;
mod submit;
mod table;
mod telemetry;
mod validate;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tandem_engine::paths::StateDir;
use tandem_engine::store::sqlite::SqliteStore;

/// Exit codes of `tandem` (documented in the README).
pub mod exit {
    /// Success: the command did what was asked; for `run`/`resume`, the run succeeded.
    pub const OK: u8 = 0;
    /// The run failed (a task failed), or `validate` found errors.
    pub const FAILED: u8 = 1;
    /// Bad input: a workflow file with errors, unknown or missing params, bad arguments.
    pub const INVALID: u8 = 2;
    /// The state store or the system failed (unreadable or damaged state file, ...).
    pub const SYSTEM: u8 = 3;
    /// The run hit its deadline (as `timeout(1)` does).
    pub const TIMED_OUT: u8 = 124;
    /// The run was cancelled (Ctrl-C), as shells report SIGINT.
    pub const CANCELLED: u8 = 130;
}

/// Tandem runs DAG workflows with retries, timeouts and durable checkpoints.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about, long_about = None)]
pub struct Cli {
    /// Directory of the embedded state store (checkpoints, captured logs).
    #[arg(
        long,
        global = true,
        env = "TANDEM_STATE_DIR",
        default_value = ".tandem",
        value_name = "DIR"
    )]
    state_dir: PathBuf,

    /// Address of a Tandem server (`tandem serve`) for submit, status, cancel, watch, runs and
    /// cluster; a region's replicas as a comma-separated list URL,URL,... (calls go to the
    /// leader) [default for the commands that need a server: http://127.0.0.1:7233].
    #[arg(long, global = true, env = "TANDEM_SERVER", value_name = "URL")]
    server: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check workflow files; print every error of each file; exit 1 if any has errors.
    Validate {
        /// Workflow files (YAML).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run a workflow to completion, with live progress and a summary.
    Run(run::RunArgs),
    /// Continue a run whose process died, from its checkpoints.
    Resume(run::ResumeArgs),
    /// List runs, newest first (with --server: a server's runs).
    Runs(runs::RunsArgs),
    /// Register a workflow file with a server and start a run of it; print the run id.
    Submit(submit::SubmitArgs),
    /// Show a run on a server, with its tasks.
    Status(status::StatusArgs),
    /// Ask a run on a server to stop.
    Cancel(cancel::CancelArgs),
    /// Follow a run on a server with live progress until it ends.
    Watch(watch::WatchArgs),
    /// A region's replicas and leader (`tandem cluster status`).
    Cluster(cluster::ClusterArgs),
    /// Show a run's tasks: state, attempts, times, exit codes, outputs.
    Show(show::ShowArgs),
    /// Print the captured stdout/stderr of a task's attempt.
    Logs(logs::LogsArgs),
    /// Print a workflow's task graph as Graphviz DOT or Mermaid.
    Graph(graph::GraphArgs),
    /// Print the JSON Schema of the workflow file format (for editor completion).
    Schema,
    /// Run the engine of a region as a gRPC server over PostgreSQL (see `region.toml` in the README).
    Serve(serve_config::ServeArgs),
    /// Stream the active region's checkpoints into this standby region's store (one process
    /// per region; idles while the region is active). Reads `region.toml` like `serve`.
    Replicate(replicate::ReplicateArgs),
    /// Cross-region disaster recovery: status, promote, rejoin, switchover over the regions
    /// of a DR topology file.
    Dr(dr::DrArgs),
    /// Measure scheduler throughput and memory on standard workloads.
    Bench(bench::BenchArgs),
    /// Internal (`tandem bench`): an SDK worker whose handler returns at once; stops when
    /// stdin closes.
    #[command(hide = true)]
    BenchWorker(bench::worker::BenchWorkerArgs),
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
}

/// An error of a command, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// Message for stderr (already complete; printed as is).
    pub message: String,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn invalid(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::INVALID,
            message: message.to_string(),
        }
    }

    /// Store or system failure (exit 3).
    pub fn system(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::SYSTEM,
            message: message.to_string(),
        }
    }
}

impl From<tandem_engine::store::StoreError> for Failure {
    fn from(error: tandem_engine::store::StoreError) -> Failure {
        use tandem_engine::store::StoreError;
        match error {
            StoreError::RunNotFound { .. } => Failure::invalid(error),
            other => Failure::system(other),
        }
    }
}

/// Parses a duration flag like `10s` or `250ms`.
pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    tandem_dsl::duration::parse_duration(text)
}

/// Opens the state store of `state_dir`, creating it.
pub fn open_store(state_dir: &StateDir) -> Result<SqliteStore, Failure> {
    SqliteStore::open(&state_dir.store_file()).map_err(Failure::from)
}

/// Opens the existing state store of `state_dir` (for read-only commands).
pub fn open_existing_store(state_dir: &StateDir) -> Result<SqliteStore, Failure> {
    SqliteStore::open_existing(&state_dir.store_file()).map_err(Failure::from)
}

/// A multi-threaded tokio runtime (shell attempts are spawned from its worker threads, which
/// live as long as the runtime: see the PDEATHSIG note in the shell executor).
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::system(format!("cannot start the async runtime: {error}")))
}

/// Entry point: parse, run the command, map the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `tandem serve` sets up its own logs and trace export from its settings.
    let _telemetry = match cli.command {
        Command::Serve(_) | Command::Replicate(_) => None,
        _ => telemetry::init("warn", None, "tandem").ok(),
    };
    let state_dir = StateDir::new(cli.state_dir);
    let result = match cli.command {
        Command::Validate { files } => validate::validate(&files),
        Command::Run(args) => run::run(&state_dir, args),
        Command::Resume(args) => run::resume(&state_dir, args),
        Command::Runs(args) => runs::runs(&state_dir, cli.server.as_deref(), args),
        Command::Submit(args) => submit::submit(cli.server.as_deref(), args),
        Command::Status(args) => status::status(cli.server.as_deref(), args),
        Command::Cancel(args) => cancel::cancel(cli.server.as_deref(), args),
        Command::Watch(args) => watch::watch_command(cli.server.as_deref(), args),
        Command::Cluster(args) => cluster::cluster(cli.server.as_deref(), args),
        Command::Show(args) => show::show(&state_dir, args),
        Command::Logs(args) => logs::logs(&state_dir, args),
        Command::Graph(args) => graph::graph(args),
        Command::Schema => graph::schema(),
        Command::Serve(args) => serve::serve(state_dir.root(), args),
        Command::Replicate(args) => replicate::replicate(state_dir.root(), args),
        Command::Dr(args) => dr::dr(args),
        Command::Bench(args) => bench::bench(args),
        Command::BenchWorker(args) => bench::worker::bench_worker(cli.server.as_deref(), args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
