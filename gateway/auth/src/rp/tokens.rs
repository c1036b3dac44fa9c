//! The JOSE of the OP's answers: ID tokens and userinfo's inner JWS verified with the keys
//! of the OP's trust chain, userinfo's JWE decrypted (by `josekit`) with the ente's keys.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Clock skew tolerated on the OP's tokens (seconds).
const LEEWAY: u64 = 60;

/// Decrypts userinfo JWEs with one of the ente's RSA encryption keys.
pub struct Decrypter {
    pub(super) kid: String,
    pub(super) oaep: josekit::jwe::alg::rsaes::RsaesJweDecrypter,
    pub(super) oaep256: josekit::jwe::alg::rsaes::RsaesJweDecrypter,
}

impl std::fmt::Debug for Decrypter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypter").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Decrypter {
    /// From the PKCS#8 PEM of an RSA key.
    pub fn from_pem(kid: &str, pem: &[u8]) -> Result<Self, String> {
        use josekit::jwe::{RSA_OAEP, RSA_OAEP_256};
        Ok(Self {
            kid: kid.to_owned(),
            oaep: RSA_OAEP.decrypter_from_pem(pem).map_err(|e| format!("key `{kid}`: {e}"))?,
            oaep256: RSA_OAEP_256.decrypter_from_pem(pem).map_err(|e| format!("key `{kid}`: {e}"))?,
        })
    }
}

/// The claims of a JWS signed by one of `keys` (RS256, RS512, PS256 or ES256; never `none` or
/// HS*), not expired at `now`.
pub(super) fn verify_jws(token: &str, keys: &JwkSet, now: u64) -> Result<Map<String, Value>, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("is malformed: {e}"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::ES256) {
        return Err(format!("is signed with {:?}, which is not accepted", header.alg));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or("is signed with a key outside the OP's trust chain")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .map_err(|e| format!("does not verify with the OP's keys: {e}"))?;
    if let Some(exp) = data.claims.get("exp").and_then(Value::as_u64) {
        if exp + LEEWAY <= now {
            return Err("has expired".into());
        }
    }
    if data.claims.get("iat").and_then(Value::as_u64).is_some_and(|iat| iat > now + LEEWAY) {
        return Err("is issued in the future".into());
    }
    Ok(data.claims)
}
