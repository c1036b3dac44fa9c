//! ANPR for the ente's back-offices: `GET …/residenza/{codice_fiscale}` (C001) and
//! `GET …/famiglia/{codice_fiscale}` (C021) in plain JSON, while varco does PDND for them —
//! the voucher, INTEGRITY_REST_02, AUDIT_REST_02 naming who asked — and checks ANPR's signed
//! answer before the back-office sees it. ANPR's error lists become problem+json naming ANPR's
//! codes.

pub mod mapping;

use bytes::Bytes;
use http::Method;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use varco_auth::TrackedUser;
use varco_config::{AnprConfig, TrackingDefaults};
use varco_core::query::Query;
use varco_core::{AdapterRequest, AdapterResponse, Answer, Identity, Problem, ProblemKind};
use varco_outbound::{CallError, Eservice, VoucherError};

/// Longest `motivo`, `caso_uso` or operator header taken from a request.
const MAX_FIELD: usize = 128;

/// The two lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Residenza,
    Famiglia,
}

impl Lookup {
    fn code(self) -> &'static str {
        match self {
            Self::Residenza => "C001",
            Self::Famiglia => "C021",
        }
    }
}

/// One configured e-service and its default `casoUso`.
#[derive(Debug)]
pub struct Service {
    pub call: Eservice,
    pub caso_uso: String,
    /// Held for the whole call when the e-service wants its ids in order (C001).
    pub turn: Option<tokio::sync::Mutex<()>>,
}

/// The `anpr` adapter of one route.
#[derive(Debug)]
pub struct AnprAdapter {
    tenant: String,
    residenza: Option<Service>,
    famiglia: Option<Service>,
    motivo: Option<String>,
    tracking: TrackingDefaults,
    retry_after: u32,
    /// The last `idOperazioneClient` (numeric, increasing: microseconds, at least last + 1).
    last_id: AtomicU64,
    /// Where each call to ANPR is kept, when the audit trail is on.
    audit: Option<varco_audit::Recorder>,
}

impl AnprAdapter {
    /// Keeps each call to ANPR in the audit trail.
    pub fn with_audit(mut self, audit: Option<varco_audit::Recorder>) -> Self {
        self.audit = audit;
        self
    }

    /// The adapter over its built e-service calls.
    pub fn new(tenant: &str, cfg: &AnprConfig, residenza: Option<Service>, famiglia: Option<Service>) -> Self {
        Self {
            tenant: tenant.to_owned(),
            residenza,
            famiglia,
            motivo: cfg.motivo.clone(),
            tracking: cfg.tracking.clone(),
            retry_after: cfg.retry_after_secs,
            last_id: AtomicU64::new(0),
            audit: None,
        }
    }

    /// A new `idOperazioneClient`: ANPR wants it numeric and increasing, unique per call.
    fn next_id(&self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
        let prev =
            self.last_id.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1))).unwrap_or(0);
        now.max(prev + 1)
    }

    /// Who asked, for AUDIT_REST_02: a citizen or operator token names a person; otherwise the
    /// calling application, or the operator it names in `X-User-Id` / `X-User-Location`.
    fn user(&self, req: &AdapterRequest<'_>) -> Result<TrackedUser, Problem> {
        let header = |name: &str| -> Result<Option<String>, Problem> {
            match req.headers.get(name) {
                None => Ok(None),
                Some(v) => match v.to_str() {
                    Ok(s) if !s.trim().is_empty() && s.len() <= MAX_FIELD => Ok(Some(s.trim().to_owned())),
                    _ => Err(Problem::new(
                        ProblemKind::BadRequest,
                        format!("`{name}`: 1 to {MAX_FIELD} characters of text"),
                    )),
                },
            }
        };
        let location = header("x-user-location")?.unwrap_or_else(|| self.tracking.user_location.clone());
        let loa = |id: &Identity| {
            id.acr
                .as_deref()
                .and_then(|a| a.rsplit('/').next())
                .map(str::to_owned)
                .unwrap_or_else(|| self.tracking.loa.clone())
        };
        if let Some(id) = req.caller {
            if let Some(cf) = &id.fiscal_code {
                return Ok(TrackedUser { user_id: cf.clone(), user_location: location, loa: loa(id) });
            }
            let user_id = header("x-user-id")?.unwrap_or_else(|| id.subject.clone());
            return Ok(TrackedUser { user_id, user_location: location, loa: loa(id) });
        }
        let user_id = match header("x-user-id")? {
            Some(u) => u,
            None => req.client_id.map(str::to_owned).ok_or_else(|| {
                Problem::new(ProblemKind::TokenMissing, "ANPR calls name who asks: authenticate the caller")
            })?,
        };
        Ok(TrackedUser { user_id, user_location: location, loa: self.tracking.loa.clone() })
    }

    fn unavailable(&self, what: &str, why: &str) -> Problem {
        Problem::new(ProblemKind::UpstreamUnavailable, format!("{what} cannot be reached: {why}"))
            .retry_after(self.retry_after)
    }

    /// A failed call as the back-office sees it.
    fn call_problem(&self, e: CallError) -> Problem {
        match e {
            CallError::Voucher(VoucherError::Refused { status, reason }) => Problem::new(
                ProblemKind::BadGateway,
                format!("PDND refused the ente's client assertion ({status}): {reason}"),
            ),
            CallError::Voucher(VoucherError::Unavailable(why)) => self.unavailable("PDND's token endpoint", &why),
            CallError::Voucher(VoucherError::Signing(why)) | CallError::Signing(why) => {
                tracing::error!(tenant = %self.tenant, %why, "signing an ANPR request failed");
                Problem::new(ProblemKind::Internal, "varco could not sign the request with the ente's key")
            }
            CallError::Unreachable(why) if why == "timed out" => {
                Problem::new(ProblemKind::GatewayTimeout, "ANPR did not answer in time").retry_after(self.retry_after)
            }
            CallError::Unreachable(why) => self.unavailable("ANPR", &why),
            CallError::Unsigned(why) => {
                tracing::warn!(tenant = %self.tenant, %why, "an ANPR answer did not verify");
                Problem::new(
                    ProblemKind::BadGateway,
                    format!("ANPR's answer did not verify, so it is not passed on: {why}"),
                )
            }
        }
    }
}

/// A codice fiscale of a person: 16 characters, letters and digits where the format puts them
/// (digits may be letters for omocodia), and the check character right.
pub fn is_codice_fiscale(cf: &str) -> bool {
    const ODD: [u32; 36] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16,
        10, 22, 25, 24, 23,
    ];
    let b = cf.as_bytes();
    if b.len() != 16 || !b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
        return false;
    }
    let letters = [0, 1, 2, 3, 4, 5, 8, 11, 15];
    let omocodia = b"LMNPQRSTUV";
    for (i, &c) in b.iter().enumerate() {
        let ok =
            if letters.contains(&i) { c.is_ascii_uppercase() } else { c.is_ascii_digit() || omocodia.contains(&c) };
        if !ok {
            return false;
        }
    }
    let value = |c: u8| if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
    let sum: u32 = b[..15]
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let v = value(c);
            if i % 2 == 0 {
                ODD[v as usize]
            } else if c.is_ascii_digit() {
                v
            } else {
                v - 10
            }
        })
        .sum();
    u32::from(b[15] - b'A') == sum % 26
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&s[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&s[8..10].parse::<u32>().unwrap_or(0))
}

#[async_trait::async_trait]
impl varco_core::Adapter for AnprAdapter {
    fn kind(&self) -> &'static str {
        "anpr"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        if req.method != Method::GET {
            return Err(Problem::new(ProblemKind::MethodNotAllowed, "ANPR lookups are GET").allow("GET"));
        }
        let mut segs = req.path.rsplit('/');
        let (cf, op) = (segs.next().unwrap_or(""), segs.next().unwrap_or(""));
        let (lookup, service) = match op {
            "residenza" => (Lookup::Residenza, &self.residenza),
            "famiglia" => (Lookup::Famiglia, &self.famiglia),
            _ => {
                return Err(Problem::new(
                    ProblemKind::NoRoute,
                    "ANPR lookups are `…/residenza/{codice_fiscale}` and `…/famiglia/{codice_fiscale}`",
                ))
            }
        };
        let service = service.as_ref().ok_or_else(|| {
            Problem::new(ProblemKind::NoRoute, format!("this ente has no ANPR {} e-service configured", lookup.code()))
        })?;
        let cf = cf.to_ascii_uppercase();
        if !is_codice_fiscale(&cf) {
            return Err(Problem::new(
                ProblemKind::BadRequest,
                "the path's codice fiscale is not a valid one (16 characters, check character)",
            ));
        }
        let q = Query::of(format!("?{}", req.query.unwrap_or("")).as_bytes());
        let field = |name: &str, default: Option<&str>| -> Result<String, Problem> {
            let v = q.get(name).or_else(|| default.map(str::to_owned)).unwrap_or_default();
            if v.trim().is_empty() || v.len() > MAX_FIELD || v.chars().any(char::is_control) {
                return Err(Problem::new(
                    ProblemKind::BadRequest,
                    format!("`{name}`: 1 to {MAX_FIELD} characters of text"),
                ));
            }
            Ok(v)
        };
        let motivo = field("motivo", self.motivo.as_deref())?;
        let caso_uso = field("caso_uso", Some(&service.caso_uso))?;
        let data = match q.get("data") {
            Some(d) if is_date(&d) => d,
            Some(_) => return Err(Problem::new(ProblemKind::BadRequest, "`data` must be a date, YYYY-MM-DD")),
            None => varco_core::civil::today_in_italy(),
        };
        let user = self.user(&req)?;
        // The id is made when the request is about to leave (after the voucher), so that
        // calls reach ANPR in the order of their ids as far as a client can make them.
        // C001 wants increasing ids: one call at a time, so none overtakes another.
        let _turn = match &service.turn {
            Some(t) => Some(t.lock().await),
            None => None,
        };
        let used = AtomicU64::new(0);
        let make = || {
            let id = self.next_id();
            used.store(id, Ordering::Relaxed);
            let body = mapping::request(&id.to_string(), &cf, &data, &motivo, &caso_uso);
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
        };
        let started = std::time::Instant::now();
        let reply = service.call.post_json(make, &user, req.traceparent).await;
        let id = used.load(Ordering::Relaxed).to_string();
        let status = reply.as_ref().map(|r| r.status).unwrap_or(0);
        match &self.audit {
            // Who asked ANPR what, under which purpose, with which outcome: never the codice fiscale.
            Some(a) => a.outbound(varco_audit::Record {
                route: format!("anpr:{}", lookup.code()),
                method: "POST".into(),
                status,
                latency_ms: started.elapsed().as_millis() as u64,
                caller: Some(user.user_id.clone()),
                client_id: req.client_id.map(str::to_owned),
                purpose_id: Some(service.call.purpose_id.clone()),
                loa: Some(user.loa.clone()),
                user_id: Some(user.user_id.clone()),
                user_location: Some(user.user_location.clone()),
                upstream: Some(format!("ANPR {} idOperazioneClient {id}", lookup.code())),
                trace_id: varco_audit::trace_id_of(req.traceparent),
                request_id: req.request_id.to_owned(),
                ..Default::default()
            }),
            None => tracing::info!(
                target: "varco::audit",
                tenant = %self.tenant, eservice = lookup.code(), request_id = %req.request_id,
                purpose_id = %service.call.purpose_id, id_operazione_client = %id,
                user_id = %user.user_id, user_location = %user.user_location, loa = %user.loa,
                status, "ANPR lookup"
            ),
        }
        let reply = reply.map_err(|e| self.call_problem(e))?;
        let answer: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|_| {
            Problem::new(
                ProblemKind::BadGateway,
                format!("ANPR answered {} with a body that is not JSON", reply.status),
            )
        })?;
        let errors = mapping::anomalies(answer.get("listaErrori"));
        let extra = || serde_json::json!({ "anpr_errors": errors, "id_operazione_client": id });
        let named = || {
            errors
                .iter()
                .map(|e| {
                    let code = e.get("codice").and_then(|x| x.as_str()).unwrap_or("?");
                    let text = e.get("testo").and_then(|x| x.as_str()).unwrap_or("");
                    format!("{code} {text}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        match reply.status {
            200 => {
                let mapped = match lookup {
                    Lookup::Residenza => mapping::residenza(&answer),
                    Lookup::Famiglia => mapping::famiglia(&cf, &answer),
                };
                let mapped = mapped
                    .ok_or_else(|| Problem::new(ProblemKind::NotFound, "ANPR lists no one with this codice fiscale"))?;
                let body =
                    serde_json::to_vec(&mapped).map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
                Ok(AdapterResponse::json(200, "application/json", body).into())
            }
            404 => {
                Err(Problem::new(ProblemKind::NotFound, format!("ANPR found no one: {}", named())).with_extra(extra()))
            }
            401 | 403 => Err(Problem::new(
                ProblemKind::BadGateway,
                format!("ANPR refused the ente's credentials ({}; unsigned answer): {}", reply.status, named()),
            )
            .with_extra(extra())),
            s if (400..500).contains(&s) => {
                Err(Problem::new(ProblemKind::PlatformRejected, format!("ANPR refused the request: {}", named()))
                    .with_extra(extra()))
            }
            s => Err(Problem::new(ProblemKind::BadGateway, format!("ANPR answered {s}")).with_extra(extra())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codici_fiscali() {
        assert!(is_codice_fiscale("RSSMRA80A01H501U"));
        assert!(is_codice_fiscale("BNCLCU82B41E783L"));
        assert!(!is_codice_fiscale("RSSMRA80A01H501A"), "wrong check character");
        assert!(!is_codice_fiscale("RSSMRA80A01H501"), "too short");
        assert!(!is_codice_fiscale("rssmra80a01h501u"), "callers' lowercase is uppercased before");
        assert!(!is_codice_fiscale("12345678901"), "an ente's fiscal code is not a person's");
        assert!(!is_codice_fiscale("RSSMRA8ÀA01H501U"));
        // Omocodia: digits replaced by letters (L=0 … V=9), with the check character recomputed.
        assert!(is_codice_fiscale("RSSMRA80A01H50MM"));
        assert!(is_codice_fiscale("RSSMRA80A01H5LMX"));
        assert!(!is_codice_fiscale("RSSMRA80A01H5AMX"), "A is not an omocodia letter");
    }

    #[test]
    fn dates() {
        assert!(is_date("2026-12-03"));
        assert!(!is_date("2026-13-03") && !is_date("2026-12-3") && !is_date("2026/12/03") && !is_date(""));
        assert!(is_date(&varco_core::civil::today_in_italy()));
    }
}
