//! The identity token: a short-lived ES256 JWT varco signs for the back-office with the
//! verified caller, and the `jwks` adapter that publishes its public key.

use crate::error::{AuthError, Reason};
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::time::{SystemTime, UNIX_EPOCH};
use varco_config::IdentityTokenConfig;
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Identity, Problem};

pub struct IdentitySigner {
    kid: String,
    ttl_secs: u64,
    pub header: http::HeaderName,
    key: EncodingKey,
    /// `{"keys": [...]}` with the public key.
    pub jwks: Bytes,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner").field("kid", &self.kid).finish()
    }
}

impl IdentitySigner {
    /// Reads the PKCS#8 P-256 key (I/O at build time).
    pub fn load(cfg: &IdentityTokenConfig) -> Result<Self, String> {
        let path = cfg.key_file.display();
        let pem = std::fs::read(&cfg.key_file).map_err(|e| format!("cannot read `{path}`: {e}"))?;
        let der = match rustls_pemfile::private_key(&mut pem.as_slice()) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k))) => k.secret_pkcs8_der().to_vec(),
            _ => return Err(format!("`{path}` is not a PKCS#8 PEM private key")),
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &ring::rand::SystemRandom::new())
            .map_err(|_| format!("`{path}` is not a P-256 (ES256) key"))?;
        let public = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": cfg.kid,
            "x": b64(&public[1..33]), "y": b64(&public[33..65]),
        });
        Ok(Self {
            kid: cfg.kid.clone(),
            ttl_secs: cfg.ttl.0.as_secs(),
            header: http::HeaderName::from_bytes(cfg.header.as_bytes()).map_err(|e| e.to_string())?,
            key: EncodingKey::from_ec_der(&der),
            jwks: Bytes::from(serde_json::to_vec(&serde_json::json!({ "keys": [jwk] })).unwrap_or_default()),
        })
    }

    /// Any claims signed with the key (ModI response signatures), `typ: JWT`.
    pub fn sign_claims(&self, claims: &serde_json::Value) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(signing_failed)
    }

    /// The token for one request: audience is the ente, lifetime `ttl`.
    pub fn sign(&self, tenant: &str, id: &Identity) -> Result<String, AuthError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = serde_json::json!({
            "iss": "varco", "aud": tenant, "sub": id.subject, "iat": now, "exp": now + self.ttl_secs,
            "jti": format!("{:032x}", fastrand::u128(..)),
            "issuer": id.issuer, "client_id": id.client_id, "fiscal_code": id.fiscal_code,
            "acr": id.acr, "scope": id.scopes.join(" "), "purpose_id": id.purpose_id,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(signing_failed)
    }
}

fn signing_failed(e: jsonwebtoken::errors::Error) -> AuthError {
    // The key was checked when it was loaded: this is rare and the caller must not get an
    // unsigned answer instead.
    tracing::error!(error = %e, "signing with the ente's key failed");
    AuthError::new(Reason::SigningFailed, "varco could not sign the answer")
}

/// `GET /.well-known/jwks.json`: varco's identity-token key.
#[derive(Debug)]
pub struct JwksAdapter(pub Bytes);

#[async_trait]
impl Adapter for JwksAdapter {
    fn kind(&self) -> &'static str {
        "jwks"
    }

    async fn call(&self, _req: AdapterRequest<'_>) -> Result<AdapterResponse, Problem> {
        let mut r = AdapterResponse::json(200, "application/jwk-set+json", self.0.to_vec());
        r.headers.push((http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=300")));
        Ok(r)
    }
}
