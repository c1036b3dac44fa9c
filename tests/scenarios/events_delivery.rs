//! How events reach a subscriber: retries and dead letters (and the admin API over them),
//! subjects delivered side by side with each one's order kept, and subscriptions made at run
//! time.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

#[path = "events_common.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use varco_tests::{Backend, Varco};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_then_dead_lettered() {
    let hook = Backend::start("bari-hook").await;
    hook.set_mode(varco_tests::Mode::Status(503));
    let cfg = config(&hook, None).replace("max_attempts: 100", "max_attempts: 3");
    let v = Varco::start_with_env(&cfg, ENV).await;
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("dl-1", "RSSMRA80A01H501U")).await.status,
        202
    );
    let dead = v.dir.join("events/dead-letter/c_a662.anagrafe.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dead.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&dead).unwrap_or_default();
    let line: Value = serde_json::from_str(text.lines().next().unwrap_or("null")).unwrap();
    assert_eq!(line["event"]["id"], "dl-1");
    assert_eq!(line["attempts"], 3);
    assert!(line["error"].as_str().unwrap().contains("503"));
    assert_eq!(hook.hits(), 3, "attempts");
    // The next event is delivered once the back-office is back.
    hook.set_mode(varco_tests::Mode::Echo);
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("dl-2", "RSSMRA80A01H501U")).await.status,
        202
    );
    let got = deliveries(&hook, 1, Duration::from_secs(10)).await;
    assert_eq!(body_of(&got[0])["id"], "dl-2");
}

/// Deliveries run side by side across subjects, never within one: 400 events over 5 subjects,
/// published in batches, arrive each subject's in publishing order, every one once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_delivery_keeps_each_subjects_order() {
    let hook = Backend::start("bari-hook").await;
    hook.set_mode(varco_tests::Mode::Delay(Duration::from_millis(10)));
    let v = start(&hook, None).await;
    publish_five_subjects(&v, "po").await;
    let got = deliveries(&hook, 400, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 400);
    assert_eq!(assert_side_by_side_in_order(&got, "po", &hook), 5);
}

/// A receiver that refuses an event for good (422) sends it to the dead letters at once,
/// after one attempt, and the events behind it are not held up.
#[tokio::test]
async fn a_refused_event_is_dead_lettered_at_once() {
    let hook = Backend::start("bari-hook").await;
    hook.set_mode(varco_tests::Mode::Status(422));
    let v = Varco::start_with_env(&config(&hook, None), ENV).await;
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("bad-1", "RSSMRA80A01H501U")).await.status,
        202
    );
    let dead = v.dir.join("events/dead-letter/c_a662.anagrafe.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dead.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(&dead).unwrap_or_default();
    let line: Value = serde_json::from_str(text.lines().next().unwrap_or("null")).unwrap();
    assert_eq!((line["event"]["id"].as_str(), line["attempts"].as_u64()), (Some("bad-1"), Some(1)), "{line}");
    assert!(line["error"].as_str().unwrap().contains("422"));
    assert_eq!(hook.hits(), 1, "a permanent refusal is not retried (max_attempts is 100 here)");
    // The dead letters through the admin API: list, show, re-drive (refused again, then taken), drop.
    let admin = |m: &'static str, q: &str| {
        let (c, q) = (v.admin_client.clone(), q.to_owned());
        async move { c.send(m, "localhost", &format!("/admin/events/dead-letters{q}"), &[], b"").await }
    };
    let list = admin("GET", "?tenant=c_a662&subscription=anagrafe").await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.json["dead_letters"][0]["id"], "bad-1");
    assert_eq!(list.json["dead_letters"][0]["attempts"], 1);
    assert_eq!(admin("GET", "?tenant=c_a662&subscription=anagrafe&id=bad-1").await.json["event"]["type"], RESIDENZA);
    admin("POST", "/redrive?tenant=c_a662&subscription=anagrafe&id=bad-1").await.assert_problem(502, "bad-gateway");
    admin("DELETE", "?tenant=c_a662&subscription=anagrafe&id=nope").await.assert_problem(404, "not-found");
    admin("GET", "?tenant=c_a662").await.assert_problem(400, "bad-request");
    hook.set_mode(varco_tests::Mode::Echo);
    let r = admin("POST", "/redrive?tenant=c_a662&subscription=anagrafe&id=bad-1").await;
    assert_eq!(r.status, 200, "{r:?}");
    let got = deliveries(&hook, 1, Duration::from_secs(5)).await;
    assert_eq!(body_of(&got[0])["id"], "bad-1", "re-driven through the webhook");
    assert!(signature_ok(&got[0]), "signed as usual");
    assert_eq!(admin("GET", "?tenant=c_a662&subscription=anagrafe").await.json["dead_letters"], json!([]));
    hook.set_mode(varco_tests::Mode::Status(422));
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("bad-3", "RSSMRA80A01H501U")).await.status,
        202
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin("GET", "?tenant=c_a662&subscription=anagrafe").await.json["dead_letters"] == json!([])
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin("DELETE", "?tenant=c_a662&subscription=anagrafe&id=bad-3").await.json["dropped"], "bad-3");
    assert_eq!(admin("GET", "?tenant=c_a662&subscription=anagrafe").await.json["dead_letters"], json!([]));
    hook.set_mode(varco_tests::Mode::Echo);
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("good-2", "RSSMRA80A01H501U")).await.status,
        202
    );
    // (The hook records the requests it echoes, not the refused ones.)
    let got = deliveries(&hook, 2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(body_of(&got[1])["id"], "good-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_through_the_admin_api() {
    let hook = Backend::start("bari-hook").await;
    let hook2 = Backend::start("bari-hook-2").await;
    let mut v = start(&hook, None).await;
    let admin = |m: &'static str, q: &'static str, body: Value| {
        let c = v.admin_client.clone();
        async move {
            c.send(
                m,
                "localhost",
                &format!("/admin/events/subscriptions{q}"),
                &[("content-type", "application/json")],
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    let sub = json!({"name": "residenze-2", "types": [RESIDENZA], "sources": ["c_e783"],
        "webhook": {"url": format!("http://{}/hook2", hook2.addr), "secret": {"env": "BARI_HOOK_SECRET"}}, "backoff": "100ms"});
    let r = admin("POST", "?tenant=c_a662", sub.clone()).await;
    assert_eq!(r.status, 201, "{r:?}");
    // Deny by default holds for admin-made subscriptions too.
    let mut denied = sub.clone();
    denied["name"] = json!("pratiche");
    denied["types"] = json!([PRATICA]);
    let r = admin("POST", "?tenant=c_a662", denied).await;
    r.assert_problem(422, "invalid-config");
    assert!(r.json["detail"].as_str().unwrap().contains("does not let"), "{r:?}");
    let list = admin("GET", "", Value::Null).await;
    assert!(
        list.json
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["origin"] == "admin" && s["subscription"]["name"] == "residenze-2"),
        "{list:?}"
    );
    // It outlives a restart.
    v.restart().await;
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("adm-1", "RSSMRA80A01H501U")).await.status,
        202
    );
    let got = deliveries(&hook2, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{}", v.log_text());
    assert_eq!(body_of(&got[0])["id"], "adm-1");
    assert_eq!(deliveries(&hook, 1, Duration::from_secs(5)).await.len(), 1, "the configured subscription still works");
    // Removed: no more deliveries there.
    let admin = |m: &'static str, q: &'static str| {
        let c = v.admin_client.clone();
        async move { c.send(m, "localhost", &format!("/admin/events/subscriptions{q}"), &[], b"").await }
    };
    assert_eq!(admin("DELETE", "?tenant=c_a662&name=residenze-2").await.status, 200);
    admin("DELETE", "?tenant=c_a662&name=residenze-2").await.assert_problem(404, "not-found");
    tokio::time::sleep(Duration::from_millis(1500)).await; // the service re-syncs every second
    assert_eq!(
        publish(&v, MC, "application/cloudevents+json", &residenza("adm-2", "RSSMRA80A01H501U")).await.status,
        202
    );
    assert_eq!(deliveries(&hook, 2, Duration::from_secs(10)).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook2.requests().len(), 1, "a removed subscription still delivered");
}
