//! One call to a national e-service through PDND, as the ente's consumer: the voucher, the
//! ModI INTEGRITY_REST_02 signature of the body and, for AUDIT_REST_02, the tracking evidence
//! bound to a voucher of its own; then the provider's signed answer is checked before anyone
//! sees it. The patterns are `varco_auth`'s: the same code verifies callers' signatures.

use crate::client::HttpsClient;
use crate::exchange::{attempt, Policy, Reply};
use crate::voucher::{VoucherClient, VoucherError};
use crate::Fetcher;
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use varco_auth::{ModiVerifier, ReplayGuard, TrackedUser};
use varco_core::headers::AGID_JWT_TRACKING_EVIDENCE;

/// Why a call to an e-service gave no answer to pass on.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Voucher(#[from] VoucherError),
    /// The provider could not be reached or did not answer in time.
    #[error("the e-service did not answer: {0}")]
    Unreachable(String),
    /// The provider's answer does not verify (signature, digest, audience, replay).
    #[error("the e-service's answer is not signed as ModI requires: {0}")]
    Unsigned(String),
    /// varco could not sign its own request.
    #[error("varco could not sign the request: {0}")]
    Signing(String),
}

/// An e-service endpoint the ente calls under one purpose.
pub struct Eservice {
    /// Where the request goes (the operation's full URL).
    pub url: http::Uri,
    /// `aud` of the ModI JWTs (the e-service as PDND names it).
    pub audience: String,
    /// The purposeId of the calls; empty: the API interop client's voucher (no purpose), as
    /// PDND's own services (Signal Hub) take.
    pub purpose_id: String,
    /// Sign the body (INTEGRITY_REST_02: `Digest`, `Agid-JWT-Signature`).
    pub integrity: bool,
    /// Send AUDIT_REST_02 (tracking evidence bound to the voucher).
    pub audit: bool,
    pub timeout: std::time::Duration,
    pub vouchers: Arc<VoucherClient>,
    /// Checks the provider's answers; `None`: answers are taken as they come.
    pub verifier: Option<Arc<ModiVerifier>>,
    pub http: HttpsClient,
    pub fetch: Fetcher,
    pub replay: Arc<ReplayGuard>,
    /// Keeps each call in the ente's audit trail under this route name (`signalhub:deposit`);
    /// `None` when the trail is off or the adapter keeps a richer record itself (ANPR).
    pub trail: Option<(varco_audit::Recorder, &'static str)>,
}

impl std::fmt::Debug for Eservice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eservice").field("url", &self.url).field("purpose_id", &self.purpose_id).finish()
    }
}

/// What is sent: a JSON body made on demand (POST), or a query (GET).
enum Body<'a, F> {
    Post(&'a F),
    Get(&'a str),
}

impl Eservice {
    /// POSTs the JSON body `make` builds on behalf of `user`; `traceparent` continues the
    /// caller's trace. The body is made once the voucher is at hand, right before it is
    /// signed and sent, so an operation id in it (ANPR's increasing `idOperazioneClient`) is
    /// not overtaken by calls that did not wait for PDND. A voucher the provider refuses (401)
    /// is dropped from the cache and the call made once more, with a new body and voucher.
    pub async fn post_json<F>(&self, make: F, user: &TrackedUser, traceparent: &str) -> Result<Reply, CallError>
    where
        F: Fn() -> Bytes + Send + Sync,
    {
        self.call(Body::Post(&make), user, traceparent).await
    }

    /// GETs the e-service's URL with `query` (no body: no INTEGRITY signature), as `post_json`
    /// otherwise.
    pub async fn get(&self, query: &str, user: &TrackedUser, traceparent: &str) -> Result<Reply, CallError> {
        self.call::<fn() -> Bytes>(Body::Get(query), user, traceparent).await
    }

    /// One e-service call as a client span, a child of the caller's `tp` when tracing is on.
    async fn call<F: Fn() -> Bytes>(
        &self,
        what: Body<'_, F>,
        user: &TrackedUser,
        tp: &str,
    ) -> Result<Reply, CallError> {
        let started = std::time::Instant::now();
        let method = if matches!(what, Body::Post(_)) { "POST" } else { "GET" };
        let span =
            varco_telemetry::start("e-service call", varco_telemetry::Kind::Client, Some(tp).filter(|t| !t.is_empty()));
        let Some(mut span) = span else {
            let r = self.call_once(what, user, tp).await;
            self.record(method, &r, started, tp);
            return r;
        };
        span.set("server.address", self.url.host().unwrap_or("").to_owned());
        span.set("url.path", self.url.path().to_owned());
        span.set("varco.purpose_id", self.purpose_id.clone());
        let own = span.traceparent_string();
        let r = self.call_once(what, user, &own).await;
        match &r {
            Ok(reply) => {
                span.set("http.response.status_code", i64::from(reply.status));
                if reply.status >= 400 {
                    span.fail(format!("answered {}", reply.status));
                }
            }
            Err(e) => span.fail(e.to_string()),
        }
        self.record(method, &r, started, tp);
        r
    }

    /// The call's record in the audit trail, when kept: route, purpose, provider, status.
    fn record(&self, method: &str, r: &Result<Reply, CallError>, started: std::time::Instant, tp: &str) {
        let Some((recorder, route)) = &self.trail else { return };
        recorder.outbound(varco_audit::Record {
            route: (*route).to_owned(),
            method: method.to_owned(),
            status: r.as_ref().map_or(0, |a| a.status),
            latency_ms: started.elapsed().as_millis() as u64,
            purpose_id: Some(self.purpose_id.clone()).filter(|p| !p.is_empty()),
            upstream: Some(format!("{}{}", self.url.host().unwrap_or(""), self.url.path())),
            trace_id: varco_audit::trace_id_of(tp),
            ..Default::default()
        });
    }

    async fn call_once<F: Fn() -> Bytes>(
        &self,
        what: Body<'_, F>,
        user: &TrackedUser,
        tp: &str,
    ) -> Result<Reply, CallError> {
        let mut retried = false;
        loop {
            let (req, cached) = self.request(&what, user, tp).await?;
            let policy = Policy { max_body: 4 << 20, ..Policy::once(self.timeout) };
            let reply = attempt(&self.http, req, &policy).await.map_err(CallError::Unreachable)?;
            if reply.status == 401 && !retried {
                if let Some(token) = cached {
                    tracing::info!(url = %self.url, "the e-service refused a cached voucher: asking PDND for a new one");
                    self.vouchers.forget(&self.purpose_id, &token);
                    retried = true;
                    continue;
                }
            }
            if reply.status >= 500 {
                // A gateway in front of the provider, not the provider: nothing to verify or pass on.
                return Err(CallError::Unreachable(format!("answered {}", reply.status)));
            }
            // A refusal of the credentials comes from the provider's gateway, before anything
            // is signed: it is reported as a refusal, never passed on as data.
            if let Some(v) = self.verifier.as_ref().filter(|_| !matches!(reply.status, 401 | 403)) {
                v.check_response(&reply.headers, &reply.body, &self.fetch, &self.replay)
                    .await
                    .map_err(|e| CallError::Unsigned(e.detail))?;
            }
            return Ok(reply);
        }
    }

    /// The request with its voucher and ModI headers; the cached voucher used, if any.
    async fn request<F: Fn() -> Bytes>(
        &self,
        what: &Body<'_, F>,
        user: &TrackedUser,
        traceparent: &str,
    ) -> Result<(http::Request<Full<Bytes>>, Option<Arc<str>>), CallError> {
        let key = self.vouchers.key();
        let iss = self.vouchers.client_id();
        let ct = "application/json";
        let mut b = match what {
            Body::Post(_) => http::Request::post(self.url.clone()).header(http::header::CONTENT_TYPE, ct),
            Body::Get(q) => {
                let url = if q.is_empty() { self.url.to_string() } else { format!("{}?{q}", self.url) };
                http::Request::get(url)
            }
        }
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "varco");
        if !traceparent.is_empty() {
            b = b.header("traceparent", traceparent);
        }
        // The tracking evidence does not depend on the body: it and its voucher come first.
        let (voucher, cached) = if self.audit {
            let (evidence, digest) = varco_auth::tracking_evidence(key, iss, &self.audience, &self.purpose_id, user)
                .map_err(|e| CallError::Signing(e.detail))?;
            b = b.header(&AGID_JWT_TRACKING_EVIDENCE, evidence);
            (self.vouchers.bound_voucher(&self.purpose_id, &digest).await?, None)
        } else {
            let v = self.vouchers.voucher(&self.purpose_id).await?;
            (v.to_string(), Some(v))
        };
        let body = match what {
            Body::Post(make) => make(),
            Body::Get(_) => Bytes::new(),
        };
        if self.integrity && matches!(what, Body::Post(_)) {
            let signed = varco_auth::sign_request(key, iss, &self.audience, Some(ct), &body)
                .map_err(|e| CallError::Signing(e.detail))?;
            for (k, v) in signed {
                b = b.header(k, v);
            }
        }
        let req = b
            .header(http::header::AUTHORIZATION, format!("Bearer {voucher}"))
            .body(Full::new(body))
            .map_err(|e| CallError::Signing(e.to_string()))?;
        Ok((req, cached))
    }
}
