//! The ente as a SPID/CIE relying party in the OIDC Federation, against the Italian reference
//! implementation (`tests/tools/spid_peer`: spid-cie-oidc as Trust Anchor and OP): varco
//! publishes each ente's Entity Configuration, and the Trust Anchor builds a trust chain to it,
//! verifying the statement with the key the ente registered.
#![allow(clippy::unwrap_used, clippy::expect_used)] // scenario helpers: a panic is the failure message

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncBufReadExt;
use varco_tests::{free_port, tool_path, Client, Varco};

/// The Python that has `tests/tools/spid_peer/requirements.txt` (`.ci/run` makes the venv).
fn peer_python() -> PathBuf {
    std::env::var_os("VARCO_SPID_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/varco/spid-venv/bin/python")
    })
}

/// A fresh RSA-2048 PKCS#8 PEM key file (openssl, independent of varco).
fn rsa_key(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(format!("{name}.pem"));
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&f)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genpkey");
    f
}

/// The payload of a compact JWS (not verified: the peer does that).
fn payload(jws: &str) -> Value {
    let part = jws.trim().split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn header(jws: &str) -> Value {
    let part = jws.trim().split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The reference Trust Anchor + OP on `port`, with `rps` (entity id, public federation JWKS)
/// registered as descendants; its `ready` information.
async fn start_peer(port: u16, dir: &Path, rps: &[(&str, &Value)]) -> (tokio::process::Child, Value) {
    let mut cmd = tokio::process::Command::new(peer_python());
    cmd.arg(tool_path("spid_peer/peer.py")).args(["--port", &port.to_string(), "--workdir"]).arg(dir.join("peer"));
    for (i, (id, jwks)) in rps.iter().enumerate() {
        let f = dir.join(format!("rp{i}.jwks.json"));
        std::fs::write(&f, serde_json::to_vec(jwks).unwrap()).unwrap();
        cmd.arg("--rp").arg(format!("{id}={}", f.display()));
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().unwrap_or_else(|e| {
        panic!("{}: {e} (make the venv: python3 -m venv ~/.cache/varco/spid-venv && ~/.cache/varco/spid-venv/bin/pip install -r tests/tools/spid_peer/requirements.txt)", peer_python().display())
    });
    let mut line = String::new();
    let out = child.stdout.take().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), tokio::io::BufReader::new(out).read_line(&mut line))
        .await
        .expect("the peer is ready within 60 s")
        .unwrap();
    let info: Value = serde_json::from_str(line.strip_prefix("ready ").expect("a `ready` line")).unwrap();
    (child, info)
}

#[tokio::test]
async fn the_trust_anchor_resolves_each_entes_entity_configuration() {
    let dir = std::env::temp_dir().join(format!("varco-oidc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ta_port = free_port();
    let ta = format!("http://127.0.0.1:{ta_port}/");
    let key = |n: &str| rsa_key(&dir, n).display().to_string();
    let (mc_fed, mc_sig, mc_enc, ba_fed, ba_sig, ba_enc) =
        (key("mc-fed"), key("mc-sig"), key("mc-enc"), key("ba-fed"), key("ba-sig"), key("ba-enc"));
    let v = Varco::start(&format!(
        r#"
listeners: [{{name: public, address: "127.0.0.1:{{PORT}}"}}]
admin: {{address: "127.0.0.1:{{ADMIN}}"}}
tenants:
  - id: c_e783
    name: Comune di Macerata
    hosts: [127.0.0.1]
    prefix: /c_e783
    oidc:
      entity_id: "http://127.0.0.1:{{PORT}}/c_e783"
      authority_hints: ["{ta}"]
      federation_keys: [{{kid: mc-fed-2026, private_key: {{file: "{mc_fed}"}}}}]
      signing_keys: [{{kid: mc-sig-2026, private_key: {{file: "{mc_sig}"}}}}]
      encryption_keys: [{{kid: mc-enc-2026, private_key: {{file: "{mc_enc}"}}}}]
      contacts: [protocollo@comune.macerata.it]
    routes: []
  - id: c_a662
    name: Comune di Bari
    hosts: [127.0.0.1]
    prefix: /c_a662
    oidc:
      entity_id: "http://127.0.0.1:{{PORT}}/c_a662"
      authority_hints: ["{ta}"]
      federation_keys: [{{kid: ba-fed-2026, private_key: {{file: "{ba_fed}"}}}}]
      signing_keys: [{{kid: ba-sig-2026, private_key: {{file: "{ba_sig}"}}}}]
      encryption_keys: [{{kid: ba-enc-2026, private_key: {{file: "{ba_enc}"}}}}]
      client_name: Bari Servizi Online
      contacts: [urp@comune.bari.it]
      statement_lifetime: 2h
    routes: []
"#
    ))
    .await;
    let host = format!("127.0.0.1:{}", v.port);
    let mc_id = format!("http://{host}/c_e783");
    let ba_id = format!("http://{host}/c_a662");

    // What varco publishes: a statement about itself, signed with its federation key.
    let r = v.get(&host, "/c_e783/.well-known/openid-federation").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/entity-statement+jwt"));
    let (h, mc) = (header(&r.text()), payload(&r.text()));
    assert_eq!(
        (h["typ"].as_str(), h["kid"].as_str(), h["alg"].as_str()),
        (Some("entity-statement+jwt"), Some("mc-fed-2026"), Some("RS256"))
    );
    assert_eq!((mc["iss"].as_str(), mc["sub"].as_str()), (Some(mc_id.as_str()), Some(mc_id.as_str())));
    assert_eq!(mc["authority_hints"], serde_json::json!([ta]));
    let rp = &mc["metadata"]["openid_relying_party"];
    assert_eq!(rp["client_id"], mc_id.as_str());
    assert_eq!(rp["redirect_uris"], serde_json::json!([format!("{mc_id}/oidc/callback")]));
    let uses: Vec<(&str, &str)> = rp["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap(), k["use"].as_str().unwrap()))
        .collect();
    assert_eq!(uses, [("mc-sig-2026", "sig"), ("mc-enc-2026", "enc")]);
    assert!(!r.text().contains("\"d\""), "a private key part was published");
    let ba = payload(&v.get(&host, "/c_a662/.well-known/openid-federation").await.text());
    assert_eq!(ba["exp"].as_u64().unwrap() - ba["iat"].as_u64().unwrap(), 7200);
    assert_eq!(ba["metadata"]["federation_entity"]["organization_name"], "Bari Servizi Online");

    // The Trust Anchor knows Macerata by its federation key; Bari registered a key that is not
    // the one its statement is signed with (Macerata's).
    let (_peer, info) = start_peer(ta_port, &dir, &[(&mc_id, &mc["jwks"]), (&ba_id, &mc["jwks"])]).await;
    assert_eq!(info["ta"], ta.as_str());
    let ta_client = Client::new(ta_port);
    let token = info["staff_token"].as_str().unwrap();
    let resolve = |sub: &str| format!("/resolve?sub={sub}&trust_anchor={ta}");
    let r = ta_client
        .send("GET", &format!("127.0.0.1:{ta_port}"), &resolve(&mc_id), &[("authorization", token)], b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let resolved = payload(&r.text());
    assert_eq!(resolved["sub"], mc_id.as_str());
    assert_eq!(resolved["iss"], ta.as_str());
    let rp = &resolved["metadata"]["openid_relying_party"];
    assert_eq!(rp["client_id"], mc_id.as_str());
    assert_eq!(rp["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(rp["jwks"]["keys"].as_array().map(Vec::len), Some(2));
    assert_eq!(resolved["trust_chain"].as_array().map(Vec::len), Some(3), "leaf, the TA's statement about it, the TA");

    let r = ta_client
        .send("GET", &format!("127.0.0.1:{ta_port}"), &resolve(&ba_id), &[("authorization", token)], b"")
        .await;
    assert_ne!(r.status, 200, "a statement signed with an unregistered key was trusted: {}", r.text());

    // varco resolves the reference OP through its trust chain to the pinned Trust Anchor keys
    // (`varco federation resolve`, what the login will do), and refuses it under other keys.
    let op = info["op"].as_str().unwrap();
    let anchor_jwks = dir.join("ta.jwks.json");
    std::fs::write(&anchor_jwks, serde_json::to_vec(&info["ta_jwks"]).unwrap()).unwrap();
    let resolve_op = |jwks: &Path, sub: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_varco"))
            .args(["federation", "resolve", "--sub", sub, "--anchor", &ta, "--anchor-jwks"])
            .arg(jwks)
            .output()
            .unwrap()
    };
    let out = resolve_op(&anchor_jwks, op);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resolved: Value = serde_json::from_slice(&out.stdout).unwrap();
    let meta = &resolved["metadata"]["openid_provider"];
    assert_eq!(meta["authorization_endpoint"], info["authorization_endpoint"]);
    assert_eq!(meta["token_endpoint"], info["token_endpoint"]);
    assert!(meta["jwks"]["keys"].as_array().is_some_and(|k| !k.is_empty()), "{meta}");
    assert!(meta["revocation_endpoint"].is_string(), "the logout revokes there: {meta}");
    assert!(resolved["expires_at"].as_u64().unwrap() > 0);
    let wrong = dir.join("wrong.jwks.json");
    std::fs::write(&wrong, serde_json::to_vec(&mc["jwks"]).unwrap()).unwrap();
    let out = resolve_op(&wrong, op);
    assert_eq!(out.status.code(), Some(1));
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(why.contains("not trusted") && why.contains("not a key pinned for the Trust Anchor"), "{why}");
    // Bari's statement is signed with a key the Trust Anchor does not vouch for: refused.
    let out = resolve_op(&anchor_jwks, &ba_id);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a key its superior does not list"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The varco configuration of the login scenario: Macerata and Bari log citizens in through
/// the Trust Anchor `ta` (keys `ta_jwks`); the OP offered is `op`, and `unregistered_op` is an entity
/// the Trust Anchor does not know.
fn login_config(
    dir: &Path,
    ta: &str,
    ta_jwks: &Value,
    op: &str,
    unregistered_op: &str,
    backend: u16,
    redis: Option<&str>,
) -> String {
    let k = |n: &str| dir.join(format!("{n}.pem")).display().to_string();
    let ente = |id: &str, name: &str| {
        format!(
            r#"
  - id: {id}
    name: {name}
    hosts: [127.0.0.1]
    prefix: /{id}
    upstreams:
      servizi: {{servers: [{{address: "127.0.0.1:{backend}"}}]}}
    oidc:
      entity_id: "http://127.0.0.1:{{PORT}}/{id}"
      authority_hints: ["{ta}"]
      federation_keys: [{{kid: {id}-fed, private_key: {{file: "{fed}"}}}}]
      signing_keys: [{{kid: {id}-sig, private_key: {{file: "{sig}"}}}}]
      encryption_keys: [{{kid: {id}-enc, private_key: {{file: "{enc}"}}}}]
      contacts: [urp@{id}.example.it]
      session: {{idle: 10m, absolute: 1h}}
    routes:
      - {{name: servizi, path: "/servizi/{{*rest}}", methods: [GET, POST], access: {{session: {{}}}}, to: {{upstream: servizi}}}}
      - {{name: certificati, path: "/certificati/{{*rest}}", methods: [GET], access: {{session: {{acr_min: 3}}}}, to: {{upstream: servizi}}}}
"#,
            fed = k(&format!("{id}-fed")),
            sig = k(&format!("{id}-sig")),
            enc = k(&format!("{id}-enc")),
        )
    };
    let redis = redis.map(|u| format!("redis: {{url: \"{u}\"}}\n")).unwrap_or_default();
    format!(
        r#"
listeners: [{{name: public, address: "127.0.0.1:{{PORT}}"}}]
admin: {{address: "127.0.0.1:{{ADMIN}}"}}
{redis}federation:
  trust_anchors: [{{entity_id: "{ta}", jwks: {ta_jwks}}}]
  providers:
    - {{entity_id: "{op}", name: "OP di riferimento", kind: spid}}
    - {{entity_id: "{unregistered_op}", name: "OP sconosciuto", kind: spid}}
  timeout: 10s
tenants:{}{}"#,
        ente("c_e783", "Comune di Macerata"),
        ente("c_a662", "Comune di Bari")
    )
}

/// A citizen from the protected page `start` to the end, with `tool`: `citizen.py` (a scripted
/// browser) or `browser.py` (headless Chromium). Its JSON report.
async fn citizen_with(tool: &str, start: &str, user: &Value, extra: &[&str]) -> Value {
    let out = tokio::process::Command::new(peer_python())
        .arg(tool_path(&format!("spid_peer/{tool}")))
        .args(["--start", start, "--op-name", "OP di riferimento", "--username"])
        .arg(user["username"].as_str().unwrap())
        .arg("--password")
        .arg(user["password"].as_str().unwrap())
        .args(extra)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("{tool}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(v.get("error").is_none(), "{tool}: {v}");
    v
}

async fn citizen(start: &str, user: &Value, extra: &[&str]) -> Value {
    citizen_with("citizen.py", start, user, extra).await
}

async fn chromium(start: &str, user: &Value, extra: &[&str]) -> Value {
    citizen_with("browser.py", start, user, extra).await
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A login scenario: Macerata and Bari on varco, the reference Trust Anchor and OP with
/// Macerata registered, the back-office, Redis.
struct World {
    dir: PathBuf,
    a: Varco,
    host: String,
    mc_id: String,
    ta: String,
    op: String,
    info: Value,
    backend: varco_tests::Backend,
    /// Sessions in Redis (else in varco's memory).
    redis: Option<varco_tests::Redis>,
    _peer: tokio::process::Child,
}

/// A real entity (Bari, served by varco) offered as an OP but not registered under the Trust
/// Anchor: its chain cannot be built.
const UNREGISTERED_OP: &str = "http://127.0.0.1:{PORT}/c_a662";

impl World {
    async fn start(name: &str, with_redis: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("varco-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for id in ["c_e783", "c_a662"] {
            for k in ["fed", "sig", "enc"] {
                rsa_key(&dir, &format!("{id}-{k}"));
            }
        }
        let ta_port = free_port();
        let redis = if with_redis { Some(varco_tests::Redis::start().await) } else { None };
        let ta = format!("http://127.0.0.1:{ta_port}/");
        let op = format!("http://127.0.0.1:{ta_port}/oidc/op");
        let backend = varco_tests::Backend::start("servizi").await;
        // Until the Trust Anchor runs, its keys are not known: a placeholder, replaced by a reload.
        let placeholder = serde_json::json!({"keys": [{"kty": "RSA", "kid": "placeholder", "n": "AQAB", "e": "AQAB"}]});
        let url = redis.as_ref().map(varco_tests::Redis::url);
        let cfg = login_config(&dir, &ta, &placeholder, &op, UNREGISTERED_OP, backend.addr.port(), url.as_deref());
        let a = Varco::start(&cfg).await;
        let host = format!("127.0.0.1:{}", a.port);
        let mc_id = format!("http://{host}/c_e783");
        let mc = payload(&a.get(&host, "/c_e783/.well-known/openid-federation").await.text());
        // Only Macerata is registered: Bari's entity, offered as an OP, is not under the Anchor.
        let (peer, info) = start_peer(ta_port, &dir, &[(&mc_id, &mc["jwks"])]).await;
        assert_eq!(info["op"], op.as_str());
        let w = Self { dir, a, host, mc_id, ta, op, info, backend, redis, _peer: peer };
        w.a.rewrite_config(&w.config());
        let r = w.a.reload().await;
        assert_eq!(r.status, 200, "{}", r.text());
        w
    }

    /// The configuration with the Trust Anchor's real keys.
    fn config(&self) -> String {
        let port = self.backend.addr.port();
        let url = self.redis.as_ref().map(varco_tests::Redis::url);
        login_config(&self.dir, &self.ta, &self.info["ta_jwks"], &self.op, UNREGISTERED_OP, port, url.as_deref())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_citizen_logs_in_with_spid_through_the_trust_chain_and_the_back_office_sees_who() {
    let w = World::start("login", true).await;
    let (a, host, mc_id, op, info, backend) = (&w.a, &w.host, &w.mc_id, &w.op, &w.info, &w.backend);
    let host = host.as_str();
    let user = &info["user"];

    // An API caller without a session: 401; a browser: sent to the chooser, coming back.
    a.send("GET", host, "/c_e783/servizi/pratiche", &[], b"").await.assert_problem(401, "session-required");
    let r = a.send("GET", host, "/c_e783/servizi/pratiche?x=1", &[("accept", "text/html")], b"").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/c_e783/oidc/login?return_to=%2Fc_e783%2Fservizi%2Fpratiche%3Fx%3D1"));
    assert_eq!(backend.hits(), 0, "nothing reached the back-office");

    // The whole login, as a browser does it.
    let start = format!("http://{host}/c_e783/servizi/pratiche?x=1");
    let out = citizen(&start, user, &[]).await;
    assert_eq!(out["final_status"], 200, "{out}");
    let chooser = out["chooser"].as_str().unwrap();
    assert!(chooser.contains("Entra con SPID") && chooser.contains("<html lang=\"it\">"), "{chooser}");
    // The request object: signed with the ente's signing key, PKCE S256, the level and claims.
    let authz = out["authorization_request"].as_str().unwrap();
    assert!(authz.starts_with(info["authorization_endpoint"].as_str().unwrap()), "{authz}");
    let ro = query_param(authz, "request").unwrap();
    assert_eq!((header(&ro)["alg"].as_str(), header(&ro)["kid"].as_str()), (Some("RS256"), Some("c_e783-sig")));
    let ro = payload(&ro);
    assert_eq!(ro["client_id"], mc_id.as_str());
    assert_eq!(ro["redirect_uri"], format!("{mc_id}/oidc/callback"));
    assert_eq!(ro["code_challenge_method"], "S256");
    assert_eq!(ro["prompt"], "consent login");
    assert_eq!(ro["acr_values"], serde_json::json!(["https://www.spid.gov.it/SpidL2"]));
    for claim in ["state", "nonce"] {
        let v = ro[claim].as_str().unwrap();
        assert!(v.len() >= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()), "{claim}: {v}");
    }
    assert!(ro["claims"]["userinfo"].get("https://attributes.eid.gov.it/fiscal_number").is_some(), "{ro}");
    assert_eq!(query_param(authz, "code_challenge").as_deref(), ro["code_challenge"].as_str());
    // The session cookie's flags.
    let set: Vec<&str> = out["steps"].as_array().unwrap().iter().filter_map(|s| s["set_cookie"].as_str()).collect();
    let session_cookie = set.iter().find(|c| c.starts_with("varco_session=") && !c.contains("Max-Age=0")).unwrap();
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/c_e783"] {
        assert!(session_cookie.contains(flag), "{session_cookie}");
    }
    // Back where the citizen was going, and the back-office knows who it is.
    assert_eq!(out["returned_to"], start.as_str());
    let seen: Value = serde_json::from_str(out["final_body"].as_str().unwrap()).unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-varco-fiscal-code"], "RSSMRA80A01H501U", "{seen}");
    assert_eq!((h["x-varco-given-name"].as_str(), h["x-varco-family-name"].as_str()), (Some("Mario"), Some("Rossi")));
    assert_eq!(h["x-varco-acr"], "https://www.spid.gov.it/SpidL2");
    assert_eq!(h["x-varco-issuer"], op.as_str());
    assert_eq!(h["x-varco-tenant"], "c_e783");
    assert!(!seen.to_string().contains("varco_session"), "the session cookie reached the back-office: {seen}");
    let sid = out["cookies"]["varco_session"].as_str().unwrap().to_owned();
    let cookie = format!("varco_session={sid}");

    // An API call with the session passes; a route at SpidL3 refuses an L2 session (a browser
    // is sent to log in again at level 3).
    let r = a.send("GET", host, "/c_e783/servizi/x", &[("cookie", &cookie)], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    a.send("GET", host, "/c_e783/certificati/x", &[("cookie", &cookie)], b"").await.assert_problem(403, "forbidden");
    let r = a.send("GET", host, "/c_e783/certificati/x", &[("cookie", &cookie), ("accept", "text/html")], b"").await;
    assert_eq!(r.header("location"), Some("/c_e783/oidc/login?return_to=%2Fc_e783%2Fcertificati%2Fx&acr=3"));
    // Bari does not accept Macerata's session, under any cookie name it reads.
    a.send("GET", host, "/c_a662/servizi/x", &[("cookie", &cookie)], b"").await.assert_problem(401, "session-required");

    // The OP's chain is watched: its age and what it has left, refreshed every second.
    let mut metrics = String::new();
    for _ in 0..30 {
        metrics = a.metrics().await;
        if metrics.contains(&format!("federation_trust_chain_remaining_seconds{{op=\"{op}\"}}")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(metrics.contains(&format!("federation_trust_chain_age_seconds{{op=\"{op}\"}}")), "{metrics}");
    assert!(metrics.contains(r#"method="session",outcome="allowed""#), "{metrics}");

    // The callback replayed (same state and code): refused, no session.
    let callback = out["callback"].as_str().unwrap();
    let path = callback.trim_start_matches(&format!("http://{host}"));
    let r = a.send("GET", host, path, &[], b"").await;
    r.assert_problem(401, "login-failed");
    assert!(r.json["detail"].as_str().unwrap().contains("state"), "{r:?}");
    assert!(r.header("set-cookie").is_none());
    a.send("GET", host, "/c_e783/oidc/callback?code=abc", &[], b"").await.assert_problem(401, "login-failed");
    let r = a.send("GET", host, "/c_e783/oidc/callback?code=abc&state=nope", &[("accept", "text/html")], b"").await;
    assert_eq!((r.status, r.header("content-type")), (401, Some("text/html; charset=utf-8")));
    assert!(r.text().contains("login-failed"), "the error page names the problem type: {}", r.text());

    // A callback URL used in another browser (no login cookie): refused.
    let other = citizen(&start, user, &["--drop-login-cookie"]).await;
    assert_eq!(other["callback_status"], 401, "{other}");
    assert!(other["cookies"].get("varco_session").is_none(), "{other}");

    // No open redirect; an unknown or untrusted OP is refused before anything is sent to it.
    for rt in
        ["https://evil.example/", "//evil.example/x", "/c_a662/servizi/x", "/c_e783/../c_a662/x", "/\\evil.example"]
    {
        let q: String = url::form_urlencoded::byte_serialize(rt.as_bytes()).collect();
        let r = a.send("GET", host, &format!("/c_e783/oidc/login?return_to={q}"), &[], b"").await;
        r.assert_problem(400, "bad-request");
    }
    let idp = |id: &str| url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
    a.send("GET", host, &format!("/c_e783/oidc/login?idp={}", idp("https://other.example/op")), &[], b"")
        .await
        .assert_problem(400, "bad-request");
    let unregistered = UNREGISTERED_OP.replace("{PORT}", &a.port.to_string());
    let r = a.send("GET", host, &format!("/c_e783/oidc/login?idp={}", idp(&unregistered)), &[], b"").await;
    r.assert_problem(502, "provider-untrusted");
    assert!(r.header("location").is_none());

    // A second instance sharing Redis serves the same session.
    let b = Varco::start(&w.config().replace("{PORT}/", &format!("{}/", a.port))).await;
    let b_host = format!("127.0.0.1:{}", b.port);
    let r = b.send("GET", &b_host, "/c_e783/servizi/y", &[("cookie", &cookie)], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(backend.last()["headers"]["x-varco-fiscal-code"], "RSSMRA80A01H501U");

    // Logout on the second instance ends it everywhere: the cookie, kept by a thief, opens nothing.
    // A link to the logout (another site's, say) only shows a page asking: the session stays.
    let r = b.send("GET", &b_host, "/c_e783/oidc/logout", &[("cookie", &cookie), ("accept", "text/html")], b"").await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert!(r.text().contains("method=\"post\"") && r.header("set-cookie").is_none(), "{}", r.text());
    assert_eq!(a.send("GET", host, "/c_e783/servizi/x", &[("cookie", &cookie)], b"").await.status, 200);
    let r = b.send("POST", &b_host, "/c_e783/oidc/logout", &[("cookie", &cookie)], b"").await;
    assert_eq!((r.status, r.header("location")), (302, Some("/c_e783/")));
    assert!(r.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")), "{r:?}");
    a.send("GET", host, "/c_e783/servizi/x", &[("cookie", &cookie)], b"").await.assert_problem(401, "session-required");
    b.send("GET", &b_host, "/c_e783/servizi/x", &[("cookie", &cookie)], b"")
        .await
        .assert_problem(401, "session-required");
    assert!(!a.log_text().contains(&sid) && !b.log_text().contains(&sid), "a session id in the logs");
    // The OP took the revocation of the access token (varco warns when it does not).
    assert!(!b.log_text().contains("token revocation"), "{}", b.log_text());
}

#[tokio::test]
async fn a_citizen_logs_in_in_chromium_and_logs_out() {
    // Sessions in varco's memory here (one node); the test above keeps them in Redis.
    let w = World::start("browser", false).await;
    let user = &w.info["user"];
    // `VARCO_SCREENSHOTS=docs/img` refreshes the README's pictures.
    let shots = std::env::var("VARCO_SCREENSHOTS").map(PathBuf::from).unwrap_or_else(|_| w.dir.join("shots"));
    std::fs::create_dir_all(&shots).unwrap();
    w.backend.set_mode(varco_tests::Mode::Greeting);
    let start = format!("http://{}/c_e783/servizi/pratiche", w.host);
    let out = chromium(&start, user, &["--screenshots", shots.to_str().unwrap()]).await;
    assert_eq!(out["pages"][0]["title"], "Accedi – Comune di Macerata", "{out}");
    assert_eq!(out["final_url"], start.as_str());
    let text = out["final_text"].as_str().unwrap();
    assert!(text.contains("Benvenuto, Mario Rossi") && text.contains("RSSMRA80A01H501U"), "{text}");
    let cookies = out["cookies"].as_array().unwrap();
    let session = cookies.iter().find(|c| c["name"] == "varco_session").expect("the session cookie");
    assert_eq!((session["secure"].as_bool(), session["httpOnly"].as_bool()), (Some(true), Some(true)));
    assert_eq!((session["sameSite"].as_str(), session["path"].as_str()), (Some("Lax"), Some("/c_e783")));
    for f in ["login-chooser.png", "login-logged-in.png"] {
        assert!(std::fs::metadata(shots.join(f)).map(|m| m.len() > 10_000).unwrap_or(false), "{f}");
    }
    // Sessions in memory outlive a reload of the configuration.
    let cookie = format!("varco_session={}", session["value"].as_str().unwrap());
    assert_eq!(w.a.reload().await.status, 200);
    let r = w.a.send("GET", &w.host, "/c_e783/servizi/x", &[("cookie", &cookie)], b"").await;
    assert_eq!(r.status, 200, "the session did not survive a reload: {r:?}");

    // Logging out in the browser: the protected page leads to the chooser again.
    let out = chromium(&start, user, &["--logout"]).await;
    assert_eq!(out["logout_page_title"], "Esci – Comune di Macerata", "{out}");
    assert!(out["after_logout_url"].as_str().unwrap().contains("/c_e783/oidc/login?return_to="), "{out}");

    // Consent refused at the OP: varco's error page, in Italian, names what happened.
    let out = chromium(&start, user, &["--deny"]).await;
    let text = out["final_text"].as_str().unwrap();
    assert!(text.contains("Non è stato possibile completare l'accesso"), "{text}");
    assert!(text.contains("the identity provider refused the login"), "{text}");
    assert!(text.contains("urn:varco:problem:login-failed"), "{text}");
}
