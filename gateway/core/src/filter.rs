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
        self.header_values().map(|(k, v)| (http::HeaderName::from_static(k), v))
    }

    /// The three headers with static names: pingora's `insert_header` takes a `&'static str`
    /// without copying it, where a `HeaderName` is copied into a new buffer first.
    pub fn header_values(&self) -> [(&'static str, http::HeaderValue); 3] {
        [
            ("x-ratelimit-limit", number(u64::from(self.limit))),
            ("x-ratelimit-remaining", number(u64::from(self.remaining))),
            ("x-ratelimit-reset", number(self.reset_secs)),
        ]
    }
}

/// A header value of a number; the small ones (remaining requests, seconds to wait) without
/// allocating.
fn number(n: u64) -> http::HeaderValue {
    const SMALL: [&str; 16] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"];
    match SMALL.get(n as usize) {
        Some(s) if n < 16 => http::HeaderValue::from_static(s),
        _ => http::HeaderValue::from(n),
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

#[cfg(test)]
mod tests {
    use super::RateLimitStatus;

    #[test]
    fn rate_limit_headers_carry_small_and_large_numbers() {
        let s = RateLimitStatus { limit: 1_000_000_000, remaining: 7, reset_secs: 15 };
        let h = s.headers();
        assert_eq!(h[0].0.as_str(), "x-ratelimit-limit");
        assert_eq!(h[0].1, "1000000000");
        assert_eq!(h[1].1, "7");
        assert_eq!(h[2].1, "15");
        let s = RateLimitStatus { limit: 100, remaining: 16, reset_secs: 0 };
        assert_eq!(s.header_values().map(|(_, v)| v), ["100", "16", "0"]);
    }
}
