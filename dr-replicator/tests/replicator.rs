//! The replicator against real PostgreSQL (a private server, one database per region): the
//! active region is a real region replica serving `ReplicationService` on loopback; fake
//! `ReplicationService` servers play a follower that names its leader, a leader that sends a
//! bad batch, and a leader that goes silent.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestRegion, assert_same_log, closed_port, fast, standby_store, start_replicator};
use futures::Stream;
use tandem_api::proto::replication_service_server::{ReplicationService, ReplicationServiceServer};
use tandem_api::proto::{self, standby_message};
use tandem_dr::Phase;
use tandem_engine::service::DrConfig;
use tandem_engine::store::CheckpointStore;
use tandem_engine::store::replication::{RegionRole, ReplicationStore};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_gets_the_active_log_position_for_position_and_idles_once_promoted() {
    let active = TestRegion::start("eu-west", DrConfig::active("eu-west")).await;
    active.run_workflows(3, "before").await;
    let standby = standby_store("us-east", "eu-west").await;
    // An unreachable replica listed first is skipped.
    let mut running = start_replicator(
        standby.clone(),
        fast(
            "us-east",
            &[("eu-west", vec![closed_port(), active.address.clone()])],
        ),
    );
    let latest = active.store.latest_position().await.unwrap();
    let status = running
        .wait_for(Duration::from_secs(20), "the log applied", |status| {
            status.applied_position >= latest
        })
        .await;
    assert_eq!(status.phase, Phase::Streaming);
    assert_eq!(
        status.connected_source.as_deref(),
        Some(active.address.as_str())
    );
    assert_eq!(status.role, Some(RegionRole::Standby));
    assert_eq!(status.active_region.as_deref(), Some("eu-west"));
    assert_same_log(&active.store, &standby).await;

    // New runs while the stream is open arrive as they are written.
    active.run_workflows(4, "during").await;
    let latest = active.store.latest_position().await.unwrap();
    let status = running
        .wait_for(
            Duration::from_secs(20),
            "the new checkpoints applied",
            |status| status.applied_position >= latest,
        )
        .await;
    assert_same_log(&active.store, &standby).await;
    assert_eq!(
        status.checkpoints_applied, latest,
        "each position applied once"
    );
    assert_eq!(
        status
            .lag(tandem_engine::checkpoint::now_millis())
            .unwrap()
            .positions,
        0
    );
    let workflows = standby.list_workflows().await.unwrap();
    let names: Vec<&str> = workflows.iter().map(|w| w.name.as_str()).collect();
    assert!(
        names.contains(&"chain-before") && names.contains(&"chain-during"),
        "{names:?}"
    );

    // Promoted, the region has nothing to pull: the replicator idles.
    let state = standby.region_state().await.unwrap();
    standby
        .promote(state.region_epoch + 1)
        .await
        .expect("the standby promotes");
    let status = running
        .wait_for(
            Duration::from_secs(5),
            "idle after the promotion",
            |status| status.phase == Phase::Idle,
        )
        .await;
    assert_eq!(status.role, Some(RegionRole::Active));
    assert_eq!(status.connected_source, None);
    running.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_another_region_stops_the_replicator() {
    let store = standby_store("ap-south", "eu-west").await;
    let running = start_replicator(store, fast("us-east", &[]));
    let result = tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("it stops at once")
        .expect("no panic");
    let error = result.expect_err("a store of another region");
    let text = error.to_string();
    assert!(
        text.contains("ap-south") && text.contains("us-east"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_of_a_region_without_peers_says_so_and_retries() {
    let store = standby_store("us-east", "eu-west").await;
    let mut running =
        start_replicator(store, fast("us-east", &[("ap-south", vec![closed_port()])]));
    let status = running
        .wait_for(
            Duration::from_secs(10),
            "an error about the peers",
            |status| status.last_error.is_some(),
        )
        .await;
    let error = status.last_error.unwrap();
    assert!(
        error.contains("[dr] peers") && error.contains("eu-west"),
        "{error}"
    );
    assert!(error.contains("ap-south"), "{error}");
    assert_eq!(status.phase, Phase::Retrying);
    running.stop().await.expect("a clean stop");
}

/// What a fake `ReplicationService` does with a stream.
#[derive(Clone)]
enum Behaviour {
    /// Refuses as a follower naming `leader`.
    Follower { leader: String },
    /// Sends these batches, then keeps the stream open without sending anything.
    Send(Vec<proto::LogBatch>),
}

#[derive(Clone)]
struct Fake {
    behaviour: Behaviour,
    /// Every `ReplicateStart` received.
    starts: Arc<Mutex<Vec<proto::ReplicateStart>>>,
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<proto::LogBatch, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl ReplicationService for Fake {
    type ReplicateStream = BatchStream;

    async fn replicate(
        &self,
        request: tonic::Request<tonic::Streaming<proto::StandbyMessage>>,
    ) -> Result<tonic::Response<BatchStream>, tonic::Status> {
        if let Behaviour::Follower { leader } = &self.behaviour {
            let mut status = tonic::Status::unavailable("not the leader of eu-west");
            status
                .metadata_mut()
                .insert("tandem-error-code", "not_leader".parse().unwrap());
            status
                .metadata_mut()
                .insert("tandem-leader-address", leader.parse().unwrap());
            return Err(status);
        }
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| tonic::Status::invalid_argument("no start"))?;
        match first.message {
            Some(standby_message::Message::Start(start)) => self.starts.lock().unwrap().push(start),
            other => return Err(tonic::Status::invalid_argument(format!("{other:?}"))),
        }
        let (sender, receiver) = mpsc::channel(16);
        if let Behaviour::Send(batches) = &self.behaviour {
            for batch in batches {
                sender.send(Ok(batch.clone())).await.unwrap();
            }
        }
        // Keep the stream open until the standby hangs up.
        tokio::spawn(async move {
            while let Ok(Some(_)) = inbound.message().await {}
            drop(sender);
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            receiver,
        ))))
    }
}

async fn start_fake(behaviour: Behaviour) -> (String, Fake) {
    let fake = Fake {
        behaviour,
        starts: Arc::new(Mutex::new(Vec::new())),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let service = ReplicationServiceServer::new(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (address, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_follower_to_its_leader_and_refuses_a_bad_batch() {
    let bad = proto::LogBatch {
        source_region: "eu-west".into(),
        region_epoch: 0,
        latest_position: 1,
        sent_at_ms: 1,
        checkpoints: vec![proto::ReplicatedCheckpoint {
            position: 1,
            epoch: 1,
            run_id: "0193a5c2-7d1e-7c3a-9f00-2b1c4d5e6f70".into(),
            recorded_at_ms: 1,
            event_json: "{\"type\":\"no_such_event\"}".into(),
            origin: None,
        }],
        workflows: vec![],
    };
    let (leader, fake_leader) = start_fake(Behaviour::Send(vec![bad])).await;
    let (follower, _) = start_fake(Behaviour::Follower {
        leader: leader.clone(),
    })
    .await;
    let store = standby_store("us-east", "eu-west").await;
    // Only the follower is listed: the leader is found through its answer.
    let mut running = start_replicator(
        store.clone(),
        fast("us-east", &[("eu-west", vec![follower])]),
    );
    let status = running
        .wait_for(Duration::from_secs(10), "the bad batch refused", |status| {
            status.last_error.is_some()
        })
        .await;
    let error = status.last_error.unwrap();
    assert!(error.contains("position 1"), "{error}");
    assert!(error.contains("eu-west"), "{error}");
    assert!(
        error.contains(&leader),
        "names the replica that sent it: {error}"
    );
    {
        let starts = fake_leader.starts.lock().unwrap();
        let start = starts.first().expect("the leader got a start");
        assert_eq!(start.standby_region, "us-east");
        assert_eq!(start.after_position, 0);
        assert_eq!(start.after_registration, 0);
    }
    assert_eq!(
        store.region_state().await.unwrap().applied_position,
        0,
        "nothing applied"
    );
    // It keeps trying (with backoff), from the leader it learned.
    tokio::time::timeout(Duration::from_secs(10), async {
        while fake_leader.starts.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a second try");
    running.stop().await.expect("a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_opened_again() {
    let (silent, fake) = start_fake(Behaviour::Send(vec![])).await;
    let store = standby_store("us-east", "eu-west").await;
    let mut config = fast("us-east", &[("eu-west", vec![silent.clone()])]);
    config.stall_timeout = Duration::from_millis(300);
    let mut running = start_replicator(store, config);
    let status = running
        .wait_for(Duration::from_secs(10), "the stall noticed", |status| {
            status
                .last_error
                .as_deref()
                .is_some_and(|error| error.contains("no batch"))
        })
        .await;
    assert!(status.last_error.unwrap().contains(&silent));
    running
        .wait_for(Duration::from_secs(10), "a second stream", |status| {
            status.connections >= 2
        })
        .await;
    assert!(fake.starts.lock().unwrap().len() >= 2);
    running.stop().await.expect("a clean stop");
}
