//! `tandem dr drill --output json` run against a [`Deployment`], its report read by JSON
//! pointer (the shape of `tandem_dr::drill::DrillReport`), and the checks every live drill
//! of the tests makes on the report and on both regions' databases.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::common::deployment::{ACTIVE, Deployment, Finished, STANDBY};
use crate::db::{self, CheckpointRow, Db};

/// A drill's outcome: its report and the command's output (progress lines on stderr).
pub struct Drill {
    /// The JSON report.
    pub report: Value,
    /// The command as it ended.
    pub finished: Finished,
}

/// Runs `tandem dr drill --output json ARGS` (3 canaries of 60 tasks, each wait bounded by
/// 90 s). Panics with the output when it prints no JSON report.
pub async fn run(deployment: &Deployment, args: &[&str]) -> Drill {
    let mut all = vec!["dr", "drill", "--output", "json", "--timeout", "90s"];
    all.extend_from_slice(args);
    let finished = deployment.tandem(&all, Duration::from_secs(420)).await;
    eprintln!("tandem {}:\n{}", all.join(" "), finished.stderr);
    let report: Value = serde_json::from_str(&finished.stdout).unwrap_or_else(|error| {
        panic!(
            "tandem {} printed no JSON report ({error}):\n{}",
            all.join(" "),
            finished.describe()
        )
    });
    Drill { report, finished }
}

impl Drill {
    /// The value at JSON `pointer` (`/rpo/tail`); panics naming it when absent.
    pub fn at(&self, pointer: &str) -> &Value {
        self.report
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the drill report has no {pointer}:\n{}", self.summary()))
    }

    /// The number at `pointer`; panics when it is not one (e.g. null: not measured).
    pub fn number(&self, pointer: &str) -> u64 {
        self.at(pointer).as_u64().unwrap_or_else(|| {
            panic!(
                "the drill report's {pointer} must be a number, found {}:\n{}",
                self.at(pointer),
                self.summary()
            )
        })
    }

    /// The text at `pointer`.
    pub fn text(&self, pointer: &str) -> &str {
        self.at(pointer).as_str().unwrap_or_else(|| {
            panic!(
                "the drill report's {pointer} must be a string, found {}:\n{}",
                self.at(pointer),
                self.summary()
            )
        })
    }

    /// The last position replicated before the promotion (the new active's
    /// `promoted_at_position`).
    pub fn fork(&self) -> i64 {
        self.number("/promotion/status/promoted_at_position") as i64
    }

    /// The steps as (name, outcome, detail).
    pub fn steps(&self) -> Vec<(String, String, String)> {
        self.at("/steps")
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|step| {
                        let field = |name: &str| step[name].as_str().unwrap_or("?").to_string();
                        (field("step"), field("outcome"), field("detail"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What to show when an assertion fails: the progress lines, the notes, the objectives
    /// and RPO/RTO figures.
    pub fn summary(&self) -> String {
        format!(
            "exit code {:?}\n--- progress (stderr):\n{}\n--- notes: {}\n--- objectives: {}\n--- rpo: {}\n--- rto: {}",
            self.finished.code,
            self.finished.stderr,
            self.report["notes"],
            self.report["objectives"],
            self.report["rpo"],
            self.report["rto"]
        )
    }

    /// Checks the drill passed (exit 0) with exactly `expected` steps, each passed.
    pub fn assert_passed(&self, expected: &[&str]) {
        assert_eq!(
            self.finished.code,
            Some(0),
            "the drill must pass:\n{}",
            self.summary()
        );
        assert_eq!(self.report["passed"], true, "{}", self.summary());
        assert_eq!(self.report["exit_code"], 0, "{}", self.summary());
        let steps = self.steps();
        let names: Vec<&str> = steps.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names, expected, "the drill's steps:\n{}", self.summary());
        for (name, outcome, detail) in &steps {
            assert_eq!(
                outcome,
                "passed",
                "step {name}: {detail}\n{}",
                self.summary()
            );
        }
    }

    /// Checks the promotion: the standby was promoted to region epoch 1 without `--force`.
    pub fn assert_promoted(&self) {
        assert_eq!(self.text("/active_region"), ACTIVE);
        assert_eq!(self.text("/standby_region"), STANDBY);
        assert_eq!(self.text("/promotion/region"), STANDBY);
        assert_eq!(self.number("/promotion/region_epoch"), 1);
        assert_eq!(self.at("/promotion/forced"), false);
        assert!(self.fork() > 0, "the standby had replicated nothing");
    }

    /// Checks every canary from the report's own snapshots (not its verdicts alone): each was
    /// caught running with succeeded tasks, was running in the new region at the promotion,
    /// ended `succeeded` there, and every task succeeded at the promotion kept its attempt
    /// count. Returns the canaries' run ids.
    pub fn assert_canaries_completed(&self, canaries: usize) -> Vec<String> {
        let runs = self.at("/canaries").as_array().cloned().unwrap_or_default();
        assert_eq!(
            runs.len(),
            canaries,
            "canaries started:\n{}",
            self.summary()
        );
        for run in &runs {
            let at_fault = &run["at_fault"];
            assert_eq!(at_fault["state"], "running", "canary {run}");
            assert!(
                at_fault["succeeded"].as_u64().unwrap_or(0) > 0,
                "the fault must hit a canary with succeeded tasks: {run}"
            );
        }
        let checks = self
            .at("/verification")
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(checks.len(), canaries, "{}", self.summary());
        let mut ids = Vec::new();
        for check in &checks {
            let run_id = check["run_id"].as_str().unwrap_or_default().to_string();
            assert_eq!(
                check["verdict"],
                "completed",
                "canary {run_id}: {}\n{}",
                check["detail"],
                self.summary()
            );
            assert_eq!(check["reruns"], serde_json::json!([]), "canary {run_id}");
            let before = &check["at_promotion"];
            let after = &check["at_end"];
            assert_eq!(
                before["state"], "running",
                "canary {run_id} must still be running in the new region at the promotion"
            );
            assert_eq!(after["state"], "succeeded", "canary {run_id}");
            let end: BTreeMap<&str, (&Value, &Value)> = tasks(after);
            let mut kept = 0;
            for (task, (state, attempts)) in tasks(before) {
                if state != "succeeded" {
                    continue;
                }
                kept += 1;
                assert_eq!(
                    end.get(task),
                    Some(&(state, attempts)),
                    "canary {run_id}: task {task} succeeded at the promotion after {attempts} attempt(s) and must not run again"
                );
            }
            assert!(
                kept > 0,
                "canary {run_id} had no succeeded task at the promotion: the check would prove nothing"
            );
            assert!(
                end.values().all(|(state, _)| *state == "succeeded"),
                "canary {run_id}: every task must succeed: {after}"
            );
            ids.push(run_id);
        }
        ids
    }

    /// Checks the RTO is measured, below 10 s, and (when the server reported it) is the
    /// commit time of the new active's first `attempt_started` after the fork in its log.
    pub fn assert_rto(&self, new_log: &[CheckpointRow]) {
        let measured = self.number("/objectives/rto/measured_ms");
        assert!(
            measured < 10_000,
            "RTO must be under 10 s, measured {measured} ms:\n{}",
            self.summary()
        );
        assert_eq!(self.text("/objectives/rto/verdict"), "met");
        assert_eq!(self.number("/rto/millis"), measured);
        let fault_at = self.number("/rto/fault_at_ms") as i64;
        let first_dispatch = self.number("/rto/first_dispatch_at_ms") as i64;
        assert_eq!(first_dispatch - fault_at, measured as i64);
        let fork = self.fork();
        let first_started = new_log
            .iter()
            .find(|row| row.position > fork && row.kind == "attempt_started")
            .unwrap_or_else(|| panic!("the new active region dispatched nothing after {fork}"));
        assert!(
            first_started.recorded_at - fault_at < 10_000,
            "the new active's first dispatch (position {}) was committed {} ms after the fault",
            first_started.position,
            first_started.recorded_at - fault_at
        );
        if self.text("/rto/method") == "first_dispatch_checkpoint" {
            assert_eq!(
                first_dispatch, first_started.recorded_at,
                "the RTO must end at the commit time of the new active's first attempt_started after the fork (position {})",
                first_started.position
            );
        }
    }

    /// Checks the RPO was measured: a number of ms (possibly 0) and of checkpoints.
    pub fn assert_rpo_measured(&self) {
        self.number("/objectives/rpo/measured_ms");
        self.number("/rpo/millis");
        self.number("/rpo/lost_checkpoints");
        self.number("/rpo/acknowledged_lost_checkpoints");
        self.text("/rpo/method");
        assert_eq!(self.text("/objectives/rpo/verdict"), "met");
    }
}

/// A run snapshot's tasks: task id → (state, attempts).
fn tasks(snapshot: &Value) -> BTreeMap<&str, (&Value, &Value)> {
    snapshot["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|task| {
                    (
                        task["task_id"].as_str().unwrap_or_default(),
                        (&task["state"], &task["attempts"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Both regions' logs after a failover of [`ACTIVE`] to [`STANDBY`].
pub struct Logs {
    /// The new active region's log.
    pub new: Vec<CheckpointRow>,
    /// The old region's rows after the fork: its unreplicated tail when it is fenced, what
    /// it applied from the new active region when it follows it.
    pub old_after_fork: Vec<CheckpointRow>,
    /// Of those, the ones the old region wrote itself: its tail (empty when it has none).
    pub tail: Vec<CheckpointRow>,
}

/// Reads both logs and checks what holds after any failover: both contiguous; the same
/// checkpoints, position for position, up to the fork; no succeeded task ran again in the
/// new active region; every canary finished there exactly once, succeeded.
pub async fn failover_logs(deployment: &Deployment, fork: i64, canaries: &[String]) -> Logs {
    let old_db = Db::connect(&deployment.postgres_url(ACTIVE)).await;
    let old = old_db.checkpoints().await;
    let own: HashSet<i64> = old_db.own_positions_after(fork).await.into_iter().collect();
    let new = Db::connect(&deployment.postgres_url(STANDBY))
        .await
        .checkpoints()
        .await;
    db::assert_contiguous(ACTIVE, &old);
    db::assert_contiguous(STANDBY, &new);
    let fork_len = usize::try_from(fork).expect("a fork position");
    assert!(
        old.len() >= fork_len && new.len() >= fork_len,
        "both logs must reach the fork {fork}: {ACTIVE} has {}, {STANDBY} {}",
        old.len(),
        new.len()
    );
    if let Some(difference) = db::first_difference(
        &format!("{ACTIVE} and {STANDBY} up to the fork {fork}"),
        &old[..fork_len],
        &new[..fork_len],
    ) {
        panic!("{difference}");
    }
    db::assert_no_succeeded_task_ran_again(STANDBY, &new);
    let finished = db::finished_runs(&new);
    for run in canaries {
        assert_eq!(
            finished.get(run).map(String::as_str),
            Some("succeeded"),
            "canary {run} must finish succeeded in {STANDBY}'s log"
        );
        let ends = new
            .iter()
            .filter(|row| &row.run_id == run && row.kind == "run_finished")
            .count();
        assert_eq!(ends, 1, "canary {run} must finish once");
    }
    let old_after_fork = old[fork_len..].to_vec();
    let tail = old_after_fork
        .iter()
        .filter(|row| own.contains(&row.position))
        .cloned()
        .collect();
    Logs {
        new,
        old_after_fork,
        tail,
    }
}

/// Checks that none of `tail` (the old region's checkpoints after the fork) is in `new_log`:
/// not at its position, and not anywhere else with the same content.
pub fn assert_tail_not_accepted(tail: &[CheckpointRow], new_log: &[CheckpointRow]) {
    let contents: HashSet<_> = new_log.iter().map(CheckpointRow::content).collect();
    for row in tail {
        let at = usize::try_from(row.position - 1)
            .ok()
            .and_then(|index| new_log.get(index));
        assert_ne!(
            at,
            Some(row),
            "{ACTIVE}'s post-promotion checkpoint {} was accepted into {STANDBY}'s log",
            row.position
        );
        assert!(
            !contents.contains(&row.content()),
            "{ACTIVE}'s post-promotion checkpoint {} ({} of run {}) is in {STANDBY}'s log at another position",
            row.position,
            row.kind,
            row.run_id
        );
    }
}

/// Checks that a fenced old region's state (its database and the drill's report) names
/// exactly its rows after the fork as its tail; or, without a tail, that it follows the new
/// active region as a standby whose rows after the fork are the new active's.
pub async fn assert_old_region_state(deployment: &Deployment, drill: &Drill, logs: &Logs) {
    let region = Db::connect(&deployment.postgres_url(ACTIVE))
        .await
        .region()
        .await;
    let fork = drill.fork();
    assert_eq!(region.active_region, STANDBY, "{region:?}");
    if drill.at("/rpo/tail").is_null() {
        assert_eq!(region.role, "standby", "{region:?}\n{}", drill.summary());
        assert_eq!(drill.text("/rpo/method"), "no_tail");
        assert_eq!(drill.number("/rpo/tail_checkpoints"), 0);
        assert_eq!(
            logs.tail,
            [],
            "{ACTIVE} follows {STANDBY} without a tail, yet wrote checkpoints after the fork itself"
        );
        for row in &logs.old_after_fork {
            assert_eq!(
                logs.new.get(row.position as usize - 1),
                Some(row),
                "{ACTIVE} came back without a tail: after the fork it holds only what it applied from {STANDBY}"
            );
        }
        return;
    }
    let from = drill.number("/rpo/tail/from") as i64;
    let to = drill.number("/rpo/tail/to") as i64;
    assert_eq!(region.role, "fenced", "{region:?}\n{}", drill.summary());
    assert_eq!(
        logs.tail, logs.old_after_fork,
        "a fenced {ACTIVE} holds only its own checkpoints after the fork"
    );
    assert_eq!(from, fork + 1, "the tail starts after the fork");
    assert_eq!(
        (region.tail_from, region.tail_to),
        (Some(from), Some(to)),
        "{ACTIVE}'s recorded tail must be the report's"
    );
    assert_eq!(
        logs.tail.last().map(|row| row.position),
        Some(to),
        "the tail ends at {ACTIVE}'s last checkpoint"
    );
    assert_eq!(
        drill.number("/rpo/tail_checkpoints"),
        logs.tail.len() as u64
    );
    let tail_runs: HashSet<&str> = logs.tail.iter().map(|row| row.run_id.as_str()).collect();
    let reported: HashSet<&str> = drill
        .at("/rpo/tail_runs")
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|run| run["run_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        reported, tail_runs,
        "the tail's runs as reported and as in {ACTIVE}'s log"
    );
    assert_tail_not_accepted(&logs.tail, &logs.new);
}
