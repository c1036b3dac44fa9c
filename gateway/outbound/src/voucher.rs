//! PDND vouchers for the ente's calls to national e-services: a client assertion signed with
//! the ente's registered key, exchanged at PDND's token endpoint; the voucher is cached per
//! purpose until shortly before it expires, with one request in flight per purpose however
//! many calls wait for it. A voucher bound to an AUDIT_REST_02 tracking evidence (`digest`)
//! serves that evidence only, so it is requested afresh and never cached.

use crate::client::HttpsClient;
use crate::exchange::{attempt, Policy};
use bytes::Bytes;
use http_body_util::Full;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use varco_auth::KeySet;
use varco_config::PdndClientConfig;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest reason kept from PDND's refusal.
const MAX_REASON: usize = 300;

/// Why no voucher could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// PDND answered and refused the assertion (status and PDND's own reason).
    #[error("PDND refused the client assertion ({status}): {reason}")]
    Refused { status: u16, reason: String },
    /// PDND could not be reached, failed (5xx) or answered something that is not a voucher.
    #[error("PDND's token endpoint: {0}")]
    Unavailable(String),
    /// varco could not sign the assertion.
    #[error("the client assertion could not be signed: {0}")]
    Signing(String),
}

/// A voucher and when varco stops using it.
#[derive(Debug, Clone)]
struct Cached {
    token: Arc<str>,
    renew_at: Instant,
}

/// One purpose's cached voucher and the lock that lets one refresh run at a time.
#[derive(Debug, Default)]
struct Slot {
    cached: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
}

/// The ente's PDND client.
pub struct VoucherClient {
    cfg: PdndClientConfig,
    keys: Arc<KeySet>,
    kid: String,
    token_url: http::Uri,
    http: HttpsClient,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Vouchers obtained from PDND (cached and bound).
    issued: AtomicU64,
}

impl std::fmt::Debug for VoucherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoucherClient").field("client_id", &self.cfg.client_id).field("kid", &self.kid).finish()
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// `application/x-www-form-urlencoded` value: unreserved characters as they are.
fn form_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// PDND's reason from a refusal body (problem JSON: `detail`, `errors[].detail`, or an OAuth
/// `error_description`), made safe to show: one line, bounded.
fn reason_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut parts = Vec::new();
    for k in ["title", "detail", "error", "error_description"] {
        if let Some(s) = v.get(k).and_then(|x| x.as_str()) {
            parts.push(s.to_owned());
        }
    }
    for e in v.get("errors").and_then(|x| x.as_array()).into_iter().flatten() {
        let code = e.get("code").and_then(|x| x.as_str()).unwrap_or("");
        let detail = e.get("detail").and_then(|x| x.as_str()).unwrap_or("");
        parts.push(if code.is_empty() { detail.to_owned() } else { format!("{code} {detail}") });
    }
    if parts.is_empty() {
        parts.push(String::from_utf8_lossy(&body[..body.len().min(MAX_REASON)]).into_owned());
    }
    let text: String = parts.join("; ").chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    text.chars().take(MAX_REASON).collect()
}

impl VoucherClient {
    /// A client for `cfg` signing with the ente's `keys` (validated config: the kid exists).
    pub fn new(cfg: &PdndClientConfig, keys: Arc<KeySet>, http: HttpsClient) -> Result<Self, String> {
        let kid = match &cfg.kid {
            Some(k) => k.clone(),
            None => keys.active().kid.clone(),
        };
        let key = keys.by_kid(&kid).ok_or_else(|| format!("no ente key has the kid `{kid}`"))?;
        if key.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(format!("the key `{kid}` is not RSA: PDND takes RS256 client assertions only"));
        }
        let token_url = cfg.token_url.parse().map_err(|e| format!("token_url: {e}"))?;
        Ok(Self {
            cfg: cfg.clone(),
            keys,
            kid,
            token_url,
            http,
            slots: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
        })
    }

    /// The ente's PDND client id (`iss` of its ModI JWTs too).
    pub fn client_id(&self) -> &str {
        &self.cfg.client_id
    }

    /// The purposeId of a purpose name.
    pub fn purpose_id(&self, name: &str) -> Option<&str> {
        self.cfg.purposes.get(name).map(String::as_str)
    }

    /// The ente key the client signs with.
    pub fn key(&self) -> &varco_auth::SigningKey {
        // `new` checked that the kid is in the set, and the set never changes.
        self.keys.by_kid(&self.kid).unwrap_or_else(|| self.keys.active())
    }

    /// Vouchers obtained from PDND so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Whether this client was made from `cfg` and these keys (a reload keeps its cache).
    pub fn same(&self, cfg: &PdndClientConfig, keys: &KeySet) -> bool {
        &self.cfg == cfg && self.keys.jwks == keys.jwks
    }

    fn slot(&self, purpose_id: &str) -> Arc<Slot> {
        self.slots.lock().entry(purpose_id.to_owned()).or_default().clone()
    }

    /// A voucher for `purpose_id`, from the cache while it is fresh; an empty `purpose_id`
    /// asks for the API interop client's voucher (no purpose), for PDND's own services.
    pub async fn voucher(&self, purpose_id: &str) -> Result<Arc<str>, VoucherError> {
        let slot = self.slot(purpose_id);
        let fresh =
            |s: &Slot| s.cached.read().as_ref().filter(|c| Instant::now() < c.renew_at).map(|c| c.token.clone());
        if let Some(t) = fresh(&slot) {
            return Ok(t);
        }
        // One refresh at a time; who waited finds the voucher the first one got.
        let _one = slot.refresh.lock().await;
        if let Some(t) = fresh(&slot) {
            return Ok(t);
        }
        let (token, expires_in) = self.request(purpose_id, None).await?;
        let token: Arc<str> = Arc::from(token);
        let life = Duration::from_secs(expires_in).saturating_sub(self.cfg.refresh_before.0);
        *slot.cached.write() = Some(Cached { token: token.clone(), renew_at: Instant::now() + life });
        Ok(token)
    }

    /// Drops the cached voucher of `purpose_id` if it is still `token` (a provider refused it).
    pub fn forget(&self, purpose_id: &str, token: &str) {
        let slot = self.slot(purpose_id);
        let mut c = slot.cached.write();
        if c.as_ref().is_some_and(|c| &*c.token == token) {
            *c = None;
        }
    }

    /// A voucher bound to one tracking evidence (`digest`: SHA-256 hex of its JWS).
    pub async fn bound_voucher(&self, purpose_id: &str, digest: &str) -> Result<String, VoucherError> {
        self.request(purpose_id, Some(digest)).await.map(|(t, _)| t)
    }

    /// The client id a request for `purpose_id` is made as: the API interop client's for none.
    fn client_for(&self, purpose_id: &str) -> Result<&str, VoucherError> {
        if !purpose_id.is_empty() {
            return Ok(&self.cfg.client_id);
        }
        self.cfg.api_client_id.as_deref().ok_or_else(|| {
            VoucherError::Signing("a voucher without purpose needs `pdnd.api_client_id` (an API interop client)".into())
        })
    }

    /// The client assertion for one token request.
    fn assertion(&self, purpose_id: &str, digest: Option<&str>) -> Result<String, VoucherError> {
        let now = now_s();
        let client = self.client_for(purpose_id)?;
        let mut claims = serde_json::json!({
            "iss": client, "sub": client, "aud": self.cfg.assertion_audience,
            "jti": format!("{:032x}", fastrand::u128(..)),
            "iat": now, "exp": now + 120,
        });
        if !purpose_id.is_empty() {
            claims["purposeId"] = serde_json::json!(purpose_id);
        }
        if let Some(d) = digest {
            claims["digest"] = serde_json::json!({ "alg": "SHA256", "value": d });
        }
        self.key().sign(&claims, "JWT", false).map_err(|e| VoucherError::Signing(e.detail))
    }

    async fn request(&self, purpose_id: &str, digest: Option<&str>) -> Result<(String, u64), VoucherError> {
        let assertion = self.assertion(purpose_id, digest)?;
        let form = format!(
            "client_id={}&client_assertion={}&client_assertion_type={}&grant_type=client_credentials",
            form_value(self.client_for(purpose_id)?),
            form_value(&assertion),
            form_value(ASSERTION_TYPE)
        );
        let req = http::Request::post(self.token_url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "varco")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| VoucherError::Unavailable(e.to_string()))?;
        let policy = Policy { max_body: 64 << 10, ..Policy::once(self.cfg.timeout.0) };
        let reply = attempt(&self.http, req, &policy).await.map_err(VoucherError::Unavailable)?;
        match reply.status {
            200 => {}
            s @ 400..=499 => {
                let reason = reason_of(&reply.body);
                tracing::warn!(client_id = %self.cfg.client_id, purpose_id, status = s, %reason, "PDND refused a client assertion");
                return Err(VoucherError::Refused { status: s, reason });
            }
            s => return Err(VoucherError::Unavailable(format!("answered {s}"))),
        }
        #[derive(serde::Deserialize)]
        struct Grant {
            access_token: String,
            token_type: Option<String>,
            expires_in: u64,
        }
        let g: Grant = serde_json::from_slice(&reply.body)
            .map_err(|e| VoucherError::Unavailable(format!("the answer is not a voucher: {e}")))?;
        if g.access_token.is_empty() || g.access_token.len() > 16 << 10 || g.access_token.contains(char::is_whitespace)
        {
            return Err(VoucherError::Unavailable("the answer's access_token is not a token".into()));
        }
        if g.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err(VoucherError::Unavailable("the answer's token_type is not Bearer".into()));
        }
        self.issued.fetch_add(1, Ordering::Relaxed);
        Ok((g.access_token, g.expires_in))
    }
}

/// Each ente's voucher client, kept across reloads while its configuration and keys are the
/// same (so a reload does not throw cached vouchers away).
#[derive(Debug, Default)]
pub struct VoucherRegistry {
    clients: Mutex<HashMap<String, Arc<VoucherClient>>>,
}

impl VoucherRegistry {
    /// The client of `tenant` for `cfg` and `keys`: the existing one when nothing changed.
    pub fn get(
        &self,
        tenant: &str,
        cfg: &PdndClientConfig,
        keys: &Arc<KeySet>,
        http: &HttpsClient,
    ) -> Result<Arc<VoucherClient>, String> {
        let mut map = self.clients.lock();
        if let Some(c) = map.get(tenant).filter(|c| c.same(cfg, keys)) {
            return Ok(c.clone());
        }
        let c = Arc::new(VoucherClient::new(cfg, keys.clone(), http.clone())?);
        map.insert(tenant.to_owned(), c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_escaped() {
        assert_eq!(form_value("a.b-c_d~e"), "a.b-c_d~e");
        assert_eq!(form_value("urn:x y&z"), "urn%3Ax%20y%26z");
    }

    #[test]
    fn refusal_reasons_are_read_from_problem_and_oauth_shapes() {
        let problem = br#"{"title":"Bad request","detail":"Client assertion validation failure","errors":[{"code":"015-0008","detail":"Purpose not found"}]}"#;
        let r = reason_of(problem);
        assert!(r.contains("Client assertion validation failure") && r.contains("015-0008 Purpose not found"), "{r}");
        assert_eq!(
            reason_of(br#"{"error":"invalid_client","error_description":"kid\nunknown"}"#),
            "invalid_client; kid unknown"
        );
        let long = vec![b'x'; 5000];
        assert_eq!(reason_of(&long).len(), MAX_REASON);
    }
}
