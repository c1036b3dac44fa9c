//! Configuration of the `pagopa` adapter: the ente as a pagoPA station (paForNode SOAP).

use crate::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `to: {adapter: {kind: pagopa, ...}}`: this route is the ente's paForNode station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagopaConfig {
    /// The ente's fiscal code (11 digits): `idPA` and `qrCode.fiscalCode` must equal it.
    pub id_pa: String,
    /// The intermediary (`idBrokerPA`) registered for the station.
    pub id_broker_pa: String,
    /// The station (`idStation`).
    pub id_station: String,
    /// Aux digit of the ente's notice numbers. Only 3 (IUV with segregation code) is supported.
    #[serde(default = "d_aux")]
    pub aux_digit: u8,
    /// The ente's segregation code (2 digits, the first two of every IUV).
    pub segregation_code: String,
    /// `companyName` in answers (the ente's name).
    pub company_name: String,
    /// The back-office that holds the debt positions: `GET <url>/debt-positions/{iuv}`
    /// (contracts/openapi/pagopa-backoffice.yaml).
    pub backoffice_url: String,
    /// Per back-office call. Default 5s.
    #[serde(default = "d_timeout")]
    pub backoffice_timeout: Dur,
    /// Where received receipt ids are kept (duplicates answer `PAA_RECEIPT_DUPLICATA`).
    /// Default `varco-data/pagopa`.
    #[serde(default = "d_dir")]
    pub receipts_dir: PathBuf,
    /// The events a receipt is published as: `v2` (`it.varco.tributi.pagamento.ricevuto.v2`,
    /// the whole receipt) and `v1` (the summary, kept for existing subscriptions). Default
    /// both; `[v2]` once no subscription reads v1.
    #[serde(default = "d_receipt_events")]
    pub receipt_events: Vec<ReceiptEvent>,
    /// Look a receipt's position up in the back-office before accepting it: unknown →
    /// `PAA_PAGAMENTO_SCONOSCIUTO`, cancelled → `PAA_PAGAMENTO_ANNULLATO` (as pagoPA's own GPD
    /// station answers); the back-office unreachable → `PAA_SYSTEM_ERROR` (the node retries).
    /// Not for a secondary creditor's receipts (the IUV is another ente's). Default false.
    #[serde(default)]
    pub check_receipts: bool,
}

/// A version of the receipt event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptEvent {
    /// `it.varco.tributi.pagamento.ricevuto.v1`.
    V1,
    /// `it.varco.tributi.pagamento.ricevuto.v2`.
    V2,
}

fn d_receipt_events() -> Vec<ReceiptEvent> {
    vec![ReceiptEvent::V1, ReceiptEvent::V2]
}

fn d_aux() -> u8 {
    3
}
fn d_timeout() -> Dur {
    Dur::secs(5)
}
fn d_dir() -> PathBuf {
    PathBuf::from("varco-data/pagopa")
}

impl PagopaConfig {
    /// Pure checks: (field, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&self.id_pa, 11) {
            out.push(("id_pa".into(), "the ente's fiscal code: 11 digits".into()));
        }
        for (f, v) in [("id_broker_pa", &self.id_broker_pa), ("id_station", &self.id_station)] {
            if v.is_empty() || v.len() > 35 {
                out.push((f.into(), "1 to 35 characters".into()));
            }
        }
        if self.aux_digit != 3 {
            out.push(("aux_digit".into(), "only aux digit 3 (IUV with segregation code) is supported".into()));
        }
        if !digits(&self.segregation_code, 2) {
            out.push(("segregation_code".into(), "2 digits".into()));
        }
        if self.company_name.is_empty() || self.company_name.chars().count() > 140 {
            out.push(("company_name".into(), "1 to 140 characters".into()));
        }
        let u = &self.backoffice_url;
        if !(u.starts_with("http://") || u.starts_with("https://")) || u.parse::<http::Uri>().is_err() {
            out.push(("backoffice_url".into(), "an http(s) URL".into()));
        }
        if self.receipt_events.is_empty() {
            out.push(("receipt_events".into(), "at least one of v1, v2".into()));
        }
        out
    }
}

/// `to: {adapter: {kind: gpd, ...}}`: back-offices manage the ente's debt positions on pagoPA's
/// GPD through varco, which holds the subscription key and the ente's fiscal code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpdConfig {
    /// The ente's fiscal code (`organizationfiscalcode`): back-offices cannot choose another.
    pub organization_fiscal_code: String,
    /// GPD base URL, e.g. `https://api.platform.pagopa.it/gpd/debt-positions-service/v1`.
    pub url: String,
    /// `Ocp-Apim-Subscription-Key`.
    pub subscription_key: crate::SecretRef,
    /// Per attempt. Default 10s.
    #[serde(default = "d_gpd_timeout")]
    pub timeout: Dur,
    /// Extra attempts after a timeout, a refused connection, 429 or 5xx. Default 2.
    #[serde(default = "d_gpd_retries")]
    pub retries: u32,
}

fn d_gpd_timeout() -> Dur {
    Dur::secs(10)
}
fn d_gpd_retries() -> u32 {
    2
}

impl GpdConfig {
    /// Pure checks: (field, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let ofc = &self.organization_fiscal_code;
        if ofc.len() != 11 || !ofc.bytes().all(|b| b.is_ascii_digit()) {
            out.push(("organization_fiscal_code".into(), "11 digits".into()));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://"))
            || self.url.parse::<http::Uri>().is_err()
        {
            out.push(("url".into(), "an http(s) URL".into()));
        }
        if self.retries > 5 {
            out.push(("retries".into(), "at most 5".into()));
        }
        out
    }
}
