//! The outbound HTTP client varco's own calls share (webhooks, GPD, back-offices): HTTP/1.1
//! over plain TCP or TLS (rustls; the system's CA store, which `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` can replace), idle connections kept 30 s.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// An `http://` and `https://` client.
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the client; fails only when the system CA store cannot be read.
pub fn https_client() -> Result<HttpsClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("cannot load the system CA certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
}
