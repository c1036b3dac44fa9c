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
