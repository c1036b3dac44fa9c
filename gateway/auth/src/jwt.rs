//! Bearer JWT verification (RFC 8725 hardening) with keys from the issuer's JWKS, and the
//! verified identity varco forwards to back-offices.
//!
//! - The algorithm comes from the issuer's allow-list, never from the token alone: `none`,
//!   HS* and a token algorithm outside the list are refused; the key must match it.
//! - Keys are looked up by `kid` in the configured JWKS only: `jku`, `x5u` or `jwk` in the
//!   token header are never followed.
//! - `iss`, `aud`, `exp`, `nbf` are checked with a small leeway; `typ` when configured.
//! - Verified tokens are cached by SHA-256 until they expire.

use crate::error::{AuthError, Reason};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use varco_config::IssuerConfig;
use varco_core::fetch::Fetch;
use varco_core::Identity;

const CACHE_MAX: usize = 50_000;
const UNKNOWN_KID_REFRESH_MS: u64 = 10_000;

/// A verified token in the cache: the token itself, compared in full on every hit (the key
/// is a fast, unkeyed hash), and who it is.
struct Cached {
    token: Box<[u8]>,
    id: Arc<Identity>,
}

/// FxHash over 8-byte words: a few instructions per word, where SHA-256 of a token cost ~19k
/// instructions per request. Collisions only cost a cache miss (hits compare the token).
fn token_key(token: &[u8]) -> u64 {
    let mut h: u64 = 0;
    let mut chunks = token.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// A token issuer with its cached keys.
pub struct Issuer {
    pub name: String,
    pub cfg: IssuerConfig,
    pub tenant: String,
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<JwkSet>,
    last_fetch_ms: AtomicU64,
    /// When the keys in use were fetched (0: never; static keys are not fetched).
    fetched_ms: AtomicU64,
    pub up: AtomicBool,
    verified: DashMap<u64, Cached, KeyIsHash>,
    /// The `jwks_file` as read when built: a reload that finds it changed builds a new issuer.
    file: Option<Vec<u8>>,
}

/// The cache key is already a hash ([`token_key`]): use it as is instead of SipHashing it
/// again. Only verified tokens get in, so nobody can flood the map with chosen collisions.
#[derive(Clone, Default)]
struct KeyIsHash;

impl std::hash::BuildHasher for KeyIsHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else still gets a usable value.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("name", &self.name).field("issuer", &self.cfg.issuer).finish()
    }
}

fn invalid(detail: impl Into<String>, realm: &str) -> AuthError {
    let detail = detail.into();
    let mut p = AuthError::new(Reason::TokenInvalid, detail.clone());
    let safe: String = detail.chars().filter(|c| *c != '"' && *c != '\\').collect();
    if let Ok(v) = http::HeaderValue::from_str(&format!(
        "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{safe}\""
    )) {
        p.challenge = Some(v);
    }
    p
}

fn read_jwks_file(f: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(f).map_err(|e| format!("cannot read `{}`: {e}", f.display()))
}

impl Issuer {
    /// Builds the issuer; a `jwks_file` is read now (I/O at build time, not per request).
    pub fn new(tenant: &str, name: &str, cfg: &IssuerConfig) -> Result<Self, String> {
        let algorithms = cfg.algorithms.iter().filter_map(|a| a.parse::<Algorithm>().ok()).collect();
        let file = cfg.jwks_file.as_ref().map(|f| read_jwks_file(f)).transpose()?;
        let keys = match (&cfg.jwks_file, &file) {
            (Some(f), Some(text)) => {
                serde_json::from_slice(text).map_err(|e| format!("`{}` is not a JWKS: {e}", f.display()))?
            }
            _ => JwkSet { keys: Vec::new() },
        };
        Ok(Self {
            name: name.to_owned(),
            cfg: cfg.clone(),
            tenant: tenant.to_owned(),
            algorithms,
            keys: ArcSwap::from_pointee(keys),
            last_fetch_ms: AtomicU64::new(0),
            fetched_ms: AtomicU64::new(0),
            up: AtomicBool::new(cfg.jwks_file.is_some()),
            verified: DashMap::with_hasher(KeyIsHash),
            file,
        })
    }

    /// How old the fetched keys in use are; `None` for static keys or before the first fetch.
    pub fn keys_age(&self) -> Option<Duration> {
        let at = self.fetched_ms.load(Relaxed);
        (self.cfg.jwks_url.is_some() && at > 0).then(|| Duration::from_millis(now_ms().saturating_sub(at)))
    }

    /// Fetches the JWKS again (no-op for static keys). Keeps the old keys on failure.
    pub async fn refresh(&self, fetch: &dyn Fetch) {
        let Some(url) = &self.cfg.jwks_url else { return };
        self.last_fetch_ms.store(now_ms(), Relaxed);
        let res = fetch
            .get(url, Duration::from_secs(3))
            .await
            .map_err(|e| e.0)
            .and_then(|body| serde_json::from_slice::<JwkSet>(&body).map_err(|e| format!("not a JWKS: {e}")));
        match res {
            Ok(set) => {
                self.keys.store(Arc::new(set));
                self.fetched_ms.store(now_ms(), Relaxed);
                if !self.up.swap(true, Relaxed) {
                    tracing::info!(tenant = %self.tenant, issuer = %self.name, "JWKS fetched");
                }
            }
            Err(e) => {
                if self.up.swap(false, Relaxed) || self.keys.load().keys.is_empty() {
                    tracing::warn!(tenant = %self.tenant, issuer = %self.name, error = %e, "JWKS unreachable; keeping the cached keys");
                }
            }
        }
    }

    pub fn refresh_due(&self) -> bool {
        self.cfg.jwks_url.is_some()
            && now_ms().saturating_sub(self.last_fetch_ms.load(Relaxed)) >= self.cfg.refresh.0.as_millis() as u64
    }

    fn key_for(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.load();
        let jwk = match kid {
            Some(k) => keys.find(k),
            // Without a kid only an unambiguous single key may be used.
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }?;
        DecodingKey::from_jwk(jwk).ok()
    }

    /// The key of `kid`; an unknown `kid` fetches the JWKS again (at most every 10 s), as keys rotate.
    pub async fn key_refreshing(&self, kid: Option<&str>, fetch: &dyn Fetch) -> Option<DecodingKey> {
        if let Some(k) = self.key_for(kid) {
            return Some(k);
        }
        if self.cfg.jwks_url.is_some()
            && now_ms().saturating_sub(self.last_fetch_ms.load(Relaxed)) >= UNKNOWN_KID_REFRESH_MS
        {
            self.refresh(fetch).await;
        }
        self.key_for(kid)
    }

    /// Verifies a compact JWS; the identity or a 401 problem saying which check failed.
    /// The identity of a token this issuer verified before and that has not expired.
    pub fn cached(&self, token: &[u8]) -> Option<Arc<Identity>> {
        let c = self.verified.get(&token_key(token))?;
        (&*c.token == token && c.id.exp > now_s()).then(|| c.id.clone())
    }

    /// Verifies a token (from the cache when it can) and caches the result.
    pub async fn verify(&self, token: &str, fetch: &dyn Fetch, realm: &str) -> Result<Arc<Identity>, AuthError> {
        if let Some(id) = self.cached(token.as_bytes()) {
            return Ok(id);
        }
        if self.cfg.jwks_url.is_some() {
            // An unknown kid may be a rotated key: fetch again, at most every 10 s.
            let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
            if self.key_for(kid.as_deref()).is_none()
                && now_ms().saturating_sub(self.last_fetch_ms.load(Relaxed)) >= UNKNOWN_KID_REFRESH_MS
            {
                self.refresh(fetch).await;
            }
        }
        let id = Arc::new(self.verify_uncached(token, realm)?);
        if self.verified.len() >= CACHE_MAX {
            self.verified.clear();
        }
        self.verified.insert(token_key(token.as_bytes()), Cached { token: token.as_bytes().into(), id: id.clone() });
        Ok(id)
    }

    /// Every check on one token with the keys at hand: no cache, no fetching.
    pub fn verify_uncached(&self, token: &str, realm: &str) -> Result<Identity, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("malformed token header: {e}"), realm))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(invalid(
                format!("algorithm {:?} is not accepted for issuer `{}`", header.alg, self.name),
                realm,
            ));
        }
        if let Some(want) = &self.cfg.typ {
            if !header.typ.as_deref().is_some_and(|t| crate::jose::typ_is(t, want)) {
                return Err(invalid(format!("token typ must be `{want}`"), realm));
            }
        }
        crate::jose::check_crit(token).map_err(|e| invalid(e, realm))?;
        let kid = header.kid.as_deref();
        if kid.is_some_and(|k| k.len() > 256) {
            return Err(invalid("kid too long", realm));
        }
        let key = self
            .key_for(kid)
            .ok_or_else(|| invalid(format!("no key of issuer `{}` matches the token's kid", self.name), realm))?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.cfg.leeway.0.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&self.cfg.audiences);
        v.required_spec_claims =
            HashSet::from(["exp".to_owned(), "iss".to_owned(), "aud".to_owned(), "sub".to_owned()]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "the token has expired".to_owned(),
                K::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                K::InvalidAudience => "the token is not meant for this service (aud)".to_owned(),
                K::InvalidIssuer => "the token comes from another issuer (iss)".to_owned(),
                K::InvalidSignature => "the signature does not verify".to_owned(),
                K::InvalidAlgorithm => "the key does not fit the token's algorithm".to_owned(),
                K::MissingRequiredClaim(c) => format!("the token lacks the `{c}` claim"),
                other => format!("invalid token: {other:?}"),
            };
            invalid(why, realm)
        })?;
        let c = &data.claims;
        // A token from the future (and no `nbf` to say when it starts) is a clock gone wrong or a
        // forgery made to outlive its keys: refused like `nbf` in the future.
        if c.get("iat").and_then(|v| v.as_u64()).is_some_and(|iat| iat > now_s() + self.cfg.leeway.0.as_secs()) {
            return Err(invalid("the token was issued in the future (iat)", realm));
        }
        let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let scopes = match (c.get("scope"), c.get("scp")) {
            (Some(serde_json::Value::String(s)), _) | (None, Some(serde_json::Value::String(s))) => {
                s.split_whitespace().map(str::to_owned).collect()
            }
            (_, Some(serde_json::Value::Array(a))) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        let fiscal_code = varco_core::identity::fiscal_code_of(s);
        let mut id = Identity {
            issuer: self.name.clone(),
            subject: s("sub").unwrap_or_default(),
            client_id: s("client_id").or_else(|| s("azp")),
            scopes,
            acr: s("acr"),
            fiscal_code,
            purpose_id: s("purposeId"),
            eservice_id: s("eserviceId"),
            producer_id: s("producerId"),
            voucher_digest: c
                .get("digest")
                .filter(|d| d.get("alg").and_then(|a| a.as_str()).is_some_and(|a| a.eq_ignore_ascii_case("SHA256")))
                .and_then(|d| d.get("value"))
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            jti: s("jti"),
            exp: c.get("exp").and_then(|v| v.as_u64()).unwrap_or(0),
            ..Identity::default()
        };
        id.headers = id.header_list(&self.tenant);
        Ok(id)
    }

    pub fn evict_expired(&self) {
        let now = now_s();
        self.verified.retain(|_, c| c.id.exp > now);
    }
}

/// Verifies the bearer token against the route's issuers and checks its scopes. The caller's
/// own identity headers were stripped by hygiene; the verified identity's headers, without the
/// token unless the route forwards it, go upstream (`upstream_request_filter`).
pub async fn authenticate(
    fetch: &dyn Fetch,
    headers: &http::HeaderMap,
    issuers: &[Arc<Issuer>],
    policy: &varco_config::JwtAccess,
    tenant: &str,
    replay: &crate::jti::ReplayGuard,
) -> Result<Arc<Identity>, AuthError> {
    let challenge = |p: AuthError| {
        let mut p = p;
        if p.challenge.is_none() {
            if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer realm=\"{tenant}\"")) {
                p.challenge = Some(v);
            }
        }
        p
    };
    let auth = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        challenge(AuthError::new(Reason::TokenMissing, "this route needs `Authorization: Bearer <token>`"))
    })?;
    let token = bearer_token(auth.as_bytes())
        .ok_or_else(|| challenge(AuthError::new(Reason::TokenInvalid, "the credential is not a Bearer token")))?;
    let max = issuers.iter().map(|i| i.cfg.max_token_bytes).max().unwrap_or(8192);
    if token.len() > max {
        return Err(challenge(AuthError::new(Reason::TokenInvalid, format!("the token is longer than {max} bytes"))));
    }
    // The hot path: a token verified before is known by its bytes, no parsing needed.
    let id = match issuers.iter().find_map(|i| i.cached(token)) {
        Some(id) => id,
        None => {
            let token = std::str::from_utf8(token)
                .ok()
                .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| challenge(AuthError::new(Reason::TokenInvalid, "the token is not printable text")))?;
            // Pick the issuer by the (not yet trusted) `iss`; the signature check decides.
            let issuer = if issuers.len() == 1 {
                &issuers[0]
            } else {
                let iss = peek_iss(token);
                issuers.iter().find(|i| iss.as_deref() == Some(i.cfg.issuer.as_str())).ok_or_else(|| {
                    challenge(AuthError::new(
                        Reason::TokenInvalid,
                        "the token comes from an issuer this route does not accept",
                    ))
                })?
            };
            issuer.verify(token, fetch, tenant).await?
        }
    };
    check_policy(&id, policy)?;
    if policy.unique_jti {
        let jti = id.jti.as_deref().ok_or_else(|| {
            challenge(AuthError::new(Reason::TokenInvalid, "this route needs single-use tokens with a `jti`"))
        })?;
        // The mark outlives the token's acceptance, leeway included.
        let leeway = issuers.iter().map(|i| i.cfg.leeway.0.as_secs()).max().unwrap_or(0);
        if !replay.first_use(&format!("{tenant}/bearer/{}", id.issuer), jti, id.exp.saturating_add(leeway)).await {
            // A 401 always says how to authenticate (RFC 9110 §11.6.1): here, with a new token.
            let mut e = invalid("this token (`jti`) was already used on this ente", tenant);
            e.reason = Reason::TokenReplayed;
            return Err(e);
        }
    }
    if let Some(missing) = policy.scopes.iter().find(|s| !id.scopes.contains(s)) {
        return Err(AuthError::new(
            Reason::Forbidden,
            format!("the token lacks the scope `{missing}` this route requires"),
        ));
    }
    Ok(id)
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 §2.1: the scheme is
/// case-insensitive, then one or more spaces); `None` for other schemes or an empty token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii()).filter(|t| !t.is_empty())
}

/// The route's conditions beyond the signature: PDND purposes, clients, SPID/CIE level.
pub fn check_policy(id: &Identity, policy: &varco_config::JwtAccess) -> Result<(), AuthError> {
    let deny = |d: String| Err(AuthError::new(Reason::Forbidden, d));
    if !policy.purposes.is_empty() && !id.purpose_id.as_ref().is_some_and(|p| policy.purposes.contains(p)) {
        return deny("the token's purposeId is not admitted on this e-service".to_owned());
    }
    if !policy.clients.is_empty() && !id.client_id.as_ref().is_some_and(|c| policy.clients.contains(c)) {
        return deny("the token's client_id is not admitted on this route".to_owned());
    }
    if policy.eservice_id.as_ref().is_some_and(|e| id.eservice_id.as_ref() != Some(e)) {
        return deny("the voucher is for another e-service (eserviceId)".to_owned());
    }
    if policy.producer_id.as_ref().is_some_and(|e| id.producer_id.as_ref() != Some(e)) {
        return deny("the voucher names another producer (producerId)".to_owned());
    }
    if let Some(min) = policy.acr_min {
        if acr_level(id.acr.as_deref()) < min {
            return deny(format!("this route needs SPID/CIE level {min} or higher (acr)"));
        }
    }
    Ok(())
}

/// SPID/CIE level of an `acr` value (`https://www.spid.gov.it/SpidL2` → 2); 0 when unknown.
pub fn acr_level(acr: Option<&str>) -> u8 {
    acr.and_then(|a| a.rsplit_once("SpidL"))
        .and_then(|(_, l)| l.parse::<u8>().ok())
        .filter(|l| (1..=3).contains(l))
        .unwrap_or(0)
}

/// The `iss` of a token, read without verifying it (only to choose which issuer verifies).
pub fn peek_iss(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Issuers by (tenant, name, definition), shared across reloads so cached keys survive.
#[derive(Debug, Default)]
pub struct IssuerRegistry {
    map: parking_lot::Mutex<std::collections::HashMap<(String, String, IssuerConfig), Arc<Issuer>>>,
}

impl IssuerRegistry {
    pub fn get(&self, tenant: &str, name: &str, cfg: &IssuerConfig) -> Result<Arc<Issuer>, String> {
        let mut map = self.map.lock();
        let key = (tenant.to_owned(), name.to_owned(), cfg.clone());
        if let Some(i) = map.get(&key) {
            // A `jwks_file` is read again at every build (a reload): an operator replacing a
            // compromised key gets a new issuer, whose empty cache forgets every token the
            // old keys verified. A file that cannot be read fails the reload.
            let unchanged = match &cfg.jwks_file {
                Some(f) => i.file.as_deref() == Some(read_jwks_file(f)?.as_slice()),
                None => true,
            };
            if unchanged {
                return Ok(i.clone());
            }
        }
        let i = Arc::new(Issuer::new(tenant, name, cfg)?);
        map.insert(key, i.clone());
        Ok(i)
    }

    pub fn all(&self) -> Vec<Arc<Issuer>> {
        let mut map = self.map.lock();
        map.retain(|_, i| Arc::strong_count(i) > 1);
        map.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn acr_levels() {
        assert_eq!(super::acr_level(Some("https://www.spid.gov.it/SpidL2")), 2);
        assert_eq!(super::acr_level(Some("https://www.spid.gov.it/SpidL3")), 3);
        assert_eq!(super::acr_level(Some("https://www.spid.gov.it/SpidL9")), 0);
        assert_eq!(super::acr_level(Some("urn:other")), 0);
        assert_eq!(super::acr_level(None), 0);
    }

    #[test]
    fn bearer_token_scheme_and_spaces() {
        let t = |v: &str| super::bearer_token(v.as_bytes()).map(|t| std::str::from_utf8(t).unwrap_or("?").to_owned());
        assert_eq!(t("Bearer abc.def.ghi").as_deref(), Some("abc.def.ghi"));
        assert_eq!(t("bEARER   abc ").as_deref(), Some("abc"));
        assert_eq!(t("Bearer"), None);
        assert_eq!(t("Bearer    "), None);
        assert_eq!(t("Bearerabc"), None);
        assert_eq!(t("Basic dXNlcjpwYXNz"), None);
        assert_eq!(t("DPoP abc"), None);
        assert_eq!(t(""), None);
    }

    #[test]
    fn a_changed_jwks_file_is_read_again_at_reload() {
        let dir = std::env::temp_dir().join(format!("varco-jwks-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        std::fs::write(&file, r#"{"keys":[]}"#).unwrap();
        let cfg: varco_config::IssuerConfig = serde_yaml_ng::from_str(&format!(
            "{{issuer: \"https://i\", audiences: [a], jwks_file: \"{}\", algorithms: [ES256]}}",
            file.display()
        ))
        .unwrap();
        let reg = super::IssuerRegistry::default();
        let a = reg.get("t", "i", &cfg).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &reg.get("t", "i", &cfg).unwrap()), "unchanged: the same issuer");
        assert!(a.key_for(Some("1")).is_none());
        // RFC 7517 A.1's EC key replaces the (compromised) empty set.
        std::fs::write(
            &file,
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"1","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}"#,
        )
        .unwrap();
        let b = reg.get("t", "i", &cfg).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&a, &b), "a changed file makes a new issuer (and an empty cache)");
        assert!(b.key_for(Some("1")).is_some());
        std::fs::remove_file(&file).unwrap();
        assert!(reg.get("t", "i", &cfg).is_err(), "an unreadable file fails the reload");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn token_key_depends_on_every_byte() {
        let a = super::token_key(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.sig");
        assert_ne!(a, super::token_key(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.sig"));
        assert_ne!(a, super::token_key(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.siG"));
        assert_ne!(super::token_key(b"abcdefgh1"), super::token_key(b"abcdefgh2"));
    }

    /// Verifications per second on one core, for `bench/run.sh`: run with
    /// `JWT_BENCH_DIR=<dir with jwks.json and token> cargo test --release -p varco-auth --lib
    /// -- --ignored --nocapture jwt_verify_throughput`.
    #[test]
    #[ignore = "a measurement, run by bench/run.sh"]
    fn jwt_verify_throughput() {
        let Ok(dir) = std::env::var("JWT_BENCH_DIR") else { return };
        let dir = std::path::PathBuf::from(dir);
        let cfg: varco_config::IssuerConfig = serde_yaml_ng::from_str(&format!(
            "{{issuer: \"https://login.bench\", audiences: [varco-bench], jwks_file: \"{}\", algorithms: [RS256, ES256]}}",
            dir.join("jwks.json").display()
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let issuer = super::Issuer::new("bench", "login", &cfg).unwrap_or_else(|e| panic!("{e}"));
        for alg in ["rs256", "es256"] {
            let Ok(token) = std::fs::read_to_string(dir.join(format!("token-{alg}"))) else { continue };
            let token = token.trim();
            issuer.verify_uncached(token, "bench").unwrap_or_else(|p| panic!("{p}"));
            let start = std::time::Instant::now();
            let mut n = 0u64;
            while start.elapsed() < std::time::Duration::from_secs(2) {
                for _ in 0..100 {
                    let _ = issuer.verify_uncached(token, "bench");
                }
                n += 100;
            }
            println!("jwt-verify {alg}: {:.0} verifications/s on one core", n as f64 / start.elapsed().as_secs_f64());
        }
    }
}
