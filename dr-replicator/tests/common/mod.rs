//! Fixtures of the tandem-dr tests: a private PostgreSQL with a database per region, a
//! region replica serving on loopback over it, and a replicator running in a task.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tandem_api::{Client, ClientConfig, StartRun};
use tandem_dr::{
    DrClientConfig, Regions, Replicator, ReplicatorConfig, ReplicatorError, ReplicatorStatus,
    Topology,
};
use tandem_engine::executor::remote::{RemoteConfig, TaskQueues};
use tandem_engine::service::{DrConfig, Region, RegionParts, ServiceConfig, serve};
use tandem_engine::store::postgres::{PostgresConfig, PostgresStore};
use tandem_engine::store::replication::{RegionRole, ReplicationStore};
use tandem_engine::store::{CheckpointStore, LeaderFence};
use tandem_engine::testing::TempPostgres;
use tokio::sync::{OnceCell, oneshot, watch};

static SERVER: OnceCell<Result<TempPostgres, String>> = OnceCell::const_new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// A store over a fresh database of this test binary's private PostgreSQL.
pub async fn fresh_store() -> PostgresStore {
    let server = SERVER
        .get_or_init(|| async {
            TempPostgres::start()
                .await
                .map_err(|error| error.to_string())
        })
        .await
        .as_ref()
        .unwrap_or_else(|error| panic!("expected a private PostgreSQL: {error}"));
    let name = format!("dr_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
    let url = server
        .create_database(&name)
        .await
        .unwrap_or_else(|error| panic!("creating database {name}: {error}"));
    PostgresStore::connect(PostgresConfig {
        pool_size: 4,
        retry_for: Duration::from_secs(20),
        ..PostgresConfig::new(url)
    })
    .await
    .expect("the database accepts connections")
}

/// A standby store of region `region` following `active`.
pub async fn standby_store(region: &str, active: &str) -> PostgresStore {
    let store = fresh_store().await;
    store
        .init_region(region, RegionRole::Standby, active)
        .await
        .expect("a fresh store takes the region");
    store
}

/// An address where nothing listens.
pub fn closed_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}")
}

/// A region: a standalone replica over its own database, serving on loopback.
pub struct TestRegion {
    pub name: String,
    pub address: String,
    /// An unfenced handle to the region's database.
    pub store: PostgresStore,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    _state: tempfile::TempDir,
}

impl TestRegion {
    /// Region `name` over a fresh database recorded with `dr`'s initial role, serving.
    pub async fn start(name: &str, dr: DrConfig) -> TestRegion {
        let store = fresh_store().await;
        store
            .init_region(name, dr.role, &dr.active_region)
            .await
            .expect("a fresh store takes the region");
        let state = tempfile::tempdir().expect("a state dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let local = listener.local_addr().expect("an address");
        let address = format!("http://{local}");
        let fence = LeaderFence::new(0);
        let fenced = store.fenced(fence.clone());
        let mut config = ServiceConfig::new(name, local, state.path().to_path_buf());
        config.advertise = address.clone();
        config.kill_grace = Duration::from_millis(200);
        config.dr = Some(dr);
        let region = Region::new(
            config,
            RegionParts {
                store: Arc::new(fenced.clone()),
                fence,
                queues: TaskQueues::new(RemoteConfig::default()),
                election: None,
                replication: Some(Arc::new(fenced)),
            },
        );
        region.open().await.expect("the region opens");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            serve(region, listener, async move {
                let _ = stopped.await;
            })
            .await
            .expect("the region serves");
        });
        let client = Client::connect_lazy(
            ClientConfig::new(&address)
                .request_timeout(Duration::from_secs(20))
                .failover_timeout(Duration::from_secs(20)),
        )
        .expect("a valid address");
        TestRegion {
            name: name.to_string(),
            address,
            store,
            client,
            stop: Some(stop),
            _state: state,
        }
    }

    /// Registers a three-task workflow `chain-TAG` and runs it `runs` times to the end.
    pub async fn run_workflows(&self, runs: usize, tag: &str) {
        let source = format!(
            "name: chain-{tag}\ntasks:\n  a:\n    run: echo a\n  b:\n    needs: [a]\n    run: echo b\n  c:\n    needs: [b]\n    run: echo c\n"
        );
        let registered = self
            .client
            .register_workflow(source, format!("chain-{tag}.yaml"))
            .await
            .expect("the workflow registers");
        let mut ids = Vec::new();
        for _ in 0..runs {
            let started = self
                .client
                .start_run(StartRun::new(registered.name.clone()))
                .await
                .expect("the run starts");
            ids.push(started.run_id);
        }
        for id in ids {
            let run = self.client.wait_run(id).await.expect("the run ends");
            assert_eq!(run.state, tandem_api::RunState::Succeeded, "{run:?}");
        }
    }

    /// The latest position of its log.
    pub async fn latest(&self) -> u64 {
        self.store
            .latest_position()
            .await
            .expect("the latest position")
    }
}

impl Drop for TestRegion {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The DR topology of `regions`, and clients for them.
pub fn regions_of(regions: &[&TestRegion]) -> Regions {
    let text: String = regions
        .iter()
        .map(|region| {
            format!(
                "[regions.{}]\nendpoints = [\"{}\"]\n",
                region.name, region.address
            )
        })
        .collect();
    let topology = Topology::parse(&text, Path::new("test-topology.toml")).expect("a topology");
    Regions::new(
        topology,
        DrClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            leader_timeout: Duration::from_secs(10),
        },
    )
}

/// A replicator running in a task, stopped by [`Running::stop`].
pub struct Running {
    pub status: watch::Receiver<ReplicatorStatus>,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), ReplicatorError>>,
}

/// Starts a replicator of `store` with `config`.
pub fn start_replicator(store: PostgresStore, config: ReplicatorConfig) -> Running {
    let replicator = Replicator::new(Arc::new(store), config);
    let status = replicator.status();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(replicator.run(async move {
        let _ = stopped.await;
    }));
    Running {
        status,
        stop: Some(stop),
        task,
    }
}

/// The replicator of region `region` with short retry delays, pulling from `peers`.
pub fn fast(region: &str, peers: &[(&str, Vec<String>)]) -> ReplicatorConfig {
    let peers: BTreeMap<String, Vec<String>> = peers
        .iter()
        .map(|(name, endpoints)| (name.to_string(), endpoints.clone()))
        .collect();
    let mut config = ReplicatorConfig::new(region, peers);
    config.retry_initial = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(2);
    config
}

impl Running {
    /// Waits (at most `limit`) until the status satisfies `condition`; returns it.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        what: &str,
        condition: impl Fn(&ReplicatorStatus) -> bool,
    ) -> ReplicatorStatus {
        let waited = tokio::time::timeout(limit, self.status.wait_for(|status| condition(status)))
            .await
            .map(|status| status.map(|status| status.clone()));
        match waited {
            Ok(Ok(status)) => status,
            _ => panic!(
                "expected {what} within {limit:?}; status: {:#?}",
                *self.status.borrow()
            ),
        }
    }

    /// Stops it; its result, within 3 s.
    pub async fn stop(mut self) -> Result<(), ReplicatorError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .expect("the replicator stops within 3 s of the shutdown")
            .expect("the replicator's task does not panic")
    }
}

/// Waits until `standby`'s store applied `position`.
pub async fn wait_applied(standby: &PostgresStore, position: u64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let state = standby.region_state().await.expect("the region state");
        if state.applied_position >= position {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected position {position} applied within {limit:?}; state: {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `standby` holds exactly `active`'s log, position for position.
pub async fn assert_same_log(active: &PostgresStore, standby: &PostgresStore) {
    let source = active.read_log(0, 1_000_000).await.expect("the active log");
    let copy = standby
        .read_log(0, 1_000_000)
        .await
        .expect("the standby log");
    assert!(!source.is_empty());
    assert_eq!(source.len(), copy.len(), "as many checkpoints");
    for (expected, found) in source.iter().zip(&copy) {
        assert_eq!(
            expected, found,
            "checkpoint at position {}",
            expected.position
        );
    }
}

/// Waits until `active`'s log has not grown for a second (its runs ended) and `standby`
/// applied all of it (at most `limit`).
pub async fn wait_settled(active: &PostgresStore, standby: &PostgresStore, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let latest = active.latest_position().await.expect("the latest position");
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        wait_applied(standby, latest, left).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if active.latest_position().await.expect("the latest position") == latest {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected the active log to settle within {limit:?}"
        );
    }
}
