//! The admin CLI end to end against the real process: status, subscriptions added and removed,
//! a dead letter replayed and another dropped, an API key issued and revoked through the
//! configuration and `config reload`, the admin token required — and every change a record of
//! the audit trail.
#![allow(clippy::unwrap_used)] // scenario helpers: a panic is the failure message

use serde_json::{json, Value};
use std::time::Duration;
use varco_tests::{api_key_hash, Backend, Mode, Varco, LISTENERS};

const MC: &str = "macerata.example.it";
const KEY: &str = "anagrafe-0123456789abcdef0123456789abcdef";
const TOKEN: &str = "admin-token-0123456789abcdef0123456789";
const RESIDENZA: &str = "it.varco.anagrafe.residenza.cambiata.v1";

fn config(extra_key: &str) -> String {
    format!(
        r#"server: {{events: {{dir: "{{DIR}}/events"}}, audit: {{dir: "{{DIR}}/audit"}}}}
{LISTENERS}tenants:
  - id: c_e783
    name: Macerata
    hosts: [{MC}]
    api_keys: [{{name: anagrafe, hash: "{key}"}}{extra_key}]
    routes:
      - {{name: events, path: /events, methods: [POST], access: {{api_key: {{}}}}, to: {{adapter: {{kind: events}}}}}}
    events:
      readers: [{{tenant: c_a662, types: [{RESIDENZA}]}}]
  - id: c_a662
    name: Bari
    hosts: [bari.example.it]
"#,
        key = api_key_hash(KEY),
    )
    .replace("{LISTENERS}", LISTENERS)
    .replace(
        "admin: {address: \"127.0.0.1:{ADMIN}\"}",
        "admin: {address: \"127.0.0.1:{ADMIN}\", token: {env: VARCO_ADMIN_TOKEN}}",
    )
}

/// `varco admin ARGS` with the token in the environment: exit code and output.
fn admin(v: &Varco, args: &[&str], token: bool) -> (i32, String) {
    let mut cmd = std::process::Command::new(Varco::bin());
    cmd.arg("admin").args(["--admin", &format!("127.0.0.1:{}", v.admin)]).args(args);
    if token {
        cmd.env("VARCO_ADMIN_TOKEN", TOKEN);
    } else {
        cmd.env_remove("VARCO_ADMIN_TOKEN");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/enti/c_e783/anagrafe", "type": RESIDENZA, "subject": "RSSMRA80A01H501U",
           "data": {"codiceFiscale": "RSSMRA80A01H501U", "comuneProvenienza": "E783", "comuneDestinazione": "A662", "dataDecorrenza": "2026-11-20"}})
}

async fn publish(v: &Varco, key: &str, id: &str) -> u16 {
    let h = [("content-type", "application/cloudevents+json"), ("x-api-key", key)];
    v.send("POST", MC, "/events", &h, event(id).to_string().as_bytes()).await.status
}

/// Waits until the subscription has `n` dead letters; their ids.
async fn dead_letters(v: &Varco, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let (code, out) =
            admin(v, &["--json", "dead-letters", "list", "--tenant", "c_a662", "--subscription", "anagrafe"], true);
        if code == 0 {
            let v: Value = serde_json::from_str(&out).unwrap();
            let ids: Vec<String> =
                v["dead_letters"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect();
            if ids.len() == n {
                return ids;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {n} dead letters: {}", v.log_text());
}

// The CLI runs as a blocking child process: the receiver (on this runtime) needs a thread of
// its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_manages_subscriptions_dead_letters_and_keys_and_each_change_is_audited() {
    let hook = Backend::start("bari-hook").await;
    hook.set_mode(Mode::Status(500));
    let mut v = Varco::start_with_env(
        &config(""),
        &[("VARCO_ADMIN_TOKEN", TOKEN), ("BARI_HOOK_SECRET", "hook-secret-0123456789abcdef")],
    )
    .await;

    let (code, out) = admin(&v, &["status"], true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ready: true"), "{out}");
    let (code, out) = admin(&v, &["config", "show"], false);
    assert_eq!(code, 1, "the admin token is required: {out}");
    assert!(out.contains("401"), "{out}");

    // A subscription added at run time, shown in the table.
    let sub = json!({"name": "anagrafe", "types": [RESIDENZA], "sources": ["c_e783"],
        "webhook": {"url": format!("http://{}/hook", hook.addr), "secret": {"env": "BARI_HOOK_SECRET"}}, "backoff": "100ms", "max_attempts": 1});
    let (code, out) = admin(&v, &["subscriptions", "add", "--tenant", "c_a662", &sub.to_string()], true);
    assert_eq!(code, 0, "{out}");
    let (_, out) = admin(&v, &["subscriptions", "list"], true);
    let row = out.lines().find(|l| l.starts_with("c_a662")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("anagrafe") && row.contains("admin") && row.contains(RESIDENZA), "{out}");

    // The receiver fails: a dead letter; repaired: replayed and delivered.
    assert_eq!(publish(&v, KEY, "ev-1").await, 202);
    let ids = dead_letters(&v, 1).await;
    assert_eq!(ids, ["ev-1"]);
    let (_, out) = admin(&v, &["dead-letters", "list", "--tenant", "c_a662", "--subscription", "anagrafe"], true);
    assert!(out.starts_with("ID") && out.contains("ev-1") && out.contains(RESIDENZA), "{out}");
    let (_, out) =
        admin(&v, &["dead-letters", "show", "--tenant", "c_a662", "--subscription", "anagrafe", "ev-1"], true);
    assert!(out.contains("\"attempts\""), "{out}");
    hook.set_mode(Mode::Echo);
    let (code, out) =
        admin(&v, &["dead-letters", "replay", "--tenant", "c_a662", "--subscription", "anagrafe", "ev-1"], true);
    assert_eq!(code, 0, "{out}\n{}", v.log_text());
    assert!(hook.requests().iter().any(|r| r["body"].as_str().unwrap_or("").contains("ev-1")));
    dead_letters(&v, 0).await;
    // Another one, dropped.
    hook.set_mode(Mode::Status(500));
    assert_eq!(publish(&v, KEY, "ev-2").await, 202);
    dead_letters(&v, 1).await;
    let (code, out) =
        admin(&v, &["dead-letters", "drop", "--tenant", "c_a662", "--subscription", "anagrafe", "ev-2"], true);
    assert_eq!(code, 0, "{out}");
    dead_letters(&v, 0).await;
    let (code, _) = admin(&v, &["subscriptions", "remove", "--tenant", "c_a662", "--name", "anagrafe"], true);
    assert_eq!(code, 0);

    // An API key: made by `varco apikey`, put in the file, in force after a reload; revoked
    // by taking it out and reloading.
    let out = std::process::Command::new(Varco::bin()).args(["apikey", "--name", "nuova-app"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text.lines().find_map(|l| l.strip_prefix("key: ")).unwrap().to_owned();
    let entry = text.lines().find_map(|l| l.strip_prefix("api_keys entry: ")).unwrap().to_owned();
    assert_eq!(publish(&v, &key, "ev-3").await, 401);
    v.rewrite_config(&config(&format!(", {entry}")));
    let (code, out) = admin(&v, &["config", "reload"], true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("generation 2"), "{out}");
    assert_eq!(publish(&v, &key, "ev-4").await, 202);
    v.rewrite_config(&config(""));
    admin(&v, &["config", "reload"], true);
    assert_eq!(publish(&v, &key, "ev-5").await, 401);

    // Every change is in the audit trail: the ente's, or varco's own for the reloads.
    v.signal(15);
    v.wait_exit(Duration::from_secs(10)).await;
    let query = |tenant: &str| {
        let out = std::process::Command::new(Varco::bin())
            .args(["audit", "query", "--tenant", tenant, "--config"])
            .arg(&v.config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bari = query("c_a662");
    for (method, route) in [
        ("POST", "admin:/admin/events/subscriptions"),
        ("POST", "admin:/admin/events/dead-letters/redrive"),
        ("DELETE", "admin:/admin/events/dead-letters"),
        ("DELETE", "admin:/admin/events/subscriptions"),
    ] {
        assert!(
            bari.lines()
                .any(|l| l.contains(&format!("\"method\":\"{method}\""))
                    && l.contains(&format!("\"route\":\"{route}\""))),
            "{method} {route} missing: {bari}"
        );
    }
    let own = query("varco");
    assert_eq!(own.lines().filter(|l| l.contains("admin:/admin/reload")).count(), 2, "{own}");
    assert!(!bari.contains(TOKEN) && !own.contains(TOKEN));
}
