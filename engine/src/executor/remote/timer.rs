//! The one expiry timer of a [`super::TaskQueues`]: it sleeps until the earliest lease
//! deadline, takes back every lease past its deadline and reports those attempts to their runs
//! (or, for adopted attempts whose worker never called, wakes the pollers of the queues they
//! went back to).

use std::sync::Arc;

use tokio::time::Instant;

use super::Shared;

/// Runs until aborted (when the last [`super::TaskQueues`] handle is dropped).
pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        // Created before the state is read: a wake-up sent in between is kept as a permit.
        let woken = shared.timer_wake.notified();
        let expired = shared.lock().expire(Instant::now());
        for (reports, report) in expired.deliveries {
            // A run whose driver has just stopped no longer listens; nothing to do then.
            let _ = reports.send(report);
        }
        for notify in expired.woken {
            notify.notify_waiters();
        }
        match expired.next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = woken => {}
                }
            }
            None => woken.await,
        }
    }
}
