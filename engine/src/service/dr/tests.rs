//! In-process tests of the DR server side: two regions, each a PostgreSQL database on one
//! private server and a standalone region replica behind a real tonic server on loopback;
//! a test replicator plays `tandem replicate` over the real `Replicate` stream.
//!
//! This file holds the fixtures, the refusals of a standby region and the replication
//! stream; [`super::tests_sync`] the sync mode; [`super::tests_promotion`] promotion,
//! demotion, rejoining and the peer check; [`super::tests_election`] a region whose replicas
//! elect their leader through etcd.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tandem_api::proto::replication_service_client::ReplicationServiceClient;
use tandem_api::proto::worker_service_client::WorkerServiceClient;
use tandem_api::proto::workflow_service_client::WorkflowServiceClient;
use tandem_api::proto::{self, standby_message};
use tandem_api::{Client, ClientConfig, ClientError, StartRun};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::config::DrConfig;
use super::wire::batch_from_proto;
use crate::checkpoint::{Checkpoint, Event, LogPosition, now_millis};
use crate::executor::remote::{RemoteConfig, TaskQueues};
use crate::service::{Opened, Region, RegionParts, ServiceConfig, serve};
use crate::store::postgres::{PostgresConfig, PostgresStore};
use crate::store::replication::{RegionRole, RegionState, ReplicationStore};
use crate::store::{CheckpointStore, LeaderFence};
use crate::testing::TempPostgres;

/// The PostgreSQL server of this test binary's DR tests, or why it could not start.
static SERVER: OnceCell<Result<TempPostgres, String>> = OnceCell::const_new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

pub(super) async fn fresh_database() -> String {
    let server = SERVER
        .get_or_init(|| async {
            TempPostgres::start()
                .await
                .map_err(|error| error.to_string())
        })
        .await;
    let server = match server {
        Ok(server) => server,
        Err(error) => panic!("expected a private PostgreSQL for the DR tests: {error}"),
    };
    let name = format!("dr_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
    server
        .create_database(&name)
        .await
        .unwrap_or_else(|error| panic!("creating database {name}: {error}"))
}

pub(super) async fn connect(url: &str) -> PostgresStore {
    PostgresStore::connect(PostgresConfig {
        pool_size: 6,
        retry_for: Duration::from_secs(20),
        ..PostgresConfig::new(url)
    })
    .await
    .expect("the test database accepts connections")
}

/// One region: its store and a standalone replica serving on loopback.
pub(super) struct TestRegion {
    pub(super) region: Region,
    /// `http://127.0.0.1:PORT`.
    pub(super) address: String,
    /// An unfenced handle to the region's database (what an operator's tool would use).
    pub(super) store: PostgresStore,
    pub(super) opened: Opened,
    shutdown: Option<oneshot::Sender<()>>,
    _state: tempfile::TempDir,
}

impl TestRegion {
    /// A region `name` over a fresh database, recorded with `dr`'s initial role, serving.
    pub(super) async fn start(name: &str, dr: DrConfig) -> TestRegion {
        let url = fresh_database().await;
        let store = connect(&url).await;
        store
            .init_region(name, dr.role, &dr.active_region)
            .await
            .expect("the fresh store takes the region's name and role");
        TestRegion::serve(name, dr, store).await
    }

    /// A replica of region `name` over `store` (already initialised), serving.
    pub(super) async fn serve(name: &str, dr: DrConfig, store: PostgresStore) -> TestRegion {
        TestRegion::serve_elected(name, dr, store, None).await
    }

    /// A replica of region `name` over `store` (already initialised) taking part in
    /// `election` (or standalone), serving.
    pub(super) async fn serve_elected(
        name: &str,
        dr: DrConfig,
        store: PostgresStore,
        election: Option<crate::leadership::Election>,
    ) -> TestRegion {
        let state = tempfile::tempdir().expect("a state dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = format!("http://{}", listener.local_addr().expect("an address"));
        let fence = LeaderFence::new(0);
        let fenced = store.fenced(fence.clone());
        let mut config = ServiceConfig::new(
            name,
            listener.local_addr().expect("an address"),
            state.path().to_path_buf(),
        );
        config.advertise = address.clone();
        config.kill_grace = Duration::from_millis(200);
        config.dr = Some(dr);
        let region = Region::new(
            config,
            RegionParts {
                store: Arc::new(fenced.clone()),
                fence,
                queues: TaskQueues::new(RemoteConfig::default()),
                election,
                replication: Some(Arc::new(fenced)),
            },
        );
        let opened = region.open().await.expect("the region opens");
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = region.clone();
        tokio::spawn(async move {
            serve(serving, listener, async move {
                let _ = stop.await;
            })
            .await
            .expect("the region serves");
        });
        TestRegion {
            region,
            address,
            store,
            opened,
            shutdown: Some(shutdown),
            _state: state,
        }
    }

    /// An SDK client of this region only.
    pub(super) fn client(&self) -> Client {
        Client::connect_lazy(
            ClientConfig::new(&self.address)
                .request_timeout(Duration::from_secs(10))
                .failover_timeout(Duration::from_secs(10)),
        )
        .expect("a valid address")
    }

    /// The region's state in its store.
    pub(super) async fn state(&self) -> RegionState {
        self.store.region_state().await.expect("the region state")
    }

    /// The region is lost: its replica stops leading (every driver stops, its shell
    /// attempts are killed) and its server stops.
    pub(super) async fn lose(&mut self) {
        self.region.close().await;
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for TestRegion {
    fn drop(&mut self) {
        if let Some(dr) = self.region.dr() {
            dr.stop();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// `tandem replicate` as a test drives it: one `Replicate` stream.
pub(super) struct TestReplicator {
    messages: mpsc::Sender<proto::StandbyMessage>,
    batches: tonic::Streaming<proto::LogBatch>,
}

impl TestReplicator {
    /// Opens a stream from the region at `address` for standby `standby` resuming after
    /// `after` (positions) and `after_registration`, with region epoch `epoch`.
    pub(super) async fn connect(
        address: &str,
        standby: &str,
        after: LogPosition,
        after_registration: u64,
        epoch: u64,
    ) -> Result<TestReplicator, tonic::Status> {
        let mut client = ReplicationServiceClient::connect(address.to_string())
            .await
            .expect("the region listens")
            .max_decoding_message_size(64 * 1024 * 1024);
        let (messages, outbound) = mpsc::channel(16);
        messages
            .send(proto::StandbyMessage {
                message: Some(standby_message::Message::Start(proto::ReplicateStart {
                    standby_region: standby.to_string(),
                    after_position: after,
                    after_registration,
                    region_epoch: epoch,
                    max_batch: 0,
                })),
            })
            .await
            .expect("the request stream is open");
        let batches = client
            .replicate(ReceiverStream::new(outbound))
            .await?
            .into_inner();
        Ok(TestReplicator { messages, batches })
    }

    /// A stream for `standby`'s store, resuming where it applied.
    pub(super) async fn follow(address: &str, standby: &PostgresStore) -> TestReplicator {
        let state = standby.region_state().await.expect("the standby's state");
        TestReplicator::connect(
            address,
            &state.region,
            state.applied_position,
            state.applied_registration,
            state.region_epoch,
        )
        .await
        .expect("the active region ships its log")
    }

    /// The next batch, within 10 s.
    pub(super) async fn next(&mut self) -> proto::LogBatch {
        tokio::time::timeout(Duration::from_secs(10), self.batches.message())
            .await
            .expect("a batch within 10 s")
            .expect("the stream carries batches")
            .expect("the stream is open")
    }

    /// Acknowledges `position`.
    pub(super) async fn ack(&self, position: LogPosition) {
        self.messages
            .send(proto::StandbyMessage {
                message: Some(standby_message::Message::Ack(proto::ReplicateAck {
                    applied_position: position,
                })),
            })
            .await
            .expect("the request stream is open");
    }

    /// Applies the next batch to `standby` and acknowledges it; returns the applied
    /// position and the batch's checkpoint count.
    pub(super) async fn apply_next(&mut self, standby: &PostgresStore) -> (LogPosition, usize) {
        let batch = self.next().await;
        let count = batch.checkpoints.len();
        let batch = batch_from_proto(batch).expect("a batch that decodes");
        let state = standby
            .apply_replicated(&batch, now_millis())
            .await
            .expect("the standby applies the batch");
        self.ack(state.applied_position).await;
        (state.applied_position, count)
    }

    /// Applies batches to `standby` until it holds position `target`.
    pub(super) async fn apply_until(&mut self, standby: &PostgresStore, target: LogPosition) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (applied, _) = self.apply_next(standby).await;
            if applied >= target {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the standby reached position {target} within 30 s (it holds {applied})"
            );
        }
    }
}

/// Every checkpoint of `store`'s log.
pub(super) async fn whole_log(store: &dyn CheckpointStore) -> Vec<Checkpoint> {
    store.read_log(0, 1_000_000).await.expect("the log reads")
}

/// Waits (up to `limit`) until `check` holds, polling every 50 ms.
pub(super) async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {what} within {} ms",
            limit.as_millis()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A workflow of one quick shell task.
pub(super) const QUICK: &str = "name: quick\ntasks:\n  a: { run: \"true\" }\n";

/// The active region eu-west and its standby us-east (its replica serving too).
pub(super) async fn two_regions(active: DrConfig) -> (TestRegion, TestRegion) {
    let eu = TestRegion::start("eu-west", active).await;
    let us = TestRegion::start("us-east", DrConfig::standby("eu-west")).await;
    (eu, us)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_region_refuses_to_start_runs_and_names_the_active_region() {
    let (eu, us) = two_regions(DrConfig::active("eu-west")).await;
    assert_eq!(
        us.opened,
        Opened::Standby {
            role: RegionRole::Standby
        }
    );
    assert!(matches!(eu.opened, Opened::Standalone { resumed: 0 }));
    assert!(matches!(
        us.region.role(),
        crate::service::ReplicaRole::Standby { ref active_region, .. } if active_region == "eu-west"
    ));

    // The raw reply: FAILED_PRECONDITION, the stable code and the active region's name.
    let mut workflows = WorkflowServiceClient::connect(us.address.clone())
        .await
        .unwrap();
    let status = workflows
        .start_run(proto::StartRunRequest {
            workflow: "quick".into(),
            ..Default::default()
        })
        .await
        .expect_err("a standby region starts no run");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.metadata().get("tandem-error-code").unwrap(),
        "region_not_active"
    );
    assert_eq!(
        status.metadata().get("tandem-active-region").unwrap(),
        "eu-west"
    );
    assert!(status.message().contains("eu-west"), "{}", status.message());
    let mut workers = WorkerServiceClient::connect(us.address.clone())
        .await
        .unwrap();
    let status = workers
        .poll_tasks(proto::PollTasksRequest {
            queue: "q".into(),
            wait_ms: 10,
            ..Default::default()
        })
        .await
        .expect_err("a standby region serves no worker");
    assert_eq!(
        status.metadata().get("tandem-error-code").unwrap(),
        "region_not_active"
    );

    // The SDK names the active region.
    let refused = us.client().register_workflow(QUICK, "quick.yaml").await;
    match refused {
        Err(error @ ClientError::RegionNotActive { .. }) => {
            assert_eq!(error.active_region(), Some("eu-west"), "{error}");
        }
        other => panic!("expected region_not_active, found {other:?}"),
    }
    // Reads are served.
    let page = us.client().list_runs(Default::default()).await.unwrap();
    assert!(page.runs.is_empty());

    // A client given both regions goes on to the active one.
    let both = Client::connect_lazy(ClientConfig::with_endpoints([
        us.address.clone(),
        eu.address.clone(),
    ]))
    .unwrap();
    both.register_workflow(QUICK, "quick.yaml").await.unwrap();
    let started = both.start_run(StartRun::new("quick")).await.unwrap();
    let finished = eu.client().wait_run(&started.run_id).await.unwrap();
    assert!(finished.state.is_final());
    assert_eq!(both.endpoint(), eu.address, "the active region answered");

    // The DR status of each region.
    let status = us.client().region_status().await.unwrap();
    assert_eq!(status.role, tandem_api::RegionRole::Standby);
    assert_eq!(status.active_region, "eu-west");
    let status = eu.client().region_status().await.unwrap();
    assert_eq!(status.role, tandem_api::RegionRole::Active);
    assert_eq!(status.replication_mode, "async");
    assert!(status.latest_position >= 4, "{status:?}");
    assert_eq!(status.applied_position, status.latest_position);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicate_ships_the_log_as_the_active_region_writes_it() {
    let (eu, us) = two_regions(DrConfig::active("eu-west")).await;
    let mut replicator = TestReplicator::follow(&eu.address, &us.store).await;
    // Nothing written yet: a heartbeat carries the latest position.
    let heartbeat = replicator.next().await;
    assert!(heartbeat.checkpoints.is_empty());
    assert_eq!(heartbeat.source_region, "eu-west");
    assert_eq!(heartbeat.latest_position, 0);

    let client = eu.client();
    client
        .register_workflow(
            "name: chain\ntasks:\n  a: { run: \"true\" }\n  b: { needs: [a], run: \"true\" }\n",
            "chain.yaml",
        )
        .await
        .unwrap();
    let mut runs = Vec::new();
    for key in ["k1", "k2", "k3"] {
        runs.push(
            client
                .start_run(StartRun::new("chain").idempotency_key(key))
                .await
                .unwrap()
                .run_id,
        );
    }
    for run in &runs {
        client.wait_run(run).await.unwrap();
    }
    let latest = eu.store.latest_position().await.unwrap();
    replicator.apply_until(&us.store, latest).await;

    // The standby's log is the active one's, position for position.
    let active_log = whole_log(&eu.store).await;
    let standby_log = whole_log(&us.store).await;
    assert_eq!(active_log.len() as u64, latest);
    assert_eq!(standby_log, active_log);
    // With the run table, the workflow and the idempotency keys beside it.
    let summary = us
        .store
        .run_summary(runs[0].parse().unwrap())
        .await
        .unwrap();
    assert!(summary.status.is_terminal());
    us.store.get_workflow("chain", None).await.unwrap();

    // The region's status names the standby and its acknowledgement.
    let status = eu.client().region_status().await.unwrap();
    assert_eq!(status.standby_region.as_deref(), Some("us-east"));
    assert_eq!(status.standby_acked_position, latest);
    let standby = us.client().region_status().await.unwrap();
    assert_eq!(standby.applied_position, latest);
    assert_eq!(standby.lag_positions(), 0);

    // Idle again: heartbeats keep coming, at least one a second.
    let started = tokio::time::Instant::now();
    let heartbeat = replicator.next().await;
    assert!(heartbeat.checkpoints.is_empty());
    assert!(started.elapsed() <= Duration::from_millis(1100));
    assert_eq!(heartbeat.latest_position, latest);
}

#[tokio::test(flavor = "multi_thread")]
async fn replicate_refuses_a_standby_with_a_higher_region_epoch_or_a_longer_log() {
    let (eu, _us) = two_regions(DrConfig::active("eu-west")).await;
    let refused = TestReplicator::connect(&eu.address, "us-east", 0, 0, 3).await;
    let status = refused.err().expect("a standby promoted later is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        status.metadata().get("tandem-error-code").unwrap(),
        "replication_epoch"
    );
    assert!(
        status.message().contains("region epoch 3"),
        "{}",
        status.message()
    );

    let refused = TestReplicator::connect(&eu.address, "us-east", 50, 0, 0).await;
    let status = refused
        .err()
        .expect("a standby ahead of the log is refused");
    assert_eq!(
        status.metadata().get("tandem-error-code").unwrap(),
        "replication_gap"
    );
    let refused = TestReplicator::connect(&eu.address, "eu-west", 0, 0, 0).await;
    assert_eq!(
        refused
            .err()
            .expect("a region does not follow itself")
            .code(),
        tonic::Code::InvalidArgument
    );
}

/// The positions of `log` after `after` whose event is an attempt start of task `task_id`
/// of the workflow in `source`.
pub(super) fn starts_of(
    log: &[Checkpoint],
    after: LogPosition,
    source: &str,
    task_id: &str,
) -> Vec<LogPosition> {
    let spec = tandem_dsl::compile("w.yaml", source).expect("a valid workflow");
    let task = spec
        .tasks
        .iter()
        .position(|task| task.id == task_id)
        .expect("the task exists");
    log.iter()
        .filter(|checkpoint| checkpoint.position > after)
        .filter(|checkpoint| {
            matches!(&checkpoint.event, Event::AttemptStarted { task: index, .. } if *index as usize == task)
        })
        .map(|checkpoint| checkpoint.position)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_region_without_dr_refuses_dr_calls_and_serves_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("tandem.db")).unwrap();
    let fence = LeaderFence::new(0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let config = ServiceConfig::new("solo", listener.local_addr().unwrap(), dir.path().into());
    let region = Region::new(
        config,
        RegionParts {
            store: Arc::new(store.fenced(fence.clone())),
            fence,
            queues: TaskQueues::new(RemoteConfig::default()),
            election: None,
            replication: None,
        },
    );
    assert_eq!(
        region.open().await.unwrap(),
        Opened::Standalone { resumed: 0 }
    );
    assert_eq!(region.region_state(), None);
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(region, listener, async move {
        let _ = stopped.await;
    }));
    let client = Client::connect_lazy(ClientConfig::new(&address)).unwrap();
    let error = client.region_status().await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition, "{error:?}");
    assert_eq!(error.error_code(), Some("dr_not_configured"));
    let error = client.promote(1).await.unwrap_err();
    assert_eq!(error.error_code(), Some("dr_not_configured"));
    let refused = TestReplicator::connect(&address, "us-east", 0, 0, 0).await;
    assert_eq!(
        refused
            .err()
            .unwrap()
            .metadata()
            .get("tandem-error-code")
            .unwrap(),
        "dr_not_configured"
    );
    client.register_workflow(QUICK, "quick.yaml").await.unwrap();
    let run = client.start_run(StartRun::new("quick")).await.unwrap();
    assert!(client.wait_run(&run.run_id).await.unwrap().state.is_final());
}
