//! varco's calls to others go through here: one HTTP(S) client per process (rustls with the
//! system's CA store or `SSL_CERT_FILE`, pooled connections), shared by webhooks, the pagoPA
//! back-office and GPD clients, and JWKS fetches; and the ente's calls to national
//! e-services as a PDND consumer (`voucher`, `eservice`: vouchers, outbound ModI, the W3C
//! trace context).
//!
//! The data plane's exchanges with a route's upstream pool are not here: those go through
//! pingora's connector with the pool's own TLS settings (`varco-proxy`).
#![forbid(unsafe_code)]

pub mod client;
pub mod eservice;
pub mod exchange;
pub mod fetch;
pub mod otlp;
pub mod voucher;

pub use client::{https_client, HttpsClient};
pub use eservice::{CallError, Eservice};
pub use exchange::{Policy, Reply};
pub use fetch::Fetcher;
pub use otlp::otlp_client;
pub use voucher::{VoucherClient, VoucherError, VoucherRegistry};
