//! The key guard: tells a leader that its leader key was deleted (by an operator, a resign,
//! or its lease's revocation), which the lease keeper alone would not notice.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};

use super::error::LeadershipError;
use tandem_api::Backoff;

use super::etcd::{Etcd, Failures, backoff};

/// Returns once `key` does not exist. Retries etcd forever with backoff (up to
/// `max_backoff` between attempts); drop the future to stop.
pub(super) async fn deleted(etcd: Etcd, key: Vec<u8>, max_backoff: Duration) {
    let shown = String::from_utf8_lossy(&key).into_owned();
    let mut failures = Failures::new("watching this leader's key");
    let mut backoff = backoff(max_backoff);
    loop {
        match watch_until_deleted(&etcd, &key, &shown, &mut failures, &mut backoff).await {
            Ok(()) => return,
            Err(error) => {
                failures.failed(&error);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Reads `key`; if it exists, watches it from the revision read until a delete event.
async fn watch_until_deleted(
    etcd: &Etcd,
    key: &[u8],
    shown: &str,
    failures: &mut Failures,
    backoff: &mut Backoff,
) -> Result<(), LeadershipError> {
    let mut client = etcd.client.clone();
    let doing = format!("reading the leader key {shown}");
    let current = etcd.run(&doing, client.get(key, None)).await?;
    if current.kvs().is_empty() {
        return Ok(());
    }
    let revision = current.header().map_or(0, |header| header.revision());
    let doing = format!("watching the leader key {shown}");
    let options = WatchOptions::new().with_start_revision(revision + 1);
    let mut stream = etcd.run(&doing, client.watch(key, Some(options))).await?;
    failures.recovered();
    backoff.reset();
    loop {
        let answer = stream
            .message()
            .await
            .map_err(|error| etcd.error(&doing, error))?;
        let Some(answer) = answer else {
            return Err(etcd.error(
                &doing,
                etcd_client::Error::WatchError("etcd ended the watch stream".into()),
            ));
        };
        if answer
            .events()
            .iter()
            .any(|event| event.event_type() == EventType::Delete)
        {
            return Ok(());
        }
        if answer.canceled() {
            return Err(etcd.error(
                &doing,
                etcd_client::Error::WatchError(format!(
                    "etcd canceled the watch: {}",
                    answer.cancel_reason()
                )),
            ));
        }
    }
}
