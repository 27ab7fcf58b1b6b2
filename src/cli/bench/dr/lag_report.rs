//! What `dr-lag` measured: one [`LagSample`] per load, the [`LagResult`] over all of them,
//! their table and JSON, and the verdict against the target.

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde::Serialize;

use super::breakdown::Breakdown;
use super::database::Replicated;
use super::stats::{LagStats, Spread};

/// Target: the p99 of the replication lag, ms, over every measured checkpoint (issue 5,
/// "Speed": under 200 ms while the active region runs 50 concurrent fanout-1k runs).
pub const TARGET_P99_MS: i64 = 200;

/// What the bench saw of one load, besides the checkpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Runs started at once.
    pub runs: usize,
    /// Task instances finished (all succeeded).
    pub tasks: u64,
    /// First `StartRun` call to the reply showing the last run finished, in the bench, ms.
    pub load_ms: f64,
    /// When that reply came, ms since the Unix epoch (this machine's clock).
    pub finished_at_ms: i64,
    /// From then until the standby's applied position reached the window's end, as read every
    /// 10 ms, ms.
    pub catch_up_ms: f64,
    /// Cores kept busy by the whole machine during the second before the load (the
    /// deployment idle): the load of other work on the machine.
    pub background_cores: f64,
}

/// One load of the active region and the lag of its checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct LagSample {
    /// Runs started at once.
    pub runs: usize,
    /// Task instances finished (all succeeded).
    pub tasks: u64,
    /// The load window: positions `first_position ..= last_position` of the active log.
    pub first_position: u64,
    /// Its last position.
    pub last_position: u64,
    /// `replicated_at - recorded_at` of every checkpoint of the window.
    pub lag: LagStats,
    /// Batches the standby applied for the window: runs of consecutive checkpoints with the
    /// same `replicated_at` (two batches stamped in the same ms count once).
    pub apply_batches: u64,
    /// See [`Load::load_ms`].
    pub load_ms: f64,
    /// See [`Load::catch_up_ms`].
    pub catch_up_ms: f64,
    /// See [`Load::background_cores`].
    pub background_cores: f64,
    /// The window's first to last `recorded_at` (the source writing), ms.
    pub write_span_ms: i64,
    /// The window's first `recorded_at` to its last `replicated_at`, ms.
    pub replication_span_ms: i64,
    /// Checkpoints of the window / `write_span_ms`, per second.
    pub source_rate_per_s: f64,
    /// Checkpoints of the window / `replication_span_ms`, per second: end to end.
    pub throughput_per_s: f64,
    /// Checkpoints applied by the time the last run was seen finished / the time from the
    /// first `recorded_at` until then, per second: the standby's pace while the source
    /// worked on the same machine.
    pub applied_during_load_per_s: f64,
    /// The other checkpoints / the time from then to the last `replicated_at`, per second:
    /// its pace once the source was idle; `None` when nothing was left.
    pub applied_after_load_per_s: Option<f64>,
    /// Where the lag went (see [`super::breakdown`]); `None` when a database did not record
    /// commit times.
    pub breakdown: Option<Breakdown>,
    /// The share of the load (first `recorded_at` until the last run was seen finished) the
    /// replicator spent in apply transactions (see [`super::breakdown::apply_busy`]); `None`
    /// without commit times.
    pub apply_busy_during_load: Option<f64>,
    /// The lags, for the statistics over all samples.
    #[serde(skip)]
    pub lags: Vec<i64>,
}

impl LagSample {
    /// The figures of a window whose checkpoints (in position order) are `rows`, loaded as
    /// `load` says; `None` when it has none.
    pub fn of(rows: &[Replicated], load: Load) -> Option<LagSample> {
        let (first, last) = (rows.first()?, rows.last()?);
        let lags: Vec<i64> = rows
            .iter()
            .map(|row| row.replicated_at - row.recorded_at)
            .collect();
        let first_recorded = rows.iter().map(|row| row.recorded_at).min()?;
        let last_recorded = rows.iter().map(|row| row.recorded_at).max()?;
        let last_replicated = rows.iter().map(|row| row.replicated_at).max()?;
        let apply_batches = 1 + rows
            .windows(2)
            .filter(|pair| pair[0].replicated_at != pair[1].replicated_at)
            .count() as u64;
        let per_second =
            |count: usize, span_ms: i64| count as f64 / (span_ms.max(1) as f64 / 1000.0);
        let during = rows
            .iter()
            .filter(|row| row.replicated_at <= load.finished_at_ms)
            .count();
        let after = rows.len() - during;
        Some(LagSample {
            runs: load.runs,
            tasks: load.tasks,
            first_position: first.position,
            last_position: last.position,
            lag: LagStats::of(&lags)?,
            apply_batches,
            load_ms: load.load_ms,
            catch_up_ms: load.catch_up_ms,
            background_cores: load.background_cores,
            write_span_ms: last_recorded - first_recorded,
            replication_span_ms: last_replicated - first_recorded,
            source_rate_per_s: per_second(rows.len(), last_recorded - first_recorded),
            throughput_per_s: per_second(rows.len(), last_replicated - first_recorded),
            applied_during_load_per_s: per_second(during, load.finished_at_ms - first_recorded),
            applied_after_load_per_s: (after > 0)
                .then(|| per_second(after, last_replicated - load.finished_at_ms)),
            breakdown: None,
            apply_busy_during_load: None,
            lags,
        })
    }
}

/// Every measured sample of `dr-lag`.
#[derive(Debug, Clone)]
pub struct LagResult {
    /// The samples of the target's load, [`super::lag::RUNS`] runs at once (the warm-up
    /// excluded).
    pub samples: Vec<LagSample>,
    /// The reference samples, [`super::lag::REFERENCE_RUNS`] run(s) at a time: the lag
    /// without a backlog.
    pub reference: Vec<LagSample>,
}

impl LagResult {
    /// The lag statistics over every checkpoint of every sample of the target's load.
    pub fn pooled(&self) -> Option<LagStats> {
        pooled(&self.samples)
    }

    /// Whether the pooled p99 is under [`TARGET_P99_MS`] (false without checkpoints).
    pub fn verdict(&self) -> bool {
        self.pooled()
            .is_some_and(|pooled| pooled.p99_ms < TARGET_P99_MS)
    }

    /// The result as one JSON row of `tandem bench -o json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "workload": super::lag::NAME,
            "samples": self.samples,
            "lag_all_samples": self.pooled(),
            "reference_samples": self.reference,
            "reference_lag_all_samples": pooled(&self.reference),
            "breakdown_all_samples": Breakdown::pooled(self.samples.iter().filter_map(|s| s.breakdown.as_ref())),
            "reference_breakdown_all_samples": Breakdown::pooled(self.reference.iter().filter_map(|s| s.breakdown.as_ref())),
            "target_p99_ms": TARGET_P99_MS,
            "target_met": self.verdict(),
        })
    }

    /// One row per sample (the target's load, then the reference), then the statistics over
    /// all checkpoints of each kind.
    pub fn table(&self) -> Table {
        let mut out = Table::new();
        out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "dr-lag",
            "RUNS",
            "CHECKPOINTS",
            "LAG p50",
            "LAG p99",
            "LAG max",
            "SOURCE RATE",
            "THROUGHPUT",
            "APPLIED DURING / AFTER LOAD",
            "APPLYING",
            "CATCH-UP",
            "BACKGROUND",
        ]);
        let rate = |value: f64| format!("{value:.0}/s");
        for (index, sample) in self.samples.iter().chain(&self.reference).enumerate() {
            out.add_row(vec![
                (index + 1).to_string(),
                sample.runs.to_string(),
                sample.lag.count.to_string(),
                format!("{} ms", sample.lag.p50_ms),
                format!("{} ms", sample.lag.p99_ms),
                format!("{} ms", sample.lag.max_ms),
                rate(sample.source_rate_per_s),
                rate(sample.throughput_per_s),
                format!(
                    "{} / {}",
                    rate(sample.applied_during_load_per_s),
                    sample
                        .applied_after_load_per_s
                        .map_or("-".to_string(), rate)
                ),
                percent(sample.apply_busy_during_load),
                format!("{:.0} ms", sample.catch_up_ms),
                format!("{:.2} cores", sample.background_cores),
            ]);
        }
        for samples in [&self.samples, &self.reference] {
            let (Some(first), Some(pooled)) = (samples.first(), pooled(samples)) else {
                continue;
            };
            let spread = |value: fn(&LagSample) -> f64, decimals: usize, unit: &str| {
                Spread::of(&samples.iter().map(value).collect::<Vec<_>>())
                    .map_or("-".to_string(), |spread| spread.text(decimals, unit))
            };
            out.add_row(vec![
                "all".to_string(),
                first.runs.to_string(),
                pooled.count.to_string(),
                format!("{} ms", pooled.p50_ms),
                format!("{} ms", pooled.p99_ms),
                format!("{} ms", pooled.max_ms),
                spread(|s| s.source_rate_per_s, 0, "/s"),
                spread(|s| s.throughput_per_s, 0, "/s"),
                spread(|s| s.applied_during_load_per_s, 0, "/s"),
                percent(
                    Spread::of(
                        &samples
                            .iter()
                            .filter_map(|s| s.apply_busy_during_load)
                            .collect::<Vec<_>>(),
                    )
                    .map(|spread| spread.median),
                ),
                spread(|s| s.catch_up_ms, 0, " ms"),
                spread(|s| s.background_cores, 2, ""),
            ]);
        }
        out
    }

    /// Where the lag went, over all checkpoints of each kind of sample: p50 / p99 / max of
    /// each part (see [`super::breakdown`]); `None` when no sample has a breakdown.
    pub fn breakdown_table(&self) -> Option<Table> {
        let mut out = Table::new();
        out.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "dr-lag: p50 / p99 / max",
            "RUNS",
            "SOURCE COMMIT",
            "SHIPPING",
            "APPLY",
            "END TO END",
        ]);
        let text =
            |stats: &LagStats| format!("{} / {} / {} ms", stats.p50_ms, stats.p99_ms, stats.max_ms);
        let mut rows = 0;
        for samples in [&self.samples, &self.reference] {
            let Some(first) = samples.first() else {
                continue;
            };
            let Some(pooled) =
                Breakdown::pooled(samples.iter().filter_map(|s| s.breakdown.as_ref()))
            else {
                continue;
            };
            out.add_row(vec![
                "all".to_string(),
                first.runs.to_string(),
                text(&pooled.source_commit),
                text(&pooled.shipping),
                text(&pooled.apply),
                text(&pooled.end_to_end),
            ]);
            rows += 1;
        }
        (rows > 0).then_some(out)
    }

    /// The target line: the pooled p99 of the target's load against [`TARGET_P99_MS`].
    pub fn target_text(&self) -> String {
        match self.pooled() {
            Some(pooled) => format!(
                "dr-lag: p99 {} ms over {} checkpoints of {} samples, target p99 < {TARGET_P99_MS} ms: {}",
                pooled.p99_ms,
                pooled.count,
                self.samples.len(),
                if self.verdict() { "met" } else { "MISSED" }
            ),
            None => {
                format!("dr-lag: no checkpoint measured, target p99 < {TARGET_P99_MS} ms: MISSED")
            }
        }
    }
}

/// `0.42` as `42%`, `None` as `-`.
fn percent(share: Option<f64>) -> String {
    share.map_or("-".to_string(), |share| format!("{:.0}%", share * 100.0))
}

/// The lag statistics over every checkpoint of `samples`.
fn pooled(samples: &[LagSample]) -> Option<LagStats> {
    let lags: Vec<i64> = samples
        .iter()
        .flat_map(|sample| sample.lags.iter().copied())
        .collect();
    LagStats::of(&lags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: u64, recorded_at: i64, replicated_at: i64) -> Replicated {
        Replicated {
            position,
            recorded_at,
            replicated_at,
        }
    }

    fn load(finished_at_ms: i64) -> Load {
        Load {
            runs: 2,
            tasks: 4,
            load_ms: 1_100.0,
            finished_at_ms,
            catch_up_ms: 30.0,
            background_cores: 0.25,
        }
    }

    #[test]
    fn a_window_gives_lags_batches_and_rates() {
        let rows = [
            row(11, 1_000, 1_020),
            row(12, 1_001, 1_020),
            row(13, 1_500, 1_700),
            row(14, 2_000, 2_010),
        ];
        let sample = LagSample::of(&rows, load(1_500)).unwrap();
        assert_eq!((sample.first_position, sample.last_position), (11, 14));
        assert_eq!(sample.lags, vec![20, 19, 200, 10]);
        assert_eq!(sample.lag.max_ms, 200);
        assert_eq!(sample.apply_batches, 3);
        assert_eq!(sample.write_span_ms, 1_000);
        assert_eq!(sample.replication_span_ms, 1_010);
        assert_eq!(sample.source_rate_per_s, 4.0);
        assert!((sample.throughput_per_s - 4.0 / 1.01).abs() < 1e-9);
        assert_eq!(sample.applied_during_load_per_s, 4.0, "2 in 500 ms");
        assert_eq!(sample.applied_after_load_per_s, Some(2.0 / 0.51));
        assert_eq!(sample.background_cores, 0.25);
        let caught_up = LagSample::of(&rows, load(2_010)).unwrap();
        assert_eq!(caught_up.applied_after_load_per_s, None);
        assert!(LagSample::of(&[], load(1)).is_none());
    }

    fn sample(lag: i64, runs: usize) -> LagSample {
        let rows: Vec<Replicated> = (1..=100)
            .map(|position| row(position, 1_000, 1_000 + lag))
            .collect();
        LagSample::of(
            &rows,
            Load {
                runs,
                ..load(1_000)
            },
        )
        .unwrap()
    }

    #[test]
    fn the_verdict_is_on_the_p99_of_all_checkpoints_of_the_target_load() {
        let fast = LagResult {
            samples: vec![sample(50, 50), sample(199, 50)],
            reference: vec![sample(5_000, 1)],
        };
        assert_eq!(fast.pooled().unwrap().count, 200);
        assert_eq!(fast.pooled().unwrap().p99_ms, 199);
        assert!(fast.verdict(), "the reference has no target");
        assert!(
            fast.target_text().ends_with("met"),
            "{}",
            fast.target_text()
        );
        assert_eq!(fast.json()["reference_lag_all_samples"]["p99_ms"], 5_000);
        let slow = LagResult {
            samples: vec![sample(50, 50), sample(200, 50)],
            reference: vec![],
        };
        assert!(!slow.verdict());
        assert!(slow.target_text().ends_with("MISSED"));
        assert_eq!(slow.json()["target_met"], false);
        assert!(
            !LagResult {
                samples: vec![],
                reference: vec![sample(1, 1)]
            }
            .verdict()
        );
    }
}
