//! Configuration of back-office mediation: `kind: soap` (a REST+JSON route in front of one
//! operation of a SOAP back-office) and `kind: soap_service` (a SOAP service varco publishes,
//! each operation a call to a REST back-office). Both name the route's upstream pool, so the
//! back-office is called with the pool's health checks, breaker, retries and timeouts.

use crate::model::SecretRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The SOAP version of the binding to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SoapVersion {
    #[serde(rename = "1.1")]
    V11,
    #[serde(rename = "1.2")]
    V12,
}

/// A user name and a password from a secret (never inline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: SecretRef,
}

/// `to: {adapter: {kind: soap, ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SoapConfig {
    /// The ente's upstream pool that serves the SOAP back-office.
    pub upstream: String,
    /// The back-office's WSDL file (imported XSDs are read relative to it).
    pub wsdl: PathBuf,
    /// The WSDL operation this route calls.
    pub operation: String,
    /// The binding's SOAP version. Default: 1.1 when the WSDL has a 1.1 binding, else 1.2.
    #[serde(default)]
    pub soap_version: Option<SoapVersion>,
    /// The path on the back-office. Default: the path of the port's `soap:address`.
    #[serde(default)]
    pub path: Option<String>,
    /// A WS-Security `UsernameToken` (password as text) in every request's header.
    #[serde(default)]
    pub ws_security: Option<Credentials>,
    /// HTTP basic credentials towards the back-office.
    #[serde(default)]
    pub basic_auth: Option<Credentials>,
    /// A minijinja template that renders the operation's input as JSON from `path` (the
    /// route's path parameters), `query`, `body` (the caller's JSON) and `caller` (the
    /// verified identity). Default: `body` with the path and query parameters added.
    #[serde(default)]
    pub request_template: Option<String>,
    /// A minijinja template that renders the caller's JSON answer from `response` (the
    /// operation's output as JSON). Default: `response` itself.
    #[serde(default)]
    pub response_template: Option<String>,
    /// Fault codes (`Client.ResourceNotFound`, or a prefix such as `Client`) mapped to the
    /// status the caller gets: 404, 409, 422, 502 or 503. Default: a code containing
    /// `NotFound` is 404, other `Client`/`Sender` faults 422, the rest 502.
    #[serde(default)]
    pub faults: BTreeMap<String, u16>,
    /// Answer the content of a wrapper element holding one element (the
    /// document/literal-wrapped `…Response/…Result`) instead of the wrapper. Default true.
    #[serde(default = "yes")]
    pub unwrap: bool,
}

fn yes() -> bool {
    true
}

/// `to: {adapter: {kind: soap_service, ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SoapServiceConfig {
    /// The ente's upstream pool that serves the REST back-office.
    pub upstream: String,
    /// The WSDL varco publishes for the route (at `?wsdl`, its address set to the route).
    pub wsdl: PathBuf,
    /// The binding's SOAP version. Default: 1.1 when the WSDL has a 1.1 binding, else 1.2.
    #[serde(default)]
    pub soap_version: Option<SoapVersion>,
    /// Each WSDL operation varco answers, and the REST call that serves it.
    pub operations: BTreeMap<String, RestCall>,
}

/// The REST call behind one SOAP operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestCall {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The back-office path; `{name}` takes the request's field `name` (removed from the
    /// body). With `GET` and `DELETE` the other fields go in the query string.
    pub path: String,
    /// A minijinja template that renders the REST request body from `request` (the SOAP
    /// request as JSON). Default: `request` with the path fields taken out.
    #[serde(default)]
    pub request_template: Option<String>,
    /// A minijinja template that renders the operation's output (as JSON) from `response`
    /// (the back-office's JSON). Default: `response`.
    #[serde(default)]
    pub response_template: Option<String>,
}

/// `to: {adapter: {kind: rest, ...}}`: a REST back-office whose request and answer are
/// reshaped by templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestMediationConfig {
    /// The ente's upstream pool that serves the REST back-office.
    pub upstream: String,
    /// The back-office's method. Default: the caller's.
    #[serde(default)]
    pub method: Option<String>,
    /// The back-office path; `{name}` takes the route's path parameter (or query parameter)
    /// `name`. Without `request_template` the caller's query string is added.
    pub path: String,
    /// A minijinja template that renders the back-office's JSON body from `path`, `query`,
    /// `body` and `caller`. Default: the caller's body as it came.
    #[serde(default)]
    pub request_template: Option<String>,
    /// A minijinja template that renders the caller's JSON answer from `response` and
    /// `status`. Default: the back-office's answer as it came.
    #[serde(default)]
    pub response_template: Option<String>,
}

impl RestMediationConfig {
    /// Pure checks: (field, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(m) = &self.method {
            if !matches!(m.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                out.push(("method".into(), "must be GET, POST, PUT, PATCH or DELETE".into()));
            }
        }
        if !self.path.starts_with('/') {
            out.push(("path".into(), "must start with `/`".into()));
        }
        for (name, t) in [("request_template", &self.request_template), ("response_template", &self.response_template)]
        {
            if let Some(e) = t.as_deref().and_then(|t| check_template(t).err()) {
                out.push((name.into(), e));
            }
        }
        out
    }
}

/// Checks a template's syntax: the message carries the template's line.
pub fn check_template(src: &str) -> Result<(), String> {
    let env = minijinja::Environment::new();
    env.template_from_str(src).map(|_| ()).map_err(|e| match e.line() {
        Some(l) => format!("template line {l}: {}", e.detail().unwrap_or(&e.to_string())),
        None => e.to_string(),
    })
}

const FAULT_STATUSES: [u16; 5] = [404, 409, 422, 502, 503];

impl SoapConfig {
    /// Pure checks: (field, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.operation.is_empty() {
            out.push(("operation".into(), "names the WSDL operation to call".into()));
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/') {
                out.push(("path".into(), "must start with `/`".into()));
            }
        }
        for (name, t) in [("request_template", &self.request_template), ("response_template", &self.response_template)]
        {
            if let Some(e) = t.as_deref().and_then(|t| check_template(t).err()) {
                out.push((name.into(), e));
            }
        }
        for (code, status) in &self.faults {
            if !FAULT_STATUSES.contains(status) {
                out.push((format!("faults.{code}"), "must be 404, 409, 422, 502 or 503".into()));
            }
        }
        out
    }
}

impl SoapServiceConfig {
    /// Pure checks: (field, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.operations.is_empty() {
            out.push(("operations".into(), "names at least one WSDL operation".into()));
        }
        for (op, c) in &self.operations {
            if !matches!(c.method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                out.push((format!("operations.{op}.method"), "must be GET, POST, PUT, PATCH or DELETE".into()));
            }
            if !c.path.starts_with('/') {
                out.push((format!("operations.{op}.path"), "must start with `/`".into()));
            }
            if c.path.matches('{').count() != c.path.matches('}').count() {
                out.push((format!("operations.{op}.path"), "has an unclosed `{`".into()));
            }
            for (name, t) in [("request_template", &c.request_template), ("response_template", &c.response_template)] {
                if let Some(e) = t.as_deref().and_then(|t| check_template(t).err()) {
                    out.push((format!("operations.{op}.{name}"), e));
                }
            }
        }
        out
    }
}
