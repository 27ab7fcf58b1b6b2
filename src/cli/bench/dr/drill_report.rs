//! What `dr-drill` measured: one [`DrillSample`] per drill (the figures of its
//! [`DrillReport`]), the [`DrillResult`] over all of them, their table and JSON, and the
//! verdict against the targets.

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::Serialize;
use tandem_dr::drill::measure::{RpoMethod, RtoMethod};
use tandem_dr::drill::{DrillReport, Outcome};

use super::stats::Spread;

/// Target: every drill's RTO under this, ms (issue 5, "Speed": under 10 s).
pub const TARGET_RTO_MS: u64 = 10_000;
/// Target: every drill's async RPO under this, ms of history (issue 5: under 1 s).
pub const TARGET_RPO_MS: u64 = 1_000;

/// One drill's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillSample {
    /// The drill's id.
    pub drill_id: String,
    /// Every step passed and the drill's own objectives (its defaults: RPO ≤ 1 s, RTO ≤ 10 s)
    /// were met.
    pub passed: bool,
    /// Fault to the first dispatch in the promoted region, ms; `None`: not measured.
    pub rto_ms: Option<u64>,
    /// How the RTO was measured.
    pub rto_method: Option<RtoMethod>,
    /// Of the RTO: fault to the promotion as the promoted region records it, ms.
    pub fault_to_promotion_ms: Option<u64>,
    /// History lost, ms; `None`: not measured.
    pub rpo_ms: Option<u64>,
    /// Checkpoints lost (committed by the killed region, never replicated).
    pub rpo_checkpoints: Option<u64>,
    /// How the RPO was measured.
    pub rpo_method: Option<RpoMethod>,
    /// Each step of the drill, in order.
    pub steps: Vec<StepTime>,
    /// `step: detail` of each step that failed.
    pub failures: Vec<String>,
}

/// How one step of a drill ended and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTime {
    /// The step (`preflight`, `canary`, `fault`, ...).
    pub step: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took, ms.
    pub duration_ms: u64,
}

impl DrillSample {
    /// The figures of `report`.
    pub fn of(report: &DrillReport) -> DrillSample {
        let rto = report.rto.as_ref();
        let rpo = report.rpo.as_ref();
        DrillSample {
            drill_id: report.drill_id.clone(),
            passed: report.passed,
            rto_ms: rto.and_then(|rto| rto.millis),
            rto_method: rto.and_then(|rto| rto.method),
            fault_to_promotion_ms: rto.and_then(|rto| {
                let promoted = rto.promoted_at_ms?;
                u64::try_from(promoted - rto.fault_at_ms).ok()
            }),
            rpo_ms: rpo.and_then(|rpo| rpo.millis),
            rpo_checkpoints: rpo.and_then(|rpo| rpo.lost_checkpoints),
            rpo_method: rpo.and_then(|rpo| rpo.method),
            steps: report
                .steps
                .iter()
                .map(|step| StepTime {
                    step: step.step.as_str().to_string(),
                    outcome: step.outcome,
                    duration_ms: step.duration_ms,
                })
                .collect(),
            failures: report
                .steps
                .iter()
                .filter(|step| step.outcome == Outcome::Failed)
                .map(|step| format!("{}: {}", step.step.as_str(), step.detail))
                .collect(),
        }
    }

    /// Passed, with RTO and RPO measured and under the targets.
    pub fn verdict(&self) -> bool {
        self.passed
            && self.rto_ms.is_some_and(|rto| rto < TARGET_RTO_MS)
            && self.rpo_ms.is_some_and(|rpo| rpo < TARGET_RPO_MS)
    }
}

/// Every drill of `dr-drill`.
#[derive(Debug, Clone)]
pub struct DrillResult {
    /// One per drill, in order.
    pub samples: Vec<DrillSample>,
}

impl DrillResult {
    /// Whether every drill passed with RTO and RPO under the targets (false without drills).
    pub fn verdict(&self) -> bool {
        !self.samples.is_empty() && self.samples.iter().all(DrillSample::verdict)
    }

    /// Median, min and max of a figure over the drills that measured it.
    fn spread(&self, value: fn(&DrillSample) -> Option<u64>) -> Option<Spread> {
        let values: Vec<f64> = self
            .samples
            .iter()
            .filter_map(value)
            .map(|value| value as f64)
            .collect();
        Spread::of(&values)
    }

    /// The result as one JSON row of `tandem bench -o json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "workload": super::drill::NAME,
            "samples": self.samples,
            "rto_ms": self.spread(|s| s.rto_ms),
            "rpo_ms": self.spread(|s| s.rpo_ms),
            "rpo_checkpoints": self.spread(|s| s.rpo_checkpoints),
            "target_rto_ms": TARGET_RTO_MS,
            "target_rpo_ms": TARGET_RPO_MS,
            "target_met": self.verdict(),
        })
    }

    /// One row per drill, then median (min-max).
    pub fn table(&self) -> Table {
        let mut out = Table::new();
        out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "dr-drill",
            "RTO",
            "FAULT TO PROMOTION",
            "RPO",
            "RPO CHECKPOINTS",
            "DRILL",
        ]);
        let ms = |value: Option<u64>| value.map_or("-".to_string(), |value| format!("{value} ms"));
        for (index, sample) in self.samples.iter().enumerate() {
            out.add_row(vec![
                (index + 1).to_string(),
                ms(sample.rto_ms),
                ms(sample.fault_to_promotion_ms),
                ms(sample.rpo_ms),
                sample
                    .rpo_checkpoints
                    .map_or("-".to_string(), |count| count.to_string()),
                if sample.passed { "passed" } else { "FAILED" }.to_string(),
            ]);
        }
        let spread = |value: fn(&DrillSample) -> Option<u64>, unit: &str| {
            self.spread(value)
                .map_or("-".to_string(), |spread| spread.text(0, unit))
        };
        out.add_row(vec![
            "median (min-max)".to_string(),
            spread(|s| s.rto_ms, " ms"),
            spread(|s| s.fault_to_promotion_ms, " ms"),
            spread(|s| s.rpo_ms, " ms"),
            spread(|s| s.rpo_checkpoints, ""),
            format!(
                "{} of {} passed",
                self.samples.iter().filter(|s| s.passed).count(),
                self.samples.len()
            ),
        ]);
        out
    }

    /// The target line, and one line per failed step.
    pub fn target_text(&self) -> String {
        let max = |value: fn(&DrillSample) -> Option<u64>| {
            self.spread(value)
                .map_or("-".to_string(), |spread| format!("{:.0} ms", spread.max))
        };
        let mut text = format!(
            "dr-drill: max RTO {}, max RPO {}, targets RTO < {TARGET_RTO_MS} ms and RPO < {TARGET_RPO_MS} ms in every drill: {}",
            max(|s| s.rto_ms),
            max(|s| s.rpo_ms),
            if self.verdict() { "met" } else { "MISSED" }
        );
        for (index, sample) in self.samples.iter().enumerate() {
            for failure in &sample.failures {
                text.push_str(&format!("\ndr-drill {}: {failure}", index + 1));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(passed: bool, rto_ms: Option<u64>, rpo_ms: Option<u64>) -> DrillSample {
        DrillSample {
            drill_id: "d".to_string(),
            passed,
            rto_ms,
            rto_method: None,
            fault_to_promotion_ms: None,
            rpo_ms,
            rpo_checkpoints: Some(3),
            rpo_method: None,
            steps: Vec::new(),
            failures: Vec::new(),
        }
    }

    #[test]
    fn a_report_gives_its_figures_and_failed_steps() {
        use tandem_dr::drill::measure::{RpoInput, rpo, rto};
        use tandem_dr::drill::{DrillMode, Fault, Step, StepReport};
        let mut report = DrillReport::new("d1", DrillMode::Live, Some(Fault::KillRegion), "t");
        let step = |step, outcome, duration_ms, detail: &str| StepReport {
            step,
            outcome,
            started_at_ms: 0,
            duration_ms,
            detail: detail.to_string(),
        };
        report.push(step(Step::Fault, Outcome::Passed, 90, "killed"));
        report.push(step(
            Step::Verify,
            Outcome::Failed,
            900,
            "canary 2 lost a task",
        ));
        report.rto = Some(rto(
            10_000,
            Some(10_080),
            Some(10_250),
            None,
            RtoMethod::FirstDispatchCheckpoint,
        ));
        report.rpo = Some(rpo(RpoInput {
            fault_done_at_ms: 10_050,
            fork_position: Some(7),
            tail: None,
            tail_runs: &[],
            log_times: None,
            standby_applied_recorded_at_ms: None,
            sync_held: false,
        }));
        let report = report.finish(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(10),
        );
        let sample = DrillSample::of(&report);
        assert!(!sample.passed, "a step failed");
        assert_eq!(sample.rto_ms, Some(250));
        assert_eq!(sample.fault_to_promotion_ms, Some(80));
        assert_eq!(sample.rpo_ms, Some(0));
        assert_eq!(sample.rpo_checkpoints, Some(0));
        assert_eq!(sample.steps.len(), 2);
        assert_eq!(sample.steps[1].duration_ms, 900);
        assert_eq!(sample.failures, vec!["verify: canary 2 lost a task"]);
        assert!(!sample.verdict());
    }

    #[test]
    fn every_drill_must_pass_under_both_targets() {
        let good = sample(true, Some(400), Some(30));
        assert!(
            DrillResult {
                samples: vec![good.clone(), good.clone()]
            }
            .verdict()
        );
        for bad in [
            sample(false, Some(400), Some(30)),
            sample(true, Some(10_000), Some(30)),
            sample(true, Some(400), Some(1_000)),
            sample(true, None, Some(30)),
            sample(true, Some(400), None),
        ] {
            let result = DrillResult {
                samples: vec![good.clone(), bad.clone()],
            };
            assert!(!result.verdict(), "{bad:?}");
            assert!(result.target_text().contains("MISSED"));
        }
        assert!(!DrillResult { samples: vec![] }.verdict());
    }

    #[test]
    fn spreads_skip_what_was_not_measured() {
        let result = DrillResult {
            samples: vec![
                sample(true, Some(300), Some(10)),
                sample(true, None, Some(30)),
                sample(true, Some(500), Some(20)),
            ],
        };
        let rto = result.spread(|s| s.rto_ms).unwrap();
        assert_eq!((rto.median, rto.min, rto.max), (400.0, 300.0, 500.0));
        assert_eq!(result.json()["rpo_ms"]["median"], 20.0);
    }
}
