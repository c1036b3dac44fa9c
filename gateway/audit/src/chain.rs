//! The chain's rules, written once for the writer and for [`verify`].

use crate::{Body, Line};
use std::path::{Path, PathBuf};

/// Where a line's hash starts: everything before it is what the hash covers.
pub(crate) const HASH_KEY: &str = ",\"hash\":\"";

/// SHA-256 (hex) of `prefix`, the line up to `,"hash":`.
pub fn hash_line(prefix: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = ring::digest::digest(&ring::digest::SHA256, prefix);
    let mut out = String::with_capacity(64);
    for b in d.as_ref() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Writes `line` with its hash computed: `seq`, `prev`, the body's fields, then `hash`.
pub(crate) fn seal(seq: u64, prev: &str, body: &Body) -> Result<(String, String), String> {
    // One serialisation of the body, its opening brace replaced by the chain's fields, so that
    // a reader sees the chain before the content.
    let json = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let fields = json.strip_prefix('{').ok_or("a body is an object")?.strip_suffix('}').ok_or("a body is an object")?;
    let mut text = String::with_capacity(json.len() + prev.len() + 120);
    text.push_str("{\"seq\":");
    text.push_str(&seq.to_string());
    text.push_str(",\"prev\":\"");
    text.push_str(prev);
    text.push('"');
    if !fields.is_empty() {
        text.push(',');
        text.push_str(fields);
    }
    let hash = hash_line(text.as_bytes());
    text.push_str(HASH_KEY);
    text.push_str(&hash);
    text.push_str("\"}\n");
    Ok((text, hash))
}

/// The ente's log files, oldest first.
pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What verification found.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A line whose content does not hash to its `hash`: changed after it was written.
    Modified { file: String, seq: u64 },
    /// Sequence numbers missing: lines removed.
    Deleted { file: String, from: u64, to: u64 },
    /// A line whose `seq` does not follow: put in, or moved.
    Inserted { file: String, seq: u64 },
    /// A line whose `prev` is not the hash of the line before it.
    ChainBroken { file: String, seq: u64 },
    /// A checkpoint whose signature does not verify or does not cover the chain before it.
    BadCheckpoint { file: String, seq: u64, why: String },
    /// A line that is not a record of the trail at all.
    Unreadable { file: String, line: usize },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Modified { file, seq } => {
                write!(f, "{file}: seq {seq} was modified (its content does not match its hash)")
            }
            Self::Deleted { file, from, to } if from == to => write!(f, "{file}: seq {from} was deleted"),
            Self::Deleted { file, from, to } => write!(f, "{file}: seq {from} to {to} were deleted"),
            Self::Inserted { file, seq } => write!(f, "{file}: seq {seq} was inserted or moved (it does not follow)"),
            Self::ChainBroken { file, seq } => write!(f, "{file}: the chain breaks before seq {seq}"),
            Self::BadCheckpoint { file, seq, why } => write!(f, "{file}: checkpoint seq {seq}: {why}"),
            Self::Unreadable { file, line } => write!(f, "{file}: line {line} is not a record of the trail"),
        }
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    /// The first `seq` present (above 1 once retention removed older files).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// A torn last line (a crash while writing): not counted, not tampering.
    pub torn_tail: bool,
    pub findings: Vec<Finding>,
}

/// Verifies the ente's trail in `dir` (`<audit dir>/<ente>`): every line's hash, the chain,
/// the sequence, and each checkpoint's signature against `jwks` (`{"keys": [...]}`, the ente's
/// public keys; `None`: signatures are not checked, only the chain).
pub fn verify(dir: &Path, tenant: &str, jwks: Option<&serde_json::Value>) -> Report {
    let mut r = Report::default();
    let mut prev: Option<String> = None;
    let mut expect: Option<u64> = None;
    let all = files(dir);
    for (fi, path) in all.iter().enumerate() {
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
        let Ok(bytes) = std::fs::read(path) else {
            r.findings.push(Finding::Unreadable { file, line: 0 });
            continue;
        };
        let last_file = fi + 1 == all.len();
        let complete = bytes.ends_with(b"\n");
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        for (li, raw) in lines.iter().enumerate() {
            let is_tail = last_file && li + 1 == lines.len() && !complete;
            let text = std::str::from_utf8(raw).unwrap_or("");
            let parsed: Option<Line> = serde_json::from_str(text).ok();
            let Some(line) = parsed else {
                if is_tail {
                    r.torn_tail = true;
                } else {
                    r.findings.push(Finding::Unreadable { file: file.clone(), line: li + 1 });
                }
                continue;
            };
            if is_tail {
                // Parsed but unterminated: written whole, the newline lost. Still checked.
                r.torn_tail = true;
            }
            let Some(at) = text.rfind(HASH_KEY) else {
                r.findings.push(Finding::Unreadable { file: file.clone(), line: li + 1 });
                continue;
            };
            if hash_line(&raw[..at]) != line.hash {
                r.findings.push(Finding::Modified { file: file.clone(), seq: line.seq });
            }
            match expect {
                None => r.first_seq = Some(line.seq),
                Some(e) if line.seq > e => {
                    r.findings.push(Finding::Deleted { file: file.clone(), from: e, to: line.seq - 1 })
                }
                Some(e) if line.seq < e => r.findings.push(Finding::Inserted { file: file.clone(), seq: line.seq }),
                Some(_) => {
                    // In sequence: its link to the line before must hold (a gap or an insertion
                    // is reported above, and explains a broken link there).
                    if prev.as_deref() != Some(line.prev.as_str()) {
                        r.findings.push(Finding::ChainBroken { file: file.clone(), seq: line.seq });
                    }
                }
            }
            match &line.body {
                crate::Body::Call(_) => r.records += 1,
                crate::Body::Checkpoint { kid, sig, .. } => {
                    r.checkpoints += 1;
                    if let Some(keys) = jwks {
                        if let Err(why) = check_signature(keys, kid, sig, tenant, line.seq, &line.prev) {
                            r.findings.push(Finding::BadCheckpoint { file: file.clone(), seq: line.seq, why });
                        }
                    }
                }
            }
            // A line that does not follow (inserted) moves neither the sequence nor the chain.
            if expect.is_none_or(|e| line.seq >= e) {
                r.last_seq = Some(line.seq);
                expect = Some(line.seq + 1);
                prev = Some(line.hash.clone());
            }
        }
    }
    r
}

/// The checkpoint's JWS verifies with the ente's key `kid` and signs this chain's head.
fn check_signature(
    jwks: &serde_json::Value,
    kid: &str,
    sig: &str,
    tenant: &str,
    seq: u64,
    prev: &str,
) -> Result<(), String> {
    use jsonwebtoken::{decode, jwk::JwkSet, DecodingKey, Validation};
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| format!("the keys are not a JWKS: {e}"))?;
    let jwk = set.find(kid).ok_or_else(|| format!("signed by `{kid}`, which is not one of the ente's keys"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(sig).map_err(|e| format!("not a JWS: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let data = decode::<serde_json::Value>(sig, &key, &v).map_err(|e| format!("the signature does not verify: {e}"))?;
    let c = data.claims;
    let want = serde_json::json!({"tenant": tenant, "seq": seq.saturating_sub(1), "hash": prev});
    if c.get("tenant") != want.get("tenant") || c.get("seq") != want.get("seq") || c.get("hash") != want.get("hash") {
        return Err("the signature is valid but signs another chain (records before it were rewritten)".into());
    }
    Ok(())
}
