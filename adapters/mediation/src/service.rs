//! `kind: soap_service`: varco publishes a WSDL and answers its operations by calling a REST
//! back-office; errors are SOAP Faults.

use crate::mapping::{self, Unknown};
use crate::percent_encode;
use crate::template::Template;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde_json::{json, Value};
use varco_core::{AdapterRequest, AdapterResponse, Mediation, Mediator, Problem, ProblemKind, UpstreamCall};
use varco_xml::soap::{self, FaultClass, Version};
use varco_xml::wsdl::{Operation, Wsdl};
use varco_xml::{esc, esc_attr};

/// One operation's REST call.
#[derive(Debug)]
pub struct RestSpec<'a> {
    pub operation: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub request_template: Option<&'a str>,
    pub response_template: Option<&'a str>,
}

#[derive(Debug)]
struct Op {
    op: Operation,
    method: Method,
    path: String,
    request_template: Option<Template>,
    response_template: Option<Template>,
}

/// A built `soap_service` route.
#[derive(Debug)]
pub struct SoapService {
    model: varco_xml::schema::Model,
    version: Version,
    ops: Vec<Op>,
    /// The WSDL as published, with `{{ADDRESS}}` where the port's address goes.
    wsdl: String,
    /// The service's namespace (fault subcodes).
    tns: String,
}

impl SoapService {
    pub fn build(wsdl: &Wsdl, text: &[u8], version: Option<Version>, specs: &[RestSpec<'_>]) -> Result<Self, String> {
        let mut ops = Vec::new();
        for s in specs {
            let op = wsdl
                .operation(s.operation, version)
                .cloned()
                .ok_or_else(|| format!("the WSDL has no operation `{}` for this SOAP version", s.operation))?;
            let method = Method::from_bytes(s.method.as_bytes()).map_err(|_| format!("method `{}`", s.method))?;
            ops.push(Op {
                op,
                method,
                path: s.path.to_owned(),
                request_template: s.request_template.map(Template::new).transpose()?,
                response_template: s.response_template.map(Template::new).transpose()?,
            });
        }
        let version = ops.first().map_or(Version::V11, |o| o.op.version);
        let text = std::str::from_utf8(text).map_err(|_| "the WSDL is not UTF-8".to_owned())?;
        Ok(Self { model: wsdl.model.clone(), version, ops, wsdl: with_placeholder(text), tns: wsdl.tns.clone() })
    }

    fn fault(&self, class: FaultClass, sub: &str, reason: &str, detail: &str) -> AdapterResponse {
        let body = soap::fault_envelope(self.version, class, Some((&self.tns, sub)), reason, detail);
        AdapterResponse {
            status: self.version.fault_status(class),
            headers: vec![(http::header::CONTENT_TYPE, content_type(self.version))],
            body: Bytes::from(body),
        }
    }

    /// The REST call for `op` with the request's fields `v`.
    fn call(&self, i: usize, mut v: Value) -> Result<UpstreamCall, AdapterResponse> {
        let o = &self.ops[i];
        let mut path = match v.as_object() {
            Some(fields) => crate::rest::fill(&o.path, fields),
            None => Err("the request is not a structure".to_owned()),
        }
        .map_err(|e| self.fault(FaultClass::Client, "MissingField", &e, ""))?;
        // Fields that went into the path are not sent again.
        if let Some(m) = v.as_object_mut() {
            for name in o.path.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n)) {
                m.remove(name);
            }
        }
        if let Some(t) = &o.request_template {
            v = t
                .render(&json!({"request": v}))
                .map_err(|e| self.fault(FaultClass::Server, "Mapping", &format!("request mapping: {e}"), ""))?;
        }
        let mut headers = vec![(http::header::ACCEPT, HeaderValue::from_static("application/json"))];
        let body = if matches!(o.method, Method::GET | Method::DELETE) {
            let mut q = Vec::new();
            for (k, val) in v.as_object().into_iter().flatten() {
                let text = match val {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    Value::Number(_) | Value::Bool(_) => val.to_string(),
                    _ => {
                        return Err(self.fault(
                            FaultClass::Server,
                            "Mapping",
                            &format!("`{k}` is not a single value: it cannot go in the query of a {} call", o.method),
                            "",
                        ))
                    }
                };
                q.push(format!("{}={}", percent_encode(k), percent_encode(&text)));
            }
            if !q.is_empty() {
                path.push('?');
                path.push_str(&q.join("&"));
            }
            Bytes::new()
        } else {
            headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        };
        Ok(UpstreamCall { method: o.method.clone(), path_and_query: path, headers, body, op: i })
    }
}

fn content_type(v: Version) -> HeaderValue {
    HeaderValue::from_str(&v.content_type(None)).unwrap_or(HeaderValue::from_static("text/xml"))
}

/// The WSDL text with every `soap:address`/`soap12:address` location replaced by
/// `{{ADDRESS}}`.
fn with_placeholder(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(":address") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let Some(loc) = tail.find("location=") else {
            out.push_str(tail);
            return out;
        };
        let end_tag = tail.find('>').unwrap_or(tail.len());
        if loc > end_tag {
            out.push_str(&tail[..end_tag]);
            rest = &tail[end_tag..];
            continue;
        }
        let q = tail.as_bytes().get(loc + 9).copied().unwrap_or(b'"') as char;
        let value_end = tail[loc + 10..].find(q).map_or(tail.len(), |e| loc + 10 + e);
        out.push_str(&tail[..loc + 10]);
        out.push_str("{{ADDRESS}}");
        rest = &tail[value_end..];
    }
    out.push_str(rest);
    out
}

impl Mediator for SoapService {
    fn kind(&self) -> &'static str {
        "soap_service"
    }

    fn request(&self, req: &AdapterRequest<'_>) -> Result<Mediation, Problem> {
        if req.method == Method::GET {
            let asks_wsdl = req.query.is_some_and(|q| q.split('&').any(|p| p.eq_ignore_ascii_case("wsdl")));
            if !asks_wsdl {
                return Err(Problem::new(ProblemKind::BadRequest, "GET serves the WSDL only: add `?wsdl`"));
            }
            let host = req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            let scheme = if req.tls { "https" } else { "http" };
            let address = format!("{scheme}://{host}{}{}", req.prefix, req.path);
            let body = self.wsdl.replace("{{ADDRESS}}", &esc_attr(&address));
            return Ok(Mediation::Answer(AdapterResponse {
                status: 200,
                headers: vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"))],
                body: Bytes::from(body),
            }));
        }
        let answer = |r: AdapterResponse| Ok(Mediation::Answer(r));
        let doc = match varco_xml::parse(&req.body) {
            Ok(d) => d,
            Err(e) => return answer(self.fault(FaultClass::Client, "MalformedRequest", &e, "")),
        };
        let m = match soap::open(&doc) {
            Ok(m) => m,
            Err(e) => return answer(self.fault(FaultClass::Client, "MalformedRequest", &e, "")),
        };
        if m.version != self.version {
            return answer(self.fault(
                FaultClass::Client,
                "VersionMismatch",
                "this service speaks the other SOAP version",
                "",
            ));
        }
        let p = m.payload;
        let Some(i) = self.ops.iter().position(|o| o.op.input.name == p.name && o.op.input.ns == p.ns) else {
            let reason = format!("no operation takes <{}>", p.name);
            return answer(self.fault(FaultClass::Client, "UnknownOperation", &reason, ""));
        };
        let v = match mapping::to_json(&self.model, &self.ops[i].op.input, p) {
            Ok(v) => v,
            Err(e) => return answer(self.fault(FaultClass::Client, "InvalidRequest", &e.to_string(), "")),
        };
        match self.call(i, v) {
            Ok(c) => Ok(Mediation::Call(c)),
            Err(fault) => answer(fault),
        }
    }

    fn response(&self, op: usize, reply: AdapterResponse) -> Result<AdapterResponse, Problem> {
        let o = &self.ops[op];
        if !(200..300).contains(&reply.status) {
            let (class, sub) = match reply.status {
                404 => (FaultClass::Client, "ResourceNotFound"),
                400..=499 => (FaultClass::Client, "Rejected"),
                _ => (FaultClass::Server, "BackOffice"),
            };
            // A problem+json's detail is the reason; anything else, only its status.
            let reason = crate::rest::backoffice_problem(reply.status, &reply.body).detail;
            return Ok(self.fault(class, sub, &reason, &format!("<status>{}</status>", reply.status)));
        }
        let v: Value = if reply.body.is_empty() {
            Value::Object(Default::default())
        } else {
            match serde_json::from_slice(&reply.body) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(self.fault(
                        FaultClass::Server,
                        "BackOffice",
                        &format!("the back-office's answer is not JSON: {e}"),
                        "",
                    ))
                }
            }
        };
        let mut v = match &o.response_template {
            Some(t) => match t.render(&json!({"response": v})) {
                Ok(v) => v,
                Err(e) => return Ok(self.fault(FaultClass::Server, "Mapping", &format!("response mapping: {e}"), "")),
            },
            None => v,
        };
        // The wrapped convention: the back-office answers the result, the wrapper is ours.
        if let Some(inner) = mapping::single_field(&self.model, &o.op.output) {
            if !v.as_object().is_some_and(|m| m.len() == 1 && m.contains_key(&inner.name)) {
                v = json!({ inner.name.clone(): v });
            }
        }
        let mut xml = String::with_capacity(512);
        if let Err(e) = mapping::to_xml(&self.model, &o.op.output, &v, Unknown::Ignore, &mut xml) {
            let reason = format!("the back-office's answer does not fit the WSDL: {e}");
            return Ok(self.fault(FaultClass::Server, "BackOffice", &reason, ""));
        }
        Ok(AdapterResponse {
            status: 200,
            headers: vec![(http::header::CONTENT_TYPE, content_type(self.version))],
            body: Bytes::from(soap::envelope(self.version, "", &xml)),
        })
    }

    fn problem_answer(
        &self,
        _method: &Method,
        p: &Problem,
        request_id: &str,
        trace_id: &str,
    ) -> Option<AdapterResponse> {
        let class = if p.status() < 500 { FaultClass::Client } else { FaultClass::Server };
        let detail = format!(
            "<problem xmlns=\"urn:varco:problem\"><type>{}</type><status>{}</status><requestId>{}</requestId><traceId>{}</traceId></problem>",
            esc(&p.kind.type_uri()),
            p.status(),
            esc(request_id),
            esc(trace_id)
        );
        let mut r = self.fault(class, p.kind.slug(), &format!("{}: {}", p.kind.title(), p.detail), &detail);
        if let Some(s) = p.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers.push((HeaderName::from_static("retry-after"), v));
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_a_placeholder() {
        let w = r#"<s:port><soap:address location="http://old/x"/><soap12:address location='http://old/y' /></s:port>"#;
        assert_eq!(
            with_placeholder(w),
            r#"<s:port><soap:address location="{{ADDRESS}}"/><soap12:address location='{{ADDRESS}}' /></s:port>"#
        );
    }
}
