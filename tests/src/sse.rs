//! A server-sent-events client for tests: reads `text/event-stream` frame by frame.

use serde_json::Value;
use std::time::{Duration, Instant};

/// A server-sent-events reader over one HTTP/1.1 connection (hyper's client: chunked framing
/// decoded by an independent implementation).
pub struct Sse {
    pub status: u16,
    pub headers: http::HeaderMap,
    body: hyper::body::Incoming,
    buf: String,
    _conn: tokio::task::JoinHandle<()>,
}

impl Sse {
    pub async fn open(port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> Sse {
        use hyper_util::rt::TokioIo;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut b = http::Request::builder().uri(path).header("host", host);
        for (k, val) in headers {
            b = b.header(*k, *val);
        }
        let req = b.body(http_body_util::Empty::<bytes::Bytes>::new()).expect("request");
        let resp = send.send_request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        Sse { status: parts.status.as_u16(), headers: parts.headers, body, buf: String::new(), _conn: conn }
    }

    /// The next frame (blank-line terminated), comments included; `None` after `within`.
    pub async fn frame(&mut self, within: Duration) -> Option<String> {
        use http_body_util::BodyExt;
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let f = self.buf[..i].to_owned();
                self.buf.drain(..i + 2);
                return Some(f);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.body.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.push_str(std::str::from_utf8(&d).expect("utf-8"));
                    }
                }
                _ => return None,
            }
        }
    }

    /// The next event frame, as (id, type, event), skipping comments.
    pub async fn event(&mut self, within: Duration) -> Option<(String, String, Value)> {
        let deadline = Instant::now() + within;
        loop {
            let f = self.frame(deadline.checked_duration_since(Instant::now())?).await?;
            if f.starts_with(':') {
                continue;
            }
            let field = |name: &str| {
                f.lines()
                    .find_map(|l| l.strip_prefix(name).map(str::to_owned))
                    .unwrap_or_else(|| panic!("{name} in {f}"))
            };
            let data: Value = serde_json::from_str(&field("data: ")).expect("data is JSON");
            return Some((field("id: "), field("event: "), data));
        }
    }
}
