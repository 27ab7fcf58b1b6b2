//! The ticker task: fires the due ticks of every scheduled workflow, then sleeps until the
//! next tick, a registration, or a retry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tandem_dsl::WorkflowSpec;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::due::{DueTicks, due_ticks_watched};
use super::{Clock, ScheduleError, ScheduleTarget, SystemClock};
use crate::checkpoint::UnixMillis;
use crate::store::{CheckpointStore, CreateOutcome, StoreError, StoredWorkflow};

/// How the ticker runs.
#[derive(Clone)]
pub struct TickerConfig {
    /// The current time (wall clock, ms since the Unix epoch). Default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
    /// The longest the ticker sleeps between two looks at the workflows, even with no tick
    /// due sooner: it also catches wall-clock jumps and registrations nobody notified it of.
    /// Default 60 s.
    pub max_sleep: Duration,
    /// The wait before looking again after a failure (a store error, a target that could not
    /// start a tick); it doubles after each failure in a row up to `retry_max`. Default 1 s.
    pub retry_initial: Duration,
    /// The longest wait between retries. Default 30 s.
    pub retry_max: Duration,
}

impl Default for TickerConfig {
    fn default() -> Self {
        TickerConfig {
            clock: Arc::new(SystemClock),
            max_sleep: Duration::from_secs(60),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for TickerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickerConfig")
            .field("max_sleep", &self.max_sleep)
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .finish_non_exhaustive()
    }
}

/// What the ticker has done so far, published after every look at the workflows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickerStatus {
    /// Looks at the workflows completed (successful or not).
    pub passes: u64,
    /// The next tick of any scheduled workflow (ms since the Unix epoch), as of the last look.
    pub next_tick: Option<UnixMillis>,
    /// Scheduled workflows (latest versions with a usable `schedule`) at the last look.
    pub scheduled: usize,
    /// Why the last look failed (or one of its ticks could not be started); `None` when it
    /// did not.
    pub last_error: Option<String>,
}

/// The running ticker. Dropping the handle stops the task (as does [`TickerHandle::stop`]).
#[derive(Debug)]
pub struct TickerHandle {
    notify: Arc<Notify>,
    status: watch::Receiver<TickerStatus>,
    task: JoinHandle<()>,
}

impl TickerHandle {
    /// Tells the ticker that a workflow was registered (or replaced): it looks at the
    /// workflows again now instead of at its next tick.
    pub fn notify_registered(&self) {
        self.notify.notify_one();
    }

    /// The ticker's status, updated after every look at the workflows.
    pub fn status(&self) -> watch::Receiver<TickerStatus> {
        self.status.clone()
    }

    /// Stops the ticker and waits until its task has ended. A tick being fired at that moment
    /// may or may not get its run; the store's once-per-tick rule makes either outcome safe.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for TickerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the ticker on the current tokio runtime (panics outside one, like `tokio::spawn`).
///
/// Each look: lists the workflows (`store.list_workflows()`: the latest version of each name),
/// compiles new versions on a blocking thread (cached by version), reads each scheduled
/// workflow's cursor (`store.last_schedule_tick`, but never before the latest version's
/// `registered_at`: ticks before a version was registered are not that version's), computes
/// the due ticks ([`super::due_ticks_watched`], watching since the ticker started) and fires
/// them through `target`, oldest first, stopping at a workflow's first failure so no later
/// tick overtakes it. Then it sleeps until the next tick, [`TickerHandle::notify_registered`],
/// `max_sleep`, or after a failure the backoff. Errors are logged with `tracing`; the ticker
/// never stops on its own.
pub fn spawn(
    store: Arc<dyn CheckpointStore>,
    target: Arc<dyn ScheduleTarget>,
    config: TickerConfig,
) -> TickerHandle {
    let notify = Arc::new(Notify::new());
    let (status_tx, status) = watch::channel(TickerStatus::default());
    let ticker = Ticker {
        watching_since: config.clock.now(),
        store,
        target,
        config,
        notify: Arc::clone(&notify),
        status: status_tx,
        specs: HashMap::new(),
        unusable: HashSet::new(),
        reported_skips: HashMap::new(),
    };
    let task = tokio::spawn(ticker.run());
    TickerHandle {
        notify,
        status,
        task,
    }
}

/// The state of the ticker task.
struct Ticker {
    store: Arc<dyn CheckpointStore>,
    target: Arc<dyn ScheduleTarget>,
    config: TickerConfig,
    notify: Arc<Notify>,
    status: watch::Sender<TickerStatus>,
    /// When the ticker started: ticks after this fell due while it watched.
    watching_since: UnixMillis,
    /// Compiled workflow versions (`None`: the stored text does not compile any more).
    specs: HashMap<String, Option<Arc<WorkflowSpec>>>,
    /// Versions the target called [`ScheduleError::Invalid`]: left alone.
    unusable: HashSet<String>,
    /// The cursor at which skipped ticks of a workflow were last logged (logged once).
    reported_skips: HashMap<String, UnixMillis>,
}

/// The outcome of one look at the workflows.
struct Pass {
    next: Option<UnixMillis>,
    scheduled: usize,
    /// Why a tick could not be started, if one could not.
    error: Option<String>,
}

/// A scheduled workflow at one look: its latest version, compiled, and its cursor.
struct Scheduled {
    workflow: StoredWorkflow,
    spec: Arc<WorkflowSpec>,
    cursor: UnixMillis,
}

impl Ticker {
    async fn run(mut self) {
        let mut backoff = self.config.retry_initial;
        loop {
            let (pass, failure) = match self.pass().await {
                Ok(pass) => {
                    let failure = pass.error.clone();
                    (Some(pass), failure)
                }
                Err(error) => {
                    tracing::warn!(
                        %error,
                        retry_in = ?backoff,
                        "schedule ticker: cannot list the registered workflows"
                    );
                    (None, Some(error.to_string()))
                }
            };
            let next = pass.as_ref().and_then(|pass| pass.next);
            let mut delay = self.config.max_sleep;
            if let Some(next) = next {
                let until = next.saturating_sub(self.config.clock.now()).max(0);
                delay = delay.min(Duration::from_millis(until.unsigned_abs()));
            }
            if failure.is_some() {
                delay = delay.min(backoff);
                backoff = backoff.saturating_mul(2).min(self.config.retry_max);
            } else {
                backoff = self.config.retry_initial;
            }
            self.status.send_modify(|status| {
                status.passes += 1;
                status.last_error = failure;
                if let Some(pass) = &pass {
                    status.next_tick = pass.next;
                    status.scheduled = pass.scheduled;
                }
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.notify.notified() => {}
            }
        }
    }

    /// One look at the workflows: fires every due tick. Errors: listing the workflows
    /// failed (nothing was fired).
    async fn pass(&mut self) -> Result<Pass, StoreError> {
        let workflows = self.store.list_workflows().await?;
        self.compile_new_versions(&workflows).await;
        let mut error = None;
        let mut scheduled = Vec::new();
        for workflow in workflows {
            let Some(Some(spec)) = self.specs.get(&workflow.version) else {
                continue;
            };
            if spec.schedule.is_none() || self.unusable.contains(&workflow.version) {
                continue;
            }
            let spec = Arc::clone(spec);
            match self.store.last_schedule_tick(&workflow.name).await {
                Ok(last) => {
                    let cursor = last.map_or(workflow.registered_at, |last| {
                        last.max(workflow.registered_at)
                    });
                    scheduled.push(Scheduled {
                        workflow,
                        spec,
                        cursor,
                    });
                }
                Err(failure) => {
                    tracing::warn!(
                        workflow = %workflow.name,
                        error = %failure,
                        "schedule ticker: cannot read the workflow's last tick"
                    );
                    error = Some(failure.to_string());
                }
            }
        }
        let count = scheduled.len();
        let now = self.config.clock.now();
        let since = self.watching_since;
        // Searching a long backlog of ticks takes a while: off the async threads.
        let plans = tokio::task::spawn_blocking(move || {
            scheduled
                .into_iter()
                .filter_map(|scheduled| {
                    let schedule = scheduled.spec.schedule.as_ref()?;
                    let due = due_ticks_watched(schedule, scheduled.cursor, now, since);
                    Some((scheduled, due))
                })
                .collect::<Vec<_>>()
        })
        .await;
        let plans = match plans {
            Ok(plans) => plans,
            Err(join) => {
                tracing::error!(error = %join, "schedule ticker: computing the due ticks failed");
                return Ok(Pass {
                    next: None,
                    scheduled: count,
                    error: Some(format!("computing the due ticks failed: {join}")),
                });
            }
        };
        let mut next: Option<UnixMillis> = None;
        for (scheduled, due) in plans {
            next = match (next, due.next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.report_skips(&scheduled, &due);
            if let Err(failure) = self.fire(&scheduled, &due.fire).await {
                error = Some(failure);
            }
        }
        Ok(Pass {
            next,
            scheduled: count,
            error,
        })
    }

    /// Compiles the versions not seen before (on a blocking thread) and forgets the versions
    /// that are not the latest any more.
    async fn compile_new_versions(&mut self, workflows: &[StoredWorkflow]) {
        let latest: HashSet<&str> = workflows.iter().map(|w| w.version.as_str()).collect();
        self.specs
            .retain(|version, _| latest.contains(version.as_str()));
        self.unusable
            .retain(|version| latest.contains(version.as_str()));
        let names: HashSet<&str> = workflows.iter().map(|w| w.name.as_str()).collect();
        self.reported_skips
            .retain(|name, _| names.contains(name.as_str()));
        let new: Vec<StoredWorkflow> = workflows
            .iter()
            .filter(|workflow| !self.specs.contains_key(&workflow.version))
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        let compiled = tokio::task::spawn_blocking(move || {
            new.into_iter()
                .map(|workflow| {
                    let result = tandem_dsl::compile(&workflow.file_name, &workflow.source);
                    (workflow, result)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let compiled = match compiled {
            Ok(compiled) => compiled,
            Err(join) => {
                // Nothing cached: the next look compiles them again.
                tracing::error!(error = %join, "schedule ticker: compiling workflows failed");
                return;
            }
        };
        for (workflow, result) in compiled {
            let spec = match result {
                Ok(spec) => Some(Arc::new(spec)),
                Err(diagnostics) => {
                    // Stored text compiled when it was registered; a newer build may be
                    // stricter. Its schedule (if any) is left alone until a new version.
                    tracing::error!(
                        workflow = %workflow.name,
                        version = %workflow.version,
                        errors = %diagnostics,
                        "schedule ticker: the registered workflow does not compile; its schedule is not run"
                    );
                    None
                }
            };
            self.specs.insert(workflow.version, spec);
        }
    }

    /// Logs the ticks a workflow's schedule skips, once per cursor.
    fn report_skips(&mut self, scheduled: &Scheduled, due: &DueTicks) {
        if due.skipped == 0
            || self.reported_skips.get(&scheduled.workflow.name) == Some(&scheduled.cursor)
        {
            return;
        }
        self.reported_skips
            .insert(scheduled.workflow.name.clone(), scheduled.cursor);
        let schedule = scheduled.spec.schedule.as_ref();
        tracing::warn!(
            workflow = %scheduled.workflow.name,
            skipped = due.skipped,
            after = %time(scheduled.cursor),
            catchup = %schedule.map(|s| s.catchup.as_str()).unwrap_or_default(),
            catchup_window = ?schedule.map(|s| s.catchup_window),
            "schedule ticker: skipping missed ticks (older than the catch-up window, or not the latest with `catchup: latest`)"
        );
    }

    /// Fires `ticks` of one workflow, oldest first, stopping at the first failure. Returns
    /// the failure, if any.
    async fn fire(&mut self, scheduled: &Scheduled, ticks: &[UnixMillis]) -> Result<(), String> {
        let workflow = &scheduled.workflow;
        for &tick in ticks {
            match self
                .target
                .fire(workflow, Arc::clone(&scheduled.spec), tick)
                .await
            {
                Ok(CreateOutcome::Created(_)) => {
                    tracing::info!(workflow = %workflow.name, tick = %time(tick), "started the run of a schedule tick");
                }
                Ok(CreateOutcome::Existing(run_id)) => {
                    tracing::debug!(workflow = %workflow.name, tick = %time(tick), %run_id, "the schedule tick has its run already");
                }
                Err(ScheduleError::Invalid(reason)) => {
                    tracing::error!(
                        workflow = %workflow.name,
                        version = %workflow.version,
                        tick = %time(tick),
                        %reason,
                        "schedule ticker: this workflow version cannot start runs; its schedule is left alone until another version is registered"
                    );
                    self.unusable.insert(workflow.version.clone());
                    return Ok(());
                }
                Err(error) => {
                    tracing::warn!(
                        workflow = %workflow.name,
                        tick = %time(tick),
                        %error,
                        "schedule ticker: cannot start the run of a schedule tick; retrying"
                    );
                    return Err(format!(
                        "workflow `{}`, tick {}: {error}",
                        workflow.name,
                        time(tick)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A time for logs: RFC 3339 in UTC, or the raw ms when out of range.
fn time(millis: UnixMillis) -> String {
    chrono::DateTime::from_timestamp_millis(millis).map_or_else(
        || format!("{millis} ms"),
        |time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}
