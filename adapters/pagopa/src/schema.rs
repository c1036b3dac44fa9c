//! The request types of `paForNode.xsd` as data: each complex type is its sequence of
//! elements (name, occurrences, type), each simple type its facets. `check` walks a parsed
//! request against them: order, required and repeated elements, no unknown elements,
//! unqualified children (the schema's default form), lengths, patterns, enumerations.

use crate::xml::Element;

/// A simple type's facets.
#[derive(Debug)]
pub enum Simple {
    /// `xsd:string` restricted to min..=max characters.
    Text(usize, usize),
    /// Exactly n ASCII digits.
    Digits(usize),
    /// `\d+\.\d{2}`, at most 999999999.99; `true`: at least 0.01.
    Amount(bool),
    Date,
    DateTime,
    Bool,
    Enum(&'static [&'static str]),
    Base64,
    Email,
    /// Two upper-case letters (`stNazioneProvincia`).
    Country,
    /// Any string.
    Any,
}

/// One element of a sequence.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub min: usize,
    pub max: usize,
    pub ty: &'static Ty,
}

#[derive(Debug)]
pub enum Item {
    El(Field),
    /// Exactly one of these elements.
    Choice(&'static [Field]),
}

#[derive(Debug)]
pub enum Ty {
    Simple(Simple),
    Seq(&'static [Item]),
}

const fn req(name: &'static str, ty: &'static Ty) -> Item {
    Item::El(Field { name, min: 1, max: 1, ty })
}
const fn opt(name: &'static str, ty: &'static Ty) -> Item {
    Item::El(Field { name, min: 0, max: 1, ty })
}
const fn many(name: &'static str, min: usize, max: usize, ty: &'static Ty) -> Item {
    Item::El(Field { name, min, max, ty })
}

static T16: Ty = Ty::Simple(Simple::Text(1, 16));
static T20: Ty = Ty::Simple(Simple::Text(1, 20));
static T35: Ty = Ty::Simple(Simple::Text(1, 35));
static T70: Ty = Ty::Simple(Simple::Text(1, 70));
static T140: Ty = Ty::Simple(Simple::Text(1, 140));
static T210: Ty = Ty::Simple(Simple::Text(1, 210));
static T5: Ty = Ty::Simple(Simple::Text(5, 5));
static ANY: Ty = Ty::Simple(Simple::Any);
static NOTICE: Ty = Ty::Simple(Simple::Digits(18));
static FISCAL_PA: Ty = Ty::Simple(Simple::Digits(11));
static AMOUNT: Ty = Ty::Simple(Simple::Amount(false));
static AMOUNT_NZ: Ty = Ty::Simple(Simple::Amount(true));
static DATE: Ty = Ty::Simple(Simple::Date);
static DATETIME: Ty = Ty::Simple(Simple::DateTime);
static BOOL: Ty = Ty::Simple(Simple::Bool);
static BASE64: Ty = Ty::Simple(Simple::Base64);
static OUTCOME: Ty = Ty::Simple(Simple::Enum(&["OK", "KO"]));
static ID_TRANSFER: Ty = Ty::Simple(Simple::Enum(&["1", "2", "3", "4", "5"]));
static TRANSFER_TYPE: Ty = Ty::Simple(Simple::Enum(&["POSTAL", "PAGOPA"]));
static UID_TYPE: Ty = Ty::Simple(Simple::Enum(&["F", "G"]));
static UID_VALUE: Ty = Ty::Simple(Simple::Text(2, 16));
static EMAIL: Ty = Ty::Simple(Simple::Email);
static COUNTRY: Ty = Ty::Simple(Simple::Country);

static QR_CODE: Ty = Ty::Seq(&[req("fiscalCode", &FISCAL_PA), req("noticeNumber", &NOTICE)]);
static UNIQUE_ID: Ty =
    Ty::Seq(&[req("entityUniqueIdentifierType", &UID_TYPE), req("entityUniqueIdentifierValue", &UID_VALUE)]);
static SUBJECT: Ty = Ty::Seq(&[
    req("uniqueIdentifier", &UNIQUE_ID),
    req("fullName", &T70),
    opt("streetName", &T70),
    opt("civicNumber", &T16),
    opt("postalCode", &T16),
    opt("city", &T35),
    opt("stateProvinceRegion", &T35),
    opt("country", &COUNTRY),
    opt("e-mail", &EMAIL),
]);
static MAP_ENTRY: Ty = Ty::Seq(&[req("key", &T140), req("value", &T140)]);
static METADATA: Ty = Ty::Seq(&[many("mapEntry", 1, 15, &MAP_ENTRY)]);
/// `ctTransferPA`: a transfer of a receipt, and of a paGetPayment answer.
static TRANSFER: Ty = Ty::Seq(&[
    req("idTransfer", &ID_TRANSFER),
    req("transferAmount", &AMOUNT_NZ),
    req("fiscalCodePA", &FISCAL_PA),
    req("IBAN", &T35),
    req("remittanceInformation", &T140),
    req("transferCategory", &T140),
    opt("metadata", &METADATA),
]);
static TRANSFER_LIST: Ty = Ty::Seq(&[many("transfer", 1, 5, &TRANSFER)]);
static TRANSFER_RECEIPT_V2: Ty = Ty::Seq(&[
    req("idTransfer", &ID_TRANSFER),
    req("transferAmount", &AMOUNT_NZ),
    req("fiscalCodePA", &FISCAL_PA),
    opt("companyName", &T140),
    Item::Choice(&[
        Field { name: "IBAN", min: 1, max: 1, ty: &T35 },
        Field { name: "MBDAttachment", min: 1, max: 1, ty: &BASE64 },
    ]),
    req("remittanceInformation", &T140),
    req("transferCategory", &T140),
    opt("metadata", &METADATA),
]);
static TRANSFER_LIST_RECEIPT_V2: Ty = Ty::Seq(&[many("transfer", 1, 5, &TRANSFER_RECEIPT_V2)]);

static RECEIPT: Ty = Ty::Seq(&[
    req("receiptId", &ANY),
    req("noticeNumber", &NOTICE),
    req("fiscalCode", &FISCAL_PA),
    req("outcome", &OUTCOME),
    req("creditorReferenceId", &T35),
    req("paymentAmount", &AMOUNT),
    req("description", &T140),
    req("companyName", &T140),
    opt("officeName", &T140),
    req("debtor", &SUBJECT),
    req("transferList", &TRANSFER_LIST),
    req("idPSP", &T35),
    opt("pspFiscalCode", &T70),
    opt("pspPartitaIVA", &T20),
    req("PSPCompanyName", &T70),
    req("idChannel", &T35),
    req("channelDescription", &T35),
    opt("payer", &SUBJECT),
    opt("paymentMethod", &T35),
    opt("fee", &AMOUNT),
    opt("paymentDateTime", &DATETIME),
    opt("applicationDate", &DATE),
    opt("transferDate", &DATE),
    opt("metadata", &METADATA),
    opt("standIn", &BOOL),
]);
static RECEIPT_V2: Ty = Ty::Seq(&[
    req("receiptId", &ANY),
    req("noticeNumber", &NOTICE),
    req("fiscalCode", &FISCAL_PA),
    req("outcome", &OUTCOME),
    req("creditorReferenceId", &T35),
    req("paymentAmount", &AMOUNT),
    req("description", &T140),
    req("companyName", &T140),
    opt("officeName", &T140),
    req("debtor", &SUBJECT),
    req("transferList", &TRANSFER_LIST_RECEIPT_V2),
    req("idPSP", &T35),
    opt("pspFiscalCode", &T70),
    opt("pspPartitaIVA", &T20),
    req("PSPCompanyName", &T70),
    req("idChannel", &T35),
    req("channelDescription", &T35),
    opt("payer", &SUBJECT),
    opt("paymentMethod", &T35),
    opt("paymentNote", &T210),
    opt("fee", &AMOUNT),
    opt("primaryCiIncurredFee", &AMOUNT),
    opt("idBundle", &T70),
    opt("idCiBundle", &T70),
    opt("paymentDateTime", &DATETIME),
    opt("applicationDate", &DATE),
    opt("transferDate", &DATE),
    opt("metadata", &METADATA),
    opt("standIn", &BOOL),
]);

pub static VERIFY_REQ: Ty =
    Ty::Seq(&[req("idPA", &T35), req("idBrokerPA", &T35), req("idStation", &T35), req("qrCode", &QR_CODE)]);
pub static GET_PAYMENT_REQ: Ty = Ty::Seq(&[
    req("idPA", &T35),
    req("idBrokerPA", &T35),
    req("idStation", &T35),
    req("qrCode", &QR_CODE),
    opt("amount", &AMOUNT),
    opt("paymentNote", &T210),
    opt("transferType", &TRANSFER_TYPE),
    opt("dueDate", &DATE),
]);
pub static SEND_RT_REQ: Ty =
    Ty::Seq(&[req("idPA", &T35), req("idBrokerPA", &T35), req("idStation", &T35), req("receipt", &RECEIPT)]);
pub static SEND_RT_V2_REQ: Ty =
    Ty::Seq(&[req("idPA", &T35), req("idBrokerPA", &T35), req("idStation", &T35), req("receipt", &RECEIPT_V2)]);
pub static DEMAND_REQ: Ty = Ty::Seq(&[
    req("idPA", &T35),
    req("idBrokerPA", &T35),
    req("idStation", &T35),
    req("idServizio", &T5),
    req("idSoggettoServizio", &T5),
    req("datiSpecificiServizioRequest", &BASE64),
]);

// The answers varco writes, so that each is checked before it goes out: whatever the
// back-office sent, the node never gets an answer its XSD refuses.
static FAULT_BEAN: Ty = Ty::Seq(&[
    req("faultCode", &ANY),
    req("faultString", &ANY),
    req("id", &ANY),
    opt("description", &ANY),
    opt("serial", &ANY),
    opt("originalFaultCode", &ANY),
    opt("originalFaultString", &ANY),
    opt("originalDescription", &ANY),
]);
static AMOUNT_OPTION: Ty = Ty::Simple(Simple::Enum(&["EQ", "LS", "GT", "ANY"]));
static OPTION_DESCRIPTION: Ty = Ty::Seq(&[
    req("amount", &AMOUNT_NZ),
    req("options", &AMOUNT_OPTION),
    opt("dueDate", &DATE),
    opt("detailDescription", &T140),
    req("allCCP", &BOOL),
]);
static OPTION_LIST: Ty = Ty::Seq(&[req("paymentOptionDescription", &OPTION_DESCRIPTION)]);
static MARCA_DA_BOLLO: Ty =
    Ty::Seq(&[req("hashDocumento", &BASE64), req("tipoBollo", &ANY), req("provinciaResidenza", &COUNTRY)]);
static TRANSFER_PA_V2: Ty = Ty::Seq(&[
    req("idTransfer", &ID_TRANSFER),
    req("transferAmount", &AMOUNT_NZ),
    req("fiscalCodePA", &FISCAL_PA),
    opt("companyName", &T140),
    Item::Choice(&[
        Field { name: "IBAN", min: 1, max: 1, ty: &T35 },
        Field { name: "richiestaMarcaDaBollo", min: 1, max: 1, ty: &MARCA_DA_BOLLO },
    ]),
    req("remittanceInformation", &T140),
    req("transferCategory", &T140),
    opt("metadata", &METADATA),
]);
static PAYMENT_PA: Ty = Ty::Seq(&[
    req("creditorReferenceId", &T35),
    req("paymentAmount", &AMOUNT_NZ),
    req("dueDate", &DATE),
    opt("retentionDate", &DATETIME),
    opt("lastPayment", &BOOL),
    req("description", &T140),
    opt("companyName", &T140),
    opt("officeName", &T140),
    req("debtor", &SUBJECT),
    req("transferList", &Ty::Seq(&[many("transfer", 1, 5, &TRANSFER)])),
    opt("metadata", &METADATA),
]);
static PAYMENT_PA_V2: Ty = Ty::Seq(&[
    req("creditorReferenceId", &T35),
    req("paymentAmount", &AMOUNT_NZ),
    req("dueDate", &DATE),
    opt("retentionDate", &DATETIME),
    opt("lastPayment", &BOOL),
    req("description", &T140),
    req("companyName", &T140),
    opt("officeName", &T140),
    req("debtor", &SUBJECT),
    req("transferList", &Ty::Seq(&[many("transfer", 1, 5, &TRANSFER_PA_V2)])),
    opt("metadata", &METADATA),
]);
pub static VERIFY_RES: Ty = Ty::Seq(&[
    req("outcome", &OUTCOME),
    opt("fault", &FAULT_BEAN),
    opt("paymentList", &OPTION_LIST),
    opt("paymentDescription", &T140),
    opt("fiscalCodePA", &FISCAL_PA),
    opt("companyName", &T140),
    opt("officeName", &T140),
]);
pub static GET_PAYMENT_RES: Ty =
    Ty::Seq(&[req("outcome", &OUTCOME), opt("fault", &FAULT_BEAN), opt("data", &PAYMENT_PA)]);
pub static GET_PAYMENT_V2_RES: Ty =
    Ty::Seq(&[req("outcome", &OUTCOME), opt("fault", &FAULT_BEAN), opt("data", &PAYMENT_PA_V2)]);
pub static SEND_RT_RES: Ty = Ty::Seq(&[req("outcome", &OUTCOME), opt("fault", &FAULT_BEAN)]);
pub static DEMAND_RES: Ty = Ty::Seq(&[
    req("outcome", &OUTCOME),
    opt("fault", &FAULT_BEAN),
    opt("qrCode", &QR_CODE),
    opt("paymentList", &OPTION_LIST),
    opt("paymentDescription", &T140),
    opt("fiscalCodePA", &FISCAL_PA),
    opt("companyName", &T140),
    opt("officeName", &T140),
]);

/// Checks `el` against `ty`; the first problem as `path: what`.
pub fn check(el: &Element, ty: &Ty, path: &str) -> Result<(), String> {
    walk(el, ty, &Path { parent: None, name: path })
}

/// Where the walk is, kept on the stack: written out only when there is a problem to report
/// (every message and answer is checked, so the walk allocates nothing on success).
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    name: &'a str,
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.parent {
            write!(f, "{p}/")?;
        }
        f.write_str(self.name)
    }
}

fn walk(el: &Element, ty: &Ty, path: &Path<'_>) -> Result<(), String> {
    match ty {
        Ty::Simple(s) => {
            if !el.children.is_empty() {
                return Err(format!("{path}: must be text, not elements"));
            }
            simple(el.text.trim(), s).map_err(|why| format!("{path}: {why}"))
        }
        Ty::Seq(items) => {
            if !el.text.trim().is_empty() {
                return Err(format!("{path}: text is not allowed here"));
            }
            if let Some(q) = el.children.iter().find(|c| c.ns.is_some()) {
                return Err(format!("{path}/{}: child elements are unqualified (no namespace)", q.name));
            }
            let kids = &el.children;
            let mut i = 0;
            for item in *items {
                match item {
                    Item::El(f) => {
                        let mut n = 0;
                        while i < kids.len() && kids[i].name == f.name {
                            n += 1;
                            if n > f.max {
                                return Err(format!("{path}/{}: at most {} allowed", f.name, f.max));
                            }
                            walk(&kids[i], f.ty, &Path { parent: Some(path), name: f.name })?;
                            i += 1;
                        }
                        if n < f.min {
                            let found = kids.get(i).map_or("the end".to_owned(), |k| format!("<{}>", k.name));
                            return Err(format!("{path}/{}: required, found {found}", f.name));
                        }
                    }
                    Item::Choice(alts) => {
                        let Some(k) = kids.get(i) else {
                            return Err(format!("{path}: one of {} is required", names(alts)));
                        };
                        let Some(f) = alts.iter().find(|f| f.name == k.name) else {
                            return Err(format!("{path}/{}: expected one of {}", k.name, names(alts)));
                        };
                        walk(k, f.ty, &Path { parent: Some(path), name: f.name })?;
                        i += 1;
                    }
                }
            }
            match kids.get(i) {
                Some(k) => Err(format!("{path}/{}: unexpected element", k.name)),
                None => Ok(()),
            }
        }
    }
}

fn names(fields: &[Field]) -> String {
    fields.iter().map(|f| f.name).collect::<Vec<_>>().join(" | ")
}

fn simple(v: &str, s: &Simple) -> Result<(), String> {
    let ok = match s {
        Simple::Any => true,
        Simple::Text(min, max) => {
            let n = v.chars().count();
            if n < *min || n > *max {
                return Err(format!("{min} to {max} characters, not {n}"));
            }
            true
        }
        Simple::Digits(n) => v.len() == *n && v.bytes().all(|b| b.is_ascii_digit()),
        Simple::Amount(nonzero) => {
            let shape = v.split_once('.').is_some_and(|(i, d)| {
                !i.is_empty()
                    && i.bytes().all(|b| b.is_ascii_digit())
                    && d.len() == 2
                    && d.bytes().all(|b| b.is_ascii_digit())
            });
            let value = v.parse::<f64>().unwrap_or(-1.0);
            shape && value <= 999_999_999.99 && (!nonzero || value >= 0.01)
        }
        Simple::Date => {
            chrono::NaiveDate::parse_from_str(v.get(..10).unwrap_or(""), "%Y-%m-%d").is_ok()
                && tz_ok(&v[10.min(v.len())..])
        }
        Simple::DateTime => {
            let base = v.get(..19).unwrap_or("");
            let rest = &v[19.min(v.len())..];
            let rest = rest.strip_prefix('.').map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
            chrono::NaiveDateTime::parse_from_str(base, "%Y-%m-%dT%H:%M:%S").is_ok() && tz_ok(rest)
        }
        Simple::Bool => matches!(v, "true" | "false" | "1" | "0"),
        Simple::Enum(vals) => vals.contains(&v),
        Simple::Base64 => {
            v.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b) || b.is_ascii_whitespace())
        }
        Simple::Email => {
            v.len() <= 256
                && v.split_once('@').is_some_and(|(l, d)| {
                    !l.is_empty()
                        && !d.is_empty()
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
                        && d.split('.')
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                })
        }
        Simple::Country => v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()),
    };
    if ok {
        Ok(())
    } else {
        Err(match s {
            Simple::Digits(n) => format!("{n} digits expected"),
            Simple::Amount(_) => "an amount like 12.34 (two decimals) expected".into(),
            Simple::Date => "a date YYYY-MM-DD expected".into(),
            Simple::DateTime => "a date-time YYYY-MM-DDThh:mm:ss expected".into(),
            Simple::Enum(v) => format!("one of {} expected", v.join(", ")),
            _ => "invalid value".into(),
        })
    }
}

/// An optional XSD time zone: `Z` or `±hh:mm`.
fn tz_ok(rest: &str) -> bool {
    rest.is_empty()
        || rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && chrono::NaiveTime::parse_from_str(&format!("{}:00", &rest[1..]), "%H:%M:%S").is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(name: &str, text: &str) -> Element {
        Element { ns: None, name: name.into(), children: vec![], text: text.into(), ..Default::default() }
    }

    fn verify(children: Vec<Element>) -> Element {
        Element { ns: None, name: "paVerifyPaymentNoticeReq".into(), children, ..Default::default() }
    }

    fn qr(notice: &str) -> Element {
        Element {
            ns: None,
            name: "qrCode".into(),
            children: vec![el("fiscalCode", "00093120434"), el("noticeNumber", notice)],
            ..Default::default()
        }
    }

    #[test]
    fn sequences_are_strict() {
        let ok = verify(vec![
            el("idPA", "00093120434"),
            el("idBrokerPA", "b"),
            el("idStation", "s"),
            qr("312000000000000123"),
        ]);
        assert!(check(&ok, &VERIFY_REQ, "req").is_ok());
        let missing = verify(vec![el("idPA", "00093120434"), el("idStation", "s"), qr("312000000000000123")]);
        assert!(check(&missing, &VERIFY_REQ, "req").unwrap_err().contains("idBrokerPA: required"));
        let extra = verify(vec![
            el("idPA", "x"),
            el("idBrokerPA", "b"),
            el("idStation", "s"),
            qr("312000000000000123"),
            el("x", ""),
        ]);
        assert!(check(&extra, &VERIFY_REQ, "req").unwrap_err().contains("x: unexpected"));
        let short = verify(vec![el("idPA", "x"), el("idBrokerPA", "b"), el("idStation", "s"), qr("3120")]);
        assert!(check(&short, &VERIFY_REQ, "req").unwrap_err().contains("noticeNumber: 18 digits"));
        let long = verify(vec![
            el("idPA", &"x".repeat(36)),
            el("idBrokerPA", "b"),
            el("idStation", "s"),
            qr("312000000000000123"),
        ]);
        assert!(check(&long, &VERIFY_REQ, "req").is_err());
    }

    #[test]
    fn simple_types() {
        assert!(simple("12.30", &Simple::Amount(true)).is_ok());
        assert!(simple("12.3", &Simple::Amount(true)).is_err());
        assert!(simple("0.00", &Simple::Amount(true)).is_err());
        assert!(simple("0.00", &Simple::Amount(false)).is_ok());
        assert!(simple("2026-11-24", &Simple::Date).is_ok());
        assert!(simple("2026-11-24+01:00", &Simple::Date).is_ok());
        assert!(simple("24/11/2026", &Simple::Date).is_err());
        assert!(simple("2026-11-24T10:00:00", &Simple::DateTime).is_ok());
        assert!(simple("2026-11-24T10:00:00.123Z", &Simple::DateTime).is_ok());
        assert!(simple("2026-11-24 10:00", &Simple::DateTime).is_err());
    }
}
