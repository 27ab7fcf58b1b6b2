//! A term of an election: one lease, granted and kept alive, with the member registered on
//! it; and the campaign made with it.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::LeaderKey;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::config::ElectionConfig;
use super::error::LeadershipError;
use super::etcd::Etcd;
use super::keeper::{self, KeeperEvent};
use super::members::{self, Member};
use super::task::Task;

/// One lease and what keeps it.
pub(super) struct Term {
    pub etcd: Etcd,
    pub lease: i64,
    /// The role may last until here: last answered keep-alive's send time + TTL − margin.
    pub valid_until: Instant,
    pub renewals: mpsc::Receiver<KeeperEvent>,
    pub keeper: Task<()>,
}

/// Connects, revokes a stale lease, grants a lease, registers the member on it and starts
/// keeping it alive.
pub(super) async fn open(
    config: Arc<ElectionConfig>,
    stale_lease: Option<i64>,
    member: Member,
) -> Result<Term, LeadershipError> {
    let etcd = Etcd::connect(&config.endpoints, config.request_timeout()).await?;
    if let Some(lease) = stale_lease {
        etcd.revoke(lease).await?;
    }
    let mut client = etcd.client.clone();
    let sent = Instant::now();
    let doing = format!("granting a lease of {} s", config.lease_ttl_secs());
    let grant = etcd
        .run(&doing, client.lease_grant(config.lease_ttl_secs(), None))
        .await?;
    if grant.ttl() <= 0 || !grant.error().is_empty() {
        return Err(LeadershipError::Refused {
            doing,
            endpoints: etcd.endpoints.clone(),
            reason: format!(
                "expected a lease with a positive TTL, found TTL {} (error `{}`)",
                grant.ttl(),
                grant.error()
            ),
        });
    }
    let lease = grant.id();
    let ttl = config
        .effective_lease_ttl()
        .min(Duration::from_secs(grant.ttl().unsigned_abs()));
    if let Err(error) = members::register(&etcd, &config.region, &member, lease).await {
        let _ = etcd.revoke(lease).await;
        return Err(error);
    }
    let (keeper, renewals) = keeper::spawn(etcd.clone(), lease, ttl, config.keep_alive_interval());
    Ok(Term {
        etcd,
        lease,
        valid_until: sent + ttl.saturating_sub(config.safety_margin()),
        renewals,
        keeper,
    })
}

/// Campaigns for `name` with `value` on `lease`; completes once this member leads, with
/// its leader key (whose `rev` is the key's create revision: the epoch).
pub(super) async fn run_campaign(
    etcd: Etcd,
    name: String,
    value: String,
    lease: i64,
) -> Result<LeaderKey, LeadershipError> {
    let mut client = etcd.client.election_client();
    let doing = format!("campaigning for {name} with lease {lease:x}");
    // No timeout: etcd answers once every earlier candidate is gone.
    let mut answer = client
        .campaign(name.as_str(), value, lease)
        .await
        .map_err(|error| etcd.error(&doing, error))?;
    answer
        .take_leader()
        .ok_or_else(|| LeadershipError::Refused {
            doing,
            endpoints: etcd.endpoints.clone(),
            reason: "expected a leader key in the answer, found none".into(),
        })
}
