//! [`RegionStatus`]: a region's disaster-recovery state (reply of
//! [`crate::Client::region_status`] and of the DR calls), in Rust forms: enums instead of
//! strings, `Option` instead of 0 / empty for "none".

use std::fmt;

use serde::Serialize;

use crate::proto;

/// A region's role in disaster recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionRole {
    /// Its leader schedules runs and writes; its log is shipped to standbys.
    Active,
    /// It applies the active region's log and refuses to start runs.
    Standby,
    /// It was active, learned that another region was promoted with a higher region epoch,
    /// and holds an unreplicated tail (`tandem dr rejoin` archives it).
    Fenced,
}

impl RegionRole {
    /// `active`, `standby` or `fenced`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionRole::Active => "active",
            RegionRole::Standby => "standby",
            RegionRole::Fenced => "fenced",
        }
    }

    /// Parses [`RegionRole::as_str`]'s spelling.
    pub fn parse(text: &str) -> Option<RegionRole> {
        [RegionRole::Active, RegionRole::Standby, RegionRole::Fenced]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

impl fmt::Display for RegionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Positions `[from, to]` of a fenced region's log that the active region never received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TailRange {
    /// First position of the tail.
    pub from: u64,
    /// Last position of the tail.
    pub to: u64,
}

/// A run with checkpoints in a fenced region's unreplicated tail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TailRun {
    /// The run id.
    pub run_id: String,
    /// Its workflow's name.
    pub workflow: String,
    /// Its checkpoints in the tail.
    pub checkpoints: u64,
    /// Whether the run was created in the tail (the active region never heard of it).
    pub created_in_tail: bool,
}

/// A region's disaster-recovery state as the answering replica read it from its store.
/// The replication fields (`replication_mode` aside) are those of the answering replica:
/// a region's leader serves the replication stream, so a follower reports no standby,
/// acknowledgement or degradation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionStatus {
    /// The region's name.
    pub region: String,
    /// The address the answer came from, `http://host:port`.
    pub endpoint: String,
    /// Its role.
    pub role: RegionRole,
    /// Its region epoch (grows by one with each promotion).
    pub region_epoch: u64,
    /// The region it knows as active (itself when active).
    pub active_region: String,
    /// Its latest log position.
    pub latest_position: u64,
    /// The last position applied from the active region (an active region: its latest).
    pub applied_position: u64,
    /// When the last replicated batch was applied (ms since the Unix epoch).
    pub applied_at_unix_ms: Option<i64>,
    /// The active region's commit time of the last applied checkpoint (ms since the Unix
    /// epoch): the standby's lag in seconds is measured from it.
    pub applied_recorded_at_unix_ms: Option<i64>,
    /// The active region's latest position as last heard from it.
    pub source_latest_position: u64,
    /// The last position replicated before this region was promoted; `None`: never promoted.
    pub promoted_at_position: Option<u64>,
    /// A fenced region's unreplicated tail.
    pub tail: Option<TailRange>,
    /// The runs with checkpoints in the tail.
    pub tail_runs: Vec<TailRun>,
    /// Checkpoints of tails archived by earlier rejoins.
    pub archived_tail_checkpoints: u64,
    /// `async` or `sync`.
    pub replication_mode: String,
    /// Sync mode: since when it has degraded to async (ms since the Unix epoch).
    pub sync_degraded_since_unix_ms: Option<i64>,
    /// The highest position a standby acknowledged (0: none yet).
    pub standby_acked_position: u64,
    /// The standby streaming from this region now.
    pub standby_region: Option<String>,
    /// The region's leader as the answering replica knows it: its member id.
    pub leader_member: Option<String>,
    /// The leader's epoch (0 without leader election or when none is known).
    pub leader_epoch: u64,
    /// When the answering replica saw this region promoted (ms since the Unix epoch);
    /// `None`: never promoted, or promoted before that replica started.
    pub promoted_at_unix_ms: Option<i64>,
    /// The commit time of the first task dispatched (`attempt_started`) after the
    /// promotion (ms since the Unix epoch); `None`: none yet. A drill's RTO ends here.
    pub first_dispatch_at_unix_ms: Option<i64>,
}

impl RegionStatus {
    /// The status of a reply received from `endpoint`. Errors (a message naming the field)
    /// when the role is not one this client knows.
    pub fn from_proto(reply: proto::RegionStatus, endpoint: &str) -> Result<RegionStatus, String> {
        let role = RegionRole::parse(&reply.role).ok_or_else(|| {
            format!(
                "RegionStatus.role: expected `active`, `standby` or `fenced`, found `{}`",
                reply.role
            )
        })?;
        let positive = |value: i64| (value > 0).then_some(value);
        let text = |value: String| (!value.is_empty()).then_some(value);
        let tail = (reply.tail_from > 0 || reply.tail_to > 0).then_some(TailRange {
            from: reply.tail_from,
            to: reply.tail_to,
        });
        Ok(RegionStatus {
            region: reply.region,
            endpoint: endpoint.to_string(),
            role,
            region_epoch: reply.region_epoch,
            active_region: reply.active_region,
            latest_position: reply.latest_position,
            applied_position: reply.applied_position,
            applied_at_unix_ms: positive(reply.applied_at_ms),
            applied_recorded_at_unix_ms: positive(reply.applied_recorded_at_ms),
            source_latest_position: reply.source_latest_position,
            promoted_at_position: (reply.promoted_at_position > 0)
                .then_some(reply.promoted_at_position),
            tail,
            tail_runs: reply
                .tail_runs
                .into_iter()
                .map(|run| TailRun {
                    run_id: run.run_id,
                    workflow: run.workflow,
                    checkpoints: run.checkpoints,
                    created_in_tail: run.created_in_tail,
                })
                .collect(),
            archived_tail_checkpoints: reply.archived_tail_checkpoints,
            replication_mode: reply.replication_mode,
            sync_degraded_since_unix_ms: positive(reply.sync_degraded_since_ms),
            standby_acked_position: reply.standby_acked_position,
            standby_region: text(reply.standby_region),
            leader_member: text(reply.leader_member),
            leader_epoch: reply.leader_epoch,
            promoted_at_unix_ms: positive(reply.promoted_at_ms),
            first_dispatch_at_unix_ms: positive(reply.first_dispatch_at_ms),
        })
    }

    /// The standby's lag in positions behind the active region's latest as it last heard of
    /// it (0 for an active region).
    pub fn lag_positions(&self) -> u64 {
        match self.role {
            RegionRole::Active => 0,
            _ => self
                .source_latest_position
                .saturating_sub(self.applied_position),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> proto::RegionStatus {
        proto::RegionStatus {
            region: "eu-west".into(),
            role: "fenced".into(),
            region_epoch: 2,
            active_region: "us-east".into(),
            latest_position: 40,
            applied_position: 30,
            applied_at_ms: 0,
            applied_recorded_at_ms: 7,
            source_latest_position: 35,
            promoted_at_position: 0,
            tail_from: 31,
            tail_to: 40,
            tail_runs: vec![proto::TailRun {
                run_id: "r1".into(),
                workflow: "w".into(),
                checkpoints: 10,
                created_in_tail: true,
            }],
            replication_mode: "sync".into(),
            sync_degraded_since_ms: 0,
            standby_acked_position: 0,
            standby_region: String::new(),
            leader_member: "eu-1".into(),
            leader_epoch: 9,
            archived_tail_checkpoints: 3,
            promoted_at_ms: 0,
            first_dispatch_at_ms: 11,
        }
    }

    #[test]
    fn converts_every_field_with_zero_as_none() {
        let status = RegionStatus::from_proto(reply(), "http://x:1").unwrap();
        assert_eq!(status.role, RegionRole::Fenced);
        assert_eq!(status.endpoint, "http://x:1");
        assert_eq!(status.tail, Some(TailRange { from: 31, to: 40 }));
        assert_eq!(status.tail_runs.len(), 1);
        assert_eq!(status.applied_at_unix_ms, None);
        assert_eq!(status.applied_recorded_at_unix_ms, Some(7));
        assert_eq!(status.promoted_at_position, None);
        assert_eq!(status.standby_region, None);
        assert_eq!(status.leader_member.as_deref(), Some("eu-1"));
        assert_eq!(status.lag_positions(), 5);
        assert_eq!(status.promoted_at_unix_ms, None);
        assert_eq!(status.first_dispatch_at_unix_ms, Some(11));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["role"], "fenced");
        assert_eq!(json["tail"]["from"], 31);
    }

    #[test]
    fn an_unknown_role_is_refused() {
        let mut bad = reply();
        bad.role = "primary".into();
        let error = RegionStatus::from_proto(bad, "http://x:1").unwrap_err();
        assert!(error.contains("`primary`"), "{error}");
    }
}
