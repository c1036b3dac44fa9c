//! Measurements for `bench/events.sh` (ignored tests, run in release mode): the outbox alone,
//! and a raw rdkafka producer with the relay's settings, the reference of the relay row.

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use std::time::Instant;

    fn env(k: &str) -> Option<String> {
        std::env::var(k).ok()
    }

    /// Appends from 64 concurrent tasks (like 64 connections) for 5 s; prints events/s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[ignore = "a measurement, run by bench/events.sh"]
    async fn outbox_append_throughput() {
        let Some(dir) = env("BENCH_OUTBOX_DIR") else { return };
        let size: usize = env("BENCH_EVENT_BYTES").and_then(|s| s.parse().ok()).unwrap_or(600);
        let ob = crate::outbox::Outbox::open(std::path::Path::new(&dir), 64 << 20, 8 << 30).unwrap();
        let payload = Bytes::from(vec![b'x'; size]);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (ob, p) = (ob.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed().as_secs() < 5 {
                    ob.append(vec![p.clone()]).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        println!(
            "outbox-append: {:.0} events/s (64 concurrent single-event appends, {size} B)",
            total as f64 / start.elapsed().as_secs_f64()
        );
    }

    /// Produces N copies of the relay's record for one event (binary mode: the same `ce_*`
    /// headers, key and value) with the relay's producer settings; prints records/s once all
    /// are acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[ignore = "a measurement, run by bench/events.sh"]
    async fn raw_producer_throughput() {
        let (Some(brokers), Some(topic)) = (env("BENCH_KAFKA"), env("BENCH_TOPIC")) else { return };
        let n: usize = env("BENCH_RECORDS").and_then(|s| s.parse().ok()).unwrap_or(100_000);
        let event: cloudevents::Event =
            serde_json::from_str(&std::fs::read_to_string(env("BENCH_EVENT_FILE").unwrap()).unwrap()).unwrap();
        let k: varco_config::KafkaConfig = serde_json::from_value(serde_json::json!({
            "brokers": brokers, "topic": topic, "layout": "shared", "create_partitions": 0,
            "subject_key": {"env": "UNUSED"},
        }))
        .unwrap();
        // The relay's own encoding: keyed hash, sealed subject.
        let codec = crate::kafka::KafkaCodec::new(&k, &[1u8; 32], &crate::contract::Registry::load().unwrap()).unwrap();
        let out = codec.encode(event).unwrap();
        let p = crate::kafka::producer(&k).unwrap();
        let start = Instant::now();
        let mut pending = futures::stream::FuturesUnordered::new();
        use futures::StreamExt;
        for i in 0..n {
            let _ = i;
            loop {
                match p.send_result(out.future_record(&[])) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    Err(_) => {
                        pending.next().await;
                    }
                }
            }
            if pending.len() > 50_000 {
                pending.next().await;
            }
        }
        while let Some(r) = pending.next().await {
            assert!(matches!(r, Ok(Ok(_))), "a record was not acknowledged");
        }
        println!("raw-producer: {:.0} records/s ({n} records)", n as f64 / start.elapsed().as_secs_f64());
    }
}
