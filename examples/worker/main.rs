//! An example Tandem worker: serves the task queue `loaders` with two task types, used by
//! `examples/worker.yaml`.
//!
//! - `load_table`: input `{table, rows}` (`rows` a number or a numeric string). Simulates
//!   loading the rows in batches of 100, heartbeating its progress, and returns the output
//!   `rows_loaded` (and `table`). With `fail_attempts: N` in the input, its first N attempts
//!   fail (retryable) to show retries. Stops early when the run is cancelled.
//! - `checksum`: input `{table, rows}`; returns the output `checksum` (16 hex digits, a
//!   deterministic FNV-1a hash of the table's simulated rows) and `rows`.
//!
//! Run it next to `tandem serve` (see the README):
//!
//! ```sh
//! cargo run -p tandem-api --example worker -- --server http://127.0.0.1:7233 --concurrency 4
//! ```
//!
//! Ctrl-C (or SIGTERM) shuts it down gracefully: it stops polling, lets running attempts
//! finish for `--shutdown-grace`, and hands back the rest to the engine for a retry elsewhere.
//! A second Ctrl-C quits at once.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tandem_api::{ClientConfig, Outputs, TaskContext, TaskError, Worker};
use tokio::signal::unix::{SignalKind, signal};

/// Rows loaded per simulated batch.
const BATCH_ROWS: u64 = 100;
/// Most rows one `load_table` attempt accepts.
const MAX_ROWS: u64 = 1_000_000_000;

/// An example worker for the task queue `loaders` (task types `load_table` and `checksum`).
#[derive(Debug, Parser)]
#[command(name = "worker")]
struct Args {
    /// The Tandem server's address, or every replica of the region, comma-separated.
    #[arg(
        long,
        env = "TANDEM_SERVER",
        default_value = "http://127.0.0.1:7233",
        value_name = "URL"
    )]
    server: String,
    /// Most attempts running at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// The task queue to serve.
    #[arg(long, default_value = "loaders", value_name = "NAME")]
    queue: String,
    /// This worker's id as the server records it [default: HOSTNAME-PID].
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// Simulated time per batch of 100 rows in `load_table`.
    #[arg(long, default_value = "20ms", value_name = "DURATION", value_parser = humantime::parse_duration)]
    batch_delay: Duration,
    /// How long running attempts may go on after Ctrl-C before they are handed back.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let batch_delay = args.batch_delay;
    let config = match ClientConfig::parse(&args.server) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("worker: --server: {error}");
            return ExitCode::from(2);
        }
    };
    let endpoint = config.endpoints().join(",");
    let mut builder = Worker::builder(config, args.queue.as_str())
        .handler("load_table", move |task| load_table(task, batch_delay))
        .handler("checksum", checksum)
        .concurrency(args.concurrency as usize)
        .shutdown_grace(args.shutdown_grace);
    if let Some(worker_id) = args.worker_id {
        builder = builder.worker_id(worker_id);
    }
    let worker = match builder.build() {
        Ok(worker) => worker,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "worker {} serving queue `{}` of {} (concurrency {}); Ctrl-C stops it",
        worker.worker_id(),
        args.queue,
        endpoint,
        args.concurrency
    );
    match worker.run_until(shutdown_signal()).await {
        Ok(stats) => {
            eprintln!(
                "worker stopped: {} leased, {} completed, {} failed ({} handed back at shutdown), {} results not accepted",
                stats.leased, stats.completed, stats.failed, stats.released, stats.undelivered
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// Completes at the first SIGINT or SIGTERM; a second one exits the process at once (130).
async fn shutdown_signal() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("error: cannot install signal handlers; stop the worker with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("shutting down: no new attempts; running ones may finish (Ctrl-C again to quit now)");
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("quitting now; running attempts are retried after their heartbeat timeout");
        std::process::exit(130);
    });
}

/// `load_table`: simulates loading `rows` rows of `table` in batches, with progress heartbeats.
async fn load_table(task: TaskContext, batch_delay: Duration) -> Result<Outputs, TaskError> {
    let table = required_text(&task, "table")?;
    let rows = count(&task, "rows")?;
    let fail_attempts = match task.input().get("fail_attempts") {
        None => 0,
        Some(_) => count(&task, "fail_attempts")?,
    };
    if u64::from(task.attempt()) <= fail_attempts {
        return Err(TaskError::retryable(format!(
            "simulated failure of attempt {} of {} (input.fail_attempts = {fail_attempts})",
            task.attempt(),
            task.task_id()
        ))
        .with_type("simulated"));
    }
    tracing::info!(%table, rows, key = task.idempotency_key(), "loading");
    let mut loaded = 0;
    while loaded < rows {
        tokio::select! {
            reason = task.cancelled() => {
                return Err(TaskError::non_retryable(format!(
                    "stopped after {loaded} of {rows} rows of {table}: {reason}"
                ))
                .with_type("cancelled"));
            }
            () = tokio::time::sleep(batch_delay) => {}
        }
        loaded = (loaded + BATCH_ROWS).min(rows);
        task.heartbeat(format!(
            r#"{{"table":{},"rows_loaded":{loaded},"rows":{rows}}}"#,
            serde_json_string(&table)
        ));
    }
    Ok(Outputs::from([
        ("rows_loaded".to_string(), loaded.to_string()),
        ("table".to_string(), table),
    ]))
}

/// `checksum`: a deterministic hash of the table's simulated rows.
async fn checksum(task: TaskContext) -> Result<Outputs, TaskError> {
    let table = required_text(&task, "table")?;
    let rows = count(&task, "rows")?;
    // FNV-1a over `table:row` for every row: the same input always gives the same checksum.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for row in 0..rows {
        for byte in format!("{table}:{row}\n").bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        if row % 100_000 == 99_999 {
            // Long inputs: let other attempts run and keep the lease alive.
            task.heartbeat(format!(r#"{{"rows_hashed":{}}}"#, row + 1));
            tokio::task::yield_now().await;
        }
    }
    Ok(Outputs::from([
        ("checksum".to_string(), format!("{hash:016x}")),
        ("rows".to_string(), rows.to_string()),
    ]))
}

/// A non-empty string field of the input.
fn required_text(task: &TaskContext, field: &str) -> Result<String, TaskError> {
    match task.input().get(field) {
        Some(serde_json::Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(other) => Err(invalid_input(
            task,
            format!("input.{field}: expected a non-empty string, found {other}"),
        )),
        None => Err(invalid_input(
            task,
            format!("input.{field}: expected a non-empty string, found nothing"),
        )),
    }
}

/// A count field of the input: a number or a numeric string (templated values are strings),
/// 0..=1e9.
fn count(task: &TaskContext, field: &str) -> Result<u64, TaskError> {
    let value = task.input().get(field);
    let parsed = match value {
        Some(serde_json::Value::Number(number)) => number.as_u64(),
        Some(serde_json::Value::String(text)) => text.trim().parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(count) if count <= MAX_ROWS => Ok(count),
        _ => Err(invalid_input(
            task,
            format!(
                "input.{field}: expected a whole number 0..={MAX_ROWS} (or a string of one), found {}",
                value.map_or_else(|| "nothing".to_string(), ToString::to_string)
            ),
        )),
    }
}

fn invalid_input(task: &TaskContext, message: String) -> TaskError {
    TaskError::non_retryable(format!("task {}: {message}", task.task_id()))
        .with_type("invalid_input")
}

/// `text` as a JSON string literal.
fn serde_json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}
