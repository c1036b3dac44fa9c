//! Runs a route's steps (`runtime::Step`) in `request_filter`, in the order they were built:
//! who the caller is, rate limits, body limit, header rewrite, quotas, then ModI
//! store-and-forward or the adapter. A step either lets the request go on or answers it;
//! a route whose steps all pass goes on to its upstream pool through pingora.

use crate::ctx::RequestCtx;
use crate::respond;
use crate::runtime::{Runtime, Step, Target};
use crate::shared::Shared;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use pingora_error::Result;
use pingora_proxy::Session;
use std::sync::Arc;
use varco_auth::ModiVerifier;
use varco_core::hash::hash_bytes;
use varco_core::{Adapter, AdapterRequest, Answer, Problem, ProblemKind};

/// Runs the route's steps; true when one of them answered the request.
///
/// The steps that wait on I/O or answer the request run as futures of their own (boxed): their
/// states would otherwise be part of this future, which every request builds and moves in
/// whole, the plain route too (a large `request_filter` future was ~12k instructions of
/// `memcpy` per request).
pub async fn run(shared: &Shared, session: &mut Session, ctx: &mut RequestCtx, rt: &Arc<Runtime>) -> Result<bool> {
    let (Some(t), Some(r)) = (ctx.tenant, ctx.route) else { return Ok(false) };
    let route = &rt.tenants[t].routes[r];
    for step in &route.steps {
        // A step that does not answer lets the request go on, or refuses it with a problem.
        let checked = match step {
            Step::Jwt { issuers, policy } => {
                crate::spans::step(ctx, "authenticate", None);
                let r = Box::pin(jwt(shared, session, ctx, rt, issuers, policy)).await;
                crate::spans::step_end(ctx, r.as_ref().err());
                // A ModI route's decision is its ModI step's, unless the voucher is refused.
                match (&route.auth, &r) {
                    (Some(a), Err(_)) => a.refused.inc(),
                    (Some(a), Ok(())) if a.method == "jwt" => a.allowed.inc(),
                    _ => {}
                }
                r
            }
            Step::Session { rp, acr_min } => {
                crate::spans::step(ctx, "authenticate", None);
                let r = Box::pin(crate::citizens::check(session, ctx, rt, rp, *acr_min)).await;
                let (checked, login) = match r {
                    Ok(()) => (Ok(()), None),
                    Err(crate::citizens::Refusal::Problem(p)) => (Err(p), None),
                    Err(crate::citizens::Refusal::Login(to)) => (Ok(()), Some(to)),
                };
                crate::spans::step_end(ctx, checked.as_ref().err());
                if let Some(a) = &route.auth {
                    if checked.is_ok() && login.is_none() {
                        a.allowed.inc()
                    } else {
                        a.refused.inc()
                    }
                }
                if let Some(location) = login {
                    let r = varco_core::AdapterResponse {
                        status: 302,
                        headers: vec![
                            (http::header::LOCATION, location),
                            (http::header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                        ],
                        body: Bytes::new(),
                    };
                    respond::adapter(session, ctx, r).await?;
                    return Ok(true);
                }
                checked
            }
            Step::ApiKey { header } => {
                let tenant = &rt.tenants[t];
                let checked = match tenant.api_keys.check(&session.req_header().headers, header, r) {
                    Ok(caller) => {
                        // The back-office gets who called, never the key.
                        session.req_header_mut().remove_header(header);
                        ctx.state.client_id = Some(caller.name);
                        ctx.forward = caller.headers;
                        Ok(())
                    }
                    Err(e) => Err(crate::authn::problem(e)),
                };
                if let Some(a) = &route.auth {
                    if checked.is_ok() {
                        a.allowed.inc()
                    } else {
                        a.refused.inc()
                    }
                }
                checked
            }
            Step::Filter(f) => f.on_request(session.req_header_mut(), &mut ctx.state),
            Step::Quota(q) => {
                crate::spans::step(ctx, "quota", None);
                let r = Box::pin(q.take(&session.req_header().headers, &ctx.state)).await;
                crate::spans::step_end(ctx, r.as_ref().err());
                r
            }
            // The terminal steps' spans end with the request (`spans::finish`).
            Step::Modi(m) => {
                crate::spans::step(ctx, "modi", None);
                return Box::pin(modi(shared, session, ctx, rt, m)).await;
            }
            Step::Adapter(a) => {
                crate::spans::step(ctx, "adapter", Some(a.kind()));
                return Box::pin(adapter(session, ctx, rt, a)).await;
            }
            Step::Mediate(m) => {
                crate::spans::step(ctx, "mediate", Some(m.kind()));
                return Box::pin(crate::mediation::run(shared, session, ctx, rt, m)).await;
            }
        };
        if let Err(p) = checked {
            respond::problem(session, ctx, &p, false).await?;
            return Ok(true);
        }
    }
    // An upstream route: the balancing key, read after the filters had their say.
    if let Target::Upstream(p) = route.target {
        if let Some(h) = &rt.tenants[t].pools[p].hash_header {
            ctx.hash = session.req_header().headers.get(h).map(|v| hash_bytes(v.as_bytes()));
        }
    }
    Ok(false)
}

/// A bearer JWT: verifies it, keeps the identity and signs varco's identity token.
async fn jwt(
    shared: &Shared,
    session: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Runtime,
    issuers: &[Arc<varco_auth::Issuer>],
    policy: &varco_config::JwtAccess,
) -> std::result::Result<(), Problem> {
    let Some(tenant) = ctx.tenant(rt) else { return Ok(()) };
    let id = varco_auth::authenticate(
        &shared.fetcher,
        &session.req_header().headers,
        issuers,
        policy,
        &tenant.id,
        &shared.reg.replay,
    )
    .await
    .map_err(crate::authn::problem)?;
    admit(ctx, rt, id)?;
    if !policy.forward_token {
        // The token stays with varco (removed before pingora copies the request for the
        // upstream; adapters do not see it either).
        session.req_header_mut().remove_header(&http::header::AUTHORIZATION);
    }
    Ok(())
}

/// Admits a verified caller: signs varco's identity token when the ente sends one, and keeps
/// the identity for the headers, the audit trail and the spans.
pub(crate) fn admit(
    ctx: &mut RequestCtx,
    rt: &Runtime,
    id: Arc<varco_core::Identity>,
) -> std::result::Result<(), Problem> {
    let Some(tenant) = ctx.tenant(rt) else { return Ok(()) };
    if let Some(signer) = tenant.identity.as_deref() {
        // Fail closed: a back-office that expects the signed identity never gets the
        // request without it.
        let withhold = ctx.route(rt).map_or(&[][..], |r| r.withhold.as_slice());
        let token = signer.sign(&tenant.id, &id, withhold).map_err(crate::authn::problem)?;
        ctx.identity_token = Some(
            HeaderValue::from_str(&token)
                .map_err(|_| Problem::new(ProblemKind::Internal, "varco could not sign the identity token"))?,
        );
    }
    ctx.state.subject = Some(id.subject.clone());
    ctx.state.client_id = id.client_id.clone();
    ctx.identity = Some(id);
    Ok(())
}

/// Reads the whole request body, up to `max` bytes.
pub(crate) async fn read_body(session: &mut Session, max: u64) -> Result<std::result::Result<Bytes, Problem>> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if (body.len() + chunk.len()) as u64 > max {
            return Ok(Err(Problem::new(ProblemKind::BodyTooLarge, format!("this route accepts at most {max} bytes"))));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body.freeze()))
}

/// The request as an adapter sees it (path below the tenant prefix).
pub(crate) fn adapter_request<'a>(
    session: &'a Session,
    ctx: &'a RequestCtx,
    tenant_id: &'a str,
    body: Bytes,
    traceparent: &'a [u8; 55],
) -> AdapterRequest<'a> {
    let req = session.req_header();
    let full = std::str::from_utf8(req.raw_path()).unwrap_or("/");
    let below = full.get(ctx.prefix_len..).unwrap_or("/");
    let (path, query) = match below.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (below, None),
    };
    AdapterRequest {
        method: &req.method,
        path: if path.is_empty() { "/" } else { path },
        prefix: full.get(..ctx.prefix_len).unwrap_or(""),
        tls: ctx.state.tls,
        query,
        headers: &req.headers,
        body,
        tenant_id,
        request_id: ctx.request_id(),
        traceparent: std::str::from_utf8(traceparent).unwrap_or(""),
        caller: ctx.identity.as_deref(),
        client_id: ctx.state.client_id.as_deref(),
    }
}

/// A ModI route, store-and-forward: reads the whole body, checks `Digest`, the signature and
/// the tracking evidence against it, calls the target with the body and, when the route
/// asks, signs the answer (failing closed when it cannot).
async fn modi(
    shared: &Shared,
    session: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    modi: &ModiVerifier,
) -> Result<bool> {
    let (Some(tenant), Some(route)) = (ctx.tenant(rt), ctx.route(rt)) else { return Ok(false) };
    let Some(id) = ctx.identity.clone() else { return Ok(false) };
    let body = match read_body(session, route.max_body_bytes).await? {
        Ok(b) => b,
        Err(p) => {
            respond::problem(session, ctx, &p, true).await?;
            return Ok(true);
        }
    };
    let checked = modi
        .check_request(&session.req_header().headers, &body, &id, &shared.fetcher, &shared.reg.replay)
        .await
        .map_err(crate::authn::problem);
    if let Some(a) = &route.auth {
        if checked.is_ok() {
            a.allowed.inc()
        } else {
            a.refused.inc()
        }
    }
    let audit = match checked {
        Ok(a) => a,
        Err(p) => {
            respond::problem(session, ctx, &p, false).await?;
            return Ok(true);
        }
    };
    // Who, where, at which level, which body: the audit trail's record of the call (`logging`).
    let digest = session.req_header().headers.get("digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
    ctx.evidence = Some(Box::new(match &audit {
        Some(a) => crate::ctx::Evidence {
            user_id: a.user_id.clone(),
            user_location: a.user_location.clone(),
            loa: a.loa.clone(),
            jti: a.jti.clone(),
            digest,
        },
        None => crate::ctx::Evidence { digest, ..Default::default() },
    }));
    if let Some(a) = &audit {
        use varco_core::headers as names;
        for (name, v) in [
            (&names::AUDIT_USER_ID, &a.user_id),
            (&names::AUDIT_USER_LOCATION, &a.user_location),
            (&names::AUDIT_LOA, &a.loa),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                ctx.forward.push((name.clone(), v));
            }
        }
    }
    let result = match &route.target {
        Target::Adapter(adapter) => {
            let tp = crate::spans::traceparent(ctx);
            // Validation keeps streaming adapters off ModI routes: an answer must be whole to be signed.
            match adapter.call(adapter_request(session, ctx, &tenant.id, body, &tp)).await {
                Ok(answer) => answer.into_body().ok_or_else(|| {
                    Problem::new(ProblemKind::Internal, "a streaming adapter cannot answer a ModI route")
                }),
                Err(p) => Err(p),
            }
        }
        Target::Upstream(_) => crate::exchange::forward_buffered(shared, session, ctx, rt, body).await,
        // Refused by validation: the mediated answer is not the back-office's to sign.
        Target::Mediated { .. } => Err(Problem::new(ProblemKind::Internal, "a mediated route cannot be a ModI route")),
    };
    match result {
        Ok(mut resp) => {
            if modi.signs_responses() {
                let ct = resp.headers.iter().find(|(k, _)| k == http::header::CONTENT_TYPE).map(|(_, v)| v.clone());
                match modi.sign_response(ct.as_ref(), &resp.body, &id) {
                    Ok(signed) => {
                        resp.headers.retain(|(k, _)| !signed.iter().any(|(s, _)| s == k));
                        resp.headers.extend(signed);
                    }
                    Err(e) => {
                        // Fail closed: an e-service that signs its answers never answers unsigned.
                        tracing::error!(tenant = %tenant.id, route = %route.name, error = %e, "answer not signed; refused");
                        let p = crate::authn::problem(e);
                        respond::problem(session, ctx, &p, false).await?;
                        return Ok(true);
                    }
                }
            }
            if let Some(s) = ctx.state.rate_limit {
                resp.headers.extend(s.headers());
            }
            respond::adapter(session, ctx, resp).await?;
        }
        Err(p) => respond::problem(session, ctx, &p, false).await?,
    }
    Ok(true)
}

/// An adapter route: bounded body read, then `Adapter::call`; a body is answered at once, a
/// stream chunk by chunk as it comes.
async fn adapter(
    session: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Runtime,
    adapter: &Arc<dyn Adapter>,
) -> Result<bool> {
    let (Some(tenant), Some(route)) = (ctx.tenant(rt), ctx.route(rt)) else { return Ok(false) };
    let body = match read_body(session, route.max_body_bytes).await? {
        Ok(b) => b,
        Err(p) => {
            respond::problem(session, ctx, &p, true).await?;
            return Ok(true);
        }
    };
    let tp = crate::spans::traceparent(ctx);
    let areq = adapter_request(session, ctx, &tenant.id, body, &tp);
    match adapter.call(areq).await {
        Ok(Answer::Body(mut resp)) => {
            if let Some(s) = ctx.state.rate_limit {
                resp.headers.extend(s.headers());
            }
            respond::adapter(session, ctx, resp).await?
        }
        Ok(Answer::Stream(head, body)) => {
            // A stream lives as long as its caller: it is bounded by the route's `max_streams`,
            // not by the ente's `max_concurrent` requests, and a SIGTERM drain does not wait
            // for it (the caller reconnects elsewhere).
            ctx.tenant_slot = None;
            ctx.in_flight = None;
            respond::stream(session, ctx, head, body).await?
        }
        Err(p) => respond::problem(session, ctx, &p, false).await?,
    }
    Ok(true)
}
