//! The GPD client (pagoPA's debt positions, `../specs/pagopa/openapi/gpd.json`) behind a small
//! REST API for the ente's back-offices:
//!
//! | back-office calls (below the route) | GPD |
//! |---|---|
//! | `POST …/debt-positions[?publish=true]` | `POST /organizations/{ofc}/debtpositions[?toPublish=true]` |
//! | `GET/PUT/DELETE …/debt-positions/{iupd}` | the same on `/organizations/{ofc}/debtpositions/{iupd}` |
//! | `POST …/debt-positions/{iupd}/publish`, `/invalidate` | the same |
//!
//! varco adds the subscription key and the ente's fiscal code (a back-office cannot reach
//! another ente's positions), retries timeouts, refused connections, 429 and 5xx, and turns
//! GPD's errors into problem+json. A create retried after a lost answer that then meets 409
//! reads the position back: the first attempt had worked.

use bytes::Bytes;
use http_body_util::Full;
use std::time::Duration;
use varco_config::GpdConfig;
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Problem, ProblemKind};

/// The event that drives GPD from the bus.
pub const POSITION_EVENT: &str = "it.varco.tributi.posizione.cambiata.v1";

#[derive(Debug)]
pub struct GpdAdapter {
    base: String,
    ofc: String,
    key: http::HeaderValue,
    timeout: Duration,
    retries: u32,
    client: varco_outbound::HttpsClient,
    /// Keeps each GPD call in the ente's audit trail, when it is on.
    audit: Option<varco_audit::Recorder>,
}

struct Answer {
    status: u16,
    body: Bytes,
}

impl GpdAdapter {
    /// `key` is the subscription key, read by the caller from its secret reference.
    pub fn build(cfg: &GpdConfig, key: &str, client: varco_outbound::HttpsClient) -> Result<Self, String> {
        let mut key =
            http::HeaderValue::from_str(key).map_err(|_| "the subscription key is not a header value".to_owned())?;
        key.set_sensitive(true);
        Ok(Self {
            base: cfg.url.trim_end_matches('/').to_owned(),
            ofc: cfg.organization_fiscal_code.clone(),
            key,
            timeout: cfg.timeout.0,
            retries: cfg.retries,
            client,
            audit: None,
        })
    }

    /// Keeps each GPD call in `audit` (the ente's trail).
    pub fn with_audit(mut self, audit: Option<varco_audit::Recorder>) -> Self {
        self.audit = audit;
        self
    }

    /// Sends with retries (timeouts, refused connections, 429 and 5xx; backoff from 200 ms);
    /// the last answer or transport error, and the retries made.
    async fn send(
        &self,
        method: &http::Method,
        url: &str,
        body: &Bytes,
        tp: Option<&str>,
    ) -> (Result<Answer, String>, u32) {
        let policy = varco_outbound::Policy {
            timeout: self.timeout,
            retries: self.retries,
            backoff: Duration::from_millis(200),
            max_body: 16 << 20,
        };
        let make = || {
            let mut b = http::Request::builder()
                .method(method.clone())
                .uri(url)
                .header("ocp-apim-subscription-key", self.key.clone())
                .header("accept", "application/json");
            if !body.is_empty() {
                b = b.header("content-type", "application/json");
            }
            b.body(Full::new(body.clone())).map_err(|e| e.to_string())
        };
        let (r, n) = varco_outbound::exchange::send_traced(&self.client, &policy, "GPD call", tp, make).await;
        (r.map(|a| Answer { status: a.status, body: a.body }), n)
    }
}

/// GPD's `ProblemJson` (`title`, `detail`) as one line.
fn reason(body: &Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let pick = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    match (pick("title"), pick("detail")) {
        ("", "") => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        (t, "") => t.to_owned(),
        (_, d) => d.to_owned(),
    }
}

impl GpdAdapter {
    async fn answer(&self, req: AdapterRequest<'_>) -> Result<AdapterResponse, Problem> {
        let rest = req
            .path
            .split_once("/debt-positions")
            .map(|(_, r)| r)
            .ok_or_else(|| Problem::new(ProblemKind::NoRoute, "GPD operations are under `…/debt-positions`"))?;
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let valid_id = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        let m = req.method.clone();
        let (path, iupd) = match (m.as_str(), segs.as_slice()) {
            ("POST", []) => {
                let publish = req.query.is_some_and(|q| q.split('&').any(|kv| kv == "publish=true"));
                (format!("debtpositions?toPublish={publish}"), None)
            }
            ("GET" | "PUT" | "DELETE", [id]) if valid_id(id) => (format!("debtpositions/{id}"), Some(*id)),
            ("POST", [id, action @ ("publish" | "invalidate")]) if valid_id(id) => (format!("debtpositions/{id}/{action}"), Some(*id)),
            _ => {
                return Err(Problem::new(
                    ProblemKind::NoRoute,
                    format!("no GPD operation for {m} …/debt-positions{rest} (create, get, update, delete, publish, invalidate)"),
                ))
            }
        };
        let needs_body = m == http::Method::PUT || (m == http::Method::POST && iupd.is_none());
        if needs_body && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&req.body).is_err() {
            return Err(Problem::new(
                ProblemKind::BadRequest,
                "the body must be a GPD PaymentPositionModel (a JSON object)",
            ));
        }
        self.execute(&m, &path, iupd, &req.body, Some(req.traceparent)).await
    }
}

#[async_trait::async_trait]
impl Adapter for GpdAdapter {
    fn kind(&self) -> &'static str {
        "gpd"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<varco_core::Answer, Problem> {
        self.answer(req).await.map(varco_core::Answer::Body)
    }

    /// A `it.varco.tributi.posizione.cambiata.v1` event of the ente: the same operations as the
    /// REST API. Redelivered events are idempotent: an existing position on create, a missing
    /// one on delete, an already published or invalid one count as done.
    async fn on_event(&self, event: &serde_json::Value) -> Result<(), String> {
        if event.get("type").and_then(|t| t.as_str()) != Some(POSITION_EVENT) {
            return Err(format!("the gpd route takes {POSITION_EVENT} events only"));
        }
        let data = event.get("data").cloned().unwrap_or_default();
        let op = data.get("operazione").and_then(|o| o.as_str()).unwrap_or("");
        let iupd = data.get("iupd").and_then(|o| o.as_str()).unwrap_or("");
        let position = data.get("posizione").map(|p| Bytes::from(p.to_string())).unwrap_or_default();
        let publish = data.get("pubblica").and_then(|p| p.as_bool()).unwrap_or(false);
        let (m, path, id, done_if) = match op {
            "crea" => (http::Method::POST, format!("debtpositions?toPublish={publish}"), None, ProblemKind::Conflict),
            "aggiorna" => (http::Method::PUT, format!("debtpositions/{iupd}"), Some(iupd), ProblemKind::Internal),
            "pubblica" => {
                (http::Method::POST, format!("debtpositions/{iupd}/publish"), Some(iupd), ProblemKind::Conflict)
            }
            "invalida" => {
                (http::Method::POST, format!("debtpositions/{iupd}/invalidate"), Some(iupd), ProblemKind::Conflict)
            }
            "elimina" => (http::Method::DELETE, format!("debtpositions/{iupd}"), Some(iupd), ProblemKind::NotFound),
            other => return Err(format!("unknown operazione `{other}`")),
        };
        let safe = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if id.is_some_and(|i| !safe(i)) {
            return Err("`iupd` must be 1 to 64 letters, digits, `-`, `_` or `.`".into());
        }
        let tp = event.get("traceparent").and_then(|t| t.as_str());
        match self.execute(&m, &path, id, &position, tp).await {
            Ok(_) => Ok(()),
            Err(p) if p.kind == done_if => Ok(()),
            Err(p) => Err(format!("{}: {}", p.kind.slug(), p.detail)),
        }
    }
}

impl GpdAdapter {
    /// One GPD operation with retries, as an answer or a problem.
    async fn execute(
        &self,
        m: &http::Method,
        path: &str,
        iupd: Option<&str>,
        body: &Bytes,
        tp: Option<&str>,
    ) -> Result<AdapterResponse, Problem> {
        let valid_id = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        let url = format!("{}/organizations/{}/{path}", self.base, self.ofc);
        let started = std::time::Instant::now();
        let (answer, retried) = self.send(m, &url, body, tp).await;
        if let Some(a) = &self.audit {
            // The operation and the position's id, the outcome: never the position's debtor.
            a.outbound(varco_audit::Record {
                route: "gpd".into(),
                method: m.as_str().to_owned(),
                status: answer.as_ref().map_or(0, |a| a.status),
                latency_ms: started.elapsed().as_millis() as u64,
                upstream: Some(format!("GPD {}", path.split('?').next().unwrap_or(""))),
                trace_id: tp.map(varco_audit::trace_id_of).unwrap_or_default(),
                ..Default::default()
            });
        }
        let mut a = answer.map_err(|e| {
            tracing::warn!(error = %e, "GPD unreachable");
            if e == "timed out" {
                Problem::new(ProblemKind::GatewayTimeout, "GPD did not answer in time")
            } else {
                Problem::new(ProblemKind::UpstreamUnavailable, "GPD is unreachable; retry later").retry_after(5)
            }
        })?;
        // A create whose first answer was lost: 409 now means it worked.
        if a.status == 409 && retried > 0 && iupd.is_none() {
            let id = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("iupd").and_then(|i| i.as_str()).map(str::to_owned));
            if let Some(id) = id.filter(|i| valid_id(i)) {
                let get = format!("{}/organizations/{}/debtpositions/{id}", self.base, self.ofc);
                if let (Ok(g), _) = self.send(&http::Method::GET, &get, &Bytes::new(), tp).await {
                    if g.status == 200 {
                        a = Answer { status: 201, body: g.body };
                    }
                }
            }
        }
        match a.status {
            200..=299 => Ok(AdapterResponse::json(a.status, "application/json", a.body.to_vec())),
            400 | 422 => Err(Problem::new(
                ProblemKind::PlatformRejected,
                format!("GPD refused the position: {}", reason(&a.body)),
            )),
            404 => Err(Problem::new(ProblemKind::NotFound, format!("GPD: {}", reason(&a.body)))),
            409 => Err(Problem::new(ProblemKind::Conflict, format!("GPD: {}", reason(&a.body)))),
            401 | 403 => {
                tracing::error!(status = a.status, "GPD refused varco's subscription key");
                Err(Problem::new(ProblemKind::BadGateway, "GPD refused the ente's credentials (subscription key)"))
            }
            s => Err(Problem::new(
                ProblemKind::UpstreamUnavailable,
                format!("GPD answered {s} after {} attempt(s)", retried + 1),
            )
            .retry_after(5)),
        }
    }
}
