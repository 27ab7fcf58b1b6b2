//! Checks of a worker task's fields: `worker` (queue and type names), `heartbeat_timeout`,
//! and which task fields go with which action (`worker` excludes `run`, `env` and
//! `working_dir`; `input` and `heartbeat_timeout` need `worker`).

use std::time::Duration;

use crate::duration::format_duration;
use crate::limits;
use crate::names::NameKind;
use crate::raw::{RawTask, RawWorker, Sp};
use crate::report::{Path, Report};
use crate::spec::TaskAction;
use crate::yaml::Pos;

use super::fields;

/// The checked `worker` of a task.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WorkerPlan {
    /// `worker.queue`.
    pub queue: String,
    /// `worker.type`.
    pub task_type: String,
    /// `heartbeat_timeout`, or its default.
    pub heartbeat_timeout: Duration,
}

/// Checks the fields of task `id` (at `path`) that depend on whether it runs in a worker.
/// Returns the worker plan of a valid worker task, `None` otherwise (not a worker task, or
/// an error was reported).
pub(super) fn check(
    report: &mut Report,
    id: &str,
    raw: &RawTask,
    path: &Path<'_>,
) -> Option<WorkerPlan> {
    let Some(worker) = &raw.worker else {
        refuse_without_worker(report, id, raw, path);
        return None;
    };
    let worker_path = path.key("worker");
    if let Some(run) = &raw.run {
        report.error_with_help(
            worker.pos,
            &worker_path,
            format!(
                "task `{id}` has both `worker` and `run` (at line {}, column {}): a task runs \
                 either in a remote worker or as a shell command",
                run.pos.line, run.pos.column
            ),
            "remove `run` to run the task in a worker, or `worker` to run it as a shell command",
        );
    } else {
        if let Some(env) = &raw.env {
            report.error_with_help(
                env.pos,
                &path.key("env"),
                format!(
                    "`env` sets environment variables of a shell command, but task `{id}` runs \
                     in a worker"
                ),
                "pass values to the worker through `input`",
            );
        }
        if let Some(dir) = &raw.working_dir {
            report.error_with_help(
                dir.pos,
                &path.key("working_dir"),
                format!(
                    "`working_dir` is the directory of a shell command, but task `{id}` runs in \
                     a worker"
                ),
                "remove `working_dir`: a worker runs in its own process",
            );
        }
    }
    let heartbeat_timeout = match &raw.heartbeat_timeout {
        None => Some(TaskAction::DEFAULT_HEARTBEAT_TIMEOUT),
        Some(text) => {
            let timeout_path = path.key("heartbeat_timeout");
            fields::duration(report, text, &timeout_path, true).and_then(|timeout| {
                if timeout <= limits::MAX_HEARTBEAT_TIMEOUT {
                    return Some(timeout);
                }
                report.error(
                    text.pos,
                    &timeout_path,
                    format!(
                        "expected a heartbeat timeout of at most {}, found `{}`",
                        format_duration(limits::MAX_HEARTBEAT_TIMEOUT),
                        text.value.0
                    ),
                );
                None
            })
        }
    };
    let (queue, task_type) = names(report, worker, &worker_path);
    if raw.run.is_some() {
        return None;
    }
    Some(WorkerPlan {
        queue: queue?,
        task_type: task_type?,
        heartbeat_timeout: heartbeat_timeout?,
    })
}

/// Checks `worker.queue` and `worker.type`; returns the valid ones.
fn names(
    report: &mut Report,
    worker: &RawWorker,
    path: &Path<'_>,
) -> (Option<String>, Option<String>) {
    let mut check = |name: Option<&Sp<crate::raw::WorkerName>>, kind: NameKind, key: &str| {
        let name = name?;
        let text = Sp::new(name.value.0.clone(), name.pos);
        fields::name(report, kind, &text, &path.key(key)).then_some(text.value)
    };
    let queue = check(worker.queue.as_ref(), NameKind::Queue, "queue");
    let task_type = check(worker.task_type.as_ref(), NameKind::TaskType, "type");
    (queue, task_type)
}

/// Reports `input` and `heartbeat_timeout` on a task without `worker`.
fn refuse_without_worker(report: &mut Report, id: &str, raw: &RawTask, path: &Path<'_>) {
    let shell = raw.run.is_some();
    let add_worker = "add `worker: { queue: QUEUE, type: TYPE }` to run the task in a worker";
    let misplaced: [(&str, Option<Pos>, &str, &str); 2] = [
        (
            "input",
            raw.input.as_ref().map(|input| input.pos),
            "the input of a worker task",
            "a shell task gets its values through `run` and `env`; remove `input`",
        ),
        (
            "heartbeat_timeout",
            raw.heartbeat_timeout.as_ref().map(|timeout| timeout.pos),
            "how often a worker must heartbeat",
            "a shell task is not heartbeated (`timeout` bounds its attempts); remove \
             `heartbeat_timeout`",
        ),
    ];
    for (field, pos, what, shell_help) in misplaced {
        if let Some(pos) = pos {
            report.error_with_help(
                pos,
                &path.key(field),
                format!("`{field}` is {what}, but task `{id}` has no `worker`"),
                if shell { shell_help } else { add_worker },
            );
        }
    }
}
