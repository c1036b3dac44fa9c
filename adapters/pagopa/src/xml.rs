//! paForNode's namespaces and request element over the toolkit's strict reader.

pub use varco_xml::{esc, is_xml_char, parse, Element};

pub const SOAP_ENV: &str = varco_xml::soap::SOAP11_ENV;
pub const PAFN: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";

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
