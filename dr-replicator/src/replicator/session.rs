//! One replication session: open the stream on a replica of the active region, then apply and
//! acknowledge its batches until something ends it (see the parent module's docs).

use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use tandem_api::proto::replication_service_client::ReplicationServiceClient;
use tandem_api::{ClientError, proto};
use tandem_engine::checkpoint::now_millis;
use tandem_engine::service::dr::wire::batch_from_proto;
use tandem_engine::store::replication::{RegionRole, RegionState};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::wrappers::WatchStream;
use tonic::codec::Streaming;
use tonic::transport::Endpoint;

use super::{Phase, Replicator};

/// Largest batch accepted from a source (a batch of `run_created` checkpoints carries the
/// workflows' text).
const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// Most `not_leader` redirects followed while opening one stream.
const MAX_REDIRECTS: usize = 8;

/// The `tandem-error-code` of a source that refuses a standby with a higher region epoch.
const REPLICATION_EPOCH: &str = "replication_epoch";

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SessionEnd {
    /// The shutdown future completed.
    Shutdown,
    /// The store's role or active region changed: read the state again at once.
    RoleChanged,
    /// A follower of the source named its leader (`http://host:port`): connect there at once.
    Redirect(String),
    /// Anything else: wait (backoff), then start over. The text says what failed and where.
    Failed(String),
}

/// An open stream.
struct Stream {
    /// The replica streaming.
    source: String,
    /// Acks: the outbound stream sends each new value (only the latest one when several
    /// arrive between two sends, which is all an ack needs to say).
    acks: watch::Sender<u64>,
    batches: Streaming<proto::LogBatch>,
}

impl Replicator {
    /// Runs one session for `state` (a standby's); returns why it ended and whether at least
    /// one batch was applied.
    pub(super) async fn session(
        &mut self,
        state: &RegionState,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> (SessionEnd, bool) {
        self.set_phase(Phase::Connecting, None);
        let opened = tokio::select! {
            _ = shutdown.as_mut() => return (SessionEnd::Shutdown, false),
            opened = self.open(state) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(end) => return (end, false),
        };
        self.preferred = Some((state.active_region.clone(), stream.source.clone()));
        self.status.send_modify(|status| {
            status.phase = Phase::Streaming;
            status.connected_source = Some(stream.source.clone());
            status.connections += 1;
        });
        tracing::info!(
            region = %self.config.region,
            active_region = %state.active_region,
            source = %stream.source,
            after_position = state.applied_position,
            region_epoch = state.region_epoch,
            "replicating region {} from {} ({})",
            self.config.region,
            state.active_region,
            stream.source
        );
        let end = self.stream(state, &mut stream, shutdown).await;
        (end.0, end.1)
    }

    /// Applies batches of an open stream until the session ends.
    async fn stream(
        &self,
        state: &RegionState,
        stream: &mut Stream,
        shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> (SessionEnd, bool) {
        let stall = self.config.stall_timeout;
        let mut progressed = false;
        let mut last_batch = Instant::now();
        let mut last_log = Instant::now();
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                _ = shutdown.as_mut() => return (SessionEnd::Shutdown, progressed),
                _ = poll.tick() => {
                    if let Some(end) = self.role_changed(state).await {
                        return (end, progressed);
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(last_batch + stall) => {
                    return (
                        SessionEnd::Failed(format!(
                            "no batch from {} for {} (the source sends one at least every second): opening the stream again",
                            stream.source,
                            humanize(stall)
                        )),
                        progressed,
                    );
                }
                next = stream.batches.next() => next,
            };
            let wire = match next {
                Some(Ok(batch)) => batch,
                Some(Err(status)) => {
                    let error = ClientError::from(status).at(&stream.source);
                    let end = match &error {
                        ClientError::NotLeader {
                            leader: Some(leader),
                            ..
                        } if leader != &stream.source => SessionEnd::Redirect(leader.clone()),
                        _ => SessionEnd::Failed(format!(
                            "the stream from {} broke: {error}",
                            stream.source
                        )),
                    };
                    return (end, progressed);
                }
                None => {
                    return (
                        SessionEnd::Failed(format!("{} ended the stream", stream.source)),
                        progressed,
                    );
                }
            };
            last_batch = Instant::now();
            if let Err(end) = self.apply(state, stream, wire).await {
                return (end, progressed);
            }
            progressed = true;
            if last_log.elapsed() >= self.config.log_interval {
                last_log = Instant::now();
                let status = self.status.borrow().clone();
                let lag = status.lag(now_millis());
                tracing::info!(
                    region = %self.config.region,
                    source = %stream.source,
                    applied_position = status.applied_position,
                    source_latest_position = status.source_latest_position,
                    lag_positions = lag.map(|lag| lag.positions),
                    lag_ms = lag.and_then(|lag| lag.millis),
                    checkpoints_applied = status.checkpoints_applied,
                    "replication progress"
                );
            }
        }
    }

    /// Checks, converts, applies and acknowledges one batch.
    async fn apply(
        &self,
        state: &RegionState,
        stream: &Stream,
        wire: proto::LogBatch,
    ) -> Result<(), SessionEnd> {
        if wire.source_region != state.active_region {
            return Err(SessionEnd::Failed(format!(
                "{} sent a batch of region `{}`, expected region `{}` (the active region this store knows): check `[dr] peers`",
                stream.source, wire.source_region, state.active_region
            )));
        }
        let batch = batch_from_proto(wire)
            .map_err(|error| SessionEnd::Failed(format!("from {}: {error}", stream.source)))?;
        let range = match (batch.checkpoints.first(), batch.checkpoints.last()) {
            (Some(first), Some(last)) => format!(
                "positions {}..={}",
                first.checkpoint.position, last.checkpoint.position
            ),
            _ => "a heartbeat".to_string(),
        };
        let applied = self
            .store
            .apply_replicated(&batch, now_millis())
            .await
            .map_err(|error| {
                SessionEnd::Failed(format!(
                    "applying {range} from {} failed: {error}",
                    stream.source
                ))
            })?;
        let checkpoints = batch.checkpoints.len() as u64;
        self.status.send_modify(|status| {
            status.observe(&applied);
            status.batches_applied += 1;
            status.checkpoints_applied += checkpoints;
            status.last_batch_at_ms = Some(now_millis());
            status.last_error = None;
        });
        tracing::debug!(
            region = %self.config.region,
            source = %stream.source,
            applied_position = applied.applied_position,
            source_latest_position = applied.source_latest_position,
            checkpoints,
            "applied {range}"
        );
        stream.acks.send_replace(applied.applied_position);
        Ok(())
    }

    /// Reads the store's state: `Some` when the session must end because the region is no
    /// longer a standby of `state.active_region` (a region epoch raised by the batches
    /// themselves does not end it).
    async fn role_changed(&self, state: &RegionState) -> Option<SessionEnd> {
        match self.store.region_state().await {
            Ok(now)
                if now.role != RegionRole::Standby || now.active_region != state.active_region =>
            {
                self.status.send_modify(|status| status.observe(&now));
                Some(SessionEnd::RoleChanged)
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(region = %self.config.region, "replication: reading the region state: {error}");
                None
            }
        }
    }

    /// Opens the stream on a replica of `state.active_region`: the preferred one first,
    /// following `not_leader` redirects.
    async fn open(&self, state: &RegionState) -> Result<Stream, SessionEnd> {
        let active = &state.active_region;
        let Some(endpoints) = self.config.peers.get(active) else {
            let known: Vec<&str> = self.config.peers.keys().map(String::as_str).collect();
            return Err(SessionEnd::Failed(format!(
                "region {} is the standby of {active}, but `[dr] peers` has no replicas for {active} (it has: {}): add `{active} = \"http://host:port,...\"`",
                self.config.region,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let mut queue: Vec<String> = endpoints.iter().rev().cloned().collect();
        if let Some((region, preferred)) = &self.preferred
            && region == active
        {
            // Possibly a leader a follower named that is missing from the list.
            queue.retain(|endpoint| endpoint != preferred);
            queue.push(preferred.clone());
        }
        let mut failures = Vec::new();
        let mut redirects = 0;
        while let Some(address) = queue.pop() {
            match self.open_one(state, &address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => {
                    if error.error_code() == Some(REPLICATION_EPOCH) {
                        return Err(SessionEnd::Failed(format!(
                            "{address} (region {active}) refuses to stream to region epoch {}: {error}",
                            state.region_epoch
                        )));
                    }
                    if let ClientError::NotLeader {
                        leader: Some(leader),
                        ..
                    } = &error
                        && leader != &address
                        && redirects < MAX_REDIRECTS
                    {
                        redirects += 1;
                        queue.retain(|queued| queued != leader);
                        queue.push(leader.clone());
                    }
                    failures.push(format!("{address}: {error}"));
                }
            }
        }
        Err(SessionEnd::Failed(format!(
            "no replica of region {active} opened the stream: {}",
            failures.join("; ")
        )))
    }

    async fn open_one(&self, state: &RegionState, address: &str) -> Result<Stream, ClientError> {
        let timeout = self.config.connect_timeout;
        let endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|error| ClientError::InvalidEndpoint {
                endpoint: address.to_string(),
                message: error.to_string(),
            })?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true);
        let unavailable = |message: String| ClientError::Unavailable {
            endpoint: address.to_string(),
            message,
            error_code: None,
        };
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| unavailable(error_chain(&error)))?;
        let mut client =
            ReplicationServiceClient::new(channel).max_decoding_message_size(MAX_BATCH_BYTES);
        let (acks, ack_values) = watch::channel(state.applied_position);
        let start = self.start_message(state);
        let outbound = futures::stream::once(async move { start }).chain(
            WatchStream::from_changes(ack_values).map(|applied_position| proto::StandbyMessage {
                message: Some(proto::standby_message::Message::Ack(proto::ReplicateAck {
                    applied_position,
                })),
            }),
        );
        let reply = tokio::time::timeout(timeout, client.replicate(outbound))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "no answer to Replicate within {}",
                    humanize(timeout)
                ))
            })?
            .map_err(|status| ClientError::from(status).at(address))?;
        Ok(Stream {
            source: address.to_string(),
            acks,
            batches: reply.into_inner(),
        })
    }
}

/// `250ms`, `5s`.
fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// An error's message followed by its sources' (tonic's transport errors hide the cause).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = inner.source();
    }
    message
}
