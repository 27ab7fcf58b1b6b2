//! Retrying calls while PostgreSQL is unreachable: exponential backoff with jitter, a warning
//! per retry, bounded by [`PostgresConfig::retry_for`](super::PostgresConfig::retry_for).

use std::time::{Duration, Instant};

use super::Context;
use crate::store::StoreError;

/// Why one attempt of a call failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server could not be reached or the connection broke (or a serialization failure
    /// or deadlock rolled the transaction back): the attempt may be retried. The text says
    /// what was being done and what failed.
    Transient(String),
    /// Retrying cannot help (refused input, fencing, a missing run, damage, ...).
    Final(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Final(error)
    }
}

/// The first pause between attempts; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// The retry state of one call.
pub(super) struct Retry<'a> {
    context: &'a Context,
    doing: &'static str,
    started: Instant,
    attempt: u32,
    delay: Duration,
}

impl<'a> Retry<'a> {
    /// A call that does `doing` (`appending checkpoints`), for messages.
    pub fn new(context: &'a Context, doing: &'static str) -> Retry<'a> {
        Retry {
            context,
            doing,
            started: Instant::now(),
            attempt: 1,
            delay: FIRST_DELAY,
        }
    }

    /// The number of the coming attempt, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// After a failed attempt: a final failure is returned as it is; a transient one waits
    /// for the next attempt (logging a warning), unless `retry_for` has run out, in which
    /// case it becomes [`StoreError::Backend`] saying how long and how often it was tried.
    pub async fn after(&mut self, failure: Failure) -> Result<(), StoreError> {
        let detail = match failure {
            Failure::Final(error) => return Err(error),
            Failure::Transient(detail) => detail,
        };
        let elapsed = self.started.elapsed();
        let remaining = self.context.retry_for.saturating_sub(elapsed);
        if remaining.is_zero() {
            return Err(StoreError::Backend {
                location: self.context.location.clone(),
                detail: if self.attempt == 1 {
                    format!("{}: {detail} (retrying is off: retry_for is 0)", self.doing)
                } else {
                    format!(
                        "{}: PostgreSQL stayed unreachable for {:.1} s ({} attempts, retry_for {} s); last error: {detail}",
                        self.doing,
                        elapsed.as_secs_f64(),
                        self.attempt,
                        self.context.retry_for.as_secs_f64()
                    )
                },
            });
        }
        // Full jitter on the upper half, so many callers do not retry in lockstep.
        let pause = self
            .delay
            .mul_f64(0.5 + fastrand::f64() / 2.0)
            .min(remaining);
        tracing::warn!(
            store = %self.context.location,
            attempt = self.attempt,
            "{}: {detail}; retrying in {} ms (giving up after {} s)",
            self.doing,
            pause.as_millis(),
            self.context.retry_for.as_secs_f64()
        );
        tokio::time::sleep(pause).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        self.attempt += 1;
        Ok(())
    }
}

/// Runs `$call` (an expression of `$client`, a pooled connection, and `$attempt`, the attempt
/// number, evaluating to a future of `Result<T, Failure>`) until it succeeds, fails for good,
/// or `retry_for` runs out. Evaluates to `Result<T, StoreError>`.
macro_rules! with_retry {
    ($store:expr, $doing:expr, |$client:ident, $attempt:ident| $call:expr) => {{
        let store = &$store;
        let mut retry = $crate::store::postgres::retry::Retry::new(&store.inner.context, $doing);
        loop {
            let $attempt = retry.attempt();
            let result: Result<_, $crate::store::postgres::retry::Failure> = async {
                #[allow(unused_mut)]
                let mut $client = store.client().await?;
                $call.await
            }
            .await;
            match result {
                Ok(value) => break Ok(value),
                Err(failure) => {
                    if let Err(error) = retry.after(failure).await {
                        break Err(error);
                    }
                }
            }
        }
    }};
}

pub(super) use with_retry;
