//! varco's calls to others go through here: one HTTP(S) client per process (rustls with the
//! system's CA store or `SSL_CERT_FILE`, pooled connections), shared by webhooks, the pagoPA
//! back-office and GPD clients, and JWKS fetches. This is the place for what every outbound
//! call will carry: PDND vouchers, outbound ModI signatures and the W3C trace context.
//!
//! The data plane's exchanges with a route's upstream pool are not here: those go through
//! pingora's connector with the pool's own TLS settings (`varco-proxy`).
#![forbid(unsafe_code)]

pub mod client;
pub mod exchange;
pub mod fetch;

pub use client::{https_client, HttpsClient};
pub use exchange::{Policy, Reply};
pub use fetch::Fetcher;
