//! The varco data plane on pingora: the `ProxyHttp` phases, tenant and route matching, upstream
//! pools with health, the admin listener, reload and metrics.
#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod auth;
mod breaker;
mod events;
mod fetch;
mod filters;
mod gateway;
mod health;
mod identity;
mod limits;
mod metrics;
mod modi;
mod quotas;
mod reload;
mod respond;
mod router;
mod runtime;
mod server;
mod text;
mod tls;
mod upstream;

pub use auth::api_key_hash;
pub use gateway::Gateway;
pub use metrics::Metrics;
pub use reload::{ReloadError, Reloader};
pub use runtime::{BuildError, Runtime};
pub use server::{run, StartError};

use arc_swap::ArcSwap;
use std::sync::Arc;

/// State shared by every phase, listener and background task.
pub struct Shared {
    /// The running configuration; swapped whole on reload.
    pub current: ArcSwap<Runtime>,
    pub metrics: Metrics,
    /// Requests between header read and the end of logging (drain on SIGTERM waits for 0).
    pub in_flight: std::sync::atomic::AtomicUsize,
    pub access_log: access_log::AccessLog,
    /// Rate limiters, kept across reloads.
    pub limiters: limits::Registry,
    /// Quotas, kept across reloads, and their Redis store.
    pub quotas: quotas::QuotaRegistry,
    pub redis: Option<Arc<quotas::RedisQuotaStore>>,
    /// Token issuers (with their cached keys), kept across reloads.
    pub issuers: auth::IssuerRegistry,
    /// `jti`s already used (ModI JWTs, single-use bearer tokens), kept across reloads.
    pub replay: modi::ReplayGuard,
    /// The event bus, opened when the configuration first uses it.
    pub events: events::EventsSlot,
    /// Event-stream routes (open streams, ACL in force), kept across reloads.
    pub streams: varco_events::stream::StreamRegistry,
    /// HTTP client for documents varco fetches (JWKS).
    pub connector: pingora_core::connectors::http::Connector,
}

/// Counts a request as in flight for as long as it lives.
pub(crate) struct InFlight(std::sync::Arc<Shared>);

impl InFlight {
    pub(crate) fn new(shared: &std::sync::Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits for the next tick of a background loop; false once the server shuts down.
pub(crate) async fn tick_or_shutdown(
    tick: &mut tokio::time::Interval,
    shutdown: &mut pingora_core::server::ShutdownWatch,
) -> bool {
    tokio::select! {
        _ = tick.tick() => true,
        _ = shutdown.changed() => false,
    }
}
