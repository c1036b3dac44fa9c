//! Writing varco's own answers (problems and adapter responses) to a downstream session.

use crate::ctx::RequestCtx;
use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use varco_core::problem::PROBLEM_JSON;
use varco_core::{AdapterResponse, Problem, ProblemKind, TraceContext};

fn ids(trace: Option<&TraceContext>) -> (&str, &str) {
    trace.map(|t| (t.request_id(), t.trace_id.as_str())).unwrap_or(("", ""))
}

/// The `Access-Control-*` headers of an admitted origin, on every answer (a web app must be
/// able to read its errors too). The back-office's own are replaced: varco's policy decides.
pub fn cors_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> pingora_error::Result<()> {
    if let Some(list) = &ctx.cors {
        for (k, v) in list {
            h.insert_header(k.clone(), v.clone())?;
        }
    }
    Ok(())
}

/// Answers a CORS preflight: 204 with the policy's headers.
pub async fn preflight(
    session: &mut Session,
    ctx: &RequestCtx,
    headers: crate::cors::Headers,
) -> pingora_error::Result<()> {
    let mut h = ResponseHeader::build(204, Some(headers.len() + 2))?;
    for (k, v) in headers {
        h.insert_header(k, v)?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, 0)?;
    h.insert_header("x-request-id", ids(ctx.trace.as_ref()).0)?;
    write(session, h, Bytes::new()).await
}

/// The route's `X-RateLimit-*` on every answer once its limits ran (errors too: a caller that
/// gets a 502 or a 429 `quota-exhausted` still needs to pace itself), unless already set.
fn rate_limit_headers(h: &mut ResponseHeader, ctx: &RequestCtx) -> pingora_error::Result<()> {
    if let Some(s) = ctx.state.rate_limit {
        for (k, v) in s.header_values() {
            if !h.headers.contains_key(k) {
                h.insert_header(k, v)?;
            }
        }
    }
    Ok(())
}

/// Writes a problem+json answer. `close` ends the connection afterwards (framing errors, where
/// the rest of the stream cannot be trusted).
pub async fn problem(session: &mut Session, ctx: &RequestCtx, p: &Problem, close: bool) -> pingora_error::Result<()> {
    let (request_id, trace_id) = ids(ctx.trace.as_ref());
    crate::spans::problem(ctx, p);
    if let Some(rt) = &ctx.rt {
        let tenant = ctx.tenant(rt).map_or("", |t| t.id.as_str());
        let route = ctx.route(rt).map_or("", |r| r.name.as_str());
        rt.problems.with_label_values(&[tenant, route, p.kind.slug()]).inc();
    }
    // An adapter whose callers expect their own error shape (SOAP) answers in it.
    let method = &session.req_header().method;
    let own = match ctx.mediator() {
        Some(m) => m.problem_answer(method, p, request_id, trace_id),
        None => ctx.adapter().and_then(|a| a.problem_answer(method, p, request_id, trace_id)),
    };
    if let Some(mut r) = own {
        if let Some(s) = p.retry_after {
            r.headers.push((http::header::RETRY_AFTER, s.into()));
        }
        if close {
            session.set_keepalive(None);
            r.headers.push((http::header::CONNECTION, http::HeaderValue::from_static("close")));
        }
        return adapter(session, ctx, r).await;
    }
    let instance = String::from_utf8_lossy(session.req_header().raw_path()).into_owned();
    let body = p.to_body(&instance, request_id, trace_id);
    let mut h = ResponseHeader::build(p.status(), Some(6))?;
    h.insert_header(http::header::CONTENT_TYPE, PROBLEM_JSON)?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    h.insert_header("x-request-id", request_id)?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(s) = p.retry_after {
        h.insert_header(http::header::RETRY_AFTER, s)?;
    }
    if let Some(a) = &p.allow {
        h.insert_header(http::header::ALLOW, a.as_str())?;
    }
    for (k, v) in &p.headers {
        h.insert_header(k.clone(), v.clone())?;
    }
    rate_limit_headers(&mut h, ctx)?;
    cors_headers(&mut h, ctx)?;
    if close {
        session.set_keepalive(None);
        h.insert_header(http::header::CONNECTION, "close")?;
    }
    write(session, h, Bytes::from(body)).await
}

/// Writes an adapter's answer.
pub async fn adapter(session: &mut Session, ctx: &RequestCtx, r: AdapterResponse) -> pingora_error::Result<()> {
    let mut h = ResponseHeader::build(r.status, Some(r.headers.len() + 5))?;
    for (k, v) in r.headers {
        h.append_header(k, v)?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, r.body.len())?;
    h.insert_header("x-request-id", ids(ctx.trace.as_ref()).0)?;
    rate_limit_headers(&mut h, ctx)?;
    cors_headers(&mut h, ctx)?;
    write(session, h, r.body).await
}

/// How long one chunk of a streamed answer may wait for the caller to take it.
const STREAM_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes a streamed answer: the header, then each chunk as the adapter yields it, until the
/// stream ends or the caller goes away (a failed write ends it quietly).
pub async fn stream(
    session: &mut Session,
    ctx: &RequestCtx,
    head: AdapterResponse,
    mut body: varco_core::BodyStream,
) -> pingora_error::Result<()> {
    use futures::StreamExt;
    let mut h = ResponseHeader::build(head.status, Some(head.headers.len() + 5))?;
    for (k, v) in head.headers {
        h.append_header(k, v)?;
    }
    h.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    h.insert_header("x-request-id", ids(ctx.trace.as_ref()).0)?;
    rate_limit_headers(&mut h, ctx)?;
    cors_headers(&mut h, ctx)?;
    // Not reused afterwards: the stream ends when one side closes.
    session.set_keepalive(None);
    session.write_response_header(Box::new(h), false).await?;
    while let Some(chunk) = body.next().await {
        // A caller that takes nothing for this long is gone or stalled: free its stream.
        match tokio::time::timeout(STREAM_WRITE_TIMEOUT, session.write_response_body(Some(chunk), false)).await {
            Ok(Ok(())) => {}
            _ => return Ok(()),
        }
    }
    let _ = session.write_response_body(None, true).await;
    Ok(())
}

async fn write(session: &mut Session, h: ResponseHeader, body: Bytes) -> pingora_error::Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h), head_only).await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The problem a pingora error becomes; `None` when the caller is gone (nothing to answer).
/// `upstream` names the pool and server for the detail.
pub fn problem_for(e: &Error, upstream: &str) -> Option<Problem> {
    use ErrorType::*;
    let p = match (e.etype(), e.esource()) {
        (ConnectTimedout, _) => {
            Problem::new(ProblemKind::GatewayTimeout, format!("connecting to {upstream} timed out"))
        }
        (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => {
            Problem::new(ProblemKind::GatewayTimeout, format!("{upstream} did not answer in time"))
        }
        (ReadTimedout, ErrorSource::Downstream) => {
            Problem::new(ProblemKind::RequestTimeout, "the request body stalled; send it without long pauses")
        }
        (ReadError | WriteError | ConnectionClosed | WriteTimedout, ErrorSource::Downstream) => return None,
        (HTTPStatus(413), _) => Problem::new(ProblemKind::BodyTooLarge, "the request body is too large"),
        (HTTPStatus(c), ErrorSource::Downstream) if *c < 500 => {
            Problem::new(ProblemKind::BadRequest, format!("malformed request: {e}"))
        }
        (_, ErrorSource::Upstream) => {
            Problem::new(ProblemKind::BadGateway, format!("{upstream} failed: {}", e.etype().as_str())).retry_after(1)
        }
        (_, ErrorSource::Downstream) => {
            Problem::new(ProblemKind::BadRequest, format!("malformed request: {}", e.etype().as_str()))
        }
        _ => Problem::new(ProblemKind::Internal, "internal error; the trace id finds it in the logs"),
    };
    Some(p)
}
