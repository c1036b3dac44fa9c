//! One buffered exchange with an upstream pool's server over pingora's connector (the pool's
//! own TLS settings), for store-and-forward routes.

use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;

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
