//! Bearer JWT routes against tokens minted by an independent implementation (PyJWT) and keys
//! served as a JWKS by a real HTTP server: the identity reaches the back-office, and the JWT
//! attack suite is refused 100 %.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use serde_json::json;
use std::time::Duration;
use varco_tests::{Backend, Jose, Varco, LISTENERS};

const MC: &str = "macerata.example.it";
const BA: &str = "bari.example.it";
const ISS: &str = "https://login.example.it";

fn config(be: &Backend) -> String {
    let jwks = format!("http://{}/jwks.json", be.addr);
    format!(
        r#"
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    hosts: [{MC}]
    issuers:
      login: {{issuer: "{ISS}", audiences: [varco-c_e783], jwks_url: "{jwks}", algorithms: [RS256, ES256], leeway: 5s, max_token_bytes: 4096}}
      pdnd: {{issuer: "https://auth.interop.pagopa.it", audiences: [eservice-anagrafe], jwks_url: "{jwks}", algorithms: [RS256], typ: at+jwt}}
    upstreams: {{bo: {{servers: ["{be}"]}}}}
    routes:
      - {{name: anagrafe, path: "/anagrafe/{{*rest}}", methods: [GET], access: {{jwt: {{issuers: [login], scopes: [anagrafe.read]}}}}, to: {{upstream: bo}}}}
      - {{name: open, path: "/open", methods: [GET], access: public, to: {{upstream: bo}}}}
      - {{name: minimal, path: "/minimal", methods: [GET], access: {{jwt: {{issuers: [login]}}}}, to: {{upstream: bo}}, request_headers: {{remove: [X-Varco-Fiscal-Code]}}}}
      - {{name: eservice, path: "/eservice", methods: [GET], access: {{jwt: {{issuers: [pdnd], purposes: [purpose-1], clients: [consumer-1]}}}}, to: {{upstream: bo}}}}
      - {{name: l3, path: "/l3", methods: [GET], access: {{jwt: {{issuers: [login], acr_min: 3}}}}, to: {{upstream: bo}}}}
      - {{name: limited, path: "/limited", methods: [GET], access: {{jwt: {{issuers: [login]}}}}, to: {{upstream: bo}}, rate_limits: [{{per: subject, requests: 1, period: 1h}}], quotas: [{{per: client_id, requests: 3, window: day, lease: 1}}]}}
  - id: c_a662
    name: Bari
    hosts: [{BA}]
    issuers:
      login: {{issuer: "{ISS}", audiences: [varco-c_a662], jwks_url: "{jwks}"}}
    upstreams: {{bo: {{servers: ["{be}"]}}}}
    routes:
      - {{name: anagrafe, path: "/anagrafe/{{*rest}}", methods: [GET], access: {{jwt: {{issuers: [login]}}}}, to: {{upstream: bo}}}}
"#,
        be = be.addr
    )
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISS, "aud": "varco-c_e783", "sub": "citizen-42", "exp": "+300", "iat": "+0",
        "scope": "anagrafe.read profile", "acr": "https://www.spid.gov.it/SpidL2",
        "https://attributes.eid.gov.it/fiscal_number": "TINIT-RSSMRA80A01H501U", "client_id": "app-comune"
    })
}

async fn setup() -> (Backend, Jose, Varco) {
    let be = Backend::start("bo").await;
    let jose = Jose::new();
    jose.keygen("k-rsa", "RS256").await;
    jose.keygen("k-ec", "ES256").await;
    be.serve_static("/jwks.json", Some(jose.jwks()));
    let v = Varco::start(&config(&be)).await;
    (be, jose, v)
}

async fn get(v: &Varco, host: &str, token: &str) -> varco_tests::Resp {
    v.send(
        "GET",
        host,
        "/anagrafe/v1/x",
        &[("authorization", &format!("Bearer {token}")), ("x-varco-subject", "spoofed")],
        b"",
    )
    .await
}

#[tokio::test]
async fn a_valid_token_passes_and_the_back_office_gets_the_identity() {
    let (be, jose, v) = setup().await;
    for (kid, alg) in [("k-rsa", "RS256"), ("k-ec", "ES256")] {
        let token = jose.mint(kid, alg, &claims(), None).await;
        let r = get(&v, MC, &token).await;
        assert_eq!(r.status, 200, "{alg}: {r:?}");
        let h = &be.last()["headers"];
        assert_eq!(h["x-varco-subject"], "citizen-42", "{h}");
        assert_eq!(h["x-varco-fiscal-code"], "RSSMRA80A01H501U");
        assert_eq!(h["x-varco-acr"], "https://www.spid.gov.it/SpidL2");
        assert_eq!(h["x-varco-client-id"], "app-comune");
        assert_eq!(h["x-varco-tenant"], "c_e783");
        assert_eq!(h["x-varco-issuer"], "login");
        assert!(h.get("authorization").is_none(), "the caller's token reached the back-office");
    }
    // A route that withholds the codice fiscale (data minimisation): neither varco's nor a
    // caller's reaches the back-office; the rest of the identity does.
    let token = jose.mint("k-rsa", "RS256", &claims(), None).await;
    let auth = format!("Bearer {token}");
    let spoofs =
        [("authorization", auth.as_str()), ("x-varco-fiscal-code", "spoofed"), ("X_Varco_Fiscal_Code", "spoofed")];
    let r = v.send("GET", MC, "/minimal", &spoofs, b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let h = &be.last()["headers"];
    assert!(h.get("x-varco-fiscal-code").is_none(), "{h}");
    // A CGI/WSGI back-office reads `X_Varco_Fiscal_Code` as varco's header: never passed on.
    assert!(h.as_object().unwrap().keys().all(|k| !k.replace('_', "-").starts_with("x-varco-fiscal")), "{h}");
    assert_eq!(h["x-varco-subject"], "citizen-42", "{h}");
    // The public route stays public and carries no identity.
    assert_eq!(v.get(MC, "/open").await.status, 200);
    assert!(be.last()["headers"].get("x-varco-subject").is_none());
}

#[tokio::test]
async fn missing_token_and_missing_scope() {
    let (_be, jose, v) = setup().await;
    let r = v.get(MC, "/anagrafe/v1/x").await;
    r.assert_problem(401, "token-missing");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer realm=\"c_e783\""));
    let mut c = claims();
    c["scope"] = json!("profile");
    let r = get(&v, MC, &jose.mint("k-rsa", "RS256", &c, None).await).await;
    r.assert_problem(403, "forbidden");
    assert!(r.json["detail"].as_str().unwrap().contains("anagrafe.read"));
    let r = v.send("GET", MC, "/anagrafe/v1/x", &[("authorization", "Basic dXNlcjpwYXNz")], b"").await;
    r.assert_problem(401, "token-invalid");
    // Scopes as a space-separated `scp` string (some issuers' spelling) count like `scope`.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!("profile anagrafe.read");
    let r = get(&v, MC, &jose.mint("k-rsa", "RS256", &c, None).await).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn the_jwt_attack_suite_is_refused() {
    let (be, jose, v) = setup().await;
    let other = Jose::new();
    other.keygen("k-rsa", "RS256").await; // the attacker's key, same kid
    let with = |k: &str, val: serde_json::Value| {
        let mut c = claims();
        c[k] = val;
        c
    };
    let mut attacks: Vec<(&str, String)> = vec![
        ("alg none", jose.unsigned(&claims()).await),
        ("RS256 -> HS256 confusion", jose.hs_confusion("k-rsa", &claims()).await),
        (
            "kid path injection",
            jose.mint("k-rsa", "RS256", &claims(), Some(&json!({"kid": "../../../../dev/null"}))).await,
        ),
        ("kid SQL injection", jose.mint("k-rsa", "RS256", &claims(), Some(&json!({"kid": "x' OR '1'='1"}))).await),
        ("signed by another key, same kid", other.mint("k-rsa", "RS256", &claims(), None).await),
        (
            "jku pointing elsewhere",
            other
                .mint("k-rsa", "RS256", &claims(), Some(&json!({"jku": "http://127.0.0.1:1/evil.json", "kid": "evil"})))
                .await,
        ),
        (
            "x5u pointing elsewhere",
            other.mint("k-rsa", "RS256", &claims(), Some(&json!({"x5u": "http://127.0.0.1:1/evil.pem"}))).await,
        ),
        ("expired", jose.mint("k-rsa", "RS256", &with("exp", json!("-120")), None).await),
        ("not yet valid", jose.mint("k-rsa", "RS256", &with("nbf", json!("+600")), None).await),
        ("wrong aud", jose.mint("k-rsa", "RS256", &with("aud", json!("another-service")), None).await),
        ("wrong iss", jose.mint("k-rsa", "RS256", &with("iss", json!("https://evil.example")), None).await),
        ("no exp", {
            let mut c = claims();
            c.as_object_mut().unwrap().remove("exp");
            jose.mint("k-rsa", "RS256", &c, None).await
        }),
        ("oversize", jose.mint("k-rsa", "RS256", &with("pad", json!("x".repeat(5000))), None).await),
        (
            "crit names an extension varco does not understand",
            jose.mint("k-rsa", "RS256", &claims(), Some(&json!({"crit": ["x-evil"], "x-evil": true}))).await,
        ),
        ("issued in the future, no nbf", jose.mint("k-rsa", "RS256", &with("iat", json!("+3600")), None).await),
        ("garbage", "not.a.token".to_owned()),
        ("empty", String::new()),
    ];
    // Body altered after signing.
    let good = jose.mint("k-rsa", "RS256", &claims(), None).await;
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload = String::from_utf8(base64_url_decode(parts[1])).unwrap();
    payload = payload.replace("citizen-42", "citizen-43");
    attacks.push((
        "payload altered after signing",
        format!("{}.{}.{}", parts[0], base64_url_encode(payload.as_bytes()), parts[2]),
    ));

    let hits = be.hits();
    for (what, token) in &attacks {
        let r = get(&v, MC, token).await;
        assert_eq!(r.status, 401, "{what}: {r:?}");
        r.assert_problem(401, "token-invalid");
        if token.len() > 20 {
            assert!(!String::from_utf8_lossy(&r.body).contains(token.as_str()), "{what}: the token was echoed");
        }
    }
    assert_eq!(be.hits(), hits, "an attack reached the back-office");
    // A valid token of tenant A on tenant B's route (B's audience differs).
    get(&v, BA, &good).await.assert_problem(401, "token-invalid");
    // No token in the logs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!v.log_text().contains(&good[good.len() - 20..]));
}

#[tokio::test]
async fn key_rotation_and_an_unreachable_jwks() {
    let (be, jose, v) = setup().await;
    assert_eq!(get(&v, MC, &jose.mint("k-rsa", "RS256", &claims(), None).await).await.status, 200);
    // The issuer rotates: a new kid appears in its JWKS; varco fetches it on first sight.
    jose.keygen("k-new", "RS256").await;
    be.serve_static("/jwks.json", Some(jose.jwks()));
    tokio::time::sleep(Duration::from_millis(10_100)).await; // unknown-kid refreshes are rate-limited to 10 s
    assert_eq!(get(&v, MC, &jose.mint("k-new", "RS256", &claims(), None).await).await.status, 200);
    // The JWKS goes away: cached keys keep working, /metrics says the issuer is down.
    be.serve_static("/jwks.json", None);
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    let mut c = claims();
    c["sub"] = json!("another");
    // An unknown kid makes varco try the JWKS again, which fails.
    let r = get(&v, MC, &jose.mint("k-rsa", "RS256", &c, Some(&json!({"kid": "k-unknown"}))).await).await;
    r.assert_problem(401, "token-invalid");
    assert_eq!(
        get(&v, MC, &jose.mint("k-rsa", "RS256", &c, None).await).await.status,
        200,
        "cached keys stopped working"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = v.metrics().await;
    assert!(m.contains("varco_jwks_up{issuer=\"login\",tenant=\"c_e783\"} 0"), "{m}");
    let status = v.get(MC, "/status").await;
    assert_eq!(status.status, 200, "cached keys still verify: the ente is available");
    let issuers = status.json["issuers"].as_array().unwrap();
    assert!(issuers.iter().any(|i| i["name"] == "login" && i["keys_fresh"] == false), "{status:?}");
}

#[tokio::test]
async fn limits_and_quotas_count_per_verified_caller() {
    let (_be, jose, v) = setup().await;
    let token = |sub: &'static str, client: &'static str| {
        let mut c = claims();
        c["sub"] = json!(sub);
        c["client_id"] = json!(client);
        c
    };
    let call = |t: String| {
        let v = &v;
        async move { v.send("GET", MC, "/limited", &[("authorization", &format!("Bearer {t}"))], b"").await }
    };
    // One request per subject per hour: each citizen has their own bucket.
    assert_eq!(call(jose.mint("k-rsa", "RS256", &token("alice", "app-1"), None).await).await.status, 200);
    call(jose.mint("k-rsa", "RS256", &token("alice", "app-1"), None).await).await.assert_problem(429, "rate-limited");
    assert_eq!(call(jose.mint("k-rsa", "RS256", &token("bob", "app-1"), None).await).await.status, 200);
    // Three requests per client app per day, whatever the subject.
    assert_eq!(call(jose.mint("k-rsa", "RS256", &token("carol", "app-1"), None).await).await.status, 200);
    let r = call(jose.mint("k-rsa", "RS256", &token("dave", "app-1"), None).await).await;
    r.assert_problem(429, "quota-exhausted");
    // The rate limit dave passed still shows on the quota's refusal.
    assert_eq!(r.header("x-ratelimit-limit"), Some("1"), "{r:?}");
    assert_eq!(call(jose.mint("k-rsa", "RS256", &token("erin", "app-2"), None).await).await.status, 200);
}

#[tokio::test]
async fn pdnd_voucher_purposes_clients_and_spid_level() {
    let (be, jose, v) = setup().await;
    let voucher = |purpose: &str, client: &str| {
        json!({
            "iss": "https://auth.interop.pagopa.it", "aud": "eservice-anagrafe", "sub": client, "client_id": client,
            "purposeId": purpose, "exp": "+300", "nbf": "-5", "iat": "-5", "jti": "v-1"
        })
    };
    let at = json!({"typ": "at+jwt"});
    let call = |t: String, path: &'static str| {
        let v = &v;
        async move { v.send("GET", MC, path, &[("authorization", &format!("Bearer {t}"))], b"").await }
    };
    let r = call(jose.mint("k-rsa", "RS256", &voucher("purpose-1", "consumer-1"), Some(&at)).await, "/eservice").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(be.last()["headers"]["x-varco-purpose-id"], "purpose-1");
    assert_eq!(be.last()["headers"]["x-varco-client-id"], "consumer-1");
    call(jose.mint("k-rsa", "RS256", &voucher("purpose-2", "consumer-1"), Some(&at)).await, "/eservice")
        .await
        .assert_problem(403, "forbidden");
    call(jose.mint("k-rsa", "RS256", &voucher("purpose-1", "consumer-2"), Some(&at)).await, "/eservice")
        .await
        .assert_problem(403, "forbidden");
    // RFC 9068 §2.1: `application/at+jwt` is the same type.
    let long = json!({"typ": "application/at+jwt"});
    let r =
        call(jose.mint("k-rsa", "RS256", &voucher("purpose-1", "consumer-1"), Some(&long)).await, "/eservice").await;
    assert_eq!(r.status, 200, "{r:?}");
    // A voucher must be typ at+jwt.
    let r = call(jose.mint("k-rsa", "RS256", &voucher("purpose-1", "consumer-1"), None).await, "/eservice").await;
    r.assert_problem(401, "token-invalid");
    assert!(r.json["detail"].as_str().unwrap().contains("typ"), "{r:?}");
    // SPID level: the L2 citizen token does not open an L3 route; an L3 one does.
    call(jose.mint("k-rsa", "RS256", &claims(), None).await, "/l3").await.assert_problem(403, "forbidden");
    let mut l3 = claims();
    l3["acr"] = json!("https://www.spid.gov.it/SpidL3");
    assert_eq!(call(jose.mint("k-rsa", "RS256", &l3, None).await, "/l3").await.status, 200);
}

#[tokio::test]
async fn the_back_office_can_verify_varcos_identity_token() {
    let be = Backend::start("bo").await;
    let jose = Jose::new();
    jose.keygen("k-rsa", "RS256").await;
    jose.keygen("varco-key", "ES256").await; // varco's own signing key (PKCS#8 P-256)
    be.serve_static("/jwks.json", Some(jose.jwks()));
    let key = jose.dir.join("varco-key.pem").display().to_string();
    let cfg = config(&be).replacen(
        "listeners:",
        &format!("server: {{identity_token: {{key_file: \"{key}\", kid: v1, ttl: 30s}}}}\nlisteners:"),
        1,
    );
    let v = Varco::start(&cfg).await;
    let r = v
        .send(
            "GET",
            MC,
            "/anagrafe/v1/x",
            &[
                ("authorization", &format!("Bearer {}", jose.mint("k-rsa", "RS256", &claims(), None).await)),
                ("x-varco-identity", "forged"),
            ],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let token = be.last()["headers"]["x-varco-identity"].as_str().unwrap().to_owned();
    assert_ne!(token, "forged");
    // The back-office takes varco's keys from the ente's well-known URL...
    let jwks = v.get(MC, "/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.header("content-type"), Some("application/jwk-set+json"));
    assert!(!String::from_utf8_lossy(&jwks.body).contains("\"d\""), "the private key was published");
    // ...and an independent implementation verifies the token with them.
    let c = jose.verify(&jwks.body, &token, "c_e783").await;
    assert_eq!(c["sub"], "citizen-42");
    assert_eq!(c["fiscal_code"], "RSSMRA80A01H501U");
    assert_eq!(c["iss"], "varco");
    let ttl = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert_eq!(ttl, 30);
    // A route that withholds the codice fiscale withholds it from the signed token too.
    let auth = format!("Bearer {}", jose.mint("k-rsa", "RS256", &claims(), None).await);
    assert_eq!(v.send("GET", MC, "/minimal", &[("authorization", &auth)], b"").await.status, 200);
    let token = be.last()["headers"]["x-varco-identity"].as_str().unwrap().to_owned();
    let c = jose.verify(&jwks.body, &token, "c_e783").await;
    assert_eq!(c["sub"], "citizen-42", "{c}");
    assert!(c.get("fiscal_code").is_none(), "withheld means withheld everywhere: {c}");
    // A caller cannot forge it on a public route either.
    assert_eq!(v.send("GET", MC, "/open", &[("x-varco-identity", "forged")], b"").await.status, 200);
    assert!(be.last()["headers"].get("x-varco-identity").is_none());
}

/// Each ente signs with its own key (`tenants[].keys`, as registered on PDND); an ente without
/// one uses the server-wide key. A back-office verifies with its own ente's JWKS only.
#[tokio::test]
async fn each_ente_signs_with_its_own_key() {
    let be = Backend::start("bo").await;
    let jose = Jose::new();
    jose.keygen("k-rsa", "RS256").await;
    jose.keygen("server-key", "ES256").await;
    jose.keygen("mc-2026", "RS256").await; // Macerata's PDND key
    jose.keygen("mc-2027", "ES256").await; // the next one, published during the rotation
    be.serve_static("/jwks.json", Some(jose.jwks()));
    let pem = |k: &str| jose.dir.join(format!("{k}.pem")).display().to_string();
    let next_key = std::fs::read_to_string(pem("mc-2027")).unwrap();
    let cfg = config(&be)
        .replacen(
            "listeners:",
            &format!("server: {{identity_token: {{key_file: \"{}\", kid: v1}}}}\nlisteners:", pem("server-key")),
            1,
        )
        .replacen(
            "    hosts: [macerata.example.it]\n",
            &format!(
                "    hosts: [macerata.example.it]\n    keys:\n      - {{kid: mc-2026, private_key: {{file: \"{}\"}}}}\n      - {{kid: mc-2027, private_key: {{env: MC_NEXT_KEY}}}}\n",
                pem("mc-2026")
            ),
            1,
        );
    let v = Varco::start_with_env(&cfg, &[("MC_NEXT_KEY", &next_key)]).await;
    let token = |aud: &str| {
        let mut c = claims();
        c["aud"] = json!(aud);
        c
    };
    let bearer = jose.mint("k-rsa", "RS256", &token("varco-c_e783"), None).await;
    let r = get(&v, MC, &bearer).await;
    assert_eq!(r.status, 200, "{r:?}\n{}", v.log_text());
    let mc_token = be.last()["headers"]["x-varco-identity"].as_str().unwrap().to_owned();
    let bearer = jose.mint("k-rsa", "RS256", &token("varco-c_a662"), None).await;
    assert_eq!(get(&v, BA, &bearer).await.status, 200);
    let ba_token = be.last()["headers"]["x-varco-identity"].as_str().unwrap().to_owned();

    let mc_jwks = v.get(MC, "/.well-known/jwks.json").await.body;
    let ba_jwks = v.get(BA, "/.well-known/jwks.json").await.body;
    let kids = |j: &[u8]| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(j).unwrap();
        v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(kids(&mc_jwks), ["mc-2026", "mc-2027"], "both keys of the rotation are published");
    assert_eq!(kids(&ba_jwks), ["v1"], "an ente without keys publishes the server-wide key");
    for j in [&mc_jwks, &ba_jwks] {
        let text = String::from_utf8_lossy(j);
        assert!(!text.contains("\"d\"") && !text.contains("\"p\""), "a private part was published: {text}");
    }
    // The active key (the first) signs, RS256 for an RSA key; PyJWT verifies with the ente's JWKS.
    let header: serde_json::Value =
        serde_json::from_slice(&base64_url_decode(mc_token.split('.').next().unwrap())).unwrap();
    assert_eq!((header["kid"].as_str(), header["alg"].as_str()), (Some("mc-2026"), Some("RS256")));
    assert_eq!(jose.verify(&mc_jwks, &mc_token, "c_e783").await["sub"], "citizen-42");
    assert_eq!(jose.verify(&ba_jwks, &ba_token, "c_a662").await["sub"], "citizen-42");
    // One ente's back-office cannot be fooled with another ente's token.
    assert!(jose.refuses(&ba_jwks, &mc_token, "c_e783").await);
    assert!(jose.refuses(&mc_jwks, &ba_token, "c_a662").await);
    assert!(jose.refuses(&mc_jwks, &mc_token, "c_a662").await, "the audience names the ente");
}

/// A key that cannot be read or is not a signing key stops the start with its path, and a
/// reload with such a key is refused while the running keys keep signing.
#[tokio::test]
async fn bad_ente_keys_are_refused_with_their_path() {
    let dir = std::env::temp_dir().join(format!("varco-badkey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("garbage.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    for (key, want) in [
        (format!("{{file: \"{}\"}}", dir.join("missing.pem").display()), "tenants[0].keys[0].private_key: cannot read"),
        (format!("{{file: \"{}\"}}", dir.join("garbage.pem").display()), "tenants[0].keys[0]: "),
        ("{env: VARCO_NO_SUCH_KEY}".to_owned(), "environment variable `VARCO_NO_SUCH_KEY` is not set"),
    ] {
        let cfg = format!(
            "listeners: [{{name: public, address: \"127.0.0.1:{}\"}}]\nadmin: {{address: \"127.0.0.1:{}\"}}\ntenants:\n  - {{id: c_e783, name: Macerata, keys: [{{kid: k1, private_key: {key}}}]}}\n",
            varco_tests::free_port(),
            varco_tests::free_port()
        );
        let path = dir.join("varco.yaml");
        std::fs::write(&path, cfg).unwrap();
        let out = std::process::Command::new(Varco::bin()).args(["serve", "--config"]).arg(&path).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(err.contains(want), "want `{want}` in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = table.iter().position(|&t| t == c).unwrap() as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

fn base64_url_encode(b: &[u8]) -> String {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Two instances of one consortium share Redis: a single-use token (`unique_jti`) spent on one
/// is refused on the other; without Redis each instance would accept it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_use_tokens_are_single_use_across_instances_through_redis() {
    let be = Backend::start("bo").await;
    let jose = Jose::new();
    jose.keygen("k-rsa", "RS256").await;
    be.serve_static("/jwks.json", Some(jose.jwks()));
    let redis = varco_tests::Redis::start().await;
    let cfg = format!(
        r#"
redis: {{url: "{url}", timeout: 500ms}}
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    hosts: [{MC}]
    issuers:
      login: {{issuer: "{ISS}", audiences: [varco-c_e783], jwks_url: "http://{be}/jwks.json", algorithms: [RS256]}}
    upstreams: {{bo: {{servers: ["{be}"]}}}}
    routes:
      - {{name: once, path: /once, methods: [GET], access: {{jwt: {{issuers: [login], unique_jti: true}}}}, to: {{upstream: bo}}}}
"#,
        url = redis.url(),
        be = be.addr
    );
    let (a, b) = (Varco::start(&cfg).await, Varco::start(&cfg).await);
    let mut c = claims();
    c["jti"] = json!("once-1");
    let t = format!("Bearer {}", jose.mint("k-rsa", "RS256", &c, None).await);
    assert_eq!(a.send("GET", MC, "/once", &[("authorization", &t)], b"").await.status, 200);
    let r = b.send("GET", MC, "/once", &[("authorization", &t)], b"").await;
    r.assert_problem(401, "token-replayed");
    // Every 401 says how to authenticate (RFC 9110 §11.6.1).
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer realm=\"c_e783\", error=\"invalid_token\""), "{r:?}");
    a.send("GET", MC, "/once", &[("authorization", &t)], b"").await.assert_problem(401, "token-replayed");
    c["jti"] = json!("once-2");
    let t2 = format!("Bearer {}", jose.mint("k-rsa", "RS256", &c, None).await);
    assert_eq!(b.send("GET", MC, "/once", &[("authorization", &t2)], b"").await.status, 200, "another jti passes");
}
