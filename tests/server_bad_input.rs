//! Malformed and oversized requests through a real gRPC client: each gets INVALID_ARGUMENT
//! naming the field (and the limit) or NOT_FOUND, and the server stays up and unharmed.

mod common;

use std::collections::HashMap;

use common::postgres;
use common::server::{Server, fresh_database};
use tandem_api::proto::worker_service_client::WorkerServiceClient;
use tandem_api::proto::workflow_service_client::WorkflowServiceClient;
use tandem_api::proto::{self};
use tonic::Code;

fn expect(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needles: &[&str]) {
    let status = match result {
        Ok(reply) => panic!("expected {code:?}, got a reply: {reply:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "`{needle}` missing from: {}",
            status.message()
        );
    }
    assert!(
        status.metadata().get("tandem-error-code").is_some(),
        "no error code: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_with_the_field_and_the_limit() {
    let postgres = postgres::shared().await;
    let server = Server::start(&fresh_database(postgres).await, &[]);
    let mut workflows = WorkflowServiceClient::connect(server.url.clone())
        .await
        .unwrap()
        .max_encoding_message_size(64 * 1024 * 1024);
    let mut workers = WorkerServiceClient::connect(server.url.clone())
        .await
        .unwrap();

    // Workflows.
    let register = |source: String| proto::RegisterWorkflowRequest {
        source,
        file_name: "bad.yaml".into(),
    };
    expect(
        workflows.register_workflow(register(String::new())).await,
        Code::InvalidArgument,
        &["`source`"],
    );
    expect(
        workflows
            .register_workflow(register("x".repeat(9 * 1024 * 1024)))
            .await,
        Code::InvalidArgument,
        &["`source`", "at most 8388608 bytes"],
    );
    expect(
        workflows
            .register_workflow(register(
                "name: bad\ntasks:\n  a:\n    needs: [b]\n    run: true\n".into(),
            ))
            .await,
        Code::InvalidArgument,
        &["bad.yaml:4:", "`b`"],
    );
    expect(
        workflows
            .register_workflow(register("name: [unclosed\n".into()))
            .await,
        Code::InvalidArgument,
        &["bad.yaml:"],
    );
    let registered = workflows
        .register_workflow(register(
            "name: ok\nparams:\n  p: x\ntasks:\n  a: {}\n".into(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.name, "ok");

    // Runs.
    let start = |params: HashMap<String, String>| proto::StartRunRequest {
        workflow: "ok".into(),
        params,
        ..Default::default()
    };
    expect(
        workflows.start_run(proto::StartRunRequest::default()).await,
        Code::InvalidArgument,
        &["`workflow`"],
    );
    expect(
        workflows
            .start_run(start(HashMap::from([("nope".into(), "1".into())])))
            .await,
        Code::InvalidArgument,
        &["nope"],
    );
    expect(
        workflows
            .start_run(start(
                (0..1001)
                    .map(|i| (format!("k{i}"), String::new()))
                    .collect(),
            ))
            .await,
        Code::InvalidArgument,
        &["`params`", "at most 1000"],
    );
    expect(
        workflows
            .start_run(start(HashMap::from([("p".into(), "v".repeat(70_000))])))
            .await,
        Code::InvalidArgument,
        &["params[\"p\"]", "at most 65536 bytes"],
    );
    expect(
        workflows
            .start_run(proto::StartRunRequest {
                workflow: "ok".into(),
                idempotency_key: "k".repeat(300),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["`idempotency_key`", "at most 256 bytes"],
    );
    expect(
        workflows
            .get_run(proto::GetRunRequest {
                run_id: "not-a-uuid".into(),
            })
            .await,
        Code::InvalidArgument,
        &["`run_id`", "not-a-uuid"],
    );
    expect(
        workflows
            .get_run(proto::GetRunRequest {
                run_id: "01936b2e-0000-7000-8000-000000000000".into(),
            })
            .await,
        Code::NotFound,
        &["01936b2e-0000-7000-8000-000000000000"],
    );
    expect(
        workflows
            .list_runs(proto::ListRunsRequest {
                page_size: 5000,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["`page_size`", "1..=1000"],
    );
    expect(
        workflows
            .list_runs(proto::ListRunsRequest {
                state: 42,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["`state`", "42"],
    );
    expect(
        workflows
            .list_runs(proto::ListRunsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["`page_token`"],
    );
    expect(
        workflows
            .cancel_run(proto::CancelRunRequest {
                run_id: "01936b2e-0000-7000-8000-000000000000".into(),
                reason: "r".repeat(2000),
            })
            .await,
        Code::InvalidArgument,
        &["`reason`", "at most 1024 bytes"],
    );

    // Workers.
    expect(
        workers
            .poll_tasks(proto::PollTasksRequest {
                queue: String::new(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["`queue`"],
    );
    expect(
        workers
            .poll_tasks(proto::PollTasksRequest {
                queue: "q".into(),
                wait_ms: 3_600_000,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["`wait_ms`", "60000"],
    );
    expect(
        workers
            .poll_tasks(proto::PollTasksRequest {
                queue: "q".into(),
                max_tasks: 100_000,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["`max_tasks`"],
    );
    expect(
        workers
            .complete_task(proto::CompleteTaskRequest {
                lease_id: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["lease"],
    );
    expect(
        workers
            .heartbeat(proto::HeartbeatRequest {
                lease_id: "01936b2e-0000-7000-8000-000000000000:0:1".into(),
                details: String::new(),
            })
            .await,
        Code::NotFound,
        &["01936b2e-0000-7000-8000-000000000000"],
    );
    expect(
        workers
            .heartbeat(proto::HeartbeatRequest {
                lease_id: "01936b2e-0000-7000-8000-000000000000:0:1".into(),
                details: "d".repeat(70_000),
            })
            .await,
        Code::InvalidArgument,
        &["`details`", "at most 65536 bytes"],
    );

    // Still serving, and what was stored is intact.
    let started = workflows
        .start_run(start(HashMap::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(started.created);
    let channel = tonic::transport::Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tandem.v1.WorkflowService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
