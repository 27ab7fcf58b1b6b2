//! `tandem show RUN_ID`: a run's tasks with state, attempts, times, exit codes and outputs.

use clap::Args;
use serde_json::json;
use tandem_engine::checkpoint::RunId;
use tandem_engine::paths::StateDir;
use tandem_engine::runner::is_alive;
use tandem_engine::scheduler::{RunPhase, RunState, rebuild};
use tandem_engine::store::{CheckpointStore, RunSummary};

use super::{Failure, OutputFormat, open_existing_store, runtime, table};

/// Arguments of `tandem show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run.
    #[arg(value_name = "RUN_ID")]
    run_id: RunId,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// Loads a run's row and rebuilt state from the store of `state_dir`.
pub fn load_run(state_dir: &StateDir, run_id: RunId) -> Result<(RunSummary, RunState), Failure> {
    let store = open_existing_store(state_dir)?;
    runtime()?.block_on(async {
        let summary = store.run_summary(run_id).await?;
        let checkpoints = store.read_run(run_id).await?;
        let state = rebuild(run_id, &checkpoints).map_err(Failure::system)?;
        Ok((summary, state))
    })
}

/// `tandem show`.
pub fn show(state_dir: &StateDir, args: ShowArgs) -> Result<u8, Failure> {
    let (summary, state) = load_run(state_dir, args.run_id)?;
    let owner_alive = is_alive(&summary.owner);
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&to_json(&summary, &state, owner_alive))
                .map_err(Failure::system)?;
            println!("{text}");
        }
        OutputFormat::Table => print_table(&summary, &state, owner_alive),
    }
    Ok(super::exit::OK)
}

fn print_table(summary: &RunSummary, state: &RunState, owner_alive: bool) {
    println!("run       {}", summary.run_id);
    println!(
        "workflow  {} (version {})  file {}",
        state.spec.name,
        &state.spec.version[..12.min(state.spec.version.len())],
        state.source_path
    );
    let status = match &state.phase {
        RunPhase::Finished { end, reason, .. } => format!("{end}: {reason}"),
        RunPhase::Cancelling { reason, .. } => format!("cancelling: {reason}"),
        RunPhase::Running if owner_alive => format!("running ({})", summary.owner),
        RunPhase::Running => format!(
            "running, but its process ({}) is gone: `tandem resume {}` continues it",
            summary.owner, summary.run_id
        ),
    };
    println!("status    {status}");
    println!("created   {}", table::format_timestamp(state.created_at));
    if let RunPhase::Finished { at, .. } = &state.phase {
        println!(
            "finished  {} (after {})",
            table::format_timestamp(*at),
            table::format_millis(at - state.created_at)
        );
    }
    if !state.params.is_empty() {
        let params: Vec<String> = state
            .params
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        println!("params    {}", params.join(" "));
    }
    let counts = &state.counts;
    println!(
        "tasks     {} total: {} succeeded, {} failed, {} skipped, {} upstream_failed, {} cancelled, {} running, {} pending",
        state.tasks.len(),
        counts.succeeded,
        counts.failed,
        counts.skipped,
        counts.upstream_failed,
        counts.cancelled,
        counts.running + counts.waiting_retry,
        counts.pending
    );
    println!("{}", table::tasks_table(state, None));
}

fn to_json(summary: &RunSummary, state: &RunState, owner_alive: bool) -> serde_json::Value {
    let (reason, finished_at) = match &state.phase {
        RunPhase::Finished { reason, at, .. } => (Some(reason.clone()), Some(*at)),
        RunPhase::Cancelling { reason, .. } => (Some(reason.clone()), None),
        RunPhase::Running => (None, None),
    };
    let tasks: Vec<serde_json::Value> = state
        .tasks
        .iter()
        .zip(&state.spec.tasks)
        .map(|(task, spec)| {
            let attempts: Vec<serde_json::Value> = task
                .attempts
                .iter()
                .map(|attempt| {
                    json!({
                        "attempt": attempt.number,
                        "started_at": table::format_timestamp(attempt.started_at),
                        "finished_at": attempt.finished_at.map(table::format_timestamp),
                        "outcome": attempt.outcome,
                        "pid": attempt.process.map(|(pid, _)| pid),
                    })
                })
                .collect();
            let mut task_json = json!({
                "id": spec.id,
                "state": task.status.as_str(),
                "attempts": attempts,
                "started_at": task.attempts.first().map(|attempt| table::format_timestamp(attempt.started_at)),
                "finished_at": task.finished_at.map(table::format_timestamp),
                "exit_code": task.attempts.last().and_then(|attempt| match &attempt.outcome {
                    Some(tandem_engine::checkpoint::AttemptOutcome::Succeeded { .. }) => Some(0),
                    Some(tandem_engine::checkpoint::AttemptOutcome::Failed { exit_code, .. }) => *exit_code,
                    _ => None,
                }),
                "outputs": task.outputs,
                "reason": task.reason,
            });
            if let tandem_dsl::TaskAction::Worker { queue, task_type, .. } = &spec.action {
                task_json["worker"] = json!({ "queue": queue, "type": task_type });
            }
            task_json
        })
        .collect();
    json!({
        "run_id": summary.run_id,
        "workflow": state.spec.name,
        "version": state.spec.version,
        "file": state.source_path,
        "status": summary.status,
        "reason": reason,
        "created_at": table::format_timestamp(state.created_at),
        "finished_at": finished_at.map(table::format_timestamp),
        "params": state.params,
        "owner": { "host": summary.owner.host, "pid": summary.owner.pid, "alive": owner_alive },
        "tasks": tasks,
    })
}
