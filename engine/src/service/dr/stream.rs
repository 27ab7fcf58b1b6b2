//! `tandem.v1.ReplicationService.Replicate`: the region's leader pushes its checkpoint log
//! to a standby's replicator.
//!
//! The standby's first message says where to resume (`start`); the server then reads the
//! log after that position with [`ReplicationStore::read_replication`] (at most `max_batch`
//! checkpoints a read, default [`DEFAULT_MAX_BATCH`]) and sends it in order, with no gap, as
//! it grows: it is woken by each commit of this replica ([`super::progress`]) and polls the
//! store at least every [`FALLBACK_POLL`] for commits it was not told about. When nothing was
//! sent for [`HEARTBEAT`] it sends a batch without checkpoints, carrying the latest position
//! (the standby's lag in positions). The standby's later messages are `ack`s of what it
//! applied; they are recorded (sync mode waits for them), bounded by what this stream sent.
//!
//! Refusals: `not_leader` from a follower; FAILED_PRECONDITION `replication_epoch` when the
//! standby's region epoch is higher than this region's (it was promoted after this log
//! forked), `replication_gap` when it resumes after a position this log does not have. The
//! stream ends with `not_leader` when this replica stops being its region's leader.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tandem_api::proto::{self, replication_service_server::ReplicationService};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Dr;
use super::wire::batches_to_proto;
use crate::checkpoint::{LogPosition, now_millis};
use crate::service::error::ServiceError;
use crate::service::limits::{self, invalid};
use crate::service::region::Region;
use crate::store::StoreError;
use crate::store::replication::ReplicationStore;

/// Checkpoints per read when the standby does not say (`max_batch` 0). Larger batches
/// amortize the standby's per-transaction cost: under 50 concurrent fanout-1k runs,
/// `tandem bench -w dr-lag` measured lag p99 2.9 s with 1,000 and 1.5 s with 5,000 (batches
/// are still cut at about 3 MiB of text).
pub const DEFAULT_MAX_BATCH: usize = 5000;

/// Most checkpoints per read whatever the standby asks.
pub const MAX_BATCH: usize = 10_000;

/// Longest wait between two reads of the log while no commit of this replica was published.
pub const FALLBACK_POLL: Duration = Duration::from_millis(50);

/// Longest time without a batch sent: then a batch without checkpoints goes out.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// Ends of batches that held everything committed when they were read, kept for the acks
/// (at most this many; older ones are dropped).
const MAX_COMPLETE_ENDS: usize = 1024;

/// Numbers the streams, so a stream that ends does not forget a newer one's standby.
static STREAMS: AtomicU64 = AtomicU64::new(1);

/// The handlers of `ReplicationService` over a [`Region`].
#[derive(Clone)]
pub struct ReplicationApi {
    region: Region,
}

impl ReplicationApi {
    /// Handlers for `region`.
    pub fn new(region: Region) -> Self {
        ReplicationApi { region }
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<proto::LogBatch, Status>> + Send>>;

/// What a stream shares with the reader of its standby's acks.
struct Shipped {
    /// The last position sent (the standby cannot have acknowledged more from this stream).
    sent: AtomicU64,
    /// Ends of complete batches not acknowledged yet, in order.
    complete: Mutex<VecDeque<LogPosition>>,
}

impl Shipped {
    fn complete(&self) -> std::sync::MutexGuard<'_, VecDeque<LogPosition>> {
        self.complete.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[tonic::async_trait]
impl ReplicationService for ReplicationApi {
    type ReplicateStream = LogStream;

    async fn replicate(
        &self,
        request: Request<Streaming<proto::StandbyMessage>>,
    ) -> Result<Response<LogStream>, Status> {
        let dr = self
            .region
            .dr()
            .cloned()
            .ok_or_else(|| ServiceError::DrNotConfigured {
                region: self.region.name().to_string(),
            })?;
        self.region.require_region_leader()?;
        let mut inbound = request.into_inner();
        let start = match inbound.message().await? {
            Some(proto::StandbyMessage {
                message: Some(proto::standby_message::Message::Start(start)),
            }) => start,
            Some(_) => {
                return Err(invalid(
                    "message",
                    "expected `start` as the stream's first message, found an ack or nothing",
                )
                .into());
            }
            None => {
                return Err(invalid(
                    "message",
                    "expected `start` as the stream's first message, found the end of the stream",
                )
                .into());
            }
        };
        limits::required(
            "start.standby_region",
            &start.standby_region,
            limits::MAX_NAME_BYTES,
        )?;
        if start.standby_region == self.region.name() {
            return Err(invalid(
                "start.standby_region",
                format!(
                    "expected another region than this one, found `{}` (a region does not replicate from itself)",
                    start.standby_region
                ),
            )
            .into());
        }
        let state = dr.store.region_state().await.map_err(ServiceError::from)?;
        if start.region_epoch > state.region_epoch {
            return Err(ServiceError::ReplicationEpoch {
                region: state.region,
                region_epoch: state.region_epoch,
                standby_region: start.standby_region,
                standby_epoch: start.region_epoch,
            }
            .into());
        }
        let latest = dr
            .store
            .latest_position()
            .await
            .map_err(ServiceError::from)?;
        if start.after_position > latest {
            return Err(ServiceError::StandbyAhead {
                region: state.region,
                latest,
                standby_region: start.standby_region,
                after_position: start.after_position,
            }
            .into());
        }
        let limit = match start.max_batch as usize {
            0 => DEFAULT_MAX_BATCH,
            asked => asked.min(MAX_BATCH),
        };
        let (batches, stream) = mpsc::channel(4);
        let region = self.region.clone();
        tokio::spawn(ship(region, dr, start, limit, inbound, batches));
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

/// Runs one stream: records the standby, reads its acks in a task of their own, pushes the
/// log until the standby leaves or this replica stops leading.
async fn ship(
    region: Region,
    dr: Arc<Dr>,
    start: proto::ReplicateStart,
    limit: usize,
    inbound: Streaming<proto::StandbyMessage>,
    batches: mpsc::Sender<Result<proto::LogBatch, Status>>,
) {
    let id = STREAMS.fetch_add(1, Ordering::Relaxed);
    let standby = start.standby_region.clone();
    tracing::info!(%standby, after_position = start.after_position, after_registration = start.after_registration, "a standby connected: shipping the log");
    dr.progress.connected(&standby, id);
    let shipped = Arc::new(Shipped {
        sent: AtomicU64::new(start.after_position),
        complete: Mutex::new(VecDeque::new()),
    });
    let acks = tokio::spawn(read_acks(
        inbound,
        dr.clone(),
        shipped.clone(),
        standby.clone(),
    ));
    let pushed = push(&region, &dr, &start, limit, &shipped, &batches, &acks).await;
    acks.abort();
    dr.progress.disconnected(id);
    match pushed {
        Ok(()) => tracing::info!(%standby, "the standby's stream ended"),
        Err(status) => {
            tracing::warn!(%standby, error = %status.message(), "ending the standby's stream");
            let _ = batches.send(Err(status)).await;
        }
    }
}

/// Pushes the log after `start` (see the module docs). Ok when the standby went away.
async fn push(
    region: &Region,
    dr: &Dr,
    start: &proto::ReplicateStart,
    limit: usize,
    shipped: &Shipped,
    batches: &mpsc::Sender<Result<proto::LogBatch, Status>>,
    acks: &tokio::task::JoinHandle<()>,
) -> Result<(), Status> {
    let store: &dyn ReplicationStore = dr.store.as_ref();
    let mut after = start.after_position;
    let mut after_registration = start.after_registration;
    let mut commits = dr.progress.subscribe_latest();
    let mut last_sent: Option<Instant> = None;
    loop {
        if acks.is_finished() || batches.is_closed() {
            return Ok(());
        }
        region.require_region_leader()?;
        let state = dr.watch.get();
        let latest = store.latest_position().await.map_err(unavailable)?;
        let slice = store
            .read_replication(after, after_registration, limit)
            .await
            .map_err(unavailable)?;
        let full = slice.checkpoints.len() >= limit;
        let read_to = slice
            .checkpoints
            .last()
            .map_or(after, |last| last.checkpoint.position);
        let registered_to = slice
            .workflows
            .last()
            .map_or(after_registration, |last| last.registration);
        let has_data = !slice.checkpoints.is_empty() || !slice.workflows.is_empty();
        if has_data || last_sent.is_none_or(|sent| sent.elapsed() >= HEARTBEAT) {
            let reported = latest.max(read_to);
            if read_to >= latest {
                let mut complete = shipped.complete();
                if complete.back() != Some(&read_to) {
                    if complete.len() >= MAX_COMPLETE_ENDS {
                        complete.pop_front();
                    }
                    complete.push_back(read_to);
                }
            }
            shipped.sent.fetch_max(read_to, Ordering::SeqCst);
            let messages = batches_to_proto(
                &state.region,
                state.region_epoch,
                reported,
                now_millis(),
                slice,
            );
            for message in messages {
                if batches.send(Ok(message)).await.is_err() {
                    return Ok(());
                }
            }
            last_sent = Some(Instant::now());
            after = read_to;
            after_registration = registered_to;
        }
        if full {
            continue;
        }
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(FALLBACK_POLL).await;
                }
            }
            () = tokio::time::sleep(FALLBACK_POLL) => {}
            () = batches.closed() => return Ok(()),
        }
    }
}

/// A store error while shipping: the standby reconnects (with backoff) and resumes.
fn unavailable(error: StoreError) -> Status {
    ServiceError::from(error).into()
}

/// Records the standby's acks until its stream ends.
async fn read_acks(
    mut inbound: Streaming<proto::StandbyMessage>,
    dr: Arc<Dr>,
    shipped: Arc<Shipped>,
    standby: String,
) {
    loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(%standby, error = %status, "the standby's messages ended");
                return;
            }
        };
        match message.message {
            Some(proto::standby_message::Message::Ack(ack)) => {
                let sent = shipped.sent.load(Ordering::SeqCst);
                if ack.applied_position > sent {
                    tracing::warn!(%standby, acked = ack.applied_position, sent, "the standby acknowledged positions this stream never sent; counting only those sent");
                }
                let acked = ack.applied_position.min(sent);
                let caught_up = {
                    let mut complete = shipped.complete();
                    let mut caught_up = false;
                    while complete.front().is_some_and(|end| *end <= acked) {
                        complete.pop_front();
                        caught_up = true;
                    }
                    caught_up
                };
                dr.progress.record_ack(acked, caught_up);
            }
            Some(proto::standby_message::Message::Start(_)) | None => {
                tracing::warn!(%standby, "ignoring a standby message that is not an ack");
            }
        }
    }
}
