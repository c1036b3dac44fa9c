//! XML Schema as data, read from the `xs:schema` elements of a WSDL or an XSD: every type a
//! numbered [`Ty`] (recursive types refer to themselves by number), each complex type the
//! flattened list of its elements, each simple type its base and facets. Mediation walks
//! documents and JSON through it; [`Simple::check`] checks one value.
//!
//! Covered: named and anonymous types, `sequence`/`all`/`choice` (nested), element `ref`,
//! `complexContent` extension and restriction, `simpleContent`, attributes, `xs:any`,
//! `elementFormDefault`/`form`, facets (enumeration, lengths, pattern, numeric bounds of the
//! built-in integer types). Not covered (read as "any text"): `list`, `union`, substitution
//! groups, identity constraints.

use crate::reader::Element;
pub use crate::simple::{Builtin, Simple};
use regex::Regex;
use std::collections::HashMap;
use std::rc::Rc;

pub const XS: &str = "http://www.w3.org/2001/XMLSchema";

/// A namespace-qualified name (`ns` empty: no namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QName {
    pub ns: String,
    pub local: String,
}

impl QName {
    pub fn new(ns: &str, local: &str) -> Self {
        Self { ns: ns.to_owned(), local: local.to_owned() }
    }
}

impl std::fmt::Display for QName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ns.is_empty() {
            f.write_str(&self.local)
        } else {
            write!(f, "{{{}}}{}", self.ns, self.local)
        }
    }
}

pub type TypeId = usize;

/// One element of a complex type (or a global element).
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    /// The element's namespace when it is qualified.
    pub ns: Option<String>,
    pub ty: TypeId,
    pub min: u32,
    /// `u32::MAX`: unbounded.
    pub max: u32,
    pub nillable: bool,
    /// Fields of one `choice` share a group number: at most one of them appears.
    pub choice: Option<u32>,
}

impl Field {
    pub fn repeated(&self) -> bool {
        self.max > 1
    }
}

/// An attribute of a complex type.
#[derive(Debug, Clone)]
pub struct AttrDecl {
    pub name: String,
    pub ty: TypeId,
    pub required: bool,
}

/// A complex type: its elements in order, attributes, and for simple content its text type.
#[derive(Debug, Clone, Default)]
pub struct Complex {
    pub fields: Vec<Field>,
    /// `sequence` (true) or `all` (false).
    pub ordered: bool,
    pub attrs: Vec<AttrDecl>,
    pub text: Option<TypeId>,
    /// An `xs:any` wildcard: other elements are allowed (and passed as text).
    pub open: bool,
    /// The choice groups among `fields` (group number, whether one must appear).
    pub choices: Vec<(u32, bool)>,
}

impl Complex {
    /// A wrapper of one repeated element (`ArrayOfX`, spyne's `XArray`): mapped to a JSON
    /// array of its items.
    pub fn array_item(&self) -> Option<&Field> {
        match self.fields.as_slice() {
            [f] if f.repeated() && self.attrs.is_empty() && self.text.is_none() && !self.open => Some(f),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Ty {
    Simple(Simple),
    Complex(Complex),
}

/// Every type and global element of a set of schemas.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub types: Vec<Ty>,
    pub elements: HashMap<QName, Field>,
    named: HashMap<QName, TypeId>,
    /// Facets that could not be used (an XSD regex Rust's engine does not take).
    pub warnings: Vec<String>,
}

impl Model {
    pub fn ty(&self, id: TypeId) -> &Ty {
        &self.types[id]
    }

    /// The name of type `id`, if the schema names it.
    pub fn name_of(&self, id: TypeId) -> Option<&QName> {
        self.named.iter().filter(|(q, i)| **i == id && q.ns != XS).map(|(q, _)| q).min()
    }

    /// A named type's number.
    pub fn named(&self, q: &QName) -> Option<TypeId> {
        self.named.get(q).copied()
    }

    /// The number of built-in type `xs:<local>`.
    pub fn builtin_type(&mut self, local: &str) -> Result<TypeId, String> {
        let q = QName::new(XS, local);
        if let Some(id) = self.named.get(&q) {
            return Ok(*id);
        }
        let b = Builtin::of(local).ok_or_else(|| format!("unknown XML Schema type xs:{local}"))?;
        self.types.push(Ty::Simple(Simple::builtin(b)));
        self.named.insert(q, self.types.len() - 1);
        Ok(self.types.len() - 1)
    }

    /// Reads the `xs:schema` elements of a document (each with the namespace declarations in
    /// scope where it sits, `scope`).
    pub fn from_schemas(schemas: &[(&Element, Scope)]) -> Result<Model, String> {
        let mut b = Builder::default();
        for (s, scope) in schemas {
            let scope = scope.with(s);
            let ctx = Rc::new(SchemaCtx {
                tns: s.attr("targetNamespace").unwrap_or("").to_owned(),
                qualified: s.attr("elementFormDefault") == Some("qualified"),
            });
            for c in s.children.iter().filter(|c| c.ns.as_deref() == Some(XS)) {
                let Some(name) = c.attr("name") else { continue };
                let q = QName::new(&ctx.tns, name);
                match c.name.as_str() {
                    "complexType" | "simpleType" => {
                        b.pending.insert(q, (c, scope.clone(), ctx.clone()));
                    }
                    "element" => {
                        b.globals.insert(q, (c, scope.clone(), ctx.clone()));
                    }
                    _ => {}
                }
            }
        }
        let names: Vec<QName> = b.globals.keys().cloned().collect();
        for q in names {
            let f = b.global(&q)?;
            b.model.elements.insert(q, f);
        }
        let names: Vec<QName> = b.pending.keys().cloned().collect();
        for q in names {
            b.named_type(&q)?;
        }
        Ok(b.model)
    }
}

/// The namespace declarations in scope, innermost last.
#[derive(Debug, Clone, Default)]
pub struct Scope(Rc<Vec<(String, String)>>);

impl Scope {
    /// This scope with `el`'s own declarations added.
    pub fn with(&self, el: &Element) -> Scope {
        if el.decls.is_empty() {
            return self.clone();
        }
        let mut v = (*self.0).clone();
        v.extend(el.decls.iter().cloned());
        Scope(Rc::new(v))
    }

    /// Resolves a QName-valued attribute (`tns:Pratica`, `xs:string`).
    pub fn resolve(&self, value: &str) -> Result<QName, String> {
        let value = value.trim();
        let (prefix, local) = value.split_once(':').unwrap_or(("", value));
        match self.0.iter().rev().find(|(p, _)| p == prefix) {
            Some((_, ns)) => Ok(QName::new(ns, local)),
            None if prefix.is_empty() => Ok(QName::new("", local)),
            None => Err(format!("the prefix of `{value}` is not declared")),
        }
    }
}

#[derive(Debug)]
struct SchemaCtx {
    tns: String,
    qualified: bool,
}

type Pending<'a> = (&'a Element, Scope, Rc<SchemaCtx>);

#[derive(Default)]
struct Builder<'a> {
    model: Model,
    pending: HashMap<QName, Pending<'a>>,
    globals: HashMap<QName, Pending<'a>>,
    choices: u32,
}

fn occurs(el: &Element, attr: &str, default: u32) -> Result<u32, String> {
    match el.attr(attr).map(str::trim) {
        None => Ok(default),
        Some("unbounded") => Ok(u32::MAX),
        Some(v) => v.parse().map_err(|_| format!("{attr}=\"{v}\" is not a number")),
    }
}

fn xs<'e>(el: &'e Element, name: &'e str) -> impl Iterator<Item = &'e Element> + 'e {
    el.children_named(XS, name)
}

impl<'a> Builder<'a> {
    fn alloc(&mut self, t: Ty) -> TypeId {
        self.model.types.push(t);
        self.model.types.len() - 1
    }

    fn builtin(&mut self, b: Builtin) -> TypeId {
        self.alloc(Ty::Simple(Simple::builtin(b)))
    }

    /// The number of a type referred to by name (a built-in or one of the schemas').
    fn named_type(&mut self, q: &QName) -> Result<TypeId, String> {
        if let Some(id) = self.model.named.get(q) {
            return Ok(*id);
        }
        if q.ns == XS {
            let b = Builtin::of(&q.local).ok_or_else(|| format!("unknown XML Schema type xs:{}", q.local))?;
            let id = self.builtin(b);
            self.model.named.insert(q.clone(), id);
            return Ok(id);
        }
        let (el, scope, ctx) = self.pending.get(q).cloned().ok_or_else(|| format!("type {q} is not defined"))?;
        // The number is taken before the body is read, so a recursive type refers to itself.
        let id = self.builtin(Builtin::Any);
        self.model.named.insert(q.clone(), id);
        let ty = self.type_def(el, &scope.with(el), &ctx)?;
        self.model.types[id] = ty;
        Ok(id)
    }

    fn type_def(&mut self, el: &'a Element, scope: &Scope, ctx: &Rc<SchemaCtx>) -> Result<Ty, String> {
        match el.name.as_str() {
            "simpleType" => self.simple(el, scope).map(Ty::Simple),
            "complexType" => self.complex(el, scope, ctx).map(Ty::Complex),
            other => Err(format!("xs:{other} is not a type")),
        }
    }

    fn simple_of(&mut self, q: &QName) -> Result<Simple, String> {
        let id = self.named_type(q)?;
        match &self.model.types[id] {
            Ty::Simple(s) => Ok(s.clone()),
            Ty::Complex(_) => Err(format!("{q} is not a simple type")),
        }
    }

    fn simple(&mut self, el: &'a Element, scope: &Scope) -> Result<Simple, String> {
        let Some(r) = xs(el, "restriction").next() else {
            return Ok(Simple::builtin(Builtin::Any));
        };
        let scope = scope.with(r);
        let mut s = match r.attr("base") {
            Some(base) => self.simple_of(&scope.resolve(base)?)?,
            None => match xs(r, "simpleType").next() {
                Some(inner) => self.simple(inner, &scope)?,
                None => Simple::builtin(Builtin::Any),
            },
        };
        let mut enums = Vec::new();
        let mut patterns = Vec::new();
        for f in r.children.iter().filter(|c| c.ns.as_deref() == Some(XS)) {
            let v = f.attr("value").unwrap_or("");
            let num = || v.trim().parse::<usize>().map_err(|_| format!("xs:{} value=\"{v}\" is not a number", f.name));
            match f.name.as_str() {
                "enumeration" => enums.push(v.to_owned()),
                "length" => {
                    s.min_len = Some(num()?);
                    s.max_len = Some(num()?);
                }
                "minLength" => s.min_len = Some(num()?),
                "maxLength" => s.max_len = Some(num()?),
                "pattern" => patterns.push(v.to_owned()),
                "minInclusive" | "maxInclusive" | "minExclusive" | "maxExclusive" => {
                    let inclusive = f.name.ends_with("Inclusive");
                    if matches!(s.base, Builtin::Decimal | Builtin::Float) {
                        let n: f64 = v.trim().parse().map_err(|_| format!("xs:{} value=\"{v}\"", f.name))?;
                        if f.name.starts_with("min") {
                            s.min_value = Some((n, inclusive));
                        } else {
                            s.max_value = Some((n, inclusive));
                        }
                    }
                    if let Builtin::Integer { min, max } = &mut s.base {
                        let n: i128 = v.trim().parse().map_err(|_| format!("xs:{} value=\"{v}\"", f.name))?;
                        match f.name.as_str() {
                            "minInclusive" => *min = Some(n),
                            "maxInclusive" => *max = Some(n),
                            "minExclusive" => *min = Some(n + 1),
                            _ => *max = Some(n - 1),
                        }
                    }
                }
                _ => {}
            }
        }
        if !enums.is_empty() {
            s.enums = enums;
        }
        // Patterns of one step are alternatives; steps must all hold.
        if !patterns.is_empty() {
            let alt = patterns.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
            match Regex::new(&format!("^(?:{alt})$")) {
                Ok(re) => s.patterns.push(re),
                Err(_) => self.model.warnings.push(format!("pattern `{}` is not checked", patterns.join("|"))),
            }
        }
        Ok(s)
    }

    fn complex(&mut self, el: &'a Element, scope: &Scope, ctx: &Rc<SchemaCtx>) -> Result<Complex, String> {
        let mut c = Complex { ordered: true, ..Default::default() };
        if let Some(sc) = xs(el, "simpleContent").next() {
            let scope = scope.with(sc);
            if let Some(d) = xs(sc, "extension").next().or_else(|| xs(sc, "restriction").next()) {
                let scope = scope.with(d);
                let base = scope.resolve(d.attr("base").unwrap_or("xs:string"))?;
                let id = self.named_type(&base)?;
                match self.model.types[id].clone() {
                    Ty::Complex(b) => {
                        c.text = b.text;
                        c.attrs = b.attrs;
                    }
                    Ty::Simple(_) => c.text = Some(id),
                }
                self.attributes(d, &scope, &mut c)?;
            }
            return Ok(c);
        }
        if let Some(cc) = xs(el, "complexContent").next() {
            let scope = scope.with(cc);
            if let Some(ext) = xs(cc, "extension").next() {
                let scope = scope.with(ext);
                let base = scope.resolve(ext.attr("base").unwrap_or("xs:anyType"))?;
                let id = self.named_type(&base)?;
                if let Ty::Complex(b) = self.model.types[id].clone() {
                    c = b;
                }
                self.particles(ext, &scope, ctx, &mut c, None, false)?;
                self.attributes(ext, &scope, &mut c)?;
            } else if let Some(res) = xs(cc, "restriction").next() {
                let scope = scope.with(res);
                self.particles(res, &scope, ctx, &mut c, None, false)?;
                self.attributes(res, &scope, &mut c)?;
            }
            return Ok(c);
        }
        self.particles(el, scope, ctx, &mut c, None, false)?;
        self.attributes(el, scope, &mut c)?;
        Ok(c)
    }

    fn attributes(&mut self, el: &'a Element, scope: &Scope, c: &mut Complex) -> Result<(), String> {
        for a in xs(el, "attribute") {
            let scope = scope.with(a);
            let Some(name) = a.attr("name").or_else(|| a.attr("ref").map(|r| r.rsplit(':').next().unwrap_or(r))) else {
                continue;
            };
            if a.attr("use") == Some("prohibited") {
                continue;
            }
            let ty = match (a.attr("type"), xs(a, "simpleType").next()) {
                (Some(t), _) => self.named_type(&scope.resolve(t)?)?,
                (None, Some(inner)) => {
                    let s = self.simple(inner, &scope)?;
                    self.alloc(Ty::Simple(s))
                }
                (None, None) => self.builtin(Builtin::String),
            };
            c.attrs.push(AttrDecl { name: name.to_owned(), ty, required: a.attr("use") == Some("required") });
        }
        Ok(())
    }

    /// The elements under a model group, flattened into `c.fields`. `optional`: the group
    /// itself may be absent; `choice`: the choice group the elements belong to.
    fn particles(
        &mut self,
        el: &'a Element,
        scope: &Scope,
        ctx: &Rc<SchemaCtx>,
        c: &mut Complex,
        choice: Option<u32>,
        optional: bool,
    ) -> Result<(), String> {
        for p in el.children.iter().filter(|c| c.ns.as_deref() == Some(XS)) {
            let scope = scope.with(p);
            let opt = optional || occurs(p, "minOccurs", 1)? == 0;
            let many = occurs(p, "maxOccurs", 1)? > 1;
            match p.name.as_str() {
                "sequence" => {
                    let many_group = many;
                    let before = c.fields.len();
                    self.particles(p, &scope, ctx, c, choice, opt)?;
                    if many_group {
                        c.fields[before..].iter_mut().for_each(|f| f.max = u32::MAX);
                    }
                }
                "all" => {
                    c.ordered = false;
                    self.particles(p, &scope, ctx, c, choice, opt)?;
                }
                "choice" => {
                    self.choices += 1;
                    let group = self.choices;
                    c.choices.push((group, !opt && !many));
                    let before = c.fields.len();
                    // One alternative is chosen: each is optional on its own.
                    self.particles(p, &scope, ctx, c, Some(group), true)?;
                    if many {
                        c.fields[before..].iter_mut().for_each(|f| {
                            f.max = u32::MAX;
                            f.choice = None;
                        });
                    }
                }
                "element" => {
                    let mut f = self.local_element(p, &scope, ctx)?;
                    if opt || choice.is_some() {
                        f.min = 0;
                    }
                    f.choice = choice;
                    c.fields.push(f);
                }
                "any" => c.open = true,
                _ => {}
            }
        }
        Ok(())
    }

    fn element_type(&mut self, el: &'a Element, scope: &Scope, ctx: &Rc<SchemaCtx>) -> Result<TypeId, String> {
        if let Some(t) = el.attr("type") {
            return self.named_type(&scope.resolve(t)?);
        }
        match el.children.iter().find(|c| c.ns.as_deref() == Some(XS) && c.name.ends_with("Type")) {
            Some(inner) => {
                let ty = self.type_def(inner, &scope.with(inner), ctx)?;
                Ok(self.alloc(ty))
            }
            None => Ok(self.builtin(Builtin::Any)),
        }
    }

    fn local_element(&mut self, el: &'a Element, scope: &Scope, ctx: &Rc<SchemaCtx>) -> Result<Field, String> {
        let min = occurs(el, "minOccurs", 1)?;
        let max = occurs(el, "maxOccurs", 1)?;
        if let Some(r) = el.attr("ref") {
            let q = scope.resolve(r)?;
            let g = match self.model.elements.get(&q) {
                Some(g) => g.clone(),
                None => self.global(&q)?,
            };
            return Ok(Field { min, max, ..g });
        }
        let name = el.attr("name").ok_or("an xs:element has neither name nor ref")?;
        let qualified = match el.attr("form") {
            Some(f) => f == "qualified",
            None => ctx.qualified,
        };
        let ns = (qualified && !ctx.tns.is_empty()).then(|| ctx.tns.clone());
        let ty = self.element_type(el, scope, ctx)?;
        let nillable = el.attr("nillable") == Some("true");
        Ok(Field { name: name.to_owned(), ns, ty, min, max, nillable, choice: None })
    }

    fn global(&mut self, q: &QName) -> Result<Field, String> {
        if let Some(f) = self.model.elements.get(q) {
            return Ok(f.clone());
        }
        let (el, scope, ctx) = self.globals.get(q).cloned().ok_or_else(|| format!("element {q} is not defined"))?;
        let scope = scope.with(el);
        let ty = self.element_type(el, &scope, &ctx)?;
        let ns = (!q.ns.is_empty()).then(|| q.ns.clone());
        let f = Field {
            name: q.local.clone(),
            ns,
            ty,
            min: 1,
            max: 1,
            nillable: el.attr("nillable") == Some("true"),
            choice: None,
        };
        self.model.elements.insert(q.clone(), f.clone());
        Ok(f)
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
