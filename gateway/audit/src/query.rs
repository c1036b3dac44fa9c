//! Reading the trail back: the records of an ente that match, as JSON lines or CSV.

use crate::chain::files;
use crate::{Body, Line, Record};
use std::path::Path;

/// Which records.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// From this instant (RFC 3339; compared as the records write it, UTC).
    pub since: Option<String>,
    pub until: Option<String>,
    pub caller: Option<String>,
    pub route: Option<String>,
}

impl Filter {
    fn keeps(&self, r: &Record) -> bool {
        self.since.as_deref().is_none_or(|s| r.ts.as_str() >= s)
            && self.until.as_deref().is_none_or(|u| r.ts.as_str() < u)
            && self
                .caller
                .as_deref()
                .is_none_or(|c| r.caller.as_deref() == Some(c) || r.client_id.as_deref() == Some(c))
            && self.route.as_deref().is_none_or(|x| r.route == x)
    }
}

/// The ente's records (in `dir`, `<audit dir>/<ente>`) that `f` keeps, with their `seq`.
pub fn query(dir: &Path, f: &Filter) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    for path in files(dir) {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for l in text.lines() {
            if let Ok(Line { seq, body: Body::Call(r), .. }) = serde_json::from_str::<Line>(l) {
                if f.keeps(&r) {
                    out.push((seq, *r));
                }
            }
        }
    }
    out
}

const COLUMNS: [&str; 18] = [
    "seq",
    "ts",
    "direction",
    "route",
    "method",
    "status",
    "latency_ms",
    "caller",
    "client_id",
    "purpose_id",
    "loa",
    "user_id",
    "user_location",
    "evidence_jti",
    "digest",
    "upstream",
    "trace_id",
    "request_id",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The rows as CSV (RFC 4180), with a header.
pub fn to_csv(rows: &[(u64, Record)]) -> String {
    let mut out = COLUMNS.join(",") + "\r\n";
    for (seq, r) in rows {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let direction = r.direction.map_or("", |d| match d {
            crate::Direction::Inbound => "inbound",
            crate::Direction::Outbound => "outbound",
        });
        let fields = [
            seq.to_string(),
            r.ts.clone(),
            direction.to_owned(),
            r.route.clone(),
            r.method.clone(),
            r.status.to_string(),
            r.latency_ms.to_string(),
            o(&r.caller),
            o(&r.client_id),
            o(&r.purpose_id),
            o(&r.loa),
            o(&r.user_id),
            o(&r.user_location),
            o(&r.evidence_jti),
            o(&r.digest),
            o(&r.upstream),
            r.trace_id.clone(),
            r.request_id.clone(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}
