//! An ente's signing keys (its PDND-registered key, and the next one during a rotation): the
//! first signs varco's identity tokens and ModI answers for that ente; all of them are
//! published at the ente's `/.well-known/jwks.json`. RSA keys sign RS256, P-256 keys ES256.

use crate::error::{AuthError, Reason};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// One private key with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    jwk: serde_json::Value,
    /// The certificate chain (base64 DER, leaf first) for `x5c`, when configured.
    pub x5c: Vec<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

impl SigningKey {
    /// A key from PKCS#8 PEM text (RSA or P-256) and an optional PEM certificate chain whose
    /// first certificate must hold this key's public half.
    pub fn from_pem(kid: &str, pem: &[u8], chain: Option<&[u8]>) -> Result<Self, String> {
        let der = match rustls_pemfile::private_key(&mut &pem[..]) {
            Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k))) => k.secret_pkcs8_der().to_vec(),
            _ => return Err("not a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`)".into()),
        };
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let rng = ring::rand::SystemRandom::new();
        let (alg, key, jwk, public) =
            if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng) {
                let p = pair.public_key().as_ref().to_vec();
                let jwk = serde_json::json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                    "x": b64(&p[1..33]), "y": b64(&p[33..65]),
                });
                (Algorithm::ES256, EncodingKey::from_ec_der(&der), jwk, p)
            } else if let Ok(pair) = RsaKeyPair::from_pkcs8(&der) {
                if pair.public().modulus_len() < 256 {
                    return Err("RSA keys need at least 2048 bits".into());
                }
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                let jwk = serde_json::json!({
                    "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64(&c.n), "e": b64(&c.e),
                });
                // jsonwebtoken takes RSA keys as PKCS#1 DER: the RSAPrivateKey inside the PKCS#8.
                let pkcs1 = pkcs1_of_pkcs8(&der).ok_or("the RSA key's PKCS#8 structure is malformed")?;
                let key = EncodingKey::from_rsa_der(pkcs1);
                (Algorithm::RS256, key, jwk, c.n)
            } else {
                return Err("neither an RSA nor a P-256 key".into());
            };
        let mut x5c = Vec::new();
        if let Some(chain) = chain {
            for cert in rustls_pemfile::certs(&mut &chain[..]) {
                let cert = cert.map_err(|e| format!("certificate chain: {e}"))?;
                x5c.push(STANDARD.encode(cert.as_ref()));
            }
            let leaf = x5c.first().ok_or("the certificate chain holds no certificate")?;
            let der = STANDARD.decode(leaf).map_err(|e| e.to_string())?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| format!("certificate: {e}"))?;
            let spki = cert.public_key().subject_public_key.data.as_ref();
            // The leaf holds the key itself: for EC its point, for RSA a structure with n.
            if !contains(spki, &public) {
                return Err("the first certificate of the chain is not this key's".into());
            }
        }
        let k = Self { kid: kid.to_owned(), alg, key, jwk, x5c };
        // Sign once now: a key that cannot sign fails the start or the reload, not requests.
        k.sign(&serde_json::json!({ "probe": true }), "JWT", false).map_err(|e| e.detail)?;
        Ok(k)
    }

    /// The public half as a JWK (`kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// Signs `claims` as a compact JWS with this key's `kid`, `typ` as given.
    pub fn sign(&self, claims: &serde_json::Value, typ: &str, with_x5c: bool) -> Result<String, AuthError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        if with_x5c && !self.x5c.is_empty() {
            header.x5c = Some(self.x5c.clone());
        }
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| {
            // The key was checked when it was loaded: rare, and the caller must fail closed.
            tracing::error!(kid = %self.kid, error = %e, "signing failed");
            AuthError::new(Reason::SigningFailed, "varco could not sign with the ente's key")
        })
    }
}

/// The `privateKey` octets of a PKCS#8 `PrivateKeyInfo` (RFC 5208): SEQUENCE { INTEGER
/// version, SEQUENCE algorithm, OCTET STRING privateKey, ... }.
fn pkcs1_of_pkcs8(der: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, content, rest).
    fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, b) = b.split_first()?;
        let (len, b) = if first < 0x80 {
            (usize::from(first), b)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            (b[..n].iter().fold(0usize, |l, &x| (l << 8) | usize::from(x)), &b[n..])
        };
        (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
    }
    let (0x30, info, _) = element(der)? else { return None };
    let (0x02, _, rest) = element(info)? else { return None };
    let (0x30, _, rest) = element(rest)? else { return None };
    let (0x04, key, _) = element(rest)? else { return None };
    Some(key)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// An ente's keys: the first signs, all are published.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// `{"keys": [...]}` of every key's public half.
    pub jwks: Bytes,
}

impl KeySet {
    /// A set of at least one key.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("no signing key".into());
        }
        let set = serde_json::json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
        let jwks = Bytes::from(serde_json::to_vec(&set).map_err(|e| e.to_string())?);
        Ok(Self { keys, jwks })
    }

    /// The key that signs.
    pub fn active(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The key with this `kid` (e.g. the one registered on PDND).
    pub fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh P-256 key as PKCS#8 PEM (ring's own generator; no files).
    pub(crate) fn p256_pem() -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let b64 = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")).into_bytes()
    }

    #[test]
    fn a_p256_key_signs_what_its_jwk_verifies() {
        let k = SigningKey::from_pem("c_e783-2026", &p256_pem(), None).unwrap();
        let set = KeySet::new(vec![k, SigningKey::from_pem("next", &p256_pem(), None).unwrap()]).unwrap();
        let token = set.active().sign(&serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}), "JWT", true).unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&set.jwks).unwrap();
        assert_eq!(jwks.keys.len(), 2, "both keys are published");
        let jwk = jwks.find("c_e783-2026").unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.required_spec_claims.clear();
        v.validate_aud = false;
        let data =
            jsonwebtoken::decode::<serde_json::Value>(&token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
                .unwrap();
        assert_eq!(data.claims["sub"], "x");
        assert!(data.header.x5c.is_none(), "no chain configured, none sent");
        // The other key does not verify it.
        let other = jsonwebtoken::DecodingKey::from_jwk(jwks.find("next").unwrap()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &other, &v).is_err());
    }

    #[test]
    fn pkcs8_structure_is_read_strictly() {
        // SEQUENCE { INTEGER 0, SEQUENCE {}, OCTET STRING "ab" }
        let ok = [0x30, 0x09, 0x02, 0x01, 0x00, 0x30, 0x00, 0x04, 0x02, b'a', b'b'];
        assert_eq!(pkcs1_of_pkcs8(&ok), Some(&b"ab"[..]));
        assert_eq!(pkcs1_of_pkcs8(&ok[..6]), None, "truncated");
        let mut wrong = ok;
        wrong[7] = 0x03;
        assert_eq!(pkcs1_of_pkcs8(&wrong), None, "a BIT STRING is not the key");
        assert_eq!(pkcs1_of_pkcs8(&[0x30, 0x85, 1, 1, 1, 1, 1]), None, "absurd length");
        assert_eq!(pkcs1_of_pkcs8(&[]), None);
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        assert!(SigningKey::from_pem("k", b"not a key", None).unwrap_err().contains("PKCS#8"));
        let garbage = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(SigningKey::from_pem("k", garbage, None).is_err());
        assert!(KeySet::new(Vec::new()).is_err());
        let chain = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
        assert!(SigningKey::from_pem("k", &p256_pem(), Some(chain)).is_err());
    }
}
