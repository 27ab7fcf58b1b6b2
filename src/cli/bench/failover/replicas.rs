//! [`ReplicaSet`]: the `tandem serve` replicas of one region of the benchmarks, a private etcd
//! for their leader election, and the calls that find out who leads.
//!
//! Replica `N` runs with `--member-id replica-N --etcd-endpoints URL --lease-ttl Ts` and
//! listens on a port of 127.0.0.1 chosen at its first start (port 0) and kept across restarts,
//! so the clients' endpoint lists stay valid, as in a deployment where a replica restarts on
//! its own address. Each replica has its own state directory and log (`replica-N.log`,
//! appended to by every start) in the bench's temp dir.
//!
//! Every child process is started from the calling thread (see [`super::super::process`]):
//! call these methods from the thread that owns the runtime (the bench's), never from a task.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tandem_api::{Client, ClientConfig, ClusterLeader, ClusterStatus};
use tandem_engine::checkpoint::UnixMillis;
use tandem_engine::testing::TempEtcd;
use tokio::runtime::Runtime;

use super::super::super::Failure;
use super::super::process::{ElectionOptions, ServeOptions, ServeProcess};

/// How long the region may take to have the expected leader or members.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two `GetClusterStatus` polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Timeouts of one `GetClusterStatus` call while polling: short, the poll asks again.
const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The replicas of the bench's region, each a `tandem serve` with leader election (killed on
/// drop, then etcd).
#[derive(Debug)]
pub struct ReplicaSet {
    exe: PathBuf,
    postgres_url: String,
    dir: PathBuf,
    lease_ttl: Duration,
    replicas: Vec<Replica>,
    /// A client of every replica (replica 0 first), default timeouts.
    client: Client,
    /// A client of every replica with short timeouts, for polling the cluster status.
    status: Client,
    // Last: dropped after the replicas, so they are gone before their etcd is.
    etcd: TempEtcd,
}

#[derive(Debug)]
struct Replica {
    member_id: String,
    /// `127.0.0.1:PORT`, chosen at the first start and kept.
    address: String,
    /// `None` while killed.
    process: Option<ServeProcess>,
}

/// The member id of replica `index`: `replica-INDEX`.
pub fn member_id(index: usize) -> String {
    format!("replica-{index}")
}

/// The index of the replica whose member id is `member_id` (`replica-N` → N).
pub fn replica_index(member_id: &str) -> Option<usize> {
    member_id.strip_prefix("replica-")?.parse().ok()
}

impl ReplicaSet {
    /// Starts a private etcd, then replica 0, waits until it leads, then the `count - 1`
    /// others, and waits until all `count` are members of the region. Logs and state go under
    /// `dir`.
    ///
    /// Errors: etcd or a replica cannot be started, or replica 0 does not lead (or the others
    /// do not join) within 60 s; the error quotes the replicas' logs.
    pub fn start(
        runtime: &Runtime,
        exe: &Path,
        postgres_url: &str,
        dir: &Path,
        count: usize,
        lease_ttl: Duration,
    ) -> Result<ReplicaSet, Failure> {
        let etcd = runtime.block_on(TempEtcd::start()).map_err(|error| {
            Failure::system(format!("cannot start etcd for the replicas: {error}"))
        })?;
        // The SDK's lazy clients need the runtime's context to be made.
        let _context = runtime.enter();
        let mut replicas: Vec<Replica> = Vec::with_capacity(count);
        let first = start_replica(
            exe,
            postgres_url,
            dir,
            &etcd.endpoint(),
            0,
            "127.0.0.1:0",
            lease_ttl,
        )?;
        replicas.push(first);
        let mut set = ReplicaSet {
            exe: exe.to_path_buf(),
            postgres_url: postgres_url.to_string(),
            dir: dir.to_path_buf(),
            lease_ttl,
            client: lazy_client(&replicas, None)?,
            status: lazy_client(&replicas, Some(STATUS_CALL_TIMEOUT))?,
            replicas,
            etcd,
        };
        runtime.block_on(set.wait_for("replica 0 to lead", |status| {
            status
                .leader
                .as_ref()
                .is_some_and(|leader| leader.member_id == member_id(0))
        }))?;
        for index in 1..count {
            let replica = start_replica(
                exe,
                postgres_url,
                dir,
                &set.etcd.endpoint(),
                index,
                "127.0.0.1:0",
                lease_ttl,
            )
            .map_err(|failure| set.with_logs(failure))?;
            set.replicas.push(replica);
        }
        set.client = lazy_client(&set.replicas, None)?;
        set.status = lazy_client(&set.replicas, Some(STATUS_CALL_TIMEOUT))?;
        runtime.block_on(set.wait_for_members(None))?;
        Ok(set)
    }

    /// A client of every replica (replica 0 first) with the SDK's default timeouts: it
    /// follows the leader.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The running process of replica `index` (`None` while it is killed).
    pub fn process(&self, index: usize) -> Option<&ServeProcess> {
        self.replicas.get(index)?.process.as_ref()
    }

    /// The region's leader as a live replica reports it (asked until one names a leader that
    /// is one of the replicas), and its replica index.
    ///
    /// Errors: no leader reported within 60 s.
    pub async fn leader(&self) -> Result<(usize, ClusterLeader), Failure> {
        let status = self
            .wait_for("a replica of the bench to lead", |status| {
                status
                    .leader
                    .as_ref()
                    .and_then(|leader| replica_index(&leader.member_id))
                    .is_some_and(|index| index < self.replicas.len())
            })
            .await?;
        let leader = status
            .leader
            .ok_or_else(|| Failure::system("GetClusterStatus: the leader vanished from a reply"))?;
        let index = replica_index(&leader.member_id).unwrap_or_default();
        Ok((index, leader))
    }

    /// Kills replica `index` (SIGKILL, as `kill -9`) and reaps it. A no-op when it is not
    /// running.
    pub fn kill(&mut self, index: usize) {
        if let Some(process) = self
            .replicas
            .get_mut(index)
            .and_then(|replica| replica.process.take())
        {
            process.kill();
        }
    }

    /// Starts replica `index` again: a new process, with the same member id and address.
    ///
    /// Errors: it cannot be started (e.g. its port was taken meanwhile), with its log.
    pub fn restart(&mut self, index: usize) -> Result<(), Failure> {
        let Some(replica) = self.replicas.get(index) else {
            return Err(Failure::system(format!(
                "restart: expected a replica index below {}, found {index}",
                self.replicas.len()
            )));
        };
        let restarted = start_replica(
            &self.exe,
            &self.postgres_url,
            &self.dir,
            &self.etcd.endpoint(),
            index,
            &replica.address,
            self.lease_ttl,
        )?;
        if restarted.address != replica.address {
            return Err(Failure::system(format!(
                "{}: expected the restarted replica to listen on {}, found {}",
                replica.member_id, replica.address, restarted.address
            )));
        }
        self.replicas[index].process = restarted.process;
        Ok(())
    }

    /// Waits until every replica is a member of the region and a leader is known; with
    /// `restarted = Some((index, since))`, replica `index`'s membership must also have started
    /// at `since` (ms since the Unix epoch) or later, so it is the new process's and not the
    /// killed one's whose lease has not expired yet.
    ///
    /// Errors: not so within 60 s.
    pub async fn wait_for_members(
        &self,
        restarted: Option<(usize, UnixMillis)>,
    ) -> Result<ClusterStatus, Failure> {
        let expected: Vec<String> = (0..self.replicas.len()).map(member_id).collect();
        let what = format!("members {} and a leader", expected.join(", "));
        self.wait_for(&what, |status| {
            status.leader.is_some()
                && expected.iter().enumerate().all(|(index, id)| {
                    status.members.iter().any(|member| {
                        &member.member_id == id
                            && match restarted {
                                Some((restarted, since)) if restarted == index => {
                                    member.started_at_unix_ms >= since
                                }
                                _ => true,
                            }
                    })
                })
        })
        .await
    }

    /// Polls `GetClusterStatus` (any live replica answers) until `ready` holds for a reply;
    /// returns that reply.
    ///
    /// Errors: not within 60 s; the error shows the last reply or call error.
    async fn wait_for(
        &self,
        what: &str,
        ready: impl Fn(&ClusterStatus) -> bool,
    ) -> Result<ClusterStatus, Failure> {
        let started = Instant::now();
        let mut last = String::from("no reply yet");
        while started.elapsed() < CLUSTER_TIMEOUT {
            match self.status.cluster_status().await {
                Ok(status) if ready(&status) => return Ok(status),
                Ok(status) => last = describe(&status),
                Err(error) => last = format!("GetClusterStatus failed: {error}"),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Err(self.with_logs(Failure::system(format!(
            "expected {what} within {} s, found: {last}",
            CLUSTER_TIMEOUT.as_secs()
        ))))
    }

    /// `failure` with the end of every replica's log appended.
    pub fn with_logs(&self, failure: Failure) -> Failure {
        let mut message = failure.message;
        for replica in &self.replicas {
            let tail = match &replica.process {
                Some(process) => process.log_tail(),
                None => "(killed)".to_string(),
            };
            message.push_str(&format!("\n{}: {tail}", replica.member_id));
        }
        Failure {
            code: failure.code,
            message,
        }
    }

    /// Stops every replica (SIGTERM, then SIGKILL after 10 s), then etcd.
    pub fn stop(mut self) {
        for replica in &mut self.replicas {
            if let Some(process) = replica.process.take() {
                process.stop();
            }
        }
    }
}

/// Starts replica `index` listening on `listen`.
fn start_replica(
    exe: &Path,
    postgres_url: &str,
    dir: &Path,
    etcd_endpoint: &str,
    index: usize,
    listen: &str,
    lease_ttl: Duration,
) -> Result<Replica, Failure> {
    let member_id = member_id(index);
    let options = ServeOptions {
        name: member_id.clone(),
        listen: listen.to_string(),
        election: Some(ElectionOptions {
            etcd_endpoint: etcd_endpoint.to_string(),
            member_id: member_id.clone(),
            lease_ttl,
        }),
        ..ServeOptions::new(postgres_url, dir)
    };
    let process = ServeProcess::start_with(exe, &options).map_err(|failure| Failure {
        code: failure.code,
        message: format!("{member_id}: {}", failure.message),
    })?;
    let address = process
        .url()
        .strip_prefix("http://")
        .unwrap_or(process.url())
        .to_string();
    Ok(Replica {
        member_id,
        address,
        process: Some(process),
    })
}

/// A lazily connecting client of every replica's address, in index order; with
/// `call_timeout`, its connect, request and failover timeouts are that.
fn lazy_client(replicas: &[Replica], call_timeout: Option<Duration>) -> Result<Client, Failure> {
    let mut config = ClientConfig::with_endpoints(
        replicas
            .iter()
            .map(|replica| format!("http://{}", replica.address)),
    );
    if let Some(timeout) = call_timeout {
        config = config
            .connect_timeout(timeout)
            .request_timeout(timeout)
            .failover_timeout(timeout);
    }
    Client::connect_lazy(config)
        .map_err(|error| Failure::system(format!("cannot make a client of the replicas: {error}")))
}

/// A cluster status in one line, for error messages.
fn describe(status: &ClusterStatus) -> String {
    let members: Vec<String> = status
        .members
        .iter()
        .map(|member| {
            format!(
                "{} (started {})",
                member.member_id, member.started_at_unix_ms
            )
        })
        .collect();
    let leader = status.leader.as_ref().map_or("none".to_string(), |leader| {
        format!("{} epoch {}", leader.member_id, leader.epoch)
    });
    format!(
        "members [{}], leader {leader} (answered by {})",
        members.join(", "),
        status.answered_by
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_and_indexes() {
        assert_eq!(member_id(2), "replica-2");
        assert_eq!(replica_index("replica-2"), Some(2));
        assert_eq!(replica_index("replica-x"), None);
        assert_eq!(replica_index("host-1234"), None);
    }

    #[test]
    fn a_status_line_names_members_and_leader() {
        let status = ClusterStatus {
            region: "bench".to_string(),
            answered_by: "replica-1".to_string(),
            endpoint: "http://127.0.0.1:1".to_string(),
            role: tandem_api::MemberRole::Follower,
            members: vec![tandem_api::ClusterMember {
                member_id: "replica-1".to_string(),
                address: "http://127.0.0.1:1".to_string(),
                started_at_unix_ms: 5,
                version: "0".to_string(),
                is_leader: false,
            }],
            leader: None,
            lease_ttl: None,
            lease_ttl_left: None,
        };
        assert_eq!(
            describe(&status),
            "members [replica-1 (started 5)], leader none (answered by replica-1)"
        );
    }
}
