//! The `Adapter` seam: an in-process handler that answers a route itself.
//!
//! A route's target is either an upstream pool or an adapter. For an adapter route the proxy
//! reads the (bounded) request body, calls [`Adapter::call`] and writes its answer; adapters may
//! call out to national platforms or back-offices on their own. An adapter is built once per
//! configuration (its config struct has a pure `validate()`, its builder may do I/O).

use crate::Problem;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The body of a streamed answer: chunks written as they come.
pub type BodyStream = futures::stream::BoxStream<'static, Bytes>;

/// What an adapter sees of a request.
#[derive(Debug)]
pub struct AdapterRequest<'a> {
    pub method: &'a Method,
    /// The path below the tenant's prefix.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// The tenant's codice IPA.
    pub tenant_id: &'a str,
    pub request_id: &'a str,
    /// The request's W3C trace context as varco continues it (for events it publishes).
    pub traceparent: &'a str,
}

/// An adapter's answer.
#[derive(Debug, Clone)]
pub struct AdapterResponse {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl AdapterResponse {
    /// A JSON (or problem+json) response.
    pub fn json(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body: Bytes::from(body),
        }
    }
}

/// An in-process route target.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// The config tag of the adapter (`kind:` in YAML).
    fn kind(&self) -> &'static str;

    /// Answers one request. Errors become problem+json answers.
    async fn call(&self, req: AdapterRequest<'_>) -> Result<AdapterResponse, Problem>;

    /// True for adapters that answer with a live stream ([`Adapter::open_stream`]) rather
    /// than one body: the gateway writes the header, then each chunk as it comes.
    fn streams(&self) -> bool {
        false
    }

    /// The answer's header part and the body chunks that follow, for as long as the stream
    /// runs or the caller stays (server-sent events). Asked only when [`Adapter::streams`].
    async fn open_stream(&self, _req: AdapterRequest<'_>) -> Result<(AdapterResponse, BodyStream), Problem> {
        Err(Problem::new(crate::ProblemKind::Internal, format!("the {} adapter does not stream", self.kind())))
    }

    /// Takes one event of a subscription whose target is this adapter's route (structured
    /// CloudEvent as JSON). `Err` is retried like a failed webhook. Default: not supported.
    async fn on_event(&self, _event: &serde_json::Value) -> Result<(), String> {
        Err(format!("the {} adapter does not take events", self.kind()))
    }
}

/// Health of one upstream pool, as adapters (e.g. `status`) see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHealth {
    pub name: String,
    pub healthy_servers: usize,
    pub servers: usize,
}

/// A read-only view of a tenant's upstream health, given to adapters that report it.
pub trait HealthView: Send + Sync + std::fmt::Debug {
    fn upstreams(&self) -> Vec<UpstreamHealth>;

    /// Token issuers and whether their keys are fresh (false: serving cached keys because the
    /// JWKS is unreachable). Default: none.
    fn issuers(&self) -> Vec<(String, bool)> {
        Vec::new()
    }
}
