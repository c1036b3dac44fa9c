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
pub use process::{free_port, Varco};
pub use redis::Redis;
pub use sse::Sse;
