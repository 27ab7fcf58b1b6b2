//! `tandem watch RUN_ID`: live progress of a run on a Tandem server until it ends (also what
//! `tandem submit --wait` shows).

use clap::Args;
use futures::StreamExt;
use tandem_api::{Client, Run};
use tandem_engine::runner::Progress;
use tandem_engine::scheduler::TaskCounts;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::progress::ProgressDisplay;
use super::{Failure, exit, remote, runtime, status, table};

/// Arguments of `tandem watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The run (its id as `tandem submit` printed it).
    #[arg(value_name = "RUN_ID")]
    run_id: String,
    /// Do not draw the progress bar (it is never drawn when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

/// `tandem watch RUN_ID`: exits with the run's exit code (0 succeeded, 1 failed, 124 timed
/// out, 130 cancelled); Ctrl-C stops watching (not the run) with 130.
pub fn watch_command(server: Option<&str>, args: WatchArgs) -> Result<u8, Failure> {
    let server = remote::server_address(server);
    runtime()?.block_on(async {
        let client = remote::connect(server).await?;
        follow_and_report(&client, &args.run_id, !args.no_progress).await
    })
}

/// Follows the run to its end with a progress bar, then prints its tasks and how it ended.
/// Returns the run's exit code, or 130 when Ctrl-C stopped the watching.
pub async fn follow_and_report(
    client: &Client,
    run_id: &str,
    show_progress: bool,
) -> Result<u8, Failure> {
    let Some(run) = follow(client, run_id, show_progress).await? else {
        eprintln!(
            "stopped watching; run {run_id} goes on: `tandem watch {run_id}` follows it again, `tandem cancel {run_id}` stops it"
        );
        return Ok(exit::CANCELLED);
    };
    println!("{}", status::tasks_table(&run, Some(20)));
    let took = run
        .finished_at_unix_ms
        .map(|end| format!(" in {}", table::format_millis(end - run.created_at_unix_ms)))
        .unwrap_or_default();
    let reason = run
        .reason
        .as_deref()
        .map(|reason| format!(": {reason}"))
        .unwrap_or_default();
    println!("run {} {}{took}{reason}", run.run_id, run.state);
    if run.state != tandem_api::RunState::Succeeded {
        println!("details: tandem status {}", run.run_id);
    }
    Ok(remote::exit_code(run.state))
}

/// Watches the run with a progress bar until it reaches a final state, and returns it with
/// its tasks; `None` when Ctrl-C (or SIGTERM) stopped the watching first.
async fn follow(
    client: &Client,
    run_id: &str,
    show_progress: bool,
) -> Result<Option<Run>, Failure> {
    let mut updates = std::pin::pin!(client.watch_run(run_id));
    let mut run = next_update(updates.next().await, run_id)?;
    let (progress_tx, progress_rx) = watch::channel(progress(&run));
    let display = ProgressDisplay::start(run.counts.total as usize, show_progress, progress_rx);
    // The display shows changes only: publish the first state once it listens.
    progress_tx.send_modify(|_| {});
    let mut stop = std::pin::pin!(stop_signal());
    while !run.state.is_final() {
        tokio::select! {
            update = updates.next() => match next_update(update, run_id) {
                Ok(next) => {
                    progress_tx.send_replace(progress(&next));
                    run = next;
                }
                Err(failure) => {
                    display.finish();
                    return Err(failure);
                }
            },
            () = &mut stop => {
                display.finish();
                return Ok(None);
            }
        }
    }
    display.finish();
    if run.tasks.is_empty() && run.counts.total > 0 {
        // The final update should carry the tasks; fetch them if it did not.
        run = client.get_run(run_id).await?;
    }
    Ok(Some(run))
}

/// The run of a watch update; the stream ending first means the server went away.
fn next_update(
    update: Option<Result<Run, tandem_api::ClientError>>,
    run_id: &str,
) -> Result<Run, Failure> {
    match update {
        Some(Ok(run)) => Ok(run),
        Some(Err(error)) => Err(Failure::from(error)),
        None => Err(Failure::system(format!(
            "the server ended the watch of run {run_id} before the run finished; `tandem watch {run_id}` follows it again"
        ))),
    }
}

/// The run's counts in the form the progress bar of `tandem run` shows.
fn progress(run: &Run) -> Progress {
    let counts = &run.counts;
    Progress {
        total: counts.total as usize,
        counts: TaskCounts {
            pending: counts.pending as usize,
            running: counts.running as usize,
            waiting_retry: counts.waiting_retry as usize,
            succeeded: counts.succeeded as usize,
            failed: counts.failed as usize,
            skipped: counts.skipped as usize,
            upstream_failed: counts.upstream_failed as usize,
            cancelled: counts.cancelled as usize,
        },
        cancelling: run.cancelling,
        checkpoints: 0,
        commits: 0,
    }
}

/// Completes at SIGINT or SIGTERM (pends forever if the handlers cannot be installed).
async fn stop_signal() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will end the process at once");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_api::{RunState, TaskCounts as ApiCounts};

    #[test]
    fn progress_carries_the_counts_and_cancelling() {
        let run = Run {
            run_id: "r".to_string(),
            workflow: "w".to_string(),
            version: "v".to_string(),
            state: RunState::Running,
            reason: None,
            params: Default::default(),
            created_at_unix_ms: 1,
            finished_at_unix_ms: None,
            counts: ApiCounts {
                total: 5,
                running: 2,
                succeeded: 2,
                failed: 1,
                ..ApiCounts::default()
            },
            tasks: Vec::new(),
            epoch: 1,
            cancelling: true,
        };
        let progress = progress(&run);
        assert_eq!(progress.total, 5);
        assert_eq!(progress.counts.terminal(), 3);
        assert_eq!(progress.counts.running, 2);
        assert!(progress.cancelling);
    }

    #[test]
    fn an_early_end_of_the_watch_is_a_system_failure() {
        let failure = next_update(None, "r1").expect_err("ended");
        assert_eq!(failure.code, exit::SYSTEM);
        assert!(failure.message.contains("r1"), "{}", failure.message);
    }
}
