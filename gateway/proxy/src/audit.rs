//! The audit trail's record of a finished call (`logging` phase), for routes that keep one.

use crate::ctx::RequestCtx;
use crate::runtime::{Runtime, Target};
use crate::shared::Shared;
use std::time::Duration;
use varco_audit::{Direction, Record};

/// Hands the call's record to the trail when its route keeps one. Never waits.
pub fn record(shared: &Shared, rt: &Runtime, ctx: &RequestCtx, method: &str, status: u16, elapsed: Duration) {
    let (Some(trail), Some(t), Some(r)) = (&shared.reg.audit, ctx.tenant, ctx.route) else { return };
    let tenant = &rt.tenants[t];
    let route = &tenant.routes[r];
    if !route.audit {
        return;
    }
    let id = ctx.identity.as_deref();
    let ev = ctx.evidence.as_deref();
    let upstream = match &route.target {
        Target::Upstream(p) | Target::Mediated { pool: p, .. } => tenant.pools.get(*p).map(|p| p.name.clone()),
        Target::Adapter(a) => Some(format!("adapter:{}", a.kind())),
    };
    let record = Record {
        ts: varco_audit::now(),
        direction: Some(Direction::Inbound),
        route: route.name.clone(),
        method: method.to_owned(),
        status,
        latency_ms: elapsed.as_millis() as u64,
        caller: id.map(|i| i.subject.clone()).or_else(|| ctx.state.client_id.clone()),
        client_id: ctx.state.client_id.clone(),
        purpose_id: id.and_then(|i| i.purpose_id.clone()),
        loa: ev.map(|e| e.loa.clone()).filter(|l| !l.is_empty()).or_else(|| id.and_then(|i| i.acr.clone())),
        user_id: ev.map(|e| e.user_id.clone()).filter(|u| !u.is_empty()),
        user_location: ev.map(|e| e.user_location.clone()).filter(|u| !u.is_empty()),
        evidence_jti: ev.map(|e| e.jti.clone()).filter(|j| !j.is_empty()),
        digest: ev.and_then(|e| e.digest.clone()),
        upstream,
        trace_id: ctx.trace.as_ref().map_or("", |t| t.trace_id.as_str()).to_owned(),
        request_id: ctx.request_id().to_owned(),
    };
    trail.append(&tenant.id, record, tenant.keys.clone());
}
