//! Documents varco fetches for itself (an issuer's JWKS, federation statements, an OP's tokens
//! and userinfo): bounded bodies, one deadline per call.

use crate::client::HttpsClient;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;
use varco_core::fetch::{Fetch, FetchError};

/// Largest document accepted.
const MAX_BODY: usize = 1 << 20;

/// [`Fetch`] over the process's shared client.
#[derive(Clone)]
pub struct Fetcher {
    client: HttpsClient,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").finish_non_exhaustive()
    }
}

impl Fetcher {
    pub fn new(client: HttpsClient) -> Self {
        Self { client }
    }
}

impl Fetcher {
    /// Sends `req`; the status and the bounded body, within `timeout`.
    async fn send(&self, req: http::Request<Full<Bytes>>, timeout: Duration) -> Result<(u16, Bytes), FetchError> {
        let attempt = async {
            let resp = self.client.request(req).await.map_err(|e| FetchError(format!("{e}")))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| FetchError("document larger than 1 MiB or cut short".to_owned()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, attempt).await.map_err(|_| FetchError("timed out".to_owned()))?
    }
}

fn request(method: http::Method, url: &str) -> Result<http::request::Builder, FetchError> {
    let uri: http::Uri = url.parse().map_err(|e| FetchError(format!("bad URL: {e}")))?;
    Ok(http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "varco"))
}

#[async_trait]
impl Fetch for Fetcher {
    async fn get(&self, url: &str, timeout: Duration) -> Result<Bytes, FetchError> {
        let req =
            request(http::Method::GET, url)?.body(Full::new(Bytes::new())).map_err(|e| FetchError(e.to_string()))?;
        match self.send(req, timeout).await? {
            (200, body) => Ok(body),
            (status, _) => Err(FetchError(format!("answered {status}"))),
        }
    }

    async fn post_form(&self, url: &str, form: String, timeout: Duration) -> Result<(u16, Bytes), FetchError> {
        let req = request(http::Method::POST, url)?
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| FetchError(e.to_string()))?;
        self.send(req, timeout).await
    }

    async fn get_bearer(&self, url: &str, token: &str, timeout: Duration) -> Result<(u16, Bytes), FetchError> {
        let mut auth = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| FetchError("the access token is not header text".to_owned()))?;
        auth.set_sensitive(true);
        let req = request(http::Method::GET, url)?
            .header(http::header::AUTHORIZATION, auth)
            .body(Full::new(Bytes::new()))
            .map_err(|e| FetchError(e.to_string()))?;
        self.send(req, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP/1.1 server on an ephemeral port answering `answer` to the first request.
    async fn serve_once(answer: &'static [u8]) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(answer).await.unwrap();
        });
        format!("http://{addr}/jwks.json")
    }

    #[tokio::test]
    async fn a_200_answer_is_the_document() {
        let url = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"keys\":[]}").await;
        let f = Fetcher::new(crate::https_client());
        assert_eq!(&f.get(&url, Duration::from_secs(2)).await.unwrap()[..], b"{\"keys\":[]}");
    }

    #[tokio::test]
    async fn other_statuses_and_silence_are_errors() {
        let url = serve_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
        let f = Fetcher::new(crate::https_client());
        assert_eq!(f.get(&url, Duration::from_secs(2)).await.unwrap_err().0, "answered 404");
        // A listener that never answers: the timeout decides.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let e = f.get(&url, Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(e.0, "timed out");
        assert!(f.get("not a url", Duration::from_secs(1)).await.is_err());
    }
}
