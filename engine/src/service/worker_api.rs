//! `tandem.v1.WorkerService`: thin handlers over the region's [`TaskQueues`].

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_api::proto::{self, worker_service_server::WorkerService};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::limits::{self, invalid};
use super::region::Region;
use crate::executor::remote::{Lease, PollRequest, TaskQueues};

/// The handlers of `WorkerService` over a region's task queues. Every call needs the leader:
/// a follower answers `not_leader` naming it, so workers move there.
#[derive(Clone)]
pub struct WorkerApi {
    region: Region,
}

impl WorkerApi {
    /// Handlers for `region`'s task queues.
    pub fn new(region: Region) -> Self {
        WorkerApi { region }
    }

    /// The queues, when this replica leads.
    fn queues(&self) -> Result<&TaskQueues, Status> {
        self.region.require_leader()?;
        Ok(self.region.queues())
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn lease_message(lease: Lease) -> proto::TaskLease {
    proto::TaskLease {
        lease_id: lease.lease_id,
        run_id: lease.run_id.to_string(),
        task_id: lease.task_id,
        attempt: lease.attempt,
        task_type: lease.task_type,
        input_json: lease.input.to_string(),
        idempotency_key: lease.idempotency_key,
        heartbeat_timeout_ms: u32::try_from(lease.heartbeat_timeout.as_millis())
            .unwrap_or(u32::MAX),
        timeout_ms: lease
            .timeout
            .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        traceparent: lease.traceparent.unwrap_or_default(),
        workflow: lease.workflow,
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn poll_tasks(
        &self,
        request: Request<proto::PollTasksRequest>,
    ) -> Reply<proto::PollTasksResponse> {
        let request = request.into_inner();
        limits::required("queue", &request.queue, limits::MAX_NAME_BYTES)?;
        limits::at_most("worker_id", &request.worker_id, limits::MAX_NAME_BYTES)?;
        if request.max_tasks > limits::MAX_POLL_TASKS {
            return Err(invalid(
                "max_tasks",
                format!(
                    "expected 0..={}, found {}",
                    limits::MAX_POLL_TASKS,
                    request.max_tasks
                ),
            )
            .into());
        }
        if request.wait_ms > limits::MAX_POLL_WAIT_MS {
            return Err(invalid(
                "wait_ms",
                format!(
                    "expected 0..={} ms, found {}",
                    limits::MAX_POLL_WAIT_MS,
                    request.wait_ms
                ),
            )
            .into());
        }
        if request.task_types.len() > limits::MAX_TASK_TYPES {
            return Err(invalid(
                "task_types",
                format!(
                    "expected at most {} task types, found {}",
                    limits::MAX_TASK_TYPES,
                    request.task_types.len()
                ),
            )
            .into());
        }
        for (index, task_type) in request.task_types.iter().enumerate() {
            limits::required(
                &format!("task_types[{index}]"),
                task_type,
                limits::MAX_NAME_BYTES,
            )?;
        }
        let wait_ms = match request.wait_ms {
            0 => limits::DEFAULT_POLL_WAIT_MS,
            wait => wait,
        };
        let leases = self
            .queues()?
            .poll(PollRequest {
                queue: request.queue,
                worker_id: if request.worker_id.is_empty() {
                    "anonymous".to_string()
                } else {
                    request.worker_id
                },
                task_types: request.task_types,
                max_tasks: request.max_tasks.max(1) as usize,
                wait: Duration::from_millis(u64::from(wait_ms)),
            })
            .await;
        let traceparent = match leases.as_slice() {
            [only] => only.traceparent.clone(),
            _ => None,
        };
        let mut response = Response::new(proto::PollTasksResponse {
            tasks: leases.into_iter().map(lease_message).collect(),
        });
        if let Some(value) = traceparent.and_then(|text| MetadataValue::try_from(text).ok()) {
            response.metadata_mut().insert("traceparent", value);
        }
        Ok(response)
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Reply<proto::HeartbeatResponse> {
        let request = request.into_inner();
        limits::required("lease_id", &request.lease_id, limits::MAX_NAME_BYTES)?;
        let reply = self
            .queues()?
            .heartbeat(&request.lease_id, request.details)
            .await
            .map_err(super::error::ServiceError::from)?;
        Ok(Response::new(proto::HeartbeatResponse {
            cancel_requested: reply.cancel_requested,
        }))
    }

    async fn complete_task(
        &self,
        request: Request<proto::CompleteTaskRequest>,
    ) -> Reply<proto::CompleteTaskResponse> {
        let request = request.into_inner();
        limits::required("lease_id", &request.lease_id, limits::MAX_NAME_BYTES)?;
        let outputs: BTreeMap<String, String> = request.outputs.into_iter().collect();
        self.queues()?
            .complete(&request.lease_id, outputs)
            .await
            .map_err(super::error::ServiceError::from)?;
        Ok(Response::new(proto::CompleteTaskResponse {}))
    }

    async fn fail_task(
        &self,
        request: Request<proto::FailTaskRequest>,
    ) -> Reply<proto::FailTaskResponse> {
        let request = request.into_inner();
        limits::required("lease_id", &request.lease_id, limits::MAX_NAME_BYTES)?;
        let error_type = (!request.error_type.is_empty()).then_some(request.error_type);
        let error = if request.error.is_empty() {
            "the worker reported a failure without a message".to_string()
        } else {
            request.error
        };
        self.queues()?
            .fail(&request.lease_id, error, request.retryable, error_type)
            .await
            .map_err(super::error::ServiceError::from)?;
        Ok(Response::new(proto::FailTaskResponse {}))
    }
}
