//! [`RegionStatus`]: a region's DR state as its replica answered `DrService.GetRegionStatus`
//! (or `Promote`/`Demote`/`Rejoin`), in the engine's types (role, tail, run ids), serializable,
//! with the lag of a standby.

use serde::{Deserialize, Serialize};
use tandem_engine::checkpoint::{LogPosition, RunId, UnixMillis};
use tandem_engine::store::replication::{RegionRole, TailRange, TailRun};

/// `[replication] mode` of a region: the engine's type (serialized as `async` / `sync`).
pub use tandem_engine::service::ReplicationMode;

/// A region's DR state (the proto's `RegionStatus`; fields that use 0 or `""` for "none" on
/// the wire are `Option`s here). Times are ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionStatus {
    /// The region's name.
    pub region: String,
    /// Its role.
    pub role: RegionRole,
    /// Its region epoch.
    pub region_epoch: u64,
    /// The region it knows as active (itself when active).
    pub active_region: String,
    /// Its latest log position.
    pub latest_position: LogPosition,
    /// Standby: the last position applied; active: equal to `latest_position`.
    pub applied_position: LogPosition,
    /// Standby: when the last batch was applied.
    pub applied_at_ms: Option<UnixMillis>,
    /// Standby: the source's commit time of the last applied checkpoint.
    pub applied_recorded_at_ms: Option<UnixMillis>,
    /// Standby: the source's latest position as last heard from it.
    pub source_latest_position: LogPosition,
    /// The last position replicated before this region was promoted; `None`: never promoted
    /// (or promoted with an empty log).
    pub promoted_at_position: Option<LogPosition>,
    /// Fenced: the unreplicated tail.
    pub tail: Option<TailRange>,
    /// Fenced: the runs with checkpoints in the tail.
    pub tail_runs: Vec<TailRun>,
    /// The region's replication mode.
    pub replication_mode: ReplicationMode,
    /// Active, sync mode: since when sync has degraded to async.
    pub sync_degraded_since_ms: Option<UnixMillis>,
    /// Active: the highest position a standby acknowledged.
    pub standby_acked_position: Option<LogPosition>,
    /// Active: the standby streaming from it now.
    pub standby_region: Option<String>,
    /// The region's leader (member id), when one is known.
    pub leader_member: Option<String>,
    /// The leader's epoch (inside the region), when known.
    pub leader_epoch: Option<u64>,
    /// Checkpoints kept in the archive `dr_tail` by earlier rejoins.
    pub archived_tail_checkpoints: u64,
    /// When this region was last promoted; `None`: never.
    pub promoted_at_ms: Option<UnixMillis>,
    /// The commit time of the first `attempt_started` checkpoint after its promotion (the
    /// first task it dispatched as the new active region); `None`: none yet.
    pub first_dispatch_at_ms: Option<UnixMillis>,
    /// The replica that answered (`http://host:port`).
    pub answered_by: String,
}

/// How far a standby is behind its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// `source_latest_position - applied_position` (0 when the source reported nothing
    /// newer).
    pub positions: u64,
    /// 0 when `positions` is 0; else `now - applied_recorded_at` (the age of the newest
    /// applied checkpoint: an upper bound of the history the standby misses), `None` when
    /// nothing was applied yet.
    pub millis: Option<u64>,
}

impl Lag {
    /// The lag of a standby that applied up to `applied` (the newest applied checkpoint
    /// committed at `applied_recorded_at` by the source) when the source reported
    /// `source_latest`, at wall-clock time `now_ms`.
    pub fn of(
        source_latest: LogPosition,
        applied: LogPosition,
        applied_recorded_at: Option<UnixMillis>,
        now_ms: UnixMillis,
    ) -> Lag {
        let positions = source_latest.saturating_sub(applied);
        let millis = if positions == 0 {
            Some(0)
        } else {
            applied_recorded_at.map(|recorded| now_ms.saturating_sub(recorded).max(0) as u64)
        };
        Lag { positions, millis }
    }
}

impl RegionStatus {
    /// Converts the SDK's form of a reply ([`tandem_api::Client::region_status`] and the DR
    /// calls).
    ///
    /// Errors: a text naming the field when `replication_mode` or a tail run's id is not one
    /// this client knows.
    pub fn from_sdk(sdk: tandem_api::RegionStatus) -> Result<RegionStatus, String> {
        let role = match sdk.role {
            tandem_api::RegionRole::Active => RegionRole::Active,
            tandem_api::RegionRole::Standby => RegionRole::Standby,
            tandem_api::RegionRole::Fenced => RegionRole::Fenced,
        };
        let replication_mode = match sdk.replication_mode.as_str() {
            // proto3's default for a server that leaves the field out.
            "" => ReplicationMode::Async,
            other => ReplicationMode::parse(other).ok_or_else(|| {
                format!("`replication_mode`: expected async or sync, found `{other}`")
            })?,
        };
        let tail_runs = sdk
            .tail_runs
            .into_iter()
            .enumerate()
            .map(|(index, run)| {
                let run_id: RunId = run
                    .run_id
                    .parse()
                    .map_err(|error| format!("`tail_runs[{index}].run_id`: {error}"))?;
                Ok(TailRun {
                    run_id,
                    workflow: run.workflow,
                    checkpoints: run.checkpoints,
                    created_in_tail: run.created_in_tail,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let positive = |value: u64| (value > 0).then_some(value);
        Ok(RegionStatus {
            region: sdk.region,
            role,
            region_epoch: sdk.region_epoch,
            active_region: sdk.active_region,
            latest_position: sdk.latest_position,
            applied_position: sdk.applied_position,
            applied_at_ms: sdk.applied_at_unix_ms,
            applied_recorded_at_ms: sdk.applied_recorded_at_unix_ms,
            source_latest_position: sdk.source_latest_position,
            promoted_at_position: sdk.promoted_at_position,
            tail: sdk.tail.map(|tail| TailRange {
                from: tail.from,
                to: tail.to,
            }),
            tail_runs,
            replication_mode,
            sync_degraded_since_ms: sdk.sync_degraded_since_unix_ms,
            standby_acked_position: positive(sdk.standby_acked_position),
            standby_region: sdk.standby_region,
            leader_member: sdk.leader_member,
            leader_epoch: positive(sdk.leader_epoch),
            archived_tail_checkpoints: sdk.archived_tail_checkpoints,
            promoted_at_ms: sdk.promoted_at_unix_ms,
            first_dispatch_at_ms: sdk.first_dispatch_at_unix_ms,
            answered_by: sdk.endpoint,
        })
    }

    /// A standby's lag at wall-clock time `now_ms`; `None` for an active or fenced region.
    pub fn lag(&self, now_ms: UnixMillis) -> Option<Lag> {
        (self.role == RegionRole::Standby).then(|| {
            Lag::of(
                self.source_latest_position,
                self.applied_position,
                self.applied_recorded_at_ms,
                now_ms,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk() -> tandem_api::RegionStatus {
        tandem_api::RegionStatus {
            region: "us-east".into(),
            endpoint: "http://h:1".into(),
            role: tandem_api::RegionRole::Standby,
            region_epoch: 2,
            active_region: "eu-west".into(),
            latest_position: 90,
            applied_position: 90,
            applied_at_unix_ms: Some(1_000),
            applied_recorded_at_unix_ms: Some(900),
            source_latest_position: 100,
            promoted_at_position: None,
            tail: None,
            tail_runs: vec![],
            archived_tail_checkpoints: 0,
            replication_mode: "sync".into(),
            sync_degraded_since_unix_ms: None,
            standby_acked_position: 0,
            standby_region: None,
            leader_member: Some("us-east-1".into()),
            leader_epoch: 7,
            promoted_at_unix_ms: None,
            first_dispatch_at_unix_ms: None,
        }
    }

    #[test]
    fn converts_the_sdk_form() {
        let status = RegionStatus::from_sdk(sdk()).unwrap();
        assert_eq!(status.role, RegionRole::Standby);
        assert_eq!(status.replication_mode, ReplicationMode::Sync);
        assert_eq!(status.standby_acked_position, None);
        assert_eq!(status.leader_epoch, Some(7));
        assert_eq!(status.leader_member.as_deref(), Some("us-east-1"));
        assert_eq!(status.applied_at_ms, Some(1_000));
        assert_eq!(status.answered_by, "http://h:1");
    }

    #[test]
    fn a_fenced_region_carries_its_tail() {
        let mut fenced = sdk();
        fenced.role = tandem_api::RegionRole::Fenced;
        fenced.tail = Some(tandem_api::TailRange { from: 91, to: 95 });
        fenced.tail_runs = vec![tandem_api::TailRun {
            run_id: "0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70".into(),
            workflow: "w".into(),
            checkpoints: 5,
            created_in_tail: true,
        }];
        let status = RegionStatus::from_sdk(fenced).unwrap();
        assert_eq!(status.role, RegionRole::Fenced);
        assert_eq!(status.tail, Some(TailRange { from: 91, to: 95 }));
        assert_eq!(status.tail_runs[0].checkpoints, 5);
        assert_eq!(status.lag(5_000), None);
    }

    #[test]
    fn unknown_values_are_named() {
        let mut odd = sdk();
        odd.replication_mode = "semi".into();
        let error = RegionStatus::from_sdk(odd).unwrap_err();
        assert!(
            error.contains("replication_mode") && error.contains("semi"),
            "{error}"
        );
        let mut odd = sdk();
        odd.tail_runs = vec![tandem_api::TailRun {
            run_id: "x".into(),
            workflow: "w".into(),
            checkpoints: 1,
            created_in_tail: false,
        }];
        let error = RegionStatus::from_sdk(odd).unwrap_err();
        assert!(error.contains("tail_runs[0].run_id"), "{error}");
    }

    #[test]
    fn lag_in_positions_and_time() {
        let status = RegionStatus::from_sdk(sdk()).unwrap();
        assert_eq!(
            status.lag(1_500),
            Some(Lag {
                positions: 10,
                millis: Some(600)
            })
        );
        let mut caught_up = status.clone();
        caught_up.source_latest_position = 90;
        assert_eq!(
            caught_up.lag(1_500),
            Some(Lag {
                positions: 0,
                millis: Some(0)
            })
        );
        let mut fresh = status.clone();
        fresh.applied_recorded_at_ms = None;
        assert_eq!(fresh.lag(1_500).unwrap().millis, None);
        let mut active = status;
        active.role = RegionRole::Active;
        assert_eq!(active.lag(1_500), None);
    }
}
