//! `tandem.v1.WorkflowService`: thin handlers (request → checks → [`Region`] call → reply).

use std::pin::Pin;

use tandem_api::proto::{self, workflow_service_server::WorkflowService};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert;
use super::error::ServiceError;
use super::limits::{self, invalid};
use super::region::{ActiveWatch, Region};
use crate::checkpoint::RunId;
use crate::store::RunFilter;

/// The handlers of `WorkflowService` over a [`Region`].
#[derive(Clone)]
pub struct WorkflowApi {
    region: Region,
}

impl WorkflowApi {
    /// Handlers for `region`.
    pub fn new(region: Region) -> Self {
        WorkflowApi { region }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn register_workflow(
        &self,
        request: Request<proto::RegisterWorkflowRequest>,
    ) -> Reply<proto::RegisterWorkflowResponse> {
        let request = request.into_inner();
        limits::at_most("source", &request.source, limits::MAX_SOURCE_BYTES)?;
        limits::at_most("file_name", &request.file_name, limits::MAX_NAME_BYTES)?;
        if request.source.trim().is_empty() {
            return Err(invalid(
                "source",
                "expected the DAG file's text, found an empty string",
            )
            .into());
        }
        let file_name = if request.file_name.is_empty() {
            "workflow.yaml".to_string()
        } else {
            request.file_name
        };
        let registered = self.region.register(file_name, request.source).await?;
        Ok(Response::new(proto::RegisterWorkflowResponse {
            name: registered.workflow.name,
            version: registered.workflow.version,
            task_count: u32::try_from(registered.task_count).unwrap_or(u32::MAX),
            created: registered.created,
        }))
    }

    async fn start_run(
        &self,
        request: Request<proto::StartRunRequest>,
    ) -> Reply<proto::StartRunResponse> {
        let request = request.into_inner();
        limits::required("workflow", &request.workflow, limits::MAX_NAME_BYTES)?;
        limits::at_most("version", &request.version, limits::MAX_NAME_BYTES)?;
        limits::at_most(
            "idempotency_key",
            &request.idempotency_key,
            limits::MAX_IDEMPOTENCY_KEY_BYTES,
        )?;
        if request.params.len() > limits::MAX_PARAMS {
            return Err(invalid(
                "params",
                format!(
                    "expected at most {} params, found {}",
                    limits::MAX_PARAMS,
                    request.params.len()
                ),
            )
            .into());
        }
        for (key, value) in &request.params {
            let shown: String = key.chars().take(64).collect();
            limits::required(
                &format!("params[\"{shown}\"] (key)"),
                key,
                limits::MAX_NAME_BYTES,
            )?;
            limits::at_most(
                &format!("params[\"{shown}\"]"),
                value,
                limits::MAX_PARAM_VALUE_BYTES,
            )?;
        }
        let version = (!request.version.is_empty()).then_some(request.version.as_str());
        let key = (!request.idempotency_key.is_empty()).then_some(request.idempotency_key.as_str());
        let started = self
            .region
            .start(
                &request.workflow,
                version,
                Region::params(request.params.clone()),
                key,
            )
            .await?;
        Ok(Response::new(proto::StartRunResponse {
            run_id: started.run_id.to_string(),
            created: started.created,
            version: started.version,
        }))
    }

    async fn get_run(
        &self,
        request: Request<proto::GetRunRequest>,
    ) -> Reply<proto::GetRunResponse> {
        let run_id = limits::run_id("run_id", &request.get_ref().run_id)?;
        let run = self.region.run(run_id, true).await?;
        Ok(Response::new(proto::GetRunResponse { run: Some(run) }))
    }

    async fn list_runs(
        &self,
        request: Request<proto::ListRunsRequest>,
    ) -> Reply<proto::ListRunsResponse> {
        let request = request.into_inner();
        limits::at_most("workflow", &request.workflow, limits::MAX_NAME_BYTES)?;
        let status = convert::status_filter(request.state)?;
        let page_size = match request.page_size {
            0 => limits::DEFAULT_PAGE_SIZE,
            size if size > limits::MAX_PAGE_SIZE => {
                return Err(invalid(
                    "page_size",
                    format!("expected 1..={}, found {size}", limits::MAX_PAGE_SIZE),
                )
                .into());
            }
            size => size,
        };
        let before = match request.page_token.as_str() {
            "" => None,
            token => Some(limits::run_id("page_token", token)?),
        };
        let filter = RunFilter {
            workflow: (!request.workflow.is_empty()).then_some(request.workflow),
            status,
            // One more than asked tells whether another page follows.
            limit: page_size as usize + 1,
            before,
        };
        let mut runs = self
            .region
            .store()
            .list_runs(&filter)
            .await
            .map_err(ServiceError::from)?;
        let more = runs.len() > page_size as usize;
        runs.truncate(page_size as usize);
        let next_page_token = match (more, runs.last()) {
            (true, Some(last)) => last.run_id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListRunsResponse {
            runs: runs.iter().map(convert::run_summary).collect(),
            next_page_token,
        }))
    }

    async fn cancel_run(
        &self,
        request: Request<proto::CancelRunRequest>,
    ) -> Reply<proto::CancelRunResponse> {
        let request = request.into_inner();
        let run_id = limits::run_id("run_id", &request.run_id)?;
        limits::at_most("reason", &request.reason, limits::MAX_REASON_BYTES)?;
        let reason = if request.reason.is_empty() {
            "cancelled through the API".to_string()
        } else {
            request.reason
        };
        let status = self.region.cancel(run_id, reason).await?;
        Ok(Response::new(proto::CancelRunResponse {
            state: convert::run_state(status) as i32,
        }))
    }

    type WatchRunStream = Pin<Box<dyn Stream<Item = Result<proto::RunUpdate, Status>> + Send>>;

    async fn watch_run(
        &self,
        request: Request<proto::WatchRunRequest>,
    ) -> Reply<Self::WatchRunStream> {
        let run_id = limits::run_id("run_id", &request.get_ref().run_id)?;
        // A run driven here is followed without reading the store; any other is read once
        // now, which also turns an unknown run id into NOT_FOUND before the stream opens.
        let start = match self.region.watch_active(run_id) {
            Some(active) => WatchStart::Active(active),
            None => WatchStart::Stored(self.region.run(run_id, true).await?),
        };
        let (updates, stream) = mpsc::channel(16);
        tokio::spawn(watch(self.region.clone(), run_id, start, updates));
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

/// Where a `WatchRun` stream starts from.
enum WatchStart {
    /// A run driven by this process.
    Active(ActiveWatch),
    /// A run read from the store (with its tasks).
    Stored(proto::Run),
}

/// Feeds a `WatchRun` stream: the run now, then after every commit of its driver, then its
/// final state with tasks. Ends early when the client goes away.
async fn watch(
    region: Region,
    run_id: RunId,
    start: WatchStart,
    updates: mpsc::Sender<Result<proto::RunUpdate, Status>>,
) {
    let send = |run: proto::Run| {
        let updates = updates.clone();
        async move {
            updates
                .send(Ok(proto::RunUpdate { run: Some(run) }))
                .await
                .is_ok()
        }
    };
    let running = proto::RunState::Running as i32;
    let mut active = match start {
        WatchStart::Stored(run) if run.state != running => {
            send(run).await;
            return;
        }
        WatchStart::Stored(mut run) => {
            // Not driven here right now (its driver is restarting): report what is stored.
            run.tasks.clear();
            if !send(run).await {
                return;
            }
            None
        }
        WatchStart::Active(active) => Some(active),
    };
    loop {
        match active.take() {
            Some(watch) => match follow(watch, &send).await {
                Followed::Finished | Followed::ClientGone => return,
                Followed::DriverStopped => {}
            },
            None => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
        // The driver stopped without finishing the run (a store error: it is being resumed),
        // or the run is driven elsewhere: follow the store until a driver is back.
        active = region.watch_active(run_id);
        if active.is_none() {
            match region.run(run_id, true).await {
                Ok(run) if run.state != running => {
                    send(run).await;
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    let _ = updates.send(Err(error.into())).await;
                    return;
                }
            }
        }
    }
}

/// How following a driver ended.
enum Followed {
    /// The run finished and its final view was sent.
    Finished,
    /// The client went away.
    ClientGone,
    /// The driver stopped without finishing the run.
    DriverStopped,
}

/// Sends the run's progress after every commit of its driver, then its final view.
async fn follow<F, Fut>(watch: ActiveWatch, send: &F) -> Followed
where
    F: Fn(proto::Run) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let ActiveWatch {
        base,
        mut progress,
        mut outcome,
    } = watch;
    let mut last: Option<proto::Run> = None;
    let mut progress_open = true;
    loop {
        let finished = outcome.borrow_and_update().clone();
        if let Some(run) = finished {
            return if send(run.as_ref().clone()).await {
                Followed::Finished
            } else {
                Followed::ClientGone
            };
        }
        let snapshot = *progress.borrow_and_update();
        let run = if snapshot.total > 0 {
            convert::with_progress(&base, &snapshot)
        } else {
            base.as_ref().clone()
        };
        if last.as_ref() != Some(&run) {
            if !send(run.clone()).await {
                return Followed::ClientGone;
            }
            last = Some(run);
        }
        tokio::select! {
            changed = progress.changed(), if progress_open => {
                progress_open = changed.is_ok();
            }
            changed = outcome.changed() => {
                if changed.is_err() && outcome.borrow().is_none() {
                    return Followed::DriverStopped;
                }
            }
        }
    }
}
