//! `kind: soap`: REST+JSON in, one SOAP operation out, JSON back.

use crate::mapping::{self, Unknown};
use crate::template::Template;
use crate::{generic_json, path_params};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use varco_core::{AdapterRequest, AdapterResponse, Mediation, Mediator, Problem, ProblemKind, UpstreamCall};
use varco_xml::soap::{self, Fault, FaultClass, Version};
use varco_xml::wsdl::{Operation, Wsdl};

/// What a `soap` route is built from (secrets already read).
#[derive(Debug)]
pub struct ClientSpec<'a> {
    pub wsdl: &'a Wsdl,
    pub operation: &'a str,
    pub version: Option<Version>,
    pub path: Option<&'a str>,
    /// The route's path template (`/pratiche/{id}`), for path parameters.
    pub route_path: &'a str,
    pub ws_security: Option<(String, String)>,
    pub basic_auth: Option<(String, String)>,
    pub request_template: Option<&'a str>,
    pub response_template: Option<&'a str>,
    pub faults: BTreeMap<String, u16>,
    pub unwrap: bool,
}

/// A built `soap` route.
#[derive(Debug)]
pub struct SoapClient {
    model: varco_xml::schema::Model,
    op: Operation,
    path: String,
    route_path: String,
    header: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    request_template: Option<Template>,
    response_template: Option<Template>,
    faults: BTreeMap<String, u16>,
    unwrap: bool,
}

fn header(v: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(v).map_err(|_| format!("`{v}` cannot be sent in a header"))
}

impl SoapClient {
    pub fn build(s: ClientSpec<'_>) -> Result<Self, String> {
        let op = s.wsdl.operation(s.operation, s.version).cloned().ok_or_else(|| {
            let names: Vec<&str> = s.wsdl.operations.iter().map(|o| o.name.as_str()).collect();
            format!("the WSDL has no operation `{}` for this SOAP version (it has: {})", s.operation, names.join(", "))
        })?;
        let path = match (s.path, op.address.as_deref()) {
            (Some(p), _) => p.to_owned(),
            (None, Some(a)) => {
                let rest = a.split_once("://").map_or(a, |(_, r)| r);
                rest.find('/').map_or("/".to_owned(), |i| rest[i..].to_owned())
            }
            (None, None) => "/".to_owned(),
        };
        let mut headers = vec![(http::header::CONTENT_TYPE, header(&op.version.content_type(Some(&op.action)))?)];
        if op.version == Version::V11 {
            headers
                .push((HeaderName::from_static("soapaction"), header(&format!("\"{}\"", op.action.replace('"', "")))?));
        }
        if let Some((u, p)) = &s.basic_auth {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            let mut v = header(&format!("Basic {token}"))?;
            v.set_sensitive(true);
            headers.push((http::header::AUTHORIZATION, v));
        }
        let header = s.ws_security.as_ref().map(|(u, p)| soap::username_token(u, p)).unwrap_or_default();
        Ok(Self {
            model: s.wsdl.model.clone(),
            op,
            path,
            route_path: s.route_path.to_owned(),
            header,
            headers,
            request_template: s.request_template.map(Template::new).transpose()?,
            response_template: s.response_template.map(Template::new).transpose()?,
            faults: s.faults,
            unwrap: s.unwrap,
        })
    }

    /// The operation's input as JSON, from the request.
    fn input(&self, req: &AdapterRequest<'_>) -> Result<Value, Problem> {
        let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|e| Problem::new(ProblemKind::BadRequest, format!("the body is not JSON: {e}")))?
        };
        let path = path_params(&self.route_path, req.path);
        let query = crate::query_params(req.query);
        if let Some(t) = &self.request_template {
            let caller = req.caller.map(|c| json!({"subject": c.subject, "client_id": c.client_id}));
            let ctx = json!({"path": path, "query": query, "body": body, "caller": caller});
            return t.render(&ctx).map_err(|e| Problem::new(ProblemKind::BadRequest, format!("request mapping: {e}")));
        }
        let Value::Object(mut obj) = body else {
            return Err(Problem::new(ProblemKind::BadRequest, "the body must be a JSON object"));
        };
        // Path parameters win over the body (they are what the route matched); query
        // parameters fill what the body leaves out.
        for (k, v) in path {
            obj.insert(k, v);
        }
        for (k, v) in query {
            obj.entry(k).or_insert(v);
        }
        Ok(Value::Object(obj))
    }

    fn fault_problem(&self, f: &Fault) -> Problem {
        let code = f.full_code();
        let configured = self
            .faults
            .iter()
            .filter(|(k, _)| code == **k || code.starts_with(&format!("{k}.")))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, s)| *s);
        let status = configured.unwrap_or(if code.contains("NotFound") {
            404
        } else if f.class() == FaultClass::Client {
            422
        } else {
            502
        });
        let kind = match status {
            404 => ProblemKind::ResourceNotFound,
            409 => ProblemKind::Conflict,
            422 => ProblemKind::BackofficeRejected,
            503 => ProblemKind::UpstreamUnavailable,
            _ => ProblemKind::BackofficeFault,
        };
        let detail = f.detail.as_ref().map_or(Value::Null, generic_json);
        Problem::new(kind, format!("the back-office answered with fault {code}: {}", f.reason))
            .with_extra(json!({"fault": {"code": code, "string": f.reason, "detail": detail}}))
    }
}

fn bad_answer(what: impl std::fmt::Display) -> Problem {
    Problem::new(ProblemKind::BadGateway, format!("the back-office's answer {what}"))
}

impl Mediator for SoapClient {
    fn kind(&self) -> &'static str {
        "soap"
    }

    fn request(&self, req: &AdapterRequest<'_>) -> Result<Mediation, Problem> {
        let input = self.input(req)?;
        let mut xml = String::with_capacity(512);
        mapping::to_xml(&self.model, &self.op.input, &input, Unknown::Refuse, &mut xml).map_err(|e| {
            Problem::new(
                ProblemKind::ValidationFailed,
                format!("the request does not fit operation `{}`: {e}", self.op.name),
            )
            .with_extra(json!({"field": e.path}))
        })?;
        let body = soap::envelope(self.op.version, &self.header, &xml);
        Ok(Mediation::Call(UpstreamCall {
            method: Method::POST,
            path_and_query: self.path.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(body),
            op: 0,
        }))
    }

    fn response(&self, _op: usize, reply: AdapterResponse) -> Result<AdapterResponse, Problem> {
        let is_xml = reply
            .headers
            .iter()
            .any(|(k, v)| k == http::header::CONTENT_TYPE && v.to_str().is_ok_and(|ct| ct.contains("xml")));
        if !is_xml {
            return Err(bad_answer(format_args!("is HTTP {} without SOAP", reply.status)).retry_after(1));
        }
        let doc = varco_xml::parse(&reply.body).map_err(|e| bad_answer(format_args!("is refused: {e}")))?;
        let m = soap::open(&doc).map_err(|e| bad_answer(format_args!("is not a SOAP answer: {e}")))?;
        if m.version != self.op.version {
            return Err(bad_answer("is in the other SOAP version"));
        }
        if let Some(f) = soap::fault(&m) {
            return Err(self.fault_problem(&f));
        }
        if !(200..300).contains(&reply.status) {
            return Err(bad_answer(format_args!("is HTTP {} without a fault", reply.status)));
        }
        let out = &self.op.output;
        if m.payload.name != out.name || m.payload.ns != out.ns {
            return Err(bad_answer(format_args!("holds <{}>, not <{}>", m.payload.name, out.name)));
        }
        let mut v = mapping::to_json(&self.model, out, m.payload)
            .map_err(|e| bad_answer(format_args!("does not fit the WSDL: {e}")))?;
        if self.unwrap {
            if let Some(inner) = mapping::single_field(&self.model, out) {
                v = match v {
                    Value::Object(mut o) => o.remove(&inner.name).unwrap_or(Value::Null),
                    other => other,
                };
            }
        }
        if let Some(t) = &self.response_template {
            v = t
                .render(&json!({"response": v}))
                .map_err(|e| Problem::new(ProblemKind::AdapterError, format!("response mapping: {e}")))?;
        }
        let body = serde_json::to_vec(&v).map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
        Ok(AdapterResponse::json(200, "application/json", body))
    }
}

impl SoapClient {
    /// The operation's name.
    pub fn operation(&self) -> &str {
        &self.op.name
    }

    /// JSON Schemas of the request body and of the answer (as the default mapping makes them;
    /// a template's shape is the integrator's to describe).
    pub fn schemas(&self, s: &mut crate::openapi::Schemas) -> (Option<Value>, Option<Value>) {
        let path_names: Vec<String> = path_params(&self.route_path, &self.route_path).keys().cloned().collect();
        let req = (self.request_template.is_none()).then(|| {
            let mut v = s.field(&self.model, &self.op.input);
            // Path parameters come from the path, not the body.
            if let Some(name) =
                v.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(str::to_owned)
            {
                if let Some(Value::Object(o)) = s.named.get(&name).cloned() {
                    let mut o = o;
                    if let Some(Value::Object(p)) = o.get_mut("properties") {
                        p.retain(|k, _| !path_names.contains(k));
                    }
                    if let Some(Value::Array(r)) = o.get_mut("required") {
                        r.retain(|k| !k.as_str().is_some_and(|k| path_names.iter().any(|n| n == k)));
                    }
                    if o.get("required").is_some_and(|r| r.as_array().is_some_and(Vec::is_empty)) {
                        o.remove("required");
                    }
                    let body_name = format!("{name}Body");
                    s.named.insert(body_name.clone(), Value::Object(o));
                    v = json!({"$ref": format!("#/components/schemas/{body_name}")});
                }
            }
            v
        });
        let resp = (self.response_template.is_none()).then(|| {
            let out = match mapping::single_field(&self.model, &self.op.output).filter(|_| self.unwrap) {
                Some(inner) => inner.clone(),
                None => self.op.output.clone(),
            };
            s.field(&self.model, &out)
        });
        (req, resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn wsdl() -> Wsdl {
        crate::load_wsdl(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pratiche.wsdl")).unwrap().0
    }

    fn client(w: &Wsdl, op: &str, route: &str) -> SoapClient {
        SoapClient::build(ClientSpec {
            wsdl: w,
            operation: op,
            version: None,
            path: None,
            route_path: route,
            ws_security: Some(("comune".into(), "s3gr3t<o".into())),
            basic_auth: None,
            request_template: None,
            response_template: None,
            faults: BTreeMap::new(),
            unwrap: true,
        })
        .unwrap()
    }

    fn call(c: &SoapClient, path: &str, query: Option<&str>, body: &str) -> Result<UpstreamCall, Problem> {
        let headers = http::HeaderMap::new();
        let req = AdapterRequest {
            method: &Method::POST,
            path,
            prefix: "/c_e783",
            tls: false,
            query,
            headers: &headers,
            body: Bytes::from(body.to_owned()),
            tenant_id: "c_e783",
            request_id: "r",
            traceparent: "",
            caller: None,
            client_id: None,
        };
        match c.request(&req)? {
            Mediation::Call(c) => Ok(c),
            Mediation::Answer(_) => panic!("answered"),
        }
    }

    fn reply(status: u16, body: &[u8]) -> AdapterResponse {
        AdapterResponse {
            status,
            headers: vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"))],
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn json_becomes_the_operation_request_with_the_wsdl_action_path_and_token() {
        let w = wsdl();
        let c = client(&w, "getPratica", "/pratiche/{id}");
        let up = call(&c, "/pratiche/P-2026-0001", None, "").unwrap();
        assert_eq!(up.path_and_query, "/soap11");
        assert!(up.headers.iter().any(|(k, v)| k == "soapaction" && v == "\"getPratica\""));
        let doc = varco_xml::parse(&up.body).unwrap();
        let m = soap::open(&doc).unwrap();
        assert_eq!(m.payload.name, "getPratica");
        assert_eq!(m.payload.ns.as_deref(), Some("urn:comune:pratiche"));
        assert_eq!(m.payload.children[0].ns.as_deref(), Some("urn:comune:pratiche"), "elementFormDefault=qualified");
        assert_eq!(m.payload.text_of("id"), Some("P-2026-0001"));
        let tok = &m.header.unwrap().children[0];
        assert_eq!(tok.name, "Security");
        assert_eq!(tok.children[0].text_of("Password"), Some("s3gr3t<o"));
    }

    #[test]
    fn nested_objects_arrays_and_base64_are_written_in_schema_order() {
        let w = wsdl();
        let c = client(&w, "presentaIstanza", "/istanze");
        let body = r#"{"istanza": {"note": "urgente", "allegati": [{"contenuto": "aGVsbG8=", "nome": "a.pdf"}, {"nome": "b.pdf", "contenuto": "Ynll"}],
            "richiedente": {"cognome": "Rossi", "nome": "Mario", "codiceFiscale": "RSSMRA80A01H501U"}, "tipo": "SUAP"}}"#;
        let up = call(&c, "/istanze", None, body).unwrap();
        let doc = varco_xml::parse(&up.body).unwrap();
        let m = soap::open(&doc).unwrap();
        let ist = &m.payload.children[0];
        let names: Vec<&str> = ist.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tipo", "richiedente", "allegati", "note"]);
        let allegati = ist.child("allegati").unwrap();
        assert_eq!(allegati.children.len(), 2);
        assert_eq!(allegati.children[1].name, "Allegato");
        assert_eq!(allegati.children[1].text_of("contenuto"), Some("Ynll"));
    }

    #[test]
    fn requests_that_do_not_fit_are_refused_naming_the_field() {
        let w = wsdl();
        let c = client(&w, "presentaIstanza", "/istanze");
        let cases = [
            (r#"{"istanza": {"tipo": "SUAP"}}"#, "presentaIstanza/istanza/richiedente: is required"),
            (
                r#"{"istanza": {"tipo": "SUAP", "richiedente": {"codiceFiscale": "rssmra", "nome": "M", "cognome": "R"}}}"#,
                "codiceFiscale: `rssmra` does not match",
            ),
            (
                r#"{"istanza": {"tipo": "SUAP", "extra": 1, "richiedente": {"codiceFiscale": "RSSMRA80A01H501U", "nome": "M", "cognome": "R"}}}"#,
                "istanza/extra: unknown field",
            ),
            (
                r#"{"istanza": {"tipo": "SUAP", "allegati": [{"nome": "a", "contenuto": "***"}], "richiedente": {"codiceFiscale": "RSSMRA80A01H501U", "nome": "M", "cognome": "R"}}}"#,
                "allegati/Allegato[1]/contenuto: `***` is not base64",
            ),
            (r#"{"istanza": {"tipo": ["SUAP"], "richiedente": {}}}"#, "istanza/tipo: must be a single value"),
        ];
        for (body, want) in cases {
            let p = call(&c, "/istanze", None, body).unwrap_err();
            assert_eq!(p.kind, ProblemKind::ValidationFailed, "{body}");
            assert!(p.detail.contains(want), "{} ∌ {want}", p.detail);
        }
        assert_eq!(call(&c, "/istanze", None, "{not json").unwrap_err().kind, ProblemKind::BadRequest);
        assert_eq!(call(&c, "/istanze", None, "[]").unwrap_err().kind, ProblemKind::BadRequest);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(call(&c, "/istanze", None, &deep).is_err());
    }

    #[test]
    fn answers_become_json_unwrapped_typed_and_arrays() {
        let w = wsdl();
        let c = client(&w, "getPratica", "/pratiche/{id}");
        let r = c.response(0, reply(200, include_bytes!("../testdata/getPratica.response.xml"))).unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["id"], "P-2026-0001");
        assert_eq!(v["importo"], 152.5);
        assert_eq!(v["urgente"], true);
        assert_eq!(v["documenti"][1]["pagine"], 1);
        assert_eq!(v["richiedente"]["cognome"], "Rossi");
        let c = client(&w, "cercaPratiche", "/pratiche");
        let r = c.response(0, reply(200, include_bytes!("../testdata/cercaPratiche.empty.xml"))).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), json!([]));
    }

    #[test]
    fn faults_and_broken_answers_become_problems() {
        let w = wsdl();
        let c = client(&w, "getPratica", "/pratiche/{id}");
        let nf = br#"<?xml version='1.0' encoding='UTF-8'?><soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/"><soap11env:Body><soap11env:Fault><faultcode>soap11env:Client.ResourceNotFound</faultcode><faultstring>Requested resource 'pratica X' not found</faultstring><faultactor></faultactor></soap11env:Fault></soap11env:Body></soap11env:Envelope>"#;
        let p = c.response(0, reply(500, nf)).unwrap_err();
        assert_eq!(p.kind, ProblemKind::ResourceNotFound);
        assert_eq!(p.extra.unwrap()["fault"]["code"], "Client.ResourceNotFound");
        let server = soap::fault_envelope(Version::V11, FaultClass::Server, None, "db down", "<codice>E42</codice>");
        let p = c.response(0, reply(500, server.as_bytes())).unwrap_err();
        assert_eq!(p.kind, ProblemKind::BackofficeFault);
        assert_eq!(p.extra.unwrap()["fault"]["detail"]["codice"], "E42");
        let good = std::str::from_utf8(include_bytes!("../testdata/getPratica.response.xml")).unwrap();
        let broken = good.replace("<tns:tipo>SUAP</tns:tipo>", "<tns:tipo>SUAP</tns:tipo><tns:segreto>x</tns:segreto>");
        let p = c.response(0, reply(200, broken.as_bytes())).unwrap_err();
        assert_eq!(p.kind, ProblemKind::BadGateway);
        assert!(p.detail.contains("getPraticaResponse/getPraticaResult/segreto: is not in the schema"), "{}", p.detail);
        let missing = good.replace("<tns:tipo>SUAP</tns:tipo>", "");
        assert!(c
            .response(0, reply(200, missing.as_bytes()))
            .unwrap_err()
            .detail
            .contains("getPraticaResult/tipo: is missing"));
        let bad_date = good.replace("2026-11-02", "02/11/2026");
        assert!(c.response(0, reply(200, bad_date.as_bytes())).unwrap_err().detail.contains("dataApertura"));
        let bomb = br#"<!DOCTYPE l [<!ENTITY a "aaaa">]><x>&a;</x>"#;
        assert!(c.response(0, reply(200, bomb)).unwrap_err().detail.contains("DOCTYPE"));
        let html = AdapterResponse { status: 503, headers: vec![], body: Bytes::from_static(b"<html/>") };
        assert_eq!(c.response(0, html).unwrap_err().kind, ProblemKind::BadGateway);
    }
}

#[cfg(test)]
mod rpc_tests {
    use super::*;

    const RPC: &str = include_str!("../../xml/testdata/rpc.wsdl");

    #[test]
    fn rpc_literal_wraps_the_parts_in_the_operation_element() {
        let w = Wsdl::load(RPC.as_bytes(), &|_| Err("none".into())).unwrap();
        let c = SoapClient::build(ClientSpec {
            wsdl: &w,
            operation: "verifica",
            version: None,
            path: None,
            route_path: "/verifica/{codiceFiscale}",
            ws_security: None,
            basic_auth: None,
            request_template: None,
            response_template: None,
            faults: BTreeMap::new(),
            unwrap: true,
        })
        .unwrap();
        let h = http::HeaderMap::new();
        let req = AdapterRequest {
            method: &Method::GET,
            path: "/verifica/RSSMRA80A01H501U",
            prefix: "",
            tls: false,
            query: Some("anno=2026"),
            headers: &h,
            body: Bytes::new(),
            tenant_id: "c_a662",
            request_id: "r",
            traceparent: "",
            caller: None,
            client_id: None,
        };
        let Mediation::Call(up) = c.request(&req).unwrap() else { panic!() };
        assert_eq!(up.path_and_query, "/anagrafe/rpc");
        let doc = varco_xml::parse(&up.body).unwrap();
        let m = soap::open(&doc).unwrap();
        assert_eq!((m.payload.name.as_str(), m.payload.ns.as_deref()), ("verifica", Some("urn:anag:rpc")));
        assert_eq!(m.payload.children[0].ns, None, "parts are unqualified");
        assert_eq!(m.payload.text_of("anno"), Some("2026"));
        let answer = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><r:verificaResponse xmlns:r="urn:anag:rpc"><residente>true</residente></r:verificaResponse></s:Body></s:Envelope>"#;
        let reply = AdapterResponse {
            status: 200,
            headers: vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml"))],
            body: Bytes::from_static(answer.as_bytes()),
        };
        assert_eq!(&c.response(0, reply).unwrap().body[..], b"true");
        let bad = AdapterResponse {
            body: Bytes::from(answer.replace("true", "forse")),
            ..AdapterResponse::json(200, "text/xml", vec![])
        };
        assert!(c
            .response(0, bad)
            .unwrap_err()
            .detail
            .contains("verificaResponse/residente: `forse` is not a boolean"));
    }
}
