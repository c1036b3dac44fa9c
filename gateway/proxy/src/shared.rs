//! State shared by every phase, listener and background task of one process.

use crate::access_log::AccessLog;
use crate::metrics::Metrics;
use crate::registries::Registries;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

pub struct Shared {
    /// The running configuration; swapped whole on reload.
    pub current: ArcSwap<Runtime>,
    pub metrics: Metrics,
    /// Requests between header read and the end of logging (drain on SIGTERM waits for 0).
    pub in_flight: AtomicUsize,
    pub access_log: AccessLog,
    /// What outlives a configuration (limiters, quotas, issuers, jti marks, the bus, streams).
    pub reg: Registries,
    /// pingora's connector, for exchanges with upstream pools (their own TLS settings).
    pub connector: pingora_core::connectors::http::Connector,
    /// varco's own fetches (JWKS), through the one outbound client.
    pub fetcher: varco_outbound::Fetcher,
    /// The event service has stopped (set once at shutdown; the drain waits for it).
    pub background_stopped: AtomicBool,
    pub stopped: tokio::sync::Notify,
}

/// Counts a request as in flight for as long as it lives.
pub struct InFlight(Arc<Shared>);

impl InFlight {
    pub fn new(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Relaxed);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}
