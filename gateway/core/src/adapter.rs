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
    /// The tenant's path prefix as the caller addressed it (`/c_e783`, or empty for a host).
    pub prefix: &'a str,
    /// Whether the caller came over TLS (to varco itself).
    pub tls: bool,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// The tenant's codice IPA.
    pub tenant_id: &'a str,
    pub request_id: &'a str,
    /// The request's W3C trace context as varco continues it (for events it publishes).
    pub traceparent: &'a str,
    /// The verified caller, when the route's access names one (bearer token).
    pub caller: Option<&'a crate::Identity>,
    /// The calling client's name or id (an API key's holder, a token's `client_id`).
    pub client_id: Option<&'a str>,
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

/// What an adapter answers: one body, or a header and the body's chunks as they come (a live
/// stream such as server-sent events, which the gateway writes chunk by chunk).
pub enum Answer {
    Body(AdapterResponse),
    Stream(AdapterResponse, BodyStream),
}

impl Answer {
    /// The whole answer, when it is not a stream.
    pub fn into_body(self) -> Option<AdapterResponse> {
        match self {
            Self::Body(r) => Some(r),
            Self::Stream(..) => None,
        }
    }
}

impl From<AdapterResponse> for Answer {
    fn from(r: AdapterResponse) -> Self {
        Self::Body(r)
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Body(r) => f.debug_tuple("Body").field(r).finish(),
            Self::Stream(h, _) => f.debug_tuple("Stream").field(h).finish_non_exhaustive(),
        }
    }
}

/// An in-process route target.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// The config tag of the adapter (`kind:` in YAML).
    fn kind(&self) -> &'static str;

    /// Answers one request, with a body or a stream. Errors become problem+json answers.
    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem>;

    /// Takes one event of a subscription whose target is this adapter's route (structured
    /// CloudEvent as JSON). `Err` is retried like a failed webhook. Default: not supported.
    async fn on_event(&self, _event: &serde_json::Value) -> Result<(), String> {
        Err(format!("the {} adapter does not take events", self.kind()))
    }

    /// How a problem met on this adapter's route (a refused address, a body too large, a rate
    /// limit) is answered to a request with this `method`, for protocols whose callers expect
    /// their own error shape (a SOAP Fault). `request_id` and `trace_id` find the request in
    /// the logs. Default: `None`, problem+json.
    fn problem_answer(
        &self,
        _method: &Method,
        _p: &Problem,
        _request_id: &str,
        _trace_id: &str,
    ) -> Option<AdapterResponse> {
        None
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

/// A request a [`Mediator`] sends to its route's upstream pool.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    pub method: Method,
    /// Origin-form target on the back-office (`/anagrafe/soap`, `/pratiche/7?stato=APERTA`).
    pub path_and_query: String,
    /// Content type, SOAPAction, credentials; the gateway adds forwarding, trace and identity.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Which of the mediator's operations this is, handed back to [`Mediator::response`].
    pub op: usize,
}

/// What a mediator makes of a request: a call for the back-office, or an answer of its own
/// (a published contract, a refusal in the caller's protocol).
#[derive(Debug)]
pub enum Mediation {
    Call(UpstreamCall),
    Answer(AdapterResponse),
}

/// A route target that translates between the caller's protocol and the back-office's and
/// leaves the call itself to the gateway: the route's upstream pool with its health checks,
/// breaker, retries and timeouts, as for any proxied route. Both halves are pure (no I/O).
pub trait Mediator: Send + Sync + std::fmt::Debug {
    /// The config tag (`kind:` in YAML).
    fn kind(&self) -> &'static str;

    /// The caller's request as a call to the back-office, or an answer.
    fn request(&self, req: &AdapterRequest<'_>) -> Result<Mediation, Problem>;

    /// The back-office's answer to call `op` as the caller's answer.
    fn response(&self, op: usize, reply: AdapterResponse) -> Result<AdapterResponse, Problem>;

    /// Like [`Adapter::problem_answer`]: a refusal in the caller's protocol (a SOAP Fault).
    fn problem_answer(
        &self,
        _method: &Method,
        _p: &Problem,
        _request_id: &str,
        _trace_id: &str,
    ) -> Option<AdapterResponse> {
        None
    }
}
