//! OpenTelemetry traces for varco: the process's tracer, spans continued from W3C trace
//! context (`traceparent` strings, as they travel in HTTP and Kafka headers), and their export
//! over OTLP/HTTP from a bounded queue on a thread of its own.
//!
//! Tracing is installed once at start ([`install`]); until then, and when it is off, every
//! [`start`] returns `None` and costs one atomic load. A request never waits for export: a
//! full queue drops the span and counts it ([`stats`]).

mod export;
mod settings;
mod span;

pub use export::Stats;
pub use settings::{Settings, SettingsError};
pub use span::{start, Kind, Span};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What `install` could not do.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
    #[error("tracing is already installed")]
    Twice,
    #[error("the export thread: {0}")]
    Thread(std::io::Error),
}

struct Installed {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    stats: Arc<export::Counters>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

fn tracer() -> Option<&'static SdkTracer> {
    INSTALLED.get().map(|i| &i.tracer)
}

/// Starts tracing for the process with `s`, exporting through `client` (the process's own
/// HTTP client). Called once, at start.
pub fn install(s: Settings, client: Arc<dyn opentelemetry_http::HttpClient>) -> Result<(), InstallError> {
    if INSTALLED.get().is_some() {
        return Err(InstallError::Twice);
    }
    let (provider, stats) = build(s, client)?;
    let tracer = provider.tracer("varco");
    INSTALLED.set(Installed { provider, tracer, stats }).map_err(|_| InstallError::Twice)
}

fn build(
    s: Settings,
    client: Arc<dyn opentelemetry_http::HttpClient>,
) -> Result<(SdkTracerProvider, Arc<export::Counters>), InstallError> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    let mut b = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_shared_http_client(client)
        .with_protocol(Protocol::HttpBinary);
    if let Some(e) = &s.endpoint {
        b = b.with_endpoint(e.clone());
    }
    if let Some(t) = s.timeout {
        b = b.with_timeout(t);
    }
    if !s.headers.is_empty() {
        b = b.with_headers(s.headers.clone().into_iter().collect());
    }
    let exporter = b.build().map_err(|e| InstallError::Exporter(e.to_string()))?;
    let (processor, stats) = export::QueueProcessor::start(exporter, &s).map_err(InstallError::Thread)?;
    let mut pb = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(s.service_name.clone()).build());
    if let Some(sampler) = s.sampler() {
        pb = pb.with_sampler(sampler);
    }
    Ok((pb.build(), stats))
}

/// Whether spans are being made.
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

/// Spans exported, dropped and failed so far (zeros when tracing is off).
pub fn stats() -> Stats {
    INSTALLED.get().map(|i| i.stats.snapshot()).unwrap_or_default()
}

/// Exports what is queued and stops the export thread, waiting at most `timeout` (at the end
/// of a drain: the last requests' spans are not lost).
pub fn shutdown(timeout: Duration) {
    if let Some(i) = INSTALLED.get() {
        if let Err(e) = i.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "tracing: the last spans may not have been exported");
        }
    }
}
