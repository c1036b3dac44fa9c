//! Back-office mediation declared in configuration: no code per back-office.
//!
//! - `kind: soap` ([`client::SoapClient`]): a REST+JSON route in front of one operation of a
//!   SOAP back-office. JSON (body, path and query parameters) becomes the operation's request,
//!   the answer or fault comes back as JSON or problem+json.
//! - `kind: soap_service` ([`service::SoapService`]): varco publishes a WSDL for the route and
//!   answers its operations by calling a REST back-office.
//!
//! - `kind: rest` ([`rest::RestMediator`]): a REST back-office whose request and answer are
//!   reshaped by templates.
//!
//! All are [`varco_core::Mediator`]s: they translate, and the gateway calls the route's
//! upstream pool. The mapping follows the WSDL's schema ([`mapping`]); templates
//! ([`template`]) override it where a back-office's shape differs from the API's.

pub mod client;
pub mod mapping;
pub mod openapi;
pub mod rest;
pub mod service;
pub mod template;

use std::path::Path;
use varco_xml::wsdl::Wsdl;

/// Reads a WSDL file and the schemas it imports (relative to it).
pub fn load_wsdl(path: &Path) -> Result<(Wsdl, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let load = |loc: &str| -> Result<Vec<u8>, String> {
        if loc.contains("://") {
            return Err("only local files are read (download the schema next to the WSDL)".into());
        }
        std::fs::read(dir.join(loc)).map_err(|e| e.to_string())
    };
    let w = Wsdl::load(&bytes, &load).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((w, bytes))
}

/// The route's path parameters (`/pratiche/{id}` against `/pratiche/P-1`), percent-decoded.
pub fn path_params(template: &str, path: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut segs = path.split('/');
    for t in template.split('/') {
        let s = segs.next().unwrap_or("");
        if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            let (name, rest) = match name.strip_prefix('*') {
                Some(n) => (n, true),
                None => (name, false),
            };
            let mut v = s.to_owned();
            if rest {
                for more in segs.by_ref() {
                    v.push('/');
                    v.push_str(more);
                }
            }
            let v = percent_decode(&v);
            out.insert(name.to_owned(), serde_json::Value::String(v));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// What a path segment or a query value may carry as it is: RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a value for a path segment or a query value.
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The request's query parameters as a JSON object of strings (percent-decoded).
pub fn query_params(query: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    if let Some(q) = query {
        for (k, v) in varco_core::query::Query::of(format!("?{q}").as_bytes()).pairs() {
            out.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    out
}

/// An element without a schema as JSON (fault details): text, or an object of children
/// (repeated names become arrays).
pub fn generic_json(e: &varco_xml::Element) -> serde_json::Value {
    use serde_json::Value;
    if e.children.is_empty() {
        return Value::String(e.text.trim().to_owned());
    }
    let mut m = serde_json::Map::new();
    for c in &e.children {
        let v = generic_json(c);
        match m.get_mut(&c.name) {
            Some(Value::Array(a)) => a.push(v),
            Some(other) => {
                let first = other.take();
                *other = Value::Array(vec![first, v]);
            }
            None => {
                m.insert(c.name.clone(), v);
            }
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_read_and_decoded() {
        let p = path_params("/pratiche/{id}/documenti/{n}", "/pratiche/P%2F1/documenti/2");
        assert_eq!(p["id"], "P/1");
        assert_eq!(p["n"], "2");
        assert_eq!(path_params("/f/{*rest}", "/f/a/b")["rest"], "a/b");
        assert_eq!(percent_encode("a b/è"), "a%20b%2F%C3%A8");
    }
}
