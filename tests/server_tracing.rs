//! Traces of `tandem serve`: spans of runs and attempts reach an OTLP collector (a real gRPC
//! OTLP receiver in this test); a shell task sees its attempt's span as `TRACEPARENT`, and a
//! worker gets it with its lease.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::postgres;
use common::server::{Server, fresh_database};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tandem_api::{Client, RunState};
use tokio_stream::wrappers::TcpListenerStream;

/// A span as received: name, trace id, span id, parent span id (hex).
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_and_attempts_are_exported_and_shell_tasks_and_workers_get_their_traceparent() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let postgres = postgres::shared().await;
    let endpoint = format!("http://{address}");
    let mut server = Server::start(
        &fresh_database(postgres).await,
        &["--otlp-endpoint", &endpoint],
    );
    let client = Client::connect(&server.url).await.unwrap();
    let dag = "name: traced\ntasks:\n  t:\n    run: echo \"tp=$TRACEPARENT\" >> \"$TANDEM_OUTPUT\"\n  w:\n    worker: { queue: traced, type: echo }\n";
    let worker = tandem_api::Worker::builder(server.url.clone(), "traced")
        .handler("echo", |task| async move {
            let traceparent = task.traceparent().unwrap_or("none").to_string();
            Ok(BTreeMap::from([("tp".to_string(), traceparent)]))
        })
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    let run_id = client
        .submit(dag, "traced.yaml", BTreeMap::new(), None)
        .await
        .unwrap()
        .run
        .run_id;
    let run = tokio::time::timeout(Duration::from_secs(60), client.wait_run(&run_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.state, RunState::Succeeded);
    let traceparent = run.tasks[0].outputs["tp"].clone();
    let worker_traceparent = run.tasks[1].outputs["tp"].clone();
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
    // SIGTERM: a clean shutdown flushes the batch exporter.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait();
        (status, server)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(status.success(), "{status:?}");

    let spans = collector.spans.lock().unwrap().clone();
    let run_span = spans
        .iter()
        .find(|span| span.name == "run")
        .unwrap_or_else(|| panic!("no run span in {spans:#?}"));
    let attempts: Vec<&Received> = spans.iter().filter(|span| span.name == "attempt").collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let by_id = |id: &str| {
        attempts
            .iter()
            .find(|span| span.span_id == id)
            .copied()
            .unwrap_or_else(|| panic!("no attempt span {id} in {spans:#?}"))
    };
    let worker_parts: Vec<&str> = worker_traceparent.split('-').collect();
    assert_eq!(
        worker_parts.len(),
        4,
        "W3C traceparent: {worker_traceparent}"
    );
    let worker_attempt = by_id(worker_parts[2]);
    assert_eq!(worker_parts[1], run_span.trace_id, "{worker_traceparent}");
    assert_eq!(worker_attempt.parent_span_id, run_span.span_id);
    let attempt = attempts
        .iter()
        .find(|span| span.span_id != worker_attempt.span_id)
        .unwrap();
    assert_eq!(attempt.trace_id, run_span.trace_id, "one trace per run");
    assert_eq!(
        attempt.parent_span_id, run_span.span_id,
        "attempt inside run"
    );
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "W3C traceparent: {traceparent}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], attempt.trace_id, "{traceparent}");
    assert_eq!(parts[2], attempt.span_id, "{traceparent}");
}
