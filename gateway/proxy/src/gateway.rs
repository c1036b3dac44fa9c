//! The one `ProxyHttp` implementation. Each phase does little itself: it calls the hygiene
//! checks, the tenant/route indexes, the route's pipeline (`pipeline.rs`), the pool admission
//! (`exchange.rs`) or the header rewrite (`forwarding.rs`). Per-request state lives in
//! [`RequestCtx`] (`ctx.rs`).

use crate::ctx::RequestCtx;
use crate::respond;
use crate::runtime::Runtime;
use crate::shared::{InFlight, Shared};
use crate::text::{fmt_ip, fmt_status};
use crate::upstream::Slot;
use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use varco_core::headers::{TRACEPARENT, X_FORWARDED_FOR, X_REQUEST_ID};
use varco_core::{hygiene, Problem, ProblemKind, TraceContext};

/// The gateway service: shared state behind an `Arc`, cheap to clone per listener.
#[derive(Clone)]
pub struct Gateway {
    pub shared: Arc<Shared>,
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
        let sub = if sub.is_empty() { "/" } else { sub };
        ctx.prefix_len = prefix_len;
        // Only an ente with a CORS policy somewhere looks at `Origin` (one header look-up less
        // on every other request).
        let origin = if t.has_cors { req.headers.get(http::header::ORIGIN) } else { None };
        // A CORS preflight names the method it asks for; a route with a CORS policy answers it
        // here, before authentication (browsers send preflights without credentials).
        if let (Some(origin), true) = (origin, req.method == http::Method::OPTIONS) {
            let asked = req.headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD);
            let asked = asked.and_then(|m| http::Method::from_bytes(m.as_bytes()).ok());
            let found = asked.as_ref().and_then(|m| {
                let ri = t.table.lookup(m, sub).ok()?;
                Some((ri, m, t.routes[ri].cors.as_ref()?))
            });
            if let Some((ri, m, c)) = found {
                ctx.route = Some(ri);
                // An address the ente or route refuses learns nothing from a preflight either.
                if let Some(src) = &t.routes[ri].source {
                    src.check(ctx.state.client_ip).map_err(|p| (p, false))?;
                }
                let asked_headers = req.headers.get(http::header::ACCESS_CONTROL_REQUEST_HEADERS);
                ctx.preflight = Some(c.preflight(origin, m, asked_headers).map_err(|p| (p, false))?);
                return Ok(());
            }
        }
        let route = match t.table.lookup(&req.method, sub) {
            Ok(r) => r,
            Err(p) => {
                // The ente's CORS still lets its web app read the 404 or 405.
                if let (Some(origin), Some(c)) = (origin, &t.cors) {
                    ctx.cors = c.actual(origin);
                }
                return Err((p, false));
            }
        };
        ctx.route = Some(route);
        if let (Some(origin), Some(c)) = (origin, &t.routes[route].cors) {
            ctx.cors = c.actual(origin);
        }
        hygiene::clean_connection(session.req_header_mut()).map_err(|p| (p, false))?;
        hygiene::strip_identity_headers(session.req_header_mut());
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(InFlight::new(&self.shared))
    }

    /// Runs first, once the request header is read: ids, hygiene, tenant, route, then the
    /// route's pipeline; adapter and ModI routes are answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(g) = crate::conn::GuardedStream::of(session) {
            g.header_done();
        }
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
        if varco_telemetry::enabled() {
            crate::spans::start(ctx, req.headers.get(&TRACEPARENT).map(|v| v.as_bytes()));
        }
        let rt = self.shared.current.load_full();
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.state.client_ip = match peer {
            // Behind a trusted load balancer the caller is in its X-Forwarded-For.
            Some(ip) if !rt.trusted_proxies.is_empty() => Some(varco_traffic::source::client_address(
                ip,
                req.headers.get_all(&X_FORWARDED_FOR).iter().map(|v| v.as_bytes()),
                &rt.trusted_proxies,
            )),
            other => other,
        };
        ctx.state.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        // Slow-client protection for body reads (headers: `conn.rs`, `server.header_timeout`).
        session.set_read_timeout(Some(rt.client_body_timeout));
        // An HTTP/1.1 connection kept alive waits at most this long for its next request
        // (pingora's default is for ever; `Connection: close` stays close).
        if session.get_keepalive() == Some(0) {
            session.set_keepalive(Some(rt.keepalive_idle_secs));
        }
        let routed = self.route(session, ctx, &rt);
        ctx.rt = Some(rt.clone());
        if let Err((p, close)) = routed {
            respond::problem(session, ctx, &p, close).await?;
            return Ok(true);
        }
        if let Some(h) = ctx.preflight.take() {
            respond::preflight(session, ctx, h).await?;
            return Ok(true);
        }
        crate::pipeline::run(&self.shared, session, ctx, &rt).await
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
                return Err(ctx
                    .fail(Problem::new(ProblemKind::BodyTooLarge, format!("this route accepts at most {max} bytes"))));
            }
        }
        Ok(())
    }

    /// Runs when the request is to be sent (again, on retry): admits it to the pool (slot,
    /// breaker, a healthy server not tried yet, timeouts clipped to the budget left).
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let rt = ctx.rt.clone().ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let pool = ctx.pool(&rt).ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let allow_same = std::mem::take(&mut ctx.allow_same);
        match crate::exchange::admit(pool, ctx, allow_same) {
            Ok((_, peer)) => Ok(Box::new(peer)),
            Err(p) => Err(ctx.fail(p)),
        }
    }

    /// Runs after the peer is chosen, before the request header goes upstream: forwarding,
    /// trace and identity headers, path rewrite.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let rt = ctx.rt.as_ref().ok_or_else(|| Error::new(ErrorType::InternalError))?;
        crate::forwarding::upstream_request(rt, ctx, up)
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
                crate::exchange::note_answer(&self.shared, ctx, p, i, resp.status.as_u16());
            }
        }
        crate::spans::attempt_answered(ctx, resp.status.as_u16());
        Ok(())
    }

    /// Runs before the response header goes to the caller (upstream answers only).
    async fn response_filter(&self, _s: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        if let Some(rid) = &ctx.request_id {
            resp.insert_header(X_REQUEST_ID.clone(), rid.clone())?;
        }
        if let Some(route) = ctx.rt.as_ref().and_then(|rt| ctx.route(rt)) {
            for f in &route.filters {
                f.on_response(resp, &ctx.state);
            }
        }
        crate::respond::cors_headers(resp, ctx)?;
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
        crate::exchange::note_failure(&self.shared, ctx);
        crate::spans::attempt_failed(ctx, e.etype().as_str());
        let retry =
            ctx.rt.as_ref().and_then(|rt| ctx.pool(rt)).is_some_and(|p| crate::exchange::retry_possible(ctx, p));
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
            crate::exchange::note_failure(&self.shared, ctx);
        }
        crate::spans::attempt_failed(ctx, e.etype().as_str());
        let safe = session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
        if !safe {
            e.set_retry(false);
        } else if ctx.rt.as_ref().and_then(|rt| ctx.pool(rt)).is_some_and(|p| crate::exchange::retry_possible(ctx, p)) {
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
                if let Err(err) = respond::problem(session, ctx, &p, true).await {
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
        if let Some(g) = crate::conn::GuardedStream::of(session) {
            g.request_done();
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let Some(rt) = &ctx.rt else { return };
        let (tenant, route) = match (ctx.tenant, ctx.route) {
            (Some(t), Some(r)) => {
                let route = &rt.tenants[t].routes[r];
                route.metrics.observe(status, elapsed.as_secs_f64());
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
                request_id: ctx.request_id(),
                trace_id: ctx.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
                client: ctx.state.client_ip.map_or("", |ip| fmt_ip(ip, &mut ip_buf)),
                error: e.map_or("", |e| e.etype().as_str()),
            });
        }
        crate::audit::record(&self.shared, rt, ctx, session.req_header().method.as_str(), status, elapsed);
        if ctx.spans.is_some() {
            let rt = rt.clone();
            crate::spans::finish(ctx, &rt, session.req_header().method.as_str(), status, e.map(|e| e.etype().as_str()));
        }
    }
}

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
