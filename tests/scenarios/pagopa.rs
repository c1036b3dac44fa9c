//! The ente as a pagoPA station, against an independent node: a SOAP client built from the
//! official WSDL (Python zeep) calls varco, and every answer is validated against the official
//! XSD (Python xmlschema). The back-office is a real HTTP server holding debt positions; GPD is
//! played by a server that checks each request against pagoPA's `gpd.json`. Receipts are in
//! `pagopa_receipts.rs`.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

#[path = "pagopa_common.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use varco_tests::{Mode, Varco, LISTENERS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_get_payment_answer_from_the_back_office() {
    let env = setup().await;
    let r = node(&env, "paVerifyPaymentNotice", with(ids(), qr("0000000000001"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let opt = &r["paymentList"]["paymentOptionDescription"];
    assert_eq!(opt["amount"], "120.00");
    assert_eq!(opt["options"], "EQ");
    assert_eq!(opt["allCCP"], false, "one transfer is not to a postal account");
    assert_eq!(r["fiscalCodePA"], ID_PA);
    for op in ["paGetPayment", "paGetPaymentV2"] {
        let r = node(&env, op, with(ids(), qr("0000000000001"))).await;
        assert_eq!(r["outcome"], "OK", "{op}: {r}");
        let d = &r["data"];
        assert_eq!(d["creditorReferenceId"], &notice("0000000000001")[1..]);
        assert_eq!(d["paymentAmount"], "120.00");
        assert_eq!(d["debtor"]["uniqueIdentifier"]["entityUniqueIdentifierValue"], "RSSMRA80A01H501U");
        let t = d["transferList"]["transfer"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["transferAmount"], "110.00");
        assert_eq!(t[1]["IBAN"], "IT60X0760111101000000123456");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_a_valid_ct_fault_bean() {
    let env = setup().await;
    let mut bad_check = notice("0000000000001");
    let last = if bad_check.ends_with("00") { "01" } else { "00" };
    bad_check.replace_range(16.., last);
    let cases = [
        ("idPA", with(ids(), with(qr("0000000000001"), json!({"idPA": "00000000000"}))), "PAA_ID_DOMINIO_ERRATO"),
        (
            "broker",
            with(ids(), with(qr("0000000000001"), json!({"idBrokerPA": "99999999999"}))),
            "PAA_ID_INTERMEDIARIO_ERRATO",
        ),
        (
            "station",
            with(ids(), with(qr("0000000000001"), json!({"idStation": "other_01"}))),
            "PAA_STAZIONE_INT_ERRATA",
        ),
        ("unknown", with(ids(), qr("0000000000042")), "PAA_PAGAMENTO_SCONOSCIUTO"),
        ("paid", with(ids(), qr("0000000000002")), "PAA_PAGAMENTO_DUPLICATO"),
        ("expired", with(ids(), qr("0000000000003")), "PAA_PAGAMENTO_SCADUTO"),
        ("cancelled", with(ids(), qr("0000000000004")), "PAA_PAGAMENTO_ANNULLATO"),
        (
            "check digits",
            with(ids(), json!({"qrCode": {"fiscalCode": ID_PA, "noticeNumber": bad_check}})),
            "PAA_SEMANTICA",
        ),
        (
            "segregation",
            with(
                ids(),
                json!({"qrCode": {"fiscalCode": ID_PA, "noticeNumber": format!("399{}", &notice("0000000000001")[3..])}}),
            ),
            "PAA_SEMANTICA",
        ),
        (
            "other ente's notice",
            with(ids(), json!({"qrCode": {"fiscalCode": "80012345678", "noticeNumber": notice("0000000000001")}})),
            "PAA_ID_DOMINIO_ERRATO",
        ),
    ];
    for (case, args, code) in cases {
        for op in ["paVerifyPaymentNotice", "paGetPayment"] {
            let r = node(&env, op, args.clone()).await;
            assert_eq!(r["outcome"], "KO", "{case} {op}: {r}");
            assert_eq!(fault_code(&r), code, "{case} {op}: {r}");
            assert_eq!(r["fault"]["id"], ID_PA);
        }
    }
    // The back-office down: a system error, not a crash.
    env.bo.set_mode(Mode::Status(503));
    let r = node(&env, "paVerifyPaymentNotice", with(ids(), qr("0000000000042"))).await;
    assert_eq!(fault_code(&r), "PAA_SYSTEM_ERROR", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notice_helpers() {
    let env = setup().await;
    let r = env.v.get(MC, "/pagopa/notice-number?base=0000000000001").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["notice_number"], notice("0000000000001"));
    env.v.get(MC, "/pagopa/notice-number?base=12").await.assert_problem(400, "bad-request");
    let r = env.v.get(MC, &format!("/pagopa/payment-notices/{}", notice("0000000000001"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json["qr_code"], format!("PAGOPA|002|{}|{ID_PA}|12000", notice("0000000000001")));
    assert_eq!(r.json["amount"], "120.00");
    assert_eq!(r.json["status"], "payable");
    env.v
        .get(MC, &format!("/pagopa/payment-notices/{}", notice("0000000000042")))
        .await
        .assert_problem(404, "not-found");
    env.v.get(MC, "/pagopa/payment-notices/123").await.assert_problem(400, "bad-request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_payment_notice_asks_the_back_office() {
    let env = setup().await;
    let args = with(
        ids(),
        json!({"idServizio": "00001", "idSoggettoServizio": "00042", "datiSpecificiServizioRequest": "PGRhdGk+PC9kYXRpPg=="}),
    );
    let r = node(&env, "paDemandPaymentNotice", args).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    assert_eq!(r["qrCode"]["noticeNumber"], notice("0000000000999"));
    assert_eq!(r["paymentList"]["paymentOptionDescription"]["amount"], "50.00");
}

/// Raw messages a node would never send: answered, never a crash, and valid when they are
/// an operation's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_and_xml_bombs_are_refused() {
    let env = setup().await;
    let send = |action: &'static str, body: String| {
        let v = &env.v;
        async move {
            v.send(
                "POST",
                MC,
                "/pagopa/paForNode",
                &[("content-type", "text/xml"), ("soapaction", action)],
                body.as_bytes(),
            )
            .await
        }
    };
    let env_of = |inner: &str| {
        format!(
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:p=\"http://pagopa-api.pagopa.gov.it/pa/paForNode.xsd\"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
        )
    };
    let good = format!("<p:paVerifyPaymentNoticeReq><idPA>{ID_PA}</idPA><idBrokerPA>{BROKER}</idBrokerPA><idStation>{STATION}</idStation><qrCode><fiscalCode>{ID_PA}</fiscalCode><noticeNumber>{}</noticeNumber></qrCode></p:paVerifyPaymentNoticeReq>", notice("0000000000001"));
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>{}",
        env_of(&good.replace(ID_PA, "&lol3;"))
    );
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
        env_of(&good.replace(STATION, "&e;"))
    );
    let deep = env_of(&format!(
        "{}{}",
        "<p:paVerifyPaymentNoticeReq>".repeat(200),
        "</p:paVerifyPaymentNoticeReq>".repeat(200)
    ));
    let wrong_ns = good
        .replace("<p:paVerifyPaymentNoticeReq>", "<w:paVerifyPaymentNoticeReq xmlns:w=\"urn:other\">")
        .replace("</p:paVerifyPaymentNoticeReq>", "</w:paVerifyPaymentNoticeReq>");
    let reordered = good.replace(
        &format!("<idPA>{ID_PA}</idPA><idBrokerPA>{BROKER}</idBrokerPA>"),
        &format!("<idBrokerPA>{BROKER}</idBrokerPA><idPA>{ID_PA}</idPA>"),
    );
    let cases = [
        ("not XML", "this is not xml <".to_owned(), "root"),
        ("billion laughs", bomb, "DOCTYPE"),
        ("external entity", xxe, "DOCTYPE"),
        ("deep nesting", deep, "deep"),
        ("wrong namespace", env_of(&wrong_ns), "namespace"),
        ("out of order", env_of(&reordered), "idPA"),
        ("truncated", env_of(&good)[..200].to_owned(), "malformed"),
        // Characters XML 1.0 forbids, as references or raw: before, echoed into an ill-formed answer.
        ("control character reference", env_of(&good.replace(STATION, "&#1;")), "XML 1.0"),
        ("NUL reference", env_of(&good.replace(STATION, "&#0;")), "XML 1.0"),
        ("raw control character", env_of(&good.replace(STATION, "\u{1}")), "XML 1.0"),
    ];
    let dir = std::env::temp_dir().join(format!("varco-pagopa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (case, body, word) in cases {
        let r = send("paVerifyPaymentNotice", body).await;
        assert_eq!(r.status, 200, "{case}: {r:?}");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(text.contains("<faultCode>PAA_SINTASSI_XSD</faultCode>"), "{case}: {text}");
        assert!(text.contains(word), "{case}: the description should say `{word}`: {text}");
        let f = dir.join("answer.xml");
        std::fs::write(&f, &text).unwrap();
        let out = std::process::Command::new("python3")
            .args([tool(), "validate".into(), format!("{}/xsd/paForNode.xsd", specs()), f.display().to_string()])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(v["valid"], true, "{case}: {v} {}", String::from_utf8_lossy(&out.stderr));
    }
    // Without SOAPAction the operation of garbage cannot be told: a SOAP 1.1 Fault.
    let r = env.v.send("POST", MC, "/pagopa/paForNode", &[("content-type", "text/xml")], b"<nonsense/>").await;
    assert_eq!(r.status, 500);
    assert!(String::from_utf8_lossy(&r.body).contains("<faultcode>soapenv:Client</faultcode>"));
    // varco is still up.
    let r = node(&env, "paVerifyPaymentNotice", with(ids(), qr("0000000000001"))).await;
    assert_eq!(r["outcome"], "OK");
    let _ = std::fs::remove_dir_all(dir);
}

/// GPD stand-in that checks requests against pagoPA's `gpd.json` (Python, jsonschema).
struct Gpd {
    child: std::process::Child,
    port: u16,
}

impl Gpd {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// `tls`: certificate and key files, for HTTPS.
    async fn start_with(tls: &[String]) -> Self {
        let port = varco_tests::free_port();
        let child = std::process::Command::new("python3")
            .args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/tools/gpd_server.py").to_owned(),
                port.to_string(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/external/pagopa/openapi/gpd.json").to_owned(),
                "gpd-key-0123".into(),
            ])
            .args(tls)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "gpd_server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, port }
    }

    async fn log(&self) -> Vec<Value> {
        let c = varco_tests::Client::new(self.port);
        c.get("127.0.0.1", "/_control/log").await.json.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Gpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gpd_position(iupd: &str) -> Value {
    json!({
        "iupd": iupd, "type": "F", "fiscalCode": "RSSMRA80A01H501U", "fullName": "Mario Rossi",
        "companyName": "Comune di Macerata", "switchToExpired": false,
        "paymentOption": [{"iuv": &notice("0000000000077")[1..], "amount": 12000, "description": "TARI 2026", "isPartialPayment": false,
            "dueDate": "2026-12-31T00:00:00", "transfer": [{"idTransfer": "1", "amount": 12000, "remittanceInformation": "TARI 2026",
            "category": "9/0101100IM/", "iban": "IT60X0542811101000000123456"}]}]
    })
}

/// An ente whose back-office manages its GPD positions through varco (API key), directly and
/// by events; GPD at `url`.
fn gpd_config(url: &str) -> String {
    format!(
        r#"
server: {{events: {{dir: "{{DIR}}/events"}}, audit: {{dir: "{{DIR}}/audit"}}}}
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    api_keys: [{{name: tributi, hash: "{hash}"}}]
    events:
      subscriptions:
        - {{name: gpd, types: [it.varco.tributi.posizione.cambiata.v1], sources: [c_e783], route: gpd, backoff: 100ms}}
    routes:
      - {{name: events, path: /events, methods: [POST], access: {{api_key: {{}}}}, to: {{adapter: {{kind: events}}}}}}
      - name: gpd
        path: "/gpd/{{*rest}}"
        methods: [GET, POST, PUT, DELETE]
        access: {{api_key: {{}}}}
        to: {{adapter: {{kind: gpd, organization_fiscal_code: "{ID_PA}", url: "{url}", subscription_key: {{env: GPD_KEY}}, timeout: 2s, retries: 2}}}}
"#,
        hash = varco_tests::api_key_hash("bo-key-xyz"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpd_client_against_the_contract_checking_server() {
    let gpd = Gpd::start().await;
    let cfg = gpd_config(&format!("http://127.0.0.1:{}", gpd.port));
    let v = Varco::start_with_env(&cfg, &[("GPD_KEY", "gpd-key-0123")]).await;
    let call = |m: &'static str, path: String, body: Value| {
        let v = &v;
        async move {
            let b = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
            v.send(m, MC, &path, &[("x-api-key", "bo-key-xyz"), ("content-type", "application/json")], &b).await
        }
    };
    let r = call("POST", "/gpd/debt-positions".into(), gpd_position("TARI-2026-0001")).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json["status"], "DRAFT");
    assert_eq!(
        call("GET", "/gpd/debt-positions/TARI-2026-0001".into(), Value::Null).await.json["iupd"],
        "TARI-2026-0001"
    );
    let r = call("POST", "/gpd/debt-positions/TARI-2026-0001/publish".into(), Value::Null).await;
    assert_eq!(r.json["status"], "VALID", "{r:?}");
    call("POST", "/gpd/debt-positions/TARI-2026-0001/publish".into(), Value::Null)
        .await
        .assert_problem(409, "conflict");
    let mut changed = gpd_position("TARI-2026-0001");
    changed["fullName"] = json!("Mario Rossi Bianchi");
    assert_eq!(call("PUT", "/gpd/debt-positions/TARI-2026-0001".into(), changed).await.status, 200);
    assert_eq!(
        call("POST", "/gpd/debt-positions/TARI-2026-0001/invalidate".into(), Value::Null).await.json["status"],
        "INVALID"
    );
    assert_eq!(call("DELETE", "/gpd/debt-positions/TARI-2026-0001".into(), Value::Null).await.status, 200);
    call("GET", "/gpd/debt-positions/TARI-2026-0001".into(), Value::Null).await.assert_problem(404, "not-found");
    // GPD's schema refusal, as problem+json with its reason.
    let mut bad = gpd_position("TARI-2026-0002");
    bad.as_object_mut().unwrap().remove("companyName");
    let r = call("POST", "/gpd/debt-positions".into(), bad).await;
    r.assert_problem(422, "platform-rejected");
    assert!(r.json["detail"].as_str().unwrap().contains("companyName"), "{r:?}");
    // Two 503s, then success: retried.
    varco_tests::Client::new(gpd.port).send("POST", "127.0.0.1", "/_control/fail?n=2", &[], b"").await;
    let r = call("POST", "/gpd/debt-positions?publish=true".into(), gpd_position("TARI-2026-0003")).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json["status"], "VALID");
    // Every request GPD saw was a gpd.json operation with the key, for this ente only.
    let log = gpd.log().await;
    assert!(log.len() >= 12, "{log:?}");
    for e in &log {
        assert!(e.get("error").is_none() || e["error"].as_str().unwrap().starts_with("schema"), "{e}");
        assert_eq!(e["key"], "gpd-key-0123");
        assert!(e["path"].as_str().unwrap().starts_with(&format!("/organizations/{ID_PA}/debtpositions")), "{e}");
    }
    // Driven by events: the back-office publishes, the `route: gpd` subscription calls GPD.
    let event = |id: &str, data: Value| {
        json!({"specversion": "1.0", "id": id, "source": "/enti/c_e783/tributi", "type": "it.varco.tributi.posizione.cambiata.v1",
               "subject": data["iupd"], "data": data})
    };
    let publish = |body: Value| {
        let v = &v;
        async move {
            v.send(
                "POST",
                MC,
                "/events",
                &[("x-api-key", "bo-key-xyz"), ("content-type", "application/cloudevents+json")],
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    assert_eq!(publish(event("pos-1", json!({"operazione": "crea", "iupd": "TARI-2026-0100", "pubblica": true, "posizione": gpd_position("TARI-2026-0100")}))).await.status, 202);
    assert_eq!(publish(event("pos-2", json!({"operazione": "invalida", "iupd": "TARI-2026-0100"}))).await.status, 202);
    assert_eq!(publish(event("pos-3", json!({"operazione": "elimina", "iupd": "TARI-2026-0999"}))).await.status, 202);
    // The contract refuses a create without the position, before anything reaches GPD.
    publish(event("pos-4", json!({"operazione": "crea", "iupd": "TARI-2026-0101"})))
        .await
        .assert_problem(422, "event-schema-violation");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = call("GET", "/gpd/debt-positions/TARI-2026-0100".into(), Value::Null).await;
        let deleted_seen = gpd
            .log()
            .await
            .iter()
            .any(|e| e["method"] == "DELETE" && e["path"].as_str().unwrap().ends_with("TARI-2026-0999"));
        if (r.json["status"] == "INVALID" && deleted_seen) || Instant::now() > deadline {
            assert_eq!(r.json["status"], "INVALID", "{r:?}\n{}", v.log_text());
            assert!(deleted_seen);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!v.dir.join("events/dead-letter/c_e783.gpd.jsonl").exists(), "an event was dead-lettered");
    // Not a GPD operation; and without the back-office's key, nothing.
    call("PATCH", "/gpd/debt-positions/x".into(), Value::Null).await.assert_problem(405, "method-not-allowed");
    call("POST", "/gpd/debt-positions/x/y".into(), Value::Null).await.assert_problem(404, "no-route");
    v.send("GET", MC, "/gpd/debt-positions/TARI-2026-0003", &[], b"").await.assert_problem(401, "token-missing");
    // Each GPD operation, by the REST API or by an event, is an outbound record of the ente's
    // audit trail: operation, outcome, trace; never the debtor.
    let (records, kept) =
        v.audit_records("c_e783", &["--route", "gpd"], |r| r.iter().any(|r| r["method"] == "DELETE")).await;
    let outbound: Vec<Value> = records.into_iter().filter(|r| r["direction"] == "outbound").collect();
    assert!(outbound.iter().any(|r| r["method"] == "POST" && r["status"] == 201), "{kept}");
    assert!(outbound.iter().any(|r| r["method"] == "DELETE"), "the event's operation: {kept}");
    assert!(outbound.iter().all(|r| r["upstream"].as_str().unwrap().starts_with("GPD debtpositions")), "{kept}");
    assert!(outbound.iter().all(|r| r["trace_id"].as_str().unwrap().len() == 32), "{kept}");
    assert!(!kept.contains("RSSMRA80A01H501U") && !kept.contains("gpd-key-0123"), "{kept}");
}

/// GPD is HTTPS (api.platform.pagopa.it): the client verifies the server against the CA store
/// (here a test CA through `SSL_CERT_FILE`) and refuses a server it cannot verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpd_over_https_with_a_verified_certificate() {
    let pki = varco_tests::pki::pki_dir();
    varco_tests::pki::make_ca(&pki, "gpd test CA");
    varco_tests::pki::issue(&pki, "gpd", "127.0.0.1", false);
    let tls = [pki.join("gpd.crt").display().to_string(), pki.join("gpd.key").display().to_string()];
    let gpd = Gpd::start_with(&tls).await;
    let cfg = gpd_config(&format!("https://127.0.0.1:{}", gpd.port));
    let body = gpd_position("TARI-2026-0100").to_string();
    let headers = [("x-api-key", "bo-key-xyz"), ("content-type", "application/json")];
    let ca = pki.join("ca.crt").display().to_string();
    let v = Varco::start_with_env(&cfg, &[("GPD_KEY", "gpd-key-0123"), ("SSL_CERT_FILE", &ca)]).await;
    let r = v.send("POST", MC, "/gpd/debt-positions", &headers, body.as_bytes()).await;
    assert_eq!(r.status, 201, "{r:?}\n{}", v.log_text());
    assert_eq!(r.json["iupd"], "TARI-2026-0100");
    drop(v);
    // With the system's CAs only, the same server is not trusted: the caller gets a problem.
    let v = Varco::start_with_env(&cfg, &[("GPD_KEY", "gpd-key-0123")]).await;
    let r = v.send("POST", MC, "/gpd/debt-positions", &headers, body.as_bytes()).await;
    assert!(r.status >= 500, "{r:?}");
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let _ = std::fs::remove_dir_all(pki);
}

/// Whatever the back-office sends, the node gets an answer its XSD accepts: a causale longer
/// than 140 characters is cut (legacy tributi systems write them) and control characters are
/// dropped; anything else the XSD refuses (a date in another format, a lower-case country, a
/// malformed e-mail, an empty name, a sixth transfer id, a 3-digit fiscal code) is
/// `PAA_SYSTEM_ERROR`. Before, each of these went out as `OK` and failed the node's XSD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_office_data_the_xsd_refuses_never_reaches_the_node() {
    let env = setup().await;
    let long = "TARI 2026 - avviso di pagamento della tassa sui rifiuti per l'abitazione di via Roma 1 e le relative pertinenze, rata unica con scadenza al 31 dicembre";
    assert!(long.chars().count() > 140);
    let bad = |base: &str, edit: &dyn Fn(&mut Value)| {
        let mut p: Value = serde_json::from_slice(&position("payable", 12000)).unwrap();
        edit(&mut p);
        env.bo.serve_static(&format!("/debt-positions/{}", &notice(base)[1..]), Some(p.to_string().into_bytes()));
    };
    bad("0000000000011", &|p| p["description"] = json!(long));
    bad("0000000000012", &|p| p["transfers"][0]["remittance_information"] = json!("TARI\u{1} 2026\u{7}"));
    bad("0000000000013", &|p| p["due_date"] = json!("31/12/2026"));
    bad("0000000000014", &|p| p["debtor"]["country"] = json!("it"));
    bad("0000000000015", &|p| p["debtor"]["email"] = json!("mario.rossi at example.it"));
    bad("0000000000016", &|p| p["debtor"]["full_name"] = json!(""));
    bad("0000000000017", &|p| p["transfers"][1]["id"] = json!(7));
    bad("0000000000018", &|p| p["transfers"][1]["fiscal_code_pa"] = json!("123"));

    for op in ["paVerifyPaymentNotice", "paGetPaymentV2"] {
        let r = node(&env, op, with(ids(), qr("0000000000011"))).await;
        assert_eq!(r["outcome"], "OK", "{op}: {r}");
        let d = if op == "paGetPaymentV2" { r["data"]["description"].clone() } else { r["paymentDescription"].clone() };
        let d = d.as_str().unwrap().to_owned();
        // Cut at 140 characters (a space at the cut is trimmed).
        assert!((139..=140).contains(&d.chars().count()), "{d}");
        assert!(long.starts_with(&d));
    }
    let r = node(&env, "paGetPaymentV2", with(ids(), qr("0000000000012"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    assert_eq!(r["data"]["transferList"]["transfer"][0]["remittanceInformation"], "TARI 2026");
    for base in ["0000000000013", "0000000000014", "0000000000015", "0000000000016", "0000000000017", "0000000000018"] {
        for op in ["paGetPayment", "paGetPaymentV2"] {
            let r = node(&env, op, with(ids(), qr(base))).await;
            assert_eq!(r["outcome"], "KO", "{op} {base}: {r}");
            assert_eq!(fault_code(&r), "PAA_SYSTEM_ERROR", "{op} {base}: {r}");
        }
    }
    // The date is also in paVerifyPaymentNotice's answer.
    let r = node(&env, "paVerifyPaymentNotice", with(ids(), qr("0000000000013"))).await;
    assert_eq!(fault_code(&r), "PAA_SYSTEM_ERROR", "{r}");
}

/// What the gateway refuses before the station runs (a body over the route's limit, an address
/// its allow-list refuses) is a SOAP Fault for the node, not problem+json (before: a 413 and a
/// 403 problem+json); the JSON helpers keep problem+json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refusals_on_the_station_are_soap_faults() {
    let env = setup().await;
    // A declared body over the limit (10 MiB): refused before it is read.
    let raw = varco_tests::raw_http(
        env.v.port,
        b"POST /pagopa/paForNode HTTP/1.1\r\nHost: any.example.it\r\nContent-Type: text/xml\r\nSOAPAction: paVerifyPaymentNotice\r\nContent-Length: 11534336\r\n\r\n<x>",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 500"), "{raw}");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("content-type: text/xml"), "{head}");
    let body = body.to_owned();
    assert!(body.contains("<faultcode>soapenv:Client</faultcode>") && body.contains("body-too-large"), "{body}");
    // A well-formed SOAP Fault (the node's SOAP stack parses it).
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.stdin.read()); print(r.find('.//faultstring').text)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("at most"), "{}", String::from_utf8_lossy(&out.stdout));
    let r = env.v.get("any.example.it", "/pagopa/nothing-here").await;
    r.assert_problem(404, "no-route");
    // An address the route refuses: a SOAP Fault as well.
    let banned = varco_tests::Client::from_address(env.v.port, Some("127.0.0.3".parse().unwrap()));
    let r = banned.send("POST", "any.example.it", "/pagopa/paForNode", &[("content-type", "text/xml")], b"<x/>").await;
    assert_eq!(r.status, 500, "{r:?}");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains("<faultcode>soapenv:Client</faultcode>") && body.contains("forbidden"), "{body}");
}

/// What the back-office contract (1.1) can now say, as the node reads it through zeep and the
/// official XSD: the office, retention date, last instalment and reconciliation `metadata` of
/// a position; a secondary creditor's own name on its transfer (before: the ente's name on
/// every transfer); a digital stamp instead of an IBAN (paGetPaymentV2 only); a payment in
/// progress (`PAA_PAGAMENTO_IN_CORSO`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_office_contract_1_1_fields_reach_the_node() {
    let env = setup().await;
    let mut p: Value = serde_json::from_slice(&position("payable", 12000)).unwrap();
    p["office_name"] = json!("Ufficio Tributi");
    p["retention_date"] = json!("2027-12-31T23:59:59");
    p["last_payment"] = json!(true);
    p["metadata"] = json!([{"key": "annoRiferimento", "value": "2026"}]);
    p["transfers"][1]["fiscal_code_pa"] = json!(PROV);
    p["transfers"][1]["company_name"] = json!("Provincia di Macerata");
    p["transfers"][1]["metadata"] = json!([{"key": "tributo", "value": "TEFA"}]);
    env.bo
        .serve_static(&format!("/debt-positions/{}", &notice("0000000000021")[1..]), Some(p.to_string().into_bytes()));
    let mut stamp = p.clone();
    stamp["transfers"][1].as_object_mut().unwrap().remove("iban");
    stamp["transfers"][1]["stamp"] =
        json!({"document_hash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "kind": "01", "province": "MC"});
    env.bo.serve_static(
        &format!("/debt-positions/{}", &notice("0000000000022")[1..]),
        Some(stamp.to_string().into_bytes()),
    );
    let mut busy: Value = serde_json::from_slice(&position("in_progress", 12000)).unwrap();
    busy["status"] = json!("in_progress");
    env.bo.serve_static(
        &format!("/debt-positions/{}", &notice("0000000000023")[1..]),
        Some(busy.to_string().into_bytes()),
    );

    let r = node(&env, "paGetPaymentV2", with(ids(), qr("0000000000021"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let d = &r["data"];
    assert_eq!(d["officeName"], "Ufficio Tributi");
    assert_eq!(d["lastPayment"], true);
    assert!(d["retentionDate"].as_str().unwrap().starts_with("2027-12-31"), "{d}");
    assert_eq!(d["metadata"]["mapEntry"][0]["key"], "annoRiferimento");
    let t = &d["transferList"]["transfer"];
    assert_eq!(t[0]["companyName"], "Comune di Macerata");
    assert_eq!(t[1]["companyName"], "Provincia di Macerata", "the secondary creditor's own name");
    assert_eq!(t[1]["fiscalCodePA"], PROV);
    assert_eq!(t[1]["metadata"]["mapEntry"][0]["value"], "TEFA");
    let r = node(&env, "paVerifyPaymentNotice", with(ids(), qr("0000000000021"))).await;
    assert_eq!(r["officeName"], "Ufficio Tributi", "{r}");

    let r = node(&env, "paGetPaymentV2", with(ids(), qr("0000000000022"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let m = &r["data"]["transferList"]["transfer"][1]["richiestaMarcaDaBollo"];
    assert_eq!(m["tipoBollo"], "01", "{r}");
    assert_eq!(m["provinciaResidenza"], "MC");
    // paGetPayment (v1) cannot carry a stamp.
    let r = node(&env, "paGetPayment", with(ids(), qr("0000000000022"))).await;
    assert_eq!(fault_code(&r), "PAA_SYSTEM_ERROR", "{r}");

    for op in ["paVerifyPaymentNotice", "paGetPaymentV2"] {
        let r = node(&env, op, with(ids(), qr("0000000000023"))).await;
        assert_eq!(fault_code(&r), "PAA_PAGAMENTO_IN_CORSO", "{op}: {r}");
    }
}
