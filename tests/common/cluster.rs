//! A region of several real `tandem serve` replicas over one private PostgreSQL database and
//! one private etcd, for the high-availability tests.

use std::time::{Duration, Instant};

use tandem_api::{Client, ClientConfig};
use tandem_engine::testing::TempEtcd;

use super::server::{Server, fresh_database};

/// Replicas of region `test` (killed on drop) sharing a database and an etcd.
pub struct Cluster {
    /// The replicas; a killed one is started again in place by [`Cluster::restart`].
    pub replicas: Vec<Server>,
    /// The etcd the replicas elect their leader through.
    pub etcd: TempEtcd,
    /// The database URL.
    pub database_url: String,
    /// The lease TTL the replicas use, whole seconds.
    pub lease_ttl_secs: u64,
}

impl Cluster {
    /// Starts `count` replicas with a lease TTL of `lease_ttl_secs` and waits until one leads.
    pub async fn start(count: usize, lease_ttl_secs: u64) -> Cluster {
        let postgres = super::postgres::shared().await;
        let database_url = fresh_database(postgres).await;
        let etcd = TempEtcd::start().await.expect("start etcd");
        let mut cluster = Cluster {
            replicas: Vec::new(),
            etcd,
            database_url,
            lease_ttl_secs,
        };
        for index in 0..count {
            let args = cluster.args(index);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let server = Server::start(&cluster.database_url, &args);
            cluster.replicas.push(server);
        }
        cluster.wait_for_leader(None, Duration::from_secs(30)).await;
        cluster
    }

    fn args(&self, index: usize) -> Vec<String> {
        vec![
            "--etcd-endpoints".to_string(),
            self.etcd.endpoint(),
            "--lease-ttl".to_string(),
            format!("{}s", self.lease_ttl_secs),
            "--member-id".to_string(),
            format!("replica-{index}"),
        ]
    }

    /// Every replica's URL, comma-separated (what `--server` takes).
    pub fn servers(&self) -> String {
        self.urls().join(",")
    }

    /// Every replica's URL.
    pub fn urls(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|server| server.url.clone())
            .collect()
    }

    /// A client that knows every replica and follows the leader.
    pub async fn client(&self) -> Client {
        Client::connect_with(
            ClientConfig::with_endpoints(self.urls()).failover_timeout(Duration::from_secs(60)),
        )
        .await
        .expect("connect")
    }

    /// The index of the replica that leads, other
    /// than `not`, waiting up to `timeout`. Panics with every replica's log when none does.
    pub async fn wait_for_leader(&self, not: Option<usize>, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            for (index, server) in self.replicas.iter().enumerate() {
                if Some(index) == not {
                    continue;
                }
                if leads(&server.url).await.is_some() {
                    return index;
                }
            }
            if Instant::now() > deadline {
                panic!("no replica leads after {timeout:?}; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader epoch replica `index` reports, when it leads.
    pub async fn epoch_of(&self, index: usize) -> Option<u64> {
        leads(&self.replicas[index].url).await
    }

    /// Kills replica `index` (SIGKILL).
    pub fn kill(&mut self, index: usize) {
        self.replicas[index].kill();
    }

    /// Starts replica `index` again (same member id, state dir, database and port).
    pub fn restart(&mut self, index: usize) {
        let args = self.args(index);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.replicas[index].restart_same_port(&args);
    }

    /// Sends `signal` to replica `index` (`SIGSTOP`, `SIGCONT`).
    pub fn signal(&self, index: usize, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.replicas[index].child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal replica");
    }

    /// Every replica's log, for failure messages.
    pub fn logs(&self) -> String {
        self.replicas
            .iter()
            .enumerate()
            .map(|(index, server)| format!("--- replica-{index}:\n{}", server.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The epoch of the replica at `url` when it says it leads (within 1 s).
async fn leads(url: &str) -> Option<u64> {
    let config = ClientConfig::new(url)
        .connect_timeout(Duration::from_millis(300))
        .request_timeout(Duration::from_millis(1000));
    let client = tokio::time::timeout(Duration::from_secs(1), Client::connect_with(config))
        .await
        .ok()?
        .ok()?;
    let status = tokio::time::timeout(Duration::from_secs(1), client.cluster_status())
        .await
        .ok()?
        .ok()?;
    let leader = status.leader?;
    (status.answered_by == leader.member_id).then_some(leader.epoch)
}
