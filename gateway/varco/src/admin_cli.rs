//! `varco admin …`: the admin API from the command line, with its token (`--token-file` or
//! `VARCO_ADMIN_TOKEN`). Human tables by default, `--json` for scripts (the API's own JSON).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Liveness, readiness and the configuration generation in force.
    Status,
    /// The running configuration (secrets as references), or reload it from its file.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Event subscriptions (those of the config file and those added here).
    Subscriptions {
        #[command(subcommand)]
        action: SubscriptionAction,
    },
    /// A subscription's dead letters: list, show one, deliver again, drop.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Subcommand)]
pub enum ConfigAction {
    Show,
    /// Re-read the file: the new generation, or every error (the old one keeps serving).
    Reload,
}

#[derive(Subcommand)]
pub enum SubscriptionAction {
    List,
    /// Add one (a JSON subscription, as in `tenants[].events.subscriptions`).
    Add {
        #[arg(long)]
        tenant: String,
        /// The subscription as JSON, or `@FILE`.
        subscription: String,
    },
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum DeadLetterAction {
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        subscription: String,
    },
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        subscription: String,
        id: String,
    },
    /// Deliver it again now.
    Replay {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        subscription: String,
        id: String,
    },
    Drop {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        subscription: String,
        id: String,
    },
}

/// The admin listener and its token.
pub struct Admin {
    pub addr: String,
    pub token: Option<String>,
    pub json: bool,
}

/// Percent-encodes a query value (RFC 3986's unreserved characters stay).
fn enc(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

impl Admin {
    /// One call; the status and the body.
    fn call(&self, method: &str, target: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>)> {
        let addr: std::net::SocketAddr =
            self.addr.parse().with_context(|| format!("`{}` is not ip:port", self.addr))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connect to the admin listener {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("not an HTTP answer")?;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no status")?;
        let mut body = raw[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        Ok((status, body))
    }

    /// A call whose answer must be 2xx: its JSON (or text) body.
    fn ok(&self, method: &str, target: &str, body: Option<&[u8]>) -> Result<Value> {
        let (status, b) = self.call(method, target, body)?;
        let v: Value =
            serde_json::from_slice(&b).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()));
        if !(200..300).contains(&status) {
            let detail = v.get("detail").and_then(Value::as_str).map_or_else(|| v.to_string(), str::to_owned);
            bail!("{status}: {detail}");
        }
        Ok(v)
    }

    /// The API's JSON with `--json`, else the human form.
    fn show(&self, v: &Value, human: impl Fn(&Value) -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{}", human(v));
        }
    }

    pub fn run(&self, cmd: AdminCommand) -> Result<()> {
        match cmd {
            AdminCommand::Status => {
                let (live, _) = self.call("GET", "/healthz", None)?;
                let (ready, b) = self.call("GET", "/readyz", None)?;
                let v = serde_json::json!({"live": live == 200, "ready": ready == 200, "detail": String::from_utf8_lossy(&b).trim()});
                self.show(&v, |v| {
                    format!("live: {}\nready: {} ({})\n", v["live"], v["ready"], v["detail"].as_str().unwrap_or(""))
                });
            }
            AdminCommand::Config { action: ConfigAction::Show } => {
                let v = self.ok("GET", "/admin/config", None)?;
                self.show(&v, |v| {
                    format!(
                        "generation {}\n{}\n",
                        v["generation"],
                        serde_json::to_string_pretty(&v["config"]).unwrap_or_default()
                    )
                });
            }
            AdminCommand::Config { action: ConfigAction::Reload } => {
                let v = self.ok("POST", "/admin/reload", None)?;
                self.show(&v, |v| format!("reloaded: generation {}\n", v["generation"]));
            }
            AdminCommand::Subscriptions { action: SubscriptionAction::List } => {
                let v = self.ok("GET", "/admin/events/subscriptions", None)?;
                self.show(&v, |v| {
                    let rows = v.as_array().map(Vec::as_slice).unwrap_or_default().iter().map(|s| {
                        let sub = &s["subscription"];
                        let target = sub["webhook"]["url"]
                            .as_str()
                            .map(str::to_owned)
                            .or_else(|| sub["route"].as_str().map(|r| format!("route {r}")))
                            .unwrap_or_default();
                        vec![
                            s["tenant"].as_str().unwrap_or("").to_owned(),
                            sub["name"].as_str().unwrap_or("").to_owned(),
                            s["origin"].as_str().unwrap_or("").to_owned(),
                            sub["types"]
                                .as_array()
                                .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
                                .unwrap_or_default(),
                            target,
                        ]
                    });
                    table(&["ENTE", "NAME", "ORIGIN", "TYPES", "TARGET"], rows.collect())
                });
            }
            AdminCommand::Subscriptions { action: SubscriptionAction::Add { tenant, subscription } } => {
                let text = match subscription.strip_prefix('@') {
                    Some(f) => std::fs::read_to_string(f).with_context(|| format!("read {f}"))?,
                    None => subscription,
                };
                let _: Value = serde_json::from_str(&text).context("the subscription is not JSON")?;
                let v = self.ok(
                    "POST",
                    &format!("/admin/events/subscriptions?tenant={}", enc(&tenant)),
                    Some(text.as_bytes()),
                )?;
                self.show(&v, |_| "added\n".to_owned());
            }
            AdminCommand::Subscriptions { action: SubscriptionAction::Remove { tenant, name } } => {
                let v = self.ok(
                    "DELETE",
                    &format!("/admin/events/subscriptions?tenant={}&name={}", enc(&tenant), enc(&name)),
                    None,
                )?;
                self.show(&v, |_| "removed\n".to_owned());
            }
            AdminCommand::DeadLetters { action } => self.dead_letters(action)?,
        }
        Ok(())
    }

    fn dead_letters(&self, action: DeadLetterAction) -> Result<()> {
        let q = |t: &str, s: &str| format!("tenant={}&subscription={}", enc(t), enc(s));
        match action {
            DeadLetterAction::List { tenant, subscription } => {
                let v = self.ok("GET", &format!("/admin/events/dead-letters?{}", q(&tenant, &subscription)), None)?;
                self.show(&v, |v| {
                    let rows = v["dead_letters"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(|l| {
                        ["id", "type", "attempts", "at", "error"]
                            .iter()
                            .map(|k| match &l[*k] {
                                Value::String(s) => s.clone(),
                                Value::Null => String::new(),
                                other => other.to_string(),
                            })
                            .collect()
                    });
                    table(&["ID", "TYPE", "ATTEMPTS", "AT", "ERROR"], rows.collect())
                });
            }
            DeadLetterAction::Show { tenant, subscription, id } => {
                let v = self.ok(
                    "GET",
                    &format!("/admin/events/dead-letters?{}&id={}", q(&tenant, &subscription), enc(&id)),
                    None,
                )?;
                self.show(&v, |v| format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()));
            }
            DeadLetterAction::Replay { tenant, subscription, id } => {
                let target =
                    format!("/admin/events/dead-letters/redrive?{}&id={}", q(&tenant, &subscription), enc(&id));
                let v = self.ok("POST", &target, None)?;
                self.show(&v, |_| format!("{id}: delivered again\n"));
            }
            DeadLetterAction::Drop { tenant, subscription, id } => {
                let v = self.ok(
                    "DELETE",
                    &format!("/admin/events/dead-letters?{}&id={}", q(&tenant, &subscription), enc(&id)),
                    None,
                )?;
                self.show(&v, |_| format!("{id}: dropped\n"));
            }
        }
        Ok(())
    }
}

/// A chunked body's data.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// Columns padded to their widest cell.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// The token: `--token-file`, else `VARCO_ADMIN_TOKEN`.
pub fn token(file: Option<PathBuf>) -> Result<Option<String>> {
    match file {
        Some(f) => {
            Ok(Some(std::fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?.trim().to_owned()))
        }
        None => Ok(std::env::var("VARCO_ADMIN_TOKEN").ok().filter(|t| !t.is_empty())),
    }
}
