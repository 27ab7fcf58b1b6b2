//! The runner's clock: wall-clock time that advances with tokio's clock.

use tokio::time::Instant;

use crate::checkpoint::{UnixMillis, now_millis};

/// Wall-clock time (ms since the Unix epoch) read as the wall clock at creation plus the
/// time elapsed on tokio's monotonic clock since.
///
/// So timestamps in checkpoints and retry due times stay consistent with the timers that
/// fire them, even if the system clock jumps during a run, and tests can drive a whole run
/// with tokio's paused time (`tokio::time::pause`), where the system clock does not move.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    wall_base: UnixMillis,
    instant_base: Instant,
}

impl RunClock {
    /// A clock reading the wall clock now.
    pub fn start() -> RunClock {
        RunClock {
            wall_base: now_millis(),
            instant_base: Instant::now(),
        }
    }

    /// Current time, ms since the Unix epoch.
    pub fn now(&self) -> UnixMillis {
        self.wall_base + self.instant_base.elapsed().as_millis() as UnixMillis
    }

    /// The tokio instant at which wall-clock time `due` is reached (now, if it has passed).
    pub fn instant_at(&self, due: UnixMillis) -> Instant {
        let ahead = due.saturating_sub(self.now()).max(0) as u64;
        Instant::now() + std::time::Duration::from_millis(ahead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = RunClock::start();
        let start = clock.now();
        tokio::time::sleep(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now() - start, 90_000);
        let due = clock.now() + 5_000;
        assert_eq!(
            clock.instant_at(due) - Instant::now(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(clock.instant_at(start), Instant::now());
    }
}
