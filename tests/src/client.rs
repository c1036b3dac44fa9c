//! A real HTTP/1.1 client (hyper) and a raw-socket helper for malformed requests.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HClient;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub json: serde_json::Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy), for failure messages and "must not contain" checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an RFC 9457 problem of the given slug and status, with ids.
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        assert_eq!(self.json["type"], format!("urn:varco:problem:{slug}"), "{self:?}");
        assert_eq!(self.json["status"], status);
        assert!(self.json["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(self.json["trace_id"].as_str().is_some_and(|d| d.len() == 32), "{self:?}");
        assert_eq!(self.json["request_id"].as_str(), self.header("x-request-id"));
    }
}

#[derive(Clone)]
pub struct Client {
    inner: HClient<HttpConnector, Full<Bytes>>,
    pub base: String,
}

impl Client {
    pub fn new(port: u16) -> Self {
        Self::from_address(port, None)
    }

    /// A client whose connections leave from `local` (e.g. 127.0.0.2: another caller on the
    /// same machine, for address rules).
    pub fn from_address(port: u16, local: Option<std::net::IpAddr>) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_local_address(local);
        Self { inner: HClient::builder(TokioExecutor::new()).build(conn), base: format!("http://127.0.0.1:{port}") }
    }

    pub async fn send(&self, method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.try_send(method, host, path, headers, body).await.expect("request failed")
    }

    /// Like `send`, but a failed connection (a killed server) is `Err` instead of a panic.
    pub async fn try_send(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp, String> {
        let mut b = http::Request::builder().method(method).uri(format!("{}{path}", self.base)).header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.inner.request(req))
            .await
            .map_err(|_| "request timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).map_err(|e| e.to_string())?;
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok(Resp { status: parts.status.as_u16(), headers: parts.headers, body, json })
    }

    pub async fn get(&self, host: &str, path: &str) -> Resp {
        self.send("GET", host, path, &[], b"").await
    }
}

/// Sends raw bytes and returns what the server answered before closing (or 1 s of silence).
pub async fn raw_http(port: u16, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
