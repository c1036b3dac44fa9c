//! The audit trail of interop calls: who (verified caller, purpose, LoA, ModI tracking
//! evidence) called what, when, with which outcome, through which upstream or platform — and
//! proof that the record was not altered.
//!
//! Per ente, an append-only log of JSON lines in `<dir>/<ente>/audit-<AAAAMMGG>.log` (one file
//! per day, UTC; retention removes whole files). Each line carries `seq`, the `prev` line's
//! hash and its own `hash`: SHA-256 (hex) of the line's bytes up to `,"hash":` — so changing,
//! removing or inserting a line breaks the chain where it happened. Every `checkpoint_every`
//! records a `checkpoint` line signs the chain's head with the ente's key (JWS), so that a
//! rewritten chain (every hash recomputed) fails the signature. Never bodies, tokens or
//! secrets: the record has no field for them.
//!
//! Durability: one writer thread appends what the requests hand it (never making them wait)
//! and `fdatasync`s the files it wrote at most `sync_interval` later (and on `flush`); a
//! machine crash loses at most that much, and a torn last line is cut off when the log is
//! opened again (and reported as a crash, not as tampering, by [`verify`]).

mod chain;
mod query;
mod writer;

pub use chain::{hash_line, verify, Finding, Report};
pub use query::{query, to_csv, Filter};
pub use writer::{Trail, TrailConfig};

use serde::{Deserialize, Serialize};

/// Which way the call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A caller called the ente through varco.
    Inbound,
    /// varco called a platform or e-service for the ente.
    Outbound,
}

/// One interop call, as it is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 UTC, milliseconds.
    pub ts: String,
    pub direction: Option<Direction>,
    pub route: String,
    pub method: String,
    pub status: u16,
    pub latency_ms: u64,
    /// The verified caller's subject (a token's `sub`, an API key's holder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_id: Option<String>,
    /// The level of assurance (SPID/CIE level, or the tracking evidence's LoA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loa: Option<String>,
    /// ModI AUDIT_REST tracking evidence: `userID`, `userLocation`, its `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_jti: Option<String>,
    /// The request's `Digest` (ModI INTEGRITY), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The upstream pool or platform that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    pub trace_id: String,
    pub request_id: String,
}

/// A kept line: the chain's fields around a record or a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    pub prev: String,
    #[serde(flatten)]
    pub body: Body,
    pub hash: String,
}

/// What a line holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Call(Box<Record>),
    /// The ente's signature over the chain up to here: a JWS whose payload is
    /// `{"tenant", "seq", "hash"}` of the line before, by key `kid`.
    Checkpoint {
        ts: String,
        kid: String,
        sig: String,
    },
}

/// The current time as the records write it.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests;

/// What an adapter holds to keep the calls it makes for one ente (outbound records).
#[derive(Debug, Clone)]
pub struct Recorder {
    tenant: String,
    trail: std::sync::Arc<Trail>,
    keys: Option<std::sync::Arc<varco_auth::KeySet>>,
}

impl Recorder {
    pub fn new(tenant: &str, trail: std::sync::Arc<Trail>, keys: Option<std::sync::Arc<varco_auth::KeySet>>) -> Self {
        Self { tenant: tenant.to_owned(), trail, keys }
    }

    /// Keeps `r` (stamped now, as an outbound call). Never waits.
    pub fn outbound(&self, mut r: Record) {
        r.ts = now();
        r.direction = Some(Direction::Outbound);
        self.trail.append(&self.tenant, r, self.keys.clone());
    }
}

/// The trace id inside a W3C `traceparent` (`00-<trace id>-<span>-<flags>`).
pub fn trace_id_of(traceparent: &str) -> String {
    traceparent.split('-').nth(1).unwrap_or("").to_owned()
}
