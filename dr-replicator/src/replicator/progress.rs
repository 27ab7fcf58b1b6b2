//! [`ReplicatorStatus`]: what a running [`super::Replicator`] publishes on its watch channel.

use serde::Serialize;
use tandem_engine::checkpoint::{LogPosition, UnixMillis};
use tandem_engine::store::replication::{RegionRole, RegionState};

use crate::region_status::Lag;

/// What the replicator is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// It has not read the store's region state yet.
    Starting,
    /// The region is not a standby (active or fenced): nothing to pull; it polls the role.
    Idle,
    /// Standby: opening the stream to the active region.
    Connecting,
    /// Standby: applying the active region's batches.
    Streaming,
    /// Standby: the last try failed; it waits (backoff) before the next one.
    Retrying,
    /// It stopped (shutdown or a fatal error).
    Stopped,
}

/// The replicator's state and counters. Times are ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicatorStatus {
    /// The region it replicates into.
    pub region: String,
    /// What it is doing.
    pub phase: Phase,
    /// The store's role as last read; `None` before the first read.
    pub role: Option<RegionRole>,
    /// The region the store knows as active, as last read.
    pub active_region: Option<String>,
    /// The replica it streams from (`http://host:port`) while streaming.
    pub connected_source: Option<String>,
    /// The last applied position (from the store).
    pub applied_position: LogPosition,
    /// The source's latest position as its last batch reported it.
    pub source_latest_position: LogPosition,
    /// The source's commit time of the last applied checkpoint.
    pub applied_recorded_at_ms: Option<UnixMillis>,
    /// When the last batch (heartbeats included) was applied.
    pub last_batch_at_ms: Option<UnixMillis>,
    /// Batches applied since start (heartbeats included).
    pub batches_applied: u64,
    /// Checkpoints applied since start.
    pub checkpoints_applied: u64,
    /// Streams opened since start.
    pub connections: u64,
    /// The last failure (cleared when a batch is applied), with what it was doing.
    pub last_error: Option<String>,
}

impl ReplicatorStatus {
    pub(crate) fn new(region: &str) -> ReplicatorStatus {
        ReplicatorStatus {
            region: region.to_string(),
            phase: Phase::Starting,
            role: None,
            active_region: None,
            connected_source: None,
            applied_position: 0,
            source_latest_position: 0,
            applied_recorded_at_ms: None,
            last_batch_at_ms: None,
            batches_applied: 0,
            checkpoints_applied: 0,
            connections: 0,
            last_error: None,
        }
    }

    /// Copies the store's view (role, active region, positions).
    pub(crate) fn observe(&mut self, state: &RegionState) {
        self.role = Some(state.role);
        self.active_region = Some(state.active_region.clone());
        self.applied_position = state.applied_position;
        self.source_latest_position = state.source_latest_position;
        self.applied_recorded_at_ms = state.applied_recorded_at;
    }

    /// The lag at wall-clock time `now_ms` (same rules as
    /// [`crate::region_status::RegionStatus::lag`]); `None` unless the region is a standby.
    pub fn lag(&self, now_ms: UnixMillis) -> Option<Lag> {
        (self.role == Some(RegionRole::Standby)).then(|| {
            Lag::of(
                self.source_latest_position,
                self.applied_position,
                self.applied_recorded_at_ms,
                now_ms,
            )
        })
    }
}
