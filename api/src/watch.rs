//! [`Watch`]: the stream of [`crate::Client::watch_run`], opened again on another server of
//! the region when it breaks or ends before the run finished.

use std::sync::Arc;

use futures::Stream;
use tokio::time::Instant;

use crate::client::{run_from, workflows};
use crate::error::ClientError;
use crate::failover::{Endpoints, Route};
use crate::proto;
use crate::types::Run;

/// The state of one run's watch.
pub(crate) struct Watch {
    endpoints: Arc<Endpoints>,
    request: proto::WatchRunRequest,
    /// The open stream and the server it comes from.
    open: Option<(String, tonic::Streaming<proto::RunUpdate>)>,
    /// The last run yielded (a reopened stream starts with the state it had).
    last: Option<Run>,
    /// When the streams started failing, since the last new state; reopening stops after the
    /// failover timeout from there.
    failing_since: Option<Instant>,
    /// The last error of a stream that broke or ended (returned if reopening runs out of time).
    last_failure: Option<ClientError>,
    done: bool,
}

impl Watch {
    pub(crate) fn new(endpoints: Arc<Endpoints>, run_id: String) -> Watch {
        Watch {
            endpoints,
            request: proto::WatchRunRequest { run_id },
            open: None,
            last: None,
            failing_since: None,
            last_failure: None,
            done: false,
        }
    }

    pub(crate) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<Run, ClientError>> + Send + 'static {
        futures::stream::unfold(self, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        })
    }

    /// The next new state of the run, an error (which ends the watch), or `None` after the
    /// final state.
    async fn next(&mut self) -> Option<Result<Run, ClientError>> {
        loop {
            if self.done {
                return None;
            }
            if self.open.is_none()
                && let Err(error) = self.reopen().await
            {
                self.done = true;
                return Some(Err(error));
            }
            let (endpoint, stream) = self.open.as_mut()?;
            match stream.message().await {
                Ok(Some(update)) => {
                    let run = match run_from(endpoint, update.run, "RunUpdate") {
                        Ok(run) => run,
                        Err(error) => {
                            self.done = true;
                            return Some(Err(error));
                        }
                    };
                    if run.state.is_final() {
                        self.done = true;
                    }
                    if self.last.as_ref() == Some(&run) {
                        continue;
                    }
                    self.failing_since = None;
                    self.last = Some(run.clone());
                    return Some(Ok(run));
                }
                Ok(None) => {
                    let error = ClientError::Unavailable {
                        endpoint: endpoint.clone(),
                        message: format!(
                            "the watch of run {} ended before the run finished",
                            self.request.run_id
                        ),
                        error_code: None,
                    };
                    self.broken(error);
                }
                Err(status) => {
                    let error = ClientError::from(status).at(endpoint);
                    if !error.is_connection_failure() {
                        self.done = true;
                        return Some(Err(error));
                    }
                    self.broken(error);
                }
            }
        }
    }

    /// Forgets the stream that broke or ended, and moves away from its server.
    fn broken(&mut self, error: ClientError) {
        if let Some((endpoint, _)) = self.open.take() {
            tracing::debug!(%endpoint, %error, run_id = %self.request.run_id, "the watch broke; opening it again");
            self.endpoints.avoid(&endpoint);
        }
        self.failing_since.get_or_insert_with(Instant::now);
        self.last_failure = Some(error);
    }

    /// Opens the stream on a server of the region; after a failure, only until the failover
    /// timeout from the first failure since the last new state.
    async fn reopen(&mut self) -> Result<(), ClientError> {
        let mut route = Route::any();
        if let Some(since) = self.failing_since {
            let deadline = since + self.endpoints.config().get_failover_timeout();
            if Instant::now() >= deadline {
                let error = self
                    .last_failure
                    .take()
                    .unwrap_or_else(|| ClientError::Unavailable {
                        endpoint: self.endpoints.leader(),
                        message: format!("the watch of run {} broke", self.request.run_id),
                        error_code: None,
                    });
                return Err(error.with_note(
                    "no server of the region kept the watch open within the failover timeout",
                ));
            }
            route = route.until(deadline);
        }
        let request = self.request.clone();
        let answer = self
            .endpoints
            .call(route, |channel| {
                let request = request.clone();
                async move { workflows(channel).watch_run(request).await }
            })
            .await?;
        self.open = Some((answer.endpoint, answer.response.into_inner()));
        Ok(())
    }
}
