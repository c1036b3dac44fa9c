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
