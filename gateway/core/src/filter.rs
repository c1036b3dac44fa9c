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
