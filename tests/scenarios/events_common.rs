//! What the event scenarios share (`events.rs`, `events_delivery.rs`): the two enti's
//! configuration, publishing, reading the webhook's deliveries, checking their signatures
//! with independent implementations, and publishing through a kill.
#![allow(dead_code)] // each scenario file uses its own part

use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use varco_tests::{Backend, Varco, LISTENERS};

pub const MC: &str = "macerata.example.it";

pub const BA: &str = "bari.example.it";

/// The topics of the default layout (`ente`): one per publishing ente, and Bari's dead letters.
pub const TOPIC_MC: &str = "varco.events.c_e783";
pub const TOPIC_BA: &str = "varco.events.c_a662";
pub const DEAD_BA: &str = "varco.events.c_a662.dead-letter";
pub const TOPICS: &[&str] = &[TOPIC_MC, TOPIC_BA, DEAD_BA];

/// The consortium's `subject_key` (record keys and sealed subjects).
pub const SUBJECT_KEY: &str = "subject-key-of-the-consortium-0123456789";

/// What every scenario's varco finds in its environment.
pub const ENV: &[(&str, &str)] = &[("BARI_HOOK_SECRET", SECRET), ("VARCO_SUBJECT_KEY", SUBJECT_KEY)];

pub const RESIDENZA: &str = "it.varco.anagrafe.residenza.cambiata.v1";

pub const PRATICA: &str = "it.varco.pratica.stato.cambiato.v1";

pub const SECRET: &str = "webhook-secret-bari-0123456789";

/// The API key of each ente's apps and back-offices (the event routes are never public).
pub const KEY: &str = "events-key-0123456789";

pub const AUTH: (&str, &str) = ("x-api-key", KEY);

/// Macerata publishes; Bari may read Macerata's residence changes (not its cases) and
/// subscribes to both types: only the granted one may arrive.
pub fn config(hook: &Backend, kafka: Option<&str>) -> String {
    let kafka = kafka.map_or(String::new(), |b| {
        format!(", kafka: {{brokers: \"{b}\", create_partitions: 0, subject_key: {{env: VARCO_SUBJECT_KEY}}}}")
    });
    format!(
        r#"
server: {{events: {{dir: "{{DIR}}/events"{kafka}}}}}
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    hosts: [{MC}]
    api_keys: [{{name: anagrafe, hash: "{key}"}}]
    routes:
      - {{name: events, path: /events, methods: [POST], access: {{api_key: {{}}}}, to: {{adapter: {{kind: events}}}}}}
    events:
      readers: [{{tenant: c_a662, types: [{RESIDENZA}]}}]
  - id: c_a662
    name: Bari
    hosts: [{BA}]
    api_keys: [{{name: app, hash: "{key}"}}]
    routes:
      - {{name: events, path: /events, methods: [POST], access: {{api_key: {{}}}}, to: {{adapter: {{kind: events}}}}}}
      - {{name: live, path: /live, methods: [GET], access: {{api_key: {{}}}}, to: {{adapter: {{kind: event_stream, heartbeat: 1s, max_streams: 3}}}}}}
    events:
      subscriptions:
        - name: anagrafe
          types: [{RESIDENZA}]
          sources: [c_e783]
          webhook: {{url: "http://{hook}/hook", secret: {{env: BARI_HOOK_SECRET}}, timeout: 2s}}
          backoff: 100ms
          max_backoff: 1s
          max_attempts: 100
"#,
        hook = hook.addr,
        key = varco_tests::api_key_hash(KEY),
    )
}

pub async fn start(hook: &Backend, kafka: Option<&str>) -> Varco {
    Varco::start_with_env(&config(hook, kafka), ENV).await
}

pub fn residenza(id: &str, cf: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/enti/c_e783/anagrafe", "type": RESIDENZA,
        "subject": cf,
        "data": {"codiceFiscale": cf, "comuneProvenienza": "E783", "comuneDestinazione": "A662", "dataDecorrenza": "2026-11-20"}
    })
}

pub async fn publish(v: &Varco, host: &str, ct: &str, body: &Value) -> varco_tests::Resp {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    v.send("POST", host, "/events", &[("content-type", ct), ("traceparent", tp), AUTH], body.to_string().as_bytes())
        .await
}

/// Waits until the webhook got at least `n` deliveries; their bodies (structured events).
pub async fn deliveries(hook: &Backend, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let got = hook.requests();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn body_of(req: &Value) -> Value {
    serde_json::from_str(req["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Python's hmac checks the signature header over "<t>.<body>".
pub fn signature_ok(req: &Value) -> bool {
    let sig = req["headers"]["x-varco-signature"].as_str().unwrap_or("");
    let body = req["body"].as_str().unwrap_or("");
    let script = "import hmac,hashlib,sys\nsig,secret,body=sys.argv[1],sys.argv[2],sys.stdin.read()\n\
                  t=sig.split(',')[0][2:]; v=sig.split('v1=')[1]\n\
                  print(hmac.compare_digest(v, hmac.new(secret.encode(), (t+'.'+body).encode(), hashlib.sha256).hexdigest()))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, sig, SECRET])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim() == "True"
}

/// The Standard Webhooks headers verify with that scheme's own Python library.
pub fn standard_webhooks_ok(req: &Value) -> bool {
    let h = &req["headers"];
    let script = "import sys,json\nfrom standardwebhooks.webhooks import Webhook\nsecret,hid,ts,sig=sys.argv[1:5]\n\
                  body=sys.stdin.read()\n\
                  Webhook(secret.encode()).verify(body, {'webhook-id': hid, 'webhook-timestamp': ts, 'webhook-signature': sig})\n\
                  print('True')";
    let arg = |k: &str| h[k].as_str().unwrap_or("").to_owned();
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, SECRET, &arg("webhook-id"), &arg("webhook-timestamp"), &arg("webhook-signature")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(req["body"].as_str().unwrap_or("").as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim() == "True"
}

/// Publishes `n` events from 8 concurrent clients while `kill` runs after `after`; returns
/// the ids that got a 202. Connection failures (the killed process) are neither.
pub async fn publish_through_a_kill<F, Fut>(v: &Varco, prefix: &str, n: usize, after: usize, kill: F) -> Vec<String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let client = v.client.clone();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, accepted, sent) = (client.clone(), accepted.clone(), sent.clone());
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                let id = format!("{prefix}-{i}");
                let body = residenza(&id, if i % 2 == 0 { "RSSMRA80A01H501U" } else { "VRDLGU75B02E783X" }).to_string();
                let r = client
                    .try_send(
                        "POST",
                        MC,
                        "/events",
                        &[("content-type", "application/cloudevents+json"), AUTH],
                        body.as_bytes(),
                    )
                    .await;
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match r {
                    Ok(r) if r.status == 202 => accepted.lock().unwrap().push(id),
                    Ok(r) => panic!("unexpected answer {r:?}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    while sent.load(std::sync::atomic::Ordering::SeqCst) < after {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill().await;
    for t in tasks {
        t.await.unwrap();
    }
    let ids = accepted.lock().unwrap().clone();
    ids
}

/// Every accepted id arrived at the webhook (duplicates allowed), and per subject in order.
pub fn assert_all_delivered(accepted: &[String], got: &[Value]) {
    let delivered: HashSet<String> = got.iter().map(|r| body_of(r)["id"].as_str().unwrap_or("").to_owned()).collect();
    let missing: Vec<&String> = accepted.iter().filter(|id| !delivered.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events never delivered: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// Polls `/metrics` until Bari's subscription lag is `want` (up to 20 s); the last value seen.
pub async fn lag_reaches(v: &Varco, want: i64) -> Option<i64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = String::from_utf8_lossy(&v.admin_client.get("localhost", "/metrics").await.body).into_owned();
        let seen = m
            .lines()
            .find(|l| l.starts_with("varco_subscription_lag_events{") && l.contains("anagrafe"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok());
        if seen == Some(want) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes `n` events from 8 tasks as fast as varco answers; the accepted ids and the
/// number of 503 `outbox-full` answers (any other answer fails the test).
pub async fn publish_many(v: &Varco, prefix: &str, n: usize) -> (Vec<String>, usize) {
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let full = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, accepted, full, prefix) = (v.client.clone(), accepted.clone(), full.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(8) {
                let id = format!("{prefix}-{i}");
                let body = residenza(&id, "RSSMRA80A01H501U").to_string();
                let r = client
                    .send(
                        "POST",
                        MC,
                        "/events",
                        &[("content-type", "application/cloudevents+json"), AUTH],
                        body.as_bytes(),
                    )
                    .await;
                match r.status {
                    202 => accepted.lock().unwrap().push(id),
                    503 => {
                        r.assert_problem(503, "outbox-full");
                        full.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => panic!("unexpected answer {r:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ids = accepted.lock().unwrap().clone();
    (ids, full.load(std::sync::atomic::Ordering::SeqCst))
}

/// A metric's value in `/metrics` (the first sample of that name).
pub async fn metric(v: &Varco, name: &str) -> Option<f64> {
    let text = String::from_utf8_lossy(&v.admin_client.get("localhost", "/metrics").await.body).into_owned();
    text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|x| x.parse().ok())
}

/// Publishes 400 residence changes over 5 subjects (`<prefix>-0` … `<prefix>-399`, batches of
/// 10) from Macerata.
pub async fn publish_five_subjects(v: &Varco, prefix: &str) {
    let cfs = ["RSSMRA80A01H501U", "VRDLGU75B02E783X", "BNCGNN90C03A662Y", "FRRLCU85D04F205Z", "CSTMRC70E05L219W"];
    for b in 0..40 {
        let batch: Vec<Value> =
            (0..10).map(|i| residenza(&format!("{prefix}-{}", b * 10 + i), cfs[(b * 10 + i) % 5])).collect();
        assert_eq!(publish(v, MC, "application/cloudevents-batch+json", &json!(batch)).await.status, 202);
    }
}

/// Each delivery once, each subject's in publishing order, and more than one delivery (at most
/// the 16 lanes) in the webhook at once; the number of subjects seen.
pub fn assert_side_by_side_in_order(got: &[Value], prefix: &str, hook: &Backend) -> usize {
    let mut last: std::collections::HashMap<String, usize> = Default::default();
    let mut seen = HashSet::new();
    for r in got {
        let e = body_of(r);
        let n: usize = e["id"].as_str().unwrap()[prefix.len() + 1..].parse().unwrap();
        let subject = e["subject"].as_str().unwrap().to_owned();
        assert!(seen.insert(n), "{prefix}-{n} delivered twice");
        if let Some(&p) = last.get(&subject) {
            assert!(p < n, "subject {subject}: {prefix}-{n} arrived after {prefix}-{p}");
        }
        last.insert(subject, n);
    }
    let most = hook.max_in_flight();
    assert!((2..=16).contains(&most), "deliveries at once: {most}");
    last.len()
}
