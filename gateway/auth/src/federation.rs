//! OIDC Federation 1.0 for the ente as a SPID/CIE relying party: its Entity Configuration,
//! the self-signed statement federation peers fetch at `<entity_id>/.well-known/openid-federation`
//! to learn its keys and metadata, and the adapter that serves it.

use crate::keys::{KeySet, SigningKey};
use async_trait::async_trait;
use bytes::Bytes;
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use varco_config::{OidcRpConfig, OIDC_CALLBACK_PATH};
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Answer, Problem, ProblemKind};

/// The media type of entity statements.
pub const ENTITY_STATEMENT_TYPE: &str = "entity-statement+jwt";

/// An ente's Entity Configuration: the claims, the federation keys that sign them, and the
/// last statement signed (re-signed once half its lifetime has passed).
pub struct EntityConfiguration {
    claims: Value,
    keys: KeySet,
    lifetime: Duration,
    signed: Mutex<Option<(u64, Bytes)>>,
}

impl std::fmt::Debug for EntityConfiguration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityConfiguration").field("sub", &self.claims["sub"]).finish()
    }
}

/// The public JWK of an RP key for `use` (`sig`: RS256; `enc`: RSA-OAEP). SPID and CIE OPs
/// work with RSA keys only.
fn rp_jwk(k: &SigningKey, usage: &str) -> Result<Value, String> {
    if k.alg != Algorithm::RS256 {
        return Err(format!("key `{}`: SPID/CIE relying-party keys are RSA (2048 bits or more)", k.kid));
    }
    let mut jwk = k.public_jwk().clone();
    jwk["use"] = json!(usage);
    jwk["alg"] = json!(if usage == "enc" { "RSA-OAEP" } else { "RS256" });
    Ok(jwk)
}

impl EntityConfiguration {
    /// The ente's statement; `name` is its `client_name` unless the config sets one. The keys
    /// are read and checked by the caller (`federation`, `signing`, `encryption`, in config
    /// order: the first federation key signs).
    pub fn new(
        cfg: &OidcRpConfig,
        name: &str,
        federation: Vec<SigningKey>,
        signing: &[SigningKey],
        encryption: &[SigningKey],
    ) -> Result<Self, String> {
        let keys = KeySet::new(federation)?;
        let fed_jwks: Value = serde_json::from_slice(&keys.jwks).map_err(|e| e.to_string())?;
        let mut rp_keys = Vec::new();
        for k in signing {
            rp_keys.push(rp_jwk(k, "sig")?);
        }
        for k in encryption {
            rp_keys.push(rp_jwk(k, "enc")?);
        }
        let id = cfg.entity_id.trim_end_matches('/');
        let client_name = cfg.client_name.as_deref().unwrap_or(name);
        let mut claims = json!({
            "iss": cfg.entity_id,
            "sub": cfg.entity_id,
            "jwks": fed_jwks,
            "authority_hints": cfg.authority_hints,
            "metadata": {
                "openid_relying_party": {
                    "client_id": cfg.entity_id,
                    "client_registration_types": ["automatic"],
                    "application_type": "web",
                    "client_name": client_name,
                    "contacts": cfg.contacts,
                    "redirect_uris": [format!("{id}{OIDC_CALLBACK_PATH}")],
                    "response_types": ["code"],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "token_endpoint_auth_method": "private_key_jwt",
                    "id_token_signed_response_alg": "RS256",
                    "userinfo_signed_response_alg": "RS256",
                    "userinfo_encrypted_response_alg": "RSA-OAEP",
                    "userinfo_encrypted_response_enc": "A256CBC-HS512",
                    "jwks": {"keys": rp_keys},
                },
                "federation_entity": {
                    "organization_name": client_name,
                    "homepage_uri": cfg.entity_id,
                    "contacts": cfg.contacts,
                },
            },
        });
        if !cfg.trust_marks.is_empty() {
            claims["trust_marks"] =
                cfg.trust_marks.iter().map(|m| json!({"id": m.id, "trust_mark": m.trust_mark})).collect();
        }
        Ok(Self { claims, keys, lifetime: cfg.statement_lifetime.0, signed: Mutex::new(None) })
    }

    /// The signed statement at `now` (seconds since the epoch): the cached one while it has at
    /// least half its lifetime left, else a freshly signed one.
    pub fn statement(&self, now: u64) -> Result<Bytes, crate::AuthError> {
        let life = self.lifetime.as_secs();
        let mut cached = self.signed.lock();
        if let Some((iat, jws)) = cached.as_ref() {
            if now >= *iat && now - iat < life / 2 {
                return Ok(jws.clone());
            }
        }
        let mut claims = self.claims.clone();
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + life);
        let jws = Bytes::from(self.keys.active().sign(&claims, ENTITY_STATEMENT_TYPE, false)?);
        *cached = Some((now, jws.clone()));
        Ok(jws)
    }
}

/// `GET /.well-known/openid-federation` of an ente with `tenants[].oidc`.
#[derive(Debug)]
pub struct EntityConfigurationAdapter(pub std::sync::Arc<EntityConfiguration>);

#[async_trait]
impl Adapter for EntityConfigurationAdapter {
    fn kind(&self) -> &'static str {
        "federation_entity"
    }

    async fn call(&self, _req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let jws = self
            .0
            .statement(now)
            .map_err(|_| Problem::new(ProblemKind::Internal, "the Entity Configuration could not be signed"))?;
        let mut r = AdapterResponse::json(200, "application/entity-statement+jwt", jws.to_vec());
        r.headers.push((http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=300")));
        Ok(Answer::Body(r))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use varco_config::{Dur, SecretRef, TenantKeyConfig};

    /// A fresh RSA-2048 PKCS#8 PEM key (openssl, as an operator makes one).
    pub(crate) fn rsa_pem() -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        out.stdout
    }

    /// An ente's relying-party configuration (key files never read: keys come separately).
    pub(crate) fn cfg(lifetime: u64) -> OidcRpConfig {
        let key = |kid: &str| TenantKeyConfig {
            kid: kid.into(),
            private_key: SecretRef::File("/unused".into()),
            certificate_chain: None,
        };
        OidcRpConfig {
            entity_id: "https://servizi.comune.macerata.it/".into(),
            authority_hints: vec!["https://registry.spid.gov.it/".into()],
            federation_keys: vec![key("fed")],
            signing_keys: vec![key("sig")],
            encryption_keys: vec![key("enc")],
            client_name: None,
            contacts: vec!["urp@comune.macerata.it".into()],
            trust_marks: vec![],
            statement_lifetime: Dur(Duration::from_secs(lifetime)),
            login: Default::default(),
            session: Default::default(),
        }
    }

    fn key(kid: &str, pem: &[u8]) -> SigningKey {
        SigningKey::from_pem(kid, pem, None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_statement_is_signed_by_the_federation_key_and_renewed_at_half_life() {
        let fed = rsa_pem();
        let ec = EntityConfiguration::new(
            &cfg(3600),
            "Comune di Macerata",
            vec![key("fed", &fed)],
            &[key("sig", &rsa_pem())],
            &[key("enc", &rsa_pem())],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let first = ec.statement(1_000_000).unwrap_or_else(|e| panic!("{e:?}"));
        let text = std::str::from_utf8(&first).unwrap_or_default();
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(key("fed", &fed).public_jwk().clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(
            text,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("{e}")),
            &v,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.header.typ.as_deref(), Some(ENTITY_STATEMENT_TYPE));
        assert_eq!((claims.claims["iat"].as_u64(), claims.claims["exp"].as_u64()), (Some(1_000_000), Some(1_003_600)));
        assert_eq!(
            claims.claims["metadata"]["openid_relying_party"]["redirect_uris"][0],
            "https://servizi.comune.macerata.it/oidc/callback"
        );
        assert_eq!(claims.claims["metadata"]["openid_relying_party"]["client_name"], "Comune di Macerata");
        // Served as is until half its lifetime has passed, then signed again.
        assert_eq!(ec.statement(1_001_799).unwrap_or_else(|e| panic!("{e:?}")), first);
        let renewed = ec.statement(1_001_800).unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(renewed, first);
        assert_eq!(
            ec.statement(999_999).map(|s| s != renewed).ok(),
            Some(true),
            "a clock that went back gets a fresh statement"
        );
    }

    #[test]
    fn relying_party_keys_must_be_rsa() {
        let p256 = crate::keys::tests::p256_pem();
        let err = EntityConfiguration::new(&cfg(3600), "x", vec![key("fed", &p256)], &[key("sig", &p256)], &[])
            .map(|_| ())
            .unwrap_err();
        assert!(err.contains("RSA"), "{err}");
    }
}
