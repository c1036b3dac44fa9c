//! The varco data plane on pingora: the `ProxyHttp` phases, tenant and route matching, each
//! route's request pipeline, upstream pools with health, the admin listener, reload, metrics
//! and the background services. Who a caller is lives in `varco-auth`, limits in
//! `varco-traffic`, varco's own outbound calls in `varco-outbound`.
#![forbid(unsafe_code)]

mod access_log;
mod adapters;
mod admin;
mod audit;
mod authn;
mod citizens;
mod conn;
mod cors;
mod ctx;
mod events;
mod exchange;
mod filters;
mod forwarding;
mod gateway;
mod mediation;
mod metrics;
mod pipeline;
mod proxy_protocol;
mod registries;
mod reload;
mod respond;
mod router;
mod runtime;
mod secrets;
mod server;
mod services;
mod shared;
mod spans;
mod text;
mod tls;
mod upstream;

pub use gateway::Gateway;
pub use mediation::{check as check_mediation, openapi};
pub use metrics::Metrics;
pub use reload::{ReloadError, Reloader};
pub use runtime::{tenant_jwks, Runtime};
pub use secrets::BuildError;
pub use server::{run, StartError};
pub use shared::Shared;
pub use varco_auth::api_key_hash;
