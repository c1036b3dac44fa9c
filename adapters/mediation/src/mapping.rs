//! The default mapping between JSON and XML, derived from the schema: an element is a field,
//! a repeated element an array, a wrapper of one repeated element (`ArrayOfX`) an array of
//! its items, attributes are fields too, simple content is `value`; xsd numbers and booleans
//! are JSON numbers and booleans, everything else a string; `xsi:nil` is `null`.
//!
//! Both walks check as they go and name what is wrong by its path
//! (`getPraticaResponse/getPraticaResult/documenti/Documento[2]/nome`).

use serde_json::{Map, Number, Value};
use varco_xml::schema::{Builtin, Complex, Field, Model, Simple, Ty};
use varco_xml::{esc, esc_attr, Element};

const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
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

/// XML to JSON: the content of element `e`, read as field `f`.
pub fn to_json(m: &Model, f: &Field, e: &Element) -> Result<Value, MapError> {
    read(m, f, e, &f.name, 0)
}

fn read(m: &Model, f: &Field, e: &Element, path: &str, depth: usize) -> Result<Value, MapError> {
    if depth > MAX_DEPTH {
        return err(path, "nested too deeply");
    }
    if e.ns.as_deref() != f.ns.as_deref() {
        return err(
            path,
            format!(
                "is in namespace `{}`, expected `{}`",
                e.ns.as_deref().unwrap_or(""),
                f.ns.as_deref().unwrap_or("")
            ),
        );
    }
    if e.is_nil() {
        return if f.nillable { Ok(Value::Null) } else { err(path, "is nil but the schema does not allow it") };
    }
    match m.ty(f.ty) {
        Ty::Simple(s) => {
            if let Some(c) = e.children.first() {
                return err(&join(path, &c.name), "unexpected element in a simple value");
            }
            s.check(&e.text).or_else(|x| err(path, x))?;
            Ok(typed(s, &e.text))
        }
        Ty::Complex(c) => complex(m, c, e, path, depth),
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

fn complex(m: &Model, c: &Complex, e: &Element, path: &str, depth: usize) -> Result<Value, MapError> {
    let mut obj = Map::new();
    let mut counts = vec![0u32; c.fields.len()];
    let mut at = 0usize;
    for child in &e.children {
        let found = if c.ordered {
            // The child is the current field again (repeated) or a later one; the fields
            // skipped on the way must allow absence.
            let mut j = at;
            while j < c.fields.len() && c.fields[j].name != child.name {
                j += 1;
            }
            if j < c.fields.len() {
                if let Some((_, f)) = counts[at..j].iter().zip(&c.fields[at..j]).find(|(n, f)| **n < f.min) {
                    return err(&join(path, &f.name), "is missing");
                }
                at = j;
                Some(j)
            } else {
                None
            }
        } else {
            c.fields.iter().position(|f| f.name == child.name)
        };
        let Some(j) = found else {
            if c.open {
                continue;
            }
            let why =
                if c.fields.iter().any(|f| f.name == child.name) { "is out of order" } else { "is not in the schema" };
            return err(&join(path, &child.name), why);
        };
        let f = &c.fields[j];
        counts[j] += 1;
        if counts[j] > f.max {
            return err(&join(path, &child.name), format!("appears more than {} time(s)", f.max));
        }
        let p = if f.repeated() { format!("{}[{}]", join(path, &f.name), counts[j]) } else { join(path, &f.name) };
        let v = read(m, f, child, &p, depth + 1)?;
        if f.repeated() {
            match obj.entry(f.name.clone()).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(a) => a.push(v),
                other => *other = Value::Array(vec![v]),
            }
        } else {
            obj.insert(f.name.clone(), v);
        }
    }
    for (k, f) in c.fields.iter().enumerate() {
        if counts[k] < f.min {
            return err(&join(path, &f.name), "is missing");
        }
        if f.repeated() && counts[k] == 0 {
            obj.insert(f.name.clone(), Value::Array(Vec::new()));
        }
    }
    for a in &c.attrs {
        match e.attr(&a.name) {
            Some(v) => {
                if let Ty::Simple(s) = m.ty(a.ty) {
                    s.check(v).or_else(|x| err(&join(path, &format!("@{}", a.name)), x))?;
                    obj.insert(a.name.clone(), typed(s, v));
                }
            }
            None if a.required => return err(&join(path, &format!("@{}", a.name)), "is missing"),
            None => {}
        }
    }
    if let Some(t) = c.text {
        if let Ty::Simple(s) = m.ty(t) {
            s.check(&e.text).or_else(|x| err(path, x))?;
            obj.insert("value".into(), typed(s, &e.text));
        }
    }
    if let Some(item) = c.array_item() {
        return Ok(obj.remove(&item.name).unwrap_or(Value::Array(Vec::new())));
    }
    Ok(Value::Object(obj))
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
