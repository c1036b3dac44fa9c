//! A small, strict XML reader for SOAP requests: namespaces resolved, no DTD (so no entity
//! expansion, no external entities), bounded depth and size. It builds a tree the schema
//! module checks, so nothing is read by string slicing.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const PAFN: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";
const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: usize = 20_000;

/// An element: namespace, local name, child elements, text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
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
}

/// Parses a document into its root element; errors are short descriptions for the fault.
pub fn parse(input: &[u8]) -> Result<Element, String> {
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
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err("the message is too deep or too large".into());
                }
                stack.push(Element { ns, name: e.local_name().as_ref().to_owned(), ..Default::default() });
            }
            Event::Empty(e) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err("the message is too deep or too large".into());
                }
                let el = Element { ns, name: e.local_name().as_ref().to_owned(), ..Default::default() };
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

/// The request element inside `Envelope/Body`.
pub(crate) fn request_element(doc: &Element) -> Result<&Element, String> {
    if doc.ns.as_deref() != Some(SOAP_ENV) || doc.name != "Envelope" {
        return Err("the root must be a SOAP 1.1 Envelope".into());
    }
    let body = doc
        .children
        .iter()
        .find(|c| c.name == "Body" && c.ns.as_deref() == Some(SOAP_ENV))
        .ok_or("the Envelope has no Body")?;
    let req = match body.children.as_slice() {
        [one] => one,
        _ => return Err("the Body must hold exactly one request element".into()),
    };
    if req.ns.as_deref() != Some(PAFN) {
        return Err(format!("<{}> must be in namespace {PAFN}", req.name));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

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
