//! [`DispatchScan`]: finds, in the region's checkpoint log, the first task the new leader
//! dispatched after the old one was killed.
//!
//! The rule. Let `t0` be when the kill was sent and `reaped` when the killed process was seen
//! gone (both ms since the Unix epoch, this machine's wall clock, as the `at` of checkpoints).
//! Reading the log in order from the position it had before the kill, a run counts as taken
//! over by the new leader from
//! - its [`Event::RunResumed`] with `at ≥ t0`: only a replica that claims a run writes one,
//!   and the killed leader does not claim the runs it drives; or
//! - its [`Event::RunCreated`] with `at > reaped`: created after the killed process was gone
//!   (a run started during the failover), so by the new leader; the killed one wrote every
//!   `at` of its checkpoints before it died.
//!
//! The first dispatch is then the first [`Event::AttemptStarted`] with `at ≥ t0` of such a run
//! whose checkpoint carries that run's new epoch (or a later one). An `AttemptStarted` is
//! written before its attempt is dispatched (write-ahead), so its `at` is the dispatch time.

use std::collections::HashMap;

use tandem_engine::checkpoint::{Checkpoint, Epoch, Event, LogPosition, RunId, UnixMillis};

/// The first attempt the new leader dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    /// Its run.
    pub run_id: RunId,
    /// Its `AttemptStarted` checkpoint's log position.
    pub position: LogPosition,
    /// When it was dispatched (the checkpoint's `at`), ms since the Unix epoch.
    pub at: UnixMillis,
    /// The run's epoch under the new leader.
    pub epoch: Epoch,
    /// Whether the run was resumed (`true`) or created (`false`) by the new leader.
    pub resumed: bool,
}

/// Reads checkpoints in log order (see the module docs for the rule).
#[derive(Debug, Clone)]
pub struct DispatchScan {
    t0: UnixMillis,
    reaped: UnixMillis,
    /// Runs taken over by the new leader: their new epoch, and whether resumed.
    taken_over: HashMap<RunId, (Epoch, bool)>,
    /// The position of the last checkpoint read.
    last: LogPosition,
}

impl DispatchScan {
    /// A scan for a kill sent at `t0`, whose process was seen gone at `reaped` (≥ `t0`), that
    /// reads the log after position `after` (the latest position before the kill).
    pub fn new(t0: UnixMillis, reaped: UnixMillis, after: LogPosition) -> DispatchScan {
        DispatchScan {
            t0,
            reaped: reaped.max(t0),
            taken_over: HashMap::new(),
            last: after,
        }
    }

    /// The position to read after next.
    pub fn cursor(&self) -> LogPosition {
        self.last
    }

    /// Reads `checkpoints` (the next ones of the log, in order) and returns the first
    /// dispatch of the new leader among them, if there is one (the scan stops there).
    pub fn feed(&mut self, checkpoints: &[Checkpoint]) -> Option<Dispatch> {
        for checkpoint in checkpoints {
            if checkpoint.position <= self.last {
                continue;
            }
            self.last = checkpoint.position;
            match &checkpoint.event {
                Event::RunResumed { at, .. } if *at >= self.t0 => {
                    self.taken_over
                        .insert(checkpoint.run_id, (checkpoint.epoch, true));
                }
                Event::RunCreated { at, .. } if *at > self.reaped => {
                    self.taken_over
                        .insert(checkpoint.run_id, (checkpoint.epoch, false));
                }
                Event::AttemptStarted { at, .. } if *at >= self.t0 => {
                    if let Some(&(epoch, resumed)) = self.taken_over.get(&checkpoint.run_id)
                        && checkpoint.epoch >= epoch
                    {
                        return Some(Dispatch {
                            run_id: checkpoint.run_id,
                            position: checkpoint.position,
                            at: *at,
                            epoch: checkpoint.epoch,
                            resumed,
                        });
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tandem_engine::checkpoint::AttemptOutcome;

    use super::*;

    fn checkpoint(position: u64, run: RunId, epoch: u64, event: Event) -> Checkpoint {
        Checkpoint {
            position,
            epoch: Epoch(epoch),
            run_id: run,
            recorded_at: 0,
            event,
        }
    }

    fn started(at: UnixMillis) -> Event {
        Event::AttemptStarted {
            task: 3,
            attempt: 1,
            at,
        }
    }

    fn resumed(at: UnixMillis) -> Event {
        Event::RunResumed {
            at,
            owner: "pid 2 on host".to_string(),
        }
    }

    fn created(at: UnixMillis) -> Event {
        Event::RunCreated {
            workflow: "w".to_string(),
            version: "v".to_string(),
            source_path: String::new(),
            source: String::new(),
            params: BTreeMap::new(),
            at,
        }
    }

    #[test]
    fn the_first_attempt_after_a_resume_at_or_after_the_kill() {
        let run = RunId::new();
        let mut scan = DispatchScan::new(1_000, 1_001, 10);
        let log = vec![
            // Already read before the kill.
            checkpoint(9, run, 1, started(1_500)),
            // The old leader, in the kill's own millisecond: not the new leader's.
            checkpoint(11, run, 1, started(1_000)),
            checkpoint(
                12,
                run,
                1,
                Event::AttemptFinished {
                    task: 3,
                    attempt: 1,
                    at: 5_000,
                    outcome: AttemptOutcome::Interrupted,
                },
            ),
        ];
        assert_eq!(scan.feed(&log), None);
        assert_eq!(scan.cursor(), 12);
        let log = vec![
            checkpoint(13, run, 2, resumed(5_000)),
            checkpoint(14, run, 2, started(5_100)),
        ];
        assert_eq!(
            scan.feed(&log),
            Some(Dispatch {
                run_id: run,
                position: 14,
                at: 5_100,
                epoch: Epoch(2),
                resumed: true,
            })
        );
    }

    #[test]
    fn a_resume_before_the_kill_does_not_count() {
        let run = RunId::new();
        let mut scan = DispatchScan::new(1_000, 1_000, 0);
        let log = vec![
            checkpoint(1, run, 2, resumed(999)),
            checkpoint(2, run, 2, started(1_200)),
        ];
        assert_eq!(scan.feed(&log), None);
    }

    #[test]
    fn another_runs_attempt_does_not_count() {
        let resumed_run = RunId::new();
        let other = RunId::new();
        let mut scan = DispatchScan::new(1_000, 1_000, 0);
        let log = vec![
            checkpoint(1, resumed_run, 4, resumed(2_000)),
            checkpoint(2, other, 1, started(2_100)),
            checkpoint(3, resumed_run, 3, started(2_100)),
        ];
        assert_eq!(scan.feed(&log), None, "other run, then an older epoch");
        let log = vec![checkpoint(4, resumed_run, 4, started(2_200))];
        assert_eq!(scan.feed(&log).map(|dispatch| dispatch.position), Some(4));
    }

    #[test]
    fn a_run_created_after_the_killed_process_was_gone() {
        let early = RunId::new();
        let late = RunId::new();
        let mut scan = DispatchScan::new(1_000, 1_002, 0);
        let log = vec![
            checkpoint(1, early, 7, created(1_002)),
            checkpoint(2, early, 7, started(1_002)),
            checkpoint(3, late, 8, created(1_003)),
            checkpoint(4, late, 8, started(1_004)),
        ];
        assert_eq!(
            scan.feed(&log),
            Some(Dispatch {
                run_id: late,
                position: 4,
                at: 1_004,
                epoch: Epoch(8),
                resumed: false,
            })
        );
    }
}
