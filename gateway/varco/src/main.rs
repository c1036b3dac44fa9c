//! `varco`: the interoperability gateway and event bus for Italian municipalities.
#![forbid(unsafe_code)]

mod admin_cli;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "varco", version, about = "Interoperability gateway and event bus for Italian municipalities")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (on the embedded default configuration without --config).
    Serve {
        /// YAML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen on this `ip:port` instead of the first listener's address.
        #[arg(long)]
        listen: Option<String>,
        /// Serve the admin API on this `ip:port` instead of `admin.address`.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Validate a configuration file: print every problem with its place, exit 1 if any.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
    /// Write the OpenAPI contract of an ente's mediated routes (what its `kind: openapi`
    /// route serves), e.g. into `contracts/openapi/`.
    Openapi {
        #[arg(long, short)]
        config: PathBuf,
        /// The ente's id (codice IPA).
        #[arg(long)]
        tenant: String,
        /// Where to write it (JSON, which YAML tools read too). Default: standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a new API key: prints the key (give it to the app, once) and the line for the
    /// tenant's `api_keys` (only the hash is stored).
    Apikey {
        /// Who will hold it (an app, a developer).
        #[arg(long)]
        name: String,
    },
    /// Ask a running varco whether it is ready (`GET /readyz` on its admin listener): exit 0
    /// when it answers 200, 1 otherwise. For container health checks (no curl in the image).
    Health {
        /// The admin listener's `ip:port`.
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s")]
        timeout: varco_config::Dur,
    },
    /// A running varco through its admin API (status, configuration, subscriptions, dead
    /// letters); the token from `--token-file` or `VARCO_ADMIN_TOKEN`. Every change is a record
    /// of the audit trail. API keys live in the configuration file: `varco apikey` makes one,
    /// removing its line and `varco admin config reload` revokes it.
    Admin {
        /// The admin listener's `ip:port`.
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: String,
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The API's JSON instead of tables.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: admin_cli::AdminCommand,
    },
    /// The audit trail of interop calls (`server.audit`), read offline.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// OIDC Federation, as varco sees it before a citizen's login.
    Federation {
        #[command(subcommand)]
        action: FederationCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum FederationCommand {
    /// Resolve an entity (an OpenID provider) through its trust chain to a Trust Anchor: fetch
    /// its Entity Configuration and the Anchor's statement about it, verify both with the
    /// Anchor's pinned keys, apply the Anchor's metadata policy. Prints the resulting metadata
    /// and when the chain expires; exit 1 and the reason when it is not trusted.
    Resolve {
        /// The entity id to resolve (e.g. an OP's).
        #[arg(long)]
        sub: String,
        /// The Trust Anchor's entity id, spelt as it spells it.
        #[arg(long)]
        anchor: String,
        /// The Trust Anchor's public keys (a JWKS file): pinned, never taken from the network.
        #[arg(long)]
        anchor_jwks: PathBuf,
        /// Which metadata to print.
        #[arg(long, default_value = "openid_provider")]
        kind: String,
        /// For the three fetches together.
        #[arg(long, default_value = "10s")]
        timeout: varco_config::Dur,
    },
}

/// `varco federation resolve`: the exit code.
fn federation(action: FederationCommand) -> Result<i32> {
    let FederationCommand::Resolve { sub, anchor, anchor_jwks, kind, timeout } = action;
    let text = std::fs::read_to_string(&anchor_jwks).with_context(|| format!("read {}", anchor_jwks.display()))?;
    let keys: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&text).with_context(|| format!("{} is not a JWKS", anchor_jwks.display()))?;
    let fetch = varco_outbound::Fetcher::new(varco_outbound::https_client());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let resolved = rt.block_on(varco_auth::trust_chain::resolve(&fetch, &sub, &anchor, &keys, &kind, now, timeout.0));
    match resolved {
        Ok(r) => {
            let out = serde_json::json!({"sub": r.subject, "expires_at": r.expires_at, "metadata": {kind: r.metadata}});
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        Err(e) => {
            eprintln!("{sub}: not trusted under {anchor}: {e}");
            Ok(1)
        }
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an ente's trail: every record's hash, the chain, the sequence and each
    /// checkpoint's signature (with the ente's keys from the config, or `--jwks`). Exit 1 and
    /// each finding (a modified, deleted or inserted record, a rewritten chain) if any.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        /// The ente's public keys (`{"keys": [...]}`, as its `/.well-known/jwks.json` serves
        /// them) instead of reading its private keys from the config.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
    /// The ente's records that match, as JSON lines (default) or CSV.
    Query {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        /// From this instant (RFC 3339, UTC: `2026-12-03T00:00:00Z`).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// The caller's subject or client id.
        #[arg(long)]
        caller: Option<String>,
        #[arg(long)]
        route: Option<String>,
        #[arg(long)]
        csv: bool,
    },
}

fn load(path: Option<&PathBuf>) -> Result<varco_config::Config, String> {
    let (text, name) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => (varco_config::EMBEDDED_DEFAULT.to_owned(), "<embedded default>".to_owned()),
    };
    varco_config::load_str(&text).map_err(|issues| {
        let mut out = format!("{name}: {} problem(s)\n", issues.len());
        for i in issues {
            out.push_str(&format!("  {name}: {i}\n"));
        }
        out
    })
}

/// The checks that read what the file points at (a mediated route's WSDL): errors formatted as
/// `load`'s.
fn check_files(path: &std::path::Path, cfg: varco_config::Config) -> Result<varco_config::Config, String> {
    let mut issues = varco_proxy::check_mediation(&cfg);
    if issues.is_empty() {
        return Ok(cfg);
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    varco_config::locate(&text, &mut issues);
    let name = path.display();
    let mut out = format!("{name}: {} problem(s)\n", issues.len());
    for i in issues {
        out.push_str(&format!("  {name}: {i}\n"));
    }
    Err(out)
}

/// `varco audit …`: the exit code.
fn audit(action: AuditCommand) -> Result<i32> {
    let (config, tenant) = match &action {
        AuditCommand::Verify { config, tenant, .. } | AuditCommand::Query { config, tenant, .. } => {
            (config.clone(), tenant.clone())
        }
    };
    let tenant = tenant.as_str();
    let cfg = load(Some(&config)).map_err(|m| anyhow::anyhow!("{m}"))?;
    let a = cfg.server.audit.as_ref().context("the configuration has no `server.audit`")?;
    let dir = a.dir.join(tenant);
    match action {
        AuditCommand::Verify { jwks, .. } => {
            let keys: Option<serde_json::Value> = match jwks {
                Some(p) => {
                    Some(serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("read {}", p.display()))?)?)
                }
                None => varco_proxy::tenant_jwks(&cfg, tenant)
                    .map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?
                    .map(|b| serde_json::from_slice(&b))
                    .transpose()?,
            };
            let r = varco_audit::verify(&dir, tenant, keys.as_ref());
            let span = match (r.first_seq, r.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}–{b}"),
                _ => "empty".to_owned(),
            };
            let signed = if keys.is_some() { "signatures checked" } else { "no keys: signatures not checked" };
            println!("{tenant}: {} records, {} checkpoints, {span} ({signed})", r.records, r.checkpoints);
            if r.torn_tail {
                println!("a torn last line (a crash while writing) is not counted; varco cuts it at its next start");
            }
            for f in &r.findings {
                println!("{f}");
            }
            Ok(if r.findings.is_empty() { 0 } else { 1 })
        }
        AuditCommand::Query { since, until, caller, route, csv, .. } => {
            let rows = varco_audit::query(&dir, &varco_audit::Filter { since, until, caller, route });
            if csv {
                print!("{}", varco_audit::to_csv(&rows));
            } else {
                for (seq, r) in rows {
                    let mut v = serde_json::to_value(&r)?;
                    v["seq"] = seq.into();
                    println!("{v}");
                }
            }
            Ok(0)
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VARCO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn"));
    tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).with_target(true).init();
}

/// The status of `GET /readyz` at `admin` (plain HTTP/1.1 over TCP: no client needed).
fn ready(admin: &str, timeout: std::time::Duration) -> Result<u16> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = admin.parse().with_context(|| format!("`{admin}` is not ip:port"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {admin}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut head = [0u8; 32];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]).into_owned();
    line.split(' ').nth(1).and_then(|c| c.parse().ok()).with_context(|| format!("not an HTTP answer: {line:?}"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("varco {}", env!("CARGO_PKG_VERSION")),
        Command::Audit { action } => std::process::exit(audit(action)?),
        Command::Federation { action } => std::process::exit(federation(action)?),
        Command::Admin { admin, token_file, json, command } => {
            let a = admin_cli::Admin { addr: admin, token: admin_cli::token(token_file)?, json };
            if let Err(e) = a.run(command) {
                eprintln!("varco admin: {e:#}");
                std::process::exit(1);
            }
        }
        Command::Health { admin, timeout } => {
            let status = ready(&admin, timeout.0);
            match status {
                Ok(200) => println!("ready"),
                Ok(s) => {
                    eprintln!("not ready: /readyz answered {s}");
                    std::process::exit(1);
                }
                Err(e) => {
                    eprintln!("not ready: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Schema => println!("{}", serde_json::to_string_pretty(&varco_config::json_schema())?),
        Command::Openapi { config, tenant, out } => {
            let cfg = match load(Some(&config)) {
                Ok(c) => c,
                Err(msg) => {
                    eprint!("{msg}");
                    std::process::exit(1);
                }
            };
            let doc = varco_proxy::openapi(&cfg, &tenant).map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.message))?;
            let text = serde_json::to_string_pretty(&doc)? + "\n";
            match out {
                Some(p) => std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?,
                None => print!("{text}"),
            }
        }
        Command::Apikey { name } => {
            use ring::rand::SecureRandom;
            let mut raw = [0u8; 32];
            ring::rand::SystemRandom::new().fill(&mut raw).map_err(|_| anyhow::anyhow!("no randomness"))?;
            let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            let key = format!("vk_{key}");
            println!("key: {key}");
            println!("api_keys entry: {{name: {name}, hash: \"{}\"}}", varco_proxy::api_key_hash(&key));
        }
        Command::Check { config } => match load(Some(&config)).and_then(|cfg| check_files(&config, cfg)) {
            Ok(cfg) => println!(
                "{}: ok ({} tenant(s), {} listener(s))",
                config.display(),
                cfg.tenants.len(),
                cfg.listeners.len()
            ),
            Err(msg) => {
                eprint!("{msg}");
                std::process::exit(1);
            }
        },
        Command::Serve { config, listen, admin } => {
            let overrides = varco_config::Overrides { listen, admin };
            let mut cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(msg) => {
                    eprint!("{msg}");
                    std::process::exit(1);
                }
            };
            overrides.apply(&mut cfg);
            // The addresses are checked like the file's.
            let issues = cfg.validate();
            if !issues.is_empty() {
                for i in issues {
                    eprintln!("command line: {i}");
                }
                std::process::exit(1);
            }
            init_logging();
            varco_proxy::run(cfg, config, overrides).context("varco could not start")?;
            bail!("the server stopped unexpectedly");
        }
    }
    Ok(())
}
