//! JSON Schema (OpenAPI 3.0 dialect) of what the default mapping reads and writes, from the
//! WSDL's schema: the request and answer bodies of a mediated route's generated contract.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use varco_xml::schema::{Builtin, Field, Model, Simple, Ty, TypeId};

/// Named schemas (`components.schemas`) collected while walking, by type number.
#[derive(Debug, Default)]
pub struct Schemas {
    pub named: BTreeMap<String, Value>,
    seen: BTreeMap<TypeId, String>,
}

impl Schemas {
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
                if let Some(name) = self.seen.get(&id) {
                    return json!({"$ref": format!("#/components/schemas/{name}")});
                }
                let mut name = sanitize(hint);
                while self.named.contains_key(&name) {
                    name.push('_');
                }
                self.seen.insert(id, name.clone());
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
