//! Checks a parsed element against the schema [`Model`]: namespaces, order, occurrences,
//! choices, `xsi:nil`, attributes and every simple value's facets. The first problem comes back
//! as `path: what` (`paVerifyPaymentNoticeReq/qrCode/noticeNumber: ...`). Nothing is allocated
//! on success: the path lives on the stack and is written out only for a message.

use crate::reader::Element;
use crate::schema::{Complex, Field, Model, Ty, TypeId};

/// Nesting followed at most (recursive types).
const MAX_DEPTH: usize = 64;

struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    name: &'a str,
    /// 1-based position among repeated siblings; 0 for a single element.
    index: u32,
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.parent {
            write!(f, "{p}/")?;
        }
        f.write_str(self.name)?;
        if self.index > 0 {
            write!(f, "[{}]", self.index)?;
        }
        Ok(())
    }
}

/// Checks `el` as an occurrence of field `f` (its namespace included); `name` starts the
/// paths in messages.
pub fn check(m: &Model, f: &Field, el: &Element, name: &str) -> Result<(), String> {
    element(m, f, el, &Path { parent: None, name, index: 0 }, 0)
}

/// Checks `el`'s content (children, attributes, text) against type `ty`, whatever the
/// element's own name (an answer's content assembled under a placeholder).
pub fn check_content(m: &Model, ty: TypeId, el: &Element, name: &str) -> Result<(), String> {
    content(m, ty, el, &Path { parent: None, name, index: 0 }, 0)
}

fn element(m: &Model, f: &Field, el: &Element, path: &Path<'_>, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{path}: nested too deeply"));
    }
    if el.ns.as_deref() != f.ns.as_deref() {
        return Err(format!(
            "{path}: is in namespace `{}`, expected `{}`",
            el.ns.as_deref().unwrap_or(""),
            f.ns.as_deref().unwrap_or("")
        ));
    }
    if el.is_nil() {
        return if f.nillable { Ok(()) } else { Err(format!("{path}: is nil but the schema does not allow it")) };
    }
    content(m, f.ty, el, path, depth)
}

fn content(m: &Model, ty: TypeId, el: &Element, path: &Path<'_>, depth: usize) -> Result<(), String> {
    match m.ty(ty) {
        Ty::Simple(s) => {
            if let Some(c) = el.children.first() {
                return Err(format!("{path}/{}: unexpected element in a simple value", c.name));
            }
            s.check(&el.text).map_err(|e| format!("{path}: {e}"))
        }
        Ty::Complex(c) => complex(m, c, el, path, depth),
    }
}

fn missing(path: &Path<'_>, f: &Field) -> String {
    format!("{path}/{}: is missing", f.name)
}

fn complex(m: &Model, c: &Complex, el: &Element, path: &Path<'_>, depth: usize) -> Result<(), String> {
    if c.text.is_none() && !c.open && !el.text.trim().is_empty() {
        return Err(format!("{path}: text is not allowed here"));
    }
    for a in &c.attrs {
        match el.attr(&a.name) {
            Some(v) => {
                if let Ty::Simple(s) = m.ty(a.ty) {
                    s.check(v).map_err(|e| format!("{path}/@{}: {e}", a.name))?;
                }
            }
            None if a.required => return Err(format!("{path}/@{}: is missing", a.name)),
            None => {}
        }
    }
    if let Some(Ty::Simple(s)) = c.text.map(|t| m.ty(t)) {
        s.check(&el.text).map_err(|e| format!("{path}: {e}"))?;
    }
    let fields = &c.fields;
    if c.ordered {
        // `at` is the field the last child matched, `n` how often in a row.
        let (mut at, mut n) = (0usize, 0u32);
        for child in &el.children {
            let j = if fields.get(at).is_some_and(|f| f.name == child.name) {
                Some(at)
            } else {
                (at..fields.len()).find(|&j| fields[j].name == child.name)
            };
            let Some(j) = j else {
                if c.open {
                    continue;
                }
                let why = if fields.iter().any(|f| f.name == child.name) {
                    "is out of order"
                } else {
                    "is not in the schema"
                };
                return Err(format!("{path}/{}: {why}", child.name));
            };
            if j != at {
                for (k, f) in fields.iter().enumerate().take(j).skip(at) {
                    let seen = if k == at { n } else { 0 };
                    if seen < f.min {
                        return Err(missing(path, f));
                    }
                }
                at = j;
                n = 0;
            }
            n += 1;
            let f = &fields[j];
            if n > f.max {
                return Err(format!("{path}/{}: appears more than {} time(s)", f.name, f.max));
            }
            let index = if f.repeated() { n } else { 0 };
            element(m, f, child, &Path { parent: Some(path), name: &f.name, index }, depth + 1)?;
        }
        for (k, f) in fields.iter().enumerate().skip(at) {
            let seen = if k == at && !el.children.is_empty() { n } else { 0 };
            if seen < f.min {
                return Err(missing(path, f));
            }
        }
    } else {
        for f in fields {
            let mut n = 0u32;
            for child in el.children.iter().filter(|ch| ch.name == f.name) {
                n += 1;
                if n > f.max {
                    return Err(format!("{path}/{}: appears more than {} time(s)", f.name, f.max));
                }
                let index = if f.repeated() { n } else { 0 };
                element(m, f, child, &Path { parent: Some(path), name: &f.name, index }, depth + 1)?;
            }
            if n < f.min {
                return Err(missing(path, f));
            }
        }
        if let Some(ch) = el.children.iter().find(|ch| !c.open && !fields.iter().any(|f| f.name == ch.name)) {
            return Err(format!("{path}/{}: is not in the schema", ch.name));
        }
    }
    // A choice holds one of its elements: exactly one when the choice is required.
    for (g, required) in &c.choices {
        let mut chosen: Option<&str> = None;
        for child in &el.children {
            if let Some(f) = fields.iter().find(|f| f.choice == Some(*g) && f.name == child.name) {
                match chosen {
                    Some(other) if other != f.name => {
                        return Err(format!("{path}/{}: only one of `{other}` and `{}` may appear", f.name, f.name));
                    }
                    _ => chosen = Some(&f.name),
                }
            }
        }
        if *required && chosen.is_none() {
            let names: Vec<&str> = fields.iter().filter(|f| f.choice == Some(*g)).map(|f| f.name.as_str()).collect();
            return Err(format!("{path}: one of {} is required", names.join(" | ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::parse;
    use crate::schema::{QName, Scope};

    fn pagopa() -> Model {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/external/pagopa");
        let a = parse(&std::fs::read(format!("{dir}/wsdl/xsd/paForNode.xsd")).unwrap()).unwrap();
        let b = std::fs::read(format!("{dir}/xsd-common/sac-common-types-1.0.xsd")).unwrap();
        let b = crate::reader::parse_with(&b, crate::reader::Limits::CONTRACT).unwrap();
        Model::from_schemas(&[(&a, Scope::default()), (&b, Scope::default())]).unwrap()
    }

    const PAFN: &str = "http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd";

    fn verify(inner: &str) -> Result<(), String> {
        let m = pagopa();
        let f = &m.elements[&QName::new(PAFN, "paVerifyPaymentNoticeReq")];
        let doc = parse(
            format!("<p:paVerifyPaymentNoticeReq xmlns:p=\"{PAFN}\">{inner}</p:paVerifyPaymentNoticeReq>").as_bytes(),
        )
        .unwrap();
        check(&m, f, &doc, "paVerifyPaymentNoticeReq")
    }

    #[test]
    fn the_official_pagopa_xsd_checks_requests() {
        let ok = "<idPA>00093120434</idPA><idBrokerPA>00093120434</idBrokerPA><idStation>00093120434_01</idStation><qrCode><fiscalCode>00093120434</fiscalCode><noticeNumber>302000000000000011</noticeNumber></qrCode>";
        assert_eq!(verify(ok), Ok(()));
        let e = verify(&ok.replace("302000000000000011", "30200000000000001")).unwrap_err();
        assert!(e.starts_with("paVerifyPaymentNoticeReq/qrCode/noticeNumber: "), "{e}");
        let e = verify(&ok.replace(
            "<idPA>00093120434</idPA><idBrokerPA>00093120434</idBrokerPA>",
            "<idBrokerPA>00093120434</idBrokerPA><idPA>00093120434</idPA>",
        ))
        .unwrap_err();
        assert!(e.contains("idPA"), "{e}");
        let e = verify(&ok.replace("<qrCode>", "<extra/><qrCode>")).unwrap_err();
        assert!(e.contains("extra: is not in the schema"), "{e}");
        let e = verify(&ok.replace("<idPA>", &format!("<idPA xmlns=\"{PAFN}\">"))).unwrap_err();
        assert!(e.contains("namespace"), "{e}");
        assert!(verify(&ok.replace(
            "<qrCode><fiscalCode>00093120434</fiscalCode><noticeNumber>302000000000000011</noticeNumber></qrCode>",
            ""
        ))
        .unwrap_err()
        .contains("qrCode: is missing"));
    }

    #[test]
    fn amounts_choices_and_emails_follow_the_xsd() {
        let m = pagopa();
        let q = |n: &str| m.named(&QName::new(PAFN, n)).unwrap();
        let amount = |v: &str| {
            let doc = parse(format!("<a>{v}</a>").as_bytes()).unwrap();
            check_content(&m, q("stAmountNotZero"), &doc, "paymentAmount")
        };
        assert!(amount("12.34").is_ok());
        assert!(amount("0.00").is_err(), "minInclusive 0.01");
        assert!(amount("12.3").is_err(), "two decimals");
        assert!(amount("1000000000.00").is_err(), "maxInclusive");
        let t = |inner: &str| {
            let doc = parse(format!("<t>{inner}</t>").as_bytes()).unwrap();
            check_content(&m, q("ctTransferPAV2"), &doc, "transfer")
        };
        let head =
            "<idTransfer>1</idTransfer><transferAmount>10.00</transferAmount><fiscalCodePA>00093120434</fiscalCodePA>";
        let tail = "<remittanceInformation>r</remittanceInformation><transferCategory>c</transferCategory>";
        assert!(t(&format!("{head}<IBAN>IT60X0542811101000000123456</IBAN>{tail}")).is_ok());
        assert!(t(&format!("{head}{tail}")).unwrap_err().contains("one of IBAN | richiestaMarcaDaBollo is required"));
    }
}
