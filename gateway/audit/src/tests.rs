//! The trail on disk: written, verified, tampered with in each way, torn by a crash.

use super::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use varco_auth::{KeySet, SigningKey};

fn keys() -> Arc<KeySet> {
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ring::rand::SystemRandom::new()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    Arc::new(KeySet::new(vec![SigningKey::from_pem("c_e783-audit", pem.as_bytes(), None).unwrap()]).unwrap())
}

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!("varco-audit-{}-{}", std::process::id(), fastrand_like()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fastrand_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn record(i: u64) -> Record {
    Record {
        ts: now(),
        direction: Some(Direction::Inbound),
        route: if i.is_multiple_of(2) { "anpr".into() } else { "status".into() },
        method: "GET".into(),
        status: 200,
        latency_ms: i,
        caller: Some(format!("client-{}", i % 3)),
        purpose_id: Some("purpose-1".into()),
        trace_id: format!("{i:032x}"),
        request_id: format!("r{i}"),
        ..Default::default()
    }
}

/// A trail of `n` records of ente c_e783, a checkpoint every 4; its folder and public keys.
fn written(n: u64) -> (PathBuf, serde_json::Value) {
    let dir = tmp();
    let k = keys();
    let cfg = TrailConfig {
        dir: dir.clone(),
        checkpoint_every: 4,
        checkpoint_interval: Duration::from_secs(3600),
        retention_days: HashMap::new(),
        sync_interval: Duration::ZERO,
    };
    let t = Trail::open(cfg).unwrap();
    for i in 1..=n {
        t.append("c_e783", record(i), Some(k.clone()));
    }
    t.flush();
    (dir.join("c_e783"), serde_json::from_slice(&k.jwks).unwrap())
}

fn log_file(dir: &Path) -> PathBuf {
    crate::chain::files(dir).pop().unwrap()
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(log_file(dir)).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    std::fs::write(log_file(dir), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

#[test]
fn a_written_trail_verifies_with_its_checkpoints() {
    let (dir, jwks) = written(10);
    let r = verify(&dir, "c_e783", Some(&jwks));
    assert_eq!(r.findings, vec![]);
    assert_eq!((r.records, r.first_seq), (10, Some(1)));
    assert!(r.checkpoints >= 3, "{r:?}");
    assert!(!r.torn_tail);
    // Another ente's keys do not verify this ente's checkpoints.
    let other: serde_json::Value = serde_json::from_slice(&keys().jwks).unwrap();
    assert!(matches!(verify(&dir, "c_e783", Some(&other)).findings[0], Finding::BadCheckpoint { .. }));
    // Nor does the signature count for another ente's name.
    assert!(!verify(&dir, "c_a662", Some(&jwks)).findings.is_empty());
}

#[test]
fn a_modified_byte_is_found_and_named() {
    let (dir, jwks) = written(6);
    let mut l = lines(&dir);
    l[2] = l[2].replace("\"status\":200", "\"status\":500");
    write_lines(&dir, &l);
    let f = verify(&dir, "c_e783", Some(&jwks)).findings;
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(matches!(&f[0], Finding::Modified { seq: 3, .. }), "{f:?}");
}

#[test]
fn a_deleted_and_an_inserted_line_are_found() {
    let (dir, jwks) = written(8);
    let mut l = lines(&dir);
    l.remove(4);
    write_lines(&dir, &l);
    let f = verify(&dir, "c_e783", Some(&jwks)).findings;
    assert!(matches!(&f[..], [Finding::Deleted { from: 5, to: 5, .. }]), "{f:?}");

    let (dir, jwks) = written(8);
    let mut l = lines(&dir);
    let copy = l[1].clone();
    l.insert(6, copy);
    write_lines(&dir, &l);
    let f = verify(&dir, "c_e783", Some(&jwks)).findings;
    assert!(matches!(&f[..], [Finding::Inserted { seq: 2, .. }]), "{f:?}");
}

#[test]
fn a_rewritten_chain_fails_its_checkpoints() {
    let (dir, jwks) = written(6);
    // Change record 2 and recompute every hash after it, as a forger with write access would.
    let old = lines(&dir);
    let mut prev = String::new();
    let mut out = Vec::new();
    for (i, text) in old.iter().enumerate() {
        let mut line: Line = serde_json::from_str(text).unwrap();
        if i == 1 {
            if let Body::Call(r) = &mut line.body {
                r.caller = Some("someone-else".into());
            }
        }
        if i > 0 {
            line.prev = prev.clone();
        }
        let (t, h) = crate::chain::seal(line.seq, &line.prev, &line.body).unwrap();
        prev = h;
        out.push(t.trim_end().to_owned());
    }
    write_lines(&dir, &out);
    let f = verify(&dir, "c_e783", None).findings;
    assert!(f.is_empty(), "without keys only the chain is checked, and it holds: {f:?}");
    let f = verify(&dir, "c_e783", Some(&jwks)).findings;
    assert!(f.iter().any(|x| matches!(x, Finding::BadCheckpoint { .. })), "{f:?}");
}

#[test]
fn a_torn_tail_after_a_crash_is_cut_and_the_chain_goes_on() {
    let (dir, jwks) = written(5);
    let mut text = std::fs::read_to_string(log_file(&dir)).unwrap();
    text.push_str("{\"seq\":42,\"prev\":\"ab");
    std::fs::write(log_file(&dir), &text).unwrap();
    let r = verify(&dir, "c_e783", Some(&jwks));
    assert!(r.torn_tail);
    assert_eq!(r.findings, vec![], "a crash is not tampering");
    // The next start cuts the torn line and continues the chain.
    let k = keys();
    let t = Trail::open(TrailConfig {
        dir: dir.parent().unwrap().to_path_buf(),
        checkpoint_every: 100,
        checkpoint_interval: Duration::from_secs(3600),
        retention_days: HashMap::new(),
        sync_interval: Duration::from_millis(20),
    })
    .unwrap();
    t.append("c_e783", record(6), None);
    t.flush();
    let r = verify(&dir, "c_e783", None);
    assert_eq!((r.findings.clone(), r.torn_tail), (vec![], false), "{r:?}");
    assert_eq!(r.records, 6);
    drop(k);
}

#[test]
fn queries_filter_and_export_csv() {
    let (dir, _) = written(9);
    let anpr = query(&dir, &Filter { route: Some("anpr".into()), ..Default::default() });
    assert_eq!(anpr.len(), 4);
    let by =
        query(&dir, &Filter { caller: Some("client-1".into()), route: Some("status".into()), ..Default::default() });
    assert!(by.iter().all(|(_, r)| r.caller.as_deref() == Some("client-1") && r.route == "status"));
    assert!(query(&dir, &Filter { since: Some("2999-01-01T00:00:00Z".into()), ..Default::default() }).is_empty());
    let csv = to_csv(&anpr);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 5);
    assert!(rows[0].starts_with("seq,ts,direction,route"));
    assert!(rows[1].contains(",inbound,anpr,GET,200,"));
}
