//! [`DrillReport`]: what a drill did and measured, step by step, with its objectives; rendered
//! as a table for people ([`DrillReport::render_table`]) or serialized as JSON for programs.
//!
//! Exit codes ([`DrillReport::exit_code`]): 0 when every step passed and every objective was
//! met, 1 otherwise (a step failed, a canary did not verify, an objective was missed or could
//! not be measured). Usage and preflight errors never produce a report: see
//! [`super::DrillError`] (exit 2).

use std::sync::Arc;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;
use tandem_engine::checkpoint::{UnixMillis, now_millis};

use super::canary::CanaryRun;
use super::failback::FailbackReport;
use super::fault::{Fault, FaultReport};
use super::isolated::IsolatedReport;
use super::measure::{Rpo, Rto};
use super::preflight::Preflight;
use super::verify::CanaryCheck;
use super::{DrillMode, PromotionReport};

/// Exit code of a drill whose steps all passed and whose objectives were all met.
pub const EXIT_PASSED: u8 = 0;
/// Exit code of a drill with a failed step, a failed verification or a missed objective.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a drill refused before it touched anything (usage or preflight error).
pub const EXIT_USAGE: u8 = 2;

/// The steps of a drill, in the order they run (named as [`Step::as_str`] spells them, in
/// the table and in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Every region answers; one active, a connected standby, its lag.
    Preflight,
    /// Canary runs started on the active region and caught in flight.
    Canary,
    /// The fault injected into the active region.
    Fault,
    /// The standby promoted.
    Promote,
    /// Every canary completed in the new active region; no succeeded task ran again.
    Verify,
    /// The old region brought back (start or heal) and its tail read: RPO and RTO.
    Measure,
    /// `--failback`: rejoin, catch up, switch over back, canaries intact.
    Failback,
    /// After a failed step: the old region brought back so the deployment is whole again.
    Restore,
    /// Isolated mode: the standby's database copied into a temporary PostgreSQL cluster.
    Copy,
    /// Isolated mode: a `tandem serve` started on the copy.
    StartCopy,
    /// Isolated mode: the copy promoted through `DrService.Promote`.
    PromoteCopy,
    /// Isolated mode: the copied non-terminal runs (and a new canary) completed on the copy.
    VerifyCopy,
    /// Isolated mode: the copy's server and cluster stopped and deleted.
    Cleanup,
}

impl Step {
    /// The step's name as the table shows it (`start-copy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Canary => "canary",
            Step::Fault => "fault",
            Step::Promote => "promote",
            Step::Verify => "verify",
            Step::Measure => "measure",
            Step::Failback => "failback",
            Step::Restore => "restore",
            Step::Copy => "copy",
            Step::StartCopy => "start-copy",
            Step::PromoteCopy => "promote-copy",
            Step::VerifyCopy => "verify-copy",
            Step::Cleanup => "cleanup",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did what it had to.
    Passed,
    /// It failed; `detail` says what was expected and what was found.
    Failed,
    /// It did not run (an earlier step failed).
    Skipped,
}

impl Outcome {
    /// `passed`, `failed` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One step of the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// Which step.
    pub step: Step,
    /// How it ended.
    pub outcome: Outcome,
    /// When it started, ms since the Unix epoch.
    pub started_at_ms: UnixMillis,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// One line: what it did or why it failed.
    pub detail: String,
}

/// Times a step: [`StepTimer::start`] when it begins, [`StepTimer::finish`] when it ends.
#[derive(Debug, Clone, Copy)]
pub struct StepTimer {
    step: Step,
    started_at_ms: UnixMillis,
    started: std::time::Instant,
}

impl StepTimer {
    /// Starts timing `step` now.
    pub fn start(step: Step) -> StepTimer {
        StepTimer {
            step,
            started_at_ms: now_millis(),
            started: std::time::Instant::now(),
        }
    }

    /// The step's report, ending now.
    pub fn finish(self, outcome: Outcome, detail: impl Into<String>) -> StepReport {
        StepReport {
            step: self.step,
            outcome,
            started_at_ms: self.started_at_ms,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail: detail.into(),
        }
    }
}

/// Whether a measured figure is within its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Measured and at most the objective.
    Met,
    /// Measured and above the objective.
    Missed,
    /// Not measured (the drill stopped before, or the figure was not available): counts as
    /// not met.
    NotMeasured,
}

impl Verdict {
    /// `met`, `missed` or `not measured`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One objective (`--rpo` or `--rto`) against what was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ObjectiveCheck {
    /// The objective, ms.
    pub objective_ms: u64,
    /// What was measured, ms; `None`: not measured.
    pub measured_ms: Option<u64>,
    /// Met when `measured_ms <= objective_ms`.
    pub verdict: Verdict,
}

impl ObjectiveCheck {
    /// Checks `measured` (ms) against `objective`.
    pub fn new(objective: Duration, measured_ms: Option<u64>) -> ObjectiveCheck {
        let objective_ms = u64::try_from(objective.as_millis()).unwrap_or(u64::MAX);
        let verdict = match measured_ms {
            None => Verdict::NotMeasured,
            Some(measured) if measured <= objective_ms => Verdict::Met,
            Some(_) => Verdict::Missed,
        };
        ObjectiveCheck {
            objective_ms,
            measured_ms,
            verdict,
        }
    }
}

/// The drill's objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Objectives {
    /// Recovery point objective: history lost at the failover (see [`Rpo`]).
    pub rpo: ObjectiveCheck,
    /// Recovery time objective: fault to the first dispatch in the new active region (see
    /// [`Rto`]).
    pub rto: ObjectiveCheck,
}

/// Called with each step as it ends (e.g. to print progress while a drill runs).
#[derive(Clone)]
pub struct StepObserver(pub Arc<dyn Fn(&StepReport) + Send + Sync>);

impl std::fmt::Debug for StepObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepObserver")
    }
}

/// Everything a drill did and measured. Times are ms since the Unix epoch, durations ms.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// The drill's id (UUIDv7); canary runs carry idempotency keys `drill-<id>-<i>`.
    pub drill_id: String,
    /// Live or isolated.
    pub mode: DrillMode,
    /// The fault injected (live mode).
    pub fault: Option<Fault>,
    /// The topology file.
    pub topology: String,
    /// The region that was active at the start.
    pub active_region: Option<String>,
    /// The standby that was promoted (isolated mode: whose copy was promoted).
    pub standby_region: Option<String>,
    /// When the drill started.
    pub started_at_ms: UnixMillis,
    /// When it ended.
    pub finished_at_ms: UnixMillis,
    /// The steps in order (steps not reached after a failure are `skipped`).
    pub steps: Vec<StepReport>,
    /// The objectives against the measured RPO and RTO.
    pub objectives: Objectives,
    /// What the preflight read.
    pub preflight: Option<Preflight>,
    /// The canary runs started on the active region, with their progress at the fault.
    pub canaries: Vec<CanaryRun>,
    /// The fault as injected.
    pub fault_injection: Option<FaultReport>,
    /// The promotion of the standby.
    pub promotion: Option<PromotionReport>,
    /// Each canary run's verification in the new active region.
    pub verification: Vec<CanaryCheck>,
    /// The RPO measured, with the unreplicated tail.
    pub rpo: Option<Rpo>,
    /// The RTO measured.
    pub rto: Option<Rto>,
    /// `--failback`: the way back.
    pub failback: Option<FailbackReport>,
    /// `--mode isolated`: the copy and what ran on it.
    pub isolated: Option<IsolatedReport>,
    /// Remarks: how figures were measured, what was left as it was.
    pub notes: Vec<String>,
    /// True when every step passed and every objective was met.
    pub passed: bool,
    /// The exit code of `tandem dr drill` for this report.
    pub exit_code: u8,
    /// Told of each step as it is pushed.
    #[serde(skip)]
    pub observer: Option<StepObserver>,
}

impl DrillReport {
    /// An empty report of drill `drill_id` starting now.
    pub fn new(drill_id: &str, mode: DrillMode, fault: Option<Fault>, topology: &str) -> Self {
        let now = now_millis();
        DrillReport {
            drill_id: drill_id.to_string(),
            mode,
            fault,
            topology: topology.to_string(),
            active_region: None,
            standby_region: None,
            started_at_ms: now,
            finished_at_ms: now,
            steps: Vec::new(),
            objectives: Objectives {
                rpo: ObjectiveCheck::new(Duration::ZERO, None),
                rto: ObjectiveCheck::new(Duration::ZERO, None),
            },
            preflight: None,
            canaries: Vec::new(),
            fault_injection: None,
            promotion: None,
            verification: Vec::new(),
            rpo: None,
            rto: None,
            failback: None,
            isolated: None,
            notes: Vec::new(),
            passed: false,
            exit_code: EXIT_FAILED,
            observer: None,
        }
    }

    /// Appends a step (and tells the observer).
    pub fn push(&mut self, step: StepReport) {
        if let Some(observer) = &self.observer {
            (observer.0)(&step);
        }
        self.steps.push(step);
    }

    /// True when a step failed so far.
    pub fn failed(&self) -> bool {
        self.steps
            .iter()
            .any(|step| step.outcome == Outcome::Failed)
    }

    /// Marks `steps` as skipped (not reached after a failure) at the end of the list.
    pub fn skip(&mut self, steps: &[Step]) {
        let now = now_millis();
        for &step in steps {
            if self.steps.iter().all(|done| done.step != step) {
                self.steps.push(StepReport {
                    step,
                    outcome: Outcome::Skipped,
                    started_at_ms: now,
                    duration_ms: 0,
                    detail: "not run: an earlier step failed".to_string(),
                });
            }
        }
    }

    /// Closes the report: the end time, the objectives (`rpo_objective`, `rto_objective`
    /// against [`DrillReport::rpo`] and [`DrillReport::rto`]), `passed` and `exit_code`.
    pub fn finish(mut self, rpo_objective: Duration, rto_objective: Duration) -> DrillReport {
        self.finished_at_ms = now_millis();
        self.objectives = Objectives {
            rpo: ObjectiveCheck::new(rpo_objective, self.rpo.as_ref().and_then(|rpo| rpo.millis)),
            rto: ObjectiveCheck::new(rto_objective, self.rto.as_ref().and_then(|rto| rto.millis)),
        };
        self.passed = !self.failed()
            && self.objectives.rpo.verdict == Verdict::Met
            && self.objectives.rto.verdict == Verdict::Met;
        self.exit_code = if self.passed {
            EXIT_PASSED
        } else {
            EXIT_FAILED
        };
        self
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Every field is a plain value, string, list or map with string keys: this cannot
        // fail; an error would still be reported as JSON rather than panic.
        serde_json::to_string_pretty(self).unwrap_or_else(|error| {
            serde_json::json!({ "error": format!("cannot serialize the drill report: {error}") })
                .to_string()
        })
    }

    /// The report for people: a title line, the steps table (step, result, duration, detail),
    /// the objectives table (measured against the objective, met or missed, how it was
    /// measured), the notes, and the verdict.
    pub fn render_table(&self) -> String {
        let mut out = vec![self.title()];
        let mut steps = new_table(&["STEP", "RESULT", "DURATION", "DETAIL"]);
        for step in &self.steps {
            steps.add_row(vec![
                step.step.as_str().to_string(),
                step.outcome.as_str().to_string(),
                if step.outcome == Outcome::Skipped {
                    "-".to_string()
                } else {
                    format_ms(step.duration_ms)
                },
                step.detail.clone(),
            ]);
        }
        out.push(steps.to_string());
        let mut objectives = new_table(&["OBJECTIVE", "MEASURED", "TARGET", "RESULT", "HOW"]);
        objectives.add_row(vec![
            "RPO".to_string(),
            self.rpo_measured(),
            format!("≤ {}", format_ms(self.objectives.rpo.objective_ms)),
            self.objectives.rpo.verdict.as_str().to_string(),
            self.rpo
                .as_ref()
                .and_then(|rpo| rpo.method)
                .map_or("-", |method| method.describe())
                .to_string(),
        ]);
        objectives.add_row(vec![
            "RTO".to_string(),
            self.objectives
                .rto
                .measured_ms
                .map_or("-".to_string(), format_ms),
            format!("≤ {}", format_ms(self.objectives.rto.objective_ms)),
            self.objectives.rto.verdict.as_str().to_string(),
            self.rto
                .as_ref()
                .and_then(|rto| rto.method)
                .map_or("-", |method| method.describe())
                .to_string(),
        ]);
        out.push(objectives.to_string());
        for note in &self.notes {
            out.push(format!("note: {note}"));
        }
        out.push(self.verdict_line());
        out.join("\n")
    }

    fn title(&self) -> String {
        let regions = match (&self.active_region, &self.standby_region) {
            (Some(active), Some(standby)) => format!("{active} active, {standby} standby"),
            (Some(active), None) => format!("{active} active"),
            _ => "regions unknown".to_string(),
        };
        let what = match (self.mode, self.fault) {
            (DrillMode::Isolated, _) => "isolated (a copy of the standby promoted)".to_string(),
            (DrillMode::Live, Some(fault)) => format!("live, fault {}", fault.as_str()),
            (DrillMode::Live, None) => "live".to_string(),
        };
        format!("drill {} · {what} · {regions}", self.drill_id)
    }

    fn rpo_measured(&self) -> String {
        match (&self.rpo, self.objectives.rpo.measured_ms) {
            (Some(rpo), Some(ms)) => {
                match (rpo.acknowledged_lost_checkpoints, rpo.lost_checkpoints) {
                    (Some(acknowledged), Some(lost)) if lost > acknowledged => format!(
                        "{} ({acknowledged} checkpoint{}; {} unacknowledged lost)",
                        format_ms(ms),
                        if acknowledged == 1 { "" } else { "s" },
                        lost - acknowledged
                    ),
                    (Some(count), _) | (None, Some(count)) => format!(
                        "{} ({count} checkpoint{})",
                        format_ms(ms),
                        if count == 1 { "" } else { "s" }
                    ),
                    (None, None) => format_ms(ms),
                }
            }
            (Some(rpo), None) => rpo.lost_checkpoints.map_or("-".to_string(), |count| {
                format!("{count} checkpoints, time unknown")
            }),
            (None, _) => "-".to_string(),
        }
    }

    fn verdict_line(&self) -> String {
        if self.passed {
            return format!(
                "PASSED: every step passed and every objective was met (exit {})",
                self.exit_code
            );
        }
        let mut reasons: Vec<String> = self
            .steps
            .iter()
            .filter(|step| step.outcome == Outcome::Failed)
            .map(|step| format!("step {} failed", step.step.as_str()))
            .collect();
        for (name, check) in [("RPO", self.objectives.rpo), ("RTO", self.objectives.rto)] {
            if check.verdict != Verdict::Met {
                reasons.push(format!("{name} {}", check.verdict.as_str()));
            }
        }
        format!("FAILED: {} (exit {})", reasons.join(", "), self.exit_code)
    }
}

fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    if table.width().is_some_and(|width| width >= 80) {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    table
}

/// `850 ms` below a second, `3.21 s` below a minute, `2 min 5 s` from a minute.
pub fn format_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1_000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::measure::{RpoMethod, RtoMethod};

    fn passed_step(step: Step) -> StepReport {
        StepReport {
            step,
            outcome: Outcome::Passed,
            started_at_ms: 1,
            duration_ms: 1_500,
            detail: format!("{} done", step.as_str()),
        }
    }

    fn rpo(millis: Option<u64>) -> Rpo {
        Rpo {
            lost_checkpoints: Some(3),
            acknowledged_lost_checkpoints: Some(3),
            tail_checkpoints: 3,
            split_brain_checkpoints: Some(0),
            tail: None,
            tail_runs: Vec::new(),
            fork_position: Some(10),
            last_replicated_at_ms: Some(1_000),
            last_lost_at_ms: Some(1_400),
            first_split_brain_at_ms: None,
            millis,
            method: Some(RpoMethod::TailCheckpointTimes),
        }
    }

    fn rto(millis: Option<u64>) -> Rto {
        Rto {
            fault_at_ms: 1_000,
            promoted_at_ms: Some(1_500),
            first_dispatch_at_ms: millis.map(|ms| 1_000 + ms as i64),
            millis,
            method: millis.map(|_| RtoMethod::FirstDispatchCheckpoint),
        }
    }

    fn report(rpo_ms: Option<u64>, rto_ms: Option<u64>) -> DrillReport {
        let mut report =
            DrillReport::new("0193", DrillMode::Live, Some(Fault::KillRegion), "/t.toml");
        report.active_region = Some("eu-west".into());
        report.standby_region = Some("us-east".into());
        report.push(passed_step(Step::Preflight));
        report.push(passed_step(Step::Fault));
        report.rpo = Some(rpo(rpo_ms));
        report.rto = Some(rto(rto_ms));
        report
    }

    #[test]
    fn objectives_are_met_at_or_below_the_target() {
        let check = ObjectiveCheck::new(Duration::from_secs(1), Some(1_000));
        assert_eq!(check.verdict, Verdict::Met);
        let check = ObjectiveCheck::new(Duration::from_secs(1), Some(1_001));
        assert_eq!(check.verdict, Verdict::Missed);
        let check = ObjectiveCheck::new(Duration::from_secs(1), None);
        assert_eq!(check.verdict, Verdict::NotMeasured);
        assert_eq!(check.objective_ms, 1_000);
    }

    #[test]
    fn exit_code_is_zero_only_when_everything_passed_and_was_met() {
        let done =
            report(Some(400), Some(3_000)).finish(Duration::from_secs(1), Duration::from_secs(10));
        assert!(done.passed);
        assert_eq!(done.exit_code, EXIT_PASSED);

        let missed = report(Some(1_400), Some(3_000))
            .finish(Duration::from_secs(1), Duration::from_secs(10));
        assert!(!missed.passed);
        assert_eq!(missed.exit_code, EXIT_FAILED);
        assert_eq!(missed.objectives.rpo.verdict, Verdict::Missed);

        let unmeasured =
            report(Some(400), None).finish(Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(unmeasured.exit_code, EXIT_FAILED);
        assert_eq!(unmeasured.objectives.rto.verdict, Verdict::NotMeasured);

        let mut failed_step = report(Some(400), Some(3_000));
        failed_step.push(StepTimer::start(Step::Verify).finish(Outcome::Failed, "run 2 failed"));
        let failed_step = failed_step.finish(Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(failed_step.exit_code, EXIT_FAILED);
    }

    #[test]
    fn skipped_steps_are_listed_once_after_the_ones_that_ran() {
        let mut report = report(None, None);
        report.skip(&[Step::Fault, Step::Promote, Step::Verify]);
        let names: Vec<(Step, Outcome)> = report
            .steps
            .iter()
            .map(|step| (step.step, step.outcome))
            .collect();
        assert_eq!(
            names,
            vec![
                (Step::Preflight, Outcome::Passed),
                (Step::Fault, Outcome::Passed),
                (Step::Promote, Outcome::Skipped),
                (Step::Verify, Outcome::Skipped),
            ]
        );
    }

    #[test]
    fn the_table_shows_steps_objectives_and_the_verdict() {
        let done =
            report(Some(400), Some(3_250)).finish(Duration::from_secs(1), Duration::from_secs(10));
        let text = done.render_table();
        assert!(
            text.contains("drill 0193 · live, fault kill-region · eu-west active, us-east standby"),
            "{text}"
        );
        assert!(
            text.contains("preflight") && text.contains("1.50 s"),
            "{text}"
        );
        assert!(text.contains("400 ms (3 checkpoints)"), "{text}");
        assert!(
            text.contains("3.25 s") && text.contains("≤ 10.00 s"),
            "{text}"
        );
        assert!(text.contains("PASSED"), "{text}");

        let missed =
            report(Some(1_400), None).finish(Duration::from_secs(1), Duration::from_secs(10));
        let text = missed.render_table();
        assert!(
            text.contains("FAILED: RPO missed, RTO not measured (exit 1)"),
            "{text}"
        );
    }

    #[test]
    fn unacknowledged_losses_of_sync_mode_are_shown_apart() {
        let mut sync = report(Some(0), Some(2_000));
        if let Some(rpo) = sync.rpo.as_mut() {
            rpo.acknowledged_lost_checkpoints = Some(0);
            rpo.method = Some(RpoMethod::SyncNothingAcknowledged);
        }
        let text = sync
            .finish(Duration::from_secs(1), Duration::from_secs(10))
            .render_table();
        assert!(
            text.contains("0 ms (0 checkpoints; 3 unacknowledged lost)"),
            "{text}"
        );
        assert!(text.contains("sync replication held"), "{text}");
    }

    #[test]
    fn json_carries_every_figure() {
        let done =
            report(Some(400), Some(3_250)).finish(Duration::from_secs(1), Duration::from_secs(10));
        let json: serde_json::Value = serde_json::from_str(&done.to_json()).unwrap();
        assert_eq!(json["exit_code"], 0);
        assert_eq!(json["fault"], "kill-region");
        assert_eq!(json["mode"], "live");
        assert_eq!(json["objectives"]["rpo"]["measured_ms"], 400);
        assert_eq!(json["objectives"]["rto"]["verdict"], "met");
        assert_eq!(json["rpo"]["lost_checkpoints"], 3);
        assert_eq!(json["rpo"]["method"], "tail_checkpoint_times");
        assert_eq!(json["rto"]["method"], "first_dispatch_checkpoint");
        assert_eq!(json["steps"][0]["step"], "preflight");
        assert_eq!(
            serde_json::to_value(Step::StartCopy).unwrap(),
            Step::StartCopy.as_str()
        );
        assert_eq!(json["steps"][0]["outcome"], "passed");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_ms(0), "0 ms");
        assert_eq!(format_ms(999), "999 ms");
        assert_eq!(format_ms(1_000), "1.00 s");
        assert_eq!(format_ms(59_990), "59.99 s");
        assert_eq!(format_ms(119_999), "1 min 59 s");
        assert_eq!(format_ms(125_000), "2 min 5 s");
    }
}
