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
    /// PDND: the voucher's `eserviceId` must be this one. Default: not checked.
    #[serde(default)]
    pub eservice_id: Option<String>,
    /// PDND: the voucher's `producerId` must be this one. Default: not checked.
    #[serde(default)]
    pub producer_id: Option<String>,
    /// Refuse a second use of the same bearer token `jti` while it is valid (tokens without
    /// `jti` are refused). Default false: PDND vouchers are meant to be reused until they expire.
    #[serde(default)]
    pub unique_jti: bool,
    /// ModI message-level patterns on top of the bearer token. Default: none.
    #[serde(default)]
    pub modi: Option<ModiAccess>,
}

/// ModI INTEGRITY_REST and AUDIT_REST patterns of a route (AgID guidelines). A route with
/// `modi` is store-and-forward: varco reads the whole body (up to `max_body_bytes`), checks
/// it, then calls the back-office.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModiAccess {
    /// `INTEGRITY_REST_01` (signing key in the `x5c` chain, anchored in `trust_anchors`) or
    /// `INTEGRITY_REST_02` (signing key by `kid` from the JWKS of `keys_issuer`): requires
    /// `Digest` and `Agid-JWT-Signature` on every request. Default: none.
    #[serde(default)]
    pub integrity: Option<IntegrityPattern>,
    /// `AUDIT_REST_01` or `AUDIT_REST_02` (bound to the voucher's `digest` claim): requires
    /// `Agid-JWT-TrackingEvidence`, whose user data is recorded in the audit trail. Default: none.
    #[serde(default)]
    pub audit: Option<AuditPattern>,
    /// The `aud` the ModI JWTs must carry (the e-service's URL as registered on PDND).
    pub audience: String,
    /// For `*_02` patterns: the tenant issuer whose JWKS holds the consumers' keys (by `kid`).
    #[serde(default)]
    pub keys_issuer: Option<String>,
    /// For `INTEGRITY_REST_01`: PEM file of the CA certificates that may issue signing
    /// certificates.
    #[serde(default)]
    pub trust_anchors: Option<PathBuf>,
    /// Accepted signature algorithms of the ModI JWTs. Default `[RS256, ES256]`.
    #[serde(default = "d_modi_algs")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf`, `iat`. Default 30s.
    #[serde(default = "d_leeway")]
    pub leeway: Dur,
    /// Sign every response with `Digest` and `Agid-JWT-Signature` (varco's key from
    /// `server.identity_token`, published at the ente's `/.well-known/jwks.json`). Default false.
    #[serde(default)]
    pub sign_responses: bool,
}

fn d_modi_algs() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

/// The ModI integrity pattern of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IntegrityPattern {
    #[serde(rename = "INTEGRITY_REST_01")]
    Rest01,
    #[serde(rename = "INTEGRITY_REST_02")]
    Rest02,
}

/// The ModI audit pattern of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuditPattern {
    #[serde(rename = "AUDIT_REST_01")]
    Rest01,
    #[serde(rename = "AUDIT_REST_02")]
    Rest02,
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
