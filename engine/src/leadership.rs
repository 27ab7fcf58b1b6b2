//! Leader election inside a region, through etcd.
//!
//! Every `tandem serve` replica of a region runs an [`Election`]. It follows etcd's election
//! recipe (the `v3election` API): each replica holds a lease kept alive by a keep-alive
//! every TTL/4, registers itself under `/tandem/<region>/members/<member_id>` on that lease,
//! and campaigns on `/tandem/<region>/leader` with its lease; the candidate whose key has
//! the lowest create revision leads, and that revision is its **epoch** (the fencing token
//! the store checks: every later leader has a higher one). Who leads is followed with
//! `Observe` in a task of its own. [`cluster_status`] reads the same keys for anyone.
//!
//! The [`Role`] is published on a `tokio::sync::watch` channel ([`Election::subscribe`]):
//! `Leader { epoch, valid_until }` or `Follower { leader }`.
//!
//! # Safety: the role never outlives the lease
//!
//! etcd deletes the leader key when the lease expires, `TTL` after etcd *received* the last
//! keep-alive; another replica may lead from then on. The leader therefore counts from the
//! moment it *sent* the last keep-alive that etcd answered (never later than etcd's
//! receipt) and drops the role at
//!
//! `valid_until = send time + TTL − safety margin`
//!
//! with a local timer: no answer from etcd is needed to stop leading, so an etcd that is
//! down, paused or cut off cannot keep a stale leader dispatching. The margin
//! ([`ElectionConfig::safety_margin`]: TTL/5, at least 500 ms) covers the time the service
//! needs to stop dispatching after `Follower` is published, the timer's granularity, and a
//! local clock running slower than etcd's. A leader that the store fences anyway (a pause
//! longer than the margin, e.g. SIGSTOP) calls [`Election::step_down`].
//!
//! After losing leadership (lease expired or presumed expired, key deleted, step-down) the
//! replica revokes the old lease (best effort) and campaigns again with a fresh lease, so a
//! new term always has a new epoch. etcd errors are logged and retried with backoff
//! forever; nothing here panics or gives up.
//!
//! # Choosing the TTL
//!
//! The TTL trades fast failover against false failovers:
//!
//! - A crashed leader is replaced once its lease expires: about one TTL (plus the new
//!   leader's resume). A short TTL fails over fast.
//! - A healthy leader whose keep-alives go unanswered for longer than
//!   `TTL − margin − TTL/4` (an etcd fsync stall or leader election, a network blip, a
//!   long GC or CPU starvation on either side) gives up the role, and every run is resumed
//!   by the next leader. A short TTL turns small hiccups into failovers.
//!
//! Patroni's rule for the same trade-off is `ttl ≥ loop_wait + 2 × retry_timeout`: the
//! leader must be able to miss a loop and retry a failed request twice before its key
//! expires. Here the loop is the keep-alive interval (TTL/4) and every keep-alive is a retry
//! of the previous one, so about three keep-alives may fail in a row before the role lapses
//! at `TTL − margin`. The default of 5 s (renewal every 1.25 s, role dropped 4 s after the
//! last answered renewal was sent) fails over within about 5 s and tolerates etcd stalls up
//! to about 2.5 s; 2 s is the minimum (etcd's own lease minimum with default timing) and
//! suits tests; raise it to 10–30 s where etcd runs across slow links or under heavy load.

mod config;
mod driver;
mod election;
mod error;
mod etcd;
mod keeper;
mod key_guard;
mod keys;
mod members;
mod observer;
mod role;
mod status;
mod task;
mod term;

pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_LEASE_TTL, ElectionConfig, MIN_LEASE_TTL};
pub use election::Election;
pub use error::LeadershipError;
pub use members::Member;
pub use role::{LeaderInfo, Role};
pub use status::{ClusterStatus, cluster_status};

#[cfg(test)]
mod tests;
