//! [`Election`]: the handle of one replica's election, and the role state it shares with the
//! background driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::config::ElectionConfig;
use super::driver::Driver;
use super::role::{LeaderInfo, Role};

/// One replica's part in its region's leader election, run by a background task.
///
/// A cheap `Clone` handle. When the last handle is dropped, the background task resigns and
/// revokes its lease (as [`Election::shutdown`] does) and ends.
///
/// Safety: the role is `Leader` only between a won campaign and `valid_until` (the send time
/// of the last keep-alive etcd answered + TTL − safety margin); a local timer publishes
/// `Follower` at `valid_until` without needing etcd to answer. See the [module
/// docs](super) for the timing.
#[derive(Debug, Clone)]
pub struct Election {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    config: Arc<ElectionConfig>,
}

/// What a handle asks of the driver.
#[derive(Debug)]
pub(super) enum Command {
    /// Give up the lease at once and wait a pause before campaigning again.
    StepDown(String),
    /// Resign, revoke the lease and end; answer when done.
    Shutdown(oneshot::Sender<()>),
}

/// The published role, and the flags that keep the driver from publishing `Leader` while a
/// handle's step-down or shutdown is on its way to it.
#[derive(Debug)]
pub(super) struct Shared {
    role: watch::Sender<Role>,
    step_down_pending: AtomicBool,
    closed: AtomicBool,
}

impl Election {
    /// Starts the election of `config.member_id` in `config.region` on a background task and
    /// returns at once, as a follower. Never fails: while etcd cannot be reached (or the
    /// config is invalid: call [`ElectionConfig::validate`] first) it stays a follower,
    /// logs warnings and retries with backoff forever. Must be called within a Tokio
    /// runtime.
    pub fn start(config: ElectionConfig) -> Election {
        if let Err(error) = config.validate() {
            tracing::warn!(
                "starting a leader election with an invalid config (it will not lead until fixed): {error}"
            );
        }
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            role: watch::Sender::new(Role::Follower { leader: None }),
            step_down_pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let (commands, received) = mpsc::unbounded_channel();
        let driver = Driver::new(Arc::clone(&config), Arc::clone(&shared), received);
        tokio::spawn(driver.run());
        Election {
            shared,
            commands,
            config,
        }
    }

    /// A receiver of every role change (and of every renewal of `valid_until` while
    /// leading). It sees the current role at once.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.shared.role.subscribe()
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.shared.role.borrow().clone()
    }

    /// The config this election runs with.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Gives up leadership, e.g. because the store refused this leader's epoch: the role is
    /// `Follower` when this returns; in the background the lease is revoked (deleting the
    /// leader key, so another member takes over at once) and, after a pause of one TTL so
    /// that the new leader can settle, this member campaigns again with a fresh lease.
    /// Works as well when not leading (the member withdraws its candidacy for the pause).
    pub fn step_down(&self, reason: &str) {
        let was_leader = self.shared.withdraw(&self.shared.step_down_pending);
        if was_leader {
            tracing::info!(
                region = %self.config.region,
                member_id = %self.config.member_id,
                "stepping down as leader: {reason}"
            );
        }
        // A closed channel means the election ended: nothing to step down from.
        let _ = self.commands.send(Command::StepDown(reason.to_string()));
    }

    /// Ends the election: the role is `Follower` at once; the leader resigns (another member
    /// takes over without waiting for the lease to expire), the lease is revoked (removing
    /// this member from the registry) and the background task ends. Returns when done,
    /// within about two etcd request timeouts when etcd does not answer. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.withdraw(&self.shared.closed);
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            // An error means the driver ended without answering: done either way.
            let _ = finished.await;
        }
    }
}

impl Shared {
    /// Sets `flag` and publishes `Follower` (without a leader) if leading, as one step
    /// under the role's lock; whether it was leading.
    fn withdraw(&self, flag: &AtomicBool) -> bool {
        let mut was_leader = false;
        self.role.send_if_modified(|role| {
            flag.store(true, Ordering::SeqCst);
            was_leader = role.is_leader();
            if was_leader {
                *role = Role::Follower { leader: None };
            }
            was_leader
        });
        was_leader
    }

    /// Publishes `Leader { epoch, valid_until }` unless a step-down or shutdown is pending;
    /// whether it was published.
    pub fn publish_leader(&self, epoch: u64, valid_until: Instant) -> bool {
        self.role.send_if_modified(|role| {
            if self.closed.load(Ordering::SeqCst) || self.step_down_pending.load(Ordering::SeqCst) {
                return false;
            }
            *role = Role::Leader { epoch, valid_until };
            true
        })
    }

    /// Moves `valid_until` of the `Leader` role with `epoch` (a no-op in any other role).
    pub fn extend_leader(&self, epoch: u64, valid_until: Instant) {
        self.role.send_if_modified(|role| match role {
            Role::Leader {
                epoch: current,
                valid_until: until,
            } if *current == epoch && *until < valid_until => {
                *until = valid_until;
                true
            }
            _ => false,
        });
    }

    /// Publishes `Follower { leader }` (when different from the current role); returns the
    /// role it replaces.
    pub fn publish_follower(&self, leader: Option<LeaderInfo>) -> Role {
        let mut previous = None;
        self.role.send_if_modified(|role| {
            let follower = Role::Follower { leader };
            let changed = *role != follower;
            previous = Some(std::mem::replace(role, follower));
            changed
        });
        previous.unwrap_or(Role::Follower { leader: None })
    }

    /// Marks the election ended: `Leader` is never published again.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Clears a pending step-down once the driver has acted on it.
    pub fn step_down_done(&self) {
        self.step_down_pending.store(false, Ordering::SeqCst);
    }
}
