//! Configuration of the SIUSS e-service: the ente's side of INPS's social assistance registry
//! (Casellario dell'Assistenza). `tenants[].siuss` says who the ente is to INPS; routes with
//! `kind: siuss` serve INPS (`side: inps`: `/flussi`, `/esiti`, `/status`) or the ente's
//! social-services back-office (`side: back_office`: `/prestazioni`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `tenants[].siuss`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiussConfig {
    /// The ente's Belfiore code (`codice_ente`, `Ente/@Codice`, the first part of `id_flusso`),
    /// e.g. `E783`.
    pub codice_ente: String,
    /// `denominazione_ente` (`Ente/@Denominazione`), e.g. `Comune di Macerata`.
    pub denominazione: String,
    /// `Ente/@Indirizzo` of the flows. Default: the Belfiore code.
    #[serde(default)]
    pub indirizzo: Option<String>,
    /// `Ente/@CFOperatore`: the codice fiscale of the officer responsible for the flows, when
    /// a submission names none.
    pub cf_operatore: String,
    /// Where the ente's flows and outcomes are kept (one folder per ente below it, readable by
    /// varco only). Default `varco-data/siuss`.
    #[serde(default = "d_dir")]
    pub dir: PathBuf,
    /// Flows INPS has given an outcome for are removed this many days after they were made
    /// (checked at start and daily). Default: kept.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

fn d_dir() -> PathBuf {
    PathBuf::from("varco-data/siuss")
}

/// `to: {adapter: {kind: siuss, side: ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiussAdapterConfig {
    /// Which API the route serves.
    pub side: SiussSide,
}

/// The two APIs of the SIUSS e-service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiussSide {
    /// INPS's polling contract (`GET /flussi`, `POST /esiti`, `GET /status`), for INPS's
    /// PDND voucher.
    Inps,
    /// The back-office's API (`POST /prestazioni`, `GET /prestazioni/{id_flusso}`).
    BackOffice,
}

impl SiussConfig {
    /// Pure checks: (field, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let b = self.codice_ente.as_bytes();
        if !(b.len() == 4 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit)) {
            out.push(("codice_ente".into(), "a Belfiore code: a capital letter and three digits (e.g. E783)".into()));
        }
        if self.denominazione.trim().is_empty() || self.denominazione.len() > 256 {
            out.push(("denominazione".into(), "1 to 256 characters".into()));
        }
        let cf = self.cf_operatore.as_bytes();
        if cf.len() != 16 || !cf.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            out.push(("cf_operatore".into(), "a codice fiscale: 16 capital letters and digits".into()));
        }
        if self.retention_days == Some(0) {
            out.push(("retention_days".into(), "at least 1 (or leave it out to keep every flow)".into()));
        }
        out
    }
}
