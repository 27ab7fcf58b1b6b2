//! `tandem status RUN_ID`: a run on a Tandem server, with its tasks; and the tables of
//! server runs that `submit --wait` and `watch` print too.

use clap::Args;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use tandem_api::{Run, RunState, Task, TaskState};

use super::{Failure, OutputFormat, exit, remote, runtime, table};

/// Arguments of `tandem status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run (its id as `tandem submit` printed it).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// Output format (JSON: the run with its tasks; times in ms since the Unix epoch).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// `tandem status RUN_ID`: exit 0 whatever the run's state; an unknown run is exit 2.
pub fn status(server: Option<&str>, args: StatusArgs) -> Result<u8, Failure> {
    let server = remote::server_address(server);
    let run = runtime()?.block_on(async {
        let client = remote::connect(server).await?;
        client.get_run(&args.run_id).await.map_err(Failure::from)
    })?;
    match args.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&run).map_err(Failure::system)?;
            println!("{text}");
        }
        OutputFormat::Table => {
            println!("{}", summary(&run));
            println!("{}", tasks_table(&run, None));
        }
    }
    Ok(exit::OK)
}

/// A few lines on the run: id, workflow, state, times, params, counts.
pub fn summary(run: &Run) -> String {
    let mut lines = vec![format!(
        "run {} of workflow `{}` (version {})",
        run.run_id,
        run.workflow,
        short_version(&run.version)
    )];
    let mut state = run.state.to_string();
    if run.cancelling && run.state == RunState::Running {
        state.push_str(" (cancelling)");
    }
    if let Some(reason) = &run.reason {
        state.push_str(&format!(": {reason}"));
    }
    lines.push(format!("state:    {state}"));
    let mut times = format!(
        "created:  {}",
        table::format_timestamp(run.created_at_unix_ms)
    );
    if let Some(finished) = run.finished_at_unix_ms {
        times.push_str(&format!(
            "   finished: {} (after {})",
            table::format_timestamp(finished),
            table::format_millis(finished - run.created_at_unix_ms)
        ));
    }
    lines.push(times);
    if !run.params.is_empty() {
        let params: Vec<String> = run
            .params
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        lines.push(format!("params:   {}", truncate(&params.join(", "), 200)));
    }
    let counts = &run.counts;
    let mut parts = vec![format!("{}/{} done", counts.finished(), counts.total)];
    for (count, name) in [
        (counts.running, "running"),
        (counts.waiting_retry, "retrying"),
        (counts.pending, "pending"),
        (counts.succeeded, "succeeded"),
        (counts.failed, "failed"),
        (counts.skipped, "skipped"),
        (counts.upstream_failed, "upstream_failed"),
        (counts.cancelled, "cancelled"),
    ] {
        if count > 0 {
            parts.push(format!("{name} {count}"));
        }
    }
    lines.push(format!("tasks:    {}", parts.join(" · ")));
    lines.join("\n")
}

/// The first 12 hex digits of a version (as `tandem run` prints it).
pub fn short_version(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// A table of the run's tasks in file order. With `max_rows`, tasks that did not succeed come
/// first and the rest is summarised in a last line.
pub fn tasks_table(run: &Run, max_rows: Option<usize>) -> String {
    let mut order: Vec<&Task> = run.tasks.iter().collect();
    let limit = max_rows.unwrap_or(usize::MAX);
    if order.len() > limit {
        order.sort_by_key(|task| task.state == TaskState::Succeeded);
    }
    let mut out = Table::new();
    out.load_style(UTF8_FULL_CONDENSED)
        .set_header(vec!["TASK", "STATE", "ATTEMPTS", "FINISHED", "DETAIL"]);
    if out.width().is_some_and(|width| width >= 80) {
        out.set_content_arrangement(ContentArrangement::Dynamic);
    }
    for task in order.iter().take(limit) {
        out.add_row(vec![
            task.task_id.clone(),
            task.state.to_string(),
            task.attempts.to_string(),
            task.finished_at_unix_ms
                .map(table::format_timestamp)
                .unwrap_or_else(|| "-".to_string()),
            detail(task),
        ]);
    }
    let mut text = out.to_string();
    if order.len() > limit {
        let hidden = order.len() - limit;
        text.push_str(&format!(
            "\n… and {hidden} more task{} (all succeeded or pending); `tandem status {}` lists every task",
            if hidden == 1 { "" } else { "s" },
            run.run_id
        ));
    }
    text
}

/// Why a task is where it is: its reason, or its outputs.
fn detail(task: &Task) -> String {
    let text = match &task.reason {
        Some(reason) => reason.clone(),
        None => task
            .outputs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    truncate(&text, 120)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_api::TaskCounts;

    fn run() -> Run {
        Run {
            run_id: "0190abcd".to_string(),
            workflow: "etl".to_string(),
            version: "0123456789abcdef".to_string(),
            state: RunState::Failed,
            reason: Some("task load failed".to_string()),
            params: [("day".to_string(), "mon".to_string())].into(),
            created_at_unix_ms: 1_700_000_000_000,
            finished_at_unix_ms: Some(1_700_000_001_500),
            counts: TaskCounts {
                total: 2,
                succeeded: 1,
                failed: 1,
                ..TaskCounts::default()
            },
            tasks: vec![
                Task {
                    task_id: "prepare".to_string(),
                    state: TaskState::Succeeded,
                    attempts: 1,
                    reason: None,
                    outputs: [("rows".to_string(), "3".to_string())].into(),
                    finished_at_unix_ms: Some(1_700_000_000_500),
                },
                Task {
                    task_id: "load".to_string(),
                    state: TaskState::Failed,
                    attempts: 3,
                    reason: Some("attempt 3: invalid_input: no table".to_string()),
                    outputs: Default::default(),
                    finished_at_unix_ms: Some(1_700_000_001_500),
                },
            ],
            epoch: 1,
            cancelling: false,
        }
    }

    #[test]
    fn summary_names_state_reason_times_and_counts() {
        let text = summary(&run());
        assert!(
            text.contains("run 0190abcd of workflow `etl` (version 0123456789ab)"),
            "{text}"
        );
        assert!(text.contains("failed: task load failed"), "{text}");
        assert!(text.contains("after 1.500s"), "{text}");
        assert!(text.contains("params:   day=mon"), "{text}");
        assert!(text.contains("2/2 done · succeeded 1 · failed 1"), "{text}");
    }

    #[test]
    fn table_puts_unsuccessful_tasks_first_when_cut() {
        let text = tasks_table(&run(), Some(1));
        assert!(text.contains("load") && !text.contains("rows=3"), "{text}");
        assert!(text.contains("… and 1 more task "), "{text}");
        let full = tasks_table(&run(), None);
        assert!(
            full.contains("rows=3") && full.contains("no table"),
            "{full}"
        );
    }
}
