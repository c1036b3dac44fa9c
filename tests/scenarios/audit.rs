//! The audit trail end to end: the real varco keeps a record of each call of an audited route,
//! chained and signed with the ente's key; `varco audit verify` (an independent process
//! reading the files) finds a modified, a deleted and an inserted record, and a torn tail after
//! a SIGKILL is recovered, not reported as tampering; `varco audit query` exports CSV.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use std::path::{Path, PathBuf};
use std::time::Duration;
use varco_tests::{api_key_hash, Backend, Jose, Varco, LISTENERS};

const MC: &str = "macerata.example.it";
const KEY: &str = "ufficio-0123456789abcdef0123456789abcdef";

fn cli(v: &Varco, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(Varco::bin())
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(&v.config)
        .args(["--tenant", "c_e783"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn log_file(v: &Varco) -> PathBuf {
    let dir = v.dir.join("audit/c_e783");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.pop().unwrap()
}

fn rewrite(path: &Path, f: impl Fn(Vec<String>) -> Vec<String>) {
    let lines: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect();
    std::fs::write(path, f(lines).iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

#[tokio::test]
async fn calls_are_kept_chained_and_signed_and_tampering_is_found() {
    let jose = Jose::new();
    jose.keygen("c_e783-2026", "ES256").await;
    let bo = Backend::start("anagrafe").await;
    let cfg = format!(
        r#"server: {{audit: {{dir: "{{DIR}}/audit", checkpoint_every: 3}}}}
{LISTENERS}tenants:
  - id: c_e783
    name: Comune di Macerata
    hosts: [{MC}]
    keys: [{{kid: c_e783-2026, private_key: {{file: "{dir}/c_e783-2026.pem"}}}}]
    api_keys: [{{name: ufficio-anagrafe, hash: "{hash}"}}]
    upstreams:
      anagrafe: {{servers: ["{bo}"]}}
    routes:
      - {{name: anagrafe, path: "/anagrafe/{{*rest}}", methods: [GET], access: {{api_key: {{}}}}, to: {{upstream: anagrafe}}, audit: true}}
      - {{name: pubblica, path: /pubblica, methods: [GET], access: public, to: {{upstream: anagrafe}}}}
"#,
        dir = jose.dir.display(),
        hash = api_key_hash(KEY),
        bo = bo.addr,
    );
    let mut v = Varco::start(&cfg).await;
    let mut request_ids = Vec::new();
    for i in 0..5 {
        let r = v.send("GET", MC, &format!("/anagrafe/residenti/{i}"), &[("x-api-key", KEY)], b"").await;
        assert_eq!(r.status, 200);
        request_ids.push(r.header("x-request-id").unwrap().to_owned());
    }
    assert_eq!(v.get(MC, "/anagrafe/residenti/9").await.status, 401, "refused calls are kept too");
    assert_eq!(v.get(MC, "/pubblica").await.status, 200, "a route without audit keeps nothing");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = v.metrics().await;
    let written = metrics.lines().find_map(|l| l.strip_prefix("varco_audit_records_written_total ")).unwrap_or("0");
    assert!(written.trim().parse::<u64>().unwrap() >= 6, "{metrics}");
    assert!(metrics.contains("varco_audit_records_dropped_total 0"), "{metrics}");

    // A crash: whatever was being written is torn; nothing before it is lost.
    v.signal(9);
    v.wait_exit(Duration::from_secs(5)).await;
    let file = log_file(&v);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"seq\":99,\"prev\":\"0f");
    std::fs::write(&file, &text).unwrap();
    let (code, out) = cli(&v, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("c_e783: 6 records") && out.contains("signatures checked"), "{out}");
    assert!(out.contains("torn last line"), "{out}");

    // varco starts again on the same trail: the torn line is cut, the chain goes on.
    v.restart().await;
    assert_eq!(v.send("GET", MC, "/anagrafe/famiglie/1", &[("x-api-key", KEY)], b"").await.status, 200);
    // The record is written by the trail's own thread, right after the answer.
    let mut waited = 0;
    while cli(&v, &["query", "--route", "anagrafe"]).1.lines().count() < 7 {
        assert!(waited < 50, "the record of the last call was not written: {}", v.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    v.signal(15); // SIGTERM: the drain syncs the trail and signs a last checkpoint
    v.wait_exit(Duration::from_secs(10)).await;
    let (code, out) = cli(&v, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("7 records") && !out.contains("torn"), "{out}\n{}", v.log_text());

    // What was kept: who, what, outcome, ids; never the key.
    let (_, csv) = cli(&v, &["query", "--route", "anagrafe", "--csv"]);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 8, "{csv}");
    assert!(rows[1].contains(",inbound,anagrafe,GET,200,") && rows[1].contains(",ufficio-anagrafe,"), "{csv}");
    assert!(rows.iter().any(|r| r.contains(&request_ids[2])), "{csv}");
    assert!(rows.iter().any(|r| r.contains(",GET,401,")), "{csv}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains(KEY));
    let (_, jsonl) = cli(&v, &["query", "--caller", "ufficio-anagrafe"]);
    assert_eq!(jsonl.lines().count(), 6, "{jsonl}");

    // Tampering: a changed byte, a removed record, a record put in — each named.
    let file = log_file(&v);
    let pristine = std::fs::read_to_string(&file).unwrap();
    rewrite(&file, |mut l| {
        l[1] = l[1].replace("\"status\":200", "\"status\":404");
        l
    });
    let (code, out) = cli(&v, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seq 2 was modified"), "{out}");
    std::fs::write(&file, &pristine).unwrap();
    rewrite(&file, |mut l| {
        l.remove(2);
        l
    });
    let (code, out) = cli(&v, &["verify"]);
    assert_eq!(code, 1);
    assert!(out.contains("seq 3 was deleted"), "{out}");
    std::fs::write(&file, &pristine).unwrap();
    rewrite(&file, |mut l| {
        let copy = l[0].clone();
        l.insert(4, copy);
        l
    });
    let (code, out) = cli(&v, &["verify"]);
    assert_eq!(code, 1);
    assert!(out.contains("seq 1 was inserted"), "{out}");
    std::fs::write(&file, &pristine).unwrap();
    assert_eq!(cli(&v, &["verify"]).0, 0);
}
