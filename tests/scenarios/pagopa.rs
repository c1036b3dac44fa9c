//! The ente as a pagoPA station, against an independent node: a SOAP client built from the
//! official WSDL (Python zeep) calls varco, and every answer is validated against the official
//! XSD (Python xmlschema). The back-office is a real HTTP server holding debt positions; GPD is
//! played by a server that checks each request against pagoPA's `gpd.json`.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use varco_tests::{Backend, Mode, Varco, LISTENERS};

const MC: &str = "macerata.example.it";
const ID_PA: &str = "00093120434";
const BROKER: &str = "00093120434";
const STATION: &str = "00093120434_01";
const SEG: &str = "12";
/// The Provincia, a secondary creditor on the comune's notices.
const PROV: &str = "80001350437";

fn specs() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/external/pagopa/wsdl").to_owned()
}

fn tool() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/tools/pagopa_tool.py").to_owned()
}

/// A notice number of the ente (aux digit 3) from a 13-digit base, check digits mod 93.
fn notice(base: &str) -> String {
    let first = format!("3{SEG}{base}");
    format!("{first}{:02}", first.parse::<u64>().unwrap() % 93)
}

fn position(status: &str, iuv_cents: u64) -> Vec<u8> {
    json!({
        "status": status, "amount_cents": iuv_cents, "due_date": "2026-12-31", "description": "TARI 2026 - rata unica",
        "debtor": {"kind": "F", "fiscal_code": "RSSMRA80A01H501U", "full_name": "Mario Rossi", "city": "Macerata", "country": "IT", "email": "mario.rossi@example.it"},
        "transfers": [
            {"id": 1, "amount_cents": iuv_cents - 1000, "fiscal_code_pa": ID_PA, "iban": "IT60X0542811101000000123456", "remittance_information": "TARI 2026", "category": "9/0101100IM/"},
            {"id": 2, "amount_cents": 1000, "fiscal_code_pa": ID_PA, "iban": "IT60X0760111101000000123456", "remittance_information": "TEFA 2026", "category": "9/0201133IM/"}
        ],
        "notice_number": notice("0000000000999"),
    })
    .to_string()
    .into_bytes()
}

struct Env {
    v: Varco,
    bo: Backend,
    hook: Backend,
    /// Receives the whole-receipt events (v2).
    hook_v2: Backend,
}

async fn setup() -> Env {
    let bo = Backend::start("backoffice").await;
    bo.set_mode(Mode::Status(404)); // unknown positions
    for (base, status) in [
        ("0000000000001", "payable"),
        ("0000000000002", "paid"),
        ("0000000000003", "expired"),
        ("0000000000004", "cancelled"),
    ] {
        bo.serve_static(&format!("/debt-positions/{}", &notice(base)[1..]), Some(position(status, 12000)));
    }
    bo.serve_static("/payment-notices", Some(position("payable", 5000)));
    let hook = Backend::start("receipts-hook").await;
    let hook_v2 = Backend::start("receipts-v2-hook").await;
    let cfg = station_config(&bo, &hook, &hook_v2);
    let v = Varco::start_with_env(&cfg, &[("HOOK_SECRET", "s3cret-for-receipts")]).await;
    Env { v, bo, hook, hook_v2 }
}

/// Macerata's station (and the Provincia's, a secondary creditor) on `bo`, receipts to `hook`
/// (v1) and `hook_v2` (v2).
fn station_config(bo: &Backend, hook: &Backend, hook_v2: &Backend) -> String {
    format!(
        r#"
server: {{events: {{dir: "{{DIR}}/events"}}}}
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    routes:
      - name: pagopa
        path: "/pagopa/{{*rest}}"
        methods: [POST, GET]
        access: public
        source: {{deny: [127.0.0.3]}}
        to: {{adapter: {{kind: pagopa, id_pa: "{ID_PA}", id_broker_pa: "{BROKER}", id_station: "{STATION}", segregation_code: "{SEG}", company_name: "Comune di Macerata", backoffice_url: "http://{bo}", receipts_dir: "{{DIR}}/pagopa", check_receipts: true}}}}
    events:
      subscriptions:
        - name: ricevute
          types: [it.varco.tributi.pagamento.ricevuto.v1]
          sources: [c_e783]
          webhook: {{url: "http://{hook}/receipts", secret: {{env: HOOK_SECRET}}}}
        - name: ricevute-complete
          types: [it.varco.tributi.pagamento.ricevuto.v2]
          sources: [c_e783]
          webhook: {{url: "http://{hook_v2}/receipts", secret: {{env: HOOK_SECRET}}}}
  # A secondary creditor: the Provincia's TEFA rides on the comune's TARI notices.
  - id: p_mc
    name: Provincia di Macerata
    prefix: /p_mc
    routes:
      - name: pagopa
        path: "/pagopa/{{*rest}}"
        methods: [POST]
        access: public
        to: {{adapter: {{kind: pagopa, id_pa: "{PROV}", id_broker_pa: "{BROKER}", id_station: "{STATION}", segregation_code: "47", company_name: "Provincia di Macerata", backoffice_url: "http://{bo}", receipts_dir: "{{DIR}}/pagopa"}}}}
    events:
      subscriptions:
        - name: ricevute
          types: [it.varco.tributi.pagamento.ricevuto.v1]
          sources: [p_mc]
          webhook: {{url: "http://{hook}/receipts", secret: {{env: HOOK_SECRET}}}}
"#,
        bo = bo.addr,
        hook = hook.addr,
        hook_v2 = hook_v2.addr
    )
}

/// The node calls `op` with zeep; the answer (zeep's reading) after checking it against the XSD.
async fn node(env: &Env, op: &str, kwargs: Value) -> Value {
    // Macerata answers on any host, without a prefix.
    node_at(env, "/pagopa/paForNode", op, kwargs).await
}

/// The node calls the station at `path`.
async fn node_at(env: &Env, path: &str, op: &str, kwargs: Value) -> Value {
    let url = format!("http://127.0.0.1:{}{path}", env.v.port);
    let out = tokio::process::Command::new("python3")
        .args([tool(), "call".into(), format!("{}/paForNode.wsdl", specs()), url, op.into(), kwargs.to_string()])
        .env("no_proxy", "*")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "zeep {op}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true, "{op}: the answer is not valid against paForNode.xsd: {}\n{}", v["errors"], v["xml"]);
    v["result"].clone()
}

fn ids() -> Value {
    json!({"idPA": ID_PA, "idBrokerPA": BROKER, "idStation": STATION})
}

fn with(base: Value, extra: Value) -> Value {
    let mut b = base;
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn qr(base: &str) -> Value {
    json!({"qrCode": {"fiscalCode": ID_PA, "noticeNumber": notice(base)}})
}

fn receipt(id: &str, base: &str) -> Value {
    json!({"receipt": {
        "receiptId": id, "noticeNumber": notice(base), "fiscalCode": ID_PA, "outcome": "OK",
        "creditorReferenceId": &notice(base)[1..], "paymentAmount": "120.00", "description": "TARI 2026 - rata unica",
        "companyName": "Comune di Macerata",
        "debtor": {"uniqueIdentifier": {"entityUniqueIdentifierType": "F", "entityUniqueIdentifierValue": "RSSMRA80A01H501U"}, "fullName": "Mario Rossi"},
        "transferList": {"transfer": [{"idTransfer": "1", "transferAmount": "120.00", "fiscalCodePA": ID_PA, "IBAN": "IT60X0542811101000000123456", "remittanceInformation": "TARI 2026", "transferCategory": "9/0101100IM/"}]},
        "idPSP": "BCITITMM", "PSPCompanyName": "Intesa Sanpaolo", "idChannel": "BCITITMM_01", "channelDescription": "app",
        "payer": {"uniqueIdentifier": {"entityUniqueIdentifierType": "F", "entityUniqueIdentifierValue": "RSSMRA80A01H501U"}, "fullName": "Mario Rossi"},
        "paymentDateTime": "2026-11-24T10:15:00", "applicationDate": "2026-11-24", "transferDate": "2026-11-25"
    }})
}

fn fault_code(r: &Value) -> &str {
    r["fault"]["faultCode"].as_str().unwrap_or("")
}

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

async fn wait_hook(hook: &Backend, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.requests().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hook.requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_stored_once_and_published() {
    let env = setup().await;
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-0001", "0000000000001"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let again = node(&env, "paSendRT", with(ids(), receipt("rt-0001", "0000000000001"))).await;
    assert_eq!(fault_code(&again), "PAA_RECEIPT_DUPLICATA", "{again}");
    let v2 = node(&env, "paSendRTV2", with(ids(), receipt("rt-0002", "0000000000001"))).await;
    assert_eq!(v2["outcome"], "OK", "{v2}");
    // The same receipt ten times at once: exactly one effect.
    let mut tasks = Vec::new();
    let env = std::sync::Arc::new(env);
    for _ in 0..10 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            node(&env, "paSendRT", with(ids(), receipt("rt-0003", "0000000000001"))).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r["outcome"].as_str() {
            Some("OK") => ok += 1,
            _ => assert_eq!(fault_code(&r), "PAA_RECEIPT_DUPLICATA", "{r}"),
        }
    }
    assert_eq!(ok, 1, "a concurrent duplicate had a second effect");
    // The back-office gets each receipt once, as a CloudEvent.
    let got = wait_hook(&env.hook, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = env.hook.requests();
    assert_eq!(got_all.len(), 3, "{got:?}");
    let e: Value = serde_json::from_str(got_all[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(e["type"], "it.varco.tributi.pagamento.ricevuto.v1");
    assert_eq!(e["source"], "/enti/c_e783/pagopa");
    assert_eq!(e["subject"], &notice("0000000000001")[1..]);
    assert_eq!(e["data"]["receiptId"], "rt-0001");
    assert_eq!(e["data"]["importoCentesimi"], 12000);
    assert_eq!(e["data"]["pagatore"]["codiceFiscale"], "RSSMRA80A01H501U");
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
server: {{events: {{dir: "{{DIR}}/events"}}}}
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

/// A multi-beneficiary notice (the comune's TARI with the Provincia's TEFA): the node sends the
/// one receipt, with the comune's `fiscalCode`, to both creditors. Each accepts it and
/// publishes its own share; an ente in neither place refuses it. A KO receipt is acknowledged
/// without a payment event, and a 0.00 receipt is a semantic error, not "send again".
/// Before, the Provincia answered `PAA_ID_DOMINIO_ERRATO` and never got its receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_a_secondary_creditor() {
    let env = setup().await;
    let shared = |id: &str, prov: bool| {
        let mut r = receipt(id, "0000000000001");
        let mut t = r["receipt"]["transferList"]["transfer"][0].clone();
        t["transferAmount"] = json!("110.00");
        let mut tefa = t.clone();
        tefa["idTransfer"] = json!("2");
        tefa["transferAmount"] = json!("10.00");
        tefa["remittanceInformation"] = json!("TEFA 2026");
        if prov {
            tefa["fiscalCodePA"] = json!(PROV);
        }
        r["receipt"]["transferList"]["transfer"] = json!([t, tefa]);
        r
    };
    let prov_ids = json!({"idPA": PROV, "idBrokerPA": BROKER, "idStation": STATION});
    let r =
        node_at(&env, "/p_mc/pagopa/paForNode", "paSendRT", with(prov_ids.clone(), shared("rt-tefa-1", true))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let r = node(&env, "paSendRT", with(ids(), shared("rt-tefa-1", true))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    // Not a creditor of this notice at all.
    let r = node_at(&env, "/p_mc/pagopa/paForNode", "paSendRTV2", with(prov_ids, shared("rt-tefa-2", false))).await;
    assert_eq!(fault_code(&r), "PAA_ID_DOMINIO_ERRATO", "{r}");
    // A KO receipt, then a 0.00 one.
    let mut ko = receipt("rt-ko-1", "0000000000001");
    ko["receipt"]["outcome"] = json!("KO");
    assert_eq!(node(&env, "paSendRT", with(ids(), ko)).await["outcome"], "OK");
    let mut zero = receipt("rt-zero-1", "0000000000001");
    zero["receipt"]["paymentAmount"] = json!("0.00");
    let r = node(&env, "paSendRT", with(ids(), zero)).await;
    assert_eq!(fault_code(&r), "PAA_SEMANTICA", "{r}");

    wait_hook(&env.hook, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events: Vec<Value> =
        env.hook.requests().iter().map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap()).collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    let of = |src: &str| events.iter().find(|e| e["source"] == src).unwrap_or_else(|| panic!("no event from {src}"));
    let p = of("/enti/p_mc/pagopa");
    assert_eq!(p["data"]["idPA"], PROV);
    assert_eq!(p["data"]["importoCentesimi"], 1000);
    assert_eq!(p["data"]["causale"], "TEFA 2026");
    assert_eq!(p["subject"], &notice("0000000000001")[1..], "the primary's IUV");
    let c = of("/enti/c_e783/pagopa");
    assert_eq!(c["data"]["importoCentesimi"], 11000);
}

/// Two instances behind one station, on one Redis: the node's retries of a receipt reach
/// either, in turn or at once, and the receipt is published exactly once. Before, each
/// instance had only its own file and both published it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_publish_each_receipt_once() {
    let redis = varco_tests::Redis::start().await;
    let bo = Backend::start("backoffice").await;
    bo.serve_static(&format!("/debt-positions/{}", &notice("0000000000001")[1..]), Some(position("payable", 12000)));
    let hook = Backend::start("receipts-hook").await;
    let hook_v2 = Backend::start("receipts-v2-hook").await;
    let cfg = format!("redis: {{url: \"{}\", timeout: 500ms}}\n{}", redis.url(), station_config(&bo, &hook, &hook_v2));
    let instance = |name: &'static str| {
        let cfg = cfg.clone();
        async move {
            Env {
                v: Varco::start_with_env(&cfg, &[("HOOK_SECRET", "s3cret-for-receipts")]).await,
                bo: Backend::start(name).await,
                hook: Backend::start(name).await,
                hook_v2: Backend::start(name).await,
            }
        }
    };
    let (env_a, env_b) = (instance("unused-a").await, instance("unused-b").await);
    // In turn: the second instance knows the first stored it.
    let r = node(&env_a, "paSendRT", with(ids(), receipt("rt-ha-1", "0000000000001"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    let r = node(&env_b, "paSendRT", with(ids(), receipt("rt-ha-1", "0000000000001"))).await;
    assert_eq!(fault_code(&r), "PAA_RECEIPT_DUPLICATA", "{r}");
    // At once, five times on each: one stores it, the others answer a duplicate or "send again".
    let (a, b) = (std::sync::Arc::new(env_a), std::sync::Arc::new(env_b));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let env = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            node(&env, "paSendRTV2", with(ids(), receipt("rt-ha-2", "0000000000001"))).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r["outcome"].as_str() {
            Some("OK") => ok += 1,
            _ => assert!(["PAA_RECEIPT_DUPLICATA", "PAA_SYSTEM_ERROR"].contains(&fault_code(&r)), "{r}"),
        }
    }
    assert_eq!(ok, 1, "a receipt stored by more than one instance");
    wait_hook(&hook, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ids_seen: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap()["data"]["receiptId"].to_string())
        .collect();
    assert_eq!(ids_seen.len(), 2, "{ids_seen:?}");
    assert_ne!(ids_seen[0], ids_seen[1]);
    drop(redis);
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

/// The whole receipt reaches the ente's accounting as `…pagamento.ricevuto.v2` (transfers with
/// their accounts, PSP, fees, channel, payment method, metadata, standIn, debtor and payer),
/// checked against its contract; a receipt without `paymentDateTime` gets none there (before:
/// the time it arrived, silently), and v1, which requires one, takes its `applicationDate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_v2_carry_the_whole_receipt() {
    let env = setup().await;
    let mut r = receipt("rt-full-1", "0000000000001");
    let rc = r["receipt"].as_object_mut().unwrap();
    rc.remove("paymentDateTime");
    rc.insert("pspFiscalCode".into(), json!("00799960158"));
    rc.insert("paymentMethod".into(), json!("creditCard"));
    rc.insert("fee".into(), json!("1.50"));
    rc.insert("metadata".into(), json!({"mapEntry": [{"key": "annoRiferimento", "value": "2026"}]}));
    rc.insert("standIn".into(), json!(false));
    let rr = node(&env, "paSendRT", with(ids(), r)).await;
    assert_eq!(rr["outcome"], "OK", "{rr}");
    let got = wait_hook(&env.hook_v2, 1).await;
    let e: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(e["type"], "it.varco.tributi.pagamento.ricevuto.v2");
    let d = &e["data"];
    assert_eq!(d["receiptId"], "rt-full-1");
    assert_eq!((d["importoCentesimi"].as_u64(), d["importoTotaleCentesimi"].as_u64()), (Some(12000), Some(12000)));
    assert!(d.get("dataPagamento").is_none(), "{d}");
    assert_eq!(d["dataApplicazione"], "2026-11-24");
    assert_eq!(d["psp"]["id"], "BCITITMM");
    assert_eq!(d["psp"]["codiceFiscale"], "00799960158");
    assert_eq!(d["psp"]["canale"], "BCITITMM_01");
    assert_eq!(d["metodoPagamento"], "creditCard");
    assert_eq!(d["commissioneCentesimi"], 150);
    assert_eq!(d["standIn"], false);
    assert_eq!(d["metadata"][0]["key"], "annoRiferimento");
    assert_eq!(d["creditorePrimario"]["codiceFiscale"], ID_PA);
    assert_eq!(d["debitore"]["nome"], "Mario Rossi");
    assert_eq!(d["pagatore"]["codiceFiscale"], "RSSMRA80A01H501U");
    let t = &d["trasferimenti"][0];
    assert_eq!((t["id"].as_u64(), t["proprio"].as_bool()), (Some(1), Some(true)));
    assert_eq!(t["iban"], "IT60X0542811101000000123456");
    assert_eq!(t["categoria"], "9/0101100IM/");
    let v1 = wait_hook(&env.hook, 1).await;
    let e1: Value = serde_json::from_str(v1[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(e1["data"]["dataPagamento"], "2026-11-24T00:00:00");
}

/// `check_receipts`: a receipt for a position the back-office does not know, or cancelled, is
/// refused with the fault pagoPA's own GPD station gives; a known one is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_checked_against_the_back_office_when_asked() {
    let env = setup().await;
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-chk-1", "0000000000009"))).await;
    assert_eq!(fault_code(&r), "PAA_PAGAMENTO_SCONOSCIUTO", "{r}");
    let r = node(&env, "paSendRTV2", with(ids(), receipt("rt-chk-2", "0000000000004"))).await;
    assert_eq!(fault_code(&r), "PAA_PAGAMENTO_ANNULLATO", "{r}");
    // Paid or expired positions still take their receipt: the citizen has paid.
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-chk-3", "0000000000002"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
    // A refused receipt left no trace: once the position exists, the same id is accepted.
    env.bo
        .serve_static(&format!("/debt-positions/{}", &notice("0000000000009")[1..]), Some(position("payable", 12000)));
    let r = node(&env, "paSendRT", with(ids(), receipt("rt-chk-1", "0000000000009"))).await;
    assert_eq!(r["outcome"], "OK", "{r}");
}
