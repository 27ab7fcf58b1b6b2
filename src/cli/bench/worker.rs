//! `tandem bench-worker` (hidden): the SDK worker process of the `serve-fanout-1k-workers`
//! benchmark. A [`tandem_api::Worker`] of one queue whose one handler returns empty outputs at
//! once. It runs until its stdin closes (the bench holds the other end, so it also stops when
//! the bench dies) or SIGINT/SIGTERM, then prints what it did as JSON on stdout.

use std::time::Duration;

use clap::Args;
use tandem_api::{ClientConfig, Outputs, TaskContext, TaskError, Worker};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

use super::super::{Failure, exit, runtime};
use super::process::WorkerCounts;

/// Arguments of `tandem bench-worker`.
#[derive(Debug, Args)]
pub struct BenchWorkerArgs {
    /// The task queue to poll.
    #[arg(long, default_value = "bench", value_name = "NAME")]
    queue: String,
    /// The task type handled (a handler that returns empty outputs at once).
    #[arg(long = "type", default_value = "noop", value_name = "TYPE")]
    task_type: String,
    /// Most attempts running at once.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
}

/// How long running handlers may finish after the stop (they finish at once).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `tandem bench-worker`: polls `args.queue` on the server `server` until stdin closes.
///
/// Errors: no `--server`, a configuration the SDK refuses (exit 2), or a poll the server
/// refuses for good (exit 3).
pub fn bench_worker(server: Option<&str>, args: BenchWorkerArgs) -> Result<u8, Failure> {
    let server = server.ok_or_else(|| {
        Failure::invalid("bench-worker: expected the server's address in --server URL, found none")
    })?;
    let config = ClientConfig::parse(server)
        .map_err(|error| Failure::invalid(format!("bench-worker: {error}")))?;
    let worker = Worker::builder(config, args.queue.clone())
        .handler(args.task_type.clone(), noop)
        .concurrency(args.concurrency as usize)
        .shutdown_grace(SHUTDOWN_GRACE)
        .build()
        .map_err(|error| Failure::invalid(format!("bench-worker: {error}")))?;
    let runtime = runtime()?;
    let stats = runtime.block_on(async {
        let stop = stop_signal()?;
        worker.run_until(stop).await.map_err(|error| {
            Failure::system(format!(
                "bench-worker: polling queue `{}` on {server} failed: {error}",
                args.queue
            ))
        })
    });
    // A read of stdin may still block a thread of the runtime (after a signal): do not wait
    // for it.
    runtime.shutdown_background();
    let stats = stats?;
    let counts = WorkerCounts {
        leased: stats.leased,
        completed: stats.completed,
        not_completed: stats.failed + stats.released + stats.undelivered,
    };
    println!(
        "{}",
        serde_json::to_string(&counts).map_err(Failure::system)?
    );
    Ok(exit::OK)
}

/// The handler: no work, no outputs.
async fn noop(_task: TaskContext) -> Result<Outputs, TaskError> {
    Ok(Outputs::new())
}

/// Completes when stdin reaches its end (or fails), or at SIGINT or SIGTERM.
fn stop_signal() -> Result<impl Future<Output = ()>, Failure> {
    let install = |kind: SignalKind| {
        signal(kind).map_err(|error| Failure::system(format!("cannot handle signals: {error}")))
    };
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    Ok(async move {
        let stdin_closed = async {
            let mut stdin = tokio::io::stdin();
            let mut buffer = [0u8; 64];
            while let Ok(read) = stdin.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            () = stdin_closed => {}
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
