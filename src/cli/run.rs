//! `tandem run` and `tandem resume`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tandem_engine::checkpoint::{RunEnd, RunId};
use tandem_engine::paths::StateDir;
use tandem_engine::runner::{
    self, Control, Prepared, Progress, RunClock, RunnerConfig, RunnerError, current_owner,
};
use tandem_engine::store::CheckpointStore;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use super::progress::ProgressDisplay;
use super::{Failure, exit, open_store, parse_duration_arg, runtime, table};

/// How attempts are executed (shared by `run` and `resume`).
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Most shell tasks running at once [default: number of CPUs]. Empty tasks take no slot.
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    parallelism: Option<u32>,
    /// Grace between SIGTERM and SIGKILL when a task is stopped (cancel, timeout).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration_arg)]
    kill_grace: Duration,
    /// Do not draw the progress bar (it is never drawn when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

/// Arguments of `tandem run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workflow file (YAML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Set a param, overriding its default (repeatable).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    #[command(flatten)]
    exec: ExecArgs,
}

/// Arguments of `tandem resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to continue.
    #[arg(value_name = "RUN_ID")]
    run_id: RunId,
    /// Take the run over even if its recorded owner process still looks alive (that process
    /// will then have every write refused and stop).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    exec: ExecArgs,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, found `{text}`")),
    }
}

/// `tandem run FILE`.
pub fn run(state_dir: &StateDir, args: RunArgs) -> Result<u8, Failure> {
    let source = std::fs::read_to_string(&args.file).map_err(|error| {
        Failure::invalid(format!("cannot read {}: {error}", args.file.display()))
    })?;
    let spec =
        tandem_dsl::compile(&args.file.display().to_string(), &source).map_err(|diagnostics| {
            Failure::invalid(format!("{}\n{diagnostics}", args.file.display()))
        })?;
    let store: Arc<dyn CheckpointStore> = Arc::new(open_store(state_dir)?);
    let runtime = runtime()?;
    runtime.block_on(async {
        let clock = RunClock::start();
        let prepared = runner::create_run(
            store.as_ref(),
            &current_owner(),
            &args.file,
            source,
            spec,
            &args.params,
            &clock,
        )
        .await
        .map_err(runner_failure)?;
        execute(store, prepared, state_dir, &args.exec, clock).await
    })
}

/// `tandem resume RUN_ID`.
pub fn resume(state_dir: &StateDir, args: ResumeArgs) -> Result<u8, Failure> {
    let store: Arc<dyn CheckpointStore> = Arc::new(super::open_existing_store(state_dir)?);
    let runtime = runtime()?;
    runtime.block_on(async {
        let clock = RunClock::start();
        let prepared =
            runner::resume_run(store.as_ref(), &current_owner(), args.run_id, args.force)
                .await
                .map_err(runner_failure)?;
        execute(store, prepared, state_dir, &args.exec, clock).await
    })
}

fn runner_failure(error: RunnerError) -> Failure {
    match error {
        RunnerError::Store(error) => error.into(),
        RunnerError::Params(_)
        | RunnerError::AlreadyFinished { .. }
        | RunnerError::OwnerAlive { .. } => Failure::invalid(error),
        RunnerError::Replay(_) => Failure::system(error),
    }
}

/// Drives a prepared run with progress, Ctrl-C handling and a final summary.
async fn execute(
    store: Arc<dyn CheckpointStore>,
    prepared: Prepared,
    state_dir: &StateDir,
    exec: &ExecArgs,
    clock: RunClock,
) -> Result<u8, Failure> {
    let run_id = prepared.run_id;
    let resumed = matches!(
        prepared.first,
        tandem_engine::scheduler::Input::Recover { .. }
    );
    let state = &prepared.state;
    println!(
        "run {run_id} ({} workflow `{}`, {} task{}, version {})",
        if resumed { "resuming" } else { "starting" },
        state.spec.name,
        state.tasks.len(),
        if state.tasks.len() == 1 { "" } else { "s" },
        &state.spec.version[..12.min(state.spec.version.len())],
    );
    let parallelism = exec.parallelism.map(|n| n as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let config = RunnerConfig {
        parallelism,
        kill_grace: exec.kill_grace,
        state_dir: state_dir.clone(),
        remote: None,
    };
    let total = state.tasks.len();
    let started = Instant::now();
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let display = ProgressDisplay::start(total, !exec.no_progress, progress_rx);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let signals = tokio::spawn(forward_signals(
        control_tx,
        display.clone(),
        exec.kill_grace,
    ));
    let result = runner::drive(store, prepared, config, clock, control_rx, progress_tx).await;
    signals.abort();
    display.finish();
    let finished = match result {
        Ok(finished) => finished,
        Err(error) => {
            return Err(Failure::system(format!(
                "{error}\nrun {run_id} stopped; what was committed is kept: `tandem resume {run_id}` continues it"
            )));
        }
    };
    println!("{}", table::tasks_table(&finished.state, Some(20)));
    println!(
        "run {run_id} {} in {}: {}",
        finished.end,
        table::format_elapsed(started.elapsed()),
        finished.reason
    );
    if finished.end != RunEnd::Succeeded {
        println!("details: tandem show {run_id}   logs: tandem logs {run_id} TASK");
    }
    Ok(match finished.end {
        RunEnd::Succeeded => exit::OK,
        RunEnd::Failed => exit::FAILED,
        RunEnd::TimedOut => exit::TIMED_OUT,
        RunEnd::Cancelled => exit::CANCELLED,
    })
}

/// First SIGINT/SIGTERM: cancel the run gracefully; the next one: kill running tasks now.
async fn forward_signals(
    controls: mpsc::UnboundedSender<Control>,
    display: ProgressDisplay,
    kill_grace: Duration,
) {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will not cancel cleanly");
        return;
    };
    let mut received = 0;
    loop {
        let name = tokio::select! {
            _ = interrupt.recv() => "Ctrl-C (SIGINT)",
            _ = terminate.recv() => "SIGTERM",
        };
        received += 1;
        if received == 1 {
            display.note(&format!(
                "{name}: cancelling the run; running tasks get SIGTERM, then SIGKILL after {} (press Ctrl-C again to kill them now)",
                tandem_dsl::duration::format_duration(kill_grace)
            ));
            let _ = controls.send(Control::Cancel {
                reason: format!("cancelled by {name}"),
            });
        } else {
            display.note(&format!("{name} again: killing running tasks now"));
            let _ = controls.send(Control::KillNow);
        }
    }
}
