//! The varco data plane on pingora: the `ProxyHttp` phases, tenant and route matching, upstream
//! pools with health, the admin listener, reload and metrics.
#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod authn;
mod events;
mod fetch;
mod filters;
mod gateway;
mod metrics;
mod registries;
mod reload;
mod respond;
mod router;
mod runtime;
mod server;
mod services;
mod text;
mod tls;
mod upstream;

pub use gateway::Gateway;
pub use metrics::Metrics;
pub use reload::{ReloadError, Reloader};
pub use runtime::{BuildError, Runtime};
pub use server::{run, StartError};
pub use varco_auth::api_key_hash;

use arc_swap::ArcSwap;

/// State shared by every phase, listener and background task.
pub struct Shared {
    /// The running configuration; swapped whole on reload.
    pub current: ArcSwap<Runtime>,
    pub metrics: Metrics,
    /// Requests between header read and the end of logging (drain on SIGTERM waits for 0).
    pub in_flight: std::sync::atomic::AtomicUsize,
    pub access_log: access_log::AccessLog,
    /// What outlives a configuration (limiters, quotas, issuers, jti marks, the bus, streams).
    pub reg: registries::Registries,
    /// pingora's connector, for exchanges with upstream pools (their own TLS settings).
    pub connector: pingora_core::connectors::http::Connector,
    /// varco's own fetches (JWKS), through the one outbound client.
    pub fetcher: varco_outbound::Fetcher,
    /// The event service has stopped (set once at shutdown; the drain waits for it).
    pub background_stopped: std::sync::atomic::AtomicBool,
    pub stopped: tokio::sync::Notify,
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
