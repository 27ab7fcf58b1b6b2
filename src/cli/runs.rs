//! `tandem runs`: list runs, newest first.

use clap::Args;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::json;
use tandem_engine::paths::StateDir;
use tandem_engine::runner::is_alive;
use tandem_engine::store::{CheckpointStore, RunFilter, RunStatus};

use super::{Failure, OutputFormat, open_existing_store, runtime, table};

/// Arguments of `tandem runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this workflow.
    #[arg(long, value_name = "NAME")]
    workflow: Option<String>,
    /// Only runs in this state: running, succeeded, failed, cancelled, timed_out.
    #[arg(long, alias = "state", value_name = "STATE", value_parser = parse_status)]
    status: Option<RunStatus>,
    /// At most this many runs (0: all).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// With --server: continue a listing after the page this token (printed by it) ends.
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    RunStatus::parse(text).ok_or_else(|| {
        format!("expected one of running, succeeded, failed, cancelled, timed_out; found `{text}`")
    })
}

/// `tandem runs`: the runs of the local state dir, or with `--server` those of a server.
pub fn runs(state_dir: &StateDir, server: Option<&str>, args: RunsArgs) -> Result<u8, Failure> {
    if let Some(server) = server {
        return super::remote_runs::runs(
            server,
            super::remote_runs::RemoteRuns {
                workflow: args.workflow,
                status: args.status.map(RunStatus::as_str),
                limit: args.limit,
                page_token: args.page_token,
                output: args.output,
            },
        );
    }
    if args.page_token.is_some() {
        return Err(Failure::invalid(
            "--page-token continues a server's listing: give the server with --server URL",
        ));
    }
    let store = open_existing_store(state_dir)?;
    let filter = RunFilter {
        workflow: args.workflow,
        status: args.status,
        limit: args.limit,
        before: None,
    };
    let runs = runtime()?.block_on(store.list_runs(&filter))?;
    match args.output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = runs
                .iter()
                .map(|run| {
                    json!({
                        "run_id": run.run_id,
                        "workflow": run.workflow,
                        "version": run.version,
                        "status": run.status,
                        "created_at": table::format_timestamp(run.created_at),
                        "finished_at": run.finished_at.map(table::format_timestamp),
                    })
                })
                .collect();
            let text = serde_json::to_string_pretty(&rows).map_err(Failure::system)?;
            println!("{text}");
        }
        OutputFormat::Table => {
            if runs.is_empty() {
                println!("no runs in {}", state_dir.root().display());
                return Ok(super::exit::OK);
            }
            let mut out = Table::new();
            out.load_style(UTF8_FULL_CONDENSED)
                .set_header(vec!["RUN ID", "WORKFLOW", "STATUS", "CREATED", "DURATION"]);
            for run in &runs {
                let status = if run.status == RunStatus::Running && !is_alive(&run.owner) {
                    "running (process gone: resume it)".to_string()
                } else {
                    run.status.to_string()
                };
                out.add_row(vec![
                    run.run_id.to_string(),
                    run.workflow.clone(),
                    status,
                    table::format_timestamp(run.created_at),
                    run.finished_at
                        .map(|end| table::format_millis(end - run.created_at))
                        .unwrap_or_else(|| "-".to_string()),
                ]);
            }
            println!("{out}");
        }
    }
    Ok(super::exit::OK)
}
