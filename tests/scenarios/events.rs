//! Events between enti, end to end through the real gateway: publish (structured, batch,
//! binary) → durable outbox → (Kafka: a real tansu broker) → the other ente's webhook. The
//! broker's records are read back with an independent client (Python confluent-kafka), the
//! webhook signature is checked with Python's hmac, and varco and the broker are SIGKILLed
//! mid-stream: every event that got a 202 arrives, none that got an error does.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

#[path = "events_common.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use varco_tests::{Backend, Broker, Sse, Varco, LISTENERS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_publish_checks_and_delivery() {
    let hook = Backend::start("bari-hook").await;
    let v = start(&hook, None).await;
    // Structured, batch and binary.
    let r = publish(&v, MC, "application/cloudevents+json", &residenza("ev-1", "RSSMRA80A01H501U")).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json["ids"], json!(["ev-1"]));
    let batch = json!([residenza("ev-2", "VRDLGU75B02E783X"), residenza("ev-3", "RSSMRA80A01H501U")]);
    assert_eq!(publish(&v, MC, "application/cloudevents-batch+json", &batch).await.status, 202);
    let data =
        json!({"codiceFiscale": "BNCGNN90C03A662Y", "comuneDestinazione": "A662", "dataDecorrenza": "2026-11-21"});
    let bin = v
        .send(
            "POST",
            MC,
            "/events",
            &[
                AUTH,
                ("content-type", "application/json"),
                ("ce-specversion", "1.0"),
                ("ce-id", "ev-4"),
                ("ce-source", "/enti/c_e783/anagrafe"),
                ("ce-type", RESIDENZA),
                ("ce-subject", "BNCGNN90C03A662Y"),
            ],
            data.to_string().as_bytes(),
        )
        .await;
    assert_eq!(bin.status, 202, "{bin:?}");
    // A type Bari may not read: accepted from Macerata, never delivered to Bari.
    let pratica = json!({"specversion": "1.0", "id": "ev-p", "source": "/enti/c_e783/suap", "type": PRATICA, "subject": "P-1",
        "data": {"idPratica": "P-1", "procedimento": "SCIA", "stato": "chiusa", "dataCambio": "2026-11-20T10:00:00Z"}});
    assert_eq!(publish(&v, MC, "application/cloudevents+json", &pratica).await.status, 202);

    // Refused, and never delivered: bad data (field named), foreign source, unknown type, media type.
    let mut bad = residenza("bad-1", "RSSMRA80A01H501U");
    bad["data"]["dataDecorrenza"] = json!("20/11/2026");
    let r = publish(&v, MC, "application/cloudevents+json", &bad).await;
    r.assert_problem(422, "event-schema-violation");
    assert!(r.json["detail"].as_str().unwrap().contains("/dataDecorrenza"), "{r:?}");
    let mut half = json!([residenza("bad-2", "RSSMRA80A01H501U"), residenza("bad-3", "RSSMRA80A01H501U")]);
    half[1]["data"]["codiceFiscale"] = json!("nope");
    let r = publish(&v, MC, "application/cloudevents-batch+json", &half).await;
    r.assert_problem(422, "event-schema-violation");
    assert!(r.json["detail"].as_str().unwrap().contains("event [1]"), "{r:?}");
    let r = publish(&v, BA, "application/cloudevents+json", &residenza("bad-4", "RSSMRA80A01H501U")).await;
    r.assert_problem(403, "forbidden");
    let mut unknown = residenza("bad-5", "RSSMRA80A01H501U");
    unknown["type"] = json!("it.varco.nonexistent.v1");
    publish(&v, MC, "application/cloudevents+json", &unknown).await.assert_problem(400, "event-invalid");
    v.send("POST", MC, "/events", &[("content-type", "text/plain"), AUTH], b"hello")
        .await
        .assert_problem(415, "unsupported-media-type");
    publish(&v, MC, "application/cloudevents+json", &json!({"id": "x"})).await.assert_problem(400, "event-invalid");

    let got = deliveries(&hook, 4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // anything else would arrive now
    let got_all = hook.requests();
    assert_eq!(got_all.len(), 4, "{got:?}");
    let ids: Vec<Value> = got_all.iter().map(|r| body_of(r)["id"].clone()).collect();
    // Every granted event arrived, and each subject's in publishing order (ev-1 and ev-3 share
    // one; subjects are delivered side by side, so the others may come between).
    let mut sorted = ids.clone();
    sorted.sort_by_key(|v| v.as_str().unwrap_or("").to_owned());
    assert_eq!(sorted, vec![json!("ev-1"), json!("ev-2"), json!("ev-3"), json!("ev-4")], "ACL broken: {ids:?}");
    let at = |id: &str| ids.iter().position(|v| v == id).unwrap();
    assert!(at("ev-1") < at("ev-3"), "order per subject broken: {ids:?}");
    let mut tampered = got_all[0].clone();
    tampered["body"] = json!(format!("{} ", tampered["body"].as_str().unwrap_or("")));
    assert!(!standard_webhooks_ok(&tampered) && !signature_ok(&tampered), "a changed body must not verify");
    for req in &got_all {
        assert!(signature_ok(req), "bad signature: {req}");
        assert!(standard_webhooks_ok(req), "the Standard Webhooks library refused: {req}");
        assert_eq!(req["headers"]["webhook-id"], body_of(req)["id"]);
        assert_eq!(req["headers"]["content-type"], "application/cloudevents+json");
        let e = body_of(req);
        assert_eq!(req["headers"]["idempotency-key"], e["id"]);
        assert_eq!(e["dataschema"], format!("urn:varco:events:{RESIDENZA}"));
        assert!(e["time"].is_string());
        // varco continues the caller's trace (same trace id, its own span); the binary event
        // came without one and carries varco's new trace.
        let tp = e["traceparent"].as_str().unwrap_or("");
        assert_eq!(tp.len(), 55, "{e}");
        assert_eq!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), e["id"] != "ev-4", "{e}");
    }
    let binary = got_all.iter().map(body_of).find(|e| e["id"] == "ev-4").unwrap();
    assert_eq!(binary["data"], data, "binary data changed on the way");
    let m = v.metrics().await;
    assert!(m.contains("varco_events_delivered_total{subscription=\"anagrafe\",tenant=\"c_a662\"} 4"), "{m}");

    // Replay from the start: the same four again, same idempotency keys, each subject in order.
    let r = v
        .admin_client
        .send("POST", "localhost", "/admin/events/replay?tenant=c_a662&subscription=anagrafe&from_sequence=1", &[], b"")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let again = deliveries(&hook, 8, Duration::from_secs(10)).await;
    let ids: Vec<Value> = again[4..].iter().map(|r| body_of(r)["id"].clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|v| v.as_str().unwrap_or("").to_owned());
    assert_eq!(sorted, vec![json!("ev-1"), json!("ev-2"), json!("ev-3"), json!("ev-4")]);
    let at = |id: &str| ids.iter().position(|v| v == id).unwrap();
    assert!(at("ev-1") < at("ev-3"), "order per subject broken on replay: {ids:?}");
    let r = v
        .admin_client
        .send("POST", "localhost", "/admin/events/replay?tenant=c_a662&subscription=nope&from_sequence=1", &[], b"")
        .await;
    r.assert_problem(404, "not-found");
}

/// Publishing is idempotent by `source` + `id`: a back-office retrying a 202 it did not get, or
/// a batch repeating an event, stores it once; another source with the same id is another event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_the_same_event_again_stores_it_once() {
    let hook = Backend::start("bari-hook").await;
    let v = start(&hook, None).await;
    let e = residenza("dup-1", "RSSMRA80A01H501U");
    let first = publish(&v, MC, "application/cloudevents+json", &e).await;
    assert_eq!(first.status, 202, "{first:?}");
    let again = publish(&v, MC, "application/cloudevents+json", &e).await;
    assert_eq!((again.status, again.json["ids"].clone()), (202, json!(["dup-1"])), "{again:?}");
    let batch = json!([e.clone(), residenza("dup-2", "VRDLGU75B02E783X"), residenza("dup-2", "VRDLGU75B02E783X")]);
    assert_eq!(publish(&v, MC, "application/cloudevents-batch+json", &batch).await.status, 202);
    let mut other = residenza("dup-1", "RSSMRA80A01H501U");
    other["source"] = json!("/enti/c_e783/tributi");
    assert_eq!(publish(&v, MC, "application/cloudevents+json", &other).await.status, 202);
    let stored = v.metrics().await;
    assert!(stored.contains("varco_outbox_committed_sequence 3"), "three distinct events stored: {stored}");
    // One group commit per publish that stored something (they came one after another); the
    // repeat that stored nothing synced nothing.
    assert!(stored.contains("varco_outbox_syncs_total 3"), "{stored}");
    let got = deliveries(&hook, 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // anything else would arrive now
    let ids: Vec<(String, String)> = hook
        .requests()
        .iter()
        .map(|r| {
            (body_of(r)["source"].as_str().unwrap_or("").to_owned(), body_of(r)["id"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?} {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_sigkill_loses_nothing_accepted() {
    let hook = Backend::start("bari-hook").await;
    let mut v = start(&hook, None).await;
    let pid = v.pid();
    let accepted = publish_through_a_kill(&v, "k", 600, 200, || async move {
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    })
    .await;
    assert!(accepted.len() >= 150, "only {} accepted before the kill", accepted.len());
    v.restart().await;
    // Events sent after the restart are accepted and delivered too.
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("after", "RSSMRA80A01H501U")).await.status,
        202
    );
    let mut want = accepted.clone();
    want.push("after".into());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = hook.requests();
        let ids: HashSet<String> = got.iter().map(|r| body_of(r)["id"].as_str().unwrap_or("").to_owned()).collect();
        if want.iter().all(|i| ids.contains(i)) || Instant::now() > deadline {
            if !want.iter().all(|i| ids.contains(i)) {
                eprintln!("varco log:\n{}", v.log_text());
            }
            assert_all_delivered(&want, &got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_relay_binary_mode_and_delivery_through_the_broker() {
    let broker = Broker::start(TOPICS, 3).await;
    let hook = Backend::start("bari-hook").await;
    let v = start(&hook, Some(&broker.bootstrap())).await;
    // Bari's back-office is down at first: the events wait in Kafka, and the lag says so.
    hook.set_mode(varco_tests::Mode::Status(503));
    for (i, cf) in ["RSSMRA80A01H501U", "VRDLGU75B02E783X", "RSSMRA80A01H501U"].iter().enumerate() {
        let r = publish(&v, MC, "application/cloudevents+json", &residenza(&format!("kf-{i}"), cf)).await;
        assert_eq!(r.status, 202, "{r:?}");
    }
    // The independent client sees binary content mode.
    let records = broker.consume_with_key(TOPIC_MC, 3, Some(SUBJECT_KEY)).await;
    assert_eq!(records.len(), 3, "{records:?}");
    let mut by_id: Vec<&Value> = records.iter().collect();
    by_id.sort_by_key(|r| r["headers"]["ce_id"].as_str().unwrap_or("").to_owned());
    for (i, r) in by_id.iter().enumerate() {
        let h = &r["headers"];
        assert_eq!(h["ce_specversion"], "1.0", "{r}");
        assert_eq!(h["ce_id"], format!("kf-{i}"));
        assert_eq!(h["ce_source"], "/enti/c_e783/anagrafe");
        assert_eq!(h["ce_type"], RESIDENZA);
        assert_eq!(h["ce_dataschema"], format!("urn:varco:events:{RESIDENZA}"));
        assert!(h["ce_traceparent"].as_str().unwrap().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{r}");
        assert!(h["ce_time"].is_string());
        assert_eq!(h["content-type"], "application/json");
        // A codice fiscale is never in the broker in the clear: the key is its keyed hash
        // and the subject travels sealed; the independent client, holding the consortium's
        // key, opens it and computes the same key.
        assert!(h.get("ce_subject").is_none(), "a personal subject in the clear: {r}");
        let data: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        assert_eq!(r["subject"], data["codiceFiscale"], "{r}");
        assert_eq!(r["key"], r["subject_key"], "{r}");
        assert!(!r["key"].as_str().unwrap().contains("RSSMRA"), "{r}");
        assert!(!h["varco_sealed_subject"].as_str().unwrap().contains("RSSMRA"), "{r}");
    }
    // Same subject, same partition (order per subject).
    let parts: HashSet<i64> = records
        .iter()
        .filter(|r| r["subject"] == "RSSMRA80A01H501U")
        .map(|r| r["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(parts.len(), 1);
    assert_eq!(records.iter().filter(|r| r["subject"] == "RSSMRA80A01H501U").count(), 2);
    assert_eq!(lag_reaches(&v, 3).await, Some(3), "consumer lag while the webhook fails");
    // Back: Bari's subscription consumes from Kafka and delivers; the lag drains.
    hook.set_mode(varco_tests::Mode::Echo);
    let from = hook.requests().len();
    assert_eq!(lag_reaches(&v, 0).await, Some(0), "consumer lag once delivered\n{}", v.log_text());
    let got: Vec<Value> = hook.requests()[from.saturating_sub(1)..].to_vec();
    assert!(got.iter().all(signature_ok));
    let first: HashSet<Value> = got.iter().map(|r| body_of(r)["id"].clone()).collect();
    assert_eq!(first.len(), 3, "every event delivered: {first:?}");
    // Replay by time through the consumer group's offsets.
    let base = hook.requests().len();
    let r = v
        .admin_client
        .send(
            "POST",
            "localhost",
            "/admin/events/replay?tenant=c_a662&subscription=anagrafe&from_time=2020-01-01T00:00:00Z",
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let again = deliveries(&hook, base + 3, Duration::from_secs(30)).await;
    assert_eq!(again.len(), base + 3, "{}", v.log_text());
    let second: HashSet<Value> = again[base..].iter().map(|r| body_of(r)["id"].clone()).collect();
    assert_eq!(first, second);

    // Apps' live stream reads the topic from its end: new events only, through the broker.
    // (A reconnecting EventSource sends its last id: accepted, and the stream is live.)
    let mut live = Sse::open(v.port, BA, "/live", &[AUTH, ("last-event-id", "1-4")]).await;
    assert_eq!(live.status, 200);
    assert_eq!(live.frame(Duration::from_secs(10)).await.as_deref(), Some(": varco event stream"));
    let r = publish(&v, MC, "application/cloudevents+json", &residenza("kf-live", "BNCGNN90C03A662Y")).await;
    assert_eq!(r.status, 202);
    let (id, ty, e) = live.event(Duration::from_secs(20)).await.expect("the live event");
    assert_eq!((ty.as_str(), e["id"].as_str()), (RESIDENZA, Some("kf-live")), "{}", v.log_text());
    assert!(id.contains('-'), "Kafka ids are <partition>-<offset>: {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_survives_a_broker_kill_and_a_varco_kill() {
    let mut broker = Broker::start(TOPICS, 3).await;
    let hook = Backend::start("bari-hook").await;
    let mut v = start(&hook, Some(&broker.bootstrap())).await;
    // The broker dies mid-stream: publishing goes on (the outbox holds the events).
    let first = publish_through_a_kill(&v, "a", 300, 100, || {
        broker.kill();
        async {}
    })
    .await;
    assert_eq!(first.len(), 300, "publishing must not depend on the broker");
    broker.restart().await;
    // Then varco itself is killed mid-stream and restarted.
    let pid = v.pid();
    let second = publish_through_a_kill(&v, "b", 300, 100, || async move {
        let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    })
    .await;
    v.restart().await;
    let mut want = first.clone();
    want.extend(second);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = hook.requests();
        let ids: HashSet<String> = got.iter().map(|r| body_of(r)["id"].as_str().unwrap_or("").to_owned()).collect();
        if want.iter().all(|i| ids.contains(i)) || Instant::now() > deadline {
            assert_all_delivered(&want, &got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kafka mode, started while the broker is down, with a 1 MiB outbox: the relay's position
/// exists from the start, so a full outbox refuses publishes (503) instead of reclaiming
/// unrelayed events, `varco_outbox_relay_pending` shows the depth, and once the broker is back
/// every accepted event reaches the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_at_start_keeps_every_accepted_event() {
    let mut broker = Broker::start(TOPICS, 3).await;
    broker.kill();
    let hook = Backend::start("bari-hook").await;
    // `create_partitions` above 0: the relay asks the broker for the topic before relaying,
    // which it cannot do while the broker is down.
    let cfg = config(&hook, Some(&broker.bootstrap()))
        .replace("{DIR}/events\"", "{DIR}/events\", max_bytes: 1048576, segment_bytes: 65536")
        .replace("create_partitions: 0", "create_partitions: 3");
    let v = Varco::start_with_env(&cfg, ENV).await;
    let (accepted, full) = publish_many(&v, "down", 4000).await;
    assert!(
        full > 0,
        "a 1 MiB outbox took {} events of ~600 bytes with no broker: it reclaimed unrelayed ones",
        accepted.len()
    );
    // The gauge is refreshed every 200 ms while the relay waits for the broker.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending = 0.0;
    while Instant::now() < deadline {
        pending = metric(&v, "varco_outbox_relay_pending").await.unwrap_or(0.0);
        if pending as usize == accepted.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending as usize, accepted.len(), "relay_pending shows the depth during the outage");
    broker.restart().await;
    let records = broker.consume(TOPIC_MC, accepted.len()).await;
    let got: HashSet<String> =
        records.iter().map(|r| r["headers"]["ce_id"].as_str().unwrap_or("").to_owned()).collect();
    let missing: Vec<_> = accepted.iter().filter(|id| !got.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted events never reached Kafka: {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Single node: a subscription added and then removed through the admin API no longer pins
/// the outbox, so publishing goes on past the disk budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_subscription_releases_the_outbox() {
    let hook = Backend::start("bari-hook").await;
    let cfg = format!(
        r#"
server: {{events: {{dir: "{{DIR}}/events", max_bytes: 1048576, segment_bytes: 65536}}, access_log: false}}
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
"#,
        key = varco_tests::api_key_hash(KEY),
    );
    let v = Varco::start_with_env(&cfg, ENV).await;
    let sub = json!({"name": "extra", "types": [RESIDENZA], "sources": ["c_e783"],
        "webhook": {"url": format!("http://{}/hook", hook.addr), "secret": {"env": "BARI_HOOK_SECRET"}}});
    let r = v
        .admin_client
        .send("POST", "localhost", "/admin/events/subscriptions?tenant=c_a662", &[], sub.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    // The subscription runs (its position is registered), then goes.
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("first", "RSSMRA80A01H501U")).await.status,
        202
    );
    deliveries(&hook, 1, Duration::from_secs(10)).await;
    let r = v
        .admin_client
        .send("DELETE", "localhost", "/admin/events/subscriptions?tenant=c_a662&name=extra", &[], b"")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The event service applies subscription changes at its next tick (every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (accepted, full) = publish_many(&v, "after", 4000).await;
    assert_eq!(full, 0, "the removed subscription still pins the outbox ({} accepted first)", accepted.len());
}

/// A clean stop (SIGTERM while publishers keep posting) is not a crash: the relay saves its
/// position after the last acknowledgements and the process exits only then, so after a
/// restart every accepted event is in Kafka exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_relays_nothing_twice() {
    let broker = Broker::start(TOPICS, 3).await;
    let hook = Backend::start("bari-hook").await;
    let mut v = start(&hook, Some(&broker.bootstrap())).await;
    let pid = v.pid();
    let accepted = publish_through_a_kill(&v, "stop", 400, 200, || async move {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    })
    .await;
    assert_eq!(v.wait_exit(Duration::from_secs(15)).await, Some(0), "{}", v.log_text());
    assert!(accepted.len() >= 200, "publishing ran until the stop: {}", accepted.len());
    v.restart().await;
    // Read more than were accepted: duplicates would show up as extra records.
    let records = broker.consume(TOPIC_MC, accepted.len() + 50).await;
    let mut seen = std::collections::HashMap::new();
    for r in &records {
        *seen.entry(r["headers"]["ce_id"].as_str().unwrap_or("").to_owned()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.clone()).collect();
    assert!(
        twice.is_empty(),
        "{} events relayed twice after a clean stop: {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    let missing: Vec<_> = accepted.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} accepted events never reached Kafka: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(records.len(), accepted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_answers_503_and_takes_events_again_once_drained() {
    let hook = Backend::start("bari-hook").await;
    hook.set_mode(varco_tests::Mode::Status(503)); // the only reader is stuck: nothing can be reclaimed
    let cfg = config(&hook, None)
        .replace("dir: \"{DIR}/events\"", "dir: \"{DIR}/events\", max_bytes: 1048576, segment_bytes: 65536")
        .replace("backoff: 100ms", "backoff: 50ms")
        .replace("max_backoff: 1s", "max_backoff: 200ms")
        .replace("max_attempts: 100", "max_attempts: 1000");
    let v = Varco::start_with_env(&cfg, ENV).await;
    let batch =
        |n: usize| Value::Array((0..100).map(|i| residenza(&format!("full-{n}-{i}"), "RSSMRA80A01H501U")).collect());
    let mut accepted = 0;
    let mut full = None;
    for n in 0..100 {
        let r = publish(&v, MC, "application/cloudevents-batch+json", &batch(n)).await;
        match r.status {
            202 => accepted += 100,
            _ => {
                full = Some(r);
                break;
            }
        }
    }
    let r = full.expect("the disk budget never filled");
    r.assert_problem(503, "outbox-full");
    assert!(r.header("retry-after").is_some(), "{r:?}");
    assert!(accepted >= 1000, "only {accepted} accepted");
    // The back-office comes back: everything accepted is delivered, and room is made again.
    hook.set_mode(varco_tests::Mode::Echo);
    let got = deliveries(&hook, accepted, Duration::from_secs(60)).await;
    assert!(got.len() >= accepted, "{} of {accepted} delivered", got.len());
    let r = publish(&v, MC, "application/cloudevents-batch+json", &batch(1000)).await;
    assert_eq!(r.status, 202, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_for_apps_follows_the_acl_and_resumes() {
    let hook = Backend::start("bari-hook").await;
    let v = start(&hook, None).await;
    let mut live = Sse::open(v.port, BA, "/live", &[AUTH]).await;
    assert_eq!(live.status, 200);
    assert_eq!(live.headers["content-type"], "text/event-stream");
    assert_eq!(live.frame(Duration::from_secs(5)).await.as_deref(), Some(": varco event stream"));

    // Macerata's case (not granted to Bari), then its residence change (granted), then Bari's own case.
    let pratica = |id: &str, src: &str| {
        json!({"specversion": "1.0", "id": id, "source": src, "type": PRATICA, "subject": "P-1",
            "data": {"idPratica": "P-1", "procedimento": "SCIA", "stato": "chiusa", "dataCambio": "2026-11-20T10:00:00Z"}})
    };
    let ce = "application/cloudevents+json";
    assert_eq!(publish(&v, MC, ce, &pratica("mc-case", "/enti/c_e783/suap")).await.status, 202);
    assert_eq!(publish(&v, MC, ce, &residenza("mc-res", "RSSMRA80A01H501U")).await.status, 202);
    assert_eq!(publish(&v, BA, ce, &pratica("ba-case", "/enti/c_a662/suap")).await.status, 202);
    let (id1, ty1, e1) = live.event(Duration::from_secs(5)).await.expect("the granted event");
    assert_eq!((ty1.as_str(), e1["id"].as_str()), (RESIDENZA, Some("mc-res")));
    assert_eq!(e1["data"]["codiceFiscale"], "RSSMRA80A01H501U", "the event as published: {e1}");
    let (id2, ty2, e2) = live.event(Duration::from_secs(5)).await.expect("Bari's own event");
    assert_eq!((ty2.as_str(), e2["id"].as_str()), (PRATICA, Some("ba-case")));
    // Idle: a keep-alive comment, and nothing else (Macerata's case never comes).
    assert_eq!(live.frame(Duration::from_secs(5)).await.as_deref(), Some(": keep-alive"));

    // A reconnect with Last-Event-ID resumes right after it, from the outbox.
    let mut again = Sse::open(v.port, BA, "/live", &[AUTH, ("last-event-id", &id1)]).await;
    let (rid, _, re) = again.event(Duration::from_secs(5)).await.expect("resumed");
    assert_eq!((rid.as_str(), re["id"].as_str()), (id2.as_str(), Some("ba-case")));
    // From the start, narrowed to residence changes: only the granted one.
    let q = format!("/live?types={RESIDENZA}");
    let mut narrow = Sse::open(v.port, BA, &q, &[AUTH, ("last-event-id", "0")]).await;
    let (_, _, ne) = narrow.event(Duration::from_secs(5)).await.expect("narrowed");
    assert_eq!(ne["id"], "mc-res");
    assert!(narrow.event(Duration::from_millis(1500)).await.is_none(), "only residence changes");

    // Three streams are open: a fourth waits for one to close (the caller going away frees
    // its slot once varco next writes to it, a keep-alive at the latest).
    let full = v.send("GET", BA, "/live", &[AUTH], b"").await;
    full.assert_problem(503, "overloaded");
    assert!(full.headers.contains_key("retry-after"));
    drop(again);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fourth = Sse::open(v.port, BA, "/live", &[AUTH]).await;
    while fourth.status == 503 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fourth = Sse::open(v.port, BA, "/live", &[AUTH]).await;
    }
    assert_eq!(fourth.status, 200, "a slot came free");

    // Bad input gets problem+json.
    let r = v.send("GET", BA, "/live?from=3", &[AUTH], b"").await;
    r.assert_problem(400, "bad-request");
    let r = v.send("GET", BA, "/live", &[AUTH, ("last-event-id", "abc")], b"").await;
    r.assert_problem(400, "bad-request");
    v.send("GET", BA, "/live", &[], b"").await.assert_problem(401, "token-missing");
    drop((live, narrow, fourth));

    // An id past the end (an outbox that was wiped, say) resumes from now, not never.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ahead = Sse::open(v.port, BA, "/live", &[AUTH, ("last-event-id", "999999")]).await;
    while ahead.status == 503 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ahead = Sse::open(v.port, BA, "/live", &[AUTH, ("last-event-id", "999999")]).await;
    }
    assert_eq!(ahead.status, 200);
    assert_eq!(publish(&v, BA, ce, &pratica("ba-later", "/enti/c_a662/suap")).await.status, 202);
    let (_, _, e) = ahead.event(Duration::from_secs(5)).await.expect("an event after the made-up id");
    assert_eq!(e["id"], "ba-later");

    // Events the caller may not see keep flowing: the keep-alive still comes on time.
    let flood = {
        let client = varco_tests::Client::new(v.port);
        tokio::spawn(async move {
            for i in 0..15 {
                let body = pratica(&format!("mc-noise-{i}"), "/enti/c_e783/suap").to_string();
                let h = [("content-type", "application/cloudevents+json"), AUTH];
                let _ = client.try_send("POST", MC, "/events", &h, body.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    assert_eq!(ahead.frame(Duration::from_millis(2500)).await.as_deref(), Some(": keep-alive"));
    flood.await.unwrap();

    // A reload that revokes Bari's grant applies to the stream already open.
    // (Bari's webhook subscription goes too: a reload may not keep a subscription without a grant.)
    let cfg =
        config(&hook, None).replace(&format!("readers: [{{tenant: c_a662, types: [{RESIDENZA}]}}]"), "readers: []");
    let (head, rest) = cfg.split_once("      subscriptions:\n").expect("Bari subscribes");
    let tail = &rest[rest.find("max_attempts: 100\n").expect("the subscription's end") + 18..];
    v.rewrite_config(&format!("{head}      subscriptions: []\n{tail}"));
    assert_eq!(v.reload().await.status, 200);
    assert_eq!(publish(&v, MC, ce, &residenza("mc-revoked", "RSSMRA80A01H501U")).await.status, 202);
    assert_eq!(publish(&v, BA, ce, &pratica("ba-after", "/enti/c_a662/suap")).await.status, 202);
    let (_, _, e) = ahead.event(Duration::from_secs(5)).await.expect("Bari's own event");
    assert_eq!(e["id"], "ba-after", "a revoked grant still streamed: {e}");
}
