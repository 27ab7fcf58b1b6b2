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
use super::region::Region;
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
        let first = self.region.run(run_id, false).await?;
        let (updates, stream) = mpsc::channel(16);
        tokio::spawn(watch(self.region.clone(), run_id, first, updates));
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

/// Feeds a `WatchRun` stream: the run now, then after every commit of its driver, then its
/// final state with tasks. Ends early when the client goes away.
async fn watch(
    region: Region,
    run_id: RunId,
    first: proto::Run,
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
    let finished = first.state != proto::RunState::Running as i32;
    let mut last = first;
    if !finished {
        if !send(last.clone()).await {
            return;
        }
        loop {
            if let Some(mut progress) = region.progress(run_id) {
                // Follow the driver until it stops.
                loop {
                    let snapshot = *progress.borrow_and_update();
                    if snapshot.total > 0 {
                        let run = convert::with_progress(&last, &snapshot);
                        if run != last {
                            last = run.clone();
                            if !send(run).await {
                                return;
                            }
                        }
                    }
                    if progress.changed().await.is_err() {
                        break;
                    }
                }
            }
            // The driver stopped: finished, or restarting after a store error.
            match region.run(run_id, false).await {
                Ok(run) if run.state != proto::RunState::Running as i32 => break,
                Ok(_) | Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }
    let last = match region.run(run_id, true).await {
        Ok(run) => run,
        Err(error) => {
            let _ = updates.send(Err(error.into())).await;
            return;
        }
    };
    send(last).await;
}
