//! [`FailoverResult`]: the samples of `serve-failover`, its verdict and its tables.

use std::time::Duration;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::Serialize;

use super::super::{max, median, min};
use super::audit::Audit;

/// How much longer than the lease TTL a failover may take (issue 4, "Speed": under the lease
/// TTL + 1 s, median and max).
pub const TARGET_MARGIN: Duration = Duration::from_secs(1);

/// One failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverSample {
    /// The member id of the killed leader.
    pub killed: String,
    /// Its leader epoch.
    pub killed_epoch: u64,
    /// The member id of the next leader.
    pub new_leader: String,
    /// Its leader epoch.
    pub new_epoch: u64,
    /// When the kill was sent, ms since the Unix epoch.
    pub killed_at_unix_ms: i64,
    /// When the new leader dispatched its first attempt (that checkpoint's `at`), ms since
    /// the Unix epoch.
    pub dispatched_at_unix_ms: i64,
    /// `dispatched_at_unix_ms - killed_at_unix_ms`.
    pub failover_ms: i64,
    /// Whether that attempt's run was resumed by the new leader (`false`: started during the
    /// failover and created by the new leader).
    pub resumed_run: bool,
}

impl FailoverSample {
    /// How much the leader epoch grew (etcd revisions between the two leader keys).
    pub fn epoch_growth(&self) -> u64 {
        self.new_epoch.saturating_sub(self.killed_epoch)
    }
}

/// All failovers of one `serve-failover` bench, and the audit of the runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverResult {
    /// The replicas' lease TTL.
    pub lease_ttl: Duration,
    /// The failovers, in order.
    pub samples: Vec<FailoverSample>,
    /// Runs the run loop saw succeed.
    pub runs_succeeded: usize,
    /// The audit of the whole log after the last run finished.
    pub audit: Audit,
}

impl FailoverResult {
    /// The limit of the median and the max, ms: lease TTL + 1 s.
    pub fn limit_ms(&self) -> f64 {
        (self.lease_ttl + TARGET_MARGIN).as_secs_f64() * 1000.0
    }

    fn failovers(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|sample| sample.failover_ms as f64)
            .collect()
    }

    /// Whether the target was met: samples exist, their median and max are under the limit,
    /// and the audit found the log sound.
    pub fn verdict(&self) -> bool {
        let failovers = self.failovers();
        !failovers.is_empty()
            && median(&failovers) < self.limit_ms()
            && max(&failovers) < self.limit_ms()
            && self.audit.is_sound()
    }

    /// The result as one JSON row of `tandem bench -o json`.
    pub fn json(&self) -> serde_json::Value {
        let failovers = self.failovers();
        serde_json::json!({
            "workload": super::NAME,
            "lease_ttl_ms": self.lease_ttl.as_millis() as u64,
            "samples": self.samples,
            "failover_ms": {
                "median": median(&failovers),
                "min": min(&failovers),
                "max": max(&failovers),
            },
            "runs_succeeded": self.runs_succeeded,
            "audit": self.audit,
            "limit_ms": self.limit_ms(),
            "target_met": self.verdict(),
        })
    }

    /// The summary, one row.
    pub fn table(&self) -> Table {
        let failovers = self.failovers();
        let growth: Vec<f64> = self
            .samples
            .iter()
            .map(|sample| sample.epoch_growth() as f64)
            .collect();
        let mut out = Table::new();
        out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "WORKLOAD",
            "FAILOVER median (min-max)",
            "SAMPLES",
            "LEASE TTL",
            "EPOCH GROWTH median (min-max)",
            "RUNS SUCCEEDED",
            "INTERRUPTED ATTEMPTS",
            "AUDIT",
            "TARGET",
        ]);
        out.add_row(vec![
            super::NAME.to_string(),
            format!(
                "{:.0} ms ({:.0}-{:.0})",
                median(&failovers),
                min(&failovers),
                max(&failovers)
            ),
            self.samples.len().to_string(),
            format!("{} s", self.lease_ttl.as_secs()),
            format!(
                "{:.0} ({:.0}-{:.0})",
                median(&growth),
                min(&growth),
                max(&growth)
            ),
            self.runs_succeeded.to_string(),
            self.audit.interrupted_attempts.to_string(),
            if self.audit.is_sound() {
                format!("sound ({} runs)", self.audit.runs)
            } else {
                format!("{} PROBLEMS", self.audit.problems.len().max(1))
            },
            format!(
                "median and max < {:.0} ms: {}",
                self.limit_ms(),
                if self.verdict() { "met" } else { "MISSED" }
            ),
        ]);
        out
    }

    /// One row per failover.
    pub fn sample_table(&self) -> Table {
        let mut out = Table::new();
        out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "#",
            "KILLED LEADER (epoch)",
            "NEW LEADER (epoch)",
            "FIRST DISPATCH IN",
            "FAILOVER",
        ]);
        for (index, sample) in self.samples.iter().enumerate() {
            out.add_row(vec![
                (index + 1).to_string(),
                format!("{} ({})", sample.killed, sample.killed_epoch),
                format!("{} ({})", sample.new_leader, sample.new_epoch),
                if sample.resumed_run {
                    "resumed run".to_string()
                } else {
                    "new run".to_string()
                },
                format!("{} ms", sample.failover_ms),
            ]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(failover_ms: i64) -> FailoverSample {
        FailoverSample {
            killed: "replica-0".to_string(),
            killed_epoch: 10,
            new_leader: "replica-1".to_string(),
            new_epoch: 17,
            killed_at_unix_ms: 1_000,
            dispatched_at_unix_ms: 1_000 + failover_ms,
            failover_ms,
            resumed_run: true,
        }
    }

    fn result(failovers: &[i64], audit: Audit) -> FailoverResult {
        FailoverResult {
            lease_ttl: Duration::from_secs(5),
            samples: failovers.iter().map(|&ms| sample(ms)).collect(),
            runs_succeeded: 3,
            audit,
        }
    }

    fn sound() -> Audit {
        Audit {
            runs: 3,
            succeeded: 3,
            ..Audit::default()
        }
    }

    #[test]
    fn median_and_max_must_be_under_ttl_plus_one_second() {
        assert_eq!(result(&[], sound()).limit_ms(), 6_000.0);
        assert!(result(&[4_000, 5_000, 5_999], sound()).verdict());
        assert!(
            !result(&[4_000, 5_000, 6_000], sound()).verdict(),
            "max at the limit"
        );
        assert!(
            !result(&[6_100, 6_200, 4_000], sound()).verdict(),
            "median over"
        );
        assert!(!result(&[], sound()).verdict(), "no samples");
        let unsound = Audit {
            problems: vec!["run x: expected succeeded, found failed".to_string()],
            ..sound()
        };
        assert!(!result(&[4_000], unsound).verdict(), "an unsound audit");
    }

    #[test]
    fn json_and_tables_carry_the_figures() {
        let result = result(&[4_000, 4_500, 5_000], sound());
        assert_eq!(result.samples[0].epoch_growth(), 7);
        let json = result.json();
        assert_eq!(json["workload"], "serve-failover");
        assert_eq!(json["lease_ttl_ms"], 5_000);
        assert_eq!(json["failover_ms"]["median"], 4_500.0);
        assert_eq!(json["failover_ms"]["max"], 5_000.0);
        assert_eq!(json["samples"][2]["failover_ms"], 5_000);
        assert_eq!(json["target_met"], true);
        let summary = result.table().to_string();
        assert!(summary.contains("4500 ms (4000-5000)"), "{summary}");
        assert!(
            summary.contains("median and max < 6000 ms: met"),
            "{summary}"
        );
        let samples = result.sample_table().to_string();
        assert!(samples.contains("replica-0 (10)"), "{samples}");
        assert!(samples.contains("5000 ms"), "{samples}");
    }
}
