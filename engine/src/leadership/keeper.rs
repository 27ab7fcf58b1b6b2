//! The lease keeper: renews one lease every TTL/4 and reports each answered renewal with the
//! time its request was *sent*, so the election can bound its role by the lease without
//! trusting etcd's clock or answer latency.

use std::time::Duration;

use etcd_client::{LeaseClient, LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::etcd::{Etcd, Failures, etcd_says_lease_not_found};
use super::task::Task;

/// What the keeper reports.
#[derive(Debug)]
pub(super) enum KeeperEvent {
    /// etcd renewed the lease for `ttl` from a request sent at `sent`: the lease cannot
    /// expire on etcd before `sent + ttl`.
    Renewed { sent: Instant, ttl: Duration },
    /// etcd says the lease does not exist any more (expired or revoked).
    LeaseGone,
}

/// Starts renewing `lease` (granted for `ttl`) every `interval`; the keeper stops after
/// reporting [`KeeperEvent::LeaseGone`] or when the task is dropped.
pub(super) fn spawn(
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    interval: Duration,
) -> (Task<()>, mpsc::Receiver<KeeperEvent>) {
    let (events, reports) = mpsc::channel(16);
    let task = Task::spawn(keep(etcd, lease, ttl, interval, events));
    (task, reports)
}

/// The keep-alive stream of a lease: requests go through the keeper, answers come back in
/// order on the stream.
type Stream = (LeaseKeeper, LeaseKeepAliveStream);

/// One renewal's outcome.
enum Renewal {
    Alive(Duration),
    Gone,
}

async fn keep(
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    interval: Duration,
    events: mpsc::Sender<KeeperEvent>,
) {
    let mut client = etcd.client.lease_client();
    let mut stream: Option<Stream> = None;
    let mut failures = Failures::new(format!(
        "renewing lease {lease:x} on etcd at {}",
        etcd.endpoints
    ));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let sent = Instant::now();
        // An answer later than the next tick is useless: the next request supersedes it.
        let outcome = tokio::time::timeout(interval, renew(&mut client, &mut stream, lease, ttl));
        let event = match outcome.await {
            Ok(Ok(Renewal::Alive(ttl))) => {
                failures.recovered();
                KeeperEvent::Renewed { sent, ttl }
            }
            Ok(Ok(Renewal::Gone)) => KeeperEvent::LeaseGone,
            Ok(Err(error)) => {
                failures.failed(&error);
                stream = None;
                continue;
            }
            Err(_) => {
                failures.failed(&format!("no answer within {interval:?}"));
                stream = None;
                continue;
            }
        };
        let gone = matches!(event, KeeperEvent::LeaseGone);
        if events.send(event).await.is_err() || gone {
            return;
        }
    }
}

/// Sends one keep-alive and reads its answer, opening the stream first when there is none
/// (the opening request is itself a renewal, answered with the granted `ttl`).
async fn renew(
    client: &mut LeaseClient,
    stream: &mut Option<Stream>,
    lease: i64,
    ttl: Duration,
) -> Result<Renewal, etcd_client::Error> {
    let Some((keeper, answers)) = stream.as_mut() else {
        return match client.keep_alive(lease).await {
            Ok(opened) => {
                *stream = Some(opened);
                Ok(Renewal::Alive(ttl))
            }
            Err(error) if etcd_says_lease_not_found(&error) => Ok(Renewal::Gone),
            Err(error) => Err(error),
        };
    };
    keeper.keep_alive().await?;
    match answers.message().await? {
        Some(answer) if answer.ttl() > 0 => Ok(Renewal::Alive(Duration::from_secs(
            answer.ttl().unsigned_abs(),
        ))),
        Some(_) => Ok(Renewal::Gone),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "etcd closed the keep-alive stream".into(),
        )),
    }
}
