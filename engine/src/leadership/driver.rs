//! The background task of an [`Election`](super::Election): opens a *term* (connect, grant a
//! lease, register the member, keep the lease alive), campaigns in it, leads until the lease
//! lapses or the key goes, and opens the next term; forever, until shut down.
//!
//! One term = one lease. A term ends when the lease is gone or presumed gone (etcd says so,
//! or no keep-alive was answered in time while leading), when the leader key is deleted,
//! on a step-down, or at shutdown; its lease is then revoked (best effort, retried before
//! the next grant), so the next term campaigns with a fresh lease and, if it wins, a
//! higher epoch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaderKey, ResignOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::config::ElectionConfig;
use super::election::{Command, Shared};
use super::error::LeadershipError;
use super::etcd::{Etcd, Failures, backoff, is_lease_not_found};
use super::keeper::KeeperEvent;
use super::members::Member;
use super::role::{Candidate, LeaderInfo, Role};
use super::task::Task;
use super::term::{Term, open, run_campaign};
use super::{key_guard, keys, observer};
use crate::checkpoint::now_millis;

/// Who waits for the end of a shutdown.
type Ack = Option<oneshot::Sender<()>>;

/// A campaign under way: it completes once this member leads.
type Campaign = Pin<Box<dyn Future<Output = Result<LeaderKey, LeadershipError>> + Send>>;

/// What to do after a term.
enum Flow {
    /// Open the next term.
    Continue,
    /// End the election.
    Stop(Ack),
}

/// The won campaign of a term.
struct Leading {
    key: LeaderKey,
    epoch: u64,
}

/// The state of the background task.
pub(super) struct Driver {
    config: Arc<ElectionConfig>,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    observed_sender: Arc<watch::Sender<Option<LeaderInfo>>>,
    observed: watch::Receiver<Option<LeaderInfo>>,
    member: Member,
    /// A lease of an ended term that could not be revoked yet.
    stale_lease: Option<i64>,
    /// No campaign before this (set by a step-down).
    campaign_not_before: Instant,
    open_failures: Failures,
}

impl Driver {
    pub fn new(
        config: Arc<ElectionConfig>,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Driver {
        let (observed_sender, observed) = watch::channel(None);
        let started_at = now_millis();
        let member = Member {
            member_id: config.member_id.clone(),
            address: config.advertise.clone(),
            started_at,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let open_failures =
            Failures::new(format!("joining the election of region {}", config.region));
        Driver {
            config,
            shared,
            commands,
            observed_sender: Arc::new(observed_sender),
            observed,
            member,
            stale_lease: None,
            campaign_not_before: Instant::now(),
            open_failures,
        }
    }

    /// Runs terms until shut down (or every handle is dropped).
    pub async fn run(mut self) {
        let _observer =
            observer::spawn(Arc::clone(&self.config), Arc::clone(&self.observed_sender));
        tracing::info!(
            region = %self.config.region,
            member_id = %self.config.member_id,
            lease_ttl = ?self.config.effective_lease_ttl(),
            "leader election started"
        );
        let ack = loop {
            let term = match self.open_term().await {
                Ok(term) => term,
                Err(ack) => break ack,
            };
            match self.run_term(term).await {
                Flow::Continue => {}
                Flow::Stop(ack) => break ack,
            }
        };
        self.shared.close();
        self.shared.publish_follower(None);
        tracing::info!(
            region = %self.config.region,
            member_id = %self.config.member_id,
            "leader election ended"
        );
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }

    /// Opens a term, retrying etcd with backoff; `Err` when the election is to end.
    async fn open_term(&mut self) -> Result<Term, Ack> {
        let mut backoff = backoff(self.config.max_backoff());
        self.follow();
        loop {
            let attempt = open(
                Arc::clone(&self.config),
                self.stale_lease,
                self.member.clone(),
            );
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    biased;
                    command = self.commands.recv() => {
                        if let Some(ack) = self.idle_command(command).await {
                            return Err(ack);
                        }
                    }
                    result = &mut attempt => break result,
                    Ok(()) = self.observed.changed() => self.follow(),
                }
            };
            match result {
                Ok(term) => {
                    self.stale_lease = None;
                    self.open_failures.recovered();
                    return Ok(term);
                }
                Err(error) => {
                    self.open_failures.failed(&error);
                    let retry_at = Instant::now() + backoff.next_delay();
                    loop {
                        tokio::select! {
                            biased;
                            command = self.commands.recv() => {
                                if let Some(ack) = self.idle_command(command).await {
                                    return Err(ack);
                                }
                            }
                            () = tokio::time::sleep_until(retry_at) => break,
                            Ok(()) = self.observed.changed() => self.follow(),
                        }
                    }
                }
            }
        }
    }

    /// Acts on a command received outside a term; `Some` when the election is to end.
    async fn idle_command(&mut self, command: Option<Command>) -> Option<Ack> {
        match command {
            Some(Command::StepDown(reason)) => {
                self.stepped_down(&reason);
                None
            }
            Some(Command::Shutdown(ack)) => {
                self.revoke_stale().await;
                Some(Some(ack))
            }
            None => {
                self.revoke_stale().await;
                Some(None)
            }
        }
    }

    /// Campaigns in `term`, leads while the lease holds, and ends the term.
    async fn run_term(&mut self, mut term: Term) -> Flow {
        let name = keys::election_name(&self.config.region);
        let value = Candidate {
            member_id: self.config.member_id.clone(),
            address: self.config.advertise.clone(),
        }
        .encode();
        let mut leading: Option<Leading> = None;
        let mut guard: Option<Task<()>> = None;
        let mut campaign: Option<Campaign> = None;
        let mut campaign_at = self.campaign_not_before;
        let mut backoff = backoff(self.config.max_backoff());
        let mut campaign_failures = Failures::new("campaigning");
        self.follow();
        loop {
            let deadline = leading.as_ref().map(|_| term.valid_until);
            let start_at = (leading.is_none() && campaign.is_none()).then_some(campaign_at);
            tokio::select! {
                biased;
                () = sleep_until_some(deadline) => {
                    let reason = format!(
                        "etcd answered no keep-alive of lease {:x} in time (the role lasts {:?} after an answered keep-alive was sent)",
                        term.lease,
                        self.config.lease_validity()
                    );
                    return self.lose(term, &reason).await;
                }
                command = self.commands.recv() => match command {
                    Some(Command::StepDown(reason)) => {
                        self.stepped_down(&reason);
                        self.end(term).await;
                        return Flow::Continue;
                    }
                    Some(Command::Shutdown(ack)) => {
                        self.finish(term, leading).await;
                        return Flow::Stop(Some(ack));
                    }
                    None => {
                        self.finish(term, leading).await;
                        return Flow::Stop(None);
                    }
                },
                event = term.renewals.recv() => match event {
                    Some(KeeperEvent::Renewed { sent, ttl }) => {
                        let until = sent + self.validity(ttl);
                        if until > term.valid_until {
                            term.valid_until = until;
                            if let Some(leading) = &leading {
                                self.shared.extend_leader(leading.epoch, until);
                            }
                        }
                    }
                    Some(KeeperEvent::LeaseGone) | None => {
                        let reason = format!("etcd says lease {:x} has expired", term.lease);
                        return self.lose(term, &reason).await;
                    }
                },
                result = poll_some(&mut campaign) => {
                    campaign = None;
                    match result {
                        Ok(key) => {
                            campaign_failures.recovered();
                            backoff.reset();
                            let epoch = u64::try_from(key.rev()).unwrap_or(0);
                            if epoch == 0 {
                                campaign_failures.failed(&format!(
                                    "etcd answered the campaign with leader key revision {}",
                                    key.rev()
                                ));
                                campaign_at = Instant::now() + backoff.next_delay();
                                continue;
                            }
                            if term.valid_until <= Instant::now() {
                                let reason = format!(
                                    "won the election with epoch {epoch}, but etcd answered no keep-alive of lease {:x} in time",
                                    term.lease
                                );
                                return self.lose(term, &reason).await;
                            }
                            if self.shared.publish_leader(epoch, term.valid_until) {
                                tracing::info!(
                                    region = %self.config.region,
                                    member_id = %self.config.member_id,
                                    epoch,
                                    "this replica leads the region"
                                );
                            }
                            guard = Some(Task::spawn(key_guard::deleted(
                                term.etcd.clone(),
                                key.key().to_vec(),
                                self.config.max_backoff(),
                            )));
                            leading = Some(Leading { key, epoch });
                        }
                        Err(error) if is_lease_not_found(&error) => {
                            let reason = format!("etcd says lease {:x} has expired", term.lease);
                            return self.lose(term, &reason).await;
                        }
                        Err(error) => {
                            campaign_failures.failed(&error);
                            campaign_at = Instant::now() + backoff.next_delay();
                        }
                    }
                }
                () = sleep_until_some(start_at) => {
                    campaign = Some(Box::pin(run_campaign(
                        term.etcd.clone(),
                        name.clone(),
                        value.clone(),
                        term.lease,
                    )));
                }
                _ = poll_some(&mut guard) => {
                    return self.lose(term, "its leader key was deleted").await;
                }
                Ok(()) = self.observed.changed() => match &leading {
                    None => self.follow(),
                    Some(leading) => {
                        let newer = self
                            .observed
                            .borrow()
                            .clone()
                            .filter(|other| other.epoch > leading.epoch);
                        if let Some(other) = newer {
                            let reason = format!(
                                "member {} leads with the newer epoch {}",
                                other.member_id, other.epoch
                            );
                            return self.lose(term, &reason).await;
                        }
                    }
                },
            }
        }
    }

    /// How long the role lasts after sending a keep-alive answered with `ttl`.
    fn validity(&self, ttl: Duration) -> Duration {
        ttl.min(self.config.effective_lease_ttl())
            .saturating_sub(self.config.safety_margin())
    }

    /// The leader to publish while following: the observed one, unless it is this member
    /// (a key of an ended term, or a won campaign not yet acted on).
    fn follower_view(&self) -> Option<LeaderInfo> {
        self.observed
            .borrow()
            .clone()
            .filter(|leader| leader.member_id != self.config.member_id)
    }

    /// Publishes `Follower` with the observed leader (the driver is not leading).
    fn follow(&self) {
        let view = self.follower_view();
        let previous = self.shared.publish_follower(view.clone());
        if let Some(leader) = view
            && previous.leader_epoch() != Some(leader.epoch)
        {
            tracing::info!(
                region = %self.config.region,
                member_id = %self.config.member_id,
                leader = %leader.member_id,
                leader_address = %leader.address,
                epoch = leader.epoch,
                "following the leader"
            );
        }
    }

    /// Ends `term` because its lease or key is gone or presumed gone: `Follower` now, the
    /// lease revoked, a fresh campaign next.
    async fn lose(&mut self, term: Term, reason: &str) -> Flow {
        let previous = self.shared.publish_follower(self.follower_view());
        if let Role::Leader { epoch, .. } = previous {
            tracing::info!(
                region = %self.config.region,
                member_id = %self.config.member_id,
                epoch,
                "this replica no longer leads the region: {reason}"
            );
        } else {
            tracing::info!(
                region = %self.config.region,
                member_id = %self.config.member_id,
                "campaigning again with a new lease: {reason}"
            );
        }
        self.end(term).await;
        Flow::Continue
    }

    /// A step-down was asked: no campaign for one TTL.
    fn stepped_down(&mut self, reason: &str) {
        let pause = self.config.step_down_pause();
        self.campaign_not_before = Instant::now() + pause;
        self.shared.step_down_done();
        tracing::info!(
            region = %self.config.region,
            member_id = %self.config.member_id,
            "stepped down ({reason}); campaigning again in {pause:?}"
        );
    }

    /// Stops renewing `term`'s lease and revokes it; one that cannot be revoked now is
    /// revoked before the next lease is granted.
    async fn end(&mut self, term: Term) {
        let Term {
            etcd,
            lease,
            keeper,
            ..
        } = term;
        drop(keeper);
        if let Err(error) = etcd.revoke(lease).await {
            tracing::warn!("could not revoke lease {lease:x} (will retry): {error}");
            self.stale_lease = Some(lease);
        }
    }

    /// At shutdown: `Follower`, resign when leading, revoke the lease.
    async fn finish(&mut self, term: Term, leading: Option<Leading>) {
        self.shared.close();
        self.shared.publish_follower(None);
        if let Some(Leading { key, epoch }) = leading {
            let mut client = term.etcd.client.election_client();
            let resigning = client.resign(Some(ResignOptions::new().with_leader(key)));
            match term.etcd.run("resigning", resigning).await {
                Ok(_) => tracing::info!(
                    region = %self.config.region,
                    member_id = %self.config.member_id,
                    epoch,
                    "resigned as leader"
                ),
                Err(error) => tracing::warn!("could not resign as leader: {error}"),
            }
        }
        self.end(term).await;
    }

    /// Revokes the lease of an ended term, if any, once (at shutdown, outside a term).
    async fn revoke_stale(&mut self) {
        let Some(lease) = self.stale_lease.take() else {
            return;
        };
        let revoked = async {
            Etcd::connect(&self.config.endpoints, self.config.request_timeout())
                .await?
                .revoke(lease)
                .await
        };
        if let Err(error) = revoked.await {
            tracing::warn!("could not revoke lease {lease:x} (it expires by itself): {error}");
        }
    }
}

/// Sleeps until `deadline`; never completes for `None`.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Awaits the future in `slot`; never completes for `None`.
async fn poll_some<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}
