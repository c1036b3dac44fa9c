//! The event contracts (`contracts/events/*.json`): which types exist and what their `data`
//! must look like. Compiled once; validating an event is a lookup and a schema walk.

use cloudevents::{AttributesReader, AttributesWriter, Data, Event};
use std::collections::HashMap;
use varco_core::{Problem, ProblemKind};

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::EventInvalid, detail)
}

/// One event type: its JSON Schema (`$id` is the `dataschema` URI) and its validator.
pub struct EventType {
    pub name: &'static str,
    pub dataschema: String,
    /// `dataschema` parsed once, for the events that leave it out.
    dataschema_url: url::Url,
    /// Whether `subject` may be personal data (a codice fiscale): then it never reaches Kafka
    /// in the clear. The contract says otherwise with `"x-varco-subject-personal": false`;
    /// absent means personal (deny by default).
    pub subject_personal: bool,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventType").field("name", &self.name).finish()
    }
}

/// The contract files, embedded at build time.
const SCHEMAS: &[(&str, &str)] = &[
    (
        "it.varco.anagrafe.residenza.cambiata.v1",
        include_str!("../../../contracts/events/it.varco.anagrafe.residenza.cambiata.v1.json"),
    ),
    (
        "it.varco.tributi.pagamento.ricevuto.v1",
        include_str!("../../../contracts/events/it.varco.tributi.pagamento.ricevuto.v1.json"),
    ),
    (
        "it.varco.tributi.pagamento.ricevuto.v2",
        include_str!("../../../contracts/events/it.varco.tributi.pagamento.ricevuto.v2.json"),
    ),
    (
        "it.varco.sociale.prestazione.erogata.v1",
        include_str!("../../../contracts/events/it.varco.sociale.prestazione.erogata.v1.json"),
    ),
    (
        "it.varco.sociale.prestazione.erogata.v2",
        include_str!("../../../contracts/events/it.varco.sociale.prestazione.erogata.v2.json"),
    ),
    (
        "it.varco.siuss.esito.ricevuto.v1",
        include_str!("../../../contracts/events/it.varco.siuss.esito.ricevuto.v1.json"),
    ),
    (
        "it.varco.tributi.posizione.cambiata.v1",
        include_str!("../../../contracts/events/it.varco.tributi.posizione.cambiata.v1.json"),
    ),
    (
        "it.varco.pratica.stato.cambiato.v1",
        include_str!("../../../contracts/events/it.varco.pratica.stato.cambiato.v1.json"),
    ),
    (
        "it.varco.pdnd.segnale.ricevuto.v1",
        include_str!("../../../contracts/events/it.varco.pdnd.segnale.ricevuto.v1.json"),
    ),
];

/// Every known event type.
#[derive(Debug)]
pub struct Registry {
    types: HashMap<&'static str, EventType>,
}

impl Registry {
    /// Compiles the embedded schemas; an error is a defect of a contract file (tests catch it).
    pub fn load() -> Result<Self, String> {
        let mut types = HashMap::new();
        for (name, text) in SCHEMAS {
            let schema: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("contract {name} is not JSON: {e}"))?;
            let dataschema = schema
                .get("$id")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("contract {name} has no $id"))?
                .to_owned();
            let dataschema_url =
                url::Url::parse(&dataschema).map_err(|e| format!("contract {name}: $id is not a URI: {e}"))?;
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| format!("contract {name} is not a valid schema: {e}"))?;
            let subject_personal = schema.get("x-varco-subject-personal").and_then(|v| v.as_bool()) != Some(false);
            types.insert(*name, EventType { name, dataschema, dataschema_url, subject_personal, validator });
        }
        Ok(Self { types })
    }

    pub fn get(&self, name: &str) -> Option<&EventType> {
        self.types.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().copied()
    }
}

impl EventType {
    /// The first few problems of `data`, each as `<json pointer>: <what is wrong>` (values are
    /// not echoed: they may be personal data).
    pub fn check(&self, data: &serde_json::Value) -> Result<(), Vec<String>> {
        if self.validator.is_valid(data) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .validator
            .iter_errors(data)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                format!("{}: {}", if path.is_empty() { "/" } else { &path }, e.masked())
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Checks one event for ente `tenant` and completes it: `source` under `/enti/<tenant>`, a
/// known `type`, JSON `data` valid against the type's schema; `dataschema`, `time` and the
/// publisher's `traceparent` are filled in when absent.
pub fn check_event(
    registry: &Registry,
    tenant: &str,
    i: usize,
    e: &mut Event,
    traceparent: Option<&str>,
) -> Result<(), Problem> {
    // Messages are built only on the way out: the accepted path allocates nothing here.
    let at = |e: &Event, what: String| format!("event [{i}] (id `{}`): {what}", e.id());
    if e.id().is_empty() || e.id().len() > 256 {
        return Err(invalid(at(e, "`id` must be 1 to 256 characters".into())));
    }
    let source = e.source().as_str();
    let own = source
        .strip_prefix("/enti/")
        .and_then(|rest| rest.strip_prefix(tenant))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !own {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            at(e, format!("`source` must be `/enti/{tenant}` or below it, not `{source}`")),
        ));
    }
    let Some(ty) = registry.get(e.ty()) else {
        return Err(invalid(at(e, format!("unknown `type` `{}` (see contracts/events/)", e.ty()))));
    };
    match e.dataschema() {
        Some(ds) if ds.as_str() != ty.dataschema => {
            return Err(invalid(at(e, format!("`dataschema` of `{}` is `{}`", ty.name, ty.dataschema))))
        }
        Some(_) => {}
        None => {
            e.set_dataschema(Some(ty.dataschema_url.clone()));
        }
    }
    if let Some(ct) = e.datacontenttype() {
        if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
            return Err(invalid(at(e, format!("`datacontenttype` must be application/json, not `{ct}`"))));
        }
    }
    // JSON `data` is checked where it lies; text or bytes are read as JSON first.
    let parsed: Option<serde_json::Value> = match e.data() {
        Some(Data::Json(_)) => None,
        Some(Data::Binary(b)) => {
            Some(serde_json::from_slice(b).map_err(|err| invalid(at(e, format!("`data` is not JSON: {err}"))))?)
        }
        Some(Data::String(s)) => {
            Some(serde_json::from_str(s).map_err(|err| invalid(at(e, format!("`data` is not JSON: {err}"))))?)
        }
        None => return Err(invalid(at(e, "`data` is missing".into()))),
    };
    // `data` as JSON from here on, its content type the canonical one.
    match parsed {
        Some(v) => {
            e.set_data("application/json", v);
        }
        None if e.datacontenttype() != Some("application/json") => {
            e.set_datacontenttype(Some("application/json"));
        }
        None => {}
    }
    if let Some(Data::Json(v)) = e.data() {
        if let Err(errors) = ty.check(v) {
            return Err(Problem::new(
                ProblemKind::EventSchemaViolation,
                at(e, format!("`data` of `{}`: {}", ty.name, errors.join("; "))),
            ));
        }
    }
    if e.time().is_none() {
        e.set_time(Some(chrono::Utc::now()));
    }
    if e.extension("traceparent").is_none() {
        if let Some(tp) = traceparent {
            e.set_extension("traceparent", tp.to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_contract_compiles_and_checks_its_data() {
        let r = super::Registry::load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.names().count(), 9);
        let t = r.get("it.varco.anagrafe.residenza.cambiata.v1").unwrap();
        assert_eq!(t.dataschema, "urn:varco:events:it.varco.anagrafe.residenza.cambiata.v1");
        let good =
            json!({"codiceFiscale": "RSSMRA80A01H501U", "comuneDestinazione": "E783", "dataDecorrenza": "2026-11-20"});
        assert!(t.check(&good).is_ok());
        let bad =
            json!({"codiceFiscale": "rossi", "comuneDestinazione": "E783", "dataDecorrenza": "20/11/2026", "extra": 1});
        let errs = t.check(&bad).unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("/codiceFiscale"), "{all}");
        assert!(all.contains("/dataDecorrenza"), "{all}");
        assert!(!all.contains("rossi"), "a value was echoed: {all}");
        // A codice fiscale as subject is personal; a case id or an IUV is not.
        assert!(t.subject_personal);
        assert!(r.get("it.varco.sociale.prestazione.erogata.v1").unwrap().subject_personal);
        assert!(!r.get("it.varco.pratica.stato.cambiato.v1").unwrap().subject_personal);
        assert!(!r.get("it.varco.tributi.pagamento.ricevuto.v1").unwrap().subject_personal);
        assert!(!r.get("it.varco.tributi.pagamento.ricevuto.v2").unwrap().subject_personal);
        // A pseudonymised id is still personal data: sealed like a codice fiscale.
        let signal = r.get("it.varco.pdnd.segnale.ricevuto.v1").unwrap();
        assert!(signal.subject_personal);
        let ok = json!({"eserviceId": "es-1", "signalId": 7, "signalType": "SEEDUPDATE", "objectType": "-", "objectId": "-"});
        assert!(signal.check(&ok).is_ok());
        assert!(signal
            .check(&json!({"eserviceId": "es-1", "signalId": -1, "signalType": "BOOM", "objectType": "x"}))
            .is_err());
    }
}
