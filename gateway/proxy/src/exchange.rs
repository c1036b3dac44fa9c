//! Admission to an upstream pool and the buffered exchange of store-and-forward routes.
//!
//! [`admit`] is the one place that takes a pool's concurrency slot, asks its breaker, picks a
//! healthy server not tried yet and clips the peer's timeouts to what is left of the route's
//! total budget: pingora's `upstream_peer` phase and [`forward_buffered`] both call it.

use crate::ctx::RequestCtx;
use crate::runtime::Runtime;
use crate::shared::Shared;
use crate::upstream::{Pool, Slot};
use bytes::Bytes;
use http::header::HeaderName;
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::ErrorType;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use std::sync::Arc;
use std::time::Duration;
use varco_core::{AdapterResponse, Problem, ProblemKind};

/// Admits one attempt of the request to `pool`: the server index and its peer, timeouts
/// clipped to the budget left. `allow_same` lets a stale pooled connection's server be tried
/// again.
pub fn admit(pool: &Pool, ctx: &mut RequestCtx, allow_same: bool) -> Result<(usize, HttpPeer), Problem> {
    let left = pool.total_timeout.saturating_sub(ctx.start.elapsed());
    if left.is_zero() {
        return Err(Problem::new(
            ProblemKind::GatewayTimeout,
            format!("upstream `{}` did not answer within the total budget", pool.name),
        ));
    }
    if ctx.pool_slot.is_none() {
        let Some(slot) = Slot::acquire(&pool.in_flight, pool.max_concurrent) else {
            let p = Problem::new(
                ProblemKind::Overloaded,
                format!("upstream `{}` has its maximum of requests in flight", pool.name),
            );
            return Err(p.retry_after(1));
        };
        ctx.pool_slot = Some(slot);
    }
    if let Some(b) = &pool.breaker {
        if let Err(wait) = b.allow() {
            let p = Problem::new(
                ProblemKind::CircuitOpen,
                format!("upstream `{}` failed repeatedly; varco stops calling it for a while", pool.name),
            );
            return Err(p.retry_after(wait.min(u64::from(u32::MAX)) as u32));
        }
    }
    let tried: &[usize] = if allow_same { &[] } else { ctx.tried.as_slice() };
    let Some(i) = pool.select(ctx.hash, tried) else {
        let p =
            Problem::new(ProblemKind::UpstreamUnavailable, format!("no healthy server in upstream `{}`", pool.name));
        return Err(p.retry_after(5));
    };
    ctx.tried.push(i);
    ctx.server = Some(i);
    crate::spans::attempt(ctx, pool, i);
    let mut peer = pool.servers[i].peer.clone();
    let clip = |d: Option<Duration>| Some(d.map_or(left, |d| d.min(left)));
    peer.options.connection_timeout = clip(peer.options.connection_timeout);
    peer.options.total_connection_timeout = clip(peer.options.total_connection_timeout);
    peer.options.read_timeout = clip(peer.options.read_timeout);
    Ok((i, peer))
}

/// Whether another attempt may go to a server not tried yet.
pub fn retry_possible(ctx: &RequestCtx, pool: &Pool) -> bool {
    (ctx.tried.count() as u32) <= pool.retries
        && (0..pool.servers.len()).any(|i| !ctx.tried.as_slice().contains(&i) && pool.is_available(i))
}

pub fn circuit_opened(shared: &Shared, ctx: &RequestCtx, pool: &Pool) {
    let tenant = ctx.rt.as_ref().and_then(|rt| ctx.tenant(rt)).map_or("", |t| t.id.as_str());
    tracing::warn!(tenant = %tenant, upstream = %pool.name, "circuit opened after repeated failures");
    shared.metrics.circuit_opened.with_label_values(&[tenant, &pool.name]).inc();
}

/// Passive health and the breaker after a failed attempt.
pub fn note_failure(shared: &Shared, ctx: &RequestCtx) {
    let Some(rt) = &ctx.rt else { return };
    let (Some(pool), Some(i)) = (ctx.pool(rt), ctx.server) else { return };
    note_failure_of(shared, ctx, pool, i);
}

/// Server `i` of `pool` failed an attempt.
fn note_failure_of(shared: &Shared, ctx: &RequestCtx, pool: &Pool, i: usize) {
    let Some(t) = ctx.rt.as_ref().and_then(|rt| ctx.tenant(rt)) else { return };
    let tenant = &t.id;
    shared.metrics.upstream_failures.with_label_values(&[tenant, &pool.name]).inc();
    if pool.breaker.as_ref().is_some_and(|b| b.record(false)) {
        circuit_opened(shared, ctx, pool);
    }
    if pool.record_failure(i) {
        shared.metrics.ejections.with_label_values(&[tenant, &pool.name]).inc();
        tracing::warn!(tenant = %tenant, upstream = %pool.name, server = %pool.servers[i].name, "server ejected after consecutive failures");
    }
}

/// Passive health and the breaker after an answer: a status of `passive.statuses` is a
/// failure of the server that gave it (ejected after `max_failures` in a row) and of the pool
/// (the breaker); any other answer shows the server works.
pub fn note_answer(shared: &Shared, ctx: &RequestCtx, pool: &Pool, server: usize, status: u16) {
    if pool.failure_statuses.contains(&status) {
        note_failure_of(shared, ctx, pool, server);
        return;
    }
    pool.record_success(server);
    if pool.breaker.as_ref().is_some_and(|b| b.record(true)) {
        circuit_opened(shared, ctx, pool);
    }
}

/// The largest answer a store-and-forward route buffers: 16 MiB, or the route's body limit if larger.
fn max_response(rt: &Runtime, ctx: &RequestCtx) -> u64 {
    ctx.route(rt).map_or(16 << 20, |r| r.max_body_bytes.max(16 << 20))
}

static HOP_BY_HOP: [HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    HeaderName::from_static("keep-alive"),
    http::header::UPGRADE,
    http::header::TE,
];

/// Sends a fully read request to the route's pool and reads the whole answer; a failed
/// connection is tried on another server (nothing was sent yet).
pub async fn forward_buffered(
    shared: &Shared,
    session: &Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    body: Bytes,
) -> Result<AdapterResponse, Problem> {
    let prepare = |ctx: &RequestCtx| -> pingora_error::Result<RequestHeader> {
        let mut up = session.req_header().clone();
        up.remove_header(&http::header::TRANSFER_ENCODING);
        if body.is_empty() && !up.method.as_str().starts_with('P') {
            up.remove_header(&http::header::CONTENT_LENGTH);
        } else {
            up.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        }
        crate::forwarding::upstream_request(rt, ctx, &mut up)?;
        Ok(up)
    };
    forward(shared, ctx, rt, &prepare, body.clone()).await
}

/// Sends a mediator's call to the route's pool, as [`forward_buffered`] does the caller's
/// request: the caller's `Host`, the call's method, target and headers, and what the gateway
/// adds to every upstream request (forwarding, trace context, the verified identity).
pub async fn forward_call(
    shared: &Shared,
    session: &Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    call: varco_core::UpstreamCall,
) -> Result<AdapterResponse, Problem> {
    let prepare = |ctx: &RequestCtx| -> pingora_error::Result<RequestHeader> {
        let mut up = RequestHeader::build(call.method.clone(), b"/", Some(call.headers.len() + 8))?;
        if let Some(h) = session.req_header().headers.get(http::header::HOST) {
            up.insert_header(http::header::HOST, h.clone())?;
        }
        for (k, v) in &call.headers {
            up.insert_header(k.clone(), v.clone())?;
        }
        if !call.body.is_empty() || call.method.as_str().starts_with('P') {
            up.insert_header(http::header::CONTENT_LENGTH, call.body.len())?;
        }
        crate::forwarding::upstream_request(rt, ctx, &mut up)?;
        // Set after the forwarding rewrite, which takes the tenant prefix off the caller's path.
        let uri = http::Uri::try_from(call.path_and_query.as_str())
            .map_err(|_| pingora_error::Error::new(ErrorType::InternalError))?;
        up.set_uri(uri);
        Ok(up)
    };
    forward(shared, ctx, rt, &prepare, call.body.clone()).await
}

/// The attempts of a buffered exchange: `prepare` makes each attempt's request header.
async fn forward(
    shared: &Shared,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    prepare: &(dyn Fn(&RequestCtx) -> pingora_error::Result<RequestHeader> + Sync),
    body: Bytes,
) -> Result<AdapterResponse, Problem> {
    let Some(pool) = ctx.pool(rt).cloned() else {
        return Err(Problem::new(ProblemKind::Internal, "the route has no upstream"));
    };
    loop {
        let (i, peer) = admit(&pool, ctx, false)?;
        let Ok(up) = prepare(ctx) else {
            return Err(Problem::new(ProblemKind::Internal, "could not prepare the upstream request"));
        };
        let left = pool.total_timeout.saturating_sub(ctx.start.elapsed());
        let max = usize::try_from(max_response(rt, ctx)).unwrap_or(usize::MAX);
        let res = tokio::time::timeout(left, exchange(&shared.connector, &peer, up, body.clone(), max)).await;
        let name = format!("upstream `{}` server {}", pool.name, pool.servers[i].name);
        match res {
            Ok(Ok((h, b))) => {
                note_answer(shared, ctx, &pool, i, h.status.as_u16());
                crate::spans::attempt_answered(ctx, h.status.as_u16());
                let headers = h
                    .headers
                    .iter()
                    .filter(|(k, _)| !HOP_BY_HOP.contains(k) && *k != http::header::CONTENT_LENGTH)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                return Ok(AdapterResponse { status: h.status.as_u16(), headers, body: b });
            }
            Ok(Err(e)) => {
                note_failure(shared, ctx);
                crate::spans::attempt_failed(ctx, e.etype().as_str());
                let connect = matches!(
                    e.etype(),
                    ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectError
                );
                if connect && retry_possible(ctx, &pool) {
                    continue;
                }
                let p = match e.etype() {
                    ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                        Problem::new(ProblemKind::GatewayTimeout, format!("{name} did not answer in time"))
                    }
                    _ => Problem::new(ProblemKind::BadGateway, format!("{name} failed: {}", e.etype().as_str()))
                        .retry_after(1),
                };
                return Err(p);
            }
            Err(_) => {
                note_failure(shared, ctx);
                crate::spans::attempt_failed(ctx, "total budget exceeded");
                return Err(Problem::new(
                    ProblemKind::GatewayTimeout,
                    format!("{name} did not answer within the total budget"),
                ));
            }
        }
    }
}

/// One buffered exchange with an upstream peer: the whole request body goes out, the whole
/// answer (up to `max_body` bytes) comes back. For store-and-forward routes (ModI), where
/// the answer must be read before it can be signed.
async fn exchange(
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
