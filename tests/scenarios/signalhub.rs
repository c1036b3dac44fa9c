//! PDND Signal Hub bridged to the bus, both ways, against independent peers
//! (tests/tools/pdnd_peer.py for the vouchers, signalhub_peer.py for Signal Hub's collection
//! and distribution services, checking vouchers and payloads against Signal Hub's OpenAPI):
//! the ente's residence changes become pseudonymised signals; other providers' signals become
//! events its webhook receives, once, across restarts.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use varco_tests::{api_key_hash, free_port, pdnd_peer, spawn_ready_tool, Backend, Jose, Varco, LISTENERS};

const MC: &str = "macerata.example.it";
const KEY: &str = "anagrafe-0123456789abcdef0123456789abcdef";
const M2M: &str = "uat.interop.pagopa.it/m2m";
const SEED: &str = "f3a7f54e-8e57-4a06-8bca-ac1857b6b045";
const OURS: &str = "es-anagrafe-macerata";
const THEIRS: &str = "es-anpr-notifiche";
const RESIDENZA: &str = "it.varco.anagrafe.residenza.cambiata.v1";
const SIGNAL: &str = "it.varco.pdnd.segnale.ricevuto.v1";

struct Env {
    v: Varco,
    hub: u16,
    hook: Backend,
    _peers: Vec<tokio::process::Child>,
    _jose: Jose,
}

fn spec(name: &str) -> String {
    format!("{}/../../contracts/external/signalhub/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn setup() -> Env {
    let jose = Jose::new();
    let registered = jose.ente_key("c_e783-pdnd").await;
    let hub = free_port();
    let conf = json!({
        "issuer": "https://uat.interop.pagopa.it", "assertion_aud": "auth.uat.interop.pagopa.it/client-assertion",
        "clients": {"api-c_e783": {"jwks_file": registered, "api": {"aud": M2M, "organizationId": "5f1c5d2d-0b0e-4e2f-8d1c-5a9b7e3f4a6c"}}},
    });
    let hub_conf = json!({"producers": {OURS: "api-c_e783"}, "consumers": {THEIRS: ["api-c_e783"]}});
    std::fs::write(jose.dir.join("hub.json"), hub_conf.to_string()).unwrap();
    let (pdnd, peer) = pdnd_peer(&jose.dir, &conf).await;
    let mut peers = vec![peer];
    let jwks = format!("http://127.0.0.1:{pdnd}/.well-known/jwks.json");
    peers.push(
        spawn_ready_tool(
            "signalhub_peer.py",
            &[
                &hub.to_string(),
                &spec("push-signals.yaml"),
                &spec("pull-signals.yaml"),
                &jwks,
                M2M,
                jose.dir.join("hub.json").to_str().unwrap(),
            ],
        )
        .await,
    );
    let hook = Backend::start("sportello").await;
    let dir = jose.dir.display();
    let cfg = format!(
        r#"
server: {{events: {{dir: "{{DIR}}/events"}}, audit: {{dir: "{{DIR}}/audit"}}}}
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    hosts: [{MC}]
    keys: [{{kid: c_e783-pdnd, private_key: {{file: "{dir}/c_e783-pdnd.pem"}}}}]
    pdnd:
      client_id: client-c_e783
      api_client_id: api-c_e783
      token_url: "http://127.0.0.1:{pdnd}/token.oauth2"
      assertion_audience: auth.uat.interop.pagopa.it/client-assertion
    api_keys: [{{name: anagrafe, hash: "{hash}"}}]
    events:
      subscriptions:
        - {{name: to-signal-hub, types: [{RESIDENZA}], sources: [c_e783], route: signal-hub, backoff: 100ms, max_backoff: 500ms}}
        - name: signals-in
          types: [{SIGNAL}]
          sources: [c_e783]
          webhook: {{url: "http://{hook}/hook", secret: {{env: HOOK_SECRET}}, timeout: 2s}}
          backoff: 100ms
    routes:
      - {{name: events, path: /events, methods: [POST], access: {{api_key: {{}}}}, to: {{adapter: {{kind: events}}}}}}
      - name: signal-hub
        path: /signal-hub
        methods: [GET]
        access: {{api_key: {{}}}}
        to:
          adapter:
            kind: signal_hub
            deposit:
              url: "http://127.0.0.1:{hub}/1.0/push"
              eservice_id: {OURS}
              seed: {{env: SIGNAL_SEED}}
              signals:
                - {{type: {RESIDENZA}, signal_type: UPDATE, object_type: residenza}}
            pull:
              url: "http://127.0.0.1:{hub}/1.0/pull/"
              eservices: [{THEIRS}]
              interval: 1s
              size: 2
              state_dir: "{{DIR}}/signal-hub"
"#,
        hash = api_key_hash(KEY),
        hook = hook.addr,
    );
    let v =
        Varco::start_with_env(&cfg, &[("SIGNAL_SEED", SEED), ("HOOK_SECRET", "hook-secret-0123456789abcdef")]).await;
    Env { v, hub, hook, _peers: peers, _jose: jose }
}

async fn stats(port: u16) -> Value {
    let r = varco_tests::Client::new(port).get("127.0.0.1", "/_control/stats").await;
    serde_json::from_slice(&r.body).unwrap()
}

async fn control(port: u16, path: &str, body: Value) {
    let c = varco_tests::Client::new(port);
    let r =
        c.send("POST", "127.0.0.1", path, &[("content-type", "application/json")], body.to_string().as_bytes()).await;
    assert!(r.status < 300, "{}", r.text());
}

async fn wait_for<F: Fn(&Value) -> bool>(port: u16, what: &str, ok: F) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = stats(port).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn residence(id: &str, cf: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/enti/c_e783/anagrafe", "type": RESIDENZA, "subject": cf,
        "data": {"codiceFiscale": cf, "comuneProvenienza": "E783", "comuneDestinazione": "A662", "dataDecorrenza": "2026-11-20"}
    })
}

/// Signals another producer deposited on the e-service the ente reads.
fn theirs(from: u64, n: u64) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| json!({"signalId": i, "eserviceId": THEIRS, "signalType": "UPDATE", "objectType": "residenza", "objectId": format!("obj-{i}")}))
            .collect(),
    )
}

/// Webhook deliveries of signal events (their structured bodies).
async fn delivered(hook: &Backend, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got: Vec<Value> = hook
            .requests()
            .iter()
            .map(|r| serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null))
            .filter(|b| b["type"] == SIGNAL)
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_entes_events_become_pseudonymised_signals() {
    let env = setup().await;
    for (i, cf) in ["RSSMRA80A01H501U", "BNCLCU82B41E783L"].iter().enumerate() {
        let r = env
            .v
            .send(
                "POST",
                MC,
                "/events",
                &[("content-type", "application/cloudevents+json"), ("x-api-key", KEY)],
                residence(&format!("r-{i}"), cf).to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let s = wait_for(env.hub, "two signals deposited", |s| s["deposited"].as_array().unwrap().len() == 2).await;
    assert_eq!(s["refused"], json!([]), "every deposit passed Signal Hub's checks");
    let first = &s["deposited"][0];
    assert_eq!((first["signalType"].as_str(), first["objectType"].as_str()), (Some("UPDATE"), Some("residenza")));
    assert_eq!(first["eserviceId"], OURS);
    // The codice fiscale never leaves: the object id is SHA-256(id + seed), computed here
    // independently by the test (sha256sum of the same bytes).
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("printf '%s' 'RSSMRA80A01H501U{SEED}' | sha256sum")])
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned();
    assert_eq!(first["objectId"], want.as_str());
    assert!(!s.to_string().contains("RSSMRA80A01H501U"));
    let ids: Vec<u64> = s["deposited"].as_array().unwrap().iter().map(|d| d["signalId"].as_u64().unwrap()).collect();
    assert!(ids[0] < ids[1], "signalIds increase: {ids:?}");
    // The bridge shows what it did.
    let r = env.v.send("GET", MC, "/signal-hub", &[("x-api-key", KEY)], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["deposit"]["deposited"], 2);
    assert_eq!(r.json["deposit"]["last_signal_id"], ids[1]);
    assert_eq!(env.v.send("GET", MC, "/signal-hub", &[], b"").await.status, 401);
    // Each deposit is an outbound record of the ente's audit trail (never the codice fiscale).
    let (records, kept) = env.v.audit_records("c_e783", &["--route", "signalhub:deposit"], |r| r.len() >= 2).await;
    assert_eq!(records.len(), 2, "{kept}");
    assert!(records.iter().all(|r| r["direction"] == "outbound" && r["method"] == "POST"), "{kept}");
    assert!(records.iter().all(|r| r["upstream"].as_str().unwrap().ends_with("/signals")), "{kept}");
    assert!(!kept.contains("RSSMRA80A01H501U") && !kept.contains("BNCLCU82B41E783L"), "{kept}");
}

#[tokio::test]
async fn refused_deposits_are_retried_and_signal_hub_outages_lose_nothing() {
    let env = setup().await;
    control(env.hub, "/_control/set", json!({"down": true})).await;
    let r = env
        .v
        .send(
            "POST",
            MC,
            "/events",
            &[("content-type", "application/cloudevents+json"), ("x-api-key", KEY)],
            residence("r-down", "RSSMRA80A01H501U").to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 202);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(stats(env.hub).await["deposited"], json!([]));
    control(env.hub, "/_control/set", json!({"down": false})).await;
    let s = wait_for(env.hub, "the signal after the outage", |s| s["deposited"].as_array().unwrap().len() == 1).await;
    assert_eq!(s["deposited"][0]["eserviceId"], OURS);
}

#[tokio::test]
async fn other_providers_signals_reach_the_webhook_once_across_restarts() {
    let mut env = setup().await;
    // Five signals, pulled two at a time (206 until the last page).
    control(env.hub, "/_control/signals", theirs(1, 5)).await;
    let got = delivered(&env.hook, 5).await;
    assert_eq!(got.len(), 5, "{got:?}");
    // Each once (webhooks get different subjects side by side, so in any order).
    let mut ids: Vec<u64> = got.iter().map(|e| e["data"]["signalId"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "each once");
    let one = got.iter().find(|e| e["data"]["signalId"] == 1).unwrap();
    assert_eq!(one["id"], format!("{THEIRS}-1"));
    assert_eq!(one["source"], "/enti/c_e783/signal-hub");
    assert_eq!(one["subject"], "obj-1");
    assert_eq!(one["data"]["objectType"], "residenza");
    assert_eq!(one["data"]["eserviceId"], THEIRS);
    let r = env.v.send("GET", MC, "/signal-hub", &[("x-api-key", KEY)], b"").await;
    assert_eq!(r.json["pull"]["feeds"][0]["last_signal_id"], 5, "{}", r.text());
    // A restart resumes after the last signal read: nothing again, and new ones arrive.
    env.v.restart().await;
    control(env.hub, "/_control/signals", theirs(6, 2)).await;
    let got = delivered(&env.hook, 7).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = delivered(&env.hook, 7).await;
    // Each signal was published once: a webhook may get an event again around a restart
    // (at least once, the same event: same id and time), but a signal pulled and published
    // twice would be a second event with its own time.
    let mut once: std::collections::BTreeMap<u64, &Value> = std::collections::BTreeMap::new();
    for e in &again {
        let id = e["data"]["signalId"].as_u64().unwrap();
        if let Some(first) = once.insert(id, e) {
            assert_eq!(first, e, "signal {id} published twice after the restart: {got:?}");
        }
    }
    assert_eq!(once.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6, 7]);
    // Signal Hub down for a while: the bridge reports it and catches up afterwards.
    control(env.hub, "/_control/set", json!({"down": true})).await;
    control(env.hub, "/_control/signals", theirs(8, 1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = env.v.send("GET", MC, "/signal-hub", &[("x-api-key", KEY)], b"").await;
    assert!(r.json["pull"]["feeds"][0]["error"].as_str().is_some_and(|e| e.contains("503")), "{}", r.text());
    control(env.hub, "/_control/set", json!({"down": false})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !delivered(&env.hook, 0).await.iter().any(|e| e["data"]["signalId"] == 8) {
        assert!(Instant::now() < deadline, "signal 8 never arrived after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Hostile or broken signals (no id, an unknown type, a huge object id) are passed over,
    // not retried for ever: the good one behind them arrives.
    let bad = json!([
        {"signalId": 9, "eserviceId": THEIRS, "signalType": "EXPLODE", "objectType": "x", "objectId": "o"},
        {"signalId": 10, "eserviceId": THEIRS, "signalType": "UPDATE", "objectType": "x", "objectId": "o".repeat(5000)},
        {"signalId": 11, "eserviceId": THEIRS, "signalType": "DELETE", "objectType": "residenza", "objectId": "obj-11"}
    ]);
    control(env.hub, "/_control/signals", bad).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !delivered(&env.hook, 0).await.iter().any(|e| e["data"]["signalId"] == 11) {
        assert!(Instant::now() < deadline, "signal 11 never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = delivered(&env.hook, 0).await;
    assert!(got.iter().any(|e| e["data"]["signalId"] == 11 && e["data"]["signalType"] == "DELETE"));
    assert!(
        !got.iter().any(|e| e["data"]["signalId"] == 9 || e["data"]["signalId"] == 10),
        "malformed ones never published"
    );
    let r = env.v.send("GET", MC, "/signal-hub", &[("x-api-key", KEY)], b"").await;
    assert_eq!(
        (r.json["pull"]["feeds"][0]["last_signal_id"].as_u64(), r.json["pull"]["feeds"][0]["skipped"].as_u64()),
        (Some(11), Some(2)),
        "{}",
        r.text()
    );
    // A reload without `pull` stops the puller: new signals stay in Signal Hub.
    let text = std::fs::read_to_string(&env.v.config).unwrap();
    let cut = text.find("            pull:").unwrap();
    env.v.rewrite_config(&text[..cut]);
    assert_eq!(env.v.reload().await.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await; // a poll in flight finishes
    let pulls = stats(env.hub).await["pulls"].as_u64().unwrap();
    control(env.hub, "/_control/signals", theirs(12, 1)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stats(env.hub).await["pulls"].as_u64().unwrap(), pulls, "no more pulls");
    assert!(!delivered(&env.hook, 0).await.iter().any(|e| e["data"]["signalId"] == 12), "not pulled after the reload");
}

#[tokio::test]
async fn a_bridge_without_an_api_client_is_refused() {
    let dir = std::env::temp_dir().join(format!("varco-sh-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        "listeners: [{{name: public, address: \"127.0.0.1:{}\"}}]\nadmin: {{address: \"127.0.0.1:{}\"}}\ntenants:\n  - id: c_e783\n    name: Macerata\n    keys: [{{kid: k, private_key: {{file: /nonexistent.pem}}}}]\n    pdnd: {{client_id: c, token_url: \"http://p.example/token\", assertion_audience: a, purposes: {{x: p}}}}\n    routes:\n      - {{name: sh, path: /sh, methods: [GET], access: public, to: {{adapter: {{kind: signal_hub, pull: {{url: \"http://h.example/1.0/pull\", eservices: [\"bad id/..\"], size: 500}}}}}}}}\n",
        free_port(),
        free_port()
    );
    let path = dir.join("c.yaml");
    std::fs::write(&path, cfg).unwrap();
    let out = std::process::Command::new(Varco::bin()).args(["check", "--config"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    for want in ["set `tenants[].pdnd.api_client_id`", "pull.eservices[0]", "pull.size", "tenants[0].routes[0].access"]
    {
        assert!(text.contains(want), "want `{want}` in:\n{text}");
    }
}
