use tandem_dr::{DrError, Lag, RegionStatus, ReplicationMode};
use tandem_engine::store::replication::TailRange;

use super::*;

fn region(name: &str, role: RegionRole, active: &str) -> RegionStatus {
    RegionStatus {
        region: name.into(),
        role,
        region_epoch: 2,
        active_region: active.into(),
        latest_position: 120,
        applied_position: 100,
        applied_at_ms: Some(1_700_000_000_000),
        applied_recorded_at_ms: Some(1_700_000_000_000),
        source_latest_position: 120,
        promoted_at_position: None,
        tail: None,
        tail_runs: vec![],
        replication_mode: ReplicationMode::Sync,
        sync_degraded_since_ms: None,
        standby_acked_position: None,
        standby_region: None,
        leader_member: Some(format!("{name}-1")),
        leader_epoch: Some(7),
        archived_tail_checkpoints: 0,
        promoted_at_ms: None,
        first_dispatch_at_ms: None,
        answered_by: "http://127.0.0.1:7101".into(),
    }
}

fn dr() -> DrStatus {
    let mut active = region("eu-west", RegionRole::Active, "eu-west");
    active.standby_region = Some("us-east".into());
    let standby = region("us-east", RegionRole::Standby, "eu-west");
    let mut fenced = region("ap-south", RegionRole::Fenced, "eu-west");
    fenced.tail = Some(TailRange { from: 91, to: 95 });
    fenced.tail_runs = vec![TailRun {
        run_id: "0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70".parse().unwrap(),
        workflow: "nightly".into(),
        checkpoints: 5,
        created_in_tail: true,
    }];
    fenced.archived_tail_checkpoints = 12;
    let now = 1_700_000_001_500;
    DrStatus {
        checked_at_ms: now,
        regions: vec![
            RegionReport::new("eu-west".into(), vec![], Ok(active), now),
            RegionReport::new("us-east".into(), vec![], Ok(standby), now),
            RegionReport::new("ap-south".into(), vec![], Ok(fenced), now),
            RegionReport::new(
                "sa-east".into(),
                vec![],
                Err(DrError::Unreachable {
                    region: "sa-east".into(),
                    failures: vec!["http://127.0.0.1:7401: connection refused".into()],
                }),
                now,
            ),
        ],
    }
}

#[test]
fn the_table_shows_roles_positions_lag_sync_and_tails() {
    let text = status(&dr());
    for needle in [
        "REGION",
        "LAG TIME",
        "eu-west-1 (epoch 7)",
        "ok (us-east streaming)",
        "standby",
        "1.500s",
        "91..=95",
        "unreachable",
        "sa-east: region sa-east is unreachable: http://127.0.0.1:7401: connection refused",
        "ap-south: unreplicated tail, positions 91..=95 (5 checkpoints): run 0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70 (nightly): 5 checkpoints, created in the tail",
        "ap-south: 12 checkpoints of earlier tails archived",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let standby_row = text
        .lines()
        .find(|line| line.contains("us-east") && line.contains("standby"))
        .unwrap();
    assert!(
        standby_row.contains(" 20 "),
        "lag of 20 positions: {standby_row}"
    );
}

#[test]
fn a_degraded_sync_region_says_since_when() {
    let mut status_now = dr();
    status_now.regions[0]
        .status
        .as_mut()
        .unwrap()
        .sync_degraded_since_ms = Some(0);
    let text = status(&status_now);
    assert!(
        text.contains("degraded since 1970-01-01T00:00:00.000Z"),
        "{text}"
    );
}

#[test]
fn promote_lines_name_the_lag_and_each_demotion() {
    let status_now = dr();
    let outcome = PromoteOutcome {
        region: "us-east".into(),
        region_epoch: 3,
        forced: true,
        previous_active: "eu-west".into(),
        lag_before: Some(Lag {
            positions: 4,
            millis: Some(250),
        }),
        status: region("us-east", RegionRole::Active, "us-east"),
        demotions: vec![
            tandem_dr::Demotion {
                region: "eu-west".into(),
                status: None,
                error: Some("region eu-west is unreachable".into()),
            },
            tandem_dr::Demotion {
                region: "ap-south".into(),
                status: status_now.regions[2].status.clone(),
                error: None,
            },
        ],
        before: status_now,
        took_ms: 1_234,
    };
    let text = promoted(&outcome);
    for needle in [
        "promoted us-east to active with region epoch 3 (--force)",
        "lag at promotion: 4 positions, 0.250s",
        "eu-west: not told (region eu-west is unreachable)",
        "ap-south: told, now fenced (region epoch 2), unreplicated tail 91..=95",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

#[test]
fn rejoin_lines_list_the_archived_tail() {
    let outcome = RejoinOutcome {
        region: "eu-west".into(),
        active_region: "us-east".into(),
        region_epoch: 3,
        fork_position: 90,
        demoted_first: false,
        tail: Some(TailRange { from: 91, to: 95 }),
        tail_runs: vec![],
        archived_checkpoints: 5,
        status: region("eu-west", RegionRole::Standby, "us-east"),
    };
    let text = rejoined(&outcome);
    assert!(
        text.contains(
            "eu-west is now a standby of us-east (region epoch 3), its log cut back to position 90"
        ),
        "{text}"
    );
    assert!(
        text.contains("archived tail (kept in dr_tail): positions 91..=95, 5 checkpoints; no runs"),
        "{text}"
    );
    let plain = RejoinOutcome {
        tail: None,
        archived_checkpoints: 0,
        ..outcome
    };
    let text = rejoined(&plain);
    assert_eq!(
        text,
        "eu-west is a standby of us-east (region epoch 3): it had no unreplicated tail, nothing was archived"
    );
}

#[test]
fn json_nests_the_outcome_and_the_status() {
    let value: serde_json::Value = serde_json::from_str(&json(&dr()).unwrap()).unwrap();
    assert_eq!(value["regions"][1]["lag"]["positions"], 20);
    assert_eq!(value["regions"][0]["status"]["role"], "active");
    assert_eq!(value["regions"][3]["reachable"], false);
}
