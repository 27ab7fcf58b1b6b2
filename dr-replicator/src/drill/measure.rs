//! The drill's measurements: RTO ([`Rto`], [`rto`]) and RPO ([`Rpo`], [`rpo`]), and what they
//! are read from once the old active region is back: its status after it learned the new
//! epoch ([`wait_learned`]) and the commit times of its unreplicated tail
//! ([`read_log_times`]).
//!
//! - **RTO** = first dispatch in the new active region − the fault's start. The first
//!   dispatch is the new active's `RegionStatus.first_dispatch_at_ms` (commit time of the
//!   first `attempt_started` checkpoint after its promotion); when the server leaves it 0,
//!   the drill's own observation stands in: the time of its first poll of the canary runs
//!   (every [`super::verify::POLL_INTERVAL`]) that saw an attempt not in the snapshot taken at
//!   the promotion, late by at most one poll and one `GetRun`.
//! - **RPO**: the old region's tail (`tail_from..tail_to`, the checkpoints after the new
//!   active's `promoted_at_position`) is what the new active region never received. Of it,
//!   the checkpoints committed up to the end of the fault are the history lost
//!   (`lost_checkpoints`); the ones committed later (a partitioned region keeps running until
//!   it learns of the promotion) are counted apart as `split_brain_checkpoints`: discarded by
//!   design, never accepted anywhere. RPO seconds = commit time of the last lost checkpoint −
//!   commit time of the last replicated one (the fork position), both read from the old
//!   region's log ([`RpoMethod::TailCheckpointTimes`]); when they cannot be read, the bound
//!   end of fault − the standby's `applied_recorded_at` at the promotion
//!   ([`RpoMethod::FaultTimeBound`]), counting the whole tail as lost.
//! - In sync replication mode, not degraded at the fault (as last read before it), the
//!   active region acknowledged a write (to a client or worker, or by dispatching) only once
//!   the standby held it, and the tail is what the standby never held: its writes were never
//!   acknowledged. The RPO compared with the objective is then 0
//!   ([`RpoMethod::SyncNothingAcknowledged`]); the committed but unacknowledged writes lost
//!   are still counted in `lost_checkpoints`.

use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tandem_api::proto::replication_service_client::ReplicationServiceClient;
use tandem_api::{ClientError, proto};
use tandem_engine::checkpoint::{LogPosition, UnixMillis};
use tandem_engine::store::replication::{RegionRole, TailRange, TailRun};
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::region_client::RegionClient;
use crate::region_status::RegionStatus;

/// How the RTO was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RtoMethod {
    /// `first_dispatch_at_ms` of the new active region's status − the fault's start.
    FirstDispatchCheckpoint,
    /// The drill's first poll that saw a new attempt − the fault's start (the server did not
    /// report `first_dispatch_at_ms`).
    ObservedByPolling,
    /// Isolated mode: the copy's `first_dispatch_at_ms` − the time its promotion was asked.
    CopyPromotionToFirstDispatch,
}

impl RtoMethod {
    /// One line for the report.
    pub fn describe(self) -> &'static str {
        match self {
            RtoMethod::FirstDispatchCheckpoint => {
                "fault → first attempt_started checkpoint of the new active (its status)"
            }
            RtoMethod::ObservedByPolling => {
                "fault → first new attempt seen by the drill's polls (server gave no first dispatch)"
            }
            RtoMethod::CopyPromotionToFirstDispatch => {
                "promotion asked → first attempt_started checkpoint of the copy"
            }
        }
    }
}

/// The recovery time measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rto {
    /// When the fault started (isolated mode: when the copy's promotion was asked).
    pub fault_at_ms: UnixMillis,
    /// When the new active region was promoted (its status).
    pub promoted_at_ms: Option<UnixMillis>,
    /// The first dispatch in the new active region.
    pub first_dispatch_at_ms: Option<UnixMillis>,
    /// `first_dispatch_at_ms - fault_at_ms` (0 if the clocks say earlier); `None`: no
    /// dispatch was seen.
    pub millis: Option<u64>,
    /// Where `first_dispatch_at_ms` came from.
    pub method: Option<RtoMethod>,
}

/// The RTO from the fault's start, the promotion time, the first dispatch the new active
/// region reported (`from_status`, preferred) and the one the drill observed itself.
/// `method_if_reported` names how `from_status` is to be read.
pub fn rto(
    fault_at_ms: UnixMillis,
    promoted_at_ms: Option<UnixMillis>,
    from_status: Option<UnixMillis>,
    observed: Option<UnixMillis>,
    method_if_reported: RtoMethod,
) -> Rto {
    let (first, method) = match (from_status, observed) {
        (Some(at), _) => (Some(at), Some(method_if_reported)),
        (None, Some(at)) => (Some(at), Some(RtoMethod::ObservedByPolling)),
        (None, None) => (None, None),
    };
    Rto {
        fault_at_ms,
        promoted_at_ms,
        first_dispatch_at_ms: first,
        millis: first.map(|at| non_negative(at - fault_at_ms)),
        method,
    }
}

/// How the RPO was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RpoMethod {
    /// The old region came back with nothing after the fork: nothing was lost.
    NoTail,
    /// Commit time of the last lost checkpoint − commit time of the last replicated one,
    /// both read from the old region's log.
    TailCheckpointTimes,
    /// End of the fault − the standby's `applied_recorded_at` at the promotion (an upper
    /// bound; the tail's times could not be read).
    FaultTimeBound,
    /// Isolated mode: the standby's lag when its database was copied (what a region loss at
    /// that moment would have lost).
    ReplicationLag,
    /// Sync replication held at the fault: the tail's writes were never acknowledged, so no
    /// acknowledged history was lost (0).
    SyncNothingAcknowledged,
}

impl RpoMethod {
    /// One line for the report.
    pub fn describe(self) -> &'static str {
        match self {
            RpoMethod::NoTail => "old region had no unreplicated tail",
            RpoMethod::TailCheckpointTimes => {
                "last lost − last replicated checkpoint commit time (old region's log)"
            }
            RpoMethod::FaultTimeBound => {
                "fault − standby's last applied commit time (bound; tail times unreadable)"
            }
            RpoMethod::ReplicationLag => "standby's replication lag when copied",
            RpoMethod::SyncNothingAcknowledged => {
                "sync replication held: the lost tail was never acknowledged"
            }
        }
    }
}

/// The recovery point measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rpo {
    /// Checkpoints lost: tail checkpoints committed up to the end of the fault (isolated
    /// mode: the standby's lag in positions).
    pub lost_checkpoints: Option<u64>,
    /// Of `lost_checkpoints`, the ones that may have been acknowledged (all of them, unless
    /// sync replication held at the fault: none).
    pub acknowledged_lost_checkpoints: Option<u64>,
    /// Every checkpoint of the tail.
    pub tail_checkpoints: u64,
    /// Tail checkpoints committed after the end of the fault (by a cut-off region that did
    /// not know yet); `None` when the tail's times were not read.
    pub split_brain_checkpoints: Option<u64>,
    /// The old region's tail, as its status reported it.
    pub tail: Option<TailRange>,
    /// The runs with checkpoints in the tail.
    pub tail_runs: Vec<TailRun>,
    /// The new active's `promoted_at_position` (last replicated position).
    pub fork_position: Option<LogPosition>,
    /// Commit time of the checkpoint at the fork position.
    pub last_replicated_at_ms: Option<UnixMillis>,
    /// Commit time of the last lost checkpoint.
    pub last_lost_at_ms: Option<UnixMillis>,
    /// Commit time of the first tail checkpoint written after the end of the fault.
    pub first_split_brain_at_ms: Option<UnixMillis>,
    /// History lost, ms; `None`: not measured.
    pub millis: Option<u64>,
    /// How `millis` was measured.
    pub method: Option<RpoMethod>,
}

/// Commit times read from a region's log: `(position, recorded_at_ms)` in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogTimes {
    /// The checkpoints read.
    pub checkpoints: Vec<(LogPosition, UnixMillis)>,
}

impl LogTimes {
    /// The commit time of `position`, if it was read.
    pub fn at(&self, position: LogPosition) -> Option<UnixMillis> {
        self.checkpoints
            .binary_search_by_key(&position, |(at, _)| *at)
            .ok()
            .map(|index| self.checkpoints[index].1)
    }

    /// True when every position of `range` was read.
    pub fn covers(&self, range: TailRange) -> bool {
        range.to >= range.from
            && (range.from..=range.to).all(|position| self.at(position).is_some())
    }
}

/// What the RPO is computed from.
#[derive(Debug, Clone, Copy)]
pub struct RpoInput<'a> {
    /// When the fault was complete (processes killed, partition in place).
    pub fault_done_at_ms: UnixMillis,
    /// The new active's `promoted_at_position`.
    pub fork_position: Option<LogPosition>,
    /// The old region's tail after it learned the promotion (`None`: no tail).
    pub tail: Option<TailRange>,
    /// The tail's runs.
    pub tail_runs: &'a [TailRun],
    /// Commit times read from the old region's log (from the fork position on), if read.
    pub log_times: Option<&'a LogTimes>,
    /// The standby's `applied_recorded_at_ms` right before its promotion.
    pub standby_applied_recorded_at_ms: Option<UnixMillis>,
    /// The active region was in sync mode, not degraded, as last read before the fault.
    pub sync_held: bool,
}

/// The RPO (see the module docs for the rules).
pub fn rpo(input: RpoInput<'_>) -> Rpo {
    let measured = committed_loss(input);
    if input.sync_held && measured.method != Some(RpoMethod::NoTail) {
        return Rpo {
            acknowledged_lost_checkpoints: Some(0),
            millis: Some(0),
            method: Some(RpoMethod::SyncNothingAcknowledged),
            ..measured
        };
    }
    measured
}

/// The committed history lost, whatever the replication mode.
fn committed_loss(input: RpoInput<'_>) -> Rpo {
    let base = Rpo {
        lost_checkpoints: Some(0),
        acknowledged_lost_checkpoints: Some(0),
        tail_checkpoints: 0,
        split_brain_checkpoints: Some(0),
        tail: input.tail,
        tail_runs: input.tail_runs.to_vec(),
        fork_position: input.fork_position,
        last_replicated_at_ms: input
            .fork_position
            .and_then(|fork| input.log_times.and_then(|times| times.at(fork)))
            .or(input.standby_applied_recorded_at_ms),
        last_lost_at_ms: None,
        first_split_brain_at_ms: None,
        millis: Some(0),
        method: Some(RpoMethod::NoTail),
    };
    let Some(tail) = input.tail.filter(|tail| tail.to >= tail.from) else {
        return base;
    };
    let tail_checkpoints = tail.to - tail.from + 1;
    if let Some(times) = input.log_times.filter(|times| times.covers(tail)) {
        let (lost, later): (Vec<UnixMillis>, Vec<UnixMillis>) = (tail.from..=tail.to)
            .filter_map(|position| times.at(position))
            .partition(|&at| at <= input.fault_done_at_ms);
        let lost_count = lost.len() as u64;
        let last_lost = lost.iter().copied().max();
        let first_lost = lost.iter().copied().min();
        // Nothing replicated at all: the lost history spans the lost checkpoints themselves.
        let since = base.last_replicated_at_ms.or(first_lost);
        let millis = match (last_lost, since) {
            (None, _) => Some(0),
            (Some(last), Some(since)) => Some(non_negative(last - since)),
            (Some(_), None) => None,
        };
        return Rpo {
            lost_checkpoints: Some(lost_count),
            acknowledged_lost_checkpoints: Some(lost_count),
            tail_checkpoints,
            split_brain_checkpoints: Some(tail_checkpoints - lost_count),
            last_lost_at_ms: last_lost,
            first_split_brain_at_ms: later.iter().copied().min(),
            millis,
            method: Some(RpoMethod::TailCheckpointTimes),
            ..base
        };
    }
    Rpo {
        lost_checkpoints: Some(tail_checkpoints),
        acknowledged_lost_checkpoints: Some(tail_checkpoints),
        tail_checkpoints,
        split_brain_checkpoints: None,
        last_replicated_at_ms: input.standby_applied_recorded_at_ms,
        last_lost_at_ms: None,
        millis: input
            .standby_applied_recorded_at_ms
            .map(|applied| non_negative(input.fault_done_at_ms - applied)),
        method: Some(RpoMethod::FaultTimeBound),
        ..base
    }
}

fn non_negative(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

/// Polls `old` (every 250 ms, up to `timeout`) until it has learned that `new_active` was
/// promoted: its role is `fenced` or `standby` and it names `new_active` as active. Returns
/// that status. Errors: a text with the last status or error seen.
pub async fn wait_learned(
    old: &RegionClient,
    new_active: &str,
    timeout: Duration,
) -> Result<RegionStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match old.status().await {
            Ok(status)
                if status.role != RegionRole::Active && status.active_region == new_active =>
            {
                return Ok(status);
            }
            Ok(status) => format!(
                "it answered as {} with region epoch {}, active region {}",
                status.role.as_str(),
                status.region_epoch,
                status.active_region
            ),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "region {} did not learn that {new_active} was promoted within {} s (expected role fenced or standby following {new_active}; last: {last})",
                old.region(),
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reads the commit times of region `region`'s log positions `after + 1 ..= to` through its
/// leader's `ReplicationService.Replicate`, as a standby named `reader` that never
/// acknowledges (nothing is written anywhere; the stream is closed once read). Stops early
/// when the region's latest position is below `to`. Errors (a text naming the replica) when
/// no replica's leader streams within `timeout`.
pub async fn read_log_times(
    endpoints: &[String],
    region: &str,
    reader: &str,
    after: LogPosition,
    to: LogPosition,
    timeout: Duration,
) -> Result<LogTimes, String> {
    let deadline = Instant::now() + timeout;
    let mut failures: Vec<String> = Vec::new();
    loop {
        for endpoint in endpoints {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, read_from(endpoint, reader, after, to)).await {
                Ok(Ok(times)) => return Ok(times),
                Ok(Err(error)) => failures.push(format!("{endpoint}: {error}")),
                Err(_) => failures.push(format!("{endpoint}: no complete answer in time")),
            }
        }
        if Instant::now() >= deadline {
            failures.dedup();
            return Err(format!(
                "cannot read the log of region {region} after position {after}: {}",
                failures.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn read_from(
    endpoint: &str,
    reader: &str,
    after: LogPosition,
    to: LogPosition,
) -> Result<LogTimes, String> {
    let channel = Endpoint::from_shared(endpoint.to_string())
        .map_err(|error| error.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|error| format!("cannot connect: {error}"))?;
    let mut client =
        ReplicationServiceClient::new(channel).max_decoding_message_size(256 * 1024 * 1024);
    let (outbound, receiver) = tokio::sync::mpsc::channel::<proto::StandbyMessage>(1);
    outbound
        .send(proto::StandbyMessage {
            message: Some(proto::standby_message::Message::Start(
                proto::ReplicateStart {
                    standby_region: reader.to_string(),
                    after_position: after,
                    // Above every registration: no workflow texts are sent.
                    after_registration: i64::MAX as u64,
                    region_epoch: 0,
                    max_batch: 1000,
                },
            )),
        })
        .await
        .map_err(|_| "the request stream closed before it was sent".to_string())?;
    let mut batches = client
        .replicate(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .map_err(|status| ClientError::from(status).to_string())?
        .into_inner();
    let mut times = LogTimes::default();
    let mut last = after;
    while last < to {
        let Some(batch) = batches.next().await else {
            return Err(format!(
                "the stream ended after position {last}, expected up to {to}"
            ));
        };
        let batch = batch.map_err(|status| ClientError::from(status).to_string())?;
        for checkpoint in batch.checkpoints {
            if checkpoint.position <= to {
                times
                    .checkpoints
                    .push((checkpoint.position, checkpoint.recorded_at_ms));
            }
            last = last.max(checkpoint.position);
        }
        if batch.latest_position <= last && last < to {
            // The log ends before `to`: all there is was read.
            break;
        }
    }
    // Closing our side ends the server's stream.
    drop(outbound);
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(list: &[(u64, i64)]) -> LogTimes {
        LogTimes {
            checkpoints: list.to_vec(),
        }
    }

    #[test]
    fn rto_prefers_the_servers_first_dispatch() {
        let measured = rto(
            1_000,
            Some(2_000),
            Some(3_500),
            Some(3_700),
            RtoMethod::FirstDispatchCheckpoint,
        );
        assert_eq!(measured.millis, Some(2_500));
        assert_eq!(measured.method, Some(RtoMethod::FirstDispatchCheckpoint));
        let observed = rto(
            1_000,
            None,
            None,
            Some(3_700),
            RtoMethod::FirstDispatchCheckpoint,
        );
        assert_eq!(observed.millis, Some(2_700));
        assert_eq!(observed.method, Some(RtoMethod::ObservedByPolling));
        let none = rto(1_000, None, None, None, RtoMethod::FirstDispatchCheckpoint);
        assert_eq!(none.millis, None);
        assert_eq!(none.method, None);
        // A clock that says the dispatch came first does not make a negative RTO.
        assert_eq!(
            rto(
                1_000,
                None,
                Some(900),
                None,
                RtoMethod::FirstDispatchCheckpoint
            )
            .millis,
            Some(0)
        );
    }

    fn input<'a>(tail: Option<TailRange>, log_times: Option<&'a LogTimes>) -> RpoInput<'a> {
        RpoInput {
            fault_done_at_ms: 10_000,
            fork_position: Some(100),
            tail,
            tail_runs: &[],
            log_times,
            standby_applied_recorded_at_ms: Some(9_200),
            sync_held: false,
        }
    }

    #[test]
    fn no_tail_is_no_loss() {
        let measured = rpo(input(None, None));
        assert_eq!(measured.lost_checkpoints, Some(0));
        assert_eq!(measured.millis, Some(0));
        assert_eq!(measured.method, Some(RpoMethod::NoTail));
        assert_eq!(measured.last_replicated_at_ms, Some(9_200));
    }

    #[test]
    fn tail_times_give_the_lost_history_and_split_brain_writes() {
        let log = times(&[
            (100, 9_300),
            (101, 9_500),
            (102, 9_900),
            (103, 10_000),
            (104, 12_000),
            (105, 15_000),
        ]);
        let measured = rpo(input(Some(TailRange { from: 101, to: 105 }), Some(&log)));
        assert_eq!(measured.tail_checkpoints, 5);
        assert_eq!(measured.lost_checkpoints, Some(3));
        assert_eq!(measured.split_brain_checkpoints, Some(2));
        assert_eq!(measured.last_replicated_at_ms, Some(9_300));
        assert_eq!(measured.last_lost_at_ms, Some(10_000));
        assert_eq!(measured.first_split_brain_at_ms, Some(12_000));
        assert_eq!(measured.millis, Some(700));
        assert_eq!(measured.method, Some(RpoMethod::TailCheckpointTimes));
    }

    #[test]
    fn sync_mode_that_held_loses_nothing_acknowledged() {
        let log = times(&[(100, 9_300), (101, 9_500)]);
        let mut sync = input(Some(TailRange { from: 101, to: 101 }), Some(&log));
        sync.sync_held = true;
        let measured = rpo(sync);
        assert_eq!(measured.lost_checkpoints, Some(1));
        assert_eq!(measured.acknowledged_lost_checkpoints, Some(0));
        assert_eq!(measured.millis, Some(0));
        assert_eq!(measured.method, Some(RpoMethod::SyncNothingAcknowledged));
        let mut degraded = input(Some(TailRange { from: 101, to: 101 }), Some(&log));
        degraded.sync_held = false;
        assert_eq!(rpo(degraded).acknowledged_lost_checkpoints, Some(1));
        let mut empty = input(None, None);
        empty.sync_held = true;
        assert_eq!(rpo(empty).method, Some(RpoMethod::NoTail));
    }

    #[test]
    fn a_tail_written_only_after_the_fault_loses_nothing() {
        let log = times(&[(100, 9_300), (101, 11_000)]);
        let measured = rpo(input(Some(TailRange { from: 101, to: 101 }), Some(&log)));
        assert_eq!(measured.lost_checkpoints, Some(0));
        assert_eq!(measured.split_brain_checkpoints, Some(1));
        assert_eq!(measured.millis, Some(0));
    }

    #[test]
    fn without_every_tail_time_the_bound_counts_the_whole_tail() {
        let partial = times(&[(100, 9_300), (101, 9_500)]);
        let measured = rpo(input(
            Some(TailRange { from: 101, to: 103 }),
            Some(&partial),
        ));
        assert_eq!(measured.method, Some(RpoMethod::FaultTimeBound));
        assert_eq!(measured.lost_checkpoints, Some(3));
        assert_eq!(measured.split_brain_checkpoints, None);
        assert_eq!(measured.millis, Some(800));
        let unread = rpo(input(Some(TailRange { from: 101, to: 103 }), None));
        assert_eq!(unread.millis, Some(800));
        let mut blind = input(Some(TailRange { from: 101, to: 103 }), None);
        blind.standby_applied_recorded_at_ms = None;
        assert_eq!(rpo(blind).millis, None);
    }

    #[test]
    fn nothing_replicated_measures_the_lost_span() {
        let log = times(&[(1, 5_000), (2, 5_600)]);
        let mut never = input(Some(TailRange { from: 1, to: 2 }), Some(&log));
        never.fork_position = None;
        never.standby_applied_recorded_at_ms = None;
        let measured = rpo(never);
        assert_eq!(measured.lost_checkpoints, Some(2));
        assert_eq!(measured.millis, Some(600));
    }

    #[test]
    fn log_times_cover_only_complete_ranges() {
        let log = times(&[(5, 1), (6, 2), (8, 3)]);
        assert!(log.covers(TailRange { from: 5, to: 6 }));
        assert!(!log.covers(TailRange { from: 5, to: 8 }));
        assert_eq!(log.at(8), Some(3));
        assert_eq!(log.at(7), None);
    }
}
