//! varco as the ente's PDND consumer: a back-office reads ANPR (C001 residence, C021 family)
//! with plain REST and its API key, while varco gets the vouchers, signs INTEGRITY_REST_02 and
//! AUDIT_REST_02 and checks ANPR's signed answers. The peers are independent processes
//! (tests/tools/pdnd_peer.py, anpr_peer.py; PyJWT), checking everything PDND and ANPR's
//! gateway check: a 200 means every check passed on their side.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use serde_json::{json, Value};
use std::time::Duration;
use varco_tests::{api_key_hash, free_port, pdnd_peer, spawn_ready_tool, Jose, Resp, Varco, LISTENERS};

const MC: &str = "macerata.example.it";
const CLIENT: &str = "client-c_e783";
const ASSERTION_AUD: &str = "auth.uat.interop.pagopa.it/client-assertion";
const AUD_C001: &str =
    "https://modipa-val.anpr.interno.it/govway/rest/in/MinInternoPortaANPR-PDND/C001-servizioNotifica/v1";
const AUD_C021: &str =
    "https://modipa-val.anpr.interno.it/govway/rest/in/MinInternoPortaANPR-PDND/C021-servizioAccertamentoStatoFamiglia/v1";
const AUD_PLAIN: &str = "https://eservice.example.it/without-audit/v1";
const KEY: &str = "anagrafe-0123456789abcdef0123456789abcdef";
const ROSSI: &str = "RSSMRA80A01H501U";

struct Env {
    v: Varco,
    pdnd: u16,
    c001: u16,
    plain: u16,
    _peers: Vec<tokio::process::Child>,
    _jose: Jose,
}

fn spec(name: &str) -> String {
    format!("{}/../../contracts/external/anpr/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn setup() -> Env {
    let jose = Jose::new();
    let registered = jose.ente_key("c_e783-pdnd").await;
    jose.keygen("anpr-1", "RS256").await; // ANPR's response-signing key
    let (c001, c021, plain) = (free_port(), free_port(), free_port());
    let conf = json!({
        "issuer": "https://uat.interop.pagopa.it", "assertion_aud": ASSERTION_AUD, "expires_in": 600,
        "clients": {CLIENT: {"jwks_file": registered, "purposes": {
            "purpose-res": {"aud": AUD_C001, "eserviceId": "es-c001"},
            "purpose-fam": {"aud": AUD_C021, "eserviceId": "es-c021"},
            "purpose-plain": {"aud": AUD_PLAIN, "eserviceId": "es-plain"},
        }}},
    });
    let (pdnd, peer) = pdnd_peer(&jose.dir, &conf).await;
    let mut peers = vec![peer];
    let pdnd_jwks = format!("http://127.0.0.1:{pdnd}/.well-known/jwks.json");
    let anpr_key = jose.dir.join("anpr-1.pem");
    for (port, file, aud, purpose, extra) in [
        (c001, "C001-consultazioneANPR.yml", AUD_C001, "purpose-res", None),
        (c021, "C021-servizioAccertamentoStatoFamiglia.yaml", AUD_C021, "purpose-fam", None),
        (plain, "C021-servizioAccertamentoStatoFamiglia.yaml", AUD_PLAIN, "purpose-plain", Some("--no-audit")),
    ] {
        let mut args = vec![
            port.to_string(),
            spec(file),
            aud.to_owned(),
            purpose.to_owned(),
            pdnd_jwks.clone(),
            registered.display().to_string(),
            "--key".into(),
            anpr_key.display().to_string(),
            "anpr-1".into(),
        ];
        args.extend(extra.map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        peers.push(spawn_ready_tool("anpr_peer.py", &args).await);
    }
    let dir = jose.dir.display();
    let cfg = format!(
        r#"
server: {{audit: {{dir: "{{DIR}}/audit"}}}}
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    hosts: [{MC}]
    keys: [{{kid: c_e783-pdnd, private_key: {{file: "{dir}/c_e783-pdnd.pem"}}}}]
    pdnd:
      client_id: {CLIENT}
      token_url: "http://127.0.0.1:{pdnd}/token.oauth2"
      assertion_audience: {ASSERTION_AUD}
      purposes: {{residenza: purpose-res, famiglia: purpose-fam, plain: purpose-plain}}
      refresh_before: 1s
    issuers:
      anpr: {{issuer: "anpr", audiences: [unused], jwks_url: "http://127.0.0.1:{c001}/.well-known/jwks.json"}}
    api_keys: [{{name: ufficio-anagrafe, hash: "{hash}"}}]
    routes:
      - name: anpr
        path: "/anpr/{{*rest}}"
        methods: [GET]
        access: {{api_key: {{}}}}
        to:
          adapter:
            kind: anpr
            residenza: {{url: "http://127.0.0.1:{c001}", purpose: residenza, audience: "{AUD_C001}"}}
            famiglia: {{url: "http://127.0.0.1:{c021}/", purpose: famiglia, audience: "{AUD_C021}"}}
            motivo: "fascicolo 2026/118"
            tracking: {{user_location: sportello-anagrafe-1, loa: LoA3}}
            provider_keys: anpr
            timeout: 3s
            retry_after_secs: 17
      - name: plain
        path: "/plain/{{*rest}}"
        methods: [GET]
        access: {{api_key: {{}}}}
        to:
          adapter:
            kind: anpr
            famiglia: {{url: "http://127.0.0.1:{plain}", purpose: plain, audience: "{AUD_PLAIN}", audit: false}}
            motivo: "verifica"
            provider_keys: anpr
"#,
        hash = api_key_hash(KEY),
    );
    let v = Varco::start(&cfg).await;
    Env { v, pdnd, c001, plain, _peers: peers, _jose: jose }
}

async fn get(env: &Env, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("x-api-key", KEY)];
    h.extend_from_slice(headers);
    env.v.send("GET", MC, path, &h, b"").await
}

/// A peer's `/_control/stats`.
async fn stats(port: u16) -> Value {
    let c = varco_tests::Client::new(port);
    let r = c.get("127.0.0.1", "/_control/stats").await;
    serde_json::from_slice(&r.body).unwrap()
}

/// Asserts that `body` is a `schema` of varco's own contract (contracts/openapi/anpr.yaml),
/// checked by Python's jsonschema.
fn conforms(schema: &str, body: &[u8]) {
    let contract = format!("{}/../../contracts/openapi/anpr.yaml", env!("CARGO_MANIFEST_DIR"));
    let script = "import json, sys, yaml, jsonschema\n\
        from referencing import Registry, Resource\n\
        from referencing.jsonschema import DRAFT4\n\
        doc = yaml.safe_load(open(sys.argv[1]))\n\
        reg = Registry().with_resource('urn:c', Resource.from_contents(doc, default_specification=DRAFT4))\n\
        v = jsonschema.Draft4Validator({'$ref': 'urn:c#/components/schemas/' + sys.argv[2]}, registry=reg)\n\
        errors = [e.message for e in v.iter_errors(json.load(sys.stdin))]\n\
        print('; '.join(errors)); sys.exit(1 if errors else 0)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &contract, schema])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not a {schema}: {}", String::from_utf8_lossy(&out.stdout));
}

async fn set(port: u16, modes: Value) {
    let c = varco_tests::Client::new(port);
    let r = c
        .send(
            "POST",
            "127.0.0.1",
            "/_control/set",
            &[("content-type", "application/json")],
            modes.to_string().as_bytes(),
        )
        .await;
    assert!(r.status < 300, "{}", r.text());
}

#[tokio::test]
async fn a_back_office_reads_a_residence_and_a_family_with_every_check_passing_at_the_peers() {
    let env = setup().await;
    let r = get(&env, &format!("/anpr/residenza/{}", ROSSI.to_lowercase()), &[]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), env.v.log_text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["codice_fiscale"], ROSSI);
    assert_eq!((body["cognome"].as_str(), body["nome"].as_str()), (Some("ROSSI"), Some("MARIO")));
    assert_eq!(body["residenza"][0]["indirizzo"], "VIA ROMA");
    assert_eq!(body["residenza"][0]["comune"], "MACERATA");
    assert_eq!(body["id_anpr"], "AB12345CD");
    conforms("Residenza", &r.body);
    // ANPR's side: one request accepted, the tracking evidence names the API-key holder at
    // the configured desk and level; PDND issued one voucher, bound to that evidence.
    let anpr = stats(env.c001).await;
    assert_eq!(anpr["ok"], 1, "{anpr}");
    assert_eq!(anpr["refused"], json!([]));
    let ev = &anpr["evidence"][0];
    assert_eq!(
        (ev["userID"].as_str(), ev["userLocation"].as_str(), ev["LoA"].as_str()),
        (Some("ufficio-anagrafe"), Some("sportello-anagrafe-1"), Some("LoA3"))
    );
    assert_eq!(ev["iss"], CLIENT);
    let pdnd = stats(env.pdnd).await;
    assert_eq!((pdnd["issued"].as_u64(), pdnd["bound"].as_u64()), (Some(1), Some(1)), "{pdnd}");
    // The operator the back-office names is the one ANPR's audit trail records.
    let r = get(
        &env,
        &format!("/anpr/residenza/{ROSSI}?motivo=prot.%2042&data=2026-01-31"),
        &[("x-user-id", "op-rossi-17")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let anpr = stats(env.c001).await;
    assert_eq!(anpr["evidence"][1]["userID"], "op-rossi-17");
    // Each call its own idOperazioneClient, numeric and increasing (the peer refuses others),
    // also under concurrent calls: C001's calls go one at a time.
    let ids: Vec<u64> = anpr["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().parse().unwrap()).collect();
    assert!(ids[0] < ids[1], "{ids:?}");
    let path = format!("/anpr/residenza/{ROSSI}");
    let calls: Vec<_> = (0..8).map(|_| get(&env, &path, &[])).collect();
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(stats(env.c001).await["refused"], json!([]));
    // C021: the family, each member with the link to the head of the family.
    let r = get(&env, &format!("/anpr/famiglia/{ROSSI}"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fam: Value = serde_json::from_slice(&r.body).unwrap();
    let members = fam["componenti"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[1]["codice_fiscale"], "BNCLCU82B41E783L");
    assert_eq!(members[1]["legame"]["tipo"], "CONIUGE");
    conforms("Famiglia", &r.body);
    // Audit-bound vouchers are never reused: eleven calls, eleven vouchers.
    assert_eq!(stats(env.pdnd).await["bound"], 11);
    // Each call to ANPR is an outbound record of the ente's audit trail: who, purpose, outcome;
    // never the codice fiscale.
    let outbound_of = |r: &[Value]| r.iter().filter(|r| r["direction"] == "outbound").cloned().collect::<Vec<_>>();
    let (records, kept) = env.v.audit_records("c_e783", &[], |r| outbound_of(r).len() >= 11).await;
    let outbound = outbound_of(&records);
    assert_eq!(outbound.len(), 11, "{kept}");
    assert_eq!(outbound.iter().filter(|r| r["route"] == "anpr:C021").count(), 1);
    assert!(outbound.iter().all(|r| r["status"] == 200 && r["purpose_id"].as_str().is_some()), "{kept}");
    assert!(!kept.contains(ROSSI), "a codice fiscale reached the audit trail");
}

#[tokio::test]
async fn anpr_errors_bad_input_and_missing_credentials_get_problems() {
    let env = setup().await;
    // Nobody with this (valid, omocodic) codice fiscale: ANPR's own code reaches the back-office.
    let r = get(&env, "/anpr/residenza/RSSMRA80A01H50MM", &[]).await;
    r.assert_problem(404, "not-found");
    assert_eq!(r.json["errors"]["anpr_errors"][0]["codice"], "EN122", "{:?}", r.json);
    assert!(r.json["detail"].as_str().unwrap().contains("EN122"));
    conforms("Problem", &r.body);
    let before = stats(env.c001).await["ok"].as_u64().unwrap();
    // Refused before any call: a wrong check character, a bad date, an unknown lookup, a
    // header that is not text, no credential.
    get(&env, "/anpr/residenza/RSSMRA80A01H501A", &[]).await.assert_problem(400, "bad-request");
    get(&env, &format!("/anpr/residenza/{ROSSI}?data=31-01-2026"), &[]).await.assert_problem(400, "bad-request");
    get(&env, &format!("/anpr/residenza/{ROSSI}?motivo="), &[]).await.assert_problem(400, "bad-request");
    get(&env, &format!("/anpr/stato-civile/{ROSSI}"), &[]).await.assert_problem(404, "no-route");
    let long = "x".repeat(300);
    get(&env, &format!("/anpr/residenza/{ROSSI}"), &[("x-user-id", &long)]).await.assert_problem(400, "bad-request");
    let r = env.v.send("GET", MC, &format!("/anpr/residenza/{ROSSI}"), &[], b"").await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = env.v.send("GET", MC, &format!("/anpr/residenza/{ROSSI}"), &[("x-api-key", "wrong")], b"").await;
    assert_eq!(r.status, 401, "{}", r.text());
    // Only GET.
    let r = env.v.send("POST", MC, &format!("/anpr/residenza/{ROSSI}"), &[("x-api-key", KEY)], b"{}").await;
    r.assert_problem(405, "method-not-allowed");
    assert_eq!(stats(env.c001).await["ok"].as_u64().unwrap(), before, "none of these reached ANPR");
    // ANPR's schema check: a `caso_uso` it would refuse is its answer, with its code.
    let r = get(&env, &format!("/anpr/residenza/{ROSSI}?caso_uso=C001"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn answers_that_do_not_verify_are_never_passed_on() {
    let env = setup().await;
    set(env.c001, json!({"tamper": true})).await;
    let r = get(&env, &format!("/anpr/residenza/{ROSSI}"), &[]).await;
    r.assert_problem(502, "bad-gateway");
    assert!(r.json["detail"].as_str().unwrap().contains("did not verify"), "{:?}", r.json);
    assert!(!r.text().contains("VERDI"), "the altered answer must not reach the back-office");
    // Also an error answer: an altered 404 is not passed on either.
    let r = get(&env, "/anpr/residenza/RSSMRA80A01H50MM", &[]).await;
    r.assert_problem(502, "bad-gateway");
    assert!(!r.text().contains("EN999"));
    set(env.c001, json!({"tamper": false})).await;
    assert_eq!(get(&env, &format!("/anpr/residenza/{ROSSI}"), &[]).await.status, 200);
}

#[tokio::test]
async fn pdnd_refusals_and_outages_are_named_and_a_down_provider_is_503_with_retry_after() {
    let mut env = setup().await;
    // PDND refuses the assertion (here: the audience it expects changed): its reason travels.
    set(env.pdnd, json!({"assertion_aud": "auth.interop.pagopa.it/client-assertion"})).await;
    let r = get(&env, &format!("/anpr/residenza/{ROSSI}"), &[]).await;
    r.assert_problem(502, "bad-gateway");
    let detail = r.json["detail"].as_str().unwrap();
    assert!(detail.contains("PDND refused") && detail.contains("015-0008"), "{detail}");
    assert!(detail.to_lowercase().contains("audience"), "PDND's own reason: {detail}");
    assert_eq!(stats(env.c001).await["ok"], 0, "no voucher, no call");
    set(env.pdnd, json!({"assertion_aud": ASSERTION_AUD})).await;
    assert_eq!(get(&env, &format!("/anpr/residenza/{ROSSI}"), &[]).await.status, 200);
    // ANPR too slow: 504 with Retry-After.
    set(env.c001, json!({"delay": 4})).await;
    let r = get(&env, &format!("/anpr/residenza/{ROSSI}"), &[]).await;
    r.assert_problem(504, "gateway-timeout");
    assert_eq!(r.header("retry-after"), Some("17"));
    set(env.c001, json!({"delay": 0})).await;
    // ANPR down (its process gone): 503 with the route's Retry-After.
    let c001 = env._peers.remove(1);
    drop(c001);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(&env, &format!("/anpr/residenza/{ROSSI}"), &[]).await;
    r.assert_problem(503, "upstream-unavailable");
    assert_eq!(r.header("retry-after"), Some("17"));
    // PDND down as well: still a clear 503, naming PDND.
    let pdnd = env._peers.remove(0);
    drop(pdnd);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = get(&env, &format!("/anpr/famiglia/{ROSSI}"), &[]).await;
    r.assert_problem(503, "upstream-unavailable");
    assert!(r.json["detail"].as_str().unwrap().contains("PDND"), "{:?}", r.json);
}

#[tokio::test]
async fn vouchers_are_cached_refreshed_before_expiry_and_fetched_once_under_load() {
    let env = setup().await;
    // An e-service without AUDIT_REST_02: one voucher serves many calls.
    set(env.pdnd, json!({"expires_in": 3, "delay": 0.3})).await;
    let path = format!("/plain/famiglia/{ROSSI}");
    let calls: Vec<_> = (0..12).map(|_| get(&env, &path, &[])).collect();
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let pdnd = stats(env.pdnd).await;
    assert_eq!((pdnd["issued"].as_u64(), pdnd["bound"].as_u64()), (Some(1), Some(0)), "one refresh in flight: {pdnd}");
    assert_eq!(stats(env.plain).await["ok"], 12);
    // `refresh_before: 1s` of a 3 s voucher: after 2 s it is replaced before it expires.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(get(&env, &path, &[]).await.status, 200);
    assert_eq!(stats(env.pdnd).await["issued"], 2);
    // ANPR refuses a cached voucher (revoked): varco drops it and tries once more with a new one.
    set(env.plain, json!({"refuse_vouchers": 1})).await;
    let r = get(&env, &path, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stats(env.pdnd).await["issued"], 3);
    // Refused twice: the second refusal is ANPR's answer, reported as such.
    set(env.plain, json!({"refuse_vouchers": 2})).await;
    let r = get(&env, &path, &[]).await;
    r.assert_problem(502, "bad-gateway");
    assert!(r.json["detail"].as_str().unwrap().contains("EN401"), "{:?}", r.json);
}

#[tokio::test]
async fn a_config_without_what_pdnd_needs_is_refused() {
    let dir = std::env::temp_dir().join(format!("varco-anpr-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jose = Jose::new();
    jose.keygen("ec", "ES256").await;
    let base = |tenant: &str| {
        format!(
            "listeners: [{{name: public, address: \"127.0.0.1:{}\"}}]\nadmin: {{address: \"127.0.0.1:{}\"}}\ntenants:\n  - id: c_e783\n    name: Macerata\n{tenant}",
            free_port(),
            free_port()
        )
    };
    let route = "    routes:\n      - {name: a, path: \"/anpr/{*rest}\", methods: [GET], access: public, to: {adapter: {kind: anpr, residenza: {url: \"http://x.example\", purpose: nope}}}}\n";
    let ec = format!("    keys: [{{kid: ec, private_key: {{file: \"{}/ec.pem\"}}}}]\n", jose.dir.display());
    let pdnd = "    pdnd: {client_id: c, token_url: \"http://p.example/token.oauth2\", assertion_audience: a, purposes: {res: p-1}}\n";
    for (cfg, want) in [
        (base(route), ("tenants[0].routes[0].to.adapter ", "ANPR is reached through PDND")),
        (base(&format!("{pdnd}{route}")), ("tenants[0].pdnd ", "a PDND client signs with the ente's key")),
        (base(&format!("{ec}{pdnd}{route}")), ("tenants[0].routes[0].to.adapter.residenza.purpose ", "`nope`")),
        (
            base(&format!("{ec}{pdnd}{route}")),
            ("tenants[0].routes[0].access ", "ANPR is read on behalf of a known caller"),
        ),
    ] {
        let path = dir.join("c.yaml");
        std::fs::write(&path, &cfg).unwrap();
        let out = std::process::Command::new(Varco::bin()).args(["check", "--config"]).arg(&path).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cfg}");
        let line = text.lines().find(|l| l.contains(want.0)).unwrap_or_else(|| panic!("no `{}` in:\n{text}", want.0));
        assert!(line.contains(want.1), "want `{}` in: {line}", want.1);
    }
    // An EC key cannot sign PDND assertions: refused when the configuration is built.
    let ok_route = "    api_keys: []\n    routes:\n      - {name: a, path: \"/anpr/{*rest}\", methods: [GET], access: {api_key: {}}, to: {adapter: {kind: anpr, residenza: {url: \"http://x.example\", purpose: res}}}}\n";
    let cfg = base(&format!("{ec}{pdnd}{ok_route}"));
    let path = dir.join("c.yaml");
    std::fs::write(&path, &cfg).unwrap();
    let run =
        tokio::process::Command::new(Varco::bin()).args(["serve", "--config"]).arg(&path).kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(20), run).await.expect("varco must refuse to start").unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("RS256"), "{text}");
}
