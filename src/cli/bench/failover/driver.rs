//! [`RunDriver`]: keeps the region busy during the failover benchmark: one run of the chain
//! after the other, each started with an idempotency key (so the SDK may send the start again
//! across a failover) and watched until it finished, which must be `succeeded` with every task
//! succeeded.

use std::time::Duration;

use tandem_api::{Client, RunState, StartRun};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::super::Failure;

/// Longest one run may take (a chain run takes seconds; each failover adds about the TTL).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The background loop of runs (aborted on drop).
#[derive(Debug)]
pub struct RunDriver {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<Vec<String>, Failure>>>,
}

impl RunDriver {
    /// Starts the loop on the current runtime: runs of (`workflow`, `version`), each expected
    /// to end `succeeded` with `tasks` tasks succeeded.
    pub fn start(client: Client, workflow: String, version: String, tasks: u32) -> RunDriver {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(drive(client, workflow, version, tasks, stopped));
        RunDriver {
            stop,
            task: Some(task),
        }
    }

    /// Whether the loop has ended (it only ends by itself on an error).
    pub fn has_ended(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Lets the current run finish, ends the loop and returns the ids of the runs it saw
    /// succeed, in order.
    ///
    /// Errors: a run did not succeed, a call failed, or a run took over 5 minutes.
    pub async fn finish(mut self) -> Result<Vec<String>, Failure> {
        let _ = self.stop.send(true);
        let Some(task) = self.task.take() else {
            return Err(Failure::system("the run loop was already finished"));
        };
        task.await
            .map_err(|error| Failure::system(format!("the run loop panicked: {error}")))?
    }
}

impl Drop for RunDriver {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The loop: start, wait, check; again until `stopped` says so.
async fn drive(
    client: Client,
    workflow: String,
    version: String,
    tasks: u32,
    stopped: watch::Receiver<bool>,
) -> Result<Vec<String>, Failure> {
    let mut succeeded = Vec::new();
    // Each bench has a fresh database; the pid only makes the keys easy to recognise.
    let prefix = format!("bench-failover-{}", std::process::id());
    while !*stopped.borrow() {
        let key = format!("{prefix}-{}", succeeded.len() + 1);
        let run = tokio::time::timeout(RUN_TIMEOUT, async {
            let started = client
                .start_run(
                    StartRun::new(&workflow)
                        .version(&version)
                        .idempotency_key(&key),
                )
                .await
                .map_err(|error| Failure::system(format!("StartRun ({key}): {error}")))?;
            client
                .wait_run(&started.run_id)
                .await
                .map_err(|error| Failure::system(format!("WatchRun {}: {error}", started.run_id)))
        })
        .await
        .map_err(|_| {
            Failure::system(format!(
                "run {key} did not finish within {} s",
                RUN_TIMEOUT.as_secs()
            ))
        })??;
        if run.state != RunState::Succeeded || run.counts.succeeded != tasks {
            return Err(Failure::system(format!(
                "run {}: expected succeeded with {tasks} tasks succeeded, found {} with {} of {} succeeded{}",
                run.run_id,
                run.state.as_str(),
                run.counts.succeeded,
                run.counts.total,
                run.reason
                    .as_deref()
                    .map(|reason| format!(" ({reason})"))
                    .unwrap_or_default()
            )));
        }
        succeeded.push(run.run_id);
    }
    Ok(succeeded)
}
