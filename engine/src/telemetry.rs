//! W3C trace context for attempts: the `traceparent` of an attempt's span, given to shell
//! tasks as the `TRACEPARENT` env var and to remote workers with their lease.
//!
//! Spans become OpenTelemetry spans only when the process installed a
//! `tracing-opentelemetry` layer (as `tandem serve` does when an OTLP endpoint is set);
//! otherwise there is no trace context and [`traceparent`] returns `None`.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C `traceparent` header value (`00-TRACE_ID-SPAN_ID-FLAGS`, see
/// <https://www.w3.org/TR/trace-context/>) of `span`, if it belongs to a sampled or recorded
/// OpenTelemetry trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}
