//! The four `WorkerService` calls, with the SDK's timeouts and error mapping, sent to the
//! region's leader (see [`crate::failover`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use crate::connection::MAX_DECODING_MESSAGE_BYTES;
use crate::error::ClientError;
use crate::failover::{Endpoints, Resend, Route};
use crate::proto;
use crate::proto::worker_service_client::WorkerServiceClient;

use super::task_error::{Outputs, TaskError};

/// Metadata key of the W3C trace context on a `PollTasks` reply with one lease.
const TRACEPARENT_KEY: &str = "traceparent";

/// Most bytes of a heartbeat's details and of a failure's error the server keeps
/// (`worker_service.proto`); longer texts are cut here rather than refused there.
pub(crate) const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A `WorkerService` client bound to one queue and worker id. Every call needs the leader;
/// each is safe to send twice (a second poll leases other attempts or none; a second heartbeat,
/// completion or failure of a lease is refused or changes nothing).
#[derive(Debug, Clone)]
pub(crate) struct WorkerRpc {
    endpoints: Arc<Endpoints>,
    queue: String,
    worker_id: String,
}

/// Leases from one poll, and the `traceparent` metadata of the reply (set when it holds one
/// lease).
#[derive(Debug)]
pub(crate) struct Polled {
    pub(crate) leases: Vec<proto::TaskLease>,
    pub(crate) traceparent: Option<String>,
}

impl WorkerRpc {
    pub(crate) fn new(endpoints: Arc<Endpoints>, queue: String, worker_id: String) -> WorkerRpc {
        WorkerRpc {
            endpoints,
            queue,
            worker_id,
        }
    }

    /// The configured server addresses, comma-separated (for logs).
    pub(crate) fn endpoints(&self) -> String {
        self.endpoints.config().endpoints().join(",")
    }

    /// How long a call may spend finding the leader.
    pub(crate) fn failover_timeout(&self) -> Duration {
        self.endpoints.config().get_failover_timeout()
    }

    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Long-polls for up to `max_tasks` attempts of `task_types`, waiting up to `wait`.
    pub(crate) async fn poll(
        &self,
        task_types: &[String],
        max_tasks: u32,
        wait: Duration,
    ) -> Result<Polled, ClientError> {
        let request = proto::PollTasksRequest {
            queue: self.queue.clone(),
            worker_id: self.worker_id.clone(),
            max_tasks,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            task_types: task_types.to_vec(),
        };
        let answer = self
            .endpoints
            .call(Route::leader(Resend::Safe).extra(wait), |channel| {
                let request = request.clone();
                async move { workers(channel).poll_tasks(request).await }
            })
            .await?;
        let (metadata, reply, _) = answer.response.into_parts();
        let traceparent = metadata
            .get(TRACEPARENT_KEY)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_string);
        Ok(Polled {
            leases: reply.tasks,
            traceparent,
        })
    }

    /// Heartbeats a lease, looking for the leader until `deadline`; `Ok(true)` when the run is
    /// being cancelled.
    pub(crate) async fn heartbeat(
        &self,
        lease_id: &str,
        details: String,
        deadline: Instant,
    ) -> Result<bool, ClientError> {
        let request = proto::HeartbeatRequest {
            lease_id: lease_id.to_string(),
            details: truncate_utf8(details, MAX_TEXT_BYTES),
        };
        let reply = self
            .endpoints
            .call(Route::leader(Resend::Safe).until(deadline), |channel| {
                let request = request.clone();
                async move { workers(channel).heartbeat(request).await }
            })
            .await?
            .response
            .into_inner();
        Ok(reply.cancel_requested)
    }

    /// Reports success with `outputs`, looking for the leader until `deadline`.
    pub(crate) async fn complete(
        &self,
        lease_id: &str,
        outputs: &Outputs,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let request = proto::CompleteTaskRequest {
            lease_id: lease_id.to_string(),
            outputs: outputs
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        };
        self.endpoints
            .call(Route::leader(Resend::Safe).until(deadline), |channel| {
                let request = request.clone();
                async move { workers(channel).complete_task(request).await }
            })
            .await?;
        Ok(())
    }

    /// Reports failure, looking for the leader until `deadline`.
    pub(crate) async fn fail(
        &self,
        lease_id: &str,
        error: &TaskError,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        let request = proto::FailTaskRequest {
            lease_id: lease_id.to_string(),
            error: truncate_utf8(error.message().to_string(), MAX_TEXT_BYTES),
            retryable: error.is_retryable(),
            error_type: error.error_type().unwrap_or_default().to_string(),
        };
        self.endpoints
            .call(Route::leader(Resend::Safe).until(deadline), |channel| {
                let request = request.clone();
                async move { workers(channel).fail_task(request).await }
            })
            .await?;
        Ok(())
    }
}

/// A `WorkerService` client on `channel`.
fn workers(channel: Channel) -> WorkerServiceClient<Channel> {
    WorkerServiceClient::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary; a cut text ends with `…`.
pub(crate) fn truncate_utf8(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let ellipsis = "…";
    let mut cut = max.saturating_sub(ellipsis.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(ellipsis);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_a_char_boundary() {
        assert_eq!(truncate_utf8("short".to_string(), 10), "short");
        let long = "é".repeat(10); // 20 bytes
        let cut = truncate_utf8(long, 8);
        assert!(cut.len() <= 8, "{cut}");
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
        let huge = "x".repeat(MAX_TEXT_BYTES * 2);
        assert_eq!(truncate_utf8(huge, MAX_TEXT_BYTES).len(), MAX_TEXT_BYTES);
    }
}
