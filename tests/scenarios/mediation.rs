//! Back-office mediation against independent peers: a comune's SOAP back-office written with
//! spyne (tests/tools/soap_backoffice.py, which publishes its own WSDL and answers faults
//! itself) behind REST+JSON routes, and zeep calling the SOAP service varco publishes in front
//! of a REST back-office.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use serde_json::{json, Value};
use std::time::Duration;
use varco_tests::{free_port, spawn_ready_tool, Backend, Varco, LISTENERS};

const HOST: &str = "bari.example.it";
/// The listeners and the ente every test here configures; its `upstreams:` and `routes:` follow.
fn bari() -> String {
    format!("{LISTENERS}tenants:\n  - id: c_a662\n    name: Comune di Bari\n    hosts: [{HOST}]\n")
}

struct Env {
    v: Varco,
    peer: u16,
    child: tokio::process::Child,
}

/// The spyne back-office (with credentials) and varco in front of it; the WSDL is the one
/// the back-office publishes, saved as an integrator would.
async fn setup(extra_routes: &str, pool_extra: &str) -> Env {
    let peer = free_port();
    let child = spawn_ready_tool(
        "soap_backoffice.py",
        &[&peer.to_string(), "--user", "varco-bari", "--password", "pw<&>-0123456789"],
    )
    .await;
    let dir = tempdir();
    let mut wsdls = Vec::new();
    for v in ["soap11", "soap12"] {
        let text = reqwest_get(&format!("http://127.0.0.1:{peer}/{v}?wsdl")).await;
        let file = dir.join(format!("pratiche-{v}.wsdl"));
        std::fs::write(&file, text).unwrap();
        wsdls.push(file.display().to_string());
    }
    let secret = dir.join("bo-password");
    std::fs::write(&secret, "pw<&>-0123456789\n").unwrap();
    let cfg = format!(
        r#"{bari}    upstreams:
      pratiche:
        servers: ["127.0.0.1:{peer}"]
        timeouts: {{total: 1500ms}}
        retries: 0{pool_extra}
    routes:
      - name: pratica
        path: "/pratiche/{{id}}"
        methods: [GET]
        access: public
        to: {{adapter: {{kind: soap, upstream: pratiche, wsdl: "{w11}", operation: getPratica,
               ws_security: {{username: varco-bari, password: {{file: "{secret}"}}}}}}}}
      - name: istanze
        path: /istanze
        methods: [POST]
        access: public
        to: {{adapter: {{kind: soap, upstream: pratiche, wsdl: "{w11}", operation: presentaIstanza,
               basic_auth: {{username: varco-bari, password: {{env: BO_PASSWORD}}}}}}}}
      - name: cerca
        path: /pratiche
        methods: [GET]
        access: public
        to: {{adapter: {{kind: soap, upstream: pratiche, wsdl: "{w12}", operation: cercaPratiche, soap_version: "1.2",
               ws_security: {{username: varco-bari, password: {{env: BO_PASSWORD}}}}}}}}
      - name: pratica12
        path: "/v12/pratiche/{{id}}"
        methods: [GET]
        access: public
        to: {{adapter: {{kind: soap, upstream: pratiche, wsdl: "{w12}", operation: getPratica, soap_version: "1.2",
               ws_security: {{username: varco-bari, password: {{env: BO_PASSWORD}}}}}}}}
      - name: senza-credenziali
        path: "/anonimo/{{id}}"
        methods: [GET]
        access: public
        to: {{adapter: {{kind: soap, upstream: pratiche, wsdl: "{w11}", operation: getPratica}}}}
{extra_routes}"#,
        bari = bari(),
        w11 = wsdls[0],
        w12 = wsdls[1],
        secret = secret.display(),
    );
    let v = Varco::start_with_env(&cfg, &[("BO_PASSWORD", "pw<&>-0123456789")]).await;
    Env { v, peer, child }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("varco-mediation-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A plain GET with a small HTTP/1.1 client (the peer's WSDL, its control API).
async fn reqwest_get(url: &str) -> String {
    http_call("GET", url, "").await
}

async fn http_call(method: &str, url: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

async fn peer_set(peer: u16, modes: Value) {
    http_call("POST", &format!("http://127.0.0.1:{peer}/_control/set"), &modes.to_string()).await;
}

async fn peer_stats(peer: u16) -> Value {
    serde_json::from_str(&reqwest_get(&format!("http://127.0.0.1:{peer}/_control/stats")).await).unwrap()
}

#[tokio::test]
async fn json_in_soap_out_json_back_with_nested_types_arrays_and_credentials() {
    let e = setup("", "").await;
    let r = e.v.get(HOST, "/pratiche/P-2026-0001").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let p = &r.json;
    assert_eq!(p["id"], "P-2026-0001");
    assert_eq!(p["stato"], "IN_ISTRUTTORIA");
    assert_eq!(p["richiedente"]["codiceFiscale"], "RSSMRA80A01H501U");
    assert_eq!(p["documenti"].as_array().unwrap().len(), 2);
    assert_eq!(p["documenti"][0], json!({"nome": "planimetria.pdf", "mime": "application/pdf", "pagine": 3}));
    assert_eq!(p["importo"], 152.5);
    assert_eq!(p["urgente"], true);
    let stats = peer_stats(e.peer).await;
    let h = &stats["last_headers"];
    assert_eq!(h["soapaction"], "\"getPratica\"");
    assert!(h["content-type"].as_str().unwrap().starts_with("text/xml"));
    assert!(h["traceparent"].as_str().unwrap().starts_with("00-"), "{h}");
    assert!(stats["last_body"].as_str().unwrap().contains("UsernameToken"));

    // A form with base64 attachments, with HTTP basic credentials instead of WS-Security.
    let istanza = json!({"istanza": {
        "tipo": "SUAP",
        "richiedente": {"codiceFiscale": "BNCLCU85M41F205Z", "nome": "Lucia", "cognome": "Bianchi"},
        "allegati": [{"nome": "domanda.pdf", "contenuto": "JVBERi0xLjQK"}, {"nome": "id.png", "contenuto": "iVBORw0KGgo="}],
    }});
    let r =
        e.v.send("POST", HOST, "/istanze", &[("content-type", "application/json")], istanza.to_string().as_bytes())
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json["numeroProtocollo"].as_i64().unwrap() > 41000);
    assert_eq!(r.json["allegatiRicevuti"], 2);
    assert_eq!(r.json["byteRicevuti"], 9 + 8, "the back-office decoded the attachments");
    assert_eq!(r.json["data"], "2026-12-03T10:00:00+00:00");
    let stats = peer_stats(e.peer).await;
    assert!(stats["last_headers"]["authorization"].as_str().unwrap().starts_with("Basic "));

    // SOAP 1.2, query parameters, an empty array.
    let r = e.v.get(HOST, "/pratiche?codiceFiscale=RSSMRA80A01H501U").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    assert_eq!(r.json[0]["id"], "P-2026-0001");
    let stats = peer_stats(e.peer).await;
    assert!(stats["last_headers"]["content-type"].as_str().unwrap().starts_with("application/soap+xml"));
    let r = e.v.get(HOST, "/pratiche?codiceFiscale=XXXXXX80A01H501U").await;
    assert_eq!((r.status, r.json.clone()), (200, json!([])));
    // The password never reaches the log.
    assert!(!e.v.log_text().contains("pw<&>"));
}

#[tokio::test]
async fn faults_and_bad_requests_become_problems() {
    let e = setup("", "").await;
    let r = e.v.get(HOST, "/pratiche/P-9999").await;
    r.assert_problem(404, "resource-not-found");
    assert_eq!(r.json["errors"]["fault"]["code"], "Client.ResourceNotFound");
    assert!(r.json["detail"].as_str().unwrap().contains("pratica P-9999"));
    // SOAP 1.2: Sender with a ResourceNotFound subcode.
    let r = e.v.get(HOST, "/v12/pratiche/P-9999").await;
    r.assert_problem(404, "resource-not-found");
    assert_eq!(r.json["errors"]["fault"]["code"], "Sender.ResourceNotFound");
    assert_eq!(e.v.get(HOST, "/v12/pratiche/P-2026-0002").await.json["tipo"], "TARI");
    // Without credentials the back-office refuses: a Client fault.
    let r = e.v.get(HOST, "/anonimo/P-2026-0001").await;
    r.assert_problem(422, "backoffice-rejected");
    assert_eq!(r.json["errors"]["fault"]["string"], "credenziali mancanti o errate");
    // What does not fit the operation never leaves varco.
    let calls = peer_stats(e.peer).await["calls"].as_i64().unwrap();
    let bad =
        json!({"istanza": {"tipo": "SUAP", "richiedente": {"codiceFiscale": "rss", "nome": "L", "cognome": "B"}}});
    let r = e.v.send("POST", HOST, "/istanze", &[], bad.to_string().as_bytes()).await;
    r.assert_problem(422, "validation-failed");
    assert!(r.json["detail"].as_str().unwrap().contains("presentaIstanza/istanza/richiedente/codiceFiscale"));
    let r = e.v.send("POST", HOST, "/istanze", &[], br#"{"istanza": {"tipo": "SUAP", "cf": 1}}"#).await;
    r.assert_problem(422, "validation-failed");
    let r = e.v.send("POST", HOST, "/istanze", &[], b"<xml/>").await;
    r.assert_problem(400, "bad-request");
    assert_eq!(peer_stats(e.peer).await["calls"].as_i64().unwrap(), calls);
}

#[tokio::test]
async fn a_broken_or_hostile_answer_is_a_502_naming_what_is_wrong() {
    let e = setup("", "").await;
    peer_set(e.peer, json!({"broken": true})).await;
    let r = e.v.get(HOST, "/pratiche/P-2026-0001").await;
    r.assert_problem(502, "bad-gateway");
    assert!(
        r.json["detail"].as_str().unwrap().contains("getPraticaResult/segreto: is not in the schema"),
        "{}",
        r.text()
    );
    peer_set(e.peer, json!({"broken": false, "bomb": true})).await;
    let r = e.v.get(HOST, "/pratiche/P-2026-0001").await;
    r.assert_problem(502, "bad-gateway");
    assert!(r.json["detail"].as_str().unwrap().contains("DOCTYPE"), "{}", r.text());
    peer_set(e.peer, json!({"bomb": false})).await;
    assert_eq!(e.v.get(HOST, "/pratiche/P-2026-0001").await.status, 200);
}

#[tokio::test]
async fn slow_is_a_504_and_down_opens_the_breaker_503() {
    let breaker = "\n        circuit_breaker: {consecutive_failures: 3, failure_ratio: 0.5, min_requests: 3, window: 10s, open_for: 30s}";
    let mut e = setup("", breaker).await;
    peer_set(e.peer, json!({"delay": 3})).await;
    let r = e.v.get(HOST, "/pratiche/P-2026-0001").await;
    r.assert_problem(504, "gateway-timeout");
    peer_set(e.peer, json!({"delay": 0})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The back-office goes away: failures, then the breaker answers 503 without calling.
    e.child.kill().await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = e.v.get(HOST, "/pratiche/P-2026-0001").await;
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        statuses.push(r.status);
    }
    assert!(statuses.iter().all(|s| *s == 502 || *s == 503), "{statuses:?}");
    let last = e.v.get(HOST, "/pratiche/P-2026-0001").await;
    last.assert_problem(503, "circuit-open");
    assert!(last.header("retry-after").is_some());
}

/// zeep, a SOAP client, calls the service varco publishes in front of a REST back-office.
#[tokio::test]
async fn zeep_calls_the_published_wsdl_and_varco_calls_rest() {
    let rest = Backend::start("pratiche-rest").await;
    let p7 = json!({"id": "P-7", "tipo": "TARI", "stato": "APERTA", "documenti": [{"nome": "a.pdf"}], "importo": 80.5, "interno": "x"});
    rest.serve_static("/api/pratiche/P-7", Some(p7.to_string().into_bytes()));
    // The REST back-office has no such pratica.
    rest.serve_status("/api/pratiche/P-404", 404);
    let dir = tempdir();
    let wsdl = dir.join("pratiche.wsdl");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../adapters/mediation/testdata/pratiche.wsdl"), &wsdl)
        .unwrap();
    let cfg = format!(
        r#"{bari}    upstreams:
      rest: {{servers: ["{addr}"]}}
    routes:
      - name: servizio
        path: /soap/pratiche
        methods: [GET, POST]
        access: public
        to:
          adapter:
            kind: soap_service
            upstream: rest
            wsdl: "{wsdl}"
            operations:
              getPratica: {{method: GET, path: "/api/pratiche/{{id}}"}}
              presentaIstanza:
                method: POST
                path: /api/istanze
                response_template: |
                  {{"numeroProtocollo": 42, "data": "2026-12-03T10:00:00Z", "byteRicevuti": {{{{ response.body_len }}}}}}
      - name: servizio-limitato
        path: /soap/limitato
        methods: [POST]
        access: public
        max_body_bytes: 2048
        rate_limits: [{{per: route, requests: 1, period: 1m}}]
        to:
          adapter:
            kind: soap_service
            upstream: rest
            wsdl: "{wsdl}"
            operations:
              getPratica: {{method: GET, path: "/api/pratiche/{{id}}"}}
"#,
        bari = bari(),
        addr = rest.addr,
        wsdl = wsdl.display()
    );
    let v = Varco::start(&cfg).await;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(ZEEP)
        .arg(format!("http://127.0.0.1:{}/soap/pratiche?wsdl", v.port))
        .arg(HOST)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(got["found"]["id"], "P-7");
    assert_eq!(got["found"]["documenti"]["Documento"][0]["nome"], "a.pdf");
    assert_eq!(got["found"]["importo"], "80.5");
    assert!(got["missing"].as_str().unwrap().contains("ResourceNotFound"), "{got}");
    assert!(got["address"].as_str().unwrap().ends_with("/soap/pratiche"), "{got}");
    // The form with its base64 attachments reached the REST back-office as JSON.
    assert_eq!(got["ricevuta"]["numeroProtocollo"], 42);
    let sent = rest.requests().into_iter().find(|r| r["path"] == "/api/istanze").unwrap();
    assert_eq!(sent["method"], "POST");
    let body: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["istanza"]["allegati"][0], json!({"nome": "a.pdf", "contenuto": "aGVsbG8="}));
    assert_eq!(body["istanza"]["richiedente"]["codiceFiscale"], "RSSMRA80A01H501U");

    // Hostile or broken SOAP gets a SOAP Fault (never problem+json), and nothing reaches REST.
    let hits = rest.hits();
    let post = |path: &'static str, body: String| {
        let v = &v;
        async move { v.send("POST", HOST, path, &[("content-type", "text/xml; charset=utf-8")], body.as_bytes()).await }
    };
    let env = |inner: &str| {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:comune:pratiche"><s:Body>{inner}</s:Body></s:Envelope>"#
        )
    };
    let bomb = format!(
        r#"<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>{}"#,
        env("<t:getPratica><t:id>&b;</t:id></t:getPratica>")
    );
    for (body, code) in [
        (bomb, "Client.MalformedRequest"),
        (env("<t:getPratica><t:id>P-7</t:id><t:extra/></t:getPratica>"), "Client.InvalidRequest"),
        (env("<t:cancellaTutto/>"), "Client.UnknownOperation"),
        (
            env("<t:getPratica/>").replace("schemas.xmlsoap.org/soap/envelope/", "www.w3.org/2003/05/soap-envelope"),
            "Client.VersionMismatch",
        ),
    ] {
        let r = post("/soap/pratiche", body).await;
        assert_eq!(r.status, 500, "{}", r.text());
        assert!(r.header("content-type").unwrap().starts_with("text/xml"));
        assert!(r.text().contains(&format!("soap:{code}")), "{code}: {}", r.text());
    }
    assert_eq!(rest.hits(), hits);
    // Gateway refusals on a SOAP route are faults too, with the problem inside.
    let ok = post("/soap/limitato", env("<t:getPratica><t:id>P-7</t:id></t:getPratica>")).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let limited = post("/soap/limitato", env("<t:getPratica><t:id>P-7</t:id></t:getPratica>")).await;
    assert_eq!(limited.status, 500, "{}", limited.text());
    assert!(limited.text().contains("soap:Client.rate-limited"), "{}", limited.text());
    assert!(limited.text().contains("urn:varco:problem:rate-limited"));
    assert!(limited.header("retry-after").is_some());
}

const ZEEP: &str = r#"
import json, sys
import requests, zeep
from zeep.transports import Transport
url, host = sys.argv[1], sys.argv[2]
s = requests.Session()
s.headers["Host"] = host
c = zeep.Client(url, transport=Transport(session=s))
svc = c.create_service(next(iter(c.wsdl.bindings)), url.split("?")[0])
address = next(iter(next(iter(c.wsdl.services.values())).ports.values())).binding_options["address"]
found = zeep.helpers.serialize_object(svc.getPratica(id="P-7"), dict)
try:
    svc.getPratica(id="P-404")
    missing = "no fault"
except zeep.exceptions.Fault as f:
    missing = f.code + " " + f.message
istanza = {"tipo": "SUAP", "richiedente": {"codiceFiscale": "RSSMRA80A01H501U", "nome": "Mario", "cognome": "Rossi"},
           "allegati": {"Allegato": [{"nome": "a.pdf", "contenuto": b"hello"}]}}
ricevuta = zeep.helpers.serialize_object(svc.presentaIstanza(istanza=istanza), dict)
print(json.dumps({"found": found, "missing": missing, "address": address, "ricevuta": ricevuta}, default=str))
"#;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The README's worked example (deploy/examples/mediation.yaml) run as it is against the
/// spyne anagrafe, with only its addresses changed.
#[tokio::test]
async fn the_worked_example_serves_the_soap_anagrafe_as_rest() {
    let peer = free_port();
    let _child =
        spawn_ready_tool("soap_backoffice.py", &[&peer.to_string(), "--user", "varco", "--password", "anagrafe-pw"])
            .await;
    let root = repo();
    let text = std::fs::read_to_string(root.join("deploy/examples/mediation.yaml"))
        .unwrap()
        .replace("0.0.0.0:8080", "127.0.0.1:{PORT}")
        .replace("127.0.0.1:9180", "127.0.0.1:{ADMIN}")
        .replace("127.0.0.1:8089", &format!("127.0.0.1:{peer}"))
        .replace("wsdl: deploy/", &format!("wsdl: {}/deploy/", root.display()));
    let v = Varco::start_with_env(&text, &[("ANAGRAFE_PASSWORD", "anagrafe-pw")]).await;
    let host = "api.comune.bari.it";
    let r = v.get(host, "/anagrafe/cittadini/RSSMRA80A01H501U").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json["cognome"], "Rossi");
    assert_eq!(r.json["dataNascita"], "1980-01-01");
    assert_eq!(r.json["indirizzo"]["comune"], "Bari");
    assert_eq!(r.json["famiglia"][1]["relazione"], "CONIUGE");
    v.get(host, "/anagrafe/cittadini/VRDLRA82B42A662K").await.assert_problem(404, "resource-not-found");
    // The WSDL's pattern refuses a malformed codice fiscale before the back-office sees it.
    let r = v.get(host, "/anagrafe/cittadini/rossi").await;
    r.assert_problem(422, "validation-failed");
    assert!(r.json["detail"].as_str().unwrap().contains("getCittadino/codiceFiscale"), "{}", r.text());
    let r = v.get(host, "/anagrafe/residenze/RSSMRA80A01H501U").await;
    assert_eq!(r.json, json!({"codice_fiscale": "RSSMRA80A01H501U", "comune": "Bari", "componenti": 2}));
    // The contract served at run time is the one committed in contracts/.
    let served = v.get(host, "/openapi.json").await;
    assert_eq!(served.status, 200);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("contracts/openapi/anagrafe-bari-mediated.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served.json, committed, "run `varco openapi --config deploy/examples/mediation.yaml --tenant c_a662 --out contracts/openapi/anagrafe-bari-mediated.json`");
}

/// `varco check` reads the WSDL and the templates: each mistake named with its place.
#[test]
fn varco_check_reports_template_and_wsdl_mistakes_with_their_line() {
    let root = repo();
    let dir = tempdir();
    let example = std::fs::read_to_string(root.join("deploy/examples/mediation.yaml"))
        .unwrap()
        .replace("wsdl: deploy/", &format!("wsdl: {}/deploy/", root.display()));
    let check = |text: &str| {
        let f = dir.join("check.yaml");
        std::fs::write(&f, text).unwrap();
        let out = std::process::Command::new(Varco::bin()).args(["check", "--config"]).arg(&f).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(check(&example), (true, String::new()));
    let broken = example.replace("pointer(response, ", "pointer(response ");
    let (ok, err) = check(&broken);
    assert!(!ok);
    let line = example.lines().position(|l| l.contains("response_template: |")).unwrap() + 1;
    assert!(err.contains(&format!("routes[1].to.adapter.response_template (line {line}")), "{err}");
    assert!(err.contains("template line 3"), "{err}");
    let (ok, err) = check(&example.replacen("operation: getCittadino", "operation: getCitadino", 1));
    assert!(!ok);
    assert!(err.contains("no operation `getCitadino`") && err.contains("getCittadino"), "{err}");
    let (ok, err) = check(&example.replacen("examples/anagrafe.wsdl", "examples/missing.wsdl", 1));
    assert!(!ok);
    assert!(err.contains("missing.wsdl"), "{err}");
}

/// `kind: rest`: a REST back-office whose shape differs, reshaped by templates both ways.
#[tokio::test]
async fn rest_to_rest_reshaped_by_templates() {
    let bo = Backend::start("recapiti").await;
    bo.serve_status("/v2/cittadini/NESSUNO/recapiti", 404);
    let cfg = format!(
        r#"{bari}    upstreams:
      recapiti: {{servers: ["{addr}"]}}
    routes:
      - name: recapiti
        path: "/recapiti/{{cf}}"
        methods: [POST]
        access: public
        to:
          adapter:
            kind: rest
            upstream: recapiti
            method: PUT
            path: "/v2/cittadini/{{cf}}/recapiti"
            request_template: '{{"email": {{{{ body.mail | tojson }}}}, "fonte": "varco"}}'
            response_template: '{{"ricevuto": {{{{ (status == 200) | tojson }}}}, "metodo": {{{{ response.method | tojson }}}}}}'
"#,
        bari = bari(),
        addr = bo.addr
    );
    let v = Varco::start(&cfg).await;
    let r = v.send("POST", HOST, "/recapiti/RSSMRA80A01H501U", &[], br#"{"mail": "mario@example.it"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json, json!({"ricevuto": true, "metodo": "PUT"}));
    let last = bo.last();
    assert_eq!(last["path"], "/v2/cittadini/RSSMRA80A01H501U/recapiti");
    assert_eq!(
        serde_json::from_str::<Value>(last["body"].as_str().unwrap()).unwrap(),
        json!({"email": "mario@example.it", "fonte": "varco"})
    );
    assert!(last["headers"]["traceparent"].as_str().is_some());
    v.send("POST", HOST, "/recapiti/NESSUNO", &[], br#"{"mail": "x@example.it"}"#)
        .await
        .assert_problem(404, "resource-not-found");
    // A body that is not JSON is the caller's mistake, and the back-office never sees it.
    let hits = bo.hits();
    v.send("POST", HOST, "/recapiti/X", &[], b"{").await.assert_problem(400, "bad-request");
    assert_eq!(bo.hits(), hits);
}
