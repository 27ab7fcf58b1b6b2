//! `tandem validate FILE...`: check files and print every error of each.

use std::path::PathBuf;

use super::{Failure, exit};

/// `tandem validate`: prints `FILE: ok (workflow `NAME`, N tasks)` (with `, M on workers:
/// loaders/load_table, ...` when some tasks run in workers) or every error of the file; exit 1
/// when any file has errors.
pub fn validate(files: &[PathBuf]) -> Result<u8, Failure> {
    let mut code = exit::OK;
    for file in files {
        match tandem_dsl::compile_file(file) {
            Ok(spec) => {
                let instances = spec.tasks.len();
                println!(
                    "{}: ok (workflow `{}`, {instances} task{}{})",
                    file.display(),
                    spec.name,
                    if instances == 1 { "" } else { "s" },
                    worker_summary(&spec)
                );
            }
            Err(diagnostics) => {
                eprintln!("{diagnostics}");
                code = exit::FAILED;
            }
        }
    }
    Ok(code)
}

/// `, M on workers: QUEUE/TYPE, ...` (each pair once, in file order), or nothing when no task
/// runs in a worker.
fn worker_summary(spec: &tandem_dsl::WorkflowSpec) -> String {
    let mut count = 0;
    let mut seen = std::collections::HashSet::new();
    let mut pairs: Vec<String> = Vec::new();
    for task in &spec.tasks {
        if let tandem_dsl::TaskAction::Worker {
            queue, task_type, ..
        } = &task.action
        {
            count += 1;
            if seen.insert((queue, task_type)) {
                pairs.push(format!("{queue}/{task_type}"));
            }
        }
    }
    if count == 0 {
        return String::new();
    }
    format!(", {count} on workers: {}", pairs.join(", "))
}
