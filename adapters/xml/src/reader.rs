//! A small, strict XML reader for documents from outside (SOAP messages, WSDLs, back-office
//! answers): namespaces resolved, no DTD (so no entity expansion, no external entities), XML
//! 1.0 characters only, bounded depth and size. It builds a tree that schemas check, so
//! nothing is read by string slicing.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The XML Schema instance namespace (`xsi:nil`, `xsi:type`).
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// How much of a document the reader accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Limits {
    /// SOAP messages and answers: 32 levels, 20 000 elements.
    pub const MESSAGE: Limits = Limits { max_depth: 32, max_elements: 20_000 };
    /// Contracts (WSDL, XSD) an integrator configures: deeper, larger.
    pub const CONTRACT: Limits = Limits { max_depth: 64, max_elements: 200_000 };
}

/// An attribute other than a namespace declaration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attr {
    pub ns: Option<String>,
    pub name: String,
    pub value: String,
}

/// An element: namespace, local name, attributes, the namespace declarations it makes,
/// child elements, text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<Attr>,
    /// `(prefix, namespace)` declared on this element (`""` for the default namespace), for
    /// attribute values that are QNames (`type="tns:Pratica"`).
    pub decls: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Trimmed text of a child element.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// An unqualified attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.ns.is_none() && a.name == name).map(|a| a.value.as_str())
    }

    /// A namespaced attribute's value.
    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.ns.as_deref() == Some(ns) && a.name == name).map(|a| a.value.as_str())
    }

    /// Whether the element carries `xsi:nil="true"`.
    pub fn is_nil(&self) -> bool {
        matches!(self.attr_ns(XSI, "nil").map(str::trim), Some("true" | "1"))
    }

    /// Child elements in namespace `ns` named `name`.
    pub fn children_named<'a>(&'a self, ns: &'a str, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.ns.as_deref() == Some(ns) && c.name == name)
    }
}

fn start(reader: &NsReader<&[u8]>, ns: Option<String>, e: &BytesStart<'_>) -> Result<Element, String> {
    let mut el = Element { ns, name: e.local_name().as_ref().to_owned(), ..Default::default() };
    for a in e.attributes() {
        let a = a.map_err(|e| format!("malformed attribute: {e}"))?;
        let key: &str = a.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            let prefix = key.strip_prefix("xmlns:").unwrap_or("");
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("malformed namespace declaration: {e}"))?;
            el.decls.push((prefix.to_owned(), value.into_owned()));
            continue;
        }
        let (res, local) = reader.resolver().resolve_attribute(a.key);
        let ns = match res {
            ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => return Err(format!("undeclared namespace prefix `{p}`")),
        };
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("malformed attribute value: {e}"))?;
        if let Some(c) = value.chars().find(|c| !is_xml_char(*c)) {
            return Err(format!("character U+{:04X} is not allowed in XML 1.0", c as u32));
        }
        el.attrs.push(Attr { ns, name: local.as_ref().to_owned(), value: value.into_owned() });
    }
    Ok(el)
}

/// Parses a SOAP message or answer into its root element; errors are short descriptions for
/// a fault or a problem.
pub fn parse(input: &[u8]) -> Result<Element, String> {
    parse_with(input, Limits::MESSAGE)
}

/// Parses a document within `limits`.
pub fn parse_with(input: &[u8], limits: Limits) -> Result<Element, String> {
    let text = std::str::from_utf8(input).map_err(|_| "the message is not UTF-8".to_owned())?;
    if let Some(c) = text.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!("character U+{:04X} is not allowed in XML 1.0", c as u32));
    }
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (res, ev) = reader.read_resolved_event().map_err(|e| format!("malformed XML: {e}"))?;
        let ns = match res {
            ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => return Err(format!("undeclared namespace prefix `{p}`")),
        };
        match ev {
            Event::DocType(_) => return Err("a DOCTYPE is not allowed (no DTDs, no entities)".into()),
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err("content after the root element".into());
            }
            Event::Start(e) => {
                count += 1;
                if stack.len() >= limits.max_depth || count > limits.max_elements {
                    return Err("the message is too deep or too large".into());
                }
                stack.push(start(&reader, ns, &e)?);
            }
            Event::Empty(e) => {
                count += 1;
                if stack.len() >= limits.max_depth || count > limits.max_elements {
                    return Err("the message is too deep or too large".into());
                }
                let el = start(&reader, ns, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                // Entity references arrive as `GeneralRef` events: this text has none.
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&t);
                } else if !t.chars().all(char::is_whitespace) {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                // Only the five predefined entities and character references exist without a DTD.
                let name: String = r.into_inner().into_owned();
                let ch = match name.as_str() {
                    "lt" => "<".to_owned(),
                    "gt" => ">".to_owned(),
                    "amp" => "&".to_owned(),
                    "apos" => "'".to_owned(),
                    "quot" => "\"".to_owned(),
                    n if n.starts_with('#') => {
                        let code = if let Some(h) = n.strip_prefix("#x") {
                            u32::from_str_radix(h, 16)
                        } else {
                            n[1..].parse()
                        };
                        code.ok()
                            .and_then(char::from_u32)
                            .filter(|c| is_xml_char(*c))
                            .map(String::from)
                            .ok_or_else(|| format!("character reference &{n}; is not an XML 1.0 character"))?
                    }
                    n => return Err(format!("unknown entity &{n}; (no DTD entities)")),
                };
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&ch);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// XML 1.0's `Char`: tab, line feed, carriage return, and everything from U+0020 except
/// U+FFFE and U+FFFF (Rust's `char` has no surrogates).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escapes text for element content. Characters XML 1.0 cannot carry at all (control
/// characters a back-office may hold) are dropped: the answer stays well-formed.
pub fn esc(s: &str) -> String {
    if s.chars().all(is_xml_char) {
        quick_xml::escape::escape(s).into_owned()
    } else {
        let clean: String = s.chars().filter(|c| is_xml_char(*c)).collect();
        quick_xml::escape::escape(&clean).into_owned()
    }
}

/// Escapes text for an attribute value (quotes included), dropping what XML 1.0 cannot carry.
pub fn esc_attr(s: &str) -> String {
    esc(s).replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    const PAFN: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";

    #[test]
    fn namespaces_text_and_limits() {
        let doc = br#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><p:x xmlns:p="http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd"><idPA> 1 &amp; 2 &#65;</idPA></p:x></s:Body></s:Envelope>"#;
        let r = parse(doc).unwrap();
        assert_eq!((r.ns.as_deref(), r.name.as_str()), (Some(SOAP_ENV), "Envelope"));
        let x = &r.children[0].children[0];
        assert_eq!(x.ns.as_deref(), Some(PAFN));
        assert_eq!(x.text_of("idPA"), Some("1 & 2 A"));
        assert!(parse(b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>").unwrap_err().contains("DOCTYPE"));
        assert!(parse(b"<x>&a;</x>").unwrap_err().contains("entity"));
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse(deep.as_bytes()).unwrap_err().contains("deep"));
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<p:a/>").unwrap_err().contains("prefix"));
    }

    #[test]
    fn characters_xml_forbids_are_refused_and_never_written() {
        for bad in [&b"<a>&#1;</a>"[..], b"<a>&#0;</a>", b"<a>&#x1F;</a>", b"<a>\x01</a>", b"<a>&#xFFFE;</a>"] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"<a>&#9;&#10;&#x20AC;</a>").unwrap().text, "\t\n\u{20AC}");
        let written = format!("<a>{}</a>", esc("tassa\u{1} rifiuti <2026> & \u{7}co"));
        assert_eq!(parse(written.as_bytes()).unwrap().text, "tassa rifiuti <2026> & co");
    }
}
