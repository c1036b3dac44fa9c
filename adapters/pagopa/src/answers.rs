//! The station's SOAP answers: the OK bodies of paVerifyPaymentNotice and paGetPayment[V2],
//! KO faults, the envelope, and the SOAP Fault for problems met before the station answers.
//! Every answer is checked against the XSD's response type before it goes out (`fits_xsd`).

use crate::backoffice::{self, Position};
use crate::xml::{esc, PAFN, SOAP_ENV};
use crate::{Fault, Op, PagopaAdapter};
use bytes::Bytes;
use varco_core::{AdapterResponse, Problem};

impl PagopaAdapter {
    /// A problem met before the station answers (a refused address, a body too large, a rate
    /// limit) as a SOAP 1.1 Fault: the node reads SOAP, never problem+json.
    pub(super) fn soap_fault(p: &Problem, request_id: &str, trace_id: &str) -> AdapterResponse {
        let side = if p.status() < 500 { "Client" } else { "Server" };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\"><soapenv:Body><soapenv:Fault><faultcode>soapenv:{side}</faultcode><faultstring>{}: {}</faultstring><detail><problem xmlns=\"urn:varco:problem\"><type>{}</type><status>{}</status><requestId>{}</requestId><traceId>{}</traceId></problem></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
            esc(p.kind.title()),
            esc(&p.detail),
            esc(&p.kind.type_uri()),
            p.status(),
            esc(request_id),
            esc(trace_id),
        );
        AdapterResponse {
            status: 500,
            headers: vec![(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/xml; charset=utf-8"))],
            body: Bytes::from(body),
        }
    }

    pub(super) fn verify_ok(&self, p: &Position) -> String {
        let all_ccp =
            !p.transfers.is_empty() && p.transfers.iter().all(|t| t.iban.as_deref().is_some_and(backoffice::is_postal));
        format!(
            "<outcome>OK</outcome><paymentList><paymentOptionDescription><amount>{}</amount><options>EQ</options><dueDate>{}</dueDate><detailDescription>{}</detailDescription><allCCP>{all_ccp}</allCCP></paymentOptionDescription></paymentList><paymentDescription>{}</paymentDescription><fiscalCodePA>{}</fiscalCodePA><companyName>{}</companyName>{}",
            backoffice::amount(p.amount_cents),
            esc(&p.due_date),
            esc(&self.causale("description", &p.description, 140)),
            esc(&self.causale("description", &p.description, 140)),
            esc(&self.cfg.id_pa),
            esc(&self.cfg.company_name),
            opt_el("officeName", p.office_name.as_deref()),
        )
    }

    pub(super) fn payment_ok(&self, p: &Position, iuv: &str, v2: bool) -> String {
        let d = &p.debtor;
        let mut debtor = format!(
            "<debtor><uniqueIdentifier><entityUniqueIdentifierType>{}</entityUniqueIdentifierType><entityUniqueIdentifierValue>{}</entityUniqueIdentifierValue></uniqueIdentifier><fullName>{}</fullName>",
            esc(&d.kind), esc(&d.fiscal_code), esc(&d.full_name)
        );
        for (tag, v) in [
            ("streetName", &d.street_name),
            ("civicNumber", &d.civic_number),
            ("postalCode", &d.postal_code),
            ("city", &d.city),
            ("stateProvinceRegion", &d.province),
            ("country", &d.country),
            ("e-mail", &d.email),
        ] {
            if let Some(v) = v {
                debtor.push_str(&format!("<{tag}>{}</{tag}>", esc(v)));
            }
        }
        debtor.push_str("</debtor>");
        let mut transfers = String::new();
        for t in &p.transfers {
            // Each transfer names its own creditor: the ente's name only on the ente's own.
            let own = t.fiscal_code_pa == self.cfg.id_pa;
            let company = match (v2, t.company_name.as_deref()) {
                (false, _) => None,
                (true, Some(name)) => Some(name),
                (true, None) => own.then_some(self.cfg.company_name.as_str()),
            };
            // A stamp is paGetPaymentV2's; a v1 answer without an IBAN fails the XSD check.
            let account = match (&t.iban, &t.stamp) {
                (Some(iban), _) => format!("<IBAN>{}</IBAN>", esc(iban)),
                (None, Some(st)) if v2 => format!(
                    "<richiestaMarcaDaBollo><hashDocumento>{}</hashDocumento><tipoBollo>{}</tipoBollo><provinciaResidenza>{}</provinciaResidenza></richiestaMarcaDaBollo>",
                    esc(&st.document_hash), esc(&st.kind), esc(&st.province)
                ),
                _ => String::new(),
            };
            transfers.push_str(&format!(
                "<transfer><idTransfer>{}</idTransfer><transferAmount>{}</transferAmount><fiscalCodePA>{}</fiscalCodePA>{}{account}<remittanceInformation>{}</remittanceInformation><transferCategory>{}</transferCategory>{}</transfer>",
                t.id, backoffice::amount(t.amount_cents), esc(&t.fiscal_code_pa), opt_el("companyName", company), esc(&self.causale("remittance_information", &t.remittance_information, 140)), esc(&t.category), metadata(&t.metadata)
            ));
        }
        format!(
            "<outcome>OK</outcome><data><creditorReferenceId>{}</creditorReferenceId><paymentAmount>{}</paymentAmount><dueDate>{}</dueDate>{}{}<description>{}</description><companyName>{}</companyName>{}{debtor}<transferList>{transfers}</transferList>{}</data>",
            esc(iuv),
            backoffice::amount(p.amount_cents),
            esc(&p.due_date),
            opt_el("retentionDate", p.retention_date.as_deref()),
            opt_el("lastPayment", p.last_payment.map(|b| if b { "true" } else { "false" })),
            esc(&self.causale("description", &p.description, 140)),
            esc(&self.cfg.company_name),
            opt_el("officeName", p.office_name.as_deref()),
            metadata(&p.metadata),
        )
    }

    pub(super) fn ko(&self, f: &Fault) -> String {
        format!(
            "<outcome>KO</outcome><fault><faultCode>{}</faultCode><faultString>{}</faultString><id>{}</id><description>{}</description></fault>",
            f.code,
            esc(&f.string),
            esc(&self.cfg.id_pa),
            esc(&f.description)
        )
    }

    pub(super) fn envelope(&self, op: Op, inner: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"{SOAP_ENV}\"><soapenv:Body><pafn:{r} xmlns:pafn=\"{PAFN}\">{inner}</pafn:{r}></soapenv:Body></soapenv:Envelope>",
            r = op.response()
        )
    }
}

/// `<tag>text</tag>`, or nothing.
fn opt_el(tag: &str, text: Option<&str>) -> String {
    text.map_or(String::new(), |t| format!("<{tag}>{}</{tag}>", esc(t)))
}

/// A `metadata` element (`ctMetadata`), or nothing when there are no entries.
fn metadata(entries: &[backoffice::MapEntry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut out = String::from("<metadata>");
    for e in entries {
        out.push_str(&format!("<mapEntry><key>{}</key><value>{}</value></mapEntry>", esc(&e.key), esc(&e.value)));
    }
    out.push_str("</metadata>");
    out
}
