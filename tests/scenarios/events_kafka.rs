//! Kafka that a consortium can share: topics per ente (and type family), created by varco;
//! subjects that are personal data sealed and keyed by a keyed hash, others in the clear;
//! static group membership; the dead-letter topic; and Kafka-mode delivery side by side across
//! subjects with each subject's order kept. The broker is tansu; its records are read back with
//! an independent client (Python confluent-kafka, which also opens the sealed subjects with the
//! documented derivation).
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

#[path = "events_common.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use varco_tests::Broker;
use varco_tests::{Backend, Varco};

/// Bari's dead letters through the admin API, once there are `n` (or the time is up).
async fn dead_letters(v: &Varco, n: usize, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let list = v
            .admin_client
            .get("localhost", "/admin/events/dead-letters?tenant=c_a662&subscription=anagrafe")
            .await
            .json;
        if list["dead_letters"].as_array().is_some_and(|a| a.len() >= n) || Instant::now() > deadline {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pratica(id: &str, case: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "/enti/c_e783/suap", "type": PRATICA, "subject": case,
        "data": {"idPratica": case, "procedimento": "SCIA", "stato": "accolta", "dataCambio": "2026-11-20T10:00:00Z"}
    })
}

/// Topics one per ente and type family, created by varco on a broker that has none; a
/// personal subject sealed, a case id in the clear, both keyed by the keyed hash; the
/// subscription's consumer is a static member; a refused event lands in Bari's dead-letter
/// topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topics_per_ente_and_family_keys_and_dead_letter_topic() {
    let broker = Broker::start(&[], 1).await;
    let hook = Backend::start("bari-hook").await;
    hook.set_mode(varco_tests::Mode::Status(410)); // Bari's back-office refuses for good
    let cfg = config(&hook, Some(&broker.bootstrap()))
        .replace("create_partitions: 0", "create_partitions: 2, layout: ente_family, instance_id: varco-a")
        .replace(&format!("types: [{RESIDENZA}]}}]"), &format!("types: [{RESIDENZA}, {PRATICA}]}}]"))
        .replace(&format!("          types: [{RESIDENZA}]\n"), &format!("          types: [{RESIDENZA}, {PRATICA}]\n"));
    let v = Varco::start_with_env(&cfg, ENV).await;
    let r = publish(&v, MC, "application/cloudevents+json", &residenza("fam-1", "RSSMRA80A01H501U")).await;
    assert_eq!(r.status, 202, "{r:?}");
    let r = publish(&v, MC, "application/cloudevents+json", &pratica("fam-2", "SUAP-2026-0042")).await;
    assert_eq!(r.status, 202, "{r:?}");

    let anagrafe = broker.consume_with_key("varco.events.c_e783.anagrafe", 1, Some(SUBJECT_KEY)).await;
    assert_eq!(anagrafe.len(), 1, "{anagrafe:?}\n{}", v.log_text());
    let a = &anagrafe[0];
    assert!(a["headers"].get("ce_subject").is_none(), "{a}");
    assert_eq!(a["subject"], "RSSMRA80A01H501U");
    assert_eq!(a["key"], a["subject_key"]);
    let suap = broker.consume_with_key("varco.events.c_e783.pratica", 1, Some(SUBJECT_KEY)).await;
    assert_eq!(suap.len(), 1, "{suap:?}");
    let p = &suap[0];
    // A case id is no personal data (its contract says so): in the clear, still hashed as key.
    assert_eq!(p["headers"]["ce_subject"], "SUAP-2026-0042", "{p}");
    assert!(p["headers"].get("varco_sealed_subject").is_none(), "{p}");
    assert_eq!(p["key"], p["subject_key"]);

    // Both events are refused for good: the file store the admin API works on has them ...
    let list = dead_letters(&v, 2, Duration::from_secs(30)).await;
    assert_eq!(list["dead_letters"].as_array().map(Vec::len), Some(2), "{list}");
    // ... and Bari's dead-letter topic holds them too, sealed as usual.
    let dead = broker.consume_with_key("varco.events.c_a662.dead-letter", 2, Some(SUBJECT_KEY)).await;
    assert_eq!(dead.len(), 2, "{dead:?}\n{}", v.log_text());
    let by_id: HashMap<&str, &Value> = dead.iter().map(|d| (d["headers"]["ce_id"].as_str().unwrap(), d)).collect();
    let d = by_id["fam-1"];
    assert_eq!(d["headers"]["varco_dead_letter_tenant"], "c_a662");
    assert_eq!(d["headers"]["varco_dead_letter_subscription"], "anagrafe");
    assert_eq!(d["headers"]["varco_dead_letter_attempts"], "1");
    assert!(d["headers"]["varco_dead_letter_error"].as_str().unwrap().contains("410"), "{d}");
    assert_eq!(d["subject"], "RSSMRA80A01H501U");
    assert!(d["headers"].get("ce_subject").is_none(), "{d}");
    assert_eq!(by_id["fam-2"]["headers"]["ce_subject"], "SUAP-2026-0042");

    let topics: HashSet<String> = broker.topics().await.into_iter().collect();
    for t in ["varco.events.c_e783.anagrafe", "varco.events.c_e783.pratica", "varco.events.c_a662.dead-letter"] {
        assert!(topics.contains(t), "{t} missing from {topics:?}");
    }
    assert!(!topics.contains("varco.events"), "no shared topic in this layout: {topics:?}");

    // Delivered events carry the subject again (opened on the way out); the subscription's
    // consumer joined as a static member (`instance_id`), which the broker took. (tansu does
    // not answer DescribeGroups, so the member's id is checked in varco-events' unit tests.)
    hook.set_mode(varco_tests::Mode::Echo);
    let r = publish(&v, MC, "application/cloudevents+json", &residenza("fam-3", "VRDLGU75B02E783X")).await;
    assert_eq!(r.status, 202);
    let got = deliveries(&hook, 1, Duration::from_secs(20)).await;
    let e = body_of(&got[0]);
    assert_eq!((e["id"].as_str(), e["subject"].as_str()), (Some("fam-3"), Some("VRDLGU75B02E783X")), "{e}");
    assert!(signature_ok(&got[0]));
}

/// A record whose subject was sealed with another key (another consortium, or an instance
/// with the wrong `subject_key`) is never delivered without its subject and never dropped: it
/// goes to the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_sealed_with_another_key_goes_to_the_dead_letters() {
    let broker = Broker::start(TOPICS, 1).await;
    let hook = Backend::start("bari-hook").await;
    let cfg = config(&hook, Some(&broker.bootstrap()));
    let other = [("BARI_HOOK_SECRET", SECRET), ("VARCO_SUBJECT_KEY", "another-consortium-key-0123456789abcdef")];
    let mut v = Varco::start_with_env(&cfg, &other).await;
    let r = publish(&v, MC, "application/cloudevents+json", &residenza("alien-1", "RSSMRA80A01H501U")).await;
    assert_eq!(r.status, 202);
    // Bari's subscription (same key) delivers it; then varco restarts with the right key.
    deliveries(&hook, 1, Duration::from_secs(20)).await;
    v.signal(15);
    assert_eq!(v.wait_exit(Duration::from_secs(15)).await, Some(0));
    let v = Varco::start_with_env(&cfg, ENV).await;
    // (The subscription's worker starts within the event service's first tick after ready.)
    let replay = "/admin/events/replay?tenant=c_a662&subscription=anagrafe&from_time=2020-01-01T00:00:00Z";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut r = v.admin_client.send("POST", "localhost", replay, &[], b"").await;
    while r.status != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        r = v.admin_client.send("POST", "localhost", replay, &[], b"").await;
    }
    assert_eq!(r.status, 200, "{r:?}");
    let list = dead_letters(&v, 1, Duration::from_secs(20)).await;
    assert_eq!(list["dead_letters"][0]["id"], "alien-1", "{list}\n{}", v.log_text());
    assert!(list["dead_letters"][0]["error"].as_str().unwrap().contains("sealed subject"), "{list}");
    assert_eq!(hook.requests().len(), 1, "delivered once, with its subject, never without");
}

/// Kafka mode delivers different subjects side by side and each subject's events in order:
/// 400 events over 5 subjects, every one once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_delivery_keeps_each_subjects_order() {
    let broker = Broker::start(TOPICS, 3).await;
    let hook = Backend::start("bari-hook").await;
    hook.set_mode(varco_tests::Mode::Delay(Duration::from_millis(10)));
    let v = start(&hook, Some(&broker.bootstrap())).await;
    publish_five_subjects(&v, "ko").await;
    let got = deliveries(&hook, 400, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 400, "{}", v.log_text());
    assert_eq!(assert_side_by_side_in_order(&got, "ko", &hook), 5);
    assert_eq!(lag_reaches(&v, 0).await, Some(0), "every offset committed");
}

/// The cluster: two instances of varco share one tansu broker and one Redis, behind a
/// balancer that spreads publishers over both. Bari's subscription is one consumer group
/// across the two: every event, whichever instance took it, reaches Bari's webhook once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_subscription_on_one_broker() {
    let broker = Broker::start(TOPICS, 3).await;
    let redis = varco_tests::Redis::start().await;
    let hook = Backend::start("bari-hook").await;
    let cfg = format!("redis: {{url: \"{}\"}}\n{}", redis.url(), config(&hook, Some(&broker.bootstrap())));
    let a = Varco::start_with_env(&cfg, ENV).await;
    let b = Varco::start_with_env(&cfg, ENV).await;
    // Let the group settle on its two members before the traffic starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Forty citizens: their keys spread over the three partitions.
    for i in 0..40 {
        let v = if i % 2 == 0 { &a } else { &b };
        let cf = format!("RSSMRA80A01H{i:03}U");
        let r = publish(v, MC, "application/cloudevents+json", &residenza(&format!("ha-{i}"), &cf)).await;
        assert_eq!(r.status, 202, "{r:?}");
    }
    let got = deliveries(&hook, 40, Duration::from_secs(60)).await;
    // A little longer: a second delivery of anything would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_all = hook.requests();
    let ids: Vec<String> = got_all.iter().map(|r| body_of(r)["id"].as_str().unwrap_or("").to_owned()).collect();
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 40, "{} deliveries\n{}\n{}", got.len(), a.log_text(), b.log_text());
    assert_eq!(ids.len(), 40, "an event was delivered twice: {ids:?}");
    // Both instances delivered a share (the group split the partitions between them).
    let delivered = |v: &Varco| {
        let v = v.admin_client.clone();
        async move {
            let m = String::from_utf8_lossy(&v.get("localhost", "/metrics").await.body).into_owned();
            m.lines()
                .filter(|l| l.starts_with("varco_events_delivered_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        }
    };
    let (da, db) = (delivered(&a).await, delivered(&b).await);
    assert_eq!(da + db, 40);
    assert!(
        da > 0 && db > 0,
        "one instance delivered everything: {da} + {db}\nA:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    assert_eq!(lag_reaches(&a, 0).await, Some(0));
    drop(redis);
}
