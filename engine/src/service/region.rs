//! The engine of one region: the runs it drives, and how runs are started, resumed,
//! cancelled and observed.
//!
//! Every non-terminal run of the store is driven by exactly one task of this process
//! ([`crate::runner::drive`]); [`Region::resume_all`] takes over the runs left by a previous
//! process at start. A driver that stops on a store error is restarted from the checkpoints
//! with backoff, so an outage of the database pauses runs rather than abandoning them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_api::proto;
use tandem_dsl::WorkflowSpec;
use tokio::sync::{mpsc, watch};

use super::config::ServiceConfig;
use super::convert;
use super::error::ServiceError;
use crate::checkpoint::{Event, RunId};
use crate::executor::remote::TaskQueues;
use crate::paths::StateDir;
use crate::runner::{
    Control, Prepared, Progress, RunClock, RunnerConfig, RunnerError, current_owner, drive,
    resume_run,
};
use crate::scheduler::{Input, RunState, rebuild};
use crate::store::{
    CheckpointStore, CreateOutcome, Owner, RunFilter, RunStatus, StoreError, StoredWorkflow,
};

/// A run driven by this process.
struct ActiveRun {
    controls: mpsc::UnboundedSender<Control>,
    progress: watch::Receiver<Progress>,
    outcome: watch::Receiver<Option<Arc<proto::Run>>>,
    base: Arc<proto::Run>,
}

/// What a watcher of a run driven by this process follows (see [`Region::watch_active`]).
pub struct ActiveWatch {
    /// The run as it was when its driver started, without tasks.
    pub base: Arc<proto::Run>,
    /// The driver's progress, published after every commit; closed when the driver stops.
    pub progress: watch::Receiver<Progress>,
    /// The run's final view with its tasks, set once the driver has finished the run; the
    /// sender is dropped without a value when the driver stopped on an error instead.
    pub outcome: watch::Receiver<Option<Arc<proto::Run>>>,
}

struct Inner {
    config: ServiceConfig,
    store: Arc<dyn CheckpointStore>,
    queues: TaskQueues,
    owner: Owner,
    clock: RunClock,
    runs: Mutex<HashMap<RunId, ActiveRun>>,
    /// Compiled workflows by version (the text's hash), so starting a run does not compile.
    specs: Mutex<HashMap<String, Arc<WorkflowSpec>>>,
}

/// Most compiled workflows kept by a region (the cache is emptied when it is full).
const MAX_CACHED_SPECS: usize = 256;

/// One region's engine (cheap to clone; clones share everything).
#[derive(Clone)]
pub struct Region {
    inner: Arc<Inner>,
}

/// A workflow registered by [`Region::register`].
#[derive(Debug, Clone)]
pub struct Registered {
    /// What was stored.
    pub workflow: StoredWorkflow,
    /// Task instances after matrix expansion.
    pub task_count: usize,
    /// False when this version was registered before.
    pub created: bool,
}

/// A run started by [`Region::start`].
#[derive(Debug, Clone)]
pub struct Started {
    /// The run.
    pub run_id: RunId,
    /// False when the idempotency key matched an earlier run.
    pub created: bool,
    /// The workflow version it runs.
    pub version: String,
}

impl Region {
    /// A region engine over `store`, with remote attempts going through `queues`.
    pub fn new(config: ServiceConfig, store: Arc<dyn CheckpointStore>, queues: TaskQueues) -> Self {
        Region {
            inner: Arc::new(Inner {
                config,
                store,
                queues,
                owner: current_owner(),
                clock: RunClock::start(),
                runs: Mutex::new(HashMap::new()),
                specs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        &self.inner.config.region
    }

    /// The remote executor's task queues.
    pub fn queues(&self) -> &TaskQueues {
        &self.inner.queues
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.inner.store
    }

    /// Number of runs this process drives now.
    pub fn active_runs(&self) -> usize {
        self.runs().len()
    }

    fn specs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WorkflowSpec>>> {
        self.inner
            .specs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cache_spec(&self, spec: Arc<WorkflowSpec>) {
        let mut specs = self.specs();
        if specs.len() >= MAX_CACHED_SPECS {
            specs.clear();
        }
        specs.insert(spec.version.clone(), spec);
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, ActiveRun>> {
        // A panic while holding this lock would be a bug elsewhere; the map stays usable.
        self.inner
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes over every non-terminal run in the store (left by a previous process of this
    /// region) and drives it from its checkpoints: attempts that were in flight count as
    /// interrupted and follow their retry policy. Returns how many runs were resumed.
    pub async fn resume_all(&self) -> Result<usize, ServiceError> {
        let filter = RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        };
        let runs = self.inner.store.list_runs(&filter).await?;
        let mut resumed = 0;
        for summary in runs {
            if self.runs().contains_key(&summary.run_id) {
                continue;
            }
            match resume_run(
                self.inner.store.as_ref(),
                &self.inner.owner,
                summary.run_id,
                true,
            )
            .await
            {
                Ok(prepared) => {
                    self.spawn(prepared);
                    resumed += 1;
                }
                Err(RunnerError::AlreadyFinished { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(resumed)
    }

    /// Compiles `source` (the text of `file_name`) like `tandem validate` and stores it.
    ///
    /// Errors: [`ServiceError::InvalidWorkflow`] with every error of the file.
    pub async fn register(
        &self,
        file_name: String,
        source: String,
    ) -> Result<Registered, ServiceError> {
        let (spec, source, file_name) = tokio::task::spawn_blocking(move || {
            let compiled = tandem_dsl::compile(&file_name, &source);
            (compiled, source, file_name)
        })
        .await
        .map_err(|error| ServiceError::InvalidWorkflow(format!("the compiler failed: {error}")))?;
        let spec =
            spec.map_err(|diagnostics| ServiceError::InvalidWorkflow(diagnostics.to_string()))?;
        let workflow = StoredWorkflow {
            name: spec.name.clone(),
            version: spec.version.clone(),
            source,
            file_name,
            registered_at: self.inner.clock.now(),
        };
        let created = self.inner.store.put_workflow(&workflow).await?;
        let task_count = spec.tasks.len();
        self.cache_spec(Arc::new(spec));
        Ok(Registered {
            workflow,
            task_count,
            created,
        })
    }

    /// Starts a run of registered workflow `name` (its latest version when `version` is
    /// `None`) with `params` over its defaults. With `idempotency_key`, a second start with
    /// the same key returns the first run and starts nothing.
    ///
    /// Errors: [`ServiceError::WorkflowNotFound`], bad params (`INVALID_ARGUMENT`), store errors.
    pub async fn start(
        &self,
        name: &str,
        version: Option<&str>,
        params: Vec<(String, String)>,
        idempotency_key: Option<&str>,
    ) -> Result<Started, ServiceError> {
        let workflow = match self.inner.store.get_workflow(name, version).await {
            Ok(workflow) => workflow,
            Err(StoreError::WorkflowNotFound { .. }) => {
                return Err(ServiceError::WorkflowNotFound {
                    name: name.to_string(),
                    version: version.map(str::to_string),
                    region: self.name().to_string(),
                });
            }
            Err(error) => return Err(error.into()),
        };
        let cached = self.specs().get(&workflow.version).cloned();
        let spec = match cached {
            Some(spec) => spec,
            None => {
                let file_name = workflow.file_name.clone();
                let source = workflow.source.clone();
                let spec =
                    tokio::task::spawn_blocking(move || tandem_dsl::compile(&file_name, &source))
                        .await
                        .map_err(|error| {
                            ServiceError::InvalidWorkflow(format!("the compiler failed: {error}"))
                        })?
                        .map_err(|diagnostics| {
                            // Stored text compiled when it was registered; a newer build may
                            // be stricter.
                            ServiceError::InvalidWorkflow(diagnostics.to_string())
                        })?;
                let spec = Arc::new(spec);
                self.cache_spec(Arc::clone(&spec));
                spec
            }
        };
        let params = spec.resolve_params(&params).map_err(RunnerError::from)?;
        let run_id = RunId::new();
        let at = self.inner.clock.now();
        // Shell tasks of served runs work in the state directory: the recorded path is the file's
        // name there (a client's directories mean nothing on this machine).
        let base_name = Path::new(&workflow.file_name)
            .file_name()
            .map(|name| name.to_os_string())
            .unwrap_or_else(|| "workflow.yaml".into());
        let source_path = self.inner.config.state_dir.join(base_name);
        let source_path = std::path::absolute(&source_path)
            .unwrap_or(source_path)
            .display()
            .to_string();
        let created = Event::RunCreated {
            workflow: spec.name.clone(),
            version: spec.version.clone(),
            source_path: source_path.clone(),
            source: workflow.source,
            params: params.clone(),
            at,
        };
        let epoch = match idempotency_key {
            Some(key) => {
                match self
                    .inner
                    .store
                    .create_run_once(key, run_id, &self.inner.owner, created)
                    .await?
                {
                    CreateOutcome::Created(epoch) => epoch,
                    CreateOutcome::Existing(existing) => {
                        let summary = self.inner.store.run_summary(existing).await?;
                        return Ok(Started {
                            run_id: existing,
                            created: false,
                            version: summary.version,
                        });
                    }
                }
            }
            None => {
                self.inner
                    .store
                    .create_run(run_id, &self.inner.owner, created)
                    .await?
            }
        };
        let version = spec.version.clone();
        let state = RunState::new(run_id, spec, source_path, params, at);
        self.spawn(Prepared {
            run_id,
            epoch,
            state,
            first: Input::Start,
        });
        Ok(Started {
            run_id,
            created: true,
            version,
        })
    }

    /// Asks run `run_id` to stop. Returns its state after the request: still running while its
    /// attempts stop, or its final state when it had already finished.
    ///
    /// Errors: [`ServiceError::RunNotFound`].
    pub async fn cancel(&self, run_id: RunId, reason: String) -> Result<RunStatus, ServiceError> {
        let summary = self.summary(run_id).await?;
        if summary.status.is_terminal() {
            return Ok(summary.status);
        }
        let sent = self
            .runs()
            .get(&run_id)
            .map(|run| run.controls.send(Control::Cancel { reason }).is_ok())
            .unwrap_or(false);
        if !sent {
            // Its driver is between restarts; refuse rather than lose the cancel.
            return Err(ServiceError::RunPaused {
                run_id,
                region: self.name().to_string(),
            });
        }
        Ok(RunStatus::Running)
    }

    /// Run `run_id` rebuilt from its checkpoints, with its tasks when `with_tasks`.
    ///
    /// Errors: [`ServiceError::RunNotFound`].
    pub async fn run(&self, run_id: RunId, with_tasks: bool) -> Result<proto::Run, ServiceError> {
        let summary = self.summary(run_id).await?;
        let checkpoints = self.inner.store.read_run(run_id).await?;
        let state = tokio::task::spawn_blocking(move || rebuild(run_id, &checkpoints))
            .await
            .map_err(|error| ServiceError::InvalidWorkflow(format!("replay failed: {error}")))?
            .map_err(RunnerError::from)?;
        Ok(convert::run_from_state(
            &state,
            summary.owner_epoch,
            with_tasks,
        ))
    }

    /// What to follow to watch run `run_id`, if this process drives it: no store read needed.
    pub fn watch_active(&self, run_id: RunId) -> Option<ActiveWatch> {
        self.runs().get(&run_id).map(|run| ActiveWatch {
            base: Arc::clone(&run.base),
            progress: run.progress.clone(),
            outcome: run.outcome.clone(),
        })
    }

    async fn summary(&self, run_id: RunId) -> Result<crate::store::RunSummary, ServiceError> {
        match self.inner.store.run_summary(run_id).await {
            Err(StoreError::RunNotFound { .. }) => Err(ServiceError::RunNotFound {
                run_id,
                region: self.name().to_string(),
            }),
            other => Ok(other?),
        }
    }

    fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            parallelism: self.inner.config.parallelism.max(1),
            kill_grace: self.inner.config.kill_grace,
            state_dir: StateDir::new(self.inner.config.state_dir.clone()),
            remote: Some(self.inner.queues.clone()),
        }
    }

    /// Drives `prepared` in its own task until it finishes; on a store error (other than
    /// being fenced) it is resumed from its checkpoints with backoff.
    fn spawn(&self, prepared: Prepared) {
        let run_id = prepared.run_id;
        let epoch = prepared.epoch;
        let base = Arc::new(convert::run_from_state(&prepared.state, epoch, false));
        let (controls, controls_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let (outcome_tx, outcome) = watch::channel(None);
        self.runs().insert(
            run_id,
            ActiveRun {
                controls,
                progress,
                outcome,
                base,
            },
        );
        let region = self.clone();
        tokio::spawn(async move {
            let result = drive(
                region.inner.store.clone(),
                prepared,
                region.runner_config(),
                region.inner.clock,
                controls_rx,
                progress_tx,
            )
            .await;
            if let Ok(finished) = &result {
                let view = convert::run_from_state(&finished.state, epoch, true);
                outcome_tx.send_replace(Some(Arc::new(view)));
            }
            region.runs().remove(&run_id);
            match result {
                Ok(finished) => {
                    tracing::info!(%run_id, end = %finished.end.as_str(), reason = %finished.reason, "run finished");
                }
                Err(RunnerError::Store(StoreError::Fenced { .. })) => {
                    tracing::warn!(%run_id, "run taken over by another owner; this process stops driving it");
                }
                Err(error) => {
                    tracing::error!(%run_id, %error, "run driver stopped; resuming it from its checkpoints");
                    region.resume_later(run_id);
                }
            }
        });
    }

    fn resume_later(&self, run_id: RunId) {
        let region = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                tokio::time::sleep(delay).await;
                match resume_run(
                    region.inner.store.as_ref(),
                    &region.inner.owner,
                    run_id,
                    true,
                )
                .await
                {
                    Ok(prepared) => return region.spawn(prepared),
                    Err(RunnerError::AlreadyFinished { .. }) => return,
                    Err(RunnerError::Store(StoreError::Backend { .. })) => {
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(error) => {
                        tracing::error!(%run_id, %error, "cannot resume run; it stays as it is in the store");
                        return;
                    }
                }
            }
        });
    }

    /// The params of a request as the runner takes them, in a stable order.
    pub fn params(map: std::collections::HashMap<String, String>) -> Vec<(String, String)> {
        map.into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect()
    }

    /// The directory attempt files live in.
    pub fn state_dir(&self) -> &Path {
        &self.inner.config.state_dir
    }
}
