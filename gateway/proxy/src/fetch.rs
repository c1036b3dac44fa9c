//! A small HTTP(S) GET over pingora's connector, for documents varco fetches itself (JWKS).

use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use std::net::ToSocketAddrs;
use std::time::Duration;

const MAX_BODY: usize = 1 << 20;

/// GETs `url` and returns the body of a 200 answer.
pub async fn get(connector: &Connector, url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let tls = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("URL without host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = tokio::task::spawn_blocking({
        let host = host.clone();
        move || (host.as_str(), port).to_socket_addrs().ok().and_then(|mut a| a.next())
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| format!("cannot resolve {host}"))?;
    let mut peer = HttpPeer::new(addr, tls, host.clone());
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let attempt = async {
        let (mut session, _) = connector.get_http_session(&peer).await.map_err(|e| e.to_string())?;
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(|e| e.to_string())?;
        req.insert_header("host", host.as_str()).map_err(|e| e.to_string())?;
        req.insert_header("accept", "application/json").map_err(|e| e.to_string())?;
        req.insert_header("user-agent", "varco").map_err(|e| e.to_string())?;
        session.write_request_header(Box::new(req)).await.map_err(|e| e.to_string())?;
        session.finish_request_body().await.map_err(|e| e.to_string())?;
        session.read_response_header().await.map_err(|e| e.to_string())?;
        let status = session.response_header().map_or(0, |r| r.status.as_u16());
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err("document larger than 1 MiB".to_owned());
            }
        }
        if status != 200 {
            return Err(format!("answered {status}"));
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| "timed out".to_owned())?
}

/// One buffered exchange with an upstream peer: the whole request body goes out, the whole
/// answer (up to `max_body` bytes) comes back. For store-and-forward routes (ModI), where
/// the answer must be read before it can be signed.
pub async fn exchange(
    connector: &Connector,
    peer: &HttpPeer,
    req: RequestHeader,
    body: bytes::Bytes,
    max_body: usize,
) -> pingora_error::Result<(pingora_http::ResponseHeader, bytes::Bytes)> {
    use pingora_error::{Error, ErrorType};
    let (mut session, _) = connector.get_http_session(peer).await?;
    session.write_request_header(Box::new(req)).await?;
    if !body.is_empty() {
        session.write_request_body(body, true).await?;
    }
    session.finish_request_body().await?;
    session.read_response_header().await?;
    let header = session
        .response_header()
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))?;
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = session.read_response_body().await? {
        if out.len() + chunk.len() > max_body {
            return Err(Error::explain(
                ErrorType::Custom("response-too-large"),
                format!("the answer is larger than {max_body} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    connector.release_http_session(session, peer, None).await;
    Ok((header, out.freeze()))
}
