//! [`Endpoints`]: the servers of one region that a [`crate::Client`] or [`crate::Worker`]
//! knows, which of them leads, and the loop that sends one call to the right one.
//!
//! Rules of [`Endpoints::call`], within the call's deadline (the failover timeout by default):
//!
//! - `not_leader` naming a leader: the call goes to that leader (added to the known endpoints
//!   when new). A follower refuses before doing anything, so this is safe for every call.
//! - `not_leader` without a leader (an election is under way): the next endpoint is tried;
//!   after a whole round of them, the call waits (backoff) and starts over.
//! - `leader_starting`: the same server is asked again after a backoff delay.
//! - A connection failure (no `tandem-error-code`): the next endpoint is tried, but only when
//!   the request certainly did not reach the server (connecting failed) or the call is safe to
//!   send twice ([`Resend::Safe`]); otherwise the error is returned, because the server may
//!   have acted on it. When every endpoint failed to connect and none answered during the
//!   call, the error is returned at once (nothing is running there; no failover is under way).
//! - `region_not_active` (a replica of a standby or fenced region refused a call that needs
//!   an active region): the next endpoint is tried, like an unreachable one (a client given
//!   the replicas of several regions reaches the active one, and follows a promotion). When
//!   every endpoint of a round refused so or could not be reached, that refusal is returned
//!   at once (it names the active region).
//! - Any other error or reply is the call's result.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::config::{ClientConfig, normalize};
use crate::connection::{CallFailure, Connection};
use crate::error::ClientError;

/// First wait before asking again (a starting leader, a round of followers without a leader).
const RETRY_INITIAL: Duration = Duration::from_millis(50);
/// Longest wait between two tries.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Most endpoints one client keeps: the configured ones plus leaders learned from replies.
const MAX_ENDPOINTS: usize = 64;

/// Where a call may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Only the leader answers it (writes, worker calls); it starts at the last known leader.
    Leader,
    /// Every replica answers it (reads); it starts at the endpoint that answered last.
    Any,
}

/// Whether a call may be sent again after a connection failure that may have happened after
/// the server received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Sending it twice has the effect of sending it once (reads, registering a workflow,
    /// cancelling a run, a start with an idempotency key, heartbeats).
    Safe,
    /// A second send may act twice (a start without an idempotency key): sent again only when
    /// connecting failed.
    OnlyIfNotSent,
}

/// One call's routing: where it may be answered, whether it may be sent twice, the wait a
/// long poll adds to the request timeout, and when to stop trying.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) target: Target,
    pub(crate) resend: Resend,
    pub(crate) extra: Duration,
    pub(crate) deadline: Option<Instant>,
}

impl Route {
    /// A call to the leader, within the failover timeout.
    pub(crate) fn leader(resend: Resend) -> Route {
        Route {
            target: Target::Leader,
            resend,
            extra: Duration::ZERO,
            deadline: None,
        }
    }

    /// A read, answered by any replica, within the failover timeout.
    pub(crate) fn any() -> Route {
        Route {
            target: Target::Any,
            resend: Resend::Safe,
            extra: Duration::ZERO,
            deadline: None,
        }
    }

    /// Adds a long poll's wait to each try's request timeout.
    pub(crate) fn extra(mut self, extra: Duration) -> Route {
        self.extra = extra;
        self
    }

    /// Gives up at `deadline` instead of after the failover timeout.
    pub(crate) fn until(mut self, deadline: Instant) -> Route {
        self.deadline = Some(deadline);
        self
    }
}

/// A reply and the server that gave it.
#[derive(Debug)]
pub(crate) struct Answer<T> {
    pub(crate) endpoint: String,
    pub(crate) response: tonic::Response<T>,
}

/// The known servers of one region and which of them leads. Shared (behind an `Arc`) by the
/// clones of a client or worker.
#[derive(Debug)]
pub(crate) struct Endpoints {
    config: ClientConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    connections: Vec<Connection>,
    /// The endpoint that last accepted a call that needs the leader (or the first one).
    leader: usize,
    /// The endpoint that last answered any call.
    current: usize,
}

impl Endpoints {
    /// Every configured endpoint connected lazily (on first use); checks the addresses only.
    pub(crate) fn lazy(config: &ClientConfig) -> Result<Arc<Endpoints>, ClientError> {
        config.check()?;
        let connections = config
            .endpoints()
            .iter()
            .map(|address| Connection::lazy(config, address))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Endpoints::from_connections(config, connections, 0))
    }

    /// Connects now to the configured endpoints in order until one answers (the others are
    /// connected on first use). Fails with the last connection error (naming every endpoint
    /// tried when there are several) when none can be reached.
    pub(crate) async fn connect(config: &ClientConfig) -> Result<Arc<Endpoints>, ClientError> {
        config.check()?;
        let mut connections = Vec::with_capacity(config.endpoints().len());
        let mut reached = None;
        let mut failures = Vec::new();
        for address in config.endpoints() {
            if reached.is_none() {
                match Connection::connect(config, address).await {
                    Ok(connection) => {
                        reached = Some(connections.len());
                        connections.push(connection);
                        continue;
                    }
                    Err(error) => failures.push(error),
                }
            }
            connections.push(Connection::lazy(config, address)?);
        }
        match reached {
            Some(index) => Ok(Endpoints::from_connections(config, connections, index)),
            None if failures.len() == 1 => Err(failures.remove(0)),
            None => Err(ClientError::Unavailable {
                endpoint: config.endpoints().join(","),
                message: failures
                    .iter()
                    .map(|error| match error {
                        ClientError::Unavailable {
                            endpoint, message, ..
                        } => format!("{endpoint}: {message}"),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                error_code: None,
            }),
        }
    }

    fn from_connections(
        config: &ClientConfig,
        connections: Vec<Connection>,
        first: usize,
    ) -> Arc<Endpoints> {
        Arc::new(Endpoints {
            config: config.clone(),
            state: Mutex::new(State {
                connections,
                leader: first,
                current: first,
            }),
        })
    }

    /// The configuration (timeouts, the configured endpoints).
    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The address calls that need the leader go to first.
    pub(crate) fn leader(&self) -> String {
        let state = self.lock();
        state.connections[state.leader].endpoint.clone()
    }

    /// Every known address: the configured ones, then leaders learned from replies.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.lock()
            .connections
            .iter()
            .map(|connection| connection.endpoint.clone())
            .collect()
    }

    /// Sends the call `send` makes on a channel to the server `route` says, following the
    /// rules of this module's docs.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        route: Route,
        mut send: F,
    ) -> Result<Answer<T>, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = route
            .deadline
            .unwrap_or_else(|| started + self.config.get_failover_timeout());
        let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        let mut index = self.start(route.target);
        // Endpoints tried since the last wait without one accepting the call.
        let mut tried = 0_usize;
        // Whether some server replied (a refusal) during this call: a failover is under way.
        let mut answered = false;
        // Since the last wait: endpoints that refused as not active, or could not be reached.
        let mut not_active = 0_usize;
        let mut unreachable = 0_usize;
        // The last `region_not_active` refusal, returned when no endpoint accepts the call.
        let mut refusal: Option<ClientError> = None;
        let mut redirects = 0_u32;
        loop {
            let connection = self.connection(index);
            let failure = match connection
                .send(route.extra, send(connection.channel.clone()))
                .await
            {
                Ok(response) => {
                    self.answered(index, route.target);
                    return Ok(Answer {
                        endpoint: connection.endpoint,
                        response,
                    });
                }
                Err(failure) => failure,
            };
            // The leader a follower named, unless it named itself.
            let redirect = failure
                .error
                .leader_address()
                .and_then(|leader| self.index_of(leader))
                .filter(|&next| next != index);
            let count = self.len();
            let wait = match (&failure.error, redirect) {
                (ClientError::NotLeader { .. }, Some(next)) => {
                    answered = true;
                    self.set_leader(next);
                    tracing::debug!(from = %connection.endpoint, to = %self.connection(next).endpoint, "following the leader");
                    index = next;
                    tried = 0;
                    not_active = 0;
                    unreachable = 0;
                    redirects += 1;
                    // The first redirect goes at once; more mean replicas disagree on who
                    // leads (a hand-over under way): wait a little between them.
                    redirects > 1
                }
                (ClientError::NotLeader { .. }, None) => {
                    answered = true;
                    index = self.after(index);
                    tried += 1;
                    tried >= count
                }
                (ClientError::LeaderStarting { .. }, _) => {
                    answered = true;
                    true
                }
                (ClientError::RegionNotActive { .. }, _) => {
                    tracing::debug!(endpoint = %connection.endpoint, error = %failure.error, "the server's region is not active; trying the next endpoint");
                    self.unreachable(index);
                    index = self.after(index);
                    tried += 1;
                    not_active += 1;
                    if tried >= count && not_active + unreachable >= tried {
                        return Err(every_region_refused(failure.error, &self.addresses()));
                    }
                    refusal = Some(failure.error.clone());
                    tried >= count
                }
                (error, _) if error.is_connection_failure() => {
                    if !failure.not_sent && route.resend == Resend::OnlyIfNotSent {
                        return Err(unsafe_to_resend(failure));
                    }
                    tracing::debug!(endpoint = %connection.endpoint, error = %failure.error, "trying the next endpoint");
                    self.unreachable(index);
                    index = self.after(index);
                    tried += 1;
                    unreachable += 1;
                    if tried >= count && not_active + unreachable >= tried {
                        if let Some(refusal) = refusal.clone().filter(|_| not_active > 0) {
                            return Err(every_region_refused(refusal, &self.addresses()));
                        }
                        if !answered {
                            return Err(every_endpoint_failed(failure.error, &self.addresses()));
                        }
                    }
                    tried >= count
                }
                _ => return Err(failure.error),
            };
            if wait {
                tried = 0;
                not_active = 0;
                unreachable = 0;
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    return Err(gave_up(failure.error, route.target, started));
                }
                tokio::time::sleep(delay).await;
            } else if Instant::now() >= deadline {
                return Err(gave_up(failure.error, route.target, started));
            }
        }
    }

    /// Moves on from `address` (its watch stream broke or ended): a later call starts at the
    /// next endpoint.
    pub(crate) fn avoid(&self, address: &str) {
        let mut state = self.lock();
        let count = state.connections.len();
        if state.connections[state.current].endpoint == address {
            state.current = (state.current + 1) % count;
        }
    }

    /// Moves on after a connection failure: a later call starts at the next endpoint.
    fn unreachable(&self, index: usize) {
        let mut state = self.lock();
        let next = (index + 1) % state.connections.len();
        if state.leader == index {
            state.leader = next;
        }
        if state.current == index {
            state.current = next;
        }
    }

    /// Records that `index` answered a call to `target`.
    fn answered(&self, index: usize, target: Target) {
        let mut state = self.lock();
        state.current = index;
        if target == Target::Leader {
            state.leader = index;
        }
    }

    fn set_leader(&self, index: usize) {
        self.lock().leader = index;
    }

    fn start(&self, target: Target) -> usize {
        let state = self.lock();
        match target {
            Target::Leader => state.leader,
            Target::Any => state.current,
        }
    }

    fn connection(&self, index: usize) -> Connection {
        self.lock().connections[index].clone()
    }

    fn len(&self) -> usize {
        self.lock().connections.len()
    }

    fn after(&self, index: usize) -> usize {
        (index + 1) % self.len()
    }

    /// The index of the endpoint at `address`, adding it when new (a leader named by a
    /// follower that this client was not configured with). `None` for an unusable address or
    /// when [`MAX_ENDPOINTS`] are known already.
    fn index_of(&self, address: &str) -> Option<usize> {
        let address = normalize(address);
        let mut state = self.lock();
        if let Some(index) = state
            .connections
            .iter()
            .position(|connection| connection.endpoint == address)
        {
            return Some(index);
        }
        if state.connections.len() >= MAX_ENDPOINTS {
            tracing::warn!(%address, "not following the leader: too many endpoints known");
            return None;
        }
        match Connection::lazy(&self.config, &address) {
            Ok(connection) => {
                state.connections.push(connection);
                Some(state.connections.len() - 1)
            }
            Err(error) => {
                tracing::warn!(%error, "a follower named a leader address this client cannot use");
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error of a call that may have reached the server and is not safe to send again.
fn unsafe_to_resend(failure: CallFailure) -> ClientError {
    failure.error.with_note(
        "the server may have received the request before the connection failed, and sending it again could act twice; it was not sent again (give a start an idempotency key to make it safe to retry)",
    )
}

/// The error after every one of the endpoints at `addresses` failed to connect.
fn every_endpoint_failed(error: ClientError, addresses: &[String]) -> ClientError {
    if addresses.len() > 1 {
        error.with_note(&format!(
            "none of the {} servers of the region could be reached: {}",
            addresses.len(),
            addresses.join(", ")
        ))
    } else {
        error
    }
}

/// The refusal of a region that is not active, after every one of the endpoints at
/// `addresses` refused the call so or could not be reached.
fn every_region_refused(error: ClientError, addresses: &[String]) -> ClientError {
    if addresses.len() > 1 {
        error.with_note(&format!(
            "none of the {} servers given accepted the call: each belongs to a region that is not active or could not be reached ({})",
            addresses.len(),
            addresses.join(", ")
        ))
    } else {
        error
    }
}

/// The last error of a call to `target` that ran out of time.
fn gave_up(error: ClientError, target: Target, started: Instant) -> ClientError {
    let looking_for = match target {
        Target::Leader => "the leader",
        Target::Any => "a server that answers",
    };
    error.with_note(&format!(
        "gave up looking for {looking_for} after {} ms",
        started.elapsed().as_millis()
    ))
}

#[cfg(test)]
mod tests;
