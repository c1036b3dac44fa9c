//! The back-office contract (`contracts/openapi/pagopa-backoffice.yaml`): debt positions by
//! IUV, and notices made on demand. Amounts are euro cents here, `\d+\.\d{2}` in SOAP.

use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use std::time::Duration;

/// A debt position as the back-office describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub status: PositionStatus,
    pub amount_cents: u64,
    /// `YYYY-MM-DD`.
    pub due_date: String,
    pub description: String,
    pub debtor: Debtor,
    pub transfers: Vec<Transfer>,
    /// Only in answers to a notice made on demand.
    #[serde(default)]
    pub notice_number: Option<String>,
    /// The office of the ente in charge (`officeName`).
    #[serde(default)]
    pub office_name: Option<String>,
    /// Until when the position is kept (`retentionDate`, an xsd:dateTime).
    #[serde(default)]
    pub retention_date: Option<String>,
    /// The last instalment of a plan (`lastPayment`).
    #[serde(default)]
    pub last_payment: Option<bool>,
    /// Key-value pairs for reconciliation (TARI/TEFA), up to 15 (`metadata`).
    #[serde(default)]
    pub metadata: Vec<MapEntry>,
}

/// One `metadata` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapEntry {
    pub key: String,
    pub value: String,
}

/// A digital revenue stamp to be paid instead of a transfer to an account
/// (`richiestaMarcaDaBollo`, paGetPaymentV2 only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// Base64 SHA-256 of the document the stamp is for (`hashDocumento`).
    pub document_hash: String,
    /// `tipoBollo`: `01`.
    pub kind: String,
    /// The payer's province of residence, two capitals (`provinciaResidenza`).
    pub province: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionStatus {
    Payable,
    Paid,
    Expired,
    Cancelled,
    /// A payment of it is being processed (`PAA_PAGAMENTO_IN_CORSO`).
    InProgress,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debtor {
    /// `F` (person) or `G` (legal entity).
    pub kind: String,
    pub fiscal_code: String,
    pub full_name: String,
    #[serde(default)]
    pub street_name: Option<String>,
    #[serde(default)]
    pub civic_number: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub province: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// 1 to 5.
    pub id: u8,
    pub amount_cents: u64,
    pub fiscal_code_pa: String,
    /// The creditor's name when it is not the ente (a secondary creditor's transfer).
    #[serde(default)]
    pub company_name: Option<String>,
    /// The account credited; a transfer has an `iban` or a `stamp`.
    #[serde(default)]
    pub iban: Option<String>,
    #[serde(default)]
    pub stamp: Option<Stamp>,
    pub remittance_information: String,
    /// Taxonomy code (`transferCategory`), e.g. `9/0101100IM/`.
    pub category: String,
    #[serde(default)]
    pub metadata: Vec<MapEntry>,
}

#[derive(Debug)]
pub enum Error {
    NotFound,
    Other(String),
}

/// `12345` → `123.45`.
pub fn amount(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// `123.45` → `12345`.
pub fn cents(amount: &str) -> Option<u64> {
    let (i, d) = amount.split_once('.')?;
    if d.len() != 2 {
        return None;
    }
    i.parse::<u64>().ok()?.checked_mul(100)?.checked_add(d.parse::<u64>().ok()?)
}

/// Poste Italiane's ABI (07601) in an Italian IBAN: a postal account.
pub fn is_postal(iban: &str) -> bool {
    iban.len() >= 10 && iban.starts_with("IT") && &iban[5..10] == "07601"
}

#[derive(Debug)]
pub struct Backoffice {
    base: String,
    timeout: Duration,
    client: varco_outbound::HttpsClient,
}

impl Backoffice {
    pub fn new(url: &str, timeout: Duration, client: varco_outbound::HttpsClient) -> Result<Self, String> {
        Ok(Self { base: url.trim_end_matches('/').to_owned(), timeout, client })
    }

    pub async fn position(&self, iuv: &str) -> Result<Position, Error> {
        let req = http::Request::get(format!("{}/debt-positions/{iuv}", self.base))
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Other(e.to_string()))?;
        self.send(req).await
    }

    pub async fn demand(&self, service: &str, subject: &str, data_b64: &str) -> Result<Position, Error> {
        let body = serde_json::json!({"id_servizio": service, "id_soggetto_servizio": subject, "dati_specifici_servizio": data_b64});
        let req = http::Request::post(format!("{}/payment-notices", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| Error::Other(e.to_string()))?;
        self.send(req).await
    }

    async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Position, Error> {
        // One attempt: the node retries a station's call itself, and a late answer is worse
        // than a fault within the node's own timeout.
        let policy = varco_outbound::Policy { max_body: 1 << 20, ..varco_outbound::Policy::once(self.timeout) };
        let reply = varco_outbound::exchange::attempt(&self.client, req, &policy).await.map_err(Error::Other)?;
        let body = reply.body;
        match reply.status {
            200 => {
                let p: Position =
                    serde_json::from_slice(&body).map_err(|e| Error::Other(format!("not a position: {e}")))?;
                if p.transfers.is_empty()
                    || p.transfers.len() > 5
                    || p.transfers.iter().map(|t| t.amount_cents).sum::<u64>() != p.amount_cents
                {
                    return Err(Error::Other("the position's 1 to 5 transfers must add up to its amount".into()));
                }
                if p.transfers.iter().any(|t| t.iban.is_some() == t.stamp.is_some()) {
                    return Err(Error::Other("each transfer has an `iban` or a `stamp`, not both".into()));
                }
                Ok(p)
            }
            404 => Err(Error::NotFound),
            s => Err(Error::Other(format!("answered {s}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts() {
        assert_eq!(super::amount(12345), "123.45");
        assert_eq!(super::amount(5), "0.05");
        assert_eq!(super::cents("123.45"), Some(12345));
        assert_eq!(super::cents("123.4"), None);
        assert!(super::is_postal("IT60X0760111101000000123456"));
        assert!(!super::is_postal("IT60X0542811101000000123456"));
    }
}
