//! Tandem's workflow file format.
//!
//! A workflow file (YAML) goes through one road only: text → spanned YAML tree → raw structs
//! (unknown fields refused) → [`compile`], which runs every check and returns *all* errors at
//! once (each with file:line:column and a field path) or a [`WorkflowSpec`]: the validated
//! graph with defaults resolved and matrices expanded. Nothing downstream sees an unvalidated
//! workflow.
//!
//! ```
//! let spec = tandem_dsl::compile(
//!     "etl.yaml",
//!     "name: etl\ntasks:\n  extract: { run: ./extract.sh }\n  load: { needs: [extract], run: ./load.sh }\n",
//! )
//! .unwrap();
//! assert_eq!(spec.tasks[1].upstream, vec![0]);
//!
//! let errors = tandem_dsl::compile("etl.yaml", "name: etl\ntasks:\n  load: { needs: [extract] }\n")
//!     .unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     "etl.yaml:3:19: error: tasks.load.needs[0]: task `load` needs `extract`, which is not a \
//!      task of this workflow\n1 error found"
//! );
//! ```

mod check;
mod convert;
mod cron;
pub mod diagnostic;
pub mod duration;
pub mod export;
mod expr;
pub mod input;
pub mod limits;
mod locate;
mod names;
mod raw;
mod report;
pub mod schedule;
mod schema;
pub mod spec;
pub mod template;
mod yaml;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use diagnostic::{Diagnostic, Diagnostics};
pub use duration::{format_duration, parse_duration};
pub use export::{to_dot, to_mermaid};
pub use input::InputValue;
pub use schedule::{Catchup, ScheduleSpec};
pub use schema::json_schema;
pub use spec::{
    Jitter, ParamError, ParamSpec, RetryPolicy, TaskAction, TaskIndex, TaskSpec, TriggerRule,
    WorkflowSpec,
};
pub use template::{RenderError, Segment, Template, TemplateContext};

use report::Report;

/// Compiles the text of a workflow file. `file` is the name used in messages.
///
/// Returns the validated [`WorkflowSpec`] (version = SHA-256 of `text`), or every error found,
/// sorted by position. Never panics, whatever the input; input larger than
/// [`limits::MAX_FILE_BYTES`] or beyond the other [`limits`] is refused with an error.
pub fn compile(file: &str, text: &str) -> Result<WorkflowSpec, Diagnostics> {
    let mut report = Report::new(file);
    if text.len() > limits::MAX_FILE_BYTES {
        report.error(
            yaml::Pos::default(),
            &report::Path::ROOT,
            format!(
                "the file is {} bytes, more than the limit of {} bytes (64 MiB)",
                text.len(),
                limits::MAX_FILE_BYTES
            ),
        );
        return report.finish(None);
    }
    let root = match yaml::parse(file, text) {
        Ok(root) => root,
        Err(diagnostic) => return Err(Diagnostics(vec![diagnostic])),
    };
    let raw = convert::workflow(&root, text, &mut report);
    drop(root);
    let spec = check::workflow(&raw, text, version(text), &mut report);
    report.finish(spec)
}

/// Reads and compiles the workflow file at `path` (its display form names it in messages).
///
/// Errors: those of [`compile`]; a file that cannot be read (missing, not UTF-8, ...) gives
/// one diagnostic at line 0, column 0 naming the path and the OS error.
pub fn compile_file(path: &Path) -> Result<WorkflowSpec, Diagnostics> {
    let file = path.display().to_string();
    let unreadable = |message: String| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message,
            help: None,
        }])
    };
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.len() > limits::MAX_FILE_BYTES as u64 => {
            return Err(unreadable(format!(
                "the file is {} bytes, more than the limit of {} bytes (64 MiB)",
                metadata.len(),
                limits::MAX_FILE_BYTES
            )));
        }
        Ok(_) => {}
        Err(error) => return Err(unreadable(format!("cannot read `{file}`: {error}"))),
    }
    match std::fs::read_to_string(path) {
        Ok(text) => compile(&file, &text),
        Err(error) => Err(unreadable(format!("cannot read `{file}`: {error}"))),
    }
}

/// The workflow version: lowercase hex SHA-256 of the file text.
fn version(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
