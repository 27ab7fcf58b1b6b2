//! `tandem submit FILE`: register a workflow file with a Tandem server and start a run of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::{Failure, exit, remote, runtime, status, watch};

/// Arguments of `tandem submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Workflow file (YAML). The server validates it as `tandem validate` does.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Set a param, overriding its default (repeatable).
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Start at most one run for this key: submitting again with the same key returns the
    /// run the first submission started (at most 256 bytes).
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Follow the run with live progress until it ends and exit with its exit code (0
    /// succeeded, 1 failed, 124 timed out, 130 cancelled).
    #[arg(long)]
    wait: bool,
    /// With --wait: do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// `KEY=VALUE` (the same rule as `tandem run --param`).
fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, found `{text}`")),
    }
}

/// `tandem submit FILE`: prints the run id on stdout (details on stderr); exit 0, or with
/// `--wait` the run's exit code.
pub fn submit(server: Option<&str>, args: SubmitArgs) -> Result<u8, Failure> {
    let server = remote::server_address(server);
    let source = std::fs::read_to_string(&args.file).map_err(|error| {
        Failure::invalid(format!("cannot read {}: {error}", args.file.display()))
    })?;
    let file_name = args.file.display().to_string();
    // A param given twice: the last one wins, as with `tandem run`.
    let params: BTreeMap<String, String> = args.params.into_iter().collect();
    runtime()?.block_on(async {
        let client = remote::connect(server).await?;
        let submitted = client
            .submit(source, file_name.as_str(), params, args.idempotency_key.clone())
            .await
            .map_err(|error| match error {
                tandem_api::ClientError::InvalidArgument { message, .. } => {
                    Failure::invalid(format!("{file_name}\n{message}"))
                }
                other => Failure::from(other),
            })?;
        let workflow = &submitted.workflow;
        let run = &submitted.run;
        if run.created {
            eprintln!(
                "run {} started on {server} (workflow `{}`, {} task{}, version {})",
                run.run_id,
                workflow.name,
                workflow.task_count,
                if workflow.task_count == 1 { "" } else { "s" },
                status::short_version(&run.version)
            );
        } else {
            eprintln!(
                "idempotency key `{}` was used before: run {} (version {}) was started then; nothing new started",
                args.idempotency_key.as_deref().unwrap_or_default(),
                run.run_id,
                status::short_version(&run.version)
            );
        }
        println!("{}", run.run_id);
        if !args.wait {
            return Ok(exit::OK);
        }
        watch::follow_and_report(&client, &run.run_id, !args.no_progress).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_need_a_key() {
        assert_eq!(
            parse_param("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_param("a="), Ok(("a".to_string(), String::new())));
        assert!(parse_param("=b").is_err());
        assert!(parse_param("ab").is_err());
    }
}
