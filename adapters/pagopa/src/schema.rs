//! paForNode.xsd and the common types it imports (vendored in `contracts/external/pagopa`),
//! read once into the toolkit's schema model: every request and every answer is checked
//! against the official XSD itself (order, occurrences, choices, unqualified children,
//! lengths, patterns, enumerations, amounts' bounds), by `varco_xml::check`.

use crate::xml::{Element, PAFN};
use std::sync::OnceLock;
use varco_xml::schema::{Model, QName, Scope};
use varco_xml::Limits;

const PAFN_XSD: &[u8] = include_bytes!("../../../contracts/external/pagopa/wsdl/xsd/paForNode.xsd");
const COMMON_XSD: &[u8] = include_bytes!("../../../contracts/external/pagopa/xsd-common/sac-common-types-1.0.xsd");

fn load() -> Result<Model, String> {
    let a = varco_xml::parse_with(PAFN_XSD, Limits::CONTRACT)?;
    let b = varco_xml::parse_with(COMMON_XSD, Limits::CONTRACT)?;
    Model::from_schemas(&[(&a, Scope::default()), (&b, Scope::default())])
}

/// The model of paForNode.xsd, read on first use.
pub fn model() -> Result<&'static Model, String> {
    static M: OnceLock<Result<Model, String>> = OnceLock::new();
    M.get_or_init(|| load().map_err(|e| format!("paForNode.xsd does not load: {e}"))).as_ref().map_err(Clone::clone)
}

/// Checks a request element against the XSD's global element of its name.
pub fn check_request(req: &Element) -> Result<(), String> {
    let m = model()?;
    let f = m
        .elements
        .get(&QName::new(PAFN, &req.name))
        .ok_or_else(|| format!("<{}> is not an element of paForNode.xsd", req.name))?;
    varco_xml::check::check(m, f, req, &req.name)
}

/// Checks an answer's content (its children under any element) against the type of the XSD's
/// global element `response`.
pub fn check_answer(content: &Element, response: &str) -> Result<(), String> {
    let m = model()?;
    let f = m
        .elements
        .get(&QName::new(PAFN, response))
        .ok_or_else(|| format!("<{response}> is not an element of paForNode.xsd"))?;
    varco_xml::check::check_content(m, f.ty, content, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(inner: &str) -> Result<(), String> {
        let doc = crate::xml::parse(
            format!("<p:paVerifyPaymentNoticeReq xmlns:p=\"{PAFN}\">{inner}</p:paVerifyPaymentNoticeReq>").as_bytes(),
        )?;
        check_request(&doc)
    }

    const OK: &str = "<idPA>00093120434</idPA><idBrokerPA>b</idBrokerPA><idStation>s</idStation><qrCode><fiscalCode>00093120434</fiscalCode><noticeNumber>312000000000000123</noticeNumber></qrCode>";

    #[test]
    fn sequences_are_strict() {
        assert_eq!(verify(OK), Ok(()));
        assert!(verify(&OK.replace("<idBrokerPA>b</idBrokerPA>", "")).unwrap_err().contains("idBrokerPA: is missing"));
        assert!(verify(&format!("{OK}<x/>")).unwrap_err().contains("x: is not in the schema"));
        assert!(verify(&OK.replace("312000000000000123", "3120")).unwrap_err().contains("noticeNumber"));
        assert!(verify(&OK.replace("<idPA>00093120434", &format!("<idPA>{}", "x".repeat(36)))).is_err());
        assert!(verify(&OK.replace("<idStation>", &format!("<idStation xmlns=\"{PAFN}\">")))
            .unwrap_err()
            .contains("namespace"));
    }

    #[test]
    fn answers_are_checked_against_the_response_type() {
        let content = |inner: &str| crate::xml::parse(format!("<a>{inner}</a>").as_bytes()).unwrap();
        assert_eq!(check_answer(&content("<outcome>OK</outcome>"), "paSendRTRes"), Ok(()));
        assert!(check_answer(&content("<outcome>FORSE</outcome>"), "paSendRTRes").unwrap_err().contains("outcome"));
        let data = "<outcome>OK</outcome><data><creditorReferenceId>1</creditorReferenceId><paymentAmount>0.00</paymentAmount></data>";
        assert!(check_answer(&content(data), "paGetPaymentRes").unwrap_err().contains("data/paymentAmount"));
    }
}
