//! The `Filter` seam: one small step of a route's request chain.
//!
//! A route's chain is built once from config (a `Vec<Arc<dyn Filter>>`); the proxy's
//! `request_filter` phase runs it in order after the tenant and route are known. A filter sees
//! the request header and the per-request [`FilterState`] and either lets the request continue or
//! answers with a [`Problem`]. Filters do no socket I/O, so unit tests call them directly.

use crate::Problem;
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::IpAddr;

/// Per-request facts a filter may read or set.
#[derive(Debug, Default, Clone)]
pub struct FilterState {
    /// The caller's address as seen on the socket.
    pub client_ip: Option<IpAddr>,
    /// Whether the caller came over TLS.
    pub tls: bool,
    /// Largest body the route accepts; the proxy enforces it on streamed bodies too.
    pub max_body_bytes: Option<u64>,
    /// The tightest rate limit that applied, for the `X-RateLimit-*` response headers.
    pub rate_limit: Option<RateLimitStatus>,
    /// The verified caller (bearer-token routes): subject and OAuth client.
    pub subject: Option<String>,
    pub client_id: Option<String>,
}

/// What the `X-RateLimit-*` headers say (ModI): the limit per window, what is left of it, and
/// the seconds until it is whole again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

impl RateLimitStatus {
    /// The three headers.
    pub fn headers(&self) -> [(http::HeaderName, http::HeaderValue); 3] {
        [
            (http::HeaderName::from_static("x-ratelimit-limit"), http::HeaderValue::from(self.limit)),
            (http::HeaderName::from_static("x-ratelimit-remaining"), http::HeaderValue::from(self.remaining)),
            (http::HeaderName::from_static("x-ratelimit-reset"), http::HeaderValue::from(self.reset_secs)),
        ]
    }
}

/// One step of a route's chain.
pub trait Filter: Send + Sync + std::fmt::Debug {
    /// A short name for logs and docs.
    fn name(&self) -> &'static str;

    /// Runs in `request_filter`, after tenant and route matching, before the upstream is chosen
    /// or the adapter is called.
    fn on_request(&self, req: &mut RequestHeader, state: &mut FilterState) -> Result<(), Problem>;

    /// Runs in `response_filter`, before the response header goes to the caller.
    fn on_response(&self, _resp: &mut ResponseHeader, _state: &FilterState) {}
}
