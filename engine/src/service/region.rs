//! The engine of one region replica: the runs it drives, and how runs are started,
//! cancelled and observed.
//!
//! Only the leading replica drives runs ([`super::replica`]); every non-terminal run of the
//! store is driven by exactly one task of the leader ([`super::drivers`]). Followers answer
//! reads from the store and refuse calls that need the leader, naming it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tandem_api::proto;
use tandem_dsl::WorkflowSpec;
use tokio::sync::watch;

use super::config::ServiceConfig;
use super::convert;
use super::dr::Dr;
use super::dr::sync_gate::SyncGate;
use super::drivers::Drivers;
use super::error::ServiceError;
use super::replica::ReplicaRole;
use crate::checkpoint::{Event, RunId};
use crate::executor::remote::TaskQueues;
use crate::leadership::Election;
use crate::paths::StateDir;
use crate::runner::{
    Control, Prepared, Progress, RunClock, RunnerConfig, RunnerError, current_owner,
};
use crate::schedule::TickerHandle;
use crate::scheduler::{Input, RunState, rebuild};
use crate::store::replication::{RegionState, ReplicationStore};
use crate::store::{
    CheckpointStore, CreateOutcome, LeaderFence, Owner, RunStatus, StoreError, StoredWorkflow,
};

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

pub(super) struct Inner {
    pub(super) config: ServiceConfig,
    /// The store; its writes carry `fence` (with disaster recovery, through the sync gate).
    pub(super) store: Arc<dyn CheckpointStore>,
    /// Disaster recovery, when configured.
    pub(super) dr: Option<Arc<Dr>>,
    pub(super) fence: LeaderFence,
    pub(super) election: Option<Election>,
    pub(super) queues: TaskQueues,
    pub(super) owner: Owner,
    pub(super) clock: RunClock,
    pub(super) drivers: Mutex<Drivers>,
    pub(super) role: watch::Sender<ReplicaRole>,
    pub(super) ticker: Mutex<Option<TickerHandle>>,
    /// Compiled workflows by version (the text's hash), so starting a run does not compile.
    specs: Mutex<HashMap<String, Arc<WorkflowSpec>>>,
}

/// What a [`Region`] works with.
pub struct RegionParts {
    /// The region's store, opened with `fence` (e.g. `PostgresStore::fenced`), so that every
    /// write carries this replica's leader epoch.
    pub store: Arc<dyn CheckpointStore>,
    /// The fence of `store`: the replica sets it to its epoch while it leads and to 0 when it
    /// stops.
    pub fence: LeaderFence,
    /// The task queues of worker attempts.
    pub queues: TaskQueues,
    /// The leader election among the region's replicas; `None` runs a single replica that
    /// leads with epoch 0.
    pub election: Option<Election>,
    /// The same store as a replication store (the same handle as `store`, e.g. the fenced
    /// `PostgresStore`), for a region that takes part in disaster recovery: used together
    /// with [`ServiceConfig::dr`]; when either is `None` the region runs without disaster
    /// recovery, as a region that is always active.
    pub replication: Option<Arc<dyn ReplicationStore>>,
}

/// Most compiled workflows kept by a region (the cache is emptied when it is full).
const MAX_CACHED_SPECS: usize = 256;

/// One region's engine (cheap to clone; clones share everything).
#[derive(Clone)]
pub struct Region {
    pub(super) inner: Arc<Inner>,
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

/// Compiles `source` (the text of `file_name`) like `tandem validate`, off the async
/// threads, and gives the two back with the spec.
///
/// Errors: [`ServiceError::InvalidWorkflow`] with every error of the file.
async fn compile(
    file_name: String,
    source: String,
) -> Result<(WorkflowSpec, String, String), ServiceError> {
    tokio::task::spawn_blocking(move || {
        tandem_dsl::compile(&file_name, &source).map(|spec| (spec, file_name, source))
    })
    .await
    .map_err(|error| ServiceError::InvalidWorkflow(format!("the compiler failed: {error}")))?
    .map_err(|diagnostics| ServiceError::InvalidWorkflow(diagnostics.to_string()))
}

/// A run created but not yet driven: what its driver starts from.
pub(super) struct NewRun {
    run_id: RunId,
    spec: Arc<WorkflowSpec>,
    source_path: String,
    params: BTreeMap<String, String>,
    at: crate::checkpoint::UnixMillis,
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
    /// A replica of a region over `parts`. It does nothing until [`Region::open`].
    ///
    /// With [`ServiceConfig::dr`] and [`RegionParts::replication`] both set, the region takes
    /// part in disaster recovery ([`super::dr`]): its writes go through the sync gate, and it
    /// leads only while its region is active. With only one of them set it runs without, and
    /// says so at WARN.
    pub fn new(config: ServiceConfig, parts: RegionParts) -> Self {
        let dr = match (&config.dr, parts.replication) {
            (Some(dr), Some(store)) => Some(Arc::new(Dr::new(
                dr.clone(),
                store,
                super::replica::placeholder(&config.region),
            ))),
            (None, None) => None,
            (Some(_), None) => {
                tracing::warn!(region = %config.region, "disaster recovery is configured but the store given is not a replication store: running without it");
                None
            }
            (None, Some(_)) => {
                tracing::warn!(region = %config.region, "a replication store was given without disaster-recovery settings: running without disaster recovery");
                None
            }
        };
        let store = match &dr {
            Some(dr) => Arc::new(SyncGate::new(
                parts.store,
                dr.progress.clone(),
                dr.config.replication.clone(),
            )) as Arc<dyn CheckpointStore>,
            None => parts.store,
        };
        Region {
            inner: Arc::new(Inner {
                config,
                store,
                dr,
                fence: parts.fence,
                election: parts.election,
                queues: parts.queues,
                owner: current_owner(),
                clock: RunClock::start(),
                drivers: Mutex::new(Drivers::default()),
                role: watch::Sender::new(ReplicaRole::Following { leader: None }),
                ticker: Mutex::new(None),
                specs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// This replica's member id.
    pub fn member_id(&self) -> &str {
        &self.inner.config.member_id
    }

    /// The settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The leader election, when the region runs one.
    pub fn election(&self) -> Option<&Election> {
        self.inner.election.as_ref()
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

    /// The disaster-recovery side, when the region takes part in it.
    pub(crate) fn dr(&self) -> Option<&Arc<Dr>> {
        self.inner.dr.as_ref()
    }

    /// With disaster recovery: the region's state as this replica last read it (every
    /// 250 ms, and at once after its own changes). `None` without disaster recovery.
    pub fn region_state(&self) -> Option<RegionState> {
        self.dr().map(|dr| dr.watch.get())
    }

    /// Number of runs this process drives now.
    pub fn active_runs(&self) -> usize {
        self.drivers().active.len()
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

    /// Compiles `source` (the text of `file_name`) like `tandem validate` and stores it.
    ///
    /// Errors: [`ServiceError::InvalidWorkflow`] with every error of the file.
    pub async fn register(
        &self,
        file_name: String,
        source: String,
    ) -> Result<Registered, ServiceError> {
        let term = self.leader_term()?;
        self.register_in(file_name, source)
            .await
            .map_err(|error| self.check_superseded(term, error))
    }

    async fn register_in(
        &self,
        file_name: String,
        source: String,
    ) -> Result<Registered, ServiceError> {
        let (spec, file_name, source) = compile(file_name, source).await?;
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
        self.notify_ticker();
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
        let term = self.leader_term()?;
        self.start_in(term, name, version, params, idempotency_key)
            .await
            .map_err(|error| self.check_superseded(term, error))
    }

    async fn start_in(
        &self,
        term: u64,
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
        let spec = self.spec_of(&workflow).await?;
        let params = spec.resolve_params(&params).map_err(RunnerError::from)?;
        let run_id = RunId::new();
        let (created, start) = self.run_created(run_id, workflow, spec, params);
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
        let version = start.spec.version.clone();
        self.drive_created(start, epoch, term);
        Ok(Started {
            run_id,
            created: true,
            version,
        })
    }

    /// The compiled form of a stored workflow (cached by version).
    ///
    /// Errors: [`ServiceError::InvalidWorkflow`] when a newer build is stricter than the one
    /// that registered it.
    pub(super) async fn spec_of(
        &self,
        workflow: &StoredWorkflow,
    ) -> Result<Arc<WorkflowSpec>, ServiceError> {
        if let Some(spec) = self.specs().get(&workflow.version).cloned() {
            return Ok(spec);
        }
        let (spec, _, _) = compile(workflow.file_name.clone(), workflow.source.clone()).await?;
        let spec = Arc::new(spec);
        self.cache_spec(Arc::clone(&spec));
        Ok(spec)
    }

    /// The `RunCreated` checkpoint of a new run `run_id` of `workflow`, and what its driver
    /// starts from.
    pub(super) fn run_created(
        &self,
        run_id: RunId,
        workflow: StoredWorkflow,
        spec: Arc<WorkflowSpec>,
        params: BTreeMap<String, String>,
    ) -> (Event, NewRun) {
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
        let start = NewRun {
            run_id,
            spec,
            source_path,
            params,
            at,
        };
        (created, start)
    }

    /// Drives a run just created with `epoch` in `term` (left to the next leader when the
    /// term has ended).
    pub(super) fn drive_created(&self, start: NewRun, epoch: crate::checkpoint::Epoch, term: u64) {
        let state = RunState::new(
            start.run_id,
            start.spec,
            start.source_path,
            start.params,
            start.at,
        );
        self.spawn(
            Prepared {
                run_id: start.run_id,
                epoch,
                state,
                first: Input::Start,
            },
            term,
        );
    }

    /// Asks run `run_id` to stop. Returns its state after the request: still running while its
    /// attempts stop, or its final state when it had already finished.
    ///
    /// Errors: [`ServiceError::RunNotFound`].
    pub async fn cancel(&self, run_id: RunId, reason: String) -> Result<RunStatus, ServiceError> {
        self.leader_term()?;
        let summary = self.summary(run_id).await?;
        if summary.status.is_terminal() {
            return Ok(summary.status);
        }
        let sent = self
            .drivers()
            .active
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
        self.drivers().active.get(&run_id).map(|run| ActiveWatch {
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

    pub(super) fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            parallelism: self.inner.config.parallelism.max(1),
            kill_grace: self.inner.config.kill_grace,
            state_dir: StateDir::new(self.inner.config.state_dir.clone()),
            remote: Some(self.inner.queues.clone()),
        }
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
