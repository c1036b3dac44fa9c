//! What the pagoPA scenarios share (`pagopa.rs`, `pagopa_receipts.rs`): the station's
//! configuration over a real back-office, the node's side (zeep from the official WSDL, every
//! answer checked against the official XSD), and the messages it sends.
#![allow(dead_code)] // each scenario file uses its own part
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use varco_tests::{Backend, Mode, Varco, LISTENERS};

pub const MC: &str = "macerata.example.it";
pub const ID_PA: &str = "00093120434";
pub const BROKER: &str = "00093120434";
pub const STATION: &str = "00093120434_01";
pub const SEG: &str = "12";
/// The Provincia, a secondary creditor on the comune's notices.
pub const PROV: &str = "80001350437";

pub fn specs() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/external/pagopa/wsdl").to_owned()
}

pub fn tool() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/tools/pagopa_tool.py").to_owned()
}

/// A notice number of the ente (aux digit 3) from a 13-digit base, check digits mod 93.
pub fn notice(base: &str) -> String {
    let first = format!("3{SEG}{base}");
    format!("{first}{:02}", first.parse::<u64>().unwrap() % 93)
}

pub fn position(status: &str, iuv_cents: u64) -> Vec<u8> {
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

pub struct Env {
    pub v: Varco,
    pub bo: Backend,
    pub hook: Backend,
    /// Receives the whole-receipt events (v2).
    pub hook_v2: Backend,
}

pub async fn setup() -> Env {
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
pub fn station_config(bo: &Backend, hook: &Backend, hook_v2: &Backend) -> String {
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
pub async fn node(env: &Env, op: &str, kwargs: Value) -> Value {
    // Macerata answers on any host, without a prefix.
    node_at(env, "/pagopa/paForNode", op, kwargs).await
}

/// The node calls the station at `path`.
pub async fn node_at(env: &Env, path: &str, op: &str, kwargs: Value) -> Value {
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

pub fn ids() -> Value {
    json!({"idPA": ID_PA, "idBrokerPA": BROKER, "idStation": STATION})
}

pub fn with(base: Value, extra: Value) -> Value {
    let mut b = base;
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

pub fn qr(base: &str) -> Value {
    json!({"qrCode": {"fiscalCode": ID_PA, "noticeNumber": notice(base)}})
}

pub fn receipt(id: &str, base: &str) -> Value {
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

pub fn fault_code(r: &Value) -> &str {
    r["fault"]["faultCode"].as_str().unwrap_or("")
}

pub async fn wait_hook(hook: &Backend, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.requests().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hook.requests()
}
