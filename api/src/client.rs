//! [`Client`]: register workflows, start, inspect, list, cancel and watch runs; the region's
//! replicas and leader.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use tonic::transport::Channel;

use crate::cluster_status::ClusterStatus;
use crate::config::ClientConfig;
use crate::connection::MAX_DECODING_MESSAGE_BYTES;
use crate::error::ClientError;
use crate::failover::{Endpoints, Resend, Route};
use crate::proto;
use crate::proto::cluster_service_client::ClusterServiceClient;
use crate::proto::workflow_service_client::WorkflowServiceClient;
use crate::types::{Run, RunState};
use crate::watch::Watch;

/// A client of a Tandem region's `WorkflowService` and `ClusterService`. Cheap to clone
/// (clones share the HTTP/2 connections); every method takes `&self` and may run
/// concurrently.
///
/// With several servers in its [`ClientConfig`], calls that need the leader
/// ([`Client::register_workflow`], [`Client::start_run`], [`Client::cancel_run`]) go to the
/// replica that leads: a follower's `not_leader` refusal names the leader and the call goes
/// there; an unreachable server makes the call try the next one; a leader still resuming its
/// runs is asked again after a short wait. All of this within the failover timeout
/// ([`ClientConfig::failover_timeout`]). Reads ([`Client::get_run`], [`Client::list_runs`],
/// [`Client::watch_run`], [`Client::cluster_status`]) are answered by any replica.
///
/// A call whose connection broke after it was sent may have been acted on: it is sent again
/// only when that is safe (reads, registering, cancelling, a start with an idempotency key).
/// A start without an idempotency key is sent again only when connecting failed; otherwise its
/// connection error is returned (give starts a key to make them safe to retry).
///
/// Errors: every method returns [`ClientError`]; an unreachable server is
/// [`ClientError::Unavailable`] naming the endpoint, an unknown run [`ClientError::NotFound`],
/// no leader found within the failover timeout [`ClientError::NotLeader`] or
/// [`ClientError::LeaderStarting`].
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) endpoints: Arc<Endpoints>,
}

/// A registered workflow version (reply of [`Client::register_workflow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredWorkflow {
    /// The workflow's `name`.
    pub name: String,
    /// Its version: hex SHA-256 of the file's text.
    pub version: String,
    /// Task instances after matrix expansion.
    pub task_count: u32,
    /// False when this exact version was registered before.
    pub created: bool,
}

/// What to start (argument of [`Client::start_run`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartRun {
    /// A registered workflow's name.
    pub workflow: String,
    /// Its version; `None` = the latest registered version.
    pub version: Option<String>,
    /// Params overriding the workflow's defaults.
    pub params: BTreeMap<String, String>,
    /// With a key (at most 256 bytes), a second start with the same key returns the run the
    /// first one started and starts nothing.
    pub idempotency_key: Option<String>,
}

impl StartRun {
    /// A start of the latest version of `workflow`, with default params and no key.
    pub fn new(workflow: impl Into<String>) -> StartRun {
        StartRun {
            workflow: workflow.into(),
            ..StartRun::default()
        }
    }

    /// Pins the version.
    pub fn version(mut self, version: impl Into<String>) -> StartRun {
        self.version = Some(version.into());
        self
    }

    /// Sets one param.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> StartRun {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> StartRun {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A started run (reply of [`Client::start_run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    /// The run id (UUIDv7 text).
    pub run_id: String,
    /// False when the idempotency key matched an earlier run (which is the one returned).
    pub created: bool,
    /// The workflow version the run uses.
    pub version: String,
}

/// A workflow registered and a run of it started (reply of [`Client::submit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The registered workflow version.
    pub workflow: RegisteredWorkflow,
    /// The run.
    pub run: StartedRun,
}

/// Which runs to list (argument of [`Client::list_runs`]); the default lists the newest 100.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRuns {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Runs per page, 1..=1000; 0 = the server's default (100).
    pub page_size: u32,
    /// The `next_page_token` of the previous page; `None` = from the newest run.
    pub page_token: Option<String>,
}

/// One page of runs, newest first (reply of [`Client::list_runs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPage {
    /// Run summaries (their `tasks` are empty).
    pub runs: Vec<Run>,
    /// Pass as [`ListRuns::page_token`] for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl Client {
    /// Connects to the server at `endpoint` (`http://host:port` or `host:port`) with the
    /// default timeouts. Fails with [`ClientError::Unavailable`] if it cannot be reached and
    /// [`ClientError::InvalidEndpoint`] for a malformed address.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Client, ClientError> {
        Client::connect_with(ClientConfig::new(endpoint)).await
    }

    /// Connects now with `config`: to its endpoints in order until one can be reached (the
    /// others are connected on first use). Fails with [`ClientError::Unavailable`] when none
    /// can, and [`ClientError::InvalidEndpoint`] for a malformed address or an empty list.
    pub async fn connect_with(config: ClientConfig) -> Result<Client, ClientError> {
        Ok(Client {
            endpoints: Endpoints::connect(&config).await?,
        })
    }

    /// A client that connects on its first call (and reconnects after a connection breaks);
    /// only the addresses are checked here. Needs a tokio runtime.
    pub fn connect_lazy(config: ClientConfig) -> Result<Client, ClientError> {
        Ok(Client {
            endpoints: Endpoints::lazy(&config)?,
        })
    }

    /// The address calls that need the leader go to first (`http://host:port`): the last
    /// server that accepted one, else the first reachable configured one.
    pub fn endpoint(&self) -> String {
        self.endpoints.leader()
    }

    /// Every server address this client knows: the configured ones, then leaders learned from
    /// followers' replies.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.addresses()
    }

    /// Validates a DAG file's text (`source`, YAML) on the server and stores it under its name
    /// and version. `file_name` is used in error locations (`file_name:3:5`); empty =
    /// `workflow.yaml`. A file with errors is [`ClientError::InvalidArgument`] listing every
    /// error, as `tandem validate` does. Registering the same text twice is harmless, so this
    /// call is sent again after a broken connection.
    pub async fn register_workflow(
        &self,
        source: impl Into<String>,
        file_name: impl Into<String>,
    ) -> Result<RegisteredWorkflow, ClientError> {
        let request = proto::RegisterWorkflowRequest {
            source: source.into(),
            file_name: file_name.into(),
        };
        let reply = self
            .endpoints
            .call(Route::leader(Resend::Safe), |channel| {
                let request = request.clone();
                async move { workflows(channel).register_workflow(request).await }
            })
            .await?
            .response
            .into_inner();
        Ok(RegisteredWorkflow {
            name: reply.name,
            version: reply.version,
            task_count: reply.task_count,
            created: reply.created,
        })
    }

    /// Starts a run of a registered workflow. Unknown workflow or version:
    /// [`ClientError::NotFound`]; unknown or bad params: [`ClientError::InvalidArgument`].
    ///
    /// Sent again after a broken connection only with an idempotency key (the server then
    /// returns the run the first send started); without one, a connection that broke after
    /// sending is returned as an error: the run may or may not have started.
    pub async fn start_run(&self, start: StartRun) -> Result<StartedRun, ClientError> {
        let resend = if start
            .idempotency_key
            .as_deref()
            .is_some_and(|key| !key.is_empty())
        {
            Resend::Safe
        } else {
            Resend::OnlyIfNotSent
        };
        let request = proto::StartRunRequest {
            workflow: start.workflow,
            version: start.version.unwrap_or_default(),
            params: start.params.into_iter().collect(),
            idempotency_key: start.idempotency_key.unwrap_or_default(),
        };
        let reply = self
            .endpoints
            .call(Route::leader(resend), |channel| {
                let request = request.clone();
                async move { workflows(channel).start_run(request).await }
            })
            .await?
            .response
            .into_inner();
        Ok(StartedRun {
            run_id: reply.run_id,
            created: reply.created,
            version: reply.version,
        })
    }

    /// Registers a DAG file's text and starts a run of exactly that version (see
    /// [`Client::register_workflow`] and [`Client::start_run`]).
    pub async fn submit(
        &self,
        source: impl Into<String>,
        file_name: impl Into<String>,
        params: BTreeMap<String, String>,
        idempotency_key: Option<String>,
    ) -> Result<Submitted, ClientError> {
        let workflow = self.register_workflow(source, file_name).await?;
        let run = self
            .start_run(StartRun {
                workflow: workflow.name.clone(),
                version: Some(workflow.version.clone()),
                params,
                idempotency_key,
            })
            .await?;
        Ok(Submitted { workflow, run })
    }

    /// One run with its tasks. Unknown run id: [`ClientError::NotFound`].
    pub async fn get_run(&self, run_id: impl Into<String>) -> Result<Run, ClientError> {
        let request = proto::GetRunRequest {
            run_id: run_id.into(),
        };
        let answer = self
            .endpoints
            .call(Route::any(), |channel| {
                let request = request.clone();
                async move { workflows(channel).get_run(request).await }
            })
            .await?;
        run_from(
            &answer.endpoint,
            answer.response.into_inner().run,
            "GetRunResponse",
        )
    }

    /// One page of runs, newest first. See [`Client::list_all_runs`] for every page.
    pub async fn list_runs(&self, list: ListRuns) -> Result<RunPage, ClientError> {
        let request = proto::ListRunsRequest {
            workflow: list.workflow.unwrap_or_default(),
            state: list
                .state
                .map_or(proto::RunState::Unspecified, RunState::to_proto) as i32,
            page_size: list.page_size,
            page_token: list.page_token.unwrap_or_default(),
        };
        let answer = self
            .endpoints
            .call(Route::any(), |channel| {
                let request = request.clone();
                async move { workflows(channel).list_runs(request).await }
            })
            .await?;
        let endpoint = answer.endpoint;
        let reply = answer.response.into_inner();
        let runs = reply
            .runs
            .into_iter()
            .map(|run| Run::from_proto(run).map_err(|error| protocol(&endpoint, error)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RunPage {
            runs,
            next_page_token: (!reply.next_page_token.is_empty()).then_some(reply.next_page_token),
        })
    }

    /// Every run matching `list` (from its `page_token` on), newest first, fetching pages of
    /// `page_size` as the stream is read. Ends after the last page or at the first error.
    pub fn list_all_runs(
        &self,
        list: ListRuns,
    ) -> impl Stream<Item = Result<Run, ClientError>> + Send + 'static {
        let client = self.clone();
        futures::stream::try_unfold(Some(list), move |next| {
            let client = client.clone();
            async move {
                let Some(list) = next else {
                    return Ok(None);
                };
                let page = client.list_runs(list.clone()).await?;
                let following = match page.next_page_token {
                    Some(token) if Some(&token) == list.page_token.as_ref() => {
                        return Err(protocol(
                            &client.endpoint(),
                            format!(
                                "ListRuns returned its request's page token `{token}` as the next one"
                            ),
                        ));
                    }
                    Some(token) => Some(ListRuns {
                        page_token: Some(token),
                        ..list
                    }),
                    None => None,
                };
                let runs = futures::stream::iter(page.runs.into_iter().map(Ok));
                Ok(Some((runs, following)))
            }
        })
        .try_flatten()
    }

    /// Asks a run to stop (running attempts are cancelled, nothing new starts; `reason`, at
    /// most 1024 bytes, is recorded). Returns the run's state after the request: still
    /// `Running` while attempts stop, or its final state if it had already finished.
    /// Cancelling twice is harmless, so this call is sent again after a broken connection.
    pub async fn cancel_run(
        &self,
        run_id: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<RunState, ClientError> {
        let request = proto::CancelRunRequest {
            run_id: run_id.into(),
            reason: reason.into(),
        };
        let answer = self
            .endpoints
            .call(Route::leader(Resend::Safe), |channel| {
                let request = request.clone();
                async move { workflows(channel).cancel_run(request).await }
            })
            .await?;
        let state = answer.response.into_inner().state;
        RunState::from_proto(state).ok_or_else(|| {
            protocol(
                &answer.endpoint,
                format!("CancelRunResponse: expected a run state (1..=5), found {state}"),
            )
        })
    }

    /// The run now, then after every change until it finishes; the last item has a final
    /// state and carries the tasks. The call opens when the stream is first polled; an
    /// unknown run is a [`ClientError::NotFound`] item. The request timeout applies only to
    /// opening the stream.
    ///
    /// When the stream breaks or ends before the run finished (the server went away), it is
    /// opened again on another server of the region (within the failover timeout); the state
    /// the new stream starts with is not repeated when it is the last one yielded. An error
    /// item ends the stream.
    pub fn watch_run(
        &self,
        run_id: impl Into<String>,
    ) -> impl Stream<Item = Result<Run, ClientError>> + Send + 'static {
        Watch::new(self.endpoints.clone(), run_id.into()).into_stream()
    }

    /// Watches the run until it reaches a final state and returns it (with its tasks). If the
    /// stream ends before that (no server of the region could be reached again),
    /// [`ClientError::Unavailable`].
    pub async fn wait_run(&self, run_id: impl Into<String>) -> Result<Run, ClientError> {
        let run_id = run_id.into();
        let mut updates = std::pin::pin!(self.watch_run(run_id.clone()));
        while let Some(run) = updates.next().await {
            let run = run?;
            if run.state.is_final() {
                return Ok(run);
            }
        }
        Err(ClientError::Unavailable {
            endpoint: self.endpoint(),
            message: format!("the watch of run {run_id} ended before the run finished"),
            error_code: None,
        })
    }

    /// The region's replicas, its leader and the answering replica's role (answered by any
    /// replica). [`ClientError::Unavailable`] when that replica cannot read etcd.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        let answer = self
            .endpoints
            .call(Route::any(), |channel| async move {
                ClusterServiceClient::new(channel)
                    .get_cluster_status(proto::GetClusterStatusRequest {})
                    .await
            })
            .await?;
        ClusterStatus::from_proto(answer.response.into_inner(), &answer.endpoint)
            .map_err(|error| protocol(&answer.endpoint, error))
    }
}

/// A `WorkflowService` client on `channel`.
pub(crate) fn workflows(channel: Channel) -> WorkflowServiceClient<Channel> {
    WorkflowServiceClient::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
}

/// A [`ClientError::Protocol`] naming `endpoint`.
pub(crate) fn protocol(endpoint: &str, message: String) -> ClientError {
    ClientError::Protocol {
        endpoint: endpoint.to_string(),
        message,
    }
}

/// Converts the run of a reply from `endpoint`, or says which reply lacked one.
pub(crate) fn run_from(
    endpoint: &str,
    run: Option<proto::Run>,
    message: &str,
) -> Result<Run, ClientError> {
    let run = run.ok_or_else(|| protocol(endpoint, format!("{message} without a run")))?;
    Run::from_proto(run).map_err(|error| protocol(endpoint, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_run_builder_sets_every_field() {
        let start = StartRun::new("etl")
            .version("abc")
            .param("day", "2026-01-01")
            .idempotency_key("k1");
        assert_eq!(
            start,
            StartRun {
                workflow: "etl".to_string(),
                version: Some("abc".to_string()),
                params: [("day".to_string(), "2026-01-01".to_string())].into(),
                idempotency_key: Some("k1".to_string()),
            }
        );
    }

    #[tokio::test]
    async fn calls_to_a_closed_port_are_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = Client::connect_lazy(ClientConfig::new(&endpoint)).expect("a valid address");
        let error = client.get_run("r").await.expect_err("nothing listens");
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
        assert!(error.to_string().contains(&endpoint), "{error}");
        let error = client
            .wait_run("r")
            .await
            .expect_err("the watch cannot open");
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    }
}
