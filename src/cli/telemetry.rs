//! Logs and traces of the `tandem` process: structured logs through `tracing` on stderr
//! (filter in `TANDEM_LOG`, default `warn`; `info` for `tandem serve`), and, when an OTLP
//! endpoint is given, every span (runs, attempts) exported over OTLP/gRPC with W3C trace
//! context propagation.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::Failure;

/// Keeps the trace exporter alive; dropping it flushes and shuts the exporter down.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Flush what is buffered; never hang the process's exit on a dead collector.
            if let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("warning: could not flush traces to the OTLP endpoint: {error}");
            }
        }
    }
}

/// Installs the process's subscriber: logs at `default_level` unless `TANDEM_LOG` says
/// otherwise, and an OpenTelemetry layer exporting to `otlp_endpoint` (as `service_name`) if
/// one is given. Must be called inside a tokio runtime when an endpoint is given.
///
/// Errors: an endpoint the exporter cannot use (exit 2).
pub fn init(
    default_level: &str,
    otlp_endpoint: Option<&str>,
    service_name: &str,
) -> Result<Telemetry, Failure> {
    let filter =
        EnvFilter::try_from_env("TANDEM_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let Some(endpoint) = otlp_endpoint else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry { provider: None });
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|error| Failure::invalid(format!("OTLP endpoint `{endpoint}`: {error}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("tandem");
    // Spans are exported from INFO up (runs, attempts), whatever the log filter shows.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}
