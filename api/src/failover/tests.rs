//! The client and the worker against a fake region of real tonic servers (see
//! `crate::fake_region`): they follow `not_leader` to the leader, skip unreachable servers,
//! wait for a starting leader, and never send a start twice when it may have been acted on.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::fake_region::FakeRegion;
use crate::proto::RunState as ProtoState;
use crate::{
    Client, ClientConfig, ClientError, MemberRole, Outputs, RunState, StartRun, TaskContext, Worker,
};

/// An address where nothing listens: bind then drop a listener.
fn closed_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    format!("http://127.0.0.1:{port}")
}

fn config(addresses: &[String]) -> ClientConfig {
    ClientConfig::with_endpoints(addresses.iter().cloned())
        .failover_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn the_client_follows_not_leader_to_the_named_leader() {
    let region = FakeRegion::start(2, Some(1)).await;
    let client = Client::connect_with(config(&[region.address(0), region.address(1)]))
        .await
        .expect("replica 0 is reachable");
    let started = client
        .start_run(StartRun::new("fake"))
        .await
        .expect("the leader starts it");
    assert_eq!(started.run_id, "run-on-1");
    assert_eq!(
        region.calls_of("StartRun"),
        [(0, "not_leader"), (1, "served")]
    );
    assert_eq!(
        client.endpoint(),
        region.address(1),
        "the leader is remembered"
    );

    // The next leader calls go straight to the leader.
    let registered = client
        .register_workflow("name: fake", "fake.yaml")
        .await
        .expect("registered");
    assert_eq!(registered.version, "registered-on-1");
    assert_eq!(
        client.cancel_run("run-on-1", "test").await,
        Ok(RunState::Cancelled)
    );
    assert_eq!(region.calls_of("RegisterWorkflow"), [(1, "served")]);
    assert_eq!(region.calls_of("CancelRun"), [(1, "served")]);
}

#[tokio::test]
async fn a_leader_missing_from_the_list_is_learned() {
    let region = FakeRegion::start(2, Some(1)).await;
    let client = Client::connect_lazy(config(&[region.address(0)])).expect("a valid address list");
    let started = client
        .start_run(StartRun::new("fake"))
        .await
        .expect("the leader starts it");
    assert_eq!(started.run_id, "run-on-1");
    assert_eq!(client.endpoints(), [region.address(0), region.address(1)]);
}

#[tokio::test]
async fn reads_are_answered_by_any_replica() {
    let region = FakeRegion::start(2, Some(1)).await;
    let client = Client::connect_with(config(&[region.address(0), region.address(1)]))
        .await
        .expect("reachable");
    let run = client.get_run("r1").await.expect("a follower reads");
    assert_eq!(run.version, "served-by-0");
    let status = client.cluster_status().await.expect("a follower answers");
    assert_eq!(status.role, MemberRole::Follower);
    assert_eq!(status.answered_by, "member-0");
    assert_eq!(status.endpoint, region.address(0));
    assert_eq!(status.members.len(), 2);
    assert!(status.members[1].is_leader);
    let leader = status.leader.expect("a leader");
    assert_eq!(
        (leader.address.as_str(), leader.epoch),
        (region.address(1).as_str(), 7)
    );
    assert_eq!(status.lease_ttl, Some(Duration::from_secs(5)));
    assert_eq!(region.calls_of("GetRun"), [(0, "served")]);
}

#[tokio::test]
async fn an_unreachable_server_is_skipped() {
    let region = FakeRegion::start(1, Some(0)).await;
    let dead = closed_address();
    let client = Client::connect_lazy(config(&[dead.clone(), region.address(0)])).expect("valid");
    // Connecting failed, so even a start without an idempotency key goes to the next server.
    let started = client
        .start_run(StartRun::new("fake"))
        .await
        .expect("the live replica starts it");
    assert_eq!(started.run_id, "run-on-0");
    assert_eq!(
        client.get_run("r").await.expect("read").version,
        "served-by-0"
    );
}

#[tokio::test]
async fn every_server_unreachable_fails_at_once() {
    let (first, second) = (closed_address(), closed_address());
    let client = Client::connect_lazy(config(&[first.clone(), second.clone()])).expect("valid");
    let begun = Instant::now();
    let error = client.get_run("r").await.expect_err("nothing listens");
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("none of the 2 servers") && text.contains(&first) && text.contains(&second),
        "{text}"
    );
    let error = Client::connect_with(config(&[first.clone(), second.clone()]))
        .await
        .expect_err("nothing listens");
    let text = error.to_string();
    assert!(text.contains(&first) && text.contains(&second), "{text}");
}

#[tokio::test]
async fn a_replica_of_a_region_that_is_not_active_is_skipped_like_an_unreachable_one() {
    // Replica 0 leads a standby region; replica 1 leads the active one.
    let region = FakeRegion::start(2, Some(1)).await;
    region.region.not_active.lock().unwrap().push(0);
    let client =
        Client::connect_lazy(config(&[region.address(0), region.address(1)])).expect("valid");
    // Even a start without an idempotency key: the refusal did nothing.
    let started = client
        .start_run(StartRun::new("fake"))
        .await
        .expect("the active region starts it");
    assert_eq!(started.run_id, "run-on-1");
    assert_eq!(
        region.calls_of("StartRun"),
        [(0, "region_not_active"), (1, "served")]
    );
    assert_eq!(client.endpoint(), region.address(1), "remembered");
    client
        .register_workflow("name: fake", "fake.yaml")
        .await
        .expect("registered");
    assert_eq!(region.calls_of("RegisterWorkflow"), [(1, "served")]);
}

#[tokio::test]
async fn every_replica_refusing_as_not_active_fails_at_once_naming_the_active_region() {
    let region = FakeRegion::start(2, Some(0)).await;
    region.region.not_active.lock().unwrap().extend([0, 1]);
    let dead = closed_address();
    let client = Client::connect_lazy(config(&[
        region.address(0),
        dead.clone(),
        region.address(1),
    ]))
    .expect("valid");
    let begun = Instant::now();
    let error = client
        .start_run(StartRun::new("fake"))
        .await
        .expect_err("no active region among the servers");
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "{:?}",
        begun.elapsed()
    );
    assert!(
        matches!(error, ClientError::RegionNotActive { .. }),
        "{error:?}"
    );
    assert_eq!(error.active_region(), Some("eu-west"));
    assert!(
        error.to_string().contains("none of the 3 servers given"),
        "{error}"
    );
    // The same when the round ends on the unreachable server.
    let client =
        Client::connect_lazy(config(&[region.address(0), region.address(1), dead])).expect("valid");
    let begun = Instant::now();
    let error = client
        .register_workflow("name: fake", "fake.yaml")
        .await
        .expect_err("no active region among the servers");
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "{:?}",
        begun.elapsed()
    );
    assert_eq!(error.active_region(), Some("eu-west"), "{error:?}");
}

#[tokio::test]
async fn a_starting_leader_is_asked_again() {
    let region = FakeRegion::start(2, Some(1)).await;
    region
        .region
        .starting
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let client =
        Client::connect_lazy(config(&[region.address(0), region.address(1)])).expect("valid");
    let started = client
        .start_run(StartRun::new("fake"))
        .await
        .expect("started once the leader is ready");
    assert_eq!(started.run_id, "run-on-1");
    assert_eq!(
        region.calls_of("StartRun"),
        [
            (0, "not_leader"),
            (1, "leader_starting"),
            (1, "leader_starting"),
            (1, "leader_starting"),
            (1, "served"),
        ]
    );
}

#[tokio::test]
async fn no_leader_within_the_failover_timeout_is_an_error() {
    let region = FakeRegion::start(2, None).await;
    let client = Client::connect_lazy(
        config(&[region.address(0), region.address(1)])
            .failover_timeout(Duration::from_millis(500)),
    )
    .expect("valid");
    let begun = Instant::now();
    let error = client
        .start_run(StartRun::new("fake"))
        .await
        .expect_err("nobody leads");
    let elapsed = begun.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(
        matches!(error, ClientError::NotLeader { leader: None, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("gave up looking for the leader"),
        "{error}"
    );
    let refusals = region.calls_of("StartRun");
    assert!(refusals.len() >= 4, "several rounds: {refusals:?}");
    assert!(refusals.iter().any(|(replica, _)| *replica == 0));
    assert!(refusals.iter().any(|(replica, _)| *replica == 1));
}

#[tokio::test]
async fn a_start_whose_reply_was_lost_is_resent_only_with_an_idempotency_key() {
    let region = FakeRegion::start(2, Some(0)).await;
    let client = Client::connect_lazy(
        config(&[region.address(0), region.address(1)]).request_timeout(Duration::from_millis(300)),
    )
    .expect("valid");
    let hang = || {
        region
            .region
            .hang_next_start
            .store(true, std::sync::atomic::Ordering::SeqCst)
    };

    hang();
    let error = client
        .start_run(StartRun::new("fake"))
        .await
        .expect_err("the reply was lost and the start has no key");
    assert_eq!(error.code(), tonic::Code::DeadlineExceeded, "{error:?}");
    assert!(error.to_string().contains("idempotency key"), "{error}");
    assert_eq!(region.calls_of("StartRun"), [(0, "served")], "sent once");

    hang();
    let started = client
        .start_run(StartRun::new("fake").idempotency_key("k1"))
        .await
        .expect("sent again: the key makes it safe");
    assert_eq!(
        (started.run_id.as_str(), started.version.as_str()),
        ("run-on-0", "k1")
    );
    // The server that timed out was left for the next one, which named the leader again.
    assert_eq!(
        region.calls_of("StartRun")[1..],
        [(0, "served"), (1, "not_leader"), (0, "served")]
    );
}

#[tokio::test]
async fn a_watch_is_opened_again_on_another_replica() {
    let region = FakeRegion::start(2, Some(0)).await;
    region
        .region
        .watch_plans
        .lock()
        .expect("unpoisoned")
        .extend([
            // Replica 0 goes away after two updates; replica 1 starts from the current state.
            (0, vec![ProtoState::Running, ProtoState::Running]),
            (1, vec![ProtoState::Running, ProtoState::Succeeded]),
        ]);
    let client =
        Client::connect_lazy(config(&[region.address(0), region.address(1)])).expect("valid");
    let updates: Vec<_> = client.watch_run("run-1").collect().await;
    let states: Vec<_> = updates
        .iter()
        .map(|update| update.as_ref().map(|run| (run.state, run.version.clone())))
        .collect();
    assert_eq!(
        states,
        [
            Ok((RunState::Running, "served-by-0".to_string())),
            // A different replica's state is new (its version field tells them apart here).
            Ok((RunState::Running, "served-by-1".to_string())),
            Ok((RunState::Succeeded, "served-by-1".to_string())),
        ]
    );
    assert_eq!(region.calls_of("WatchRun"), [(0, "served"), (1, "served")]);
}

#[tokio::test]
async fn a_watch_that_cannot_be_reopened_ends_with_an_error() {
    let region = FakeRegion::start(1, Some(0)).await;
    region
        .region
        .watch_plans
        .lock()
        .expect("unpoisoned")
        .insert(0, vec![ProtoState::Running]);
    let client = Client::connect_lazy(
        config(&[region.address(0)]).failover_timeout(Duration::from_millis(300)),
    )
    .expect("valid");
    let error = client.wait_run("run-1").await.expect_err("never finishes");
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    assert!(
        error.to_string().contains("ended before the run finished"),
        "{error}"
    );
    assert!(
        region.calls_of("WatchRun").len() >= 2,
        "opened again at least once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_follows_the_leader_and_its_attempt_survives_a_failover() {
    let region = FakeRegion::start(2, Some(1)).await;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let cancelled = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = cancelled.clone();
    let worker = Worker::builder(config(&[region.address(0), region.address(1)]), "q")
        .handler("load", move |task: TaskContext| {
            let seen = seen.clone();
            async move {
                // Outlives the failover below by a little; heartbeats go on meanwhile.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                *seen.lock().expect("unpoisoned") = task.cancel_reason();
                Ok(Outputs::new())
            }
        })
        .poll_wait(Duration::from_millis(200))
        .build()
        .expect("valid");
    let running = tokio::spawn(worker.run_until(async move {
        let _ = done_rx.await;
    }));
    // Wait until the attempt is leased, then take the leader away for longer than the
    // lease's heartbeat timeout (600 ms) and bring it back on the other replica.
    let begun = Instant::now();
    while region.calls_of("Heartbeat").is_empty() {
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "{:?}",
            region.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    region.set_leader(None);
    tokio::time::sleep(Duration::from_millis(700)).await;
    region.set_leader(Some(0));
    while region
        .region
        .completed
        .lock()
        .expect("unpoisoned")
        .is_empty()
    {
        assert!(
            begun.elapsed() < Duration::from_secs(15),
            "{:?}",
            region.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(done) = done_tx.lock().expect("unpoisoned").take() {
        let _ = done.send(());
    }
    let stats = running
        .await
        .expect("no panic")
        .expect("the worker stops cleanly");
    assert_eq!(
        *cancelled.lock().expect("unpoisoned"),
        None,
        "the attempt was not abandoned"
    );
    assert_eq!(stats.completed, 1, "{stats:?}");
    assert_eq!(stats.undelivered, 0, "{stats:?}");
    assert_eq!(
        *region.region.completed.lock().expect("unpoisoned"),
        [("run-1:0:1".to_string(), 0)],
        "completed on the new leader"
    );
    let polls = region.calls_of("PollTasks");
    assert_eq!(polls[..2], [(0, "not_leader"), (1, "served")], "{polls:?}");
    let heartbeats = region.calls_of("Heartbeat");
    assert!(
        heartbeats.contains(&(1, "not_leader")) || heartbeats.contains(&(0, "not_leader")),
        "heartbeats were refused during the election: {heartbeats:?}"
    );
    assert!(
        heartbeats.contains(&(0, "served")),
        "heartbeats reached the new leader: {heartbeats:?}"
    );
}
