//! JSON Schema (OpenAPI 3.0 dialect) of what the default mapping reads and writes, from the
//! WSDL's schema: the request and answer bodies of a mediated route's generated contract.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use varco_xml::schema::{Builtin, Field, Model, Simple, Ty, TypeId};

/// Named schemas (`components.schemas`) collected while walking, by type number.
#[derive(Debug, Default)]
pub struct Schemas {
    pub named: BTreeMap<String, Value>,
    /// Types already named: by their schema name (`{ns}local`, shared by the routes of one
    /// WSDL), or an anonymous type by (model, number): type numbers differ between models.
    seen: BTreeMap<String, String>,
    model: usize,
}

impl Schemas {
    /// The walks that follow are over another model (another route's WSDL).
    pub fn next_model(&mut self) {
        self.model += 1;
    }

    /// The schema of field `f`'s content (an array when repeated).
    pub fn field(&mut self, m: &Model, f: &Field) -> Value {
        let one = self.ty(m, f.ty, &f.name);
        let one = if f.nillable { with_nullable(one) } else { one };
        if f.repeated() {
            let mut a = json!({"type": "array", "items": one});
            if f.max != u32::MAX {
                a["maxItems"] = json!(f.max);
            }
            if f.min > 0 {
                a["minItems"] = json!(f.min);
            }
            a
        } else {
            one
        }
    }

    fn ty(&mut self, m: &Model, id: TypeId, hint: &str) -> Value {
        match m.ty(id) {
            Ty::Simple(s) => simple(s),
            Ty::Complex(c) => {
                if let Some(item) = c.array_item() {
                    let items = self.field(m, &Field { max: 1, min: 1, ..item.clone() });
                    return json!({"type": "array", "items": items});
                }
                let key = m.name_of(id).map_or_else(|| format!("#{}/{id}", self.model), |q| q.to_string());
                if let Some(name) = self.seen.get(&key) {
                    return json!({"$ref": format!("#/components/schemas/{name}")});
                }
                let mut name = sanitize(m.name_of(id).map_or(hint, |q| q.local.as_str()));
                while self.named.contains_key(&name) {
                    name.push('_');
                }
                self.seen.insert(key, name.clone());
                self.named.insert(name.clone(), json!({}));
                let mut props = Map::new();
                let mut required = Vec::new();
                for a in &c.attrs {
                    if let Ty::Simple(s) = m.ty(a.ty) {
                        props.insert(a.name.clone(), simple(s));
                    }
                    if a.required {
                        required.push(a.name.clone());
                    }
                }
                if let Some(Ty::Simple(s)) = c.text.map(|t| m.ty(t)) {
                    props.insert("value".into(), simple(s));
                }
                for f in &c.fields {
                    let s = self.field(m, f);
                    props.insert(f.name.clone(), s);
                    if f.min > 0 && f.choice.is_none() {
                        required.push(f.name.clone());
                    }
                }
                let mut o = json!({"type": "object", "additionalProperties": false, "properties": props});
                if !required.is_empty() {
                    o["required"] = json!(required);
                }
                self.named.insert(name.clone(), o);
                json!({"$ref": format!("#/components/schemas/{name}")})
            }
        }
    }
}

fn sanitize(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if let Some(first) = out.get(..1) {
        let up = first.to_ascii_uppercase();
        out.replace_range(..1, &up);
    }
    if out.is_empty() {
        out.push_str("Value");
    }
    out
}

fn with_nullable(mut v: Value) -> Value {
    if v.get("$ref").is_some() {
        return json!({"allOf": [v], "nullable": true});
    }
    v["nullable"] = json!(true);
    v
}

fn simple(s: &Simple) -> Value {
    let mut v = match s.base {
        Builtin::Integer { min, max } => {
            let mut v = json!({"type": "integer"});
            let fits = |n: i128| i64::try_from(n).is_ok();
            if let Some(n) = min.filter(|n| fits(*n)) {
                v["minimum"] = json!(n as i64);
            }
            if let Some(n) = max.filter(|n| fits(*n)) {
                v["maximum"] = json!(n as i64);
            }
            v
        }
        Builtin::Decimal | Builtin::Float => json!({"type": "number"}),
        Builtin::Boolean => json!({"type": "boolean"}),
        Builtin::Date => json!({"type": "string", "format": "date"}),
        Builtin::DateTime => json!({"type": "string", "format": "date-time"}),
        Builtin::Base64 => json!({"type": "string", "format": "byte"}),
        Builtin::String | Builtin::Time | Builtin::Hex | Builtin::Any => json!({"type": "string"}),
    };
    if !s.enums.is_empty() {
        v["enum"] = json!(s.enums);
    }
    if let Some(n) = s.min_len.filter(|_| v["type"] == "string") {
        v["minLength"] = json!(n);
    }
    if let Some(n) = s.max_len.filter(|_| v["type"] == "string") {
        v["maxLength"] = json!(n);
    }
    if let (Some(p), true) = (s.patterns.first(), s.patterns.len() == 1 && v["type"] == "string") {
        v["pattern"] = json!(p.as_str());
    }
    v
}

/// How a documented route admits callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Public,
    ApiKey,
    Bearer,
    /// A citizen's session cookie (SPID/CIE login).
    Session,
}

/// One mediated route, as its contract shows it.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub name: String,
    /// The route's path template (`/pratiche/{id}`; a catch-all `{*rest}` is not documented).
    pub path: String,
    pub methods: Vec<String>,
    pub summary: String,
    pub security: Security,
    /// The JSON body's schema (POST, PUT, PATCH) or, for GET and DELETE, the object whose
    /// simple fields are the query parameters. `None`: any JSON.
    pub input: Option<Value>,
    pub output: Option<Value>,
}

fn problem_response(description: &str, retry: bool) -> Value {
    let mut r = json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    });
    if retry {
        r["headers"] = json!({"Retry-After": {"$ref": "#/components/headers/RetryAfter"}});
    }
    r
}

fn ok_response(description: &str, content: Value) -> Value {
    json!({
        "description": description,
        "headers": {
            "X-RateLimit-Limit": {"$ref": "#/components/headers/RateLimitLimit"},
            "X-RateLimit-Remaining": {"$ref": "#/components/headers/RateLimitRemaining"},
            "X-RateLimit-Reset": {"$ref": "#/components/headers/RateLimitReset"}
        },
        "content": content
    })
}

/// Resolves a `$ref` to the named schema (one level), for query parameters.
fn resolved<'a>(s: &'a Schemas, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()) {
        Some(name) => s.named.get(name).unwrap_or(v),
        None => v,
    }
}

/// The OpenAPI 3.0 document of an ente's mediated routes, with the `/status` every ente has.
pub fn document(title: &str, server: &str, routes: &[RouteDoc], schemas: Schemas) -> Value {
    let mut paths = Map::new();
    paths.insert(
        "/status".into(),
        json!({"get": {
            "operationId": "getStatus",
            "tags": ["status"],
            "summary": "Whether varco can serve the ente now.",
            "description": "200 when it can; 503 with Retry-After when it cannot.",
            "security": [],
            "responses": {
                "200": ok_response("It can.", json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}})),
                "429": problem_response("Over a rate limit.", true),
                "503": problem_response("It cannot now.", true)
            }
        }}),
    );
    for r in routes {
        if r.path.contains("{*") {
            continue;
        }
        let entry = paths.entry(r.path.clone()).or_insert_with(|| json!({}));
        let path_params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|n| json!({"name": n, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        for m in &r.methods {
            let method = m.to_ascii_lowercase();
            let mut params = path_params.clone();
            let mut op = json!({
                "operationId": format!("{}{}", r.name.replace(['-', '.', ' '], "_"), if r.methods.len() > 1 { format!("_{method}") } else { String::new() }),
                "tags": ["mediazione"],
                "summary": r.summary,
                "description": format!("Route `{}`: {}", r.name, r.summary),
                "security": match r.security {
                    Security::Public => json!([]),
                    Security::ApiKey => json!([{"apiKey": []}]),
                    Security::Bearer => json!([{"bearer": []}]),
                    Security::Session => json!([{"session": []}]),
                },
            });
            if matches!(method.as_str(), "get" | "delete") {
                if let Some(Value::Object(props)) =
                    r.input.as_ref().map(|i| resolved(&schemas, i)).and_then(|o| o.get("properties"))
                {
                    for (name, s) in props {
                        let simple =
                            s.get("type").and_then(Value::as_str).is_some_and(|t| t != "object" && t != "array");
                        if simple && !path_params.iter().any(|p| p["name"] == *name) {
                            params.push(json!({"name": name, "in": "query", "required": false, "schema": s}));
                        }
                    }
                }
            } else {
                let schema = r.input.clone().unwrap_or_else(|| json!({"type": "object"}));
                op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema}}});
            }
            if !params.is_empty() {
                op["parameters"] = Value::Array(params);
            }
            let out = r.output.clone().unwrap_or_else(|| json!({}));
            let mut responses = json!({
                "200": ok_response("The back-office's answer.", json!({"application/json": {"schema": out}})),
                "400": problem_response("Not JSON, or not what the route takes.", false),
                "404": problem_response("The back-office has no such resource (`resource-not-found`).", false),
                "422": problem_response("The request breaks the back-office's schema (`validation-failed`, naming the field) or the back-office refused it (`backoffice-rejected`, `errors.fault`).", false),
                "429": problem_response("Over a rate limit or quota of the route.", true),
                "502": problem_response("The back-office failed (`backoffice-fault`) or answered what its contract does not allow (`bad-gateway`).", true),
                "503": problem_response("The back-office is unavailable or its circuit is open.", true),
                "504": problem_response("The back-office did not answer in time.", false)
            });
            if r.security != Security::Public {
                responses["401"] = problem_response("No valid credential for the route.", false);
            }
            op["responses"] = responses;
            entry[method] = op;
        }
    }
    let mut components = json!({
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "An API key of the ente (varco apikey)."},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A token of one of the ente's issuers."},
            "session": {"type": "apiKey", "in": "cookie", "name": "varco_session", "description": "A citizen's session after the ente's SPID/CIE login (`/oidc/login`); the cookie's name is the ente's `oidc.session.cookie`."}
        },
        "headers": {
            "RateLimitLimit": {"description": "Requests allowed per window, when the route has rate limits.", "schema": {"type": "integer", "minimum": 0}},
            "RateLimitRemaining": {"description": "Requests left in the window.", "schema": {"type": "integer", "minimum": 0}},
            "RateLimitReset": {"description": "Seconds until the window is whole again.", "schema": {"type": "integer", "minimum": 0}},
            "RetryAfter": {"description": "Seconds to wait before asking again.", "schema": {"type": "integer", "minimum": 1}}
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details.",
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "instance": {"type": "string"},
                    "trace_id": {"type": "string"}, "request_id": {"type": "string"},
                    "errors": {"type": "object"}
                }
            }
        }
    });
    // Only the schemas something refers to (a GET route's input became query parameters).
    let mut wanted: Vec<String> = Vec::new();
    let mut queue = vec![serde_json::to_string(&paths).unwrap_or_default()];
    while let Some(text) = queue.pop() {
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| *c != '"').collect();
            if !wanted.contains(&name) {
                if let Some(s) = schemas.named.get(&name) {
                    queue.push(s.to_string());
                }
                wanted.push(name);
            }
        }
    }
    for (name, s) in schemas.named {
        if wanted.contains(&name) {
            components["schemas"][name] = s;
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": "Generated by varco from the back-offices' WSDLs and the mediated routes' configuration: the JSON the default mapping reads and writes. Routes whose answers a template reshapes show any JSON.",
            "contact": {"name": "varco", "url": "https://example.invalid/varco"}
        },
        "servers": [{"url": server}],
        "tags": [
            {"name": "mediazione", "description": "Back-office operations varco mediates."},
            {"name": "status", "description": "Health of the ente's services on varco."}
        ],
        "paths": paths,
        "components": components
    })
}

/// A fixed document an adapter route serves (the generated contract).
#[derive(Debug)]
pub struct Published {
    pub body: bytes::Bytes,
}

#[async_trait::async_trait]
impl varco_core::Adapter for Published {
    fn kind(&self) -> &'static str {
        "openapi"
    }

    async fn call(&self, _req: varco_core::AdapterRequest<'_>) -> Result<varco_core::Answer, varco_core::Problem> {
        Ok(varco_core::AdapterResponse {
            status: 200,
            headers: vec![(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))],
            body: self.body.clone(),
        }
        .into())
    }
}
