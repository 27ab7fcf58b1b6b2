//! Tables and formatting shared by the commands that print runs.

use std::time::{Duration, UNIX_EPOCH};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use tandem_engine::checkpoint::{AttemptOutcome, UnixMillis};
use tandem_engine::scheduler::{RunState, TaskRuntime, TaskStatus, describe};

/// A table of the run's tasks in file order. With `max_rows`, tasks that did not succeed come
/// first and the rest is summarised in a last line.
pub fn tasks_table(state: &RunState, max_rows: Option<usize>) -> String {
    let mut order: Vec<usize> = (0..state.tasks.len()).collect();
    let limit = max_rows.unwrap_or(usize::MAX);
    if order.len() > limit {
        order.sort_by_key(|&index| state.tasks[index].status == TaskStatus::Succeeded);
    }
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "TASK", "STATE", "ATTEMPTS", "STARTED", "DURATION", "EXIT", "DETAIL",
    ]);
    // Wrap to the terminal's width, unless it is unknown or too narrow to be useful (a pty
    // without a size reports 0 columns).
    if table.width().is_some_and(|width| width >= 80) {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    for &index in order.iter().take(limit) {
        let task = &state.tasks[index];
        table.add_row(vec![
            state.spec.tasks[index].id.clone(),
            task.status.as_str().to_string(),
            task.attempts.len().to_string(),
            task.attempts
                .first()
                .map(|attempt| format_timestamp(attempt.started_at))
                .unwrap_or_else(|| "-".to_string()),
            task_duration(task),
            exit_status(task),
            match detail(task) {
                text if text.is_empty() => worker_label(&state.spec.tasks[index]).unwrap_or(text),
                text => text,
            },
        ]);
    }
    let mut text = table.to_string();
    if order.len() > limit {
        let hidden = order.len() - limit;
        text.push_str(&format!(
            "\n… and {hidden} more task{} (all succeeded or pending); `tandem show {}` lists every task",
            if hidden == 1 { "" } else { "s" },
            state.run_id
        ));
    }
    text
}

/// Wall time from the task's first attempt start to its end (or `-`).
pub fn task_duration(task: &TaskRuntime) -> String {
    match (task.attempts.first(), task.finished_at) {
        (Some(first), Some(end)) => format_millis(end - first.started_at),
        _ => "-".to_string(),
    }
}

/// The last attempt's exit code, or the signal that killed it.
pub fn exit_status(task: &TaskRuntime) -> String {
    match task
        .attempts
        .last()
        .and_then(|attempt| attempt.outcome.as_ref())
    {
        Some(AttemptOutcome::Succeeded { .. }) => "0".to_string(),
        Some(AttemptOutcome::Failed {
            exit_code: Some(code),
            ..
        }) => code.to_string(),
        Some(AttemptOutcome::Failed {
            signal: Some(signal),
            ..
        }) => format!("signal {signal}"),
        _ => "-".to_string(),
    }
}

/// `worker: QUEUE/TYPE` for a worker task (what it runs, where a shell task has a command).
pub fn worker_label(task: &tandem_dsl::TaskSpec) -> Option<String> {
    match &task.action {
        tandem_dsl::TaskAction::Worker {
            queue, task_type, ..
        } => Some(format!("worker: {queue}/{task_type}")),
        _ => None,
    }
}

/// Why a task is where it is: its reason, its last attempt's error, or its outputs.
pub fn detail(task: &TaskRuntime) -> String {
    let text = if let Some(reason) = &task.reason {
        reason.clone()
    } else if let TaskStatus::WaitingRetry { attempt, due } = task.status {
        format!("attempt {attempt} due at {}", format_timestamp(due))
    } else if !task.outputs.is_empty() {
        task.outputs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        match task
            .attempts
            .last()
            .and_then(|attempt| attempt.outcome.as_ref())
        {
            Some(outcome) if !outcome.is_success() => describe(outcome),
            _ => String::new(),
        }
    };
    truncate(&text, 120)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// A wall-clock time as RFC 3339 UTC with milliseconds (`2026-11-21T23:49:16.123Z`).
pub fn format_timestamp(at: UnixMillis) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(at.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A length of time in ms, as `1.234s` below a minute and `2m03s` above.
pub fn format_millis(millis: i64) -> String {
    format_elapsed(Duration::from_millis(millis.max(0) as u64))
}

/// A length of time, as `0.012s`, `12.345s`, `2m03s` or `1h02m03s`.
pub fn format_elapsed(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    if secs < 60 {
        format!("{:.3}s", elapsed.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m{:02}s", secs / 3600, (secs / 60) % 60, secs % 60)
    }
}
