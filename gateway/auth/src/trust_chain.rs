//! OIDC Federation 1.0 trust chains, verified: the statements that link an entity (an OP) to a
//! Trust Anchor varco was configured with, each signature checked with the keys its superior
//! vouches for, the superiors' metadata policies applied to the entity's metadata. The
//! statements are fetched elsewhere (varco-outbound): this is the pure part, socket-free.
//!
//! A chain is `[leaf Entity Configuration, statement about the leaf by its superior, …,
//! statement by the Trust Anchor]`: the leaf signs its own configuration with a key the next
//! statement lists; each statement is signed with a key of its issuer, which the statement
//! after it lists; the last one is signed with a key of the Trust Anchor, pinned in varco's
//! configuration (never taken from the network).

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Why a chain was refused. Never carries a statement or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("statement {index}: {detail}")]
    Statement { index: usize, detail: String },
    #[error("the chain is empty")]
    Empty,
    #[error("metadata policy: {0}")]
    Policy(String),
}

/// A verified chain: the entity's metadata of `kind` after the superiors' policies, and when the
/// chain stops being valid (the earliest `exp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub subject: String,
    pub metadata: Map<String, Value>,
    pub expires_at: u64,
}

const STATEMENT_TYPE: &str = "entity-statement+jwt";

/// The keys a statement must be signed with, and how to name their absence.
struct Signers<'a>(&'a JwkSet, &'static str);

const NOT_LISTED: &str = "a key its superior does not list";
const NOT_PINNED: &str = "not a key pinned for the Trust Anchor";
/// Clock skew tolerated between varco and the federation's issuers, in seconds.
const LEEWAY: u64 = 60;

fn bad(index: usize, detail: impl Into<String>) -> ChainError {
    ChainError::Statement { index, detail: detail.into() }
}

/// The claims of `jws` once its signature verifies with one of `keys` (matched by `kid`),
/// `typ` is an entity statement and it is valid at `now`.
fn verified(index: usize, jws: &str, keys: &Signers<'_>, now: u64) -> Result<Map<String, Value>, ChainError> {
    let (keys, whose) = (keys.0, keys.1);
    let header = jsonwebtoken::decode_header(jws).map_err(|e| bad(index, format!("not a JWS: {e}")))?;
    let typ = header.typ.as_deref().unwrap_or("");
    if !typ.eq_ignore_ascii_case(STATEMENT_TYPE) && !typ.eq_ignore_ascii_case("application/entity-statement+jwt") {
        return Err(bad(index, format!("`typ` is `{typ}`, not {STATEMENT_TYPE}")));
    }
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::RS512 | Algorithm::ES256 | Algorithm::PS256) {
        return Err(bad(index, format!("algorithm {:?} is not accepted", header.alg)));
    }
    let kid = header.kid.ok_or_else(|| bad(index, "no `kid`"))?;
    let jwk = keys.find(&kid).ok_or_else(|| bad(index, format!("signed with `{kid}`, {whose}")))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(index, format!("key `{kid}`: {e}")))?;
    let mut v = Validation::new(header.alg);
    // Times are checked below against the caller's clock (testable), audiences do not apply.
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Map<String, Value>>(jws, &key, &v)
        .map_err(|e| bad(index, format!("signature or encoding: {e}")))?;
    let claims = data.claims;
    let time = |name: &str| claims.get(name).and_then(Value::as_u64).ok_or_else(|| bad(index, format!("no `{name}`")));
    let (iat, exp) = (time("iat")?, time("exp")?);
    if exp + LEEWAY <= now {
        return Err(bad(index, "expired"));
    }
    if iat > now + LEEWAY {
        return Err(bad(index, "issued in the future"));
    }
    Ok(claims)
}

fn string<'a>(index: usize, claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, ChainError> {
    claims.get(name).and_then(Value::as_str).ok_or_else(|| bad(index, format!("no `{name}`")))
}

fn jwks_of(index: usize, claims: &Map<String, Value>) -> Result<JwkSet, ChainError> {
    let v = claims.get("jwks").ok_or_else(|| bad(index, "no `jwks`"))?;
    serde_json::from_value(v.clone()).map_err(|e| bad(index, format!("`jwks`: {e}")))
}

/// Verifies `chain` for the entity `subject` up to the Trust Anchor `anchor` (its pinned keys
/// `anchor_keys`) at `now`, and returns the entity's `kind` metadata (`openid_provider`) after
/// policy.
pub fn verify(
    chain: &[String],
    subject: &str,
    anchor: &str,
    anchor_keys: &JwkSet,
    kind: &str,
    now: u64,
) -> Result<Resolved, ChainError> {
    let n = chain.len();
    if n < 2 {
        return Err(ChainError::Empty);
    }
    // Walk from the Trust Anchor down: each statement's keys verify the one before it.
    let mut keys = anchor_keys.clone();
    let mut pinned = true;
    let mut policies = Vec::new();
    let mut expires_at = u64::MAX;
    let mut expected_issuer = anchor.to_owned();
    let mut leaf_superior = String::new();
    for i in (1..n).rev() {
        let whose = if pinned { NOT_PINNED } else { NOT_LISTED };
        let claims = verified(i, &chain[i], &Signers(&keys, whose), now)?;
        let (iss, sub) = (string(i, &claims, "iss")?, string(i, &claims, "sub")?);
        if iss != expected_issuer {
            return Err(bad(i, format!("issued by `{iss}`, expected `{expected_issuer}`")));
        }
        expires_at = expires_at.min(claims.get("exp").and_then(Value::as_u64).unwrap_or(0));
        if i == n - 1 && iss == sub {
            // The Trust Anchor's own configuration may close the chain: checked with the pinned
            // keys, it changes nothing (its published keys are not taken from the network).
            continue;
        }
        if i == 1 {
            if sub != subject {
                return Err(bad(i, format!("about `{sub}`, not `{subject}`")));
            }
            leaf_superior = iss.to_owned();
        }
        if let Some(p) = claims.get("metadata_policy").and_then(|p| p.get(kind)) {
            policies.push(p.clone());
        }
        keys = jwks_of(i, &claims)?;
        pinned = false;
        expected_issuer = sub.to_owned();
    }
    if leaf_superior.is_empty() {
        return Err(bad(1, format!("no statement about `{subject}` by a superior")));
    }
    // The leaf: self-issued, signed with a key its superior listed.
    let leaf = verified(0, &chain[0], &Signers(&keys, NOT_LISTED), now)?;
    let (iss, sub) = (string(0, &leaf, "iss")?, string(0, &leaf, "sub")?);
    if iss != subject || sub != subject {
        return Err(bad(0, format!("`iss`/`sub` are `{iss}`/`{sub}`, not `{subject}`")));
    }
    let hints: Vec<&str> = leaf
        .get("authority_hints")
        .and_then(Value::as_array)
        .map_or(vec![], |a| a.iter().filter_map(Value::as_str).collect());
    let superior = leaf_superior.as_str();
    if !hints.contains(&superior) {
        return Err(bad(0, format!("`authority_hints` do not name `{superior}`")));
    }
    expires_at = expires_at.min(leaf.get("exp").and_then(Value::as_u64).unwrap_or(0));
    let mut metadata = leaf
        .get("metadata")
        .and_then(|m| m.get(kind))
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| bad(0, format!("no `{kind}` metadata")))?;
    // Superior first: the Trust Anchor's policy, then each one below it.
    for p in policies {
        apply_policy(&mut metadata, &p)?;
    }
    Ok(Resolved { subject: subject.to_owned(), metadata, expires_at })
}

fn as_set(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// Applies one superior's policy for a metadata kind (`{parameter: {operator: value}}`):
/// `value`, `add`, `default`, then the checks `one_of`, `subset_of`, `superset_of`,
/// `essential`. An operator varco does not know fails the chain (deny by default).
pub fn apply_policy(metadata: &mut Map<String, Value>, policy: &Value) -> Result<(), ChainError> {
    let policy = policy.as_object().ok_or_else(|| ChainError::Policy("not an object".into()))?;
    for (param, ops) in policy {
        let ops = ops.as_object().ok_or_else(|| ChainError::Policy(format!("`{param}`: not an object")))?;
        for op in ops.keys() {
            if !matches!(
                op.as_str(),
                "value" | "add" | "default" | "one_of" | "subset_of" | "superset_of" | "essential"
            ) {
                return Err(ChainError::Policy(format!("`{param}`: unknown operator `{op}`")));
            }
        }
        if let Some(v) = ops.get("value") {
            if v.is_null() {
                metadata.remove(param);
            } else {
                metadata.insert(param.clone(), v.clone());
            }
        }
        if let Some(add) = ops.get("add") {
            let mut cur = metadata.get(param).map(as_set).unwrap_or_default();
            for a in as_set(add) {
                if !cur.contains(&a) {
                    cur.push(a);
                }
            }
            metadata.insert(param.clone(), Value::Array(cur));
        }
        if let Some(d) = ops.get("default") {
            metadata.entry(param.clone()).or_insert_with(|| d.clone());
        }
        if let Some(allowed) = ops.get("one_of") {
            if let Some(v) = metadata.get(param) {
                if !as_set(allowed).contains(v) {
                    return Err(ChainError::Policy(format!("`{param}` is not one of the allowed values")));
                }
            }
        }
        if let Some(allowed) = ops.get("subset_of") {
            if let Some(v) = metadata.get(param) {
                let allowed = as_set(allowed);
                let kept: Vec<Value> = as_set(v).into_iter().filter(|x| allowed.contains(x)).collect();
                if kept.is_empty() {
                    metadata.remove(param);
                } else {
                    metadata.insert(param.clone(), Value::Array(kept));
                }
            }
        }
        if let Some(required) = ops.get("superset_of") {
            if let Some(v) = metadata.get(param) {
                let have = as_set(v);
                if !as_set(required).iter().all(|r| have.contains(r)) {
                    return Err(ChainError::Policy(format!("`{param}` lacks values its superior requires")));
                }
            }
        }
        if ops.get("essential") == Some(&Value::Bool(true)) && !metadata.contains_key(param) {
            return Err(ChainError::Policy(format!("`{param}` is essential and missing")));
        }
    }
    Ok(())
}

/// The claims of a compact JWS without verifying it: only to learn where to fetch next (every
/// statement used is verified by [`verify`]).
fn unverified(jws: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let part = jws.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The Entity Configuration URL of an entity id.
pub fn configuration_url(entity_id: &str) -> String {
    format!("{}/.well-known/openid-federation", entity_id.trim_end_matches('/'))
}

/// Fetches and verifies the chain from `subject` to the Trust Anchor `anchor`: the subject's
/// Entity Configuration, the anchor's own (checked with the pinned keys, for its fetch
/// endpoint) and the anchor's statement about the subject. The subject must name the anchor in
/// its `authority_hints` (SPID and CIE OPs are the Trust Anchor's direct subordinates; chains
/// through intermediates are refused for now).
pub async fn resolve(
    fetch: &dyn varco_core::fetch::Fetch,
    subject: &str,
    anchor: &str,
    anchor_keys: &JwkSet,
    kind: &str,
    now: u64,
    timeout: std::time::Duration,
) -> Result<Resolved, ChainError> {
    let get = |url: String, index: usize| async move {
        let body = fetch.get(&url, timeout).await.map_err(|e| bad(index, format!("`{url}`: {e}")))?;
        String::from_utf8(body.to_vec()).map_err(|_| bad(index, format!("`{url}`: not text")))
    };
    let leaf = get(configuration_url(subject), 0).await?;
    let hints = unverified(&leaf)
        .and_then(|c| c.get("authority_hints").cloned())
        .and_then(|h| serde_json::from_value::<Vec<String>>(h).ok())
        .unwrap_or_default();
    if !hints.iter().any(|h| h == anchor) {
        return Err(bad(
            0,
            format!("`authority_hints` do not name the Trust Anchor `{anchor}` (intermediates are not supported)"),
        ));
    }
    let ta = get(configuration_url(anchor), 2).await?;
    let ta_claims = verified(2, &ta, &Signers(anchor_keys, NOT_PINNED), now)?;
    let endpoint = ta_claims
        .get("metadata")
        .and_then(|m| m.get("federation_entity"))
        .and_then(|m| m.get("federation_fetch_endpoint"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad(2, "the Trust Anchor publishes no `federation_fetch_endpoint`"))?;
    let sub: String = url::form_urlencoded::byte_serialize(subject.as_bytes()).collect();
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    let about = get(format!("{endpoint}{sep}sub={sub}"), 1).await?;
    verify(&[leaf, about, ta], subject, anchor, anchor_keys, kind, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use serde_json::json;

    fn rsa(kid: &str) -> SigningKey {
        SigningKey::from_pem(kid, &crate::federation::tests::rsa_pem(), None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn jwks(keys: &[&SigningKey]) -> Value {
        json!({"keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>()})
    }

    fn sign(k: &SigningKey, claims: Value) -> String {
        k.sign(&claims, STATEMENT_TYPE, false).unwrap_or_else(|e| panic!("{e:?}"))
    }

    const TA: &str = "https://registry.spid.gov.it/";
    const OP: &str = "https://id.lepida.it/oidc/op";
    const NOW: u64 = 1_800_000_000;

    struct Fed {
        ta: SigningKey,
        op: SigningKey,
    }

    impl Fed {
        fn new() -> Self {
            Self { ta: rsa("ta-1"), op: rsa("op-fed-1") }
        }
        fn leaf(&self, exp: u64, hints: &[&str]) -> String {
            sign(
                &self.op,
                json!({"iss": OP, "sub": OP, "iat": NOW - 10, "exp": exp, "jwks": jwks(&[&self.op]),
                       "authority_hints": hints,
                       "metadata": {"openid_provider": {"issuer": OP, "scopes_supported": ["openid", "offline_access", "profile"],
                                                        "acr_values_supported": ["https://www.spid.gov.it/SpidL1", "https://www.spid.gov.it/SpidL2"]}}}),
            )
        }
        fn about_op(&self, policy: Value) -> String {
            sign(
                &self.ta,
                json!({"iss": TA, "sub": OP, "iat": NOW - 10, "exp": NOW + 3600, "jwks": jwks(&[&self.op]),
                       "metadata_policy": {"openid_provider": policy}}),
            )
        }
        fn pinned(&self) -> JwkSet {
            serde_json::from_value(jwks(&[&self.ta])).unwrap_or_else(|e| panic!("{e}"))
        }
    }

    #[test]
    fn a_chain_to_the_pinned_anchor_gives_the_metadata_after_policy() {
        let f = Fed::new();
        let policy = json!({"scopes_supported": {"subset_of": ["openid", "offline_access"]},
                            "contacts": {"default": ["ops@registry.example"]}, "issuer": {"essential": true}});
        let chain = vec![f.leaf(NOW + 7200, &[TA]), f.about_op(policy.clone())];
        let r = verify(&chain, OP, TA, &f.pinned(), "openid_provider", NOW).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.metadata["scopes_supported"], json!(["openid", "offline_access"]));
        assert_eq!(r.metadata["contacts"], json!(["ops@registry.example"]));
        assert_eq!(r.expires_at, NOW + 3600, "the earliest exp of the chain");
        // The Trust Anchor's own configuration may close the chain.
        let ta_ec = sign(&f.ta, json!({"iss": TA, "sub": TA, "iat": NOW, "exp": NOW + 60, "jwks": jwks(&[&f.ta])}));
        let r = verify(&[chain[0].clone(), chain[1].clone(), ta_ec], OP, TA, &f.pinned(), "openid_provider", NOW)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.expires_at, NOW + 60);
    }

    #[test]
    fn every_broken_link_refuses_the_chain() {
        let f = Fed::new();
        let good_leaf = f.leaf(NOW + 7200, &[TA]);
        let about = f.about_op(json!({}));
        let check = |chain: Vec<String>, pinned: &JwkSet| verify(&chain, OP, TA, pinned, "openid_provider", NOW);
        let index = |e: ChainError| match e {
            ChainError::Statement { index, .. } => index,
            other => panic!("{other}"),
        };
        // The OP signs with a key the Trust Anchor does not list for it.
        let stranger = rsa("op-fed-1");
        let forged = sign(
            &stranger,
            json!({"iss": OP, "sub": OP, "iat": NOW, "exp": NOW + 60, "jwks": jwks(&[&stranger]),
            "authority_hints": [TA], "metadata": {"openid_provider": {"issuer": OP}}}),
        );
        assert_eq!(check(vec![forged, about.clone()], &f.pinned()).map_err(index), Err(0));
        // The statement about the OP is not signed by the pinned Trust Anchor key.
        let other_ta = Fed::new();
        assert_eq!(check(vec![good_leaf.clone(), about.clone()], &other_ta.pinned()).map_err(index), Err(1));
        // Expired, or about someone else, or the leaf does not name its superior.
        assert_eq!(check(vec![f.leaf(NOW - 3600, &[TA]), about.clone()], &f.pinned()).map_err(index), Err(0));
        let elsewhere = verify(
            &[good_leaf.clone(), about.clone()],
            "https://other.example/op",
            TA,
            &f.pinned(),
            "openid_provider",
            NOW,
        );
        assert!(elsewhere.is_err());
        assert_eq!(
            check(vec![f.leaf(NOW + 60, &["https://other-ta.example/"]), about.clone()], &f.pinned()).map_err(index),
            Err(0)
        );
        // Only the leaf, or the Trust Anchor's configuration without a statement about the OP.
        assert_eq!(check(vec![good_leaf.clone()], &f.pinned()), Err(ChainError::Empty));
        let ta_ec = sign(&f.ta, json!({"iss": TA, "sub": TA, "iat": NOW, "exp": NOW + 60, "jwks": jwks(&[&f.ta])}));
        assert!(check(vec![good_leaf.clone(), ta_ec], &f.pinned()).is_err());
        // A policy operator varco does not know, or one the metadata breaks.
        let unknown = f.about_op(json!({"issuer": {"regexp": ".*"}}));
        assert!(matches!(check(vec![good_leaf.clone(), unknown], &f.pinned()), Err(ChainError::Policy(_))));
        let essential = f.about_op(json!({"logo_uri": {"essential": true}}));
        assert!(matches!(check(vec![good_leaf.clone(), essential], &f.pinned()), Err(ChainError::Policy(_))));
        // Not an entity statement at all.
        let plain = f.op.sign(&json!({"iss": OP}), "JWT", false).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(check(vec![plain, about], &f.pinned()).map_err(index), Err(0));
    }
}
