//! The default mapping between JSON and XML, derived from the schema: an element is a field,
//! a repeated element an array, a wrapper of one repeated element (`ArrayOfX`) an array of
//! its items, attributes are fields too, simple content is `value`; xsd numbers and booleans
//! are JSON numbers and booleans, everything else a string; `xsi:nil` is `null`.
//!
//! Both directions check and name what is wrong by its path
//! (`getPraticaResponse/getPraticaResult/documenti/Documento[2]/nome`).

use serde_json::{Map, Number, Value};
use varco_xml::reader::XSI;
use varco_xml::schema::{Builtin, Complex, Field, Model, Simple, Ty};
use varco_xml::{esc, esc_attr, Element};

/// Nesting the walks follow at most (recursive types, hostile JSON).
const MAX_DEPTH: usize = 48;

/// What is wrong and where.
#[derive(Debug, Clone, PartialEq)]
pub struct MapError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn err<T>(path: &str, message: impl Into<String>) -> Result<T, MapError> {
    Err(MapError { path: path.to_owned(), message: message.into() })
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}/{name}")
    }
}

/// JSON to XML: how strict to be with fields the schema does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// A caller's request: refused, by name.
    Refuse,
    /// A back-office's answer: left out (a tolerant reader of what it adds later).
    Ignore,
}

/// Writes element `f` holding `v` (its content: an object for a complex type, a scalar for a
/// simple one). `default_ns` is the default namespace in force where it is written.
pub fn to_xml(m: &Model, f: &Field, v: &Value, unknown: Unknown, out: &mut String) -> Result<(), MapError> {
    let mut w = Writer { m, unknown, out };
    w.element(f, v, "", &f.name, 0)
}

struct Writer<'a> {
    m: &'a Model,
    unknown: Unknown,
    out: &'a mut String,
}

impl Writer<'_> {
    fn open(&mut self, f: &Field, default_ns: &str) -> String {
        self.out.push('<');
        self.out.push_str(&f.name);
        let want = f.ns.as_deref().unwrap_or("");
        if want != default_ns {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(&esc_attr(want));
            self.out.push('"');
        }
        want.to_owned()
    }

    /// Writes `f` holding `v`; `path` names it in errors.
    fn element(&mut self, f: &Field, v: &Value, default_ns: &str, path: &str, depth: usize) -> Result<(), MapError> {
        if depth > MAX_DEPTH {
            return err(path, "nested too deeply");
        }
        if v.is_null() {
            if !f.nillable {
                return err(path, "may not be null");
            }
            self.open(f, default_ns);
            self.out.push_str(&format!(" xmlns:xsi=\"{XSI}\" xsi:nil=\"true\"/>"));
            return Ok(());
        }
        match self.m.ty(f.ty) {
            Ty::Simple(s) => {
                let text = scalar_text(s, v).or_else(|e| err(path, e))?;
                s.check(&text).or_else(|e| err(path, e))?;
                self.open(f, default_ns);
                self.out.push('>');
                self.out.push_str(&esc(&text));
            }
            Ty::Complex(c) => {
                let ns = self.open(f, default_ns);
                self.complex(c, v, &ns, path, depth)?;
            }
        }
        self.out.push_str("</");
        self.out.push_str(&f.name);
        self.out.push('>');
        Ok(())
    }

    /// Attributes, `>`, then the content of complex type `c` from `v`.
    fn complex(&mut self, c: &Complex, v: &Value, ns: &str, path: &str, depth: usize) -> Result<(), MapError> {
        // A wrapper of one repeated element takes a plain array.
        if let (Some(item), Value::Array(items)) = (c.array_item(), v) {
            self.out.push('>');
            return self.repeated(item, items, ns, path, depth);
        }
        let Value::Object(obj) = v else { return err(path, "must be an object") };
        for a in &c.attrs {
            match obj.get(&a.name) {
                Some(Value::Null) | None if a.required => return err(&join(path, &a.name), "is required"),
                Some(Value::Null) | None => {}
                Some(val) => {
                    let Ty::Simple(s) = self.m.ty(a.ty) else { continue };
                    let p = join(path, &format!("@{}", a.name));
                    let text = scalar_text(s, val).or_else(|e| err(&p, e))?;
                    s.check(&text).or_else(|e| err(&p, e))?;
                    self.out.push_str(&format!(" {}=\"{}\"", a.name, esc_attr(&text)));
                }
            }
        }
        self.out.push('>');
        if self.unknown == Unknown::Refuse {
            let known = |k: &str| {
                c.fields.iter().any(|f| f.name == k)
                    || c.attrs.iter().any(|a| a.name == k)
                    || (c.text.is_some() && k == "value")
            };
            if let Some(k) = obj.keys().find(|k| !known(k)) {
                let names: Vec<&str> = c.fields.iter().map(|f| f.name.as_str()).collect();
                return err(&join(path, k), format!("unknown field (expected: {})", names.join(", ")));
            }
        }
        if let Some(t) = c.text {
            if let (Ty::Simple(s), Some(val)) = (self.m.ty(t), obj.get("value")) {
                let text = scalar_text(s, val).or_else(|e| err(path, e))?;
                s.check(&text).or_else(|e| err(&join(path, "value"), e))?;
                self.out.push_str(&esc(&text));
            }
        }
        let mut chosen: Vec<(u32, &str)> = Vec::new();
        for f in &c.fields {
            let val = obj.get(&f.name);
            if let (Some(g), Some(v)) = (f.choice, val) {
                if !v.is_null() {
                    if let Some((_, other)) = chosen.iter().find(|(x, _)| *x == g) {
                        return err(
                            &join(path, &f.name),
                            format!("only one of `{other}` and `{}` may be given", f.name),
                        );
                    }
                    chosen.push((g, &f.name));
                }
            }
            match val {
                None => {
                    if f.min > 0 {
                        return err(&join(path, &f.name), "is required");
                    }
                }
                Some(Value::Array(items)) if f.repeated() => self.repeated(f, items, ns, path, depth)?,
                Some(Value::Null) if f.repeated() || (!f.nillable && f.min == 0) => {
                    if f.min > 0 {
                        return err(&join(path, &f.name), "is required");
                    }
                }
                Some(_) if f.repeated() => return err(&join(path, &f.name), "must be an array"),
                Some(v) => self.element(f, v, ns, &join(path, &f.name), depth + 1)?,
            }
        }
        Ok(())
    }

    fn repeated(&mut self, f: &Field, items: &[Value], ns: &str, path: &str, depth: usize) -> Result<(), MapError> {
        if (items.len() as u64) < u64::from(f.min) {
            return err(&join(path, &f.name), format!("needs at least {} item(s)", f.min));
        }
        if (items.len() as u64) > u64::from(f.max) {
            return err(&join(path, &f.name), format!("takes at most {} item(s)", f.max));
        }
        for (i, v) in items.iter().enumerate() {
            self.element(f, v, ns, &join(path, &format!("{}[{}]", f.name, i + 1)), depth + 1)?;
        }
        Ok(())
    }
}

/// A JSON scalar as the text of simple type `s`.
fn scalar_text(s: &Simple, v: &Value) -> Result<String, String> {
    match (v, s.base) {
        (Value::String(t), _) => Ok(t.clone()),
        (
            Value::Number(n),
            Builtin::Integer { .. } | Builtin::Decimal | Builtin::Float | Builtin::String | Builtin::Any,
        ) => Ok(n.to_string()),
        (Value::Bool(b), Builtin::Boolean | Builtin::String | Builtin::Any) => Ok(b.to_string()),
        (Value::Number(_), _) => Err("must be a string".into()),
        (Value::Bool(_), _) => Err("must not be a boolean".into()),
        _ => Err("must be a single value, not an object or array".into()),
    }
}

/// XML to JSON: the content of element `e`, read as field `f`. The element is first checked
/// against the schema (`varco_xml::check`, the walk pagoPA's station uses too), then converted.
pub fn to_json(m: &Model, f: &Field, e: &Element) -> Result<Value, MapError> {
    varco_xml::check::check(m, f, e, &f.name).map_err(|s| match s.split_once(": ") {
        Some((path, message)) => MapError { path: path.to_owned(), message: message.to_owned() },
        None => MapError { path: String::new(), message: s },
    })?;
    Ok(convert(m, f, e))
}

/// A checked element as JSON.
fn convert(m: &Model, f: &Field, e: &Element) -> Value {
    if e.is_nil() {
        return Value::Null;
    }
    match m.ty(f.ty) {
        Ty::Simple(s) => typed(s, &e.text),
        Ty::Complex(c) => {
            let mut obj = Map::new();
            for child in &e.children {
                // Unknown children passed the check only under an `xs:any`: left out.
                let Some(cf) = c.fields.iter().find(|x| x.name == child.name) else { continue };
                let v = convert(m, cf, child);
                if cf.repeated() {
                    if let Value::Array(a) = obj.entry(cf.name.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                        a.push(v);
                    }
                } else {
                    obj.insert(cf.name.clone(), v);
                }
            }
            for cf in c.fields.iter().filter(|cf| cf.repeated()) {
                obj.entry(cf.name.clone()).or_insert_with(|| Value::Array(Vec::new()));
            }
            for a in &c.attrs {
                if let (Some(v), Ty::Simple(s)) = (e.attr(&a.name), m.ty(a.ty)) {
                    obj.insert(a.name.clone(), typed(s, v));
                }
            }
            if let Some(Ty::Simple(s)) = c.text.map(|t| m.ty(t)) {
                obj.insert("value".into(), typed(s, &e.text));
            }
            match c.array_item() {
                Some(item) => obj.remove(&item.name).unwrap_or(Value::Array(Vec::new())),
                None => Value::Object(obj),
            }
        }
    }
}

/// A checked text as the JSON type of its schema type.
fn typed(s: &Simple, text: &str) -> Value {
    let t = text.trim();
    match s.base {
        Builtin::Integer { .. } => {
            t.strip_prefix('+').unwrap_or(t).parse::<i64>().map_or_else(|_| Value::String(t.to_owned()), Value::from)
        }
        Builtin::Decimal | Builtin::Float => {
            t.parse::<f64>().ok().and_then(Number::from_f64).map_or_else(|| Value::String(t.to_owned()), Value::Number)
        }
        Builtin::Boolean => Value::Bool(matches!(t, "true" | "1")),
        Builtin::String | Builtin::Any => Value::String(text.to_owned()),
        _ => Value::String(t.to_owned()),
    }
}

/// The one field of a wrapper's type (document/literal wrapped answers: `getPraticaResponse`
/// holding `getPraticaResult`), if it has exactly one that is not repeated.
pub fn single_field<'m>(m: &'m Model, f: &Field) -> Option<&'m Field> {
    match m.ty(f.ty) {
        Ty::Complex(c) if c.attrs.is_empty() && c.text.is_none() && c.array_item().is_none() => {
            match c.fields.as_slice() {
                [one] if !one.repeated() => Some(one),
                _ => None,
            }
        }
        _ => None,
    }
}
