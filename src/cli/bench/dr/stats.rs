//! Order statistics of the `dr-*` workloads: percentiles of lags (integer ms) and the median,
//! min and max of figures over samples.

use serde::Serialize;

/// The distribution of a set of lags, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LagStats {
    /// How many lags.
    pub count: u64,
    /// Median (nearest rank).
    pub p50_ms: i64,
    /// 99th percentile (nearest rank: the smallest lag that at least 99% of them do not
    /// exceed).
    pub p99_ms: i64,
    /// Largest.
    pub max_ms: i64,
    /// Smallest.
    pub min_ms: i64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

impl LagStats {
    /// The statistics of `lags` (any order); `None` when there are none.
    pub fn of(lags: &[i64]) -> Option<LagStats> {
        let mut sorted = lags.to_vec();
        sorted.sort_unstable();
        let (&min_ms, &max_ms) = (sorted.first()?, sorted.last()?);
        let sum: i128 = sorted.iter().map(|&lag| i128::from(lag)).sum();
        Some(LagStats {
            count: sorted.len() as u64,
            p50_ms: nearest_rank(&sorted, 50),
            p99_ms: nearest_rank(&sorted, 99),
            max_ms,
            min_ms,
            mean_ms: sum as f64 / sorted.len() as f64,
        })
    }
}

/// The `percent`th percentile of `sorted` (ascending, not empty) by the nearest-rank method:
/// the value at rank `ceil(percent / 100 x n)` (from 1).
fn nearest_rank(sorted: &[i64], percent: usize) -> i64 {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Median, min and max of one figure over samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        Some(Spread {
            median: super::super::median(values),
            min: super::super::min(values),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// `median (min-max)` with `decimals` decimals and `unit` after the median.
    pub fn text(&self, decimals: usize, unit: &str) -> String {
        format!(
            "{:.decimals$}{unit} ({:.decimals$}-{:.decimals$})",
            self.median, self.min, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let lags: Vec<i64> = (1..=200).rev().collect();
        let stats = LagStats::of(&lags).unwrap();
        assert_eq!(stats.count, 200);
        assert_eq!(stats.p50_ms, 100);
        assert_eq!(stats.p99_ms, 198);
        assert_eq!(stats.max_ms, 200);
        assert_eq!(stats.min_ms, 1);
        assert_eq!(stats.mean_ms, 100.5);
    }

    #[test]
    fn one_outlier_in_a_hundred_is_not_the_p99_but_two_are() {
        let mut lags = vec![10; 99];
        lags.push(5_000);
        assert_eq!(LagStats::of(&lags).unwrap().p99_ms, 10);
        lags[0] = 5_000;
        assert_eq!(LagStats::of(&lags).unwrap().p99_ms, 5_000);
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(LagStats::of(&[]), None);
        let one = LagStats::of(&[7]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (7, 7, 7));
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn spread_of_samples() {
        let spread = Spread::of(&[3.0, -1.0, 2.0, 10.0]).unwrap();
        assert_eq!(spread.median, 2.5);
        assert_eq!(spread.min, -1.0);
        assert_eq!(spread.max, 10.0);
        assert_eq!(spread.text(1, " ms"), "2.5 ms (-1.0-10.0)");
    }
}
