//! The SIUSS e-service of each ente (INPS's "Welfare as a Service" contract, v2.0.1): the
//! social-services back-office submits benefits as JSON (`side: back_office`); varco builds
//! each flow's XML, validates it against the official XSD before accepting it, keeps it
//! durably and serves it to INPS, which polls `/flussi` and posts `/esiti` (`side: inps`).
//! Outcomes become `it.varco.siuss.esito.ricevuto.v1` events. Codici fiscali never reach logs.

pub mod flow;
pub mod store;
pub mod xsd;

use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use varco_config::SiussSide;
use varco_core::query::Query;
use varco_core::{AdapterRequest, AdapterResponse, Answer, Problem, ProblemKind};
use varco_events::EventBus;

pub use flow::{Ente, Submission, Tipo};
pub use store::{Esito, Flow, Store};

/// The enti's stores, one per folder, shared by an ente's two routes and kept across reloads.
#[derive(Debug, Default)]
pub struct Stores(parking_lot::Mutex<HashMap<PathBuf, Arc<Store>>>);

impl Stores {
    pub fn get(&self, dir: &Path, codice_ente: &str) -> Result<Arc<Store>, String> {
        let mut map = self.0.lock();
        if let Some(s) = map.get(dir) {
            return Ok(s.clone());
        }
        let s = Arc::new(Store::open(dir, codice_ente)?);
        map.insert(dir.to_owned(), s.clone());
        Ok(s)
    }
}

/// A `kind: siuss` route.
#[derive(Debug)]
pub struct SiussAdapter {
    pub side: SiussSide,
    pub tenant: String,
    pub ente: Ente,
    pub store: Arc<Store>,
    pub xsd: xsd::Xsd,
    pub bus: Arc<EventBus>,
    /// `tenants[].siuss.retention_days`.
    pub retention_days: Option<u32>,
}

fn bad(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::BadRequest, detail)
}

fn json_answer(status: u16, v: &Value) -> Result<Answer, Problem> {
    let body = serde_json::to_vec(v).map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
    Ok(AdapterResponse::json(status, "application/json", body).into())
}

/// `ts_flusso` as the contract writes it: RFC 3339 in UTC with milliseconds.
fn ts(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// What the back-office sees of a flow.
fn state(f: &Flow) -> Value {
    let stato = match f.esito.as_ref().map(|e| e.codice_esito.as_str()) {
        None => "in_attesa",
        Some("OK") => "acquisito",
        Some(_) => "scartato",
    };
    json!({"id_flusso": f.id_flusso, "tipo": f.tipo.as_str(), "ts_flusso": ts(f.ts_ms), "stato": stato, "esito": f.esito})
}

/// One entry of `POST /esiti`.
#[derive(Debug, serde::Deserialize)]
struct EsitoFlusso {
    id_flusso: String,
    tipo: String,
    ts_flusso: String,
    ts_acquisizione: String,
    codice_esito: String,
    #[serde(default)]
    descrizione_esito: Option<String>,
    #[serde(default)]
    id_acquisizione_siuss: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct ElencoEsiti {
    elenco_esiti: Vec<EsitoFlusso>,
}

impl SiussAdapter {
    /// `GET /flussi?since=<ms>&limit=<0..100>`: the flows after `since`, oldest first.
    fn flussi(&self, query: Option<&str>) -> Result<Answer, Problem> {
        let q = Query::of(format!("?{}", query.unwrap_or("")).as_bytes());
        let since = q
            .get("since")
            .ok_or_else(|| bad("`since` is required: the timestamp (ms) of the last flow read, 0 at first"))?;
        let since: u64 =
            since.parse().map_err(|_| bad("`since` must be a timestamp in milliseconds (an integer ≥ 0)"))?;
        let limit: usize = match q.get("limit") {
            None => 10,
            Some(l) => {
                l.parse().ok().filter(|l| *l <= 100).ok_or_else(|| bad("`limit` must be an integer from 0 to 100"))?
            }
        };
        let flows: Vec<Value> = self
            .store
            .since(since, limit)
            .iter()
            .map(|f| {
                json!({
                    "codice_ente": self.ente.codice, "denominazione_ente": self.ente.denominazione,
                    "id_flusso": f.id_flusso, "ts_flusso": ts(f.ts_ms), "tipo": f.tipo.as_str(), "flusso": f.flusso,
                })
            })
            .collect();
        tracing::info!(target: "varco::audit", tenant = %self.tenant, since, served = flows.len(), "SIUSS flows read by INPS");
        json_answer(200, &json!({ "elenco_flussi": flows }))
    }

    /// `POST /esiti`: outcomes, all or none; each new one published, then recorded.
    async fn esiti(&self, body: &[u8]) -> Result<Answer, Problem> {
        let list: ElencoEsiti = serde_json::from_slice(body).map_err(|e| bad(format!("not an ElencoEsiti: {e}")))?;
        if list.elenco_esiti.len() > 100 {
            return Err(bad("at most 100 esiti per call"));
        }
        let mut esiti = Vec::new();
        for (i, e) in list.elenco_esiti.into_iter().enumerate() {
            let at = |m: &str| bad(format!("elenco_esiti[{i}]: {m}"));
            if !["OK", "DATI_NON_TROVATI", "RICHIESTA_INVALIDA", "ERRORE_GENERICO"].contains(&e.codice_esito.as_str()) {
                return Err(at("`codice_esito` is one of OK, DATI_NON_TROVATI, RICHIESTA_INVALIDA, ERRORE_GENERICO"));
            }
            if !["PS_PSA_SINA", "SINBA"].contains(&e.tipo.as_str()) {
                return Err(at("`tipo` is PS_PSA_SINA or SINBA"));
            }
            for (name, v) in [("ts_flusso", &e.ts_flusso), ("ts_acquisizione", &e.ts_acquisizione)] {
                if chrono::DateTime::parse_from_rfc3339(v).is_err() {
                    return Err(at(&format!("`{name}` is a date-time (RFC 3339)")));
                }
            }
            let esito = Esito {
                codice_esito: e.codice_esito,
                descrizione_esito: e.descrizione_esito.map(|d| d.chars().take(4096).collect()),
                id_acquisizione_siuss: e.id_acquisizione_siuss,
                ts_acquisizione: e.ts_acquisizione,
            };
            esiti.push((e.id_flusso, esito));
        }
        // Published first (event ids are the outcome's, so a retry after a crash is the same
        // event): nothing recorded is ever missing from the bus.
        let mut events = Vec::new();
        for (id, e) in &esiti {
            let known = self.store.get(id).ok_or_else(|| {
                Problem::new(ProblemKind::NotFound, format!("no flow `{id}` was served by this ente"))
            })?;
            if known.esito.as_ref() == Some(e) {
                continue;
            }
            events.push(self.esito_event(id, e)?);
        }
        if !events.is_empty() {
            self.bus.publish(&self.tenant, events, None).await?;
        }
        let store = self.store.clone();
        let recorded = tokio::task::spawn_blocking(move || store.record(esiti))
            .await
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
        if let Some(days) = self.retention_days {
            // Outcomes arrive daily: the sweep rides on them (at most once a day).
            let store = self.store.clone();
            let swept = tokio::task::spawn_blocking(move || store.sweep(days)).await;
            if let Ok(Err(e)) = swept {
                tracing::warn!(tenant = %self.tenant, error = %e, "SIUSS: retention sweep failed");
            }
        }
        match recorded {
            Ok(new) => {
                tracing::info!(target: "varco::audit", tenant = %self.tenant, recorded = new.len(), "SIUSS outcomes received from INPS");
                Ok(AdapterResponse { status: 204, headers: Vec::new(), body: Bytes::new() }.into())
            }
            Err(store::EsitoError::Unknown(id)) => {
                Err(Problem::new(ProblemKind::NotFound, format!("no flow `{id}` was served by this ente")))
            }
            Err(store::EsitoError::Io(e)) => {
                tracing::error!(tenant = %self.tenant, error = %e, "SIUSS: an outcome could not be stored");
                Err(Problem::new(ProblemKind::Internal, "the outcome could not be stored; send it again")
                    .retry_after(30))
            }
        }
    }

    fn esito_event(&self, id: &str, e: &Esito) -> Result<cloudevents::Event, Problem> {
        use cloudevents::EventBuilder as _;
        let mut data = json!({
            "idFlusso": id,
            "esito": if e.codice_esito == "OK" { "ACCETTATO" } else { "SCARTATO" },
            "dataEsito": e.ts_acquisizione,
        });
        if e.codice_esito != "OK" {
            let descrizione = e.descrizione_esito.clone().unwrap_or_else(|| e.codice_esito.clone());
            data["errori"] = json!([{ "codice": e.codice_esito, "descrizione": descrizione }]);
        }
        cloudevents::EventBuilderV10::new()
            .id(format!("siuss-esito-{id}-{}", e.codice_esito))
            .source(format!("/enti/{}/siuss", self.tenant))
            .ty("it.varco.siuss.esito.ricevuto.v1")
            .subject(id)
            .data("application/json", data)
            .build()
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))
    }

    /// `POST /prestazioni`: a benefit, checked against the XSD, stored as a new flow.
    async fn submit(&self, body: &[u8]) -> Result<Answer, Problem> {
        let sub = Submission::parse(body).map_err(|e| invalid(e, Vec::new()))?;
        let flow = self.accept(sub, None).await?;
        let mut answer =
            AdapterResponse::json(201, "application/json", serde_json::to_vec(&state(&flow)).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&flow.id_flusso) {
            answer.headers.push((http::header::HeaderName::from_static("x-id-flusso"), v));
        }
        Ok(answer.into())
    }

    /// Checks a submission against its XSD and stores it as a flow (once per event `from`).
    async fn accept(&self, sub: Submission, from: Option<String>) -> Result<Flow, Problem> {
        // The XML with an id of the final one's shape: the XSD sees what INPS will get.
        let date = varco_core::civil::today_in_italy().replace('-', "");
        let probe = format!("{}.{}.{date}.0000000", self.ente.codice, sub.tipo.id_part());
        let xml = sub.xml(&self.ente, &probe).map_err(|e| invalid(e, Vec::new()))?;
        if let Err(errors) = self.xsd.validate(sub.tipo, xml).await {
            let first = errors.first().cloned().unwrap_or_default();
            return Err(invalid(format!("the flow breaks {}'s XSD: {first}", sub.tipo.as_str()), errors));
        }
        let (store, ente, s) = (self.store.clone(), self.ente.clone(), sub.clone());
        let flow = tokio::task::spawn_blocking(move || store.add_from(s.tipo, from.as_deref(), |id| s.xml(&ente, id)))
            .await
            .map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?
            .map_err(|e| {
                tracing::error!(tenant = %self.tenant, error = %e, "SIUSS: a flow could not be stored");
                Problem::new(ProblemKind::Internal, "the flow could not be stored; nothing was accepted")
                    .retry_after(30)
            })?;
        tracing::info!(target: "varco::audit", tenant = %self.tenant, id_flusso = %flow.id_flusso, tipo = sub.tipo.as_str(), "SIUSS flow accepted");
        Ok(flow)
    }
}

/// A submission that cannot be a flow: 422, with libxml2's findings.
fn invalid(detail: String, errors: Vec<String>) -> Problem {
    Problem::new(ProblemKind::ValidationFailed, detail).with_extra(json!({ "xsd": errors }))
}

#[async_trait::async_trait]
impl varco_core::Adapter for SiussAdapter {
    fn kind(&self) -> &'static str {
        "siuss"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        let path = req.path.trim_end_matches('/');
        let last = path.rsplit('/').next().unwrap_or("");
        let not_here = || Problem::new(ProblemKind::NoRoute, "not a SIUSS resource");
        let method = req.method.clone();
        match (self.side, &method) {
            (SiussSide::Inps, &Method::GET) if last == "flussi" => self.flussi(req.query),
            (SiussSide::Inps, &Method::POST) if last == "esiti" => self.esiti(&req.body).await,
            (SiussSide::Inps, &Method::GET) if last == "status" => {
                let body = json!({"type": "about:blank", "title": "OK", "status": 200, "detail": format!("{} flows kept", self.store.len())});
                Ok(AdapterResponse::json(200, "application/problem+json", body.to_string().into_bytes()).into())
            }
            (SiussSide::BackOffice, &Method::POST) if last == "prestazioni" => self.submit(&req.body).await,
            (SiussSide::BackOffice, &Method::GET) if path.contains("/prestazioni/") => {
                let f = self.store.get(last).ok_or_else(|| Problem::new(ProblemKind::NotFound, "no such flow"))?;
                json_answer(200, &state(&f))
            }
            (SiussSide::Inps, _) if ["flussi", "esiti", "status"].contains(&last) => {
                Err(Problem::new(ProblemKind::MethodNotAllowed, "see the SIUSS contract").allow(if last == "esiti" {
                    "POST"
                } else {
                    "GET"
                }))
            }
            _ => Err(not_here()),
        }
    }

    /// `it.varco.sociale.prestazione.erogata.v2` events of a subscription become flows, once
    /// per event (a redelivery finds its flow). Other types are refused.
    async fn on_event(&self, event: &Value) -> Result<(), String> {
        if self.side != SiussSide::BackOffice {
            return Err("only a back_office SIUSS route takes events".into());
        }
        if event.get("type").and_then(Value::as_str) != Some("it.varco.sociale.prestazione.erogata.v2") {
            return Err("a SIUSS route takes it.varco.sociale.prestazione.erogata.v2 events".into());
        }
        let data = event.get("data").cloned().unwrap_or_default();
        let sub = Submission::parse(data.to_string().as_bytes())?;
        let from = format!(
            "{} {}",
            event.get("source").and_then(Value::as_str).unwrap_or(""),
            event.get("id").and_then(Value::as_str).unwrap_or("")
        );
        self.accept(sub, Some(from)).await.map(|_| ()).map_err(|p| p.detail)
    }

    /// INPS's contract has its own problem shape (`type`, `title`, `status`, `detail`,
    /// `instance`, nothing else): the request id travels in `instance`.
    fn problem_answer(&self, _m: &Method, p: &Problem, request_id: &str, _trace: &str) -> Option<AdapterResponse> {
        if self.side != SiussSide::Inps {
            return None;
        }
        let body = json!({
            "type": p.kind.type_uri(), "title": p.kind.title(), "status": p.status(),
            "detail": p.detail, "instance": format!("urn:varco:request:{request_id}"),
        });
        let mut r = AdapterResponse::json(p.status(), "application/problem+json", body.to_string().into_bytes());
        if let Some(s) = p.retry_after {
            r.headers.push((http::header::RETRY_AFTER, HeaderValue::from(s)));
        }
        if let Some(a) = p.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
            r.headers.push((http::header::ALLOW, a));
        }
        r.headers.extend(p.headers.iter().cloned());
        Some(r)
    }
}
