//! The OTLP exporter's HTTP client: this crate's client with a connection pool of its own,
//! because the export thread drives its connections on its own small runtime.

use crate::client::HttpsClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError};
use std::sync::Arc;

/// Largest collector answer read (a partial-success message is small).
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, Clone)]
struct OtlpClient(HttpsClient);

/// A client for `varco_telemetry::install`.
pub fn otlp_client() -> Arc<dyn HttpClient> {
    Arc::new(OtlpClient(crate::client::build()))
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, req: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = req.into_parts();
        let resp = self.0.request(http::Request::from_parts(parts, Full::new(body))).await?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }
}
