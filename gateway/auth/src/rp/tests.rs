//! The callback's checks, one broken answer at a time, against `MockOp`: a canned token
//! endpoint and userinfo (the whole flow against the reference OP is in
//! `tests/scenarios/oidc.rs`; what a real OP never sends is tested here).

use super::providers::RENEW_RETRY;
use super::*;
use crate::federation::tests::rsa_pem;
use crate::keys::SigningKey;
use crate::session::SessionStore;
use bytes::Bytes;
use jsonwebtoken::jwk::JwkSet;
use parking_lot::Mutex;
use std::time::Duration;
use varco_config::FederationConfig;
use varco_config::{Dur, ProviderConfig, ProviderKind};
use varco_core::fetch::FetchError;

const OP: &str = "https://op.example/oidc/op";
const NOW: u64 = 1_800_000_000;

fn key(kid: &str, pem: &[u8]) -> SigningKey {
    SigningKey::from_pem(kid, pem, None).unwrap_or_else(|e| panic!("{e}"))
}

/// A canned OP: the token endpoint's and userinfo's answers as the test sets them.
#[derive(Debug, Default)]
struct MockOp {
    token: Mutex<Value>,
    userinfo: Mutex<String>,
}

#[async_trait::async_trait]
impl Fetch for MockOp {
    async fn get(&self, url: &str, _t: Duration) -> Result<Bytes, FetchError> {
        Err(FetchError(format!("no document at {url} in this test")))
    }

    async fn post_form(&self, _url: &str, form: String, _t: Duration) -> Result<(u16, Bytes), FetchError> {
        assert!(form.contains("client_assertion_type=") && form.contains("code_verifier="), "{form}");
        Ok((200, Bytes::from(self.token.lock().to_string())))
    }

    async fn get_bearer(&self, _url: &str, token: &str, _t: Duration) -> Result<(u16, Bytes), FetchError> {
        assert_eq!(token, "at-1");
        Ok((200, Bytes::from(self.userinfo.lock().clone())))
    }
}

struct Fixture {
    rp: RelyingParty,
    op_key: SigningKey,
    enc_jwk: Value,
    mock: MockOp,
}

fn fixture() -> Fixture {
    let op_key = key("op-1", &rsa_pem());
    let enc_pem = rsa_pem();
    let enc_jwk = key("rp-enc", &enc_pem).public_jwk().clone();
    let mut cfg = crate::federation::tests::cfg(3600);
    cfg.entity_id = "https://servizi.comune.macerata.it/c_e783".into();
    let fed_cfg = FederationConfig {
        trust_anchors: vec![varco_config::TrustAnchorConfig {
            entity_id: "https://registry.example/".into(),
            jwks: json!({"keys": [op_key.public_jwk()]}),
        }],
        providers: vec![ProviderConfig {
            entity_id: OP.into(),
            name: "OP".into(),
            kind: ProviderKind::Spid,
            trust_anchor: None,
        }],
        timeout: Dur(Duration::from_secs(1)),
    };
    let federation = Arc::new(Federation::new(&fed_cfg).unwrap_or_else(|e| panic!("{e}")));
    // The OP as its verified chain described it (the chain itself is trust_chain's tests).
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [op_key.public_jwk()]})).unwrap_or_else(|e| panic!("{e}"));
    federation.chains.lock().insert(
        OP.into(),
        Arc::new(Provider {
            entity_id: OP.into(),
            issuer: OP.into(),
            authorization_endpoint: format!("{OP}/authorization"),
            token_endpoint: format!("{OP}/token"),
            userinfo_endpoint: format!("{OP}/userinfo"),
            revocation_endpoint: None,
            jwks,
            resolved_at: NOW,
            expires_at: NOW + 3600,
        }),
    );
    let signing = KeySet::new(vec![key("rp-sig", &rsa_pem())]).unwrap_or_else(|e| panic!("{e}"));
    let dec = Decrypter::from_pem("rp-enc", &enc_pem).unwrap_or_else(|e| panic!("{e}"));
    let rp = RelyingParty::new("c_e783", &cfg, signing, vec![dec], federation, SessionStore::memory())
        .unwrap_or_else(|e| panic!("{e}"));
    Fixture { rp, op_key, enc_jwk, mock: MockOp::default() }
}

/// The claims of the request object a login sent, and the browser's cookie header.
async fn start(f: &Fixture) -> (Value, HeaderMap) {
    let r = f.rp.begin(&f.mock, &HeaderMap::new(), OP, Some("/c_e783/servizi"), None, NOW).await;
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    let url = url::Url::parse(&r.location).unwrap_or_else(|e| panic!("{e}"));
    let ro = url.query_pairs().find(|(k, _)| k == "request").map(|(_, v)| v.into_owned()).unwrap_or_default();
    let part = ro.split('.').nth(1).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default()).unwrap_or_default();
    let mut h = HeaderMap::new();
    let cookie = r.cookies[0].split(';').next().unwrap_or_default().to_owned();
    h.insert(http::header::COOKIE, cookie.parse().unwrap_or_else(|_| panic!("cookie")));
    (claims, h)
}

fn id_token(k: &SigningKey, ro: &Value, change: impl FnOnce(&mut Value)) -> String {
    let mut c = json!({
        "iss": OP, "sub": "pairwise-7", "aud": ["https://servizi.comune.macerata.it/c_e783"],
        "iat": NOW, "exp": NOW + 300, "nonce": ro["nonce"], "acr": "https://www.spid.gov.it/SpidL2",
    });
    change(&mut c);
    k.sign(&c, "JWT", false).unwrap_or_else(|e| panic!("{e:?}"))
}

fn userinfo_jws(k: &SigningKey, sub: &str) -> String {
    let c = json!({
        "iss": OP, "sub": sub, "aud": "https://servizi.comune.macerata.it/c_e783", "iat": NOW, "exp": NOW + 300,
        "https://attributes.eid.gov.it/fiscal_number": "TINIT-rssmra80a01h501u", "given_name": "Mario",
    });
    k.sign(&c, "JWT", false).unwrap_or_else(|e| panic!("{e:?}"))
}

fn encrypt(jwk: &Value, inner: &str, enc: &str) -> String {
    let mut jwk = jwk.clone();
    jwk["use"] = json!("enc");
    jwk["alg"] = json!("RSA-OAEP");
    let jwk = josekit::jwk::Jwk::from_bytes(jwk.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let encrypter = josekit::jwe::RSA_OAEP.encrypter_from_jwk(&jwk).unwrap_or_else(|e| panic!("{e}"));
    let mut h = josekit::jwe::JweHeader::new();
    h.set_content_encryption(enc);
    h.set_content_type("JWT");
    josekit::jwe::serialize_compact(inner.as_bytes(), &h, &encrypter).unwrap_or_else(|e| panic!("{e}"))
}

async fn finish(f: &Fixture, ro: &Value, headers: &HeaderMap) -> Result<Redirect, RpError> {
    let q = format!("code=c-1&state={}&iss={}", ro["state"].as_str().unwrap_or(""), OP);
    f.rp.finish(&f.mock, headers, Some(&q), NOW + 5).await
}

/// Builds a broken answer for one case: the ID token (given the request object), the userinfo.
type MakeIdToken<'a> = dyn Fn(&Fixture, &Value) -> String + 'a;
type MakeUserinfo<'a> = dyn Fn(&Fixture) -> String + 'a;

fn failure(r: Result<Redirect, RpError>) -> String {
    match r {
        Err(RpError::Failed(m)) => m,
        other => panic!("expected a refused login, got {other:?}"),
    }
}

#[tokio::test]
async fn a_complete_callback_opens_a_session_with_the_normalised_codice_fiscale() {
    let f = fixture();
    let (ro, cookie) = start(&f).await;
    assert_eq!(ro["acr_values"], json!(["https://www.spid.gov.it/SpidL2"]));
    *f.mock.token.lock() = json!({"id_token": id_token(&f.op_key, &ro, |_| {}), "access_token": "at-1"});
    *f.mock.userinfo.lock() = encrypt(&f.enc_jwk, &userinfo_jws(&f.op_key, "pairwise-7"), "A256CBC-HS512");
    let r = finish(&f, &ro, &cookie).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.location, "/c_e783/servizi");
    let sid = r.cookies[0].split(';').next().unwrap_or_default().to_owned();
    let mut h = HeaderMap::new();
    h.insert(http::header::COOKIE, sid.parse().unwrap_or_else(|_| panic!("cookie")));
    let s = f.rp.session(&h, NOW + 10).await.ok().flatten().unwrap_or_else(|| panic!("no session"));
    assert_eq!(s.identity.fiscal_code.as_deref(), Some("RSSMRA80A01H501U"));
    assert_eq!(s.identity.issuer, OP);
    // The same callback again: its state was used.
    assert!(failure(finish(&f, &ro, &cookie).await).contains("state"));
}

#[tokio::test]
async fn an_id_token_outside_the_chain_or_below_the_level_opens_nothing() {
    let stranger = key("op-1", &rsa_pem());
    let cases: Vec<(&str, Box<MakeIdToken<'_>>)> = vec![
        ("does not verify", Box::new(|_, ro| id_token(&stranger, ro, |_| {}))),
        ("outside the OP's trust chain", Box::new(|_, ro| id_token(&key("other", &rsa_pem()), ro, |_| {}))),
        ("below", Box::new(|f, ro| id_token(&f.op_key, ro, |c| c["acr"] = json!("https://www.spid.gov.it/SpidL1")))),
        ("below", Box::new(|f, ro| id_token(&f.op_key, ro, |c| c["acr"] = json!("https://evil.example/SpidL3")))),
        ("nonce", Box::new(|f, ro| id_token(&f.op_key, ro, |c| c["nonce"] = json!("another")))),
        ("aud", Box::new(|f, ro| id_token(&f.op_key, ro, |c| c["aud"] = json!("https://other.example")))),
        ("iss", Box::new(|f, ro| id_token(&f.op_key, ro, |c| c["iss"] = json!("https://other.example")))),
        ("expired", Box::new(|f, ro| id_token(&f.op_key, ro, |c| c["exp"] = json!(NOW - 3600)))),
        ("exp", Box::new(|f, ro| id_token(&f.op_key, ro, |c| drop(c.as_object_mut().map(|m| m.remove("exp")))))),
    ];
    for (want, make) in cases {
        let good_userinfo = |f: &Fixture| encrypt(&f.enc_jwk, &userinfo_jws(&f.op_key, "pairwise-7"), "A256CBC-HS512");
        let why = refusal(&*make, &good_userinfo).await;
        assert!(why.contains(want), "{want}: {why}");
    }
}

/// Why a callback was refused whose OP answered the ID token and userinfo these make.
async fn refusal(id: &MakeIdToken<'_>, userinfo: &MakeUserinfo<'_>) -> String {
    let f = fixture();
    let (ro, cookie) = start(&f).await;
    *f.mock.token.lock() = json!({"id_token": id(&f, &ro), "access_token": "at-1"});
    *f.mock.userinfo.lock() = userinfo(&f);
    failure(finish(&f, &ro, &cookie).await)
}

#[tokio::test]
async fn userinfo_must_be_encrypted_to_the_ente_and_signed_by_the_op_about_the_same_citizen() {
    let other_enc = key("rp-enc", &rsa_pem()).public_jwk().clone();
    let cases: Vec<(&str, Box<MakeUserinfo<'_>>)> = vec![
        ("not encrypted", Box::new(|f| userinfo_jws(&f.op_key, "pairwise-7"))),
        ("not encrypted", Box::new(|_| "{\"sub\":\"pairwise-7\"}".into())),
        ("A128GCM", Box::new(|f| encrypt(&f.enc_jwk, &userinfo_jws(&f.op_key, "pairwise-7"), "A128GCM"))),
        (
            "does not decrypt",
            Box::new(move |f| encrypt(&other_enc, &userinfo_jws(&f.op_key, "pairwise-7"), "A256CBC-HS512")),
        ),
        (
            "signature",
            Box::new(|f| encrypt(&f.enc_jwk, &userinfo_jws(&key("op-1", &rsa_pem()), "pairwise-7"), "A256CBC-HS512")),
        ),
        ("another subject", Box::new(|f| encrypt(&f.enc_jwk, &userinfo_jws(&f.op_key, "pairwise-8"), "A128CBC-HS256"))),
    ];
    for (want, make) in cases {
        let why = refusal(&|f: &Fixture, ro: &Value| id_token(&f.op_key, ro, |_| {}), &*make).await;
        assert!(why.contains(want), "{want}: {why}");
    }
}

#[tokio::test]
async fn the_callback_belongs_to_the_browser_and_the_op_that_started_it() {
    let f = fixture();
    let (ro, cookie) = start(&f).await;
    // Another browser (no login cookie), then an `iss` of another OP: the state is spent.
    assert!(failure(finish(&f, &ro, &HeaderMap::new()).await).contains("browser"));
    let (ro, cookie2) = start(&f).await;
    let q = format!("code=c&state={}&iss=https://other.example", ro["state"].as_str().unwrap_or(""));
    assert!(failure(f.rp.finish(&f.mock, &cookie2, Some(&q), NOW).await).contains("iss"));
    let (ro, cookie3) = start(&f).await;
    let q = format!("error=access_denied&state={}", ro["state"].as_str().unwrap_or(""));
    assert!(failure(f.rp.finish(&f.mock, &cookie3, Some(&q), NOW).await).contains("access_denied"));
    assert!(failure(f.rp.finish(&f.mock, &cookie, None, NOW).await).contains("state"));
}

#[test]
fn return_to_stays_on_the_entes_own_paths() {
    let f = fixture();
    let ok = |r: &str| f.rp.safe_return_to(Some(r));
    assert_eq!(ok("/c_e783/servizi?x=1#top").as_deref(), Some("/c_e783/servizi?x=1#top"));
    assert_eq!(f.rp.safe_return_to(None).as_deref(), Some("/c_e783/"));
    for bad in [
        "https://evil.example/c_e783/",
        "//evil.example/c_e783",
        "/\\evil.example",
        "/c_e7830/x",
        "/c_a662/x",
        "/c_e783/../c_a662",
        "/c_e783/x\r\nSet-Cookie: a=b",
        "c_e783/x",
    ] {
        assert_eq!(ok(bad), None, "{bad}");
    }
}

#[test]
fn cookies_are_read_by_exact_name() {
    let mut h = HeaderMap::new();
    h.append(http::header::COOKIE, "a=1; varco_session_login=L; varco_session=S".parse().unwrap_or_else(|_| panic!()));
    h.append(http::header::COOKIE, "b=2".parse().unwrap_or_else(|_| panic!()));
    assert_eq!(cookie(&h, "varco_session"), Some("S"));
    assert_eq!(cookie(&h, "varco_session_login"), Some("L"));
    assert_eq!(cookie(&h, "b"), Some("2"));
    assert_eq!(cookie(&h, "varco"), None);
}

#[tokio::test]
async fn a_chain_serves_until_renewal_then_until_expiry_while_renewals_fail_then_never() {
    let f = fixture();
    let fed = &f.rp.federation;
    // MockOp serves no statement: every renewal fails.
    let fresh = fed.provider(&f.mock, OP, NOW + 100).await.map(|p| p.resolved_at);
    assert_eq!(fresh, Ok(NOW), "fresh: no fetch");
    let kept = fed.provider(&f.mock, OP, NOW + 2700).await.map(|p| p.resolved_at);
    assert_eq!(kept, Ok(NOW), "renewal failed, the chain is still valid");
    fed.renew_due(&f.mock, NOW + 2701).await;
    assert_eq!(fed.retry_at.lock().get(OP).copied(), Some(NOW + 2701 + RENEW_RETRY), "the next try waits");
    assert_eq!(fed.chains().len(), 1);
    let expired = fed.provider(&f.mock, OP, NOW + 3600).await;
    assert!(matches!(expired, Err(RpError::Untrusted { .. })), "{expired:?}");
    assert!(fed.chains().is_empty(), "an expired chain is dropped");
}
