//! The notice helpers on the station's route (`GET`): a valid notice number from a base, and
//! what a printed pagoPA notice needs, with its QR code payload.

use crate::{backoffice, notice, PagopaAdapter};
use varco_core::{AdapterResponse, Problem};

impl PagopaAdapter {
    /// `GET …/notice-number?base=<13 digits>`: a valid notice number and IUV of the ente;
    /// `GET …/payment-notices/{notice number}`: what a printed pagoPA notice needs, with the
    /// QR code payload `PAGOPA|002|<notice>|<fiscal code>|<cents>`.
    pub(super) async fn helpers(&self, path: &str, query: Option<&str>) -> Result<AdapterResponse, Problem> {
        use varco_core::ProblemKind;
        let json =
            |v: serde_json::Value| Ok(AdapterResponse::json(200, "application/json", v.to_string().into_bytes()));
        if path.ends_with("/notice-number") {
            let base = query
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("base=")))
                .filter(|b| b.len() == 13 && b.bytes().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| {
                    Problem::new(ProblemKind::BadRequest, "give `base`: the 13-digit IUV base the back-office assigns")
                })?;
            let n = notice::notice_number(&self.cfg.segregation_code, base)
                .ok_or_else(|| Problem::new(ProblemKind::BadRequest, "invalid base"))?;
            return json(serde_json::json!({"notice_number": n, "iuv": &n[1..], "fiscal_code": self.cfg.id_pa}));
        }
        if let Some((_, n)) = path.rsplit_once("/payment-notices/") {
            let iuv = notice::iuv_of(n, &self.cfg.segregation_code).map_err(|_| {
                Problem::new(
                    ProblemKind::BadRequest,
                    "not a notice number of this ente (aux digit 3, its segregation code, mod-93 check digits)",
                )
            })?;
            let p = match self.backoffice.position(&iuv).await {
                Ok(p) => p,
                Err(backoffice::Error::NotFound) => {
                    return Err(Problem::new(ProblemKind::NotFound, "the back-office does not know this notice"))
                }
                Err(backoffice::Error::Other(e)) => {
                    tracing::warn!(error = %e, "pagoPA: back-office call failed");
                    return Err(
                        Problem::new(ProblemKind::BadGateway, "the back-office could not answer").retry_after(5)
                    );
                }
            };
            return json(serde_json::json!({
                "notice_number": n, "iuv": iuv, "creditor": {"fiscal_code": self.cfg.id_pa, "name": self.cfg.company_name},
                "amount": backoffice::amount(p.amount_cents), "amount_cents": p.amount_cents, "due_date": p.due_date,
                "description": p.description, "status": p.status,
                "debtor": {"fiscal_code": p.debtor.fiscal_code, "full_name": p.debtor.full_name},
                "qr_code": format!("PAGOPA|002|{n}|{}|{}", self.cfg.id_pa, p.amount_cents),
            }));
        }
        Err(Problem::new(
            ProblemKind::NoRoute,
            "GET …/notice-number?base= or …/payment-notices/{notice number}; the station itself takes POST",
        ))
    }
}
