//! One buffered call to a peer (GPD, a back-office): the request goes out whole, the answer
//! comes back whole and bounded, every attempt within its timeout, and what is worth trying
//! again (no answer, 429, 5xx) is retried with exponential backoff and jitter.

use crate::client::HttpsClient;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// How a call is tried.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Per attempt, from sending to the last byte of the answer.
    pub timeout: Duration,
    /// Extra attempts after a transport failure, 429 or 5xx.
    pub retries: u32,
    /// Wait before the first retry; doubled each time, with ±50 % jitter.
    pub backoff: Duration,
    /// Largest answer body read.
    pub max_body: usize,
}

impl Policy {
    /// One attempt, no retry.
    pub fn once(timeout: Duration) -> Self {
        Self { timeout, retries: 0, backoff: Duration::ZERO, max_body: 16 << 20 }
    }
}

/// One attempt.
pub async fn attempt(client: &HttpsClient, req: http::Request<Full<Bytes>>, p: &Policy) -> Result<Reply, String> {
    let call = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, p.max_body)
            .collect()
            .await
            .map_err(|_| format!("the answer is larger than {} bytes or was cut short", p.max_body))?
            .to_bytes();
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
    };
    tokio::time::timeout(p.timeout, call).await.map_err(|_| "timed out".to_owned())?
}

/// Whether an outcome is worth another attempt.
fn worth_retrying(r: &Result<Reply, String>) -> bool {
    match r {
        Err(_) => true,
        Ok(a) => a.status == 429 || a.status >= 500,
    }
}

/// Tries `make()`'s request up to `1 + retries` times; the last outcome and the number of
/// retries made. `make` builds the request again for each attempt (bodies are `Bytes`, cheap
/// to clone).
pub async fn send<F>(client: &HttpsClient, p: &Policy, make: F) -> (Result<Reply, String>, u32)
where
    F: Fn() -> Result<http::Request<Full<Bytes>>, String>,
{
    send_traced(client, p, "", None, make).await
}

/// [`send`] as a client span `name`, a child of `parent` (a `traceparent`) when tracing is on:
/// the peer gets the span as its parent, the span gets the outcome.
pub async fn send_traced<F>(
    client: &HttpsClient,
    p: &Policy,
    name: &'static str,
    parent: Option<&str>,
    make: F,
) -> (Result<Reply, String>, u32)
where
    F: Fn() -> Result<http::Request<Full<Bytes>>, String>,
{
    let mut span = parent.and_then(|tp| varco_telemetry::start(name, varco_telemetry::Kind::Client, Some(tp)));
    let tp = span.as_ref().and_then(|s| http::HeaderValue::from_bytes(&s.traceparent()).ok());
    let mut delay = p.backoff;
    let mut n = 0;
    let outcome = loop {
        let r = match make() {
            Ok(mut req) => {
                if let Some(tp) = &tp {
                    req.headers_mut().insert(varco_core::headers::TRACEPARENT.clone(), tp.clone());
                }
                if let Some(s) = span.as_mut() {
                    s.set("server.address", req.uri().host().unwrap_or("").to_owned());
                    s.set("http.request.method", req.method().as_str().to_owned());
                }
                attempt(client, req, p).await
            }
            Err(e) => break (Err(e), n),
        };
        if !worth_retrying(&r) || n >= p.retries {
            break (r, n);
        }
        n += 1;
        tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64())).await;
        delay = delay.saturating_mul(2);
    };
    if let Some(mut s) = span {
        s.set("varco.retries", i64::from(outcome.1));
        match &outcome.0 {
            Ok(r) => {
                s.set("http.response.status_code", i64::from(r.status));
                if r.status >= 400 {
                    s.fail(format!("answered {}", r.status));
                }
            }
            Err(e) => s.fail(e.clone()),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on an ephemeral port answering each connection with the next of `answers`.
    async fn serve(answers: Vec<&'static [u8]>) -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                h.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(a).await;
            }
        });
        (format!("http://{addr}/x"), hits)
    }

    fn get(url: &str) -> Result<http::Request<Full<Bytes>>, String> {
        http::Request::get(url).header("connection", "close").body(Full::new(Bytes::new())).map_err(|e| e.to_string())
    }

    const FIVE_O_THREE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

    #[tokio::test]
    async fn server_errors_are_retried_until_an_answer() {
        let (url, hits) = serve(vec![FIVE_O_THREE, FIVE_O_THREE, OK]).await;
        let p =
            Policy { timeout: Duration::from_secs(2), retries: 3, backoff: Duration::from_millis(10), max_body: 1024 };
        let (r, retried) = send(&crate::https_client(), &p, || get(&url)).await;
        let r = r.unwrap();
        assert_eq!((r.status, &r.body[..], retried), (200, &b"ok"[..], 2));
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_4xx_is_final() {
        let (url, hits) = serve(vec![FIVE_O_THREE, FIVE_O_THREE, FIVE_O_THREE]).await;
        let p =
            Policy { timeout: Duration::from_secs(2), retries: 1, backoff: Duration::from_millis(10), max_body: 1024 };
        let (r, retried) = send(&crate::https_client(), &p, || get(&url)).await;
        assert_eq!((r.unwrap().status, retried), (503, 1));
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        let (url, hits) =
            serve(vec![b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", OK]).await;
        let (r, retried) = send(&crate::https_client(), &p, || get(&url)).await;
        assert_eq!((r.unwrap().status, retried), (404, 0));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_oversized_answer_is_an_error() {
        let (url, _) =
            serve(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\n0123456789"]).await;
        let p = Policy { max_body: 4, ..Policy::once(Duration::from_secs(2)) };
        let (r, _) = send(&crate::https_client(), &p, || get(&url)).await;
        assert!(r.unwrap_err().contains("larger than 4 bytes"));
    }
}
