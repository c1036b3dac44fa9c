//! OpenTelemetry traces end to end: one request followed from its caller through varco to an
//! upstream, from there (the back-office passing the trace on) into an event on Kafka (tansu)
//! and out to another comune's webhook, all in one trace with the right parent/child links, as
//! an independent OTLP receiver (the OpenTelemetry project's protobuf definitions) decodes it.
//! And a collector that is down, slow or overwhelmed costs requests nothing.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

#[path = "events_common.rs"]
mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use varco_tests::{spawn_ready_tool, Backend, Broker, Varco};

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// The OTLP receiver on a free port.
async fn receiver() -> (u16, tokio::process::Child) {
    let port = varco_tests::free_port();
    (port, spawn_ready_tool("otlp_receiver.py", &[&port.to_string()]).await)
}

async fn spans(port: u16) -> Value {
    varco_tests::Client::new(port).get("localhost", "/spans").await.json
}

/// Waits until the receiver holds spans of `trace` matching every one of `names` (prefixes).
async fn trace_spans(port: u16, trace: &str, names: &[&str], within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let all = spans(port).await;
        let got: Vec<Value> =
            all["spans"].as_array().unwrap().iter().filter(|s| s["trace_id"] == trace).cloned().collect();
        let complete = names.iter().all(|n| got.iter().any(|s| s["name"].as_str().unwrap().starts_with(n)));
        if complete || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn find<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no span `{name}` in {}", serde_json::to_string_pretty(spans).unwrap()))
}

/// The parent id in a `traceparent` header, after checking its trace id.
fn parent_in(tp: &str, trace: &str) -> String {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[1], trace, "{tp}");
    assert_eq!(parts[3], "01", "sampled: {tp}");
    parts[2].to_owned()
}

/// Macerata's `pratiche` route goes to its back-office; its events reach Bari's webhook
/// through Kafka; varco exports its spans to `otlp`.
fn config(hook: &Backend, backoffice: &Backend, broker: &str, otlp: u16, tracing: &str) -> String {
    let base = common::config(hook, Some(broker));
    base.replace(
        "server: {events: {",
        &format!("server: {{tracing: {{endpoint: \"http://127.0.0.1:{otlp}/v1/traces\", batch_delay: 100ms{tracing}}}, events: {{"),
    )
    .replacen(
        "    routes:\n",
        &format!(
            "    upstreams: {{pratiche: {{servers: [\"{}\"]}}}}\n    routes:\n      - {{name: pratiche, path: \"/pratiche/{{id}}\", methods: [GET], access: public, to: {{upstream: pratiche}}}}\n",
            backoffice.addr
        ),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_caller_to_the_other_comunes_webhook() {
    let broker = Broker::start(TOPICS, 1).await;
    let (otlp, _receiver) = receiver().await;
    let hook = Backend::start("bari-hook").await;
    let backoffice = Backend::start("macerata-pratiche").await;
    let v = Varco::start_with_env(&config(&hook, &backoffice, &broker.bootstrap(), otlp, ""), ENV).await;

    // 1. The caller's request, in the caller's trace.
    let caller_tp = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let r = v.send("GET", MC, "/pratiche/SUAP-42", &[("traceparent", &caller_tp)], b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let up_tp = backoffice.last()["headers"]["traceparent"].as_str().unwrap().to_owned();
    let attempt_id = parent_in(&up_tp, CALLER_TRACE);
    assert_ne!(attempt_id, CALLER_SPAN, "varco's own span is the back-office's parent");

    // 2. The back-office publishes the change, passing the trace context on unchanged.
    let ev = residenza("trace-ev-1", "RSSMRA80A01H501U");
    let r = v
        .send(
            "POST",
            MC,
            "/events",
            &[("content-type", "application/cloudevents+json"), ("traceparent", &up_tp), AUTH],
            ev.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");

    // 3. Bari's webhook gets it, as a child of varco's delivery span.
    let got = deliveries(&hook, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let hook_parent = parent_in(got[0]["headers"]["traceparent"].as_str().unwrap(), CALLER_TRACE);

    // 4. The receiver has the whole trace, linked.
    let names =
        ["GET c_e783/pratiche", "pratiche ", "POST c_e783/events", "adapter events", "publish ", "deliver anagrafe"];
    let trace = trace_spans(otlp, CALLER_TRACE, &names, Duration::from_secs(20)).await;
    let dump = serde_json::to_string_pretty(&trace).unwrap();
    let server = find(&trace, "GET c_e783/pratiche");
    assert_eq!(server["kind"], "server", "{dump}");
    assert_eq!(server["parent_span_id"], CALLER_SPAN, "continues the caller's span: {dump}");
    assert_eq!(server["attributes"]["varco.tenant"], "c_e783");
    assert_eq!(server["attributes"]["varco.route"], "pratiche");
    assert_eq!(server["attributes"]["http.response.status_code"], 200);
    assert_eq!(server["service"], "varco");
    let attempt = find(&trace, "pratiche ");
    assert_eq!(
        (attempt["kind"].as_str(), attempt["parent_span_id"].as_str()),
        (Some("client"), server["span_id"].as_str())
    );
    assert_eq!(attempt["span_id"], attempt_id.as_str(), "the back-office's parent is the attempt span: {dump}");
    assert_eq!(attempt["attributes"]["http.response.status_code"], 200);
    let events = find(&trace, "POST c_e783/events");
    assert_eq!(events["parent_span_id"], attempt_id.as_str(), "the back-office passed the trace on: {dump}");
    assert_eq!(events["attributes"]["varco.caller"], "anagrafe", "the API key's caller: {dump}");
    assert_eq!(events["attributes"]["http.response.status_code"], 202);
    let adapter = find(&trace, "adapter events");
    assert_eq!(adapter["parent_span_id"], events["span_id"], "{dump}");
    let publish = find(&trace, "publish ");
    assert_eq!(
        (publish["kind"].as_str(), publish["parent_span_id"].as_str()),
        (Some("producer"), adapter["span_id"].as_str())
    );
    assert_eq!(publish["attributes"]["messaging.destination.name"], TOPIC_MC);
    assert_eq!(publish["attributes"]["messaging.message.id"], "trace-ev-1");
    let deliver = find(&trace, "deliver anagrafe");
    assert_eq!(
        (deliver["kind"].as_str(), deliver["parent_span_id"].as_str()),
        (Some("consumer"), publish["span_id"].as_str()),
        "{dump}"
    );
    assert_eq!(deliver["span_id"], hook_parent.as_str(), "the webhook's parent is the delivery: {dump}");
    assert_eq!(deliver["attributes"]["varco.attempts"], 1);
    assert!(trace.iter().all(|s| s["end"].as_u64() >= s["start"].as_u64()), "{dump}");
    assert!(trace.iter().all(|s| s["status"] != "error"), "{dump}");
    // Nothing of the request's secrets rides on a span.
    assert!(!dump.contains(KEY) && !dump.contains(SECRET), "{dump}");

    // 5. The Kafka record carries the producer span as its `traceparent` header, read back by
    // an independent client; the event keeps its publisher's context as its extension.
    let records = broker.consume(TOPIC_MC, 1).await;
    let h = &records[0]["headers"];
    assert_eq!(
        parent_in(h["traceparent"].as_str().unwrap(), CALLER_TRACE),
        publish["span_id"].as_str().unwrap(),
        "{records:?}"
    );
    assert_eq!(parent_in(h["ce_traceparent"].as_str().unwrap(), CALLER_TRACE), adapter["span_id"].as_str().unwrap());
    assert!(spans(otlp).await["content_types"].as_array().unwrap().iter().all(|c| c == "application/x-protobuf"));
    let m = v.metrics().await;
    assert!(m.contains("varco_tracing_spans_total{outcome=\"exported\"}"), "{m}");
}

/// What the samplers decide is what callers and back-offices see: a caller's unsampled flag
/// is followed (no spans, `-00` upstream), a trace varco starts is kept at ratio 1, and with
/// ratio 0 nothing is kept but the ids still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_decisions_are_followed_and_passed_on() {
    let broker = Broker::start(TOPICS, 1).await;
    let (otlp, _receiver) = receiver().await;
    let hook = Backend::start("bari-hook").await;
    let backoffice = Backend::start("macerata-pratiche").await;
    let v = Varco::start_with_env(&config(&hook, &backoffice, &broker.bootstrap(), otlp, ""), ENV).await;
    let unsampled = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00");
    assert_eq!(v.send("GET", MC, "/pratiche/1", &[("traceparent", &unsampled)], b"").await.status, 200);
    let tp = backoffice.last()["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert!(tp.starts_with(&format!("00-{CALLER_TRACE}-")) && tp.ends_with("-00"), "{tp}");
    // A trace varco starts (no traceparent, or a malformed one) is kept.
    let r = v.send("GET", MC, "/pratiche/2", &[("traceparent", "00-garbage-01")], b"").await;
    assert_eq!(r.status, 200);
    let tp = backoffice.last()["headers"]["traceparent"].as_str().unwrap().to_owned();
    let own_trace = tp.split('-').nth(1).unwrap().to_owned();
    assert!(tp.ends_with("-01") && own_trace != CALLER_TRACE, "{tp}");
    let kept = trace_spans(otlp, &own_trace, &["GET c_e783/pratiche"], Duration::from_secs(10)).await;
    assert_eq!(find(&kept, "GET c_e783/pratiche")["parent_span_id"], "", "a root span");
    // The problem's trace id is the trace's.
    let r = v.send("GET", MC, "/nowhere", &[], b"").await;
    assert_eq!(r.status, 404);
    let problem_trace = r.json["trace_id"].as_str().unwrap().to_owned();
    let t = trace_spans(otlp, &problem_trace, &["GET c_e783"], Duration::from_secs(10)).await;
    assert_eq!(find(&t, "GET c_e783")["attributes"]["varco.problem"], "no-route");
    assert!(spans(otlp).await["spans"].as_array().unwrap().iter().all(|s| s["trace_id"] != CALLER_TRACE));
    drop(v);

    // Ratio 0: nothing recorded, ids still passed on with the flag off.
    let v = Varco::start_with_env(
        &config(&hook, &backoffice, &broker.bootstrap(), otlp, ", sampler: traceidratio, ratio: 0"),
        ENV,
    )
    .await;
    let before = spans(otlp).await["spans"].as_array().unwrap().len();
    for i in 0..20 {
        assert_eq!(v.get(MC, &format!("/pratiche/{i}")).await.status, 200);
    }
    let tp = backoffice.last()["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert!(tp.ends_with("-00"), "{tp}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(spans(otlp).await["spans"].as_array().unwrap().len(), before);
}

/// A collector that refuses, stalls or is gone: every request is answered as usual, and the
/// spans lost are counted, never waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_down_or_slow_costs_requests_nothing() {
    let broker = Broker::start(TOPICS, 1).await;
    let (otlp, receiver) = receiver().await;
    let hook = Backend::start("bari-hook").await;
    let backoffice = Backend::start("macerata-pratiche").await;
    let cfg = config(&hook, &backoffice, &broker.bootstrap(), otlp, ", queue_size: 4, batch_size: 2, timeout: 300ms");
    let v = Varco::start_with_env(&cfg, ENV).await;
    let control = varco_tests::Client::new(otlp);
    // Refusing: exports fail, requests do not.
    control.send("POST", "localhost", "/_control/mode", &[], br#"{"status": 503}"#).await;
    for i in 0..10 {
        assert_eq!(v.get(MC, &format!("/pratiche/{i}")).await.status, 200);
    }
    // Stalling past the export timeout, with more spans than the queue holds: dropped.
    control.send("POST", "localhost", "/_control/mode", &[], br#"{"status": 200, "delay": 3}"#).await;
    let paths: Vec<String> = (0..200).map(|i| format!("/pratiche/{i}")).collect();
    for r in futures::future::join_all(paths.iter().map(|p| v.get(MC, p))).await {
        assert_eq!(r.status, 200);
    }
    // Gone.
    drop(receiver);
    for i in 0..10 {
        assert_eq!(v.get(MC, &format!("/pratiche/{i}")).await.status, 200);
    }
    let counted = |m: &str, outcome: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(&format!("varco_tracing_spans_total{{outcome=\"{outcome}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = v.metrics().await;
        if (counted(&m, "failed") > 0 && counted(&m, "dropped") > 0) || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(counted(&m, "failed") > 0, "{m}");
    assert!(counted(&m, "dropped") > 0, "{m}");
    assert!(v.log_text().contains("the collector did not take a batch of spans"), "{}", v.log_text());
}
