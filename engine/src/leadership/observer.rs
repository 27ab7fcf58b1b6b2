//! The observer: follows who leads the region (`Leader`, then `Observe` of the election API)
//! in its own task, since `Observe` does not answer until a leader exists.

use std::sync::Arc;

use tokio::sync::watch;

use super::config::ElectionConfig;
use super::error::LeadershipError;
use tandem_api::Backoff;

use super::etcd::{Etcd, Failures, backoff};
use super::keys;
use super::role::LeaderInfo;
use super::status::current_leader;
use super::task::Task;

/// Starts observing the leader of `config.region`; `leader` holds the current one, `None`
/// while none is known (no leader, or etcd unreachable). Runs until the task is dropped.
pub(super) fn spawn(
    config: Arc<ElectionConfig>,
    leader: Arc<watch::Sender<Option<LeaderInfo>>>,
) -> Task<()> {
    Task::spawn(observe(config, leader))
}

async fn observe(config: Arc<ElectionConfig>, leader: Arc<watch::Sender<Option<LeaderInfo>>>) {
    let name = keys::election_name(&config.region);
    let mut failures = Failures::new(format!("observing the leader of region {}", config.region));
    let mut backoff = backoff(config.max_backoff());
    loop {
        let error = observe_once(&config, &name, &leader, &mut failures, &mut backoff).await;
        publish(&leader, None);
        failures.failed(&error);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Connects, publishes the current leader, then every leader `Observe` reports, until
/// something fails.
async fn observe_once(
    config: &ElectionConfig,
    name: &str,
    leader: &watch::Sender<Option<LeaderInfo>>,
    failures: &mut Failures,
    backoff: &mut Backoff,
) -> LeadershipError {
    let etcd = match Etcd::connect(&config.endpoints, config.request_timeout()).await {
        Ok(etcd) => etcd,
        Err(error) => return error,
    };
    match current_leader(&etcd, &config.region).await {
        Ok(current) => publish(leader, current.as_ref().and_then(decode)),
        Err(error) => return error,
    }
    failures.recovered();
    backoff.reset();
    let mut client = etcd.client.election_client();
    // No timeout: etcd answers once a leader exists, which may take any time.
    let mut stream = match client.observe(name).await {
        Ok(stream) => stream,
        Err(error) => return etcd.error(&format!("observing {name}"), error),
    };
    loop {
        match stream.message().await {
            Ok(Some(answer)) => {
                if let Some(kv) = answer.kv() {
                    publish(leader, decode(kv));
                }
            }
            Ok(None) => {
                return etcd.error(
                    &format!("observing {name}"),
                    etcd_client::Error::WatchError("etcd ended the observe stream".into()),
                );
            }
            Err(error) => return etcd.error(&format!("observing {name}"), error),
        }
    }
}

/// The leader named by an election key; a value this version does not write is logged and
/// counts as no known leader.
fn decode(kv: &etcd_client::KeyValue) -> Option<LeaderInfo> {
    match LeaderInfo::from_kv(kv) {
        Ok(info) => Some(info),
        Err(error) => {
            tracing::warn!("ignoring the leader key: {error}");
            None
        }
    }
}

fn publish(sender: &watch::Sender<Option<LeaderInfo>>, leader: Option<LeaderInfo>) {
    sender.send_if_modified(|current| {
        if *current == leader {
            false
        } else {
            *current = leader;
            true
        }
    });
}
