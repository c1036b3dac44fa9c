//! The ente as a SPID/CIE OpenID Connect relying party: the login (authorization code with
//! PKCE S256 and a signed request object), the callback (state bound to the browser, RFC 9207
//! `iss`, `private_key_jwt` at the token endpoint, the ID token and the encrypted userinfo
//! checked with the OP's keys from its trust chain), logout, and the session a route reads.
//!
//! Everything about an OP comes from its trust chain up to a pinned Trust Anchor
//! ([`Federation`]), never from plain discovery. HTTP goes through `varco_core::Fetch`
//! (varco-outbound's client); this module decides, the proxy only writes the answers.

use crate::keys::KeySet;
use crate::session::{random_token, Lifetimes, Session, SessionRecord, SessionStore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use varco_config::{loa_uri, OidcRpConfig, ProviderConfig, ProviderKind, OIDC_CALLBACK_PATH};
use varco_core::fetch::Fetch;

/// Where the login, callback and logout live below the ente's entity id.
pub const LOGIN_PATH: &str = "/oidc/login";
pub const LOGOUT_PATH: &str = "/oidc/logout";
/// How long a login may take between the chooser and the callback (seconds).
const LOGIN_TTL: u64 = 600;

/// Why a login, callback or logout was refused. The detail names the failed check; never a
/// token, a code or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpError {
    /// The request to varco is wrong (an unknown OP, a `return_to` off the ente's paths).
    #[error("{0}")]
    BadRequest(String),
    /// The OP has no valid trust chain to its Trust Anchor: nothing of it is used.
    #[error("the identity provider `{op}` is not trusted: {why}")]
    Untrusted { op: String, why: String },
    /// The callback failed a check (state, code, tokens, userinfo).
    #[error("{0}")]
    Failed(String),
    /// The session store did not answer.
    #[error("the session store did not answer")]
    Store,
}

impl From<crate::session::StoreUnavailable> for RpError {
    fn from(_: crate::session::StoreUnavailable) -> Self {
        Self::Store
    }
}

/// What a browser is sent: where to go and the cookies to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub location: String,
    pub cookies: Vec<String>,
}

/// A login under way, kept under its `state` until the callback.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    tenant: String,
    op: String,
    nonce: String,
    verifier: String,
    return_to: String,
    acr: u8,
    /// SHA-256 of the login cookie the browser got: the callback must come from that browser.
    binding: String,
}

/// An ente's relying party.
pub struct RelyingParty {
    pub tenant: String,
    client_id: String,
    redirect_uri: String,
    /// The entity id's path (the ente's prefix, or empty): cookies and `return_to` stay below it.
    base: String,
    signing: KeySet,
    decrypters: Vec<Decrypter>,
    acr: u8,
    claims: Vec<String>,
    lifetimes: Lifetimes,
    /// The session's cookie and the login binding's.
    names: [String; 2],
    pub providers: Vec<ProviderConfig>,
    pub federation: Arc<Federation>,
    store: SessionStore,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

fn sha256_hex(s: &str) -> String {
    let mut out = String::with_capacity(64);
    crate::session::push_sha256_hex(&mut out, s);
    out
}

/// 32 random bytes in hex: `state` and `nonce` must be at least 32 alphanumeric characters.
/// Empty when the OS gives no randomness (callers refuse to go on).
fn random_alnum() -> String {
    let t = random_token();
    if t.is_empty() {
        return t;
    }
    sha256_hex(&t)
}

/// `return_to` if it is a path below `base` (the ente's prefix, or empty) — no scheme, no host,
/// no `//`, no backslash, no control character or space, no dot segment — else `None`: varco
/// never redirects elsewhere. Absent or empty: the ente's home, `<base>/`.
pub fn safe_return_to(base: &str, rt: Option<&str>) -> Option<String> {
    let home = format!("{base}/");
    let Some(rt) = rt.filter(|r| !r.is_empty()) else { return Some(home) };
    let path = rt.split(['?', '#']).next().unwrap_or("");
    let ok = rt.starts_with('/')
        && !rt.starts_with("//")
        && !rt.bytes().any(|b| b == b'\\' || b.is_ascii_control() || b == b' ')
        && (base.is_empty() || path == base || path.starts_with(&home))
        && !path.split('/').any(|seg| seg == ".." || seg == ".");
    ok.then(|| rt.to_owned())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v.trim().trim_matches('"'))
        },
    )
}

/// The name varco asks userinfo for a claim by (the fiscal number under its eID name).
fn claim_name(c: &str) -> &str {
    if c == "fiscal_number" {
        "https://attributes.eid.gov.it/fiscal_number"
    } else {
        c
    }
}

impl RelyingParty {
    /// The ente's relying party; `signing` signs request objects and client assertions.
    pub fn new(
        tenant: &str,
        cfg: &OidcRpConfig,
        signing: KeySet,
        decrypters: Vec<Decrypter>,
        federation: Arc<Federation>,
        store: SessionStore,
    ) -> Result<Self, String> {
        if decrypters.is_empty() {
            return Err("no encryption key".into());
        }
        let id = cfg.entity_id.trim_end_matches('/');
        let base = url::Url::parse(id).map_err(|e| e.to_string())?.path().trim_end_matches('/').to_owned();
        let providers = if cfg.login.providers.is_empty() {
            federation.providers.clone()
        } else {
            federation.providers.iter().filter(|p| cfg.login.providers.contains(&p.entity_id)).cloned().collect()
        };
        Ok(Self {
            tenant: tenant.to_owned(),
            client_id: cfg.entity_id.clone(),
            redirect_uri: format!("{id}{OIDC_CALLBACK_PATH}"),
            base,
            signing,
            decrypters,
            acr: cfg.login.acr,
            claims: cfg.login.claims.clone(),
            lifetimes: Lifetimes { idle: cfg.session.idle.0.as_secs(), absolute: cfg.session.absolute.0.as_secs() },
            names: [cfg.session.cookie.clone(), format!("{}_login", cfg.session.cookie)],
            providers,
            federation,
            store,
        })
    }

    /// The ente's path below which its pages live (`/c_e783`, or empty).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Where a browser without a session is sent: the chooser, coming back to `return_to`.
    pub fn login_location(&self, return_to: &str, acr_min: Option<u8>) -> String {
        let rt: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        match acr_min {
            Some(l) if l > self.acr => format!("{}{LOGIN_PATH}?return_to={rt}&acr={l}", self.base),
            _ => format!("{}{LOGIN_PATH}?return_to={rt}", self.base),
        }
    }

    /// `return_to` if it is a path of this ente, else `None` (see [`safe_return_to`]).
    pub fn safe_return_to(&self, rt: Option<&str>) -> Option<String> {
        safe_return_to(&self.base, rt)
    }

    fn cookie_path(&self) -> String {
        if self.base.is_empty() {
            "/".into()
        } else {
            self.base.clone()
        }
    }

    /// The cookies varco sets (the session, the login binding): never forwarded upstream.
    pub fn cookie_names(&self) -> &[String; 2] {
        &self.names
    }

    fn login_cookie(&self) -> &str {
        &self.names[1]
    }

    /// The acr level a login asks for when a route needs `acr_min`.
    pub fn acr_for(&self, acr_min: Option<u8>) -> u8 {
        acr_min.map_or(self.acr, |m| m.max(self.acr))
    }

    /// Starts a login with `op`: the OP's authorization URL with a signed request object, and
    /// the cookie that binds the callback to this browser.
    pub async fn begin(
        &self,
        fetch: &dyn Fetch,
        headers: &HeaderMap,
        op: &str,
        return_to: Option<&str>,
        acr_min: Option<u8>,
        now: u64,
    ) -> Result<Redirect, RpError> {
        if !self.providers.iter().any(|p| p.entity_id == op) {
            return Err(RpError::BadRequest(format!("`{op}` is not an identity provider of this ente")));
        }
        let return_to = self
            .safe_return_to(return_to)
            .ok_or_else(|| RpError::BadRequest("`return_to` must be a path of this ente".into()))?;
        let p = self.federation.provider(fetch, op, now).await?;
        let (state, nonce, verifier) = (random_alnum(), random_alnum(), random_token());
        if verifier.is_empty() || state.is_empty() || nonce.is_empty() {
            return Err(RpError::Store);
        }
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
        // One binding per browser: a second tab's login does not break the first one's.
        let binding = cookie(headers, self.login_cookie())
            .filter(|v| v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .map_or_else(random_token, str::to_owned);
        let acr = self.acr_for(acr_min);
        let mut wanted = Map::new();
        for c in &self.claims {
            wanted.insert(claim_name(c).to_owned(), Value::Null);
        }
        let ro = json!({
            "iss": self.client_id, "client_id": self.client_id,
            "aud": [p.entity_id, p.authorization_endpoint],
            "iat": now, "exp": now + 300, "jti": random_alnum(),
            "response_type": "code", "scope": ["openid"], "redirect_uri": self.redirect_uri,
            "state": state, "nonce": nonce, "prompt": "consent login",
            "code_challenge": challenge, "code_challenge_method": "S256",
            "acr_values": [loa_uri(acr)],
            "claims": {"userinfo": wanted, "id_token": {"acr": {"essential": true}}},
        });
        let request = self.signing.active().sign(&ro, "JWT", false).map_err(|_| RpError::Store)?;
        let pending = Pending {
            tenant: self.tenant.clone(),
            op: op.to_owned(),
            nonce,
            verifier,
            return_to,
            acr,
            binding: sha256_hex(&binding),
        };
        let body = serde_json::to_vec(&pending).map_err(|_| RpError::Store)?;
        self.store.put_pending(&format!("{}:{state}", self.tenant), body, LOGIN_TTL, now).await?;
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("request", &request)
            .finish();
        let sep = if p.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok(Redirect {
            location: format!("{}{sep}{q}", p.authorization_endpoint),
            cookies: vec![format!(
                "{}={binding}; Path={}/oidc; Max-Age={LOGIN_TTL}; Secure; HttpOnly; SameSite=Lax",
                self.login_cookie(),
                self.base
            )],
        })
    }

    /// The callback: checks everything, opens the session, sends the browser back.
    pub async fn finish(
        &self,
        fetch: &dyn Fetch,
        headers: &HeaderMap,
        query: Option<&str>,
        now: u64,
    ) -> Result<Redirect, RpError> {
        let q: HashMap<String, String> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
        let fail = |m: String| Err(RpError::Failed(m));
        let Some(state) = q.get("state").filter(|s| s.len() <= 128) else {
            return fail("the callback has no `state`, or one varco never sends".into());
        };
        // Taken once: a replayed callback (or a second use of a code) finds nothing.
        let Some(pending) = self.store.take_pending(&format!("{}:{state}", self.tenant), now).await? else {
            return fail("unknown, expired or already used `state`".into());
        };
        let pending: Pending =
            serde_json::from_slice(&pending).map_err(|_| RpError::Failed("bad login record".into()))?;
        let bound = cookie(headers, self.login_cookie()).map(sha256_hex);
        if bound.as_deref() != Some(pending.binding.as_str()) || pending.tenant != self.tenant {
            return fail("the login was not started in this browser".into());
        }
        let p = self.federation.provider(fetch, &pending.op, now).await?;
        if let Some(iss) = q.get("iss") {
            if iss != &p.issuer && iss != &p.entity_id {
                return fail(format!("the callback's `iss` is `{iss}`, not the OP the login went to"));
            }
        }
        if let Some(e) = q.get("error") {
            let e: String = e.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            return fail(format!("the identity provider refused the login: `{e}`"));
        }
        let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
            return fail("the callback has no `code`".into());
        };
        let assertion = self.client_assertion(&p.token_endpoint, now)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("code_verifier", &pending.verifier)
            .append_pair("client_id", &self.client_id)
            .append_pair("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            .append_pair("client_assertion", &assertion)
            .finish();
        let timeout = self.federation.timeout;
        let (status, body) = fetch
            .post_form(&p.token_endpoint, form, timeout)
            .await
            .map_err(|e| RpError::Failed(format!("the token endpoint: {e}")))?;
        let tokens: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status != 200 {
            let err: String =
                tokens["error"].as_str().unwrap_or("").chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            return fail(format!("the token endpoint answered {status} `{err}`"));
        }
        let (Some(id_token), Some(access_token)) = (tokens["id_token"].as_str(), tokens["access_token"].as_str())
        else {
            return fail("the token answer has no `id_token` or `access_token`".into());
        };
        let id = self.id_token(&p, id_token, &pending, now)?;
        let sub = id.get("sub").and_then(Value::as_str).unwrap_or("").to_owned();
        let (status, body) = fetch
            .get_bearer(&p.userinfo_endpoint, access_token, timeout)
            .await
            .map_err(|e| RpError::Failed(format!("userinfo: {e}")))?;
        if status != 200 {
            return fail(format!("userinfo answered {status}"));
        }
        let info = self.userinfo(&p, &body, &sub, now)?;
        let s = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_owned);
        let fiscal_code = varco_core::identity::fiscal_code_of(s);
        let record = SessionRecord {
            tenant: self.tenant.clone(),
            op: p.entity_id.clone(),
            sub,
            acr: id.get("acr").and_then(Value::as_str).map(str::to_owned),
            fiscal_code,
            given_name: s("given_name"),
            family_name: s("family_name"),
            email: s("email"),
            id_token: id_token.to_owned(),
            access_token: access_token.to_owned(),
            created: now,
            last_seen: now,
        };
        let sid = self.store.open(record, self.lifetimes).await?;
        Ok(Redirect {
            location: pending.return_to,
            cookies: vec![
                format!("{}={sid}; Path={}; Secure; HttpOnly; SameSite=Lax", self.names[0], self.cookie_path()),
                format!("{}=; Path={}/oidc; Max-Age=0; Secure; HttpOnly; SameSite=Lax", self.login_cookie(), self.base),
            ],
        })
    }

    /// A `private_key_jwt` client assertion for `aud`.
    fn client_assertion(&self, aud: &str, now: u64) -> Result<String, RpError> {
        let claims = json!({
            "iss": self.client_id, "sub": self.client_id, "aud": [aud],
            "iat": now, "exp": now + 60, "jti": random_alnum(),
        });
        self.signing.active().sign(&claims, "JWT", false).map_err(|_| RpError::Failed("varco could not sign".into()))
    }

    /// The ID token's claims once it verifies with the OP's chain keys.
    fn id_token(&self, p: &Provider, token: &str, pending: &Pending, now: u64) -> Result<Map<String, Value>, RpError> {
        let claims = verify_jws(token, &p.jwks, now).map_err(|e| RpError::Failed(format!("the ID token {e}")))?;
        let fail = |m: &str| Err(RpError::Failed(format!("the ID token {m}")));
        if claims.get("iss").and_then(Value::as_str) != Some(p.issuer.as_str()) {
            return fail("is not from the OP the login went to (`iss`)");
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == &self.client_id,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(self.client_id.as_str())),
            _ => false,
        };
        if !aud_ok {
            return fail("is not for this ente (`aud`)");
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(pending.nonce.as_str()) {
            return fail("does not carry the login's `nonce`");
        }
        if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
            return fail("has no `sub`");
        }
        if claims.get("exp").and_then(Value::as_u64).is_none() {
            return fail("has no `exp`");
        }
        let acr = claims.get("acr").and_then(Value::as_str);
        let level = (1..=3u8).find(|l| Some(loa_uri(*l)) == acr).unwrap_or(0);
        if level < pending.acr {
            return fail(&format!("has level {level} (`acr`), below the {} asked for", pending.acr));
        }
        Ok(claims)
    }

    /// Userinfo: a JWE (RSA-OAEP or RSA-OAEP-256; A128CBC-HS256 or A256CBC-HS512) to one of the
    /// ente's keys around a JWS of the OP, about the ID token's `sub`.
    fn userinfo(&self, p: &Provider, body: &[u8], sub: &str, now: u64) -> Result<Map<String, Value>, RpError> {
        let fail = |m: String| Err(RpError::Failed(format!("userinfo {m}")));
        let text = std::str::from_utf8(body).unwrap_or("").trim();
        if text.split('.').count() != 5 {
            return fail("is not encrypted (SPID/CIE require a JWE)".into());
        }
        let head: Value = text
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice(&h).ok())
            .unwrap_or(Value::Null);
        let (alg, enc) = (head["alg"].as_str().unwrap_or(""), head["enc"].as_str().unwrap_or(""));
        if !matches!(enc, "A128CBC-HS256" | "A256CBC-HS512") {
            return fail(format!("is encrypted with `{enc}`, not A128CBC-HS256 or A256CBC-HS512"));
        }
        let kid = head["kid"].as_str();
        let candidates = self.decrypters.iter().filter(|d| kid.is_none_or(|k| k == d.kid));
        let mut inner = None;
        for d in candidates {
            let dec = match alg {
                "RSA-OAEP" => &d.oaep,
                "RSA-OAEP-256" => &d.oaep256,
                _ => return fail(format!("is encrypted with `{alg}`, not RSA-OAEP or RSA-OAEP-256")),
            };
            if let Ok((payload, _)) = josekit::jwe::deserialize_compact(text, dec) {
                inner = Some(payload);
                break;
            }
        }
        let Some(inner) = inner else { return fail("does not decrypt with the ente's keys".into()) };
        let jws = std::str::from_utf8(&inner).unwrap_or("").trim();
        let claims =
            verify_jws(jws, &p.jwks, now).map_err(|e| RpError::Failed(format!("userinfo's signature: {e}")))?;
        if claims.get("sub").and_then(Value::as_str) != Some(sub) {
            return fail("is about another subject than the ID token".into());
        }
        if let Some(iss) = claims.get("iss").and_then(Value::as_str) {
            if iss != p.issuer {
                return fail("is not from the OP the login went to (`iss`)".into());
            }
        }
        Ok(claims)
    }

    /// The live session the request's cookie names, if any.
    pub async fn session(&self, headers: &HeaderMap, now: u64) -> Result<Option<Arc<Session>>, RpError> {
        let Some(id) = cookie(headers, &self.names[0]) else { return Ok(None) };
        Ok(self.store.find(&self.tenant, id, self.lifetimes, now).await?)
    }

    /// Logout: ends the session here and, when the OP offers revocation, revokes its access
    /// token there (best effort: the local session is gone whatever the OP answers).
    pub async fn logout(&self, fetch: &dyn Fetch, headers: &HeaderMap, return_to: Option<&str>, now: u64) -> Redirect {
        let location = self.safe_return_to(return_to).unwrap_or_else(|| format!("{}/", self.base));
        if let Some(id) = cookie(headers, &self.names[0]) {
            if let Ok(Some(rec)) = self.store.close(&self.tenant, id).await {
                self.revoke(fetch, &rec, now).await;
            }
        }
        Redirect {
            location,
            cookies: vec![format!(
                "{}=; Path={}; Max-Age=0; Secure; HttpOnly; SameSite=Lax",
                self.names[0],
                self.cookie_path()
            )],
        }
    }

    async fn revoke(&self, fetch: &dyn Fetch, rec: &SessionRecord, now: u64) {
        let Ok(p) = self.federation.provider(fetch, &rec.op, now).await else { return };
        let Some(endpoint) = &p.revocation_endpoint else { return };
        let Ok(assertion) = self.client_assertion(endpoint, now) else { return };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", &rec.access_token)
            .append_pair("token_type_hint", "access_token")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            .append_pair("client_assertion", &assertion)
            .finish();
        match fetch.post_form(endpoint, form, self.federation.timeout).await {
            Ok((200, _)) => {}
            Ok((status, _)) => tracing::warn!(tenant = %self.tenant, op = %rec.op, status, "token revocation refused"),
            Err(e) => tracing::warn!(tenant = %self.tenant, op = %rec.op, error = %e, "token revocation failed"),
        }
    }

    /// The OPs on the chooser, SPID ones first.
    pub fn chooser_entries(&self, kind: ProviderKind) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.iter().filter(move |p| p.kind == kind)
    }
}

mod adapter;
mod providers;
mod tokens;
pub use adapter::{problem, OidcLoginAdapter};
pub use providers::{Federation, Provider};
use tokens::verify_jws;
pub use tokens::Decrypter;

#[cfg(test)]
mod tests;
