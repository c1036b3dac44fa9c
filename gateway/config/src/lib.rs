//! varco configuration: the YAML model, its defaults, pure validation and the JSON Schema.
//!
//! Loading is two steps, as in vector: [`parse`] turns text into a typed [`Config`] (syntax and
//! type errors carry line and column), then [`Config::validate`] checks meaning without any I/O
//! (every problem carries its path, e.g. `tenants[1].routes[0].to.upstream`). The I/O part
//! (resolving addresses, reading certificates and secrets) belongs to the proxy's `build()`.
#![forbid(unsafe_code)]

mod duration;
mod issues;
mod model;
mod model_adapters;
mod model_auth;
mod model_edge;
mod model_events;
mod model_mediation;
mod model_oidc;
mod model_pagopa;
mod model_pdnd;
mod model_signalhub;
mod model_siuss;
mod model_telemetry;
mod model_traffic;
mod model_upstream;
mod positions;
mod validate;
mod validate_adapters;
mod validate_rules;

pub use duration::Dur;
pub use issues::ConfigIssue;
pub use model::*;
pub use model_telemetry::*;

/// The configuration `varco serve` runs when no `--config` is given: one demo tenant answering
/// `GET /status` on 127.0.0.1:8080, the admin listener on 127.0.0.1:9180.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

/// Addresses given on the command line (`varco serve --listen --admin`), which replace the
/// configuration's: so that the embedded default can run beside another service on 8080 or
/// 9180. Applied at start and at every reload, so that a reload does not see them as changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the first listener's address.
    pub listen: Option<String>,
    /// Replaces the admin listener's address.
    pub admin: Option<String>,
}

impl Overrides {
    pub fn apply(&self, cfg: &mut Config) {
        if let (Some(a), Some(l)) = (&self.listen, cfg.listeners.first_mut()) {
            l.address = a.clone();
        }
        if let Some(a) = &self.admin {
            cfg.admin.address = a.clone();
        }
    }
}

/// Whether `name` is one of the `X-Varco-*` headers varco reserves for the identity it forwards:
/// a caller's own are removed, and varco writes them only on the way upstream.
pub fn is_identity_header(name: &str) -> bool {
    name.len() >= 8 && name.as_bytes()[..8].eq_ignore_ascii_case(b"x-varco-")
}

/// Parses YAML text into a typed config; errors carry the path and position.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigIssue>> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    // Enums are written as single-key maps (`to: {upstream: anagrafe}`), not YAML tags.
    let res: Result<Config, _> = serde_yaml_ng::with::singleton_map_recursive::deserialize(
        serde_path_to_error::Deserializer::new(de, &mut track),
    );
    res.map_err(|inner| {
        let path = track.path().to_string();
        let (line, column) = match inner.location() {
            Some(l) => (Some(l.line()), Some(l.column())),
            None => (None, None),
        };
        // serde_yaml_ng appends " at line L column C" itself; keep the message only.
        let mut message = inner.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // ... and sometimes prefixes its own (shorter) path: keep only ours.
        if let Some((head, rest)) = message.split_once(": ") {
            if !head.contains(' ') && path.starts_with(head) {
                message = rest.to_owned();
            }
        }
        vec![ConfigIssue { path: if path == "." { String::new() } else { path }, line, column, message }]
    })
}

/// Parses and validates; the whole list of problems on failure.
pub fn load_str(text: &str) -> Result<Config, Vec<ConfigIssue>> {
    let cfg = parse(text)?;
    let mut issues = cfg.validate();
    if issues.is_empty() {
        return Ok(cfg);
    }
    locate(text, &mut issues);
    Err(issues)
}

/// Fills in the line and column of each issue's path in `text`.
pub fn locate(text: &str, issues: &mut [ConfigIssue]) {
    let positions = positions::Positions::of(text);
    for i in issues {
        if let Some((line, column)) = positions.find(&i.path) {
            (i.line, i.column) = (Some(line), Some(column));
        }
    }
}

/// The JSON Schema of the configuration file (committed as `contracts/config.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let cfg = load_str(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(cfg.tenants.len(), 1);
        assert!(cfg.listeners.iter().all(|l| l.address.starts_with("127.0.0.1:")));
        assert!(cfg.admin.address.starts_with("127.0.0.1:"));
    }

    #[test]
    fn example_config_is_valid() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/examples/consortium.yaml"))
                .unwrap();
        let cfg = load_str(&text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.tenants.len(), 3);
    }

    #[test]
    fn committed_schema_is_current() {
        let committed =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/config.schema.json"))
                .unwrap();
        let committed: serde_json::Value = serde_json::from_str(&committed).unwrap();
        assert_eq!(committed, json_schema(), "run `varco schema > contracts/config.schema.json`");
    }

    #[test]
    fn syntax_errors_carry_position() {
        let e = parse("tenants:\n  - id: c_x\n    name: [unclosed\n").unwrap_err();
        assert!(e[0].line.is_some(), "{e:?}");
        let e = parse("tenants:\n  - id: c_x\n    name: X\n    colour: blue\n").unwrap_err();
        assert_eq!(e[0].path, "tenants[0].colour");
        assert!(e[0].message.contains("unknown field `colour`"), "{e:?}");
        assert_eq!(e[0].line, Some(4));
    }
}
