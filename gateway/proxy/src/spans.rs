//! A request's spans when tracing is on and the request is sampled: the server span, the
//! pipeline step in progress (authentication, a quota, an adapter) and the upstream attempt in
//! progress. What varco sends on (`traceparent` upstream, to adapters) names the innermost.
//!
//! With tracing off nothing here allocates: `RequestCtx::spans` stays `None`.

use crate::ctx::RequestCtx;
use crate::runtime::Runtime;
use crate::upstream::Pool;
use varco_core::Problem;
use varco_telemetry::{Kind, Span};

/// The spans of one sampled request.
#[derive(Debug)]
pub struct Spans {
    server: Span,
    step: Option<Span>,
    attempt: Option<Span>,
    attempts: u32,
    /// The problem varco answered with, if any (set where only `&RequestCtx` is at hand).
    problem: std::sync::OnceLock<&'static str>,
}

/// In `request_filter`, once the ids are known: the server span, a child of the caller's
/// `traceparent` when valid; the request's ids become the span's.
pub fn start(ctx: &mut RequestCtx, caller: Option<&[u8]>) {
    let parent = caller.and_then(|v| std::str::from_utf8(v).ok());
    let Some(span) = varco_telemetry::start("HTTP", Kind::Server, parent) else { return };
    let (trace, id, sampled) = span.ids();
    if let Some(tc) = ctx.trace.as_mut() {
        tc.adopt(trace, id, sampled);
    }
    if span.is_recording() {
        ctx.spans =
            Some(Box::new(Spans { server: span, step: None, attempt: None, attempts: 0, problem: Default::default() }));
    }
}

/// The `traceparent` for what varco calls now: the attempt, else the step, else the request.
pub fn traceparent(ctx: &RequestCtx) -> [u8; 55] {
    if let Some(s) = &ctx.spans {
        if let Some(a) = s.attempt.as_ref().or(s.step.as_ref()) {
            return a.traceparent();
        }
    }
    ctx.trace.as_ref().map_or([b'0'; 55], |t| t.traceparent())
}

/// A pipeline step that may do I/O begins (its span ends at [`step_end`]); `kind` names the
/// adapter or mediator.
pub fn step(ctx: &mut RequestCtx, name: &'static str, kind: Option<&'static str>) {
    if let Some(s) = ctx.spans.as_mut() {
        s.step = s.server.child(name, Kind::Internal).map(|mut span| {
            if let Some(k) = kind {
                span.rename(format!("{name} {k}"));
                span.set("varco.adapter", k);
            }
            span
        });
    }
}

/// The step in progress ends, failed with `problem` if it refused the request.
pub fn step_end(ctx: &mut RequestCtx, problem: Option<&Problem>) {
    if let Some(mut step) = ctx.spans.as_mut().and_then(|s| s.step.take()) {
        if let Some(p) = problem {
            step.set("varco.problem", p.kind.slug());
            step.fail(p.kind.slug());
        }
        step.end();
    }
}

/// An upstream attempt begins (`exchange::admit` chose `server` of `pool`): a client span,
/// child of the step in progress or of the request.
pub fn attempt(ctx: &mut RequestCtx, pool: &Pool, server: usize) {
    let Some(s) = ctx.spans.as_mut() else { return };
    if let Some(prev) = s.attempt.take() {
        prev.end();
    }
    s.attempts += 1;
    let parent = s.step.as_ref().unwrap_or(&s.server);
    s.attempt = parent.child("upstream attempt", Kind::Client).map(|mut a| {
        let srv = &pool.servers[server];
        a.rename(format!("{} {}", pool.name, srv.name));
        a.set("varco.upstream", pool.name.clone());
        a.set("server.address", srv.name.clone());
        a.set("varco.attempt", i64::from(s.attempts));
        a
    });
}

/// The attempt in progress failed (connection, protocol, timeout).
pub fn attempt_failed(ctx: &mut RequestCtx, why: &str) {
    if let Some(mut a) = ctx.spans.as_mut().and_then(|s| s.attempt.take()) {
        a.fail(why.to_owned());
        a.end();
    }
}

/// The upstream answered the attempt in progress with `status` (it ends with the request, or
/// at the next attempt).
pub fn attempt_answered(ctx: &mut RequestCtx, status: u16) {
    if let Some(a) = ctx.spans.as_mut().and_then(|s| s.attempt.as_mut()) {
        a.set("http.response.status_code", i64::from(status));
        if status >= 500 {
            a.fail(format!("answered {status}"));
        }
    }
}

/// varco answers the request with `p`.
pub fn problem(ctx: &RequestCtx, p: &Problem) {
    if let Some(s) = &ctx.spans {
        let _ = s.problem.set(p.kind.slug());
    }
}

/// In `logging`: the server span gets its name, the request's attributes and outcome, and
/// ends with whatever is still open.
pub fn finish(ctx: &mut RequestCtx, rt: &Runtime, method: &str, status: u16, error: Option<&str>) {
    let Some(spans) = ctx.spans.take() else { return };
    let Spans { mut server, step, attempt, attempts, problem } = *spans;
    if let Some(p) = problem.get().copied() {
        server.set("varco.problem", p);
    }
    drop(attempt);
    drop(step);
    server.set("http.request.method", method.to_owned());
    server.set("http.response.status_code", i64::from(status));
    if attempts > 0 {
        server.set("varco.attempts", i64::from(attempts));
    }
    match (ctx.tenant(rt), ctx.route(rt)) {
        (Some(t), Some(r)) => {
            server.rename(format!("{method} {}/{}", t.id, r.name));
            server.set("varco.tenant", t.id.clone());
            server.set("varco.route", r.name.clone());
        }
        (Some(t), None) => {
            server.rename(format!("{method} {}", t.id));
            server.set("varco.tenant", t.id.clone());
        }
        _ => server.rename(method.to_owned()),
    }
    let caller = ctx.identity.as_deref().map(|i| i.subject.as_str()).or(ctx.state.client_id.as_deref());
    if let Some(c) = caller {
        server.set("varco.caller", c.to_owned());
    }
    if let Some(id) = ctx.identity.as_deref() {
        if let Some(p) = &id.purpose_id {
            server.set("varco.purpose_id", p.clone());
        }
        if let Some(acr) = &id.acr {
            server.set("varco.loa", acr.clone());
        }
    }
    if let Some(ip) = ctx.state.client_ip {
        server.set("client.address", ip.to_string());
    }
    if status >= 500 || status == 0 {
        server.fail(error.map_or_else(|| format!("answered {status}"), str::to_owned));
    }
    server.end();
}
