//! `tandem logs RUN_ID TASK [--attempt N]`: an attempt's captured stdout and stderr.

use std::io::Write;

use clap::{Args, ValueEnum};
use tandem_engine::checkpoint::RunId;
use tandem_engine::paths::{AttemptFile, StateDir};

use super::show::load_run;
use super::{Failure, exit};

/// Which captured stream to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stream {
    /// The attempt's stdout to our stdout, its stderr to our stderr.
    Both,
    /// Only stdout.
    Stdout,
    /// Only stderr (printed to our stdout).
    Stderr,
}

/// Arguments of `tandem logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run.
    #[arg(value_name = "RUN_ID")]
    run_id: RunId,
    /// Task instance id, as `tandem show` prints it (quote matrix ids: 'transform[shard=1]').
    #[arg(value_name = "TASK")]
    task: String,
    /// Attempt number [default: the last attempt].
    #[arg(long, value_name = "N")]
    attempt: Option<u32>,
    /// Which stream.
    #[arg(long, value_enum, default_value_t = Stream::Both)]
    stream: Stream,
}

/// `tandem logs`.
pub fn logs(state_dir: &StateDir, args: LogsArgs) -> Result<u8, Failure> {
    let (_, state) = load_run(state_dir, args.run_id)?;
    let Some(index) = state.spec.task_index(&args.task) else {
        let ids: Vec<&str> = state.spec.tasks.iter().map(|t| t.id.as_str()).collect();
        let shown = ids
            .iter()
            .take(20)
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>();
        let more = if ids.len() > 20 {
            format!(" and {} more", ids.len() - 20)
        } else {
            String::new()
        };
        return Err(Failure::invalid(format!(
            "run {} has no task `{}`; its tasks are {}{more}",
            args.run_id,
            args.task,
            shown.join(", ")
        )));
    };
    let attempts = state.task(index).attempts.len() as u32;
    if attempts == 0 {
        return Err(Failure::invalid(format!(
            "task `{}` of run {} has not started yet (state {})",
            args.task,
            args.run_id,
            state.task(index).status.as_str()
        )));
    }
    let attempt = args.attempt.unwrap_or(attempts);
    if attempt == 0 || attempt > attempts {
        return Err(Failure::invalid(format!(
            "task `{}` of run {} has attempts 1 to {attempts}; found --attempt {attempt}",
            args.task, args.run_id
        )));
    }
    match &state.spec.task(index).action {
        tandem_dsl::TaskAction::Empty => {
            eprintln!(
                "task `{}` is an empty task: it runs no command and has no output",
                args.task
            );
            return Ok(exit::OK);
        }
        tandem_dsl::TaskAction::Worker {
            queue, task_type, ..
        } => {
            eprintln!(
                "task `{}` runs in a worker (worker: {queue}/{task_type}): its logs are the \
                 worker's; `tandem show {}` has its error and outputs",
                args.task, args.run_id
            );
            return Ok(exit::OK);
        }
        tandem_dsl::TaskAction::Shell { .. } => {}
    }
    let read = |file| {
        let path = state_dir.attempt_file(args.run_id, &args.task, attempt, file);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(Failure::system(format!(
                "cannot read {}: {error}",
                path.display()
            ))),
        }
    };
    let write = |bytes: &[u8], to_stderr: bool| {
        let result = if to_stderr {
            std::io::stderr().write_all(bytes)
        } else {
            std::io::stdout().write_all(bytes)
        };
        result.map_err(|error| Failure::system(format!("cannot write output: {error}")))
    };
    match args.stream {
        Stream::Both => {
            write(&read(AttemptFile::Stdout)?, false)?;
            write(&read(AttemptFile::Stderr)?, true)?;
        }
        Stream::Stdout => write(&read(AttemptFile::Stdout)?, false)?,
        Stream::Stderr => write(&read(AttemptFile::Stderr)?, false)?,
    }
    Ok(exit::OK)
}
