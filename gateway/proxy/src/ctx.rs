//! Everything one request carries from phase to phase.

use crate::runtime::{Route, Runtime, Target, Tenant};
use crate::shared::InFlight;
use crate::upstream::{Pool, Slot, Tried};
use http::{HeaderName, HeaderValue};
use pingora_error::{Error, ErrorType};
use std::sync::Arc;
use std::time::Instant;
use varco_core::{FilterState, Problem, TraceContext};

pub struct RequestCtx {
    pub start: Instant,
    pub rt: Option<Arc<Runtime>>,
    pub tenant: Option<usize>,
    pub route: Option<usize>,
    pub trace: Option<TraceContext>,
    pub state: FilterState,
    /// Bytes of the path owned by the tenant prefix (removed before forwarding).
    pub prefix_len: usize,
    pub hash: Option<u64>,
    pub tried: Tried,
    pub server: Option<usize>,
    pub body_seen: u64,
    /// A problem decided in an earlier phase, answered by `fail_to_proxy`.
    pub problem: Option<Problem>,
    /// The caller's Host (or :authority), as sent.
    pub host: Option<HeaderValue>,
    /// `X-Request-Id` for upstream and response (the caller's, or the trace id).
    pub request_id: Option<HeaderValue>,
    /// The last failure was a stale pooled connection: the same server may be tried again.
    pub allow_same: bool,
    /// `None` once the request became a long-lived stream (a drain does not wait for those).
    pub in_flight: Option<InFlight>,
    /// Concurrency units held for the tenant and the pool (given back on drop).
    pub tenant_slot: Option<Slot>,
    pub pool_slot: Option<Slot>,
    /// The verified caller (JWT routes); its headers go upstream.
    pub identity: Option<Arc<varco_core::Identity>>,
    /// varco's signed identity token for the back-office, when configured.
    pub identity_token: Option<HeaderValue>,
    /// Further identity headers for the back-office (API-key caller, ModI audit).
    pub forward: Vec<(HeaderName, HeaderValue)>,
    /// `Access-Control-*` headers for every answer to this request (an admitted origin).
    pub cors: Option<crate::cors::Headers>,
    /// A CORS preflight varco answers itself, with these headers.
    pub preflight: Option<crate::cors::Headers>,
    /// What the ModI step verified of the call (tracking evidence, `Digest`), for the audit trail.
    pub evidence: Option<Box<Evidence>>,
    /// The request's spans, when tracing is on and the request sampled (`spans.rs`).
    pub spans: Option<Box<crate::spans::Spans>>,
}

/// A ModI call's verified tracking evidence and request digest.
#[derive(Debug, Default)]
pub struct Evidence {
    pub user_id: String,
    pub user_location: String,
    pub loa: String,
    pub jti: String,
    pub digest: Option<String>,
}

impl RequestCtx {
    pub fn new(in_flight: InFlight) -> Self {
        Self {
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
            cors: None,
            preflight: None,
            host: None,
            request_id: None,
            allow_same: false,
            in_flight: Some(in_flight),
            tenant_slot: None,
            pool_slot: None,
            identity: None,
            identity_token: None,
            forward: Vec::new(),
            evidence: None,
            spans: None,
        }
    }

    pub fn tenant<'a>(&self, rt: &'a Runtime) -> Option<&'a Tenant> {
        rt.tenants.get(self.tenant?)
    }

    pub fn route<'a>(&self, rt: &'a Runtime) -> Option<&'a Route> {
        self.tenant(rt)?.routes.get(self.route?)
    }

    pub fn pool<'a>(&self, rt: &'a Runtime) -> Option<&'a Arc<Pool>> {
        let t = self.tenant(rt)?;
        match t.routes.get(self.route?)?.target {
            Target::Upstream(p) | Target::Mediated { pool: p, .. } => t.pools.get(p),
            Target::Adapter(_) => None,
        }
    }

    /// The adapter that answers this request's route, if it has one.
    pub fn adapter(&self) -> Option<&Arc<dyn varco_core::Adapter>> {
        match &self.route(self.rt.as_ref()?)?.target {
            Target::Adapter(a) => Some(a),
            Target::Upstream(_) | Target::Mediated { .. } => None,
        }
    }

    /// The mediator of this request's route, if it has one.
    pub fn mediator(&self) -> Option<&Arc<dyn varco_core::Mediator>> {
        match &self.route(self.rt.as_ref()?)?.target {
            Target::Mediated { mediator, .. } => Some(mediator),
            _ => None,
        }
    }

    pub fn request_id(&self) -> &str {
        self.trace.as_ref().map_or("", |t| t.request_id())
    }

    /// Keeps `p` for `fail_to_proxy` and returns the error that ends the phase.
    pub fn fail(&mut self, p: Problem) -> Box<Error> {
        let e = Error::explain(ErrorType::Custom("varco-problem"), p.detail.clone());
        self.problem = Some(p);
        e
    }
}
