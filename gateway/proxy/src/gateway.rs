//! The one `ProxyHttp` implementation. Each phase does little itself: it calls the hygiene
//! checks, the tenant/route indexes, the route's filter chain, the pool or the adapter.
//! Per-request state lives in [`RequestCtx`].

use crate::respond;
use crate::runtime::{RouteAccess, Runtime, Target};
use crate::text::{fmt_ip, fmt_status};
use crate::upstream::{Pool, Slot, Tried};
use crate::Shared;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::HeaderName;
use http::HeaderValue;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};
use varco_core::hash::hash_bytes;
use varco_core::headers::{FORWARDED, TRACEPARENT, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
use varco_core::{hygiene, AdapterRequest, FilterState, Problem, ProblemKind, TraceContext};

/// The gateway service: shared state behind an `Arc`, cheap to clone per listener.
#[derive(Clone)]
pub struct Gateway {
    pub shared: Arc<Shared>,
}

/// Everything one request carries from phase to phase.
pub struct RequestCtx {
    start: Instant,
    rt: Option<Arc<Runtime>>,
    tenant: Option<usize>,
    route: Option<usize>,
    trace: Option<TraceContext>,
    state: FilterState,
    /// Bytes of the path owned by the tenant prefix (removed before forwarding).
    prefix_len: usize,
    hash: Option<u64>,
    tried: Tried,
    server: Option<usize>,
    body_seen: u64,
    /// A problem decided in an earlier phase, answered by `fail_to_proxy`.
    problem: Option<Problem>,
    /// The caller's Host (or :authority), as sent.
    host: Option<HeaderValue>,
    /// `X-Request-Id` for upstream and response (the caller's, or the trace id).
    request_id: Option<HeaderValue>,
    /// The last failure was a stale pooled connection: the same server may be tried again.
    allow_same: bool,
    /// `None` once the request became a long-lived stream (a drain does not wait for those).
    in_flight: Option<crate::InFlight>,
    /// Concurrency units held for the tenant and the pool (given back on drop).
    tenant_slot: Option<Slot>,
    pool_slot: Option<Slot>,
    /// The verified caller (JWT routes); its headers go upstream.
    identity: Option<Arc<varco_core::Identity>>,
    /// varco's signed identity token for the back-office, when configured.
    identity_token: Option<HeaderValue>,
    /// Further identity headers for the back-office (API-key caller, ModI audit).
    forward: Vec<(HeaderName, HeaderValue)>,
}

impl RequestCtx {
    fn pool<'a>(&self, rt: &'a Runtime) -> Option<&'a Arc<Pool>> {
        let t = &rt.tenants[self.tenant?];
        match t.routes[self.route?].target {
            Target::Upstream(p) => t.pools.get(p),
            Target::Adapter(_) => None,
        }
    }
}

fn fail(p: Problem, ctx: &mut RequestCtx) -> Box<Error> {
    let e = Error::explain(ErrorType::Custom("varco-problem"), p.detail.clone());
    ctx.problem = Some(p);
    e
}

impl Gateway {
    /// Hygiene, tenant, route and filter chain. `Err(problem)` is answered by the caller.
    #[allow(clippy::result_large_err)] // the error path answers once per request; no need to box
    fn route(&self, session: &mut Session, ctx: &mut RequestCtx, rt: &Runtime) -> Result<(), (Problem, bool)> {
        let req = session.req_header();
        hygiene::check_framing(&req.headers).map_err(|p| (p, true))?;
        hygiene::check_header_size(&req.headers).map_err(|p| (p, true))?;
        hygiene::check_method(&req.method).map_err(|p| (p, false))?;
        hygiene::check_path(req.raw_path()).map_err(|p| (p, false))?;
        let host_raw = req
            .headers
            .get(http::header::HOST)
            .map(|v| v.as_bytes())
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
        let host = host_raw
            .and_then(crate::router::host_of)
            .ok_or_else(|| (Problem::new(ProblemKind::BadRequest, "the request has no valid Host"), true))?;
        let path = std::str::from_utf8(req.raw_path()).map_err(|_| {
            (Problem::new(ProblemKind::BadRequest, "the path is not valid UTF-8; percent-encode it"), false)
        })?;
        let (tenant, prefix_len) = rt.index.lookup(&host, path).ok_or_else(|| {
            (Problem::new(ProblemKind::UnknownTenant, format!("no ente answers on host `{host}` for this path")), false)
        })?;
        ctx.host = match req.headers.get(http::header::HOST) {
            Some(h) => Some(h.clone()),
            None => req.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        ctx.tenant = Some(tenant);
        let t = &rt.tenants[tenant];
        ctx.tenant_slot = Some(Slot::acquire(&t.in_flight, t.max_concurrent).ok_or_else(|| {
            let p =
                Problem::new(ProblemKind::Overloaded, format!("ente `{}` has its maximum of requests in flight", t.id));
            (p.retry_after(1), false)
        })?);
        let sub = &path[prefix_len..];
        let route = t.table.lookup(&req.method, if sub.is_empty() { "/" } else { sub }).map_err(|p| (p, false))?;
        ctx.route = Some(route);
        ctx.prefix_len = prefix_len;
        hygiene::strip_identity_headers(session.req_header_mut());
        Ok(())
    }

    /// The route's filter chain (rate limits, body limit, header rewrite), after the caller is
    /// known so that limits can count per subject or client.
    fn run_chain(&self, session: &mut Session, ctx: &mut RequestCtx, rt: &Runtime) -> Result<(), Problem> {
        let (Some(t), Some(r)) = (ctx.tenant, ctx.route) else { return Ok(()) };
        let tenant = &rt.tenants[t];
        let r = &tenant.routes[r];
        let req = session.req_header_mut();
        for f in &r.filters {
            f.on_request(req, &mut ctx.state)?;
        }
        if let Target::Upstream(p) = r.target {
            if let Some(h) = &tenant.pools[p].hash_header {
                ctx.hash = req.headers.get(h).map(|v| hash_bytes(v.as_bytes()));
            }
        }
        Ok(())
    }

    /// A ModI route, store-and-forward: reads the whole body, checks `Digest`, the signature and
    /// the tracking evidence against it, calls the target with the body and, when the route
    /// asks, signs the answer. False when the route has no ModI patterns.
    async fn modi_route(&self, session: &mut Session, ctx: &mut RequestCtx, rt: &Arc<Runtime>) -> Result<bool> {
        let (Some(t), Some(r)) = (ctx.tenant, ctx.route) else { return Ok(false) };
        let tenant = &rt.tenants[t];
        let route = &tenant.routes[r];
        let RouteAccess::Jwt { modi: Some(modi), .. } = &route.access else { return Ok(false) };
        let Some(id) = ctx.identity.clone() else { return Ok(false) };
        let body = match read_body(session, route.max_body_bytes).await? {
            Ok(b) => b,
            Err(p) => {
                respond::problem(session, ctx.trace.as_ref(), &p, true).await?;
                return Ok(true);
            }
        };
        let checked = modi
            .check_request(&session.req_header().headers, &body, &id, &self.shared.fetcher, &self.shared.reg.replay)
            .await
            .map_err(crate::authn::problem);
        let audit = match checked {
            Ok(a) => a,
            Err(p) => {
                respond::problem(session, ctx.trace.as_ref(), &p, false).await?;
                return Ok(true);
            }
        };
        if let Some(a) = &audit {
            // The audit trail of the interop call: who, where, at which level, under which purpose.
            tracing::info!(
                target: "varco::audit",
                tenant = %tenant.id, route = %route.name,
                request_id = %ctx.trace.as_ref().map_or("", |t| t.request_id()),
                client_id = %id.client_id.as_deref().unwrap_or(""),
                purpose_id = %id.purpose_id.as_deref().unwrap_or(""),
                user_id = %a.user_id, user_location = %a.user_location, loa = %a.loa, jti = %a.jti,
                "ModI tracking evidence verified"
            );
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
                let tp = ctx.trace.as_ref().map_or([b'0'; 55], |t| t.traceparent());
                let req = session.req_header();
                let full = std::str::from_utf8(req.raw_path()).unwrap_or("/");
                let (path, query) = match full[ctx.prefix_len..].split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (&full[ctx.prefix_len..], None),
                };
                adapter
                    .call(AdapterRequest {
                        method: &req.method,
                        path: if path.is_empty() { "/" } else { path },
                        query,
                        headers: &req.headers,
                        body,
                        tenant_id: &tenant.id,
                        request_id: ctx.trace.as_ref().map_or("", |t| t.request_id()),
                        traceparent: std::str::from_utf8(&tp).unwrap_or(""),
                    })
                    .await
            }
            Target::Upstream(_) => self.forward_buffered(session, ctx, rt, body).await,
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
                            respond::problem(session, ctx.trace.as_ref(), &p, false).await?;
                            return Ok(true);
                        }
                    }
                }
                if let Some(s) = ctx.state.rate_limit {
                    resp.headers.extend(s.headers());
                }
                respond::adapter(session, ctx.trace.as_ref(), resp).await?;
            }
            Err(p) => respond::problem(session, ctx.trace.as_ref(), &p, false).await?,
        }
        Ok(true)
    }

    /// Sends a fully read request to the route's pool and reads the whole answer; a failed
    /// connection is tried on another server (nothing was sent yet).
    async fn forward_buffered(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        rt: &Arc<Runtime>,
        body: Bytes,
    ) -> std::result::Result<varco_core::AdapterResponse, Problem> {
        let Some(pool) = ctx.pool(rt).cloned() else {
            return Err(Problem::new(ProblemKind::Internal, "the route has no upstream"));
        };
        let Some(slot) = Slot::acquire(&pool.in_flight, pool.max_concurrent) else {
            let p = Problem::new(
                ProblemKind::Overloaded,
                format!("upstream `{}` has its maximum of requests in flight", pool.name),
            );
            return Err(p.retry_after(1));
        };
        ctx.pool_slot = Some(slot);
        loop {
            if let Some(b) = &pool.breaker {
                if let Err(wait) = b.allow() {
                    let p = Problem::new(
                        ProblemKind::CircuitOpen,
                        format!("upstream `{}` failed repeatedly; varco stops calling it for a while", pool.name),
                    );
                    return Err(p.retry_after(wait.min(u64::from(u32::MAX)) as u32));
                }
            }
            let left = pool.total_timeout.saturating_sub(ctx.start.elapsed());
            let Some(i) = pool.select(ctx.hash, ctx.tried.as_slice()).filter(|_| !left.is_zero()) else {
                let p = Problem::new(
                    ProblemKind::UpstreamUnavailable,
                    format!("no healthy server in upstream `{}`", pool.name),
                );
                return Err(p.retry_after(5));
            };
            ctx.tried.push(i);
            ctx.server = Some(i);
            let mut up = session.req_header().clone();
            up.remove_header(&http::header::TRANSFER_ENCODING);
            let framed = if body.is_empty() && !up.method.as_str().starts_with('P') {
                up.remove_header(&http::header::CONTENT_LENGTH);
                Ok(())
            } else {
                up.insert_header(http::header::CONTENT_LENGTH, body.len())
            };
            let prepared = match framed {
                Ok(()) => self.upstream_request_filter(session, &mut up, ctx).await,
                Err(e) => Err(e),
            };
            if prepared.is_err() {
                return Err(Problem::new(ProblemKind::Internal, "could not prepare the upstream request"));
            }
            let mut peer = pool.servers[i].peer.clone();
            let clip = |d: Option<Duration>| Some(d.map_or(left, |d| d.min(left)));
            peer.options.connection_timeout = clip(peer.options.connection_timeout);
            peer.options.read_timeout = clip(peer.options.read_timeout);
            let max = usize::try_from(ctx_max_response(rt, ctx)).unwrap_or(usize::MAX);
            let res = tokio::time::timeout(
                left,
                crate::fetch::exchange(&self.shared.connector, &peer, up, body.clone(), max),
            )
            .await;
            let name = format!("upstream `{}` server {}", pool.name, pool.servers[i].name);
            match res {
                Ok(Ok((h, b))) => {
                    pool.record_success(i);
                    if pool.breaker.as_ref().is_some_and(|br| br.record(h.status.as_u16() < 500)) {
                        self.circuit_opened(ctx, &pool);
                    }
                    let headers = h
                        .headers
                        .iter()
                        .filter(|(k, _)| !HOP_BY_HOP.contains(k) && *k != http::header::CONTENT_LENGTH)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    return Ok(varco_core::AdapterResponse { status: h.status.as_u16(), headers, body: b });
                }
                Ok(Err(e)) => {
                    self.note_failure(ctx);
                    let connect = matches!(
                        e.etype(),
                        ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectError
                    );
                    if connect && self.retry_possible(ctx, &pool) {
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
                    self.note_failure(ctx);
                    return Err(Problem::new(
                        ProblemKind::GatewayTimeout,
                        format!("{name} did not answer within the total budget"),
                    ));
                }
            }
        }
    }

    async fn call_adapter(&self, session: &mut Session, ctx: &mut RequestCtx, rt: &Runtime) -> Result<bool> {
        let (Some(t), Some(r)) = (ctx.tenant, ctx.route) else { return Ok(false) };
        let tenant = &rt.tenants[t];
        let route = &tenant.routes[r];
        let Target::Adapter(adapter) = &route.target else { return Ok(false) };
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_request_body().await? {
            if (body.len() + chunk.len()) as u64 > route.max_body_bytes {
                let p = Problem::new(
                    ProblemKind::BodyTooLarge,
                    format!("this route accepts at most {} bytes", route.max_body_bytes),
                );
                respond::problem(session, ctx.trace.as_ref(), &p, true).await?;
                return Ok(true);
            }
            body.extend_from_slice(&chunk);
        }
        let req = session.req_header();
        let full = std::str::from_utf8(req.raw_path()).unwrap_or("/");
        let (path, query) = match full[ctx.prefix_len..].split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (&full[ctx.prefix_len..], None),
        };
        let request_id = ctx.trace.as_ref().map(|t| t.request_id()).unwrap_or("");
        let tp = ctx.trace.as_ref().map_or([b'0'; 55], |t| t.traceparent());
        let areq = AdapterRequest {
            method: &req.method,
            path: if path.is_empty() { "/" } else { path },
            query,
            headers: &req.headers,
            body: body.freeze(),
            tenant_id: &tenant.id,
            request_id,
            traceparent: std::str::from_utf8(&tp).unwrap_or(""),
        };
        if adapter.streams() {
            match adapter.open_stream(areq).await {
                Ok((head, body)) => {
                    // A stream lives as long as its caller: it is bounded by the route's
                    // `max_streams`, not by the ente's `max_concurrent` requests, and a
                    // SIGTERM drain does not wait for it (the caller reconnects elsewhere).
                    ctx.tenant_slot = None;
                    ctx.in_flight = None;
                    respond::stream(session, ctx.trace.as_ref(), head, body).await?
                }
                Err(p) => respond::problem(session, ctx.trace.as_ref(), &p, false).await?,
            }
            return Ok(true);
        }
        let result = adapter.call(areq).await;
        match result {
            Ok(mut resp) => {
                if let Some(s) = ctx.state.rate_limit {
                    resp.headers.extend(s.headers());
                }
                respond::adapter(session, ctx.trace.as_ref(), resp).await?
            }
            Err(p) => respond::problem(session, ctx.trace.as_ref(), &p, false).await?,
        }
        Ok(true)
    }

    fn retry_possible(&self, ctx: &RequestCtx, pool: &Pool) -> bool {
        (ctx.tried.count() as u32) <= pool.retries
            && (0..pool.servers.len()).any(|i| !ctx.tried.as_slice().contains(&i) && pool.is_available(i))
    }

    fn circuit_opened(&self, ctx: &RequestCtx, pool: &Pool) {
        let tenant = ctx.rt.as_ref().zip(ctx.tenant).map_or("", |(rt, t)| rt.tenants[t].id.as_str());
        tracing::warn!(tenant = %tenant, upstream = %pool.name, "circuit opened after repeated failures");
        self.shared.metrics.circuit_opened.with_label_values(&[tenant, &pool.name]).inc();
    }

    fn note_failure(&self, ctx: &RequestCtx) {
        let Some(rt) = &ctx.rt else { return };
        let (Some(pool), Some(i), Some(t)) = (ctx.pool(rt), ctx.server, ctx.tenant) else { return };
        let tenant = &rt.tenants[t].id;
        self.shared.metrics.upstream_failures.with_label_values(&[tenant, &pool.name]).inc();
        if pool.breaker.as_ref().is_some_and(|b| b.record(false)) {
            self.circuit_opened(ctx, pool);
        }
        if pool.record_failure(i) {
            self.shared.metrics.ejections.with_label_values(&[tenant, &pool.name]).inc();
            tracing::warn!(tenant = %tenant, upstream = %pool.name, server = %pool.servers[i].name, "server ejected after consecutive failures");
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            rt: None,
            tenant: None,
            route: None,
            trace: None,
            state: FilterState::default(),
            prefix_len: 0,
            hash: None,
            tried: Tried::default(),
            server: None,
            body_seen: 0,
            problem: None,
            host: None,
            request_id: None,
            allow_same: false,
            in_flight: Some(crate::InFlight::new(&self.shared)),
            tenant_slot: None,
            pool_slot: None,
            identity: None,
            identity_token: None,
            forward: Vec::new(),
        }
    }

    /// Runs first, once the request header is read: ids, hygiene, tenant, route, filter chain;
    /// adapter routes are answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let caller_rid = req.headers.get(&X_REQUEST_ID);
        let tc = TraceContext::from_headers(
            req.headers.get(&TRACEPARENT).map(|v| v.as_bytes()),
            caller_rid.map(|v| v.as_bytes()),
        );
        ctx.request_id = match caller_rid {
            Some(v) if v.as_bytes() == tc.request_id().as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(tc.request_id()).ok(),
        };
        ctx.trace = Some(tc);
        ctx.state.client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.state.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let rt = self.shared.current.load_full();
        // Slow-client protection for body reads (headers: pingora's own 60 s).
        session.set_read_timeout(Some(rt.client_body_timeout));
        let routed = self.route(session, ctx, &rt);
        ctx.rt = Some(rt.clone());
        if let Err((p, close)) = routed {
            respond::problem(session, ctx.trace.as_ref(), &p, close).await?;
            return Ok(true);
        }
        if let (Some(t), Some(r)) = (ctx.tenant, ctx.route) {
            let tenant = &rt.tenants[t];
            if let RouteAccess::Jwt { issuers, policy, .. } = &tenant.routes[r].access {
                match varco_auth::authenticate(
                    &self.shared.fetcher,
                    &session.req_header().headers,
                    issuers,
                    policy,
                    &tenant.id,
                    &self.shared.reg.replay,
                )
                .await
                .map_err(crate::authn::problem)
                {
                    Ok(id) => {
                        if !policy.forward_token {
                            // The token stays with varco (removed before pingora copies the
                            // request for the upstream; adapters do not see it either).
                            session.req_header_mut().remove_header(&http::header::AUTHORIZATION);
                        }
                        if let Some(signer) = rt.identity.as_deref() {
                            // Fail closed: a back-office that expects the signed identity
                            // never gets the request without it.
                            match signer.sign(&tenant.id, &id).map(|t| HeaderValue::from_str(&t)) {
                                Ok(Ok(v)) => ctx.identity_token = Some(v),
                                _ => {
                                    let p =
                                        Problem::new(ProblemKind::Internal, "varco could not sign the identity token");
                                    respond::problem(session, ctx.trace.as_ref(), &p, false).await?;
                                    return Ok(true);
                                }
                            }
                        }
                        ctx.state.subject = Some(id.subject.clone());
                        ctx.state.client_id = id.client_id.clone();
                        ctx.identity = Some(id);
                    }
                    Err(p) => {
                        respond::problem(session, ctx.trace.as_ref(), &p, false).await?;
                        return Ok(true);
                    }
                }
            }
            if let RouteAccess::ApiKey { header } = &tenant.routes[r].access {
                match tenant.api_keys.check(&session.req_header().headers, header, r).map_err(crate::authn::problem) {
                    Ok(caller) => {
                        // The back-office gets who called, never the key.
                        session.req_header_mut().remove_header(header);
                        ctx.state.client_id = Some(caller.name);
                        ctx.forward = caller.headers;
                    }
                    Err(p) => {
                        respond::problem(session, ctx.trace.as_ref(), &p, false).await?;
                        return Ok(true);
                    }
                }
            }
            if let Err(p) = self.run_chain(session, ctx, &rt) {
                respond::problem(session, ctx.trace.as_ref(), &p, false).await?;
                return Ok(true);
            }
            for q in &rt.tenants[t].routes[r].quotas {
                if let Err(p) = q.take(&session.req_header().headers, &ctx.state).await {
                    respond::problem(session, ctx.trace.as_ref(), &p, false).await?;
                    return Ok(true);
                }
            }
        }
        if self.modi_route(session, ctx, &rt).await? {
            return Ok(true);
        }
        self.call_adapter(session, ctx, &rt).await
    }

    /// Runs for each piece of the request body on its way upstream: enforces the route's limit
    /// on bodies without a (truthful) Content-Length.
    async fn request_body_filter(
        &self,
        _s: &mut Session,
        body: &mut Option<Bytes>,
        _end: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(b), Some(max)) = (body.as_ref(), ctx.state.max_body_bytes) {
            ctx.body_seen += b.len() as u64;
            if ctx.body_seen > max {
                return Err(fail(
                    Problem::new(ProblemKind::BodyTooLarge, format!("this route accepts at most {max} bytes")),
                    ctx,
                ));
            }
        }
        Ok(())
    }

    /// Runs when the request is to be sent (again, on retry): picks a healthy server not tried
    /// yet, with timeouts clipped to what is left of the total budget.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let rt = ctx.rt.clone().ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let pool = ctx.pool(&rt).ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let left = pool.total_timeout.saturating_sub(ctx.start.elapsed());
        if left.is_zero() {
            let p = Problem::new(
                ProblemKind::GatewayTimeout,
                format!("upstream `{}` did not answer within the total budget", pool.name),
            );
            return Err(fail(p, ctx));
        }
        if ctx.pool_slot.is_none() {
            let Some(slot) = Slot::acquire(&pool.in_flight, pool.max_concurrent) else {
                let p = Problem::new(
                    ProblemKind::Overloaded,
                    format!("upstream `{}` has its maximum of requests in flight", pool.name),
                );
                return Err(fail(p.retry_after(1), ctx));
            };
            ctx.pool_slot = Some(slot);
        }
        if let Some(b) = &pool.breaker {
            if let Err(wait) = b.allow() {
                let p = Problem::new(
                    ProblemKind::CircuitOpen,
                    format!("upstream `{}` failed repeatedly; varco stops calling it for a while", pool.name),
                );
                return Err(fail(p.retry_after(wait.min(u64::from(u32::MAX)) as u32), ctx));
            }
        }
        let tried: &[usize] = if std::mem::take(&mut ctx.allow_same) { &[] } else { ctx.tried.as_slice() };
        let Some(i) = pool.select(ctx.hash, tried) else {
            let p = Problem::new(
                ProblemKind::UpstreamUnavailable,
                format!("no healthy server in upstream `{}`", pool.name),
            )
            .retry_after(5);
            return Err(fail(p, ctx));
        };
        ctx.tried.push(i);
        ctx.server = Some(i);
        let mut peer = Box::new(pool.servers[i].peer.clone());
        let clip = |d: Option<Duration>| Some(d.map_or(left, |d| d.min(left)));
        peer.options.connection_timeout = clip(peer.options.connection_timeout);
        peer.options.total_connection_timeout = clip(peer.options.total_connection_timeout);
        peer.options.read_timeout = clip(peer.options.read_timeout);
        Ok(peer)
    }

    /// Runs after the peer is chosen, before the request header goes upstream: path rewrite,
    /// forwarding and trace headers.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let rt = ctx.rt.as_ref().ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let (Some(t), Some(r)) = (ctx.tenant, ctx.route) else { return Ok(()) };
        let route = &rt.tenants[t].routes[r];
        let strip = route.strip_prefix.as_deref().map_or(0, str::len);
        let proto = if ctx.state.tls { "https" } else { "http" };
        // The forwarding and identity headers are written into the `http` parts in one go:
        // pingora's `insert_header` parses each name again and updates two maps (values and
        // the caller's name case), growing both one step at a time, which cost ~1.5k
        // instructions per header. Header-name case is therefore not kept upstream (field
        // names are case-insensitive, RFC 9110 §5.1; pingora does the same for HTTP/2 callers).
        let end_stream = up.send_end_stream();
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts: http::request::Parts = std::mem::replace(up, placeholder).into();
        let h = &mut parts.headers;
        let identity = ctx.identity.as_deref().map_or(&[][..], |id| id.headers.as_slice());
        h.reserve(6 + identity.len() + ctx.forward.len());
        // varco is the edge: forwarding headers from the caller are replaced, never trusted.
        h.remove(&FORWARDED);
        if let Some(ip) = ctx.state.client_ip {
            let mut buf = [0u8; 48];
            let ip_text = fmt_ip(ip, &mut buf);
            h.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_str(ip_text).map_err(|_| internal())?);
            if rt.forwarded_header {
                let host = ctx.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
                let v = if ip.is_ipv6() {
                    format!("for=\"[{ip_text}]\";host={host};proto={proto}")
                } else {
                    format!("for={ip_text};host={host};proto={proto}")
                };
                h.insert(FORWARDED.clone(), HeaderValue::from_str(&v).map_err(|_| internal())?);
            }
        } else {
            h.remove(&X_FORWARDED_FOR);
        }
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        match &ctx.host {
            Some(v) => h.insert(X_FORWARDED_HOST.clone(), v.clone()),
            None => h.remove(&X_FORWARDED_HOST),
        };
        if let Some(tc) = &ctx.trace {
            h.insert(TRACEPARENT.clone(), HeaderValue::from_bytes(&tc.traceparent()).map_err(|_| internal())?);
        }
        if let Some(rid) = &ctx.request_id {
            h.insert(X_REQUEST_ID.clone(), rid.clone());
        }
        // The caller's own `x-varco-*` headers were stripped by hygiene: append is enough.
        for (k, v) in identity.iter().chain(&ctx.forward) {
            if !route.withhold.contains(k) {
                h.append(k.clone(), v.clone());
            }
        }
        if let (Some(signer), Some(v)) = (rt.identity.as_deref(), &ctx.identity_token) {
            if !route.withhold.contains(&signer.header) {
                h.insert(signer.header.clone(), v.clone());
            }
        }
        *up = RequestHeader::from(parts);
        if let Some(e) = end_stream {
            up.set_send_end_stream(e);
        }
        // The target is origin-form (hygiene rejects others), so it round-trips through the URI;
        // the tenant prefix and the route's `strip_prefix` come off here.
        if ctx.prefix_len + strip > 0 {
            let raw = up.raw_path();
            let mut rest = raw[(ctx.prefix_len + strip).min(raw.len())..].to_vec();
            if rest.first() != Some(&b'/') {
                rest.insert(0, b'/');
            }
            up.set_raw_path(&rest)?;
        }
        let _ = session;
        Ok(())
    }

    /// Runs when the upstream's response header arrives: the server works.
    async fn upstream_response_filter(
        &self,
        _s: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(rt), Some(i)) = (&ctx.rt, ctx.server) {
            if let Some(p) = ctx.pool(rt) {
                p.record_success(i);
                // For the breaker an upstream 5xx is a failure of the pool.
                if p.breaker.as_ref().is_some_and(|b| b.record(resp.status.as_u16() < 500)) {
                    self.circuit_opened(ctx, p);
                }
            }
        }
        Ok(())
    }

    /// Runs before the response header goes to the caller (upstream answers only).
    async fn response_filter(&self, _s: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(rid) = &ctx.request_id {
            resp.insert_header(X_REQUEST_ID.clone(), rid.clone())?;
        }
        if let (Some(rt), Some(t), Some(r)) = (&ctx.rt, ctx.tenant, ctx.route) {
            for f in &rt.tenants[t].routes[r].filters {
                f.on_response(resp, &ctx.state);
            }
        }
        Ok(())
    }

    /// Runs when connecting to a server failed: passive health, and a retry on another server
    /// (nothing was sent, so any method may be retried).
    fn fail_to_connect(
        &self,
        _s: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.note_failure(ctx);
        let retry = ctx.rt.as_ref().and_then(|rt| ctx.pool(rt)).is_some_and(|p| self.retry_possible(ctx, p));
        e.set_retry(retry);
        e
    }

    /// Runs when the exchange failed after connecting: retried on another server only for
    /// idempotent methods whose body is still fully buffered.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        if e.esource() == &ErrorSource::Upstream {
            self.note_failure(ctx);
        }
        let safe = session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
        if !safe {
            e.set_retry(false);
        } else if ctx.rt.as_ref().and_then(|rt| ctx.pool(rt)).is_some_and(|p| self.retry_possible(ctx, p)) {
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(client_reused);
            ctx.allow_same = e.retry();
        }
        e
    }

    /// Runs when the request failed for good: answers problem+json if nothing was sent yet.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let p = ctx.problem.take().or_else(|| respond::problem_for(e, &upstream_name(ctx)));
        let code = match p {
            Some(p) if session.response_written().is_none() => {
                // pingora does not reuse a connection after a failed proxy attempt: say so.
                if let Err(err) = respond::problem(session, ctx.trace.as_ref(), &p, true).await {
                    tracing::debug!(error = %err, "could not send the problem answer");
                }
                p.status()
            }
            Some(p) => p.status(),
            None => 0,
        };
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    /// Runs last, after the response is sent or the request failed: metrics and access log.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let Some(rt) = &ctx.rt else { return };
        let (tenant, route) = match (ctx.tenant, ctx.route) {
            (Some(t), Some(r)) => {
                let route = &rt.tenants[t].routes[r];
                route.latency.observe(elapsed.as_secs_f64());
                route.requests.inc(status);
                (rt.tenants[t].id.as_str(), route.name.as_str())
            }
            _ => {
                let tenant = ctx.tenant.map_or("", |t| rt.tenants[t].id.as_str());
                let mut code = [b'0'; 3];
                self.shared.metrics.requests.with_label_values(&[tenant, "", fmt_status(&mut code, status)]).inc();
                (tenant, "")
            }
        };
        if rt.access_log {
            let req = session.req_header();
            let (server, upstream) = match (ctx.server, ctx.pool(rt)) {
                (Some(i), Some(p)) => (p.servers[i].name.as_str(), p.name.as_str()),
                _ => ("", ""),
            };
            let mut ip_buf = [0u8; 48];
            self.shared.access_log.write(&crate::access_log::AccessRecord {
                tenant,
                route,
                status,
                method: req.method.as_str(),
                path: req.raw_path(),
                upstream,
                server,
                attempts: ctx.tried.count(),
                latency_us: elapsed.as_micros() as u64,
                request_id: ctx.trace.as_ref().map_or("", |t| t.request_id()),
                trace_id: ctx.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
                client: ctx.state.client_ip.map_or("", |ip| fmt_ip(ip, &mut ip_buf)),
                error: e.map_or("", |e| e.etype().as_str()),
            });
        }
    }
}

/// The largest answer a store-and-forward route buffers: 16 MiB, or the route's body limit if larger.
fn ctx_max_response(rt: &Runtime, ctx: &RequestCtx) -> u64 {
    let route = ctx.tenant.zip(ctx.route).map(|(t, r)| &rt.tenants[t].routes[r]);
    route.map_or(16 << 20, |r| r.max_body_bytes.max(16 << 20))
}

/// Reads the whole request body, up to `max` bytes.
async fn read_body(session: &mut Session, max: u64) -> Result<std::result::Result<Bytes, Problem>> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if (body.len() + chunk.len()) as u64 > max {
            return Ok(Err(Problem::new(ProblemKind::BodyTooLarge, format!("this route accepts at most {max} bytes"))));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body.freeze()))
}

static HOP_BY_HOP: [HeaderName; 5] = [
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    HeaderName::from_static("keep-alive"),
    http::header::UPGRADE,
    http::header::TE,
];

/// "upstream `pool` server host:port" for problem details.
fn upstream_name(ctx: &RequestCtx) -> String {
    ctx.rt
        .as_ref()
        .and_then(|rt| ctx.pool(rt).map(|p| (p, ctx.server)))
        .map(|(p, s)| match s {
            Some(i) => format!("upstream `{}` server {}", p.name, p.servers[i].name),
            None => format!("upstream `{}`", p.name),
        })
        .unwrap_or_else(|| "the upstream".into())
}

fn internal() -> Box<Error> {
    Error::new(ErrorType::InternalError)
}
