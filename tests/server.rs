//! The region service end to end: a real PostgreSQL, a real `tandem serve` process, and the
//! SDK's `Client` and `Worker` over gRPC.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::postgres;
use common::server::{Server, fresh_database};
use futures::StreamExt;
use tandem_api::{Client, ClientError, ListRuns, RunState, StartRun, TaskState, Worker};

const SHELL_DAG: &str = r#"
name: service-demo
params:
  greeting: hello
tasks:
  start: {}
  greet:
    needs: [start]
    run: echo "word=${{ params.greeting }}" >> "$TANDEM_OUTPUT"
  shout:
    needs: [greet]
    run: test "${{ tasks.greet.outputs.word }}" = "${{ params.greeting }}"
"#;

async fn server() -> Server {
    let postgres = postgres::shared().await;
    let database = fresh_database(postgres).await;
    Server::start(&database, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submitted_run_finishes_and_can_be_read_listed_and_watched() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let submitted = client
        .submit(
            SHELL_DAG,
            "demo.yaml",
            BTreeMap::from([("greeting".to_string(), "bonjour".to_string())]),
            None,
        )
        .await
        .unwrap();
    assert!(submitted.workflow.created);
    let run_id = submitted.run.run_id.clone();
    let run = tokio::time::timeout(Duration::from_secs(60), client.wait_run(&run_id))
        .await
        .expect("run finishes")
        .unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(run.tasks.len(), 3);
    let greet = run
        .tasks
        .iter()
        .find(|task| task.task_id == "greet")
        .unwrap();
    assert_eq!(
        greet.outputs.get("word").map(String::as_str),
        Some("bonjour")
    );
    assert_eq!(greet.attempts, 1);
    assert_eq!(
        run.params.get("greeting").map(String::as_str),
        Some("bonjour")
    );

    let got = client.get_run(&run_id).await.unwrap();
    assert_eq!(got.state, RunState::Succeeded);
    assert_eq!(got.counts.succeeded, 3);

    // A watch of a finished run gives one final update with the tasks.
    let updates: Vec<_> = client.watch_run(&run_id).collect().await;
    let last = updates.last().unwrap().as_ref().unwrap();
    assert_eq!(last.state, RunState::Succeeded);
    assert_eq!(last.tasks.len(), 3);

    // Listing, filtered and paginated.
    for _ in 0..4 {
        client
            .start_run(StartRun::new("service-demo"))
            .await
            .unwrap();
    }
    let page = client
        .list_runs(ListRuns {
            workflow: Some("service-demo".into()),
            page_size: 2,
            ..ListRuns::default()
        })
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 2);
    let token = page.next_page_token.clone().expect("a next page");
    let mut seen: Vec<String> = page.runs.iter().map(|run| run.run_id.clone()).collect();
    let mut token = Some(token);
    while let Some(next) = token {
        let page = client
            .list_runs(ListRuns {
                workflow: Some("service-demo".into()),
                page_size: 2,
                page_token: Some(next),
                ..ListRuns::default()
            })
            .await
            .unwrap();
        seen.extend(page.runs.iter().map(|run| run.run_id.clone()));
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no run twice");
    let none = client
        .list_runs(ListRuns {
            workflow: Some("other".into()),
            ..ListRuns::default()
        })
        .await
        .unwrap();
    assert!(none.runs.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_returns_the_same_run() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    client
        .register_workflow(SHELL_DAG, "demo.yaml")
        .await
        .unwrap();
    let start = || StartRun::new("service-demo").idempotency_key("order-42");
    let (first, second) = tokio::join!(client.start_run(start()), client.start_run(start()));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.run_id, second.run_id);
    assert!(
        first.created != second.created,
        "exactly one call created the run"
    );
    let third = client.start_run(start()).await.unwrap();
    assert_eq!(third.run_id, first.run_id);
    assert!(!third.created);
    let other = client
        .start_run(StartRun::new("service-demo").idempotency_key("order-43"))
        .await
        .unwrap();
    assert_ne!(other.run_id, first.run_id);
}

const WORKER_DAG: &str = r#"
name: worker-service-test
params:
  rows: "250"
tasks:
  load:
    worker: { queue: test-loaders, type: load }
    input:
      rows: ${{ params.rows }}
      nested: { list: [1, "${{ run.id }}"] }
    heartbeat_timeout: 5s
  check:
    needs: [load]
    run: test "${{ tasks.load.outputs.loaded }}" = 250
"#;

#[tokio::test(flavor = "multi_thread")]
async fn worker_tasks_run_in_an_sdk_worker_and_feed_downstream_tasks() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let worker = Worker::builder(server.url.clone(), "test-loaders")
        .handler("load", |task| async move {
            let rows: u64 = task.input()["rows"].as_str().unwrap().parse().unwrap();
            assert_eq!(
                task.input()["nested"]["list"][1].as_str().unwrap(),
                task.run_id()
            );
            assert_eq!(task.idempotency_key(), format!("{}/load", task.run_id()));
            task.heartbeat("halfway");
            Ok(BTreeMap::from([("loaded".to_string(), rows.to_string())]))
        })
        .concurrency(4)
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    let submitted = client
        .submit(WORKER_DAG, "worker.yaml", BTreeMap::new(), None)
        .await
        .unwrap();
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        client.wait_run(&submitted.run.run_id),
    )
    .await
    .expect("run finishes")
    .unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let load = &run.tasks[0];
    assert_eq!(load.outputs.get("loaded").map(String::as_str), Some("250"));
    let _ = stop.send(());
    let stats = worker.await.unwrap().unwrap();
    assert!(stats.completed >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_stops_it() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let dag = "name: slow\ntasks:\n  wait:\n    run: sleep 600\n";
    let submitted = client
        .submit(dag, "slow.yaml", BTreeMap::new(), None)
        .await
        .unwrap();
    let run_id = submitted.run.run_id;
    // Wait until the attempt runs.
    let mut updates = std::pin::pin!(client.watch_run(&run_id));
    while let Some(update) = updates.next().await {
        if update.unwrap().counts.running == 1 {
            break;
        }
    }
    client.cancel_run(&run_id, "test").await.unwrap();
    let run = tokio::time::timeout(Duration::from_secs(30), client.wait_run(&run_id))
        .await
        .expect("cancel ends the run")
        .unwrap();
    assert_eq!(run.state, RunState::Cancelled);
    assert_eq!(run.tasks[0].state, TaskState::Cancelled);
    // Cancelling a finished run changes nothing.
    let state = client.cancel_run(&run_id, "").await.unwrap();
    assert_eq!(state, RunState::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_resumes_its_runs_without_rerunning_succeeded_tasks() {
    let mut server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("first-ran");
    let dag = format!(
        "name: resume\ntasks:\n  first:\n    run: echo x >> {marker}\n  second:\n    needs: [first]\n    run: sleep 3\n    retry: {{ max_attempts: 2, initial_interval: 100ms }}\n",
        marker = marker.display()
    );
    let client = Client::connect(&server.url).await.unwrap();
    let run_id = client
        .submit(dag, "resume.yaml", BTreeMap::new(), None)
        .await
        .unwrap()
        .run
        .run_id;
    let mut updates = std::pin::pin!(client.watch_run(&run_id));
    while let Some(update) = updates.next().await {
        if update.unwrap().counts.succeeded == 1 {
            break;
        }
    }
    server.restart(&[]);
    let client = Client::connect(&server.url).await.unwrap();
    let run = tokio::time::timeout(Duration::from_secs(60), client.wait_run(&run_id))
        .await
        .expect("the resumed run finishes")
        .unwrap();
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "x\n",
        "first ran once"
    );
    let second = &run.tasks[1];
    assert_eq!(
        second.attempts, 2,
        "the interrupted attempt counts: {second:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_runs_are_not_found_and_the_server_stays_up() {
    let server = server().await;
    let client = Client::connect(&server.url).await.unwrap();
    let unknown = "01936b2e-0000-7000-8000-000000000000";
    assert!(matches!(
        client.get_run(unknown).await,
        Err(ClientError::NotFound { .. })
    ));
    assert!(matches!(
        client.cancel_run(unknown, "").await,
        Err(ClientError::NotFound { .. })
    ));
    assert!(matches!(
        client.start_run(StartRun::new("never-registered")).await,
        Err(ClientError::NotFound { .. })
    ));
}
