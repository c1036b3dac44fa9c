//! Caller-authentication configuration: bearer-JWT access and token issuers.

use crate::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Conditions on a bearer JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAccess {
    /// Names of the tenant's `issuers` whose tokens the route admits.
    pub issuers: Vec<String>,
    /// Scopes the token must all carry (`scope`, space-separated, or `scp`). Default none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// PDND: `purposeId`s admitted (allow-list). Default: any.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// `client_id`s admitted (PDND consumers, OAuth clients). Default: any.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Least SPID/CIE level of assurance (`acr` …/SpidL1, L2, L3): 1, 2 or 3. Default: none.
    #[serde(default)]
    pub acr_min: Option<u8>,
    /// Pass the caller's `Authorization` header on to the back-office. Default false: the
    /// back-office gets the verified identity in `X-Varco-*` headers instead.
    #[serde(default)]
    pub forward_token: bool,
}

/// A token issuer the tenant trusts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Accepted `aud` values; the token's `aud` must contain one.
    pub audiences: Vec<String>,
    /// Where its public keys are published (JWKS); refreshed every `refresh` and on an
    /// unknown `kid` (at most every 10 s).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or a JWKS file (static keys).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted signature algorithms. Default `[RS256, ES256]`. Never `none` or HS*.
    #[serde(default = "d_algs")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`. Default 30s.
    #[serde(default = "d_leeway")]
    pub leeway: Dur,
    /// Required JOSE `typ` (e.g. `at+jwt`). Default: not checked.
    #[serde(default)]
    pub typ: Option<String>,
    /// Longest token accepted, in bytes. Default 8192.
    #[serde(default = "d_token_bytes")]
    pub max_token_bytes: usize,
    /// JWKS refresh interval. Default 5m.
    #[serde(default = "d_refresh")]
    pub refresh: Dur,
}

fn d_algs() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn d_leeway() -> Dur {
    Dur::secs(30)
}
fn d_token_bytes() -> usize {
    8192
}
fn d_refresh() -> Dur {
    Dur::secs(300)
}

/// Conditions on an API key (for app developers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyAccess {
    /// The header carrying the key. Default `X-Api-Key`.
    #[serde(default = "d_api_key_header")]
    pub header: String,
}

fn d_api_key_header() -> String {
    "X-Api-Key".into()
}

/// An API key the tenant issued (made with `varco apikey`): only its SHA-256 is stored, so the
/// configuration holds no secret. Removing it (and reloading) revokes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds it (an app, a developer); forwarded as `X-Varco-Client-Id`.
    pub name: String,
    /// `sha256:<64 hex>` of the key.
    pub hash: String,
    /// Route names it may call. Empty: every route that admits API keys.
    #[serde(default)]
    pub routes: Vec<String>,
}

/// A short-lived JWT varco signs for the back-office, carrying the verified identity; the
/// back-office checks it with the keys at `/.well-known/jwks.json` of its ente.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityTokenConfig {
    /// PKCS#8 PEM file of varco's P-256 signing key (ES256). A secret: readable by varco only.
    pub key_file: PathBuf,
    /// The `kid` published with the key. Default `varco-1`.
    #[serde(default = "d_kid")]
    pub kid: String,
    /// Lifetime of each token. Default 60s.
    #[serde(default = "d_id_ttl")]
    pub ttl: Dur,
    /// Header carrying it. Default `X-Varco-Identity`.
    #[serde(default = "d_id_header")]
    pub header: String,
}

fn d_kid() -> String {
    "varco-1".into()
}
fn d_id_ttl() -> Dur {
    Dur::secs(60)
}
fn d_id_header() -> String {
    "X-Varco-Identity".into()
}
