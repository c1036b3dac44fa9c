//! `kind: rest`: a REST back-office whose shape differs from the API's: the request and the
//! answer reshaped by templates, the path built from the route's parameters.

use crate::template::Template;
use crate::{path_params, percent_encode};
use bytes::Bytes;
use http::{HeaderValue, Method};
use serde_json::{json, Map, Value};
use varco_core::{AdapterRequest, AdapterResponse, Mediation, Mediator, Problem, ProblemKind, UpstreamCall};

/// What a `rest` route is built from.
#[derive(Debug)]
pub struct RestMediatorSpec<'a> {
    pub method: Option<&'a str>,
    pub path: &'a str,
    pub route_path: &'a str,
    pub request_template: Option<&'a str>,
    pub response_template: Option<&'a str>,
}

/// A built `rest` route.
#[derive(Debug)]
pub struct RestMediator {
    method: Option<Method>,
    path: String,
    route_path: String,
    request_template: Option<Template>,
    response_template: Option<Template>,
}

impl RestMediator {
    pub fn build(s: RestMediatorSpec<'_>) -> Result<Self, String> {
        let method =
            s.method.map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| format!("method `{m}`"))).transpose()?;
        Ok(Self {
            method,
            path: s.path.to_owned(),
            route_path: s.route_path.to_owned(),
            request_template: s.request_template.map(Template::new).transpose()?,
            response_template: s.response_template.map(Template::new).transpose()?,
        })
    }
}

/// `{name}` in `template` replaced by the percent-encoded `values[name]`.
pub(crate) fn fill(template: &str, values: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or("unclosed `{`")?;
        let name = &rest[start + 1..start + end];
        let text = match values.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            _ => return Err(format!("`{name}` is required")),
        };
        out.push_str(&percent_encode(&text));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A back-office's error answer as a problem: its own problem+json `detail` when it sent one.
pub(crate) fn backoffice_problem(status: u16, body: &[u8]) -> Problem {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let kind = match status {
        404 => ProblemKind::ResourceNotFound,
        409 => ProblemKind::Conflict,
        400..=499 => ProblemKind::BackofficeRejected,
        _ => ProblemKind::BackofficeFault,
    };
    Problem::new(kind, format!("the back-office answered: {detail}")).with_extra(json!({"status": status}))
}

impl Mediator for RestMediator {
    fn kind(&self) -> &'static str {
        "rest"
    }

    fn request(&self, req: &AdapterRequest<'_>) -> Result<Mediation, Problem> {
        let path = path_params(&self.route_path, req.path);
        let query = crate::query_params(req.query);
        let method = self.method.clone().unwrap_or_else(|| req.method.clone());
        let (body, mut values) = match &self.request_template {
            Some(t) => {
                let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
                    Value::Null
                } else {
                    serde_json::from_slice(&req.body)
                        .map_err(|e| Problem::new(ProblemKind::BadRequest, format!("the body is not JSON: {e}")))?
                };
                let caller = req.caller.map(|c| json!({"subject": c.subject, "client_id": c.client_id}));
                let v = t
                    .render(&json!({"path": path, "query": query, "body": body, "caller": caller}))
                    .map_err(|e| Problem::new(ProblemKind::BadRequest, format!("request mapping: {e}")))?;
                (Bytes::from(serde_json::to_vec(&v).unwrap_or_default()), path)
            }
            // Without a template the body goes as it came.
            None => (req.body.clone(), path),
        };
        for (k, v) in query {
            values.entry(k).or_insert(v);
        }
        let mut target = fill(&self.path, &values).map_err(|e| Problem::new(ProblemKind::BadRequest, e))?;
        if self.request_template.is_none() {
            if let Some(q) = req.query {
                target.push('?');
                target.push_str(q);
            }
        }
        let mut headers = vec![(http::header::ACCEPT, HeaderValue::from_static("application/json"))];
        if !body.is_empty() {
            headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        let body = if matches!(method, Method::GET | Method::DELETE | Method::HEAD) { Bytes::new() } else { body };
        Ok(Mediation::Call(UpstreamCall { method, path_and_query: target, headers, body, op: 0 }))
    }

    fn response(&self, _op: usize, reply: AdapterResponse) -> Result<AdapterResponse, Problem> {
        if !(200..300).contains(&reply.status) {
            return Err(backoffice_problem(reply.status, &reply.body));
        }
        let Some(t) = &self.response_template else { return Ok(reply) };
        let v: Value = if reply.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&reply.body).map_err(|e| {
                Problem::new(ProblemKind::BadGateway, format!("the back-office's answer is not JSON: {e}"))
            })?
        };
        let out = t
            .render(&json!({"response": v, "status": reply.status}))
            .map_err(|e| Problem::new(ProblemKind::AdapterError, format!("response mapping: {e}")))?;
        let body = serde_json::to_vec(&out).map_err(|e| Problem::new(ProblemKind::Internal, e.to_string()))?;
        Ok(AdapterResponse::json(reply.status, "application/json", body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        path: &'a str,
        query: Option<&'a str>,
        body: &'static str,
        h: &'a http::HeaderMap,
    ) -> AdapterRequest<'a> {
        AdapterRequest {
            method: &Method::POST,
            path,
            prefix: "",
            tls: false,
            query,
            headers: h,
            body: Bytes::from_static(body.as_bytes()),
            tenant_id: "c_a662",
            request_id: "r",
            traceparent: "",
            caller: None,
            client_id: None,
        }
    }

    #[test]
    fn templates_reshape_the_request_and_the_answer() {
        let m = RestMediator::build(RestMediatorSpec {
            method: Some("PUT"),
            path: "/v2/cittadini/{cf}/recapiti",
            route_path: "/recapiti/{cf}",
            request_template: Some(r#"{"email": {{ body.mail | tojson }}, "fonte": "varco"}"#),
            response_template: Some(
                r#"{"aggiornato": {{ (status == 200) | tojson }}, "id": {{ pointer(response, "/data/id") | tojson }}}"#,
            ),
        })
        .unwrap();
        let h = http::HeaderMap::new();
        let Mediation::Call(c) = m.request(&req("/recapiti/RSS MRA", None, r#"{"mail": "a@b.it"}"#, &h)).unwrap()
        else {
            panic!()
        };
        assert_eq!((c.method, c.path_and_query.as_str()), (Method::PUT, "/v2/cittadini/RSS%20MRA/recapiti"));
        assert_eq!(serde_json::from_slice::<Value>(&c.body).unwrap(), json!({"email": "a@b.it", "fonte": "varco"}));
        let r =
            m.response(0, AdapterResponse::json(200, "application/json", br#"{"data": {"id": 7}}"#.to_vec())).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), json!({"aggiornato": true, "id": 7}));
        let p = m.response(
            0,
            AdapterResponse::json(404, "application/problem+json", br#"{"detail": "nessun cittadino"}"#.to_vec()),
        );
        assert_eq!(p.unwrap_err().kind, ProblemKind::ResourceNotFound);
        assert!(m.request(&req("/recapiti/X", None, "{", &h)).is_err());
    }
}
