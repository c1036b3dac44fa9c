//! The identity token: a short-lived JWT varco signs for the back-office with the verified
//! caller, with the ente's key, and the `jwks` adapter that publishes the ente's public keys.

use crate::error::AuthError;
use crate::keys::{KeySet, SigningKey};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use varco_config::IdentityTokenConfig;
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Answer, Identity, Problem};

/// Signs the identity token of one ente with that ente's active key.
#[derive(Debug)]
pub struct IdentitySigner {
    pub keys: Arc<KeySet>,
    ttl_secs: u64,
    pub header: http::HeaderName,
}

impl IdentitySigner {
    pub fn new(keys: Arc<KeySet>, cfg: &IdentityTokenConfig) -> Result<Self, String> {
        Ok(Self {
            keys,
            ttl_secs: cfg.ttl.0.as_secs(),
            header: http::HeaderName::from_bytes(cfg.header.as_bytes()).map_err(|e| e.to_string())?,
        })
    }

    /// The server-wide key of `server.identity_token` (I/O: reads the key file), for enti
    /// that have no key of their own.
    pub fn server_keys(cfg: &IdentityTokenConfig) -> Result<KeySet, String> {
        let path = cfg.key_file.display();
        let pem = std::fs::read(&cfg.key_file).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let key = SigningKey::from_pem(&cfg.kid, &pem, None).map_err(|e| format!("`{path}`: {e}"))?;
        KeySet::new(vec![key])
    }

    /// The token for one request: audience is the ente, lifetime `ttl`. The claims behind the
    /// identity headers a route withholds (`request_headers.remove`) are left out too: a
    /// back-office that must not see the codice fiscale does not find it in the token either.
    pub fn sign(&self, tenant: &str, id: &Identity, withhold: &[http::HeaderName]) -> Result<String, AuthError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut claims = serde_json::json!({
            "iss": "varco", "aud": tenant, "sub": id.subject, "iat": now, "exp": now + self.ttl_secs,
            "jti": format!("{:032x}", fastrand::u128(..)),
            "issuer": id.issuer, "client_id": id.client_id, "fiscal_code": id.fiscal_code,
            "acr": id.acr, "scope": id.scopes.join(" "), "purpose_id": id.purpose_id,
        });
        if let Some(map) = claims.as_object_mut() {
            // A citizen's names and e-mail only when a session login gave them.
            for (k, v) in [("given_name", &id.given_name), ("family_name", &id.family_name), ("email", &id.email)] {
                if let Some(v) = v {
                    map.insert(k.into(), serde_json::Value::String(v.clone()));
                }
            }
        }
        if let Some(map) = claims.as_object_mut() {
            for h in withhold {
                if let Some(claim) = claim_of(h) {
                    map.remove(claim);
                }
            }
        }
        self.keys.active().sign(&claims, "JWT", false)
    }
}

/// The identity-token claim carrying the same fact as an identity header.
fn claim_of(header: &http::HeaderName) -> Option<&'static str> {
    use varco_core::headers as h;
    [
        (&h::SUBJECT, "sub"),
        (&h::ISSUER, "issuer"),
        (&h::CLIENT_ID, "client_id"),
        (&h::FISCAL_CODE, "fiscal_code"),
        (&h::ACR, "acr"),
        (&h::SCOPES, "scope"),
        (&h::PURPOSE_ID, "purpose_id"),
        (&h::GIVEN_NAME, "given_name"),
        (&h::FAMILY_NAME, "family_name"),
        (&h::EMAIL, "email"),
    ]
    .into_iter()
    .find(|(n, _)| *n == header)
    .map(|(_, c)| c)
}

/// `GET /.well-known/jwks.json`: the ente's public signing keys.
#[derive(Debug)]
pub struct JwksAdapter(pub Bytes);

impl JwksAdapter {
    async fn answer(&self, _req: AdapterRequest<'_>) -> Result<AdapterResponse, Problem> {
        let mut r = AdapterResponse::json(200, "application/jwk-set+json", self.0.to_vec());
        r.headers.push((http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=300")));
        Ok(r)
    }
}

#[async_trait]
impl Adapter for JwksAdapter {
    fn kind(&self) -> &'static str {
        "jwks"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        self.answer(req).await.map(Answer::Body)
    }
}
