//! WSDL 1.1 as data: the schemas of `types` (and the XSDs they import, read through a
//! caller-given loader), messages, port types, SOAP 1.1/1.2 bindings and service addresses,
//! compiled into [`Operation`]s: per binding and operation, the one element that goes in the
//! Body and the one that comes back, for document/literal and rpc/literal alike (an rpc
//! operation's wrapper becomes a type of its own in the model).

use crate::reader::{parse_with, Element, Limits};
use crate::schema::{Complex, Field, Model, QName, Scope, Ty, XS};
use crate::soap::Version;
use std::collections::{HashMap, HashSet};

pub const WSDL: &str = "http://schemas.xmlsoap.org/wsdl/";
pub const WSDL_SOAP11: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
pub const WSDL_SOAP12: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";
/// At most this many schema documents are read through imports and includes.
const MAX_SCHEMA_FILES: usize = 64;

/// A message part (name, element, type) or a port type's operation (name, input, output).
type Triple = (String, Option<QName>, Option<QName>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Document,
    Rpc,
}

/// One operation of one SOAP binding, ready to map.
#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    pub binding: String,
    pub version: Version,
    pub style: Style,
    /// `soapAction` (may be empty).
    pub action: String,
    /// The endpoint of the binding's port, if the service names one.
    pub address: Option<String>,
    /// The Body's element of the request and of the answer.
    pub input: Field,
    pub output: Field,
}

/// A loaded WSDL.
#[derive(Debug, Clone)]
pub struct Wsdl {
    pub tns: String,
    pub name: Option<String>,
    pub model: Model,
    pub operations: Vec<Operation>,
}

impl Wsdl {
    /// The operation `name` of the binding for `version` (the first such binding), or of any
    /// SOAP binding when `version` is `None` (1.1 first).
    pub fn operation(&self, name: &str, version: Option<Version>) -> Option<&Operation> {
        let of = |v: Version| self.operations.iter().find(|o| o.name == name && o.version == v);
        match version {
            Some(v) => of(v),
            None => of(Version::V11).or_else(|| of(Version::V12)),
        }
    }

    /// Reads a WSDL. `load` returns the bytes of a document an import or include names by
    /// `schemaLocation` (relative to the WSDL), or an error saying why not.
    pub fn load(bytes: &[u8], load: &dyn Fn(&str) -> Result<Vec<u8>, String>) -> Result<Wsdl, String> {
        let root = parse_with(bytes, Limits::CONTRACT).map_err(|e| format!("the WSDL is not well-formed: {e}"))?;
        if root.ns.as_deref() != Some(WSDL) || root.name != "definitions" {
            return Err("the root is not a WSDL 1.1 `definitions`".into());
        }
        if root.children_named(WSDL, "import").next().is_some() {
            return Err("wsdl:import is not followed: put the imported definitions in one file".into());
        }
        let scope = Scope::default().with(&root);
        let tns = root.attr("targetNamespace").unwrap_or("").to_owned();
        // The schemas: inline ones, then every document they import or include, once.
        let mut docs: Vec<Element> = Vec::new();
        let mut seen = HashSet::new();
        let types = root.children_named(WSDL, "types").next();
        let inline: Vec<&Element> = types.map(|t| t.children_named(XS, "schema").collect()).unwrap_or_default();
        let mut queue: Vec<String> = Vec::new();
        for s in &inline {
            queue.extend(locations(s));
        }
        while let Some(loc) = queue.pop() {
            if !seen.insert(loc.clone()) {
                continue;
            }
            if seen.len() > MAX_SCHEMA_FILES {
                return Err(format!("more than {MAX_SCHEMA_FILES} schema documents are imported"));
            }
            let b = load(&loc).map_err(|e| format!("schema `{loc}`: {e}"))?;
            let doc = parse_with(&b, Limits::CONTRACT).map_err(|e| format!("schema `{loc}`: {e}"))?;
            if doc.ns.as_deref() != Some(XS) || doc.name != "schema" {
                return Err(format!("`{loc}` is not an XML Schema"));
            }
            queue.extend(locations(&doc).iter().map(|l| relative_to(&loc, l)));
            docs.push(doc);
        }
        let types_scope = types.map_or(scope.clone(), |t| scope.with(t));
        let mut schemas: Vec<(&Element, Scope)> = inline.iter().map(|s| (*s, types_scope.clone())).collect();
        schemas.extend(docs.iter().map(|d| (d, Scope::default())));
        let mut model = Model::from_schemas(&schemas)?;

        let mut messages: HashMap<QName, Vec<Triple>> = HashMap::new();
        for m in root.children_named(WSDL, "message") {
            let s = scope.with(m);
            let mut parts = Vec::new();
            for p in m.children_named(WSDL, "part") {
                let s = s.with(p);
                let el = p.attr("element").map(|e| s.resolve(e)).transpose()?;
                let ty = p.attr("type").map(|t| s.resolve(t)).transpose()?;
                parts.push((p.attr("name").unwrap_or("").to_owned(), el, ty));
            }
            messages.insert(QName::new(&tns, m.attr("name").unwrap_or("")), parts);
        }
        let mut port_types: HashMap<QName, Vec<Triple>> = HashMap::new();
        for pt in root.children_named(WSDL, "portType") {
            let s = scope.with(pt);
            let mut ops = Vec::new();
            for op in pt.children_named(WSDL, "operation") {
                let s = s.with(op);
                let msg = |dir: &str| -> Result<Option<QName>, String> {
                    op.children_named(WSDL, dir)
                        .next()
                        .and_then(|d| d.attr("message"))
                        .map(|m| s.resolve(m))
                        .transpose()
                };
                ops.push((op.attr("name").unwrap_or("").to_owned(), msg("input")?, msg("output")?));
            }
            port_types.insert(QName::new(&tns, pt.attr("name").unwrap_or("")), ops);
        }
        let mut addresses: HashMap<QName, String> = HashMap::new();
        for svc in root.children_named(WSDL, "service") {
            for port in svc.children_named(WSDL, "port") {
                let s = scope.with(svc).with(port);
                let Some(b) = port.attr("binding") else { continue };
                let addr = port
                    .children
                    .iter()
                    .find(|a| a.name == "address" && matches!(a.ns.as_deref(), Some(WSDL_SOAP11 | WSDL_SOAP12)))
                    .and_then(|a| a.attr("location"));
                if let Some(a) = addr {
                    addresses.entry(s.resolve(b)?).or_insert_with(|| a.to_owned());
                }
            }
        }

        let mut operations = Vec::new();
        for b in root.children_named(WSDL, "binding") {
            let s = scope.with(b);
            let soap = b
                .children
                .iter()
                .find(|c| c.name == "binding" && matches!(c.ns.as_deref(), Some(WSDL_SOAP11 | WSDL_SOAP12)));
            let Some(soap) = soap else { continue }; // an HTTP binding
            let (version, sns) = if soap.ns.as_deref() == Some(WSDL_SOAP11) {
                (Version::V11, WSDL_SOAP11)
            } else {
                (Version::V12, WSDL_SOAP12)
            };
            let bname = b.attr("name").unwrap_or("").to_owned();
            let bq = QName::new(&tns, &bname);
            let default_style = style(soap.attr("style"));
            let pt_name = s.resolve(b.attr("type").ok_or_else(|| format!("binding `{bname}` has no type"))?)?;
            let pt = port_types.get(&pt_name).ok_or_else(|| format!("port type {pt_name} is not defined"))?;
            for op in b.children_named(WSDL, "operation") {
                let name = op.attr("name").unwrap_or("").to_owned();
                let sop = op.children_named(sns, "operation").next();
                let op_style = sop.and_then(|o| o.attr("style")).map_or(default_style, |v| style(Some(v)));
                let action = sop.and_then(|o| o.attr("soapAction")).unwrap_or("").to_owned();
                let body = |dir: &str| -> Result<Option<String>, String> {
                    let b = op.children_named(WSDL, dir).next().and_then(|d| d.children_named(sns, "body").next());
                    if let Some(use_) = b.and_then(|b| b.attr("use")) {
                        if use_ != "literal" {
                            return Err(format!(
                                "operation `{name}`: use=\"{use_}\" (SOAP encoding) is not supported, only literal"
                            ));
                        }
                    }
                    Ok(b.and_then(|b| b.attr("namespace")).map(str::to_owned))
                };
                let in_ns = body("input")?;
                let out_ns = body("output")?;
                let (_, in_msg, out_msg) = pt
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .ok_or_else(|| format!("operation `{name}` is not in port type {pt_name}"))?;
                let mut payload = |msg: &Option<QName>, ns: Option<String>, wrapper: String| -> Result<Field, String> {
                    let Some(msg) = msg else { return Err(format!("operation `{name}` is one-way: no answer to map")) };
                    let parts = messages.get(msg).ok_or_else(|| format!("message {msg} is not defined"))?;
                    match op_style {
                        Style::Document => match parts.as_slice() {
                            [(_, Some(el), _)] => model
                                .elements
                                .get(el)
                                .cloned()
                                .ok_or_else(|| format!("element {el} of message {msg} is not defined")),
                            _ => Err(format!(
                                "operation `{name}`: a document/literal message must have one part naming an element ({msg})"
                            )),
                        },
                        Style::Rpc => {
                            let mut c = Complex { ordered: true, ..Default::default() };
                            for (pname, el, ty) in parts {
                                let ty = match (el, ty) {
                                    (_, Some(t)) if t.ns == XS => model.builtin_type(&t.local)?,
                                    (_, Some(t)) => model.named(t).ok_or_else(|| format!("type {t} is not defined"))?,
                                    (Some(e), None) => model.elements.get(e).map(|f| f.ty).ok_or_else(|| format!("element {e} is not defined"))?,
                                    (None, None) => return Err(format!("part `{pname}` of {msg} has no type")),
                                };
                                c.fields.push(Field { name: pname.clone(), ns: None, ty, min: 1, max: 1, nillable: false, choice: None });
                            }
                            model.types.push(Ty::Complex(c));
                            let ns = ns.unwrap_or_else(|| tns.clone());
                            Ok(Field {
                                name: wrapper,
                                ns: (!ns.is_empty()).then_some(ns),
                                ty: model.types.len() - 1,
                                min: 1,
                                max: 1,
                                nillable: false,
                                choice: None,
                            })
                        }
                    }
                };
                let input = payload(in_msg, in_ns, name.clone())?;
                let output = payload(out_msg, out_ns, format!("{name}Response"))?;
                operations.push(Operation {
                    name,
                    binding: bname.clone(),
                    version,
                    style: op_style,
                    action,
                    address: addresses.get(&bq).cloned(),
                    input,
                    output,
                });
            }
        }
        if operations.is_empty() {
            return Err("the WSDL has no SOAP 1.1 or 1.2 binding with operations".into());
        }
        Ok(Wsdl { tns, name: root.attr("name").map(str::to_owned), model, operations })
    }
}

fn style(v: Option<&str>) -> Style {
    if v == Some("rpc") {
        Style::Rpc
    } else {
        Style::Document
    }
}

/// `rel` as seen from the directory of `base` (both relative to the WSDL), `..` folded.
fn relative_to(base: &str, rel: &str) -> String {
    let dir = base.rsplit_once('/').map_or("", |(d, _)| d);
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            _ => parts.push(p),
        }
    }
    parts.join("/")
}

/// The `schemaLocation`s a schema imports or includes.
fn locations(schema: &Element) -> Vec<String> {
    schema
        .children
        .iter()
        .filter(|c| c.ns.as_deref() == Some(XS) && matches!(c.name.as_str(), "import" | "include" | "redefine"))
        .filter_map(|c| c.attr("schemaLocation").map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_dir(dir: &'static str) -> impl Fn(&str) -> Result<Vec<u8>, String> {
        move |loc: &str| std::fs::read(format!("{dir}/{loc}")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_pagopa_wsdl_loads_with_its_imported_xsd() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/external/pagopa/wsdl");
        let bytes = std::fs::read(format!("{dir}/paForNode.wsdl")).unwrap();
        let w = Wsdl::load(&bytes, &from_dir(dir)).unwrap();
        let op = w.operation("paVerifyPaymentNotice", None).unwrap();
        assert_eq!(op.version, Version::V11);
        assert_eq!(op.style, Style::Document);
        assert_eq!(op.input.name, "paVerifyPaymentNoticeReq");
        assert_eq!(op.input.ns.as_deref(), Some("http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"));
        let Ty::Complex(c) = w.model.ty(op.input.ty) else { panic!() };
        assert!(c.fields.iter().any(|f| f.name == "qrCode"));
        assert!(w.operations.len() >= 5);
    }

    #[test]
    fn nested_locations_are_relative_to_their_document() {
        assert_eq!(relative_to("xsd/a.xsd", "../../common/b.xsd"), "../common/b.xsd");
        assert_eq!(relative_to("a.xsd", "./b/c.xsd"), "b/c.xsd");
    }

    #[test]
    fn rpc_literal_operations_get_a_wrapper_of_their_parts() {
        let wsdl = include_str!("../testdata/rpc.wsdl");
        let w = Wsdl::load(wsdl.as_bytes(), &|_| Err("no imports".into())).unwrap();
        let op = w.operation("verifica", Some(Version::V12)).unwrap();
        assert_eq!(op.style, Style::Rpc);
        assert_eq!(op.action, "urn:verifica");
        assert_eq!(op.address.as_deref(), Some("http://comune.invalid/anagrafe/rpc"));
        assert_eq!((op.input.name.as_str(), op.input.ns.as_deref()), ("verifica", Some("urn:anag:rpc")));
        assert_eq!(op.output.name, "verificaResponse");
        let Ty::Complex(c) = w.model.ty(op.input.ty) else { panic!() };
        assert_eq!(c.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["codiceFiscale", "anno"]);
        assert!(c.fields.iter().all(|f| f.ns.is_none()), "rpc parts are unqualified");
        assert!(w.operation("verifica", Some(Version::V11)).is_none());
    }

    #[test]
    fn broken_wsdls_are_refused_with_a_reason() {
        let nothing = |_: &str| -> Result<Vec<u8>, String> { Err("no".into()) };
        assert!(Wsdl::load(b"<a/>", &nothing).unwrap_err().contains("definitions"));
        assert!(Wsdl::load(b"<!DOCTYPE a><a/>", &nothing).unwrap_err().contains("DOCTYPE"));
        let enc = r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:x" targetNamespace="urn:x">
          <message name="m"><part name="a" type="xs:string"/></message>
          <portType name="P"><operation name="o"><input message="t:m"/><output message="t:m"/></operation></portType>
          <binding name="B" type="t:P"><soap:binding style="rpc"/><operation name="o"><input><soap:body use="encoded"/></input><output><soap:body use="encoded"/></output></operation></binding></definitions>"#;
        assert!(Wsdl::load(enc.as_bytes(), &nothing).unwrap_err().contains("encoded"));
    }
}
