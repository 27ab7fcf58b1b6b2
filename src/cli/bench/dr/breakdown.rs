//! Where a checkpoint's replication lag goes, from the commit times both databases record
//! (`track_commit_timestamp`): its lag `replicated_at - recorded_at` is split at the source's
//! commit, and the standby's apply is followed to its commit.
//!
//! For one checkpoint, all in ms of this machine's clock:
//! - SOURCE COMMIT = source commit - `recorded_at`: the source's append statement, from the
//!   leader's clock read before it (`recorded_at`) to its commit, including the wait for the
//!   log head's row lock, which every append holds until it commits (positions are handed
//!   out in commit order), so concurrent appends queue there;
//! - SHIPPING = `replicated_at` - source commit: the leader's wake-up, its read of the log,
//!   the push over gRPC, the replicator's decoding, and the wait behind the applies of
//!   earlier batches;
//! - APPLY = standby commit - `replicated_at`: the apply transaction of its batch, to its
//!   commit;
//! - END TO END = standby commit - `recorded_at` (the three together).
//!
//! A commit time is when the transaction's commit record was written, just before the WAL
//! flush (about a ms more with `fsync` on); all times are truncated to whole ms, so a part may
//! read 1 ms less than it was (even -1).

use serde::Serialize;

use super::database::Replicated;
use super::stats::LagStats;

/// The parts of the lags of a set of checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    /// Source commit - `recorded_at`.
    pub source_commit: LagStats,
    /// `replicated_at` - source commit.
    pub shipping: LagStats,
    /// Standby commit - `replicated_at`.
    pub apply: LagStats,
    /// Standby commit - `recorded_at`.
    pub end_to_end: LagStats,
    /// The parts of each checkpoint, in the order above, for statistics over several sets.
    #[serde(skip)]
    pub parts: [Vec<i64>; 4],
}

impl Breakdown {
    /// The parts of `rows`' lags, given the commit time of each on the source
    /// (`source_commits`) and on the standby (`standby_commits`), in the same order; `None`
    /// when there are no rows, the lengths differ or a commit time is missing.
    pub fn of(
        rows: &[Replicated],
        source_commits: &[Option<i64>],
        standby_commits: &[Option<i64>],
    ) -> Option<Breakdown> {
        if rows.len() != source_commits.len() || rows.len() != standby_commits.len() {
            return None;
        }
        let mut parts: [Vec<i64>; 4] = Default::default();
        for ((row, source), standby) in rows.iter().zip(source_commits).zip(standby_commits) {
            let (source, standby) = ((*source)?, (*standby)?);
            parts[0].push(source - row.recorded_at);
            parts[1].push(row.replicated_at - source);
            parts[2].push(standby - row.replicated_at);
            parts[3].push(standby - row.recorded_at);
        }
        Breakdown::from_parts(parts)
    }

    /// The breakdown over every checkpoint of `breakdowns`; `None` when there is none.
    pub fn pooled<'a>(breakdowns: impl IntoIterator<Item = &'a Breakdown>) -> Option<Breakdown> {
        let mut parts: [Vec<i64>; 4] = Default::default();
        for breakdown in breakdowns {
            for (all, more) in parts.iter_mut().zip(&breakdown.parts) {
                all.extend_from_slice(more);
            }
        }
        Breakdown::from_parts(parts)
    }

    fn from_parts(parts: [Vec<i64>; 4]) -> Option<Breakdown> {
        Some(Breakdown {
            source_commit: LagStats::of(&parts[0])?,
            shipping: LagStats::of(&parts[1])?,
            apply: LagStats::of(&parts[2])?,
            end_to_end: LagStats::of(&parts[3])?,
            parts,
        })
    }
}

/// The share of the time from `from` to `to` (ms since the Unix epoch) that the standby's
/// replicator spent in apply transactions: each batch (a run of consecutive `rows` with the
/// same `replicated_at`) is busy from its `replicated_at` to its commit (the latest of
/// `standby_commits` of its rows). Near 1: the apply is the bottleneck; well under 1: the
/// replicator waited for batches. `None` when the interval is empty, the lengths differ or a
/// commit time is missing.
pub fn apply_busy(
    rows: &[Replicated],
    standby_commits: &[Option<i64>],
    from: i64,
    to: i64,
) -> Option<f64> {
    if to <= from || rows.len() != standby_commits.len() {
        return None;
    }
    let mut busy = 0;
    let mut index = 0;
    while index < rows.len() {
        let start = rows[index].replicated_at;
        let mut commit = standby_commits[index]?;
        while index + 1 < rows.len() && rows[index + 1].replicated_at == start {
            index += 1;
            commit = commit.max(standby_commits[index]?);
        }
        busy += (commit.min(to) - start.max(from)).max(0);
        index += 1;
    }
    Some(busy as f64 / (to - from) as f64)
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

    #[test]
    fn each_lag_is_split_at_the_commits() {
        let rows = [row(1, 1_000, 1_050), row(2, 1_010, 1_050)];
        let breakdown = Breakdown::of(
            &rows,
            &[Some(1_020), Some(1_030)],
            &[Some(1_070), Some(1_071)],
        )
        .unwrap();
        assert_eq!(breakdown.parts[0], vec![20, 20]);
        assert_eq!(breakdown.parts[1], vec![30, 20]);
        assert_eq!(breakdown.parts[2], vec![20, 21]);
        assert_eq!(breakdown.parts[3], vec![70, 61]);
        for index in 0..rows.len() {
            assert_eq!(
                breakdown.parts[0][index] + breakdown.parts[1][index] + breakdown.parts[2][index],
                breakdown.parts[3][index]
            );
        }
        assert_eq!(breakdown.end_to_end.max_ms, 70);
        let pooled = Breakdown::pooled([&breakdown, &breakdown]).unwrap();
        assert_eq!(pooled.end_to_end.count, 4);
    }

    #[test]
    fn apply_busy_counts_each_batch_from_its_start_to_its_commit_within_the_interval() {
        let rows = [
            row(1, 0, 100),
            row(2, 0, 100),
            row(3, 0, 300),
            row(4, 0, 900),
        ];
        let commits = [Some(150), Some(160), Some(320), Some(1_100)];
        // 100..160, 300..320, 900..1000 of 0..1000.
        assert_eq!(apply_busy(&rows, &commits, 0, 1_000), Some(0.18));
        assert_eq!(apply_busy(&rows, &commits, 150, 350), Some(0.15));
        assert_eq!(apply_busy(&rows, &commits, 10, 10), None);
        assert_eq!(apply_busy(&rows, &[None; 4], 0, 1_000), None);
    }

    #[test]
    fn a_missing_commit_time_gives_no_breakdown() {
        let rows = [row(1, 1_000, 1_050)];
        assert!(Breakdown::of(&rows, &[None], &[Some(1_070)]).is_none());
        assert!(Breakdown::of(&rows, &[Some(1_010)], &[]).is_none());
        assert!(Breakdown::of(&[], &[], &[]).is_none());
        assert!(Breakdown::pooled([]).is_none());
    }
}
