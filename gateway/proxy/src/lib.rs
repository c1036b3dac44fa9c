//! The varco data plane on pingora: the `ProxyHttp` phases, tenant and route matching, upstream
//! pools with health, the admin listener, reload and metrics.
#![forbid(unsafe_code)]

mod admin;
mod filters;
mod gateway;
mod health;
mod metrics;
mod reload;
mod respond;
mod router;
mod runtime;
mod server;
mod tls;
mod upstream;

pub use gateway::Gateway;
pub use metrics::Metrics;
pub use reload::{ReloadError, Reloader};
pub use runtime::{BuildError, Runtime};
pub use server::{run, StartError};

use arc_swap::ArcSwap;

/// State shared by every phase, listener and background task.
pub struct Shared {
    /// The running configuration; swapped whole on reload.
    pub current: ArcSwap<Runtime>,
    pub metrics: Metrics,
}
