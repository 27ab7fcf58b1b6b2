//! `tandem runs --server URL`: list the runs of a Tandem server, newest first.

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use futures::TryStreamExt;
use serde_json::json;
use tandem_api::{ListRuns, Run};

use super::{Failure, OutputFormat, exit, remote, runtime, table};

/// Largest page the server serves.
const MAX_PAGE_SIZE: usize = 1000;

/// Which runs to list and how to print them.
#[derive(Debug)]
pub struct RemoteRuns<'a> {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this state (snake_case, as `tandem runs --status` takes it).
    pub status: Option<&'a str>,
    /// At most this many runs (0: all).
    pub limit: usize,
    /// Start after the page this token ends (`--page-token`, printed by an earlier listing).
    pub page_token: Option<String>,
    /// Output format.
    pub output: OutputFormat,
}

/// Lists the runs of `server`, fetching pages until `limit` runs or the last page. When the
/// limit cut the listing, the token that continues it is printed on stderr.
pub fn runs(server: &str, request: RemoteRuns<'_>) -> Result<u8, Failure> {
    let state = request.status.map(remote::parse_run_state).transpose()?;
    let page_size = match request.limit {
        0 => MAX_PAGE_SIZE,
        limit => limit.min(MAX_PAGE_SIZE),
    };
    let list = ListRuns {
        workflow: request.workflow,
        state,
        page_size: page_size as u32,
        page_token: request.page_token,
    };
    let (runs, next_token) = runtime()?.block_on(async {
        let client = remote::connect(server).await?;
        collect(&client, list, request.limit).await
    })?;
    match request.output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = runs.iter().map(json_row).collect();
            let text = serde_json::to_string_pretty(&rows).map_err(Failure::system)?;
            println!("{text}");
        }
        OutputFormat::Table => {
            if runs.is_empty() {
                println!("no runs on {server}");
            } else {
                println!("{}", runs_table(&runs));
            }
        }
    }
    if let Some(token) = next_token {
        eprintln!("more runs: add --page-token {token}");
    }
    Ok(exit::OK)
}

/// Up to `limit` runs (0: all) from the pages of `list`, and the token of the next page when
/// the limit cut the listing at a page end.
async fn collect(
    client: &tandem_api::Client,
    list: ListRuns,
    limit: usize,
) -> Result<(Vec<Run>, Option<String>), Failure> {
    if limit == 0 {
        let runs: Vec<Run> = client.list_all_runs(list).try_collect().await?;
        return Ok((runs, None));
    }
    let mut runs = Vec::new();
    let mut list = list;
    loop {
        // Never ask for more than the limit leaves, so a page token continues exactly there.
        list.page_size = (limit - runs.len()).min(MAX_PAGE_SIZE) as u32;
        let page = client.list_runs(list.clone()).await?;
        let fetched = page.runs.len();
        runs.extend(page.runs);
        match page.next_page_token {
            Some(token) if runs.len() >= limit => {
                runs.truncate(limit);
                return Ok((runs, Some(token)));
            }
            Some(token) if fetched > 0 => list.page_token = Some(token),
            _ => {
                runs.truncate(limit);
                return Ok((runs, None));
            }
        }
    }
}

fn json_row(run: &Run) -> serde_json::Value {
    json!({
        "run_id": run.run_id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.state,
        "created_at": table::format_timestamp(run.created_at_unix_ms),
        "finished_at": run.finished_at_unix_ms.map(table::format_timestamp),
        "reason": run.reason,
    })
}

fn runs_table(runs: &[Run]) -> Table {
    let mut out = Table::new();
    out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "RUN ID", "WORKFLOW", "STATUS", "TASKS", "CREATED", "DURATION",
    ]);
    for run in runs {
        let status = if run.cancelling && !run.state.is_final() {
            format!("{} (cancelling)", run.state)
        } else {
            run.state.to_string()
        };
        out.add_row(vec![
            run.run_id.clone(),
            run.workflow.clone(),
            status,
            format!("{}/{}", run.counts.finished(), run.counts.total),
            table::format_timestamp(run.created_at_unix_ms),
            run.finished_at_unix_ms
                .map(|end| table::format_millis(end - run.created_at_unix_ms))
                .unwrap_or_else(|| "-".to_string()),
        ]);
    }
    out
}
