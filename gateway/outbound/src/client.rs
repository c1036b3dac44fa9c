//! The outbound HTTP client varco's own calls share (webhooks, GPD, back-offices): HTTP/1.1
//! over plain TCP or TLS (rustls; the system's CA store, which `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` can replace), idle connections kept 30 s.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;
use std::time::Duration;

/// An `http://` and `https://` client.
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The process's client, built once (the CA store is read once, not at every reload); clones
/// share its connection pool.
pub fn https_client() -> HttpsClient {
    static CLIENT: OnceLock<HttpsClient> = OnceLock::new();
    CLIENT.get_or_init(build).clone()
}

pub(crate) fn build() -> HttpsClient {
    let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            // An image without CA certificates can still call `http://` back-offices; an
            // `https://` peer then fails its certificate check on every call, with this reason.
            tracing::warn!(error = %e, "no system CA certificates: https peers cannot be verified");
            // ring is the only rustls provider built in, so `builder()` knows which to use.
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    }
    .https_or_http()
    .enable_http1()
    .build();
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https)
}
