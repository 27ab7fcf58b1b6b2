//! [`Backoff`]: exponential delays with jitter between retries of a call to an unreachable
//! server.

use std::time::Duration;

/// Exponential backoff with jitter: the n-th delay (from 0) is
/// `min(initial × multiplier^n, max)`, then scaled by a random factor in `[1 - jitter, 1]`
/// so that many workers do not retry in lockstep.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    failures: u32,
}

impl Default for Backoff {
    /// 100 ms, doubling, at most 10 s, jitter 0.2.
    fn default() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

impl Backoff {
    /// Delays from `initial` doubling up to `max` (`max` is raised to `initial` if lower), with
    /// jitter 0.2.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            multiplier: 2.0,
            jitter: 0.2,
            failures: 0,
        }
    }

    /// Sets the growth factor (clamped to at least 1).
    pub fn with_multiplier(mut self, multiplier: f64) -> Backoff {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Sets the jitter fraction (clamped to `0..=1`; 0 = no randomness).
    pub fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The delay before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base_delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        let factor = 1.0 - self.jitter * fastrand::f64();
        base.mul_f64(factor)
    }

    /// Failures counted since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay before jitter after `failures` failures.
    fn base_delay(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures).unwrap_or(i32::MAX);
        let scaled = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if !scaled.is_finite() || scaled >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(scaled)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut backoff =
            Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.0);
        let delays: Vec<u128> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.failures(), 6);
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff =
            Backoff::new(Duration::from_millis(50), Duration::from_secs(5)).with_jitter(0.0);
        backoff.next_delay();
        backoff.next_delay();
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(50));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        for _ in 0..1000 {
            let delay = backoff.next_delay();
            assert!(
                delay <= Duration::from_secs(1) && delay >= Duration::from_millis(800),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_secs(30))
            .with_multiplier(1e300)
            .with_jitter(0.0);
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_secs(30));
        }
        let mut nan = Backoff::default()
            .with_multiplier(f64::NAN)
            .with_jitter(f64::NAN);
        assert_eq!(nan.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn max_below_initial_is_raised() {
        let mut backoff =
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).with_jitter(0.0);
        assert_eq!(backoff.next_delay(), Duration::from_secs(2));
        assert_eq!(backoff.next_delay(), Duration::from_secs(2));
    }
}
