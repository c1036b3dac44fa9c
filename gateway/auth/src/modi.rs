//! ModI message-level patterns (AgID interoperability guidelines) on top of the bearer token:
//! INTEGRITY_REST_01/02 (`Digest` + `Agid-JWT-Signature`), AUDIT_REST_01/02
//! (`Agid-JWT-TrackingEvidence`, bound to the PDND voucher in 02), response signing, and the
//! `jti` replay guard they share.
//!
//! Every failure names the check that failed: the field's pain is opaque "invalid request"
//! errors when a digest is hex, a header is missing or clocks are skewed.

use crate::error::{AuthError, Reason};
use crate::jti::ReplayGuard;
use crate::jwt::Issuer;
use crate::keys::{KeySet, SigningKey};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use varco_config::{AuditPattern, IntegrityPattern, ModiAccess};
use varco_core::fetch::Fetch;
use varco_core::headers::{AGID_JWT_SIGNATURE, AGID_JWT_TRACKING_EVIDENCE, DIGEST};
use varco_core::Identity;

const MAX_JWS_BYTES: usize = 16 * 1024;
/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2), required only when the certificate lists EKUs.
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// What AUDIT_REST_* tells about the end user, for the audit trail and the back-office.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub user_id: String,
    pub user_location: String,
    pub loa: String,
    pub jti: String,
}

/// A route's ModI checks, built once per configuration.
pub struct ModiVerifier {
    cfg: ModiAccess,
    algorithms: Vec<Algorithm>,
    anchors: Vec<TrustAnchor<'static>>,
    keys: Option<Arc<Issuer>>,
    signer: Option<Arc<KeySet>>,
    tenant: String,
}

impl std::fmt::Debug for ModiVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModiVerifier").field("cfg", &self.cfg).finish()
    }
}

fn bad(kind: Reason, detail: impl Into<String>) -> AuthError {
    AuthError::new(kind, detail)
}

impl ModiVerifier {
    /// Reads the trust anchors (I/O at build time).
    pub fn build(
        tenant: &str,
        cfg: &ModiAccess,
        keys: Option<Arc<Issuer>>,
        signer: Option<Arc<KeySet>>,
    ) -> Result<Self, String> {
        let mut anchors = Vec::new();
        if let Some(path) = &cfg.trust_anchors {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("`{}`: {e}", path.display()))?;
                let anchor = webpki::anchor_from_trusted_cert(&cert)
                    .map_err(|e| format!("`{}`: not a CA certificate: {e:?}", path.display()))?;
                anchors.push(anchor.to_owned());
            }
            if anchors.is_empty() {
                return Err(format!("`{}` holds no certificate", path.display()));
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            algorithms: cfg.algorithms.iter().filter_map(|a| a.parse().ok()).collect(),
            anchors,
            keys,
            signer,
            tenant: tenant.to_owned(),
        })
    }

    pub fn signs_responses(&self) -> bool {
        self.cfg.sign_responses
    }

    /// Checks a request's integrity and audit headers against its exact body bytes.
    pub async fn check_request(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        id: &Identity,
        fetch: &dyn Fetch,
        replay: &ReplayGuard,
    ) -> Result<Option<AuditRecord>, AuthError> {
        if let Some(pattern) = self.cfg.integrity {
            self.check_integrity(pattern, headers, body, fetch, replay).await?;
        }
        match self.cfg.audit {
            Some(pattern) => self.check_audit(pattern, headers, id, fetch, replay).await.map(Some),
            None => Ok(None),
        }
    }

    /// Checks a provider's signed answer (INTEGRITY_REST_02 on the response, as a consumer
    /// receives it): `Digest` over the exact body, `Agid-JWT-Signature` by a key of the
    /// configured issuer covering it, meant for this consumer (`aud`), used once.
    pub async fn check_response(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        fetch: &dyn Fetch,
        replay: &ReplayGuard,
    ) -> Result<(), AuthError> {
        self.check_integrity(IntegrityPattern::Rest02, headers, body, fetch, replay).await
    }

    async fn check_integrity(
        &self,
        pattern: IntegrityPattern,
        headers: &HeaderMap,
        body: &[u8],
        fetch: &dyn Fetch,
        replay: &ReplayGuard,
    ) -> Result<(), AuthError> {
        let digest = headers
            .get(&DIGEST)
            .ok_or_else(|| bad(Reason::ModiDigestMalformed, "INTEGRITY_REST needs a `Digest` header"))?;
        let digest_text =
            digest.to_str().map_err(|_| bad(Reason::ModiDigestMalformed, "the `Digest` header is not text"))?;
        let want = parse_digest(digest_text)?;
        let got = ring::digest::digest(&ring::digest::SHA256, body);
        if got.as_ref() != want.as_slice() {
            return Err(bad(
                Reason::ModiDigestMismatch,
                format!(
                    "the body ({} bytes) hashes to SHA-256={}, not to the `Digest` sent: altered after signing?",
                    body.len(),
                    STANDARD.encode(got.as_ref())
                ),
            ));
        }
        let token = header_text(headers, &AGID_JWT_SIGNATURE, Reason::ModiSignatureInvalid)?;
        let kind = Reason::ModiSignatureInvalid;
        let claims =
            self.verify_jws(token, kind, "Agid-JWT-Signature", pattern == IntegrityPattern::Rest01, fetch).await?;
        let signed = claims
            .get("signed_headers")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(kind, "Agid-JWT-Signature has no `signed_headers` array"))?;
        let signed_value = |name: &str| {
            signed
                .iter()
                .filter_map(Value::as_object)
                .find_map(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        };
        match signed_value("digest") {
            None => return Err(bad(kind, "`signed_headers` does not cover `digest`")),
            Some(v) if v.as_str() != Some(digest_text) => {
                return Err(bad(kind, "the `digest` in `signed_headers` differs from the `Digest` header"))
            }
            _ => {}
        }
        let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        match (signed_value("content-type"), content_type) {
            (None, _) => return Err(bad(kind, "`signed_headers` does not cover `content-type`")),
            (Some(v), Some(ct)) if v.as_str() == Some(ct) => {}
            (Some(_), None) => return Err(bad(kind, "`content-type` is signed but the request has none")),
            (Some(_), Some(_)) => {
                return Err(bad(kind, "the `content-type` in `signed_headers` differs from the `Content-Type` header"))
            }
        }
        self.once(&claims, kind, "Agid-JWT-Signature", replay).await
    }

    async fn check_audit(
        &self,
        pattern: AuditPattern,
        headers: &HeaderMap,
        id: &Identity,
        fetch: &dyn Fetch,
        replay: &ReplayGuard,
    ) -> Result<AuditRecord, AuthError> {
        let kind = Reason::ModiAuditInvalid;
        let token = header_text(headers, &AGID_JWT_TRACKING_EVIDENCE, kind)?;
        let claims = self.verify_jws(token, kind, "Agid-JWT-TrackingEvidence", false, fetch).await?;
        let field = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| bad(kind, format!("Agid-JWT-TrackingEvidence lacks the `{k}` claim")))
        };
        let record = AuditRecord {
            user_id: field("userID")?,
            user_location: field("userLocation")?,
            loa: field("LoA")?,
            jti: field("jti")?,
        };
        if pattern == AuditPattern::Rest02 {
            // The voucher binds the evidence: its `digest.value` is the SHA-256 (hex) of the JWS.
            let bound = id.voucher_digest.as_deref().ok_or_else(|| {
                bad(kind, "AUDIT_REST_02: the voucher has no `digest` claim binding the tracking evidence")
            })?;
            let h = hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
            if !bound.eq_ignore_ascii_case(&h) {
                return Err(bad(
                    kind,
                    "AUDIT_REST_02: the tracking evidence's SHA-256 differs from the voucher's `digest`",
                ));
            }
        }
        self.once(&claims, kind, "Agid-JWT-TrackingEvidence", replay).await?;
        Ok(record)
    }

    /// ModI JWTs are single-use: each `jti` once while valid.
    async fn once(&self, claims: &Value, kind: Reason, what: &str, replay: &ReplayGuard) -> Result<(), AuthError> {
        let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
            return Err(bad(kind, format!("{what} lacks the `jti` claim (needed against replay)")));
        };
        // Marked until the JWT is no longer accepted: `exp` plus the leeway.
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0).saturating_add(self.cfg.leeway.0.as_secs());
        let scope = format!("{}/{what}/{}", self.tenant, claims.get("iss").and_then(Value::as_str).unwrap_or(""));
        if !replay.first_use(&scope, jti, exp).await {
            let mut e = bad(Reason::TokenReplayed, format!("this {what} (`jti`) was already used"));
            // A 401 always says how to authenticate (RFC 9110 §11.6.1): a new, signed request.
            e.challenge = http::HeaderValue::from_str(&format!(
                "Bearer realm=\"{}\", error=\"invalid_request\", error_description=\"this {what} was already used\"",
                self.tenant
            ))
            .ok();
            return Err(e);
        }
        Ok(())
    }

    /// Verifies a ModI JWS: algorithm allow-list, key by `x5c` chain (`require_x5c`) or by `kid`
    /// in the keys issuer's JWKS, signature, `aud`, `exp`, `nbf`, `iat`. Returns the claims.
    async fn verify_jws(
        &self,
        token: &str,
        kind: Reason,
        what: &str,
        require_x5c: bool,
        fetch: &dyn Fetch,
    ) -> Result<Value, AuthError> {
        if token.len() > MAX_JWS_BYTES {
            return Err(bad(kind, format!("{what} is longer than {MAX_JWS_BYTES} bytes")));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| bad(kind, format!("{what}: malformed header: {e}")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(bad(kind, format!("{what}: algorithm {:?} is not accepted", header.alg)));
        }
        if header.typ.as_deref().is_some_and(|t| !crate::jose::typ_is(t, "JWT")) {
            return Err(bad(kind, format!("{what}: `typ` must be JWT")));
        }
        crate::jose::check_crit(token).map_err(|e| bad(kind, format!("{what}: {e}")))?;
        let key = if require_x5c {
            let chain = header.x5c.as_ref().filter(|c| !c.is_empty()).ok_or_else(|| {
                bad(kind, format!("{what}: INTEGRITY_REST_01 needs the signing certificate in `x5c`"))
            })?;
            self.key_from_chain(chain).map_err(|e| bad(kind, format!("{what}: {e}")))?
        } else {
            let kid = header.kid.as_deref().filter(|k| k.len() <= 256).ok_or_else(|| {
                bad(kind, format!("{what}: the JOSE header needs a `kid` (its key is resolved through PDND)"))
            })?;
            let issuer = self.keys.as_ref().ok_or_else(|| bad(kind, format!("{what}: no keys issuer configured")))?;
            issuer
                .key_refreshing(Some(kid), fetch)
                .await
                .ok_or_else(|| bad(kind, format!("{what}: no key with this `kid` is known")))?
        };
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.cfg.leeway.0.as_secs();
        v.validate_nbf = true;
        v.set_audience(&[self.cfg.audience.as_str()]);
        v.required_spec_claims = HashSet::from(["exp".to_owned(), "aud".to_owned()]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "has expired (exp)".to_owned(),
                K::ImmatureSignature => "is not valid yet (nbf)".to_owned(),
                K::InvalidAudience => format!("is not meant for this e-service (aud must be `{}`)", self.cfg.audience),
                K::InvalidSignature => "signature does not verify".to_owned(),
                K::InvalidAlgorithm => "key does not fit the algorithm".to_owned(),
                K::MissingRequiredClaim(c) => format!("lacks the `{c}` claim"),
                other => format!("is invalid: {other:?}"),
            };
            bad(kind, format!("{what} {why}"))
        })?;
        let iat = data
            .claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(kind, format!("{what} lacks the `iat` claim")))?;
        if iat > now_s() + self.cfg.leeway.0.as_secs() {
            return Err(bad(kind, format!("{what} was issued in the future (iat): check the signer's clock")));
        }
        Ok(data.claims)
    }

    /// The public key of `x5c[0]`, after checking the chain up to a trust anchor.
    fn key_from_chain(&self, chain: &[String]) -> Result<DecodingKey, String> {
        let ders: Vec<CertificateDer<'static>> = chain
            .iter()
            .map(|c| STANDARD.decode(c).map(CertificateDer::from).map_err(|_| "`x5c` is not base64 DER".to_owned()))
            .collect::<Result<_, _>>()?;
        let ee =
            webpki::EndEntityCert::try_from(&ders[0]).map_err(|e| format!("`x5c[0]` is not a certificate: {e:?}"))?;
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &ders[1..],
            UnixTime::now(),
            webpki::KeyUsage::required_if_present(EKU_CLIENT_AUTH),
            None,
            None,
        )
        .map_err(|e| format!("the `x5c` certificate is not trusted: {e:?}"))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&ders[0]).map_err(|e| format!("`x5c[0]` cannot be read: {e}"))?;
        let spki = cert.public_key();
        let raw = spki.subject_public_key.data.as_ref();
        match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.113549.1.1.1" => Ok(DecodingKey::from_rsa_der(raw)),
            "1.2.840.10045.2.1" => Ok(DecodingKey::from_ec_der(raw)),
            other => Err(format!("the certificate's key type ({other}) is not RSA or EC")),
        }
    }

    /// `Digest` and `Agid-JWT-Signature` for a response body, signed with the ente's key.
    /// An error when the answer cannot be signed: the route must then fail closed, never
    /// answer unsigned.
    pub fn sign_response(
        &self,
        content_type: Option<&HeaderValue>,
        body: &[u8],
        id: &Identity,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, AuthError> {
        let Some(signer) = &self.signer else {
            return Err(AuthError::new(Reason::SigningFailed, "this route signs answers but has no signing key"));
        };
        let aud = id.client_id.as_deref().unwrap_or(&id.subject);
        let content_type = content_type.and_then(|v| v.to_str().ok());
        integrity_headers(signer.active(), &self.cfg.audience, None, aud, content_type, body, false)
    }
}

/// INTEGRITY_REST_02 on a request varco sends: `Digest` of the body and an
/// `Agid-JWT-Signature` by `key` (the ente's key registered on PDND, by `kid`; with `x5c`
/// when the key has a chain, as INTEGRITY_REST_01 wants) covering `digest` and
/// `content-type`, for `audience` (the e-service's), from `issuer` (the ente's PDND client
/// id). The same checks [`ModiVerifier`] makes accept it.
pub fn sign_request(
    key: &SigningKey,
    issuer: &str,
    audience: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<(HeaderName, HeaderValue)>, AuthError> {
    integrity_headers(key, issuer, Some(issuer), audience, content_type, body, true)
}

/// Who stands behind an outbound call, for AUDIT_REST: `userID`, `userLocation`, `LoA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedUser {
    pub user_id: String,
    pub user_location: String,
    pub loa: String,
}

/// An AUDIT_REST_02 `Agid-JWT-TrackingEvidence` signed by `key` for a call to `audience`
/// under `purpose_id`, and the SHA-256 (hex) of the JWS that the voucher's `digest` must
/// carry. Single use: a fresh `jti` and `dnonce` every time.
pub fn tracking_evidence(
    key: &SigningKey,
    issuer: &str,
    audience: &str,
    purpose_id: &str,
    user: &TrackedUser,
) -> Result<(String, String), AuthError> {
    let now = now_s();
    let claims = serde_json::json!({
        "iss": issuer, "aud": audience, "purposeId": purpose_id,
        "iat": now, "nbf": now, "exp": now + 300,
        "jti": format!("{:032x}", fastrand::u128(..)),
        "dnonce": fastrand::u64(1_000_000_000_000..10_000_000_000_000),
        "userID": user.user_id, "userLocation": user.user_location, "LoA": user.loa,
    });
    let token = key.sign(&claims, "JWT", false)?;
    let digest = hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    Ok((token, digest))
}

/// `Digest` and an `Agid-JWT-Signature` whose `signed_headers` cover it and the content type.
fn integrity_headers(
    key: &SigningKey,
    iss: &str,
    sub: Option<&str>,
    aud: &str,
    content_type: Option<&str>,
    body: &[u8],
    with_x5c: bool,
) -> Result<Vec<(HeaderName, HeaderValue)>, AuthError> {
    let digest = format!("SHA-256={}", STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, body)));
    let mut signed = vec![serde_json::json!({ "digest": digest })];
    if let Some(ct) = content_type {
        signed.push(serde_json::json!({ "content-type": ct }));
    }
    let now = now_s();
    let mut claims = serde_json::json!({
        "iss": iss, "aud": aud,
        "iat": now, "nbf": now, "exp": now + 300,
        "jti": format!("{:032x}", fastrand::u128(..)),
        "signed_headers": signed,
    });
    if let Some(sub) = sub {
        claims["sub"] = serde_json::json!(sub);
    }
    let token = key.sign(&claims, "JWT", with_x5c)?;
    let text = |v: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| AuthError::new(Reason::SigningFailed, "the signature is not a header value"))
    };
    Ok(vec![(DIGEST.clone(), text(&digest)?), (AGID_JWT_SIGNATURE.clone(), text(&token)?)])
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName, kind: Reason) -> Result<&'a str, AuthError> {
    headers
        .get(name)
        .ok_or_else(|| bad(kind, format!("this e-service needs the `{name}` header")))?
        .to_str()
        .map_err(|_| bad(kind, format!("the `{name}` header is not text")))
}

/// `SHA-256=<base64 of 32 bytes>` (RFC 3230); hex and other algorithms are named as such.
pub fn parse_digest(v: &str) -> Result<Vec<u8>, AuthError> {
    let kind = Reason::ModiDigestMalformed;
    let (alg, value) = v.split_once('=').ok_or_else(|| bad(kind, "`Digest` must be `SHA-256=<base64>`"))?;
    if !alg.trim().eq_ignore_ascii_case("SHA-256") {
        return Err(bad(kind, format!("`Digest` uses `{}`; ModI requires SHA-256", alg.trim())));
    }
    let value = value.trim();
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(kind, "`Digest` is hex; RFC 3230 and ModI require base64 (`SHA-256=<base64>`)"));
    }
    match STANDARD.decode(value) {
        Ok(b) if b.len() == 32 => Ok(b),
        Ok(b) => Err(bad(kind, format!("`Digest` decodes to {} bytes, a SHA-256 has 32", b.len()))),
        Err(_) => Err(bad(kind, "`Digest` value is not base64")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_forms() {
        let body = b"{\"a\":1}";
        let d = ring::digest::digest(&ring::digest::SHA256, body);
        let good = format!("SHA-256={}", STANDARD.encode(d.as_ref()));
        assert_eq!(parse_digest(&good).ok(), Some(d.as_ref().to_vec()));
        let hexed = format!("SHA-256={}", hex(d.as_ref()));
        let e = parse_digest(&hexed).err().map(|p| (p.reason, p.detail));
        assert!(matches!(e, Some((Reason::ModiDigestMalformed, ref d)) if d.contains("hex")), "{e:?}");
        assert!(parse_digest("MD5=abc").is_err());
        assert!(parse_digest("SHA-256=AAAA").is_err());
        assert!(parse_digest("nonsense").is_err());
    }

    /// No documents to fetch in these tests: the keys come from a JWKS file.
    #[derive(Debug)]
    struct NoFetch;

    #[async_trait::async_trait]
    impl Fetch for NoFetch {
        async fn get(
            &self,
            _url: &str,
            _t: std::time::Duration,
        ) -> Result<bytes::Bytes, varco_core::fetch::FetchError> {
            Err(varco_core::fetch::FetchError("no network in unit tests".into()))
        }

        async fn post_form(
            &self,
            _url: &str,
            _form: String,
            _t: std::time::Duration,
        ) -> Result<(u16, bytes::Bytes), varco_core::fetch::FetchError> {
            Err(varco_core::fetch::FetchError("no network in unit tests".into()))
        }

        async fn get_bearer(
            &self,
            _url: &str,
            _token: &str,
            _t: std::time::Duration,
        ) -> Result<(u16, bytes::Bytes), varco_core::fetch::FetchError> {
            Err(varco_core::fetch::FetchError("no network in unit tests".into()))
        }
    }

    #[tokio::test]
    async fn a_signed_request_passes_the_verifier_and_a_changed_one_does_not() {
        let keys =
            KeySet::new(vec![SigningKey::from_pem("c_e783-2026", &crate::keys::tests::p256_pem(), None).unwrap()])
                .unwrap();
        let dir = std::env::temp_dir().join(format!("varco-modi-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("jwks.json"), &keys.jwks).unwrap();
        let issuer_cfg: varco_config::IssuerConfig = serde_yaml_ng::from_str(&format!(
            "{{issuer: \"https://pdnd\", audiences: [x], jwks_file: \"{}\", algorithms: [ES256]}}",
            dir.join("jwks.json").display()
        ))
        .unwrap();
        let issuer = Arc::new(Issuer::new("c_a662", "pdnd-clients", &issuer_cfg).unwrap());
        let modi: ModiAccess = serde_yaml_ng::from_str(
            "{integrity: INTEGRITY_REST_02, audience: \"https://api.bari.example.it/anpr/v1\", keys_issuer: pdnd-clients}",
        )
        .unwrap();
        let verifier = ModiVerifier::build("c_a662", &modi, Some(issuer), None).unwrap();
        let body = br#"{"codiceFiscale":"RSSMRA80A01H501U"}"#;
        let signed = sign_request(
            keys.active(),
            "client-c_e783",
            "https://api.bari.example.it/anpr/v1",
            Some("application/json"),
            body,
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &signed {
            headers.insert(k.clone(), v.clone());
        }
        let id = Identity::default();
        let guard = ReplayGuard::default();
        verifier.check_request(&headers, body, &id, &NoFetch, &guard).await.unwrap();
        // The same JWT again is a replay; another body breaks the digest.
        let again = verifier.check_request(&headers, body, &id, &NoFetch, &guard).await.unwrap_err();
        assert_eq!(again.reason, Reason::TokenReplayed);
        assert!(again.challenge.is_some(), "a 401 says how to authenticate");
        let signed = sign_request(
            keys.active(),
            "client-c_e783",
            "https://api.bari.example.it/anpr/v1",
            Some("application/json"),
            body,
        )
        .unwrap();
        for (k, v) in &signed {
            headers.insert(k.clone(), v.clone());
        }
        let changed = verifier.check_request(&headers, b"{}", &id, &NoFetch, &guard).await.unwrap_err();
        assert_eq!(changed.reason, Reason::ModiDigestMismatch);
        // Signed for another e-service: refused by audience.
        let other =
            sign_request(keys.active(), "client-c_e783", "https://elsewhere", Some("application/json"), body).unwrap();
        for (k, v) in &other {
            headers.insert(k.clone(), v.clone());
        }
        let aud = verifier.check_request(&headers, body, &id, &NoFetch, &guard).await.unwrap_err();
        assert_eq!(aud.reason, Reason::ModiSignatureInvalid);
    }
}
