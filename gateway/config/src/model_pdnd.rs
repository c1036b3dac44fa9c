//! Configuration of varco as a PDND consumer: the ente's PDND client (`tenants[].pdnd`) and
//! the `anpr` adapter that reads ANPR for the ente's back-offices.

use crate::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The ente's client on PDND Interoperabilità: varco asks PDND for vouchers with it, signing
/// each client assertion with one of the ente's `keys` (the one registered on PDND).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PdndClientConfig {
    /// The client id PDND gave the ente's client (`iss` and `sub` of every assertion).
    pub client_id: String,
    /// The `kid` of the ente key registered on the client (one of `tenants[].keys`, RSA:
    /// PDND takes RS256 assertions only). Default: the first key.
    #[serde(default)]
    pub kid: Option<String>,
    /// PDND's token endpoint, e.g. `https://auth.uat.interop.pagopa.it/token.oauth2`.
    pub token_url: String,
    /// The `aud` of client assertions, as PDND's client page shows it, e.g.
    /// `auth.uat.interop.pagopa.it/client-assertion`.
    pub assertion_audience: String,
    /// The ente's purposes (finalità), by a name routes use: `name: purposeId`.
    #[serde(default)]
    pub purposes: BTreeMap<String, String>,
    /// The client id of the ente's API interop (M2M) client, whose vouchers carry no purpose:
    /// what PDND's own services (Signal Hub) take. The same `kid` signs its assertions
    /// (register the key on both clients). Default: none.
    #[serde(default)]
    pub api_client_id: Option<String>,
    /// A cached voucher is replaced this long before it expires. Default 60s.
    #[serde(default = "d_refresh_before")]
    pub refresh_before: Dur,
    /// Per call to the token endpoint. Default 10s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
}

fn d_refresh_before() -> Dur {
    Dur::secs(60)
}
fn d_timeout() -> Dur {
    Dur::secs(10)
}

fn is_url(s: &str) -> bool {
    s.parse::<http::Uri>().is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

impl PdndClientConfig {
    /// Pure checks: (field, message) pairs. `kids` are the ente's key ids.
    pub fn validate(&self, kids: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.client_id.trim().is_empty() || self.client_id.len() > 256 {
            out.push(("client_id".into(), "the ente's PDND client id: 1 to 256 characters".into()));
        }
        if !is_url(&self.token_url) {
            out.push(("token_url".into(), "an http(s) URL (PDND's token endpoint)".into()));
        }
        if self.assertion_audience.trim().is_empty() {
            out.push(("assertion_audience".into(), "the `aud` PDND expects in client assertions".into()));
        }
        if kids.is_empty() {
            out.push((String::new(), "a PDND client signs with the ente's key: add `tenants[].keys`".into()));
        } else if let Some(k) = &self.kid {
            if !kids.contains(&k.as_str()) {
                out.push(("kid".into(), format!("`{k}` is not one of the ente's `keys`")));
            }
        }
        if self.purposes.is_empty() && self.api_client_id.is_none() {
            out.push(("purposes".into(), "at least one purpose (`name: purposeId`), or an `api_client_id`".into()));
        }
        if self.api_client_id.as_ref().is_some_and(|c| c.trim().is_empty() || c.len() > 256) {
            out.push(("api_client_id".into(), "the API interop client's id: 1 to 256 characters".into()));
        }
        for (name, id) in &self.purposes {
            if id.trim().is_empty() {
                out.push((format!("purposes.{name}"), "the purposeId PDND gave the purpose".into()));
            }
        }
        if self.refresh_before.0 >= std::time::Duration::from_secs(3600) {
            out.push(("refresh_before".into(), "below 1h (vouchers live minutes)".into()));
        }
        if self.timeout.0.is_zero() {
            out.push(("timeout".into(), "above zero".into()));
        }
        out
    }
}

/// `to: {adapter: {kind: anpr, ...}}`: the back-office reads ANPR through varco, which adds
/// the voucher, INTEGRITY_REST_02 and AUDIT_REST_02 and checks ANPR's signed answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnprConfig {
    /// `GET …/residenza/{codice_fiscale}`: the C001 e-service (consultazione).
    #[serde(default)]
    pub residenza: Option<EserviceConfig>,
    /// `GET …/famiglia/{codice_fiscale}`: the C021 e-service (stato di famiglia).
    #[serde(default)]
    pub famiglia: Option<EserviceConfig>,
    /// `motivoRichiesta` when the request has no `motivo` (a file or protocol number).
    #[serde(default)]
    pub motivo: Option<String>,
    /// What AUDIT_REST_02 says of callers whose credential names no person (API keys):
    /// `userID` is the caller's name; these fill the rest.
    #[serde(default)]
    pub tracking: TrackingDefaults,
    /// The name of a tenant `issuers` entry whose JWKS holds ANPR's signing keys: every answer
    /// must carry a valid `Agid-JWT-Signature` over its `Digest`. Absent: answers are not
    /// checked (only for a test environment that does not sign).
    #[serde(default)]
    pub provider_keys: Option<String>,
    /// Per call to ANPR. Default 10s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    /// `Retry-After` (seconds) when ANPR or PDND cannot be reached. Default 30.
    #[serde(default = "d_retry_after")]
    pub retry_after_secs: u32,
}

/// One ANPR e-service as the ente's PDND agreement names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EserviceConfig {
    /// The e-service's base URL (`…/C001–servizioNotifica/v1`); varco posts to
    /// `<url>/anpr-service-e002`.
    pub url: String,
    /// The name of the purpose (in `tenants[].pdnd.purposes`) the calls are made under.
    pub purpose: String,
    /// The `aud` of the ModI JWTs, as the e-service's PDND descriptor gives it. Default: `url`.
    #[serde(default)]
    pub audience: Option<String>,
    /// `casoUso` sent when the request has no `caso_uso`. Default: the e-service's code
    /// (`C001`, `C021`).
    #[serde(default)]
    pub caso_uso: Option<String>,
    /// Send AUDIT_REST_02 (the tracking evidence, bound to a voucher of its own: no voucher
    /// is reused). Default true, as ANPR's descriptors require; false only for an e-service
    /// version without it.
    #[serde(default = "d_true")]
    pub audit: bool,
    /// Send one call at a time, so that `idOperazioneClient`s reach ANPR in increasing order
    /// (C001 refuses an id below the last one it got; concurrent calls could overtake one
    /// another). Default: true for `residenza` (C001), false for `famiglia` (C021, whose ids
    /// need only be unique).
    #[serde(default)]
    pub ordered: Option<bool>,
}

fn d_true() -> bool {
    true
}

/// AUDIT_REST_02 values for callers without a personal identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackingDefaults {
    /// `userLocation`: the workstation or office. Default `varco`.
    #[serde(default = "d_location")]
    pub user_location: String,
    /// `LoA` of how the caller authenticated to varco. Default `LoA2`.
    #[serde(default = "d_loa")]
    pub loa: String,
}

impl Default for TrackingDefaults {
    fn default() -> Self {
        Self { user_location: d_location(), loa: d_loa() }
    }
}

fn d_location() -> String {
    "varco".into()
}
fn d_loa() -> String {
    "LoA2".into()
}
fn d_retry_after() -> u32 {
    30
}

impl AnprConfig {
    /// Pure checks: (field, message) pairs. `purposes` are the ente's PDND purpose names,
    /// `None` when the ente has no PDND client.
    pub fn validate(&self, purposes: Option<Vec<&str>>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.residenza.is_none() && self.famiglia.is_none() {
            out.push((String::new(), "configure `residenza` (C001), `famiglia` (C021) or both".into()));
        }
        let Some(purposes) = purposes else {
            out.push((String::new(), "ANPR is reached through PDND: the ente needs `tenants[].pdnd`".into()));
            return out;
        };
        for (name, e) in [("residenza", &self.residenza), ("famiglia", &self.famiglia)] {
            let Some(e) = e else { continue };
            if !is_url(&e.url) {
                out.push((format!("{name}.url"), "an http(s) URL".into()));
            }
            if !purposes.contains(&e.purpose.as_str()) {
                out.push((format!("{name}.purpose"), format!("`{}` is not in `tenants[].pdnd.purposes`", e.purpose)));
            }
        }
        if self.tracking.user_location.trim().is_empty() || self.tracking.loa.trim().is_empty() {
            out.push(("tracking".into(), "`user_location` and `loa` must not be empty".into()));
        }
        if self.timeout.0.is_zero() {
            out.push(("timeout".into(), "above zero".into()));
        }
        if self.retry_after_secs == 0 || self.retry_after_secs > 3600 {
            out.push(("retry_after_secs".into(), "between 1 and 3600".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(yaml: &str) -> PdndClientConfig {
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_pdnd_client_needs_a_key_urls_and_purposes() {
        let ok = client("{client_id: c, token_url: 'https://auth.uat.interop.pagopa.it/token.oauth2', assertion_audience: a, purposes: {res: p-1}}");
        assert!(ok.validate(&["k"]).is_empty());
        let fields =
            |c: &PdndClientConfig, kids: &[&str]| c.validate(kids).into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        assert_eq!(fields(&ok, &[]), vec![""], "no key");
        let bad = client("{client_id: '', kid: nope, token_url: 'ftp://x', assertion_audience: ' ', timeout: 0s}");
        assert_eq!(
            fields(&bad, &["k"]),
            vec!["client_id", "token_url", "assertion_audience", "kid", "purposes", "timeout"]
        );
        let api_only =
            client("{client_id: c, api_client_id: m2m, token_url: 'http://p.example/t', assertion_audience: a}");
        assert!(api_only.validate(&["k"]).is_empty(), "an API interop client needs no purpose");
        assert!(serde_yaml_ng::from_str::<PdndClientConfig>(
            "{client_id: c, token_url: x, assertion_audience: a, colour: blue}"
        )
        .is_err());
    }

    #[test]
    fn anpr_needs_a_pdnd_client_and_known_purposes() {
        let a: AnprConfig = serde_yaml_ng::from_str(
            "{residenza: {url: 'https://anpr.example/C001', purpose: res}, retry_after_secs: 0}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(a.validate(None).iter().any(|(_, m)| m.contains("tenants[].pdnd")));
        let fields: Vec<String> = a.validate(Some(vec!["other"])).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["residenza.purpose", "retry_after_secs"]);
        let none: AnprConfig = serde_yaml_ng::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
        assert!(none.validate(Some(vec![])).iter().any(|(_, m)| m.contains("residenza")));
        assert!(a.residenza.as_ref().is_some_and(|e| e.audit), "AUDIT_REST_02 by default");
    }
}
