//! Integration harness: starts the real `varco` binary on a temporary config with ephemeral
//! ports, real HTTP back-office servers, and a real HTTP client; cleans everything up on drop.
//!
//! A test reads like its scenario:
//! ```ignore
//! let be = Backend::start("anagrafe").await;
//! let v = Varco::start(&format!("...servers: [\"{}\"]...", be.addr)).await;
//! let r = v.get("macerata.example.it", "/anagrafe/v1/x").await;
//! assert_eq!(r.status, 200);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backend;
mod client;
mod jose;
mod kafka;
pub mod pki;
mod process;
mod redis;
mod sse;

pub use backend::{Backend, Mode};
pub use client::{raw_http, Client, Resp};
pub use jose::Jose;
pub use kafka::Broker;
pub use process::{free_port, pdnd_peer, spawn_ready_tool, Varco};
pub use redis::Redis;
pub use sse::Sse;

/// `tests/tools/<name>`, looked up at run time from the folder cargo runs the test in: a path
/// fixed at build time goes stale when another checkout shares the target folder (CI's fresh
/// clone, the stop check) and the harness is not rebuilt.
pub fn tool_path(name: &str) -> std::path::PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    start
        .ancestors()
        .map(|d| d.join("tests/tools").join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tools")).join(name))
}

/// The opening block every scenario configuration shares: one plain listener and the admin
/// listener, on the ephemeral ports `Varco::start` fills in. Used as `{LISTENERS}` in a
/// scenario's `format!` text, followed by its own `server:` and `tenants:`.
pub const LISTENERS: &str =
    "listeners: [{name: public, address: \"127.0.0.1:{PORT}\"}]\nadmin: {address: \"127.0.0.1:{ADMIN}\"}\n";

/// `sha256:<hex>` of an API key, as `varco apikey` stores it (computed by Python, independently
/// of varco's own hashing).
pub fn api_key_hash(key: &str) -> String {
    let py = std::process::Command::new("python3")
        .args(["-c", "import hashlib, sys; print('sha256:' + hashlib.sha256(sys.argv[1].encode()).hexdigest())", key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&py.stdout).trim().to_owned()
}
