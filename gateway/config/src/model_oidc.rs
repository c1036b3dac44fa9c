//! `tenants[].oidc`: the ente as a SPID/CIE OpenID Connect relying party in the OIDC Federation.

use crate::{Dur, TenantKeyConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The ente's relying-party identity in the federation. With it, varco publishes the ente's
/// Entity Configuration at `<entity_id>/.well-known/openid-federation`: a statement signed
/// with `federation_keys` carrying `openid_relying_party` metadata (the public halves of
/// `signing_keys` and `encryption_keys` inline, as SPID/CIE OPs require) and `federation_entity`
/// metadata, pointing to `authority_hints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcRpConfig {
    /// The ente's entity id (`client_id`): `https://` + one of the ente's `hosts` + its
    /// `prefix` (`http://` only for a loopback address, in tests).
    pub entity_id: String,
    /// The Trust Anchor or intermediate that registered the ente, exactly as its entity id is
    /// spelt (a Trust Anchor's often ends in `/`).
    pub authority_hints: Vec<String>,
    /// Keys that sign the Entity Configuration; the first signs, all are published (add the
    /// next one before a rotation, remove the old one once statements it signed expired).
    pub federation_keys: Vec<TenantKeyConfig>,
    /// Keys that sign request objects and client assertions (RS256: SPID/CIE OPs register RSA).
    pub signing_keys: Vec<TenantKeyConfig>,
    /// RSA keys OPs encrypt userinfo to (RSA-OAEP).
    pub encryption_keys: Vec<TenantKeyConfig>,
    /// `client_name` and `organization_name`. Default: the ente's `name`.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Contact addresses published in the metadata. At least one (SPID asks for it).
    pub contacts: Vec<String>,
    /// Trust marks issued to the ente (signed JWTs as the issuer gave them), published as they
    /// are. Default: none.
    #[serde(default)]
    pub trust_marks: Vec<TrustMarkConfig>,
    /// How long a published Entity Configuration is valid (`exp - iat`). Default 1d.
    #[serde(default = "d_statement_lifetime")]
    pub statement_lifetime: Dur,
    /// What the login asks the OP for. Default: SpidL2, the four usual attributes, every OP of
    /// `federation.providers`.
    #[serde(default)]
    pub login: LoginConfig,
    /// The citizen's session once logged in. Default: 30m idle, 8h at most.
    #[serde(default)]
    pub session: SessionConfig,
}

/// The `acr` URI of SPID/CIE level 1, 2 or 3 (CIE uses the same three URIs).
pub fn loa_uri(level: u8) -> &'static str {
    match level {
        1 => "https://www.spid.gov.it/SpidL1",
        3 => "https://www.spid.gov.it/SpidL3",
        _ => "https://www.spid.gov.it/SpidL2",
    }
}

/// What the ente's login asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// The SPID/CIE level requested (`acr_values` …/SpidL1, L2, L3): 1, 2 or 3; a route may ask
    /// for more with `access.session.acr_min`. Default 2.
    #[serde(default = "d_acr")]
    pub acr: u8,
    /// The user attributes asked for in userinfo: `fiscal_number` (asked as
    /// `https://attributes.eid.gov.it/fiscal_number`), `given_name`, `family_name`, `email`,
    /// `birthdate`, `phone_number`, … Default: `fiscal_number`, `given_name`, `family_name`,
    /// `email`.
    #[serde(default = "d_claims")]
    pub claims: Vec<String>,
    /// The OPs offered on the chooser page, by entity id, among `federation.providers`.
    /// Default: all of them.
    #[serde(default)]
    pub providers: Vec<String>,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self { acr: d_acr(), claims: d_claims(), providers: Vec::new() }
    }
}

fn d_acr() -> u8 {
    2
}
fn d_claims() -> Vec<String> {
    ["fiscal_number", "given_name", "family_name", "email"].map(String::from).to_vec()
}

/// The citizen's session: an opaque cookie naming a record kept by varco (in memory, or in
/// `redis` when configured so that every instance serves it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// A session unused this long ends. Default 30m.
    #[serde(default = "d_idle")]
    pub idle: Dur,
    /// A session ends this long after the login, used or not. Default 8h.
    #[serde(default = "d_absolute")]
    pub absolute: Dur,
    /// The cookie's name (set with `Secure; HttpOnly; SameSite=Lax`, path the ente's prefix).
    /// Default `varco_session`.
    #[serde(default = "d_cookie")]
    pub cookie: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { idle: d_idle(), absolute: d_absolute(), cookie: d_cookie() }
    }
}

fn d_idle() -> Dur {
    Dur(std::time::Duration::from_secs(30 * 60))
}
fn d_absolute() -> Dur {
    Dur(std::time::Duration::from_secs(8 * 3600))
}
fn d_cookie() -> String {
    "varco_session".into()
}

/// The OIDC Federation the enti log citizens in through: the Trust Anchors varco trusts (their
/// keys pinned here, never taken from the network) and the OPs offered to citizens, each
/// resolved through a trust chain up to its anchor before anything of it is used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// At least one: SPID's is `https://registry.spid.gov.it`, CIE's
    /// `https://oidc.registry.servizicie.interno.gov.it`.
    pub trust_anchors: Vec<TrustAnchorConfig>,
    /// The OPs (SPID identity providers, CIE) the chooser page lists.
    pub providers: Vec<ProviderConfig>,
    /// Longest wait for one statement or OP endpoint. Default 5s.
    #[serde(default = "d_fetch_timeout")]
    pub timeout: Dur,
}

fn d_fetch_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(5))
}

/// A Trust Anchor and its public keys, as its operator publishes them out of band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustAnchorConfig {
    /// Its entity id, spelt exactly as the federation does.
    pub entity_id: String,
    /// Its federation keys, a JWK Set (`{"keys": [...]}`) inline.
    pub jwks: serde_json::Value,
}

/// An OP offered to citizens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Its entity id.
    pub entity_id: String,
    /// The name on its button.
    pub name: String,
    /// `spid` (listed under "Entra con SPID") or `cie` (its own button).
    pub kind: ProviderKind,
    /// The Trust Anchor its chain must end at. Default: the first of `trust_anchors`.
    #[serde(default)]
    pub trust_anchor: Option<String>,
}

/// Which button an OP sits behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Spid,
    Cie,
}

/// `access: {session: {}}`: a citizen logged in through the ente's SPID/CIE login.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionAccess {
    /// Least SPID/CIE level of the login (1, 2 or 3), like `access.jwt.acr_min`; a browser whose
    /// session is below it is sent to log in again at this level. Default: none.
    #[serde(default)]
    pub acr_min: Option<u8>,
}

fn http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
}

impl FederationConfig {
    /// Problems as (`field`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |f: String, m: String| out.push((f, m));
        if self.trust_anchors.is_empty() {
            bad("trust_anchors".into(), "at least one Trust Anchor".into());
        }
        for (i, a) in self.trust_anchors.iter().enumerate() {
            if !http_url(&a.entity_id) {
                bad(format!("trust_anchors[{i}].entity_id"), "an http(s) URL".into());
            }
            let keys = a.jwks.get("keys").and_then(|k| k.as_array());
            if !keys.is_some_and(|k| !k.is_empty() && k.iter().all(|k| k.get("kid").is_some_and(|v| v.is_string()))) {
                bad(
                    format!("trust_anchors[{i}].jwks"),
                    "a JWK Set `{keys: [...]}` with at least one key, each with a `kid`".into(),
                );
            }
        }
        if self.providers.is_empty() {
            bad("providers".into(), "at least one OP".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            if !http_url(&p.entity_id) {
                bad(format!("providers[{i}].entity_id"), "an http(s) URL".into());
            } else if !seen.insert(p.entity_id.as_str()) {
                bad(format!("providers[{i}].entity_id"), format!("`{}` is listed twice", p.entity_id));
            }
            if p.name.trim().is_empty() {
                bad(format!("providers[{i}].name"), "the name on its button".into());
            }
            if let Some(a) = &p.trust_anchor {
                if !self.trust_anchors.iter().any(|t| &t.entity_id == a) {
                    bad(format!("providers[{i}].trust_anchor"), format!("`{a}` is not one of `trust_anchors`"));
                }
            }
        }
        let t = self.timeout.0.as_millis();
        if !(100..=60_000).contains(&t) {
            bad("timeout".into(), "100ms to 1m".into());
        }
        out
    }
}

/// A trust mark as issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustMarkConfig {
    /// The trust mark's identifier (its `id`).
    pub id: String,
    /// The signed trust mark (a compact JWS).
    pub trust_mark: String,
}

fn d_statement_lifetime() -> Dur {
    Dur(std::time::Duration::from_secs(86_400))
}

/// Where varco receives the authorization code below the ente's entity id.
pub const OIDC_CALLBACK_PATH: &str = "/oidc/callback";
/// Where the ente's Entity Configuration is served, below its entity id.
pub const FEDERATION_CONFIGURATION_PATH: &str = "/.well-known/openid-federation";

impl OidcRpConfig {
    /// Problems as (`field`, message), for an ente with `hosts` and `prefix`: the entity id must
    /// be an address where varco serves this ente, or no federation peer can read it.
    pub fn validate(&self, hosts: &[String], prefix: Option<&str>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |f: &str, m: String| out.push((f.to_owned(), m));
        match url::Url::parse(&self.entity_id) {
            Err(e) => bad("entity_id", format!("not a URL: {e}")),
            Ok(u) => {
                let host = u.host_str().unwrap_or("").to_ascii_lowercase();
                let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
                if !(u.scheme() == "https" || (u.scheme() == "http" && loopback)) {
                    bad("entity_id", "an https:// URL (http:// only on a loopback address)".into());
                }
                if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() {
                    bad("entity_id", "no query, fragment or user part".into());
                }
                let trimmed = host.trim_start_matches('[').trim_end_matches(']');
                if !hosts.iter().any(|h| h.eq_ignore_ascii_case(trimmed) || h.eq_ignore_ascii_case(&host)) {
                    bad("entity_id", format!("its host `{host}` is not one of the ente's `hosts`"));
                }
                let path = u.path().trim_end_matches('/');
                if path != prefix.unwrap_or("").trim_end_matches('/') {
                    bad(
                        "entity_id",
                        format!("its path `{path}` must be the ente's `prefix` (`{}`)", prefix.unwrap_or("")),
                    );
                }
            }
        }
        if self.authority_hints.is_empty() {
            bad("authority_hints", "name the Trust Anchor (or intermediate) that registered the ente".into());
        }
        for (i, a) in self.authority_hints.iter().enumerate() {
            if !url::Url::parse(a).is_ok_and(|u| matches!(u.scheme(), "https" | "http")) {
                bad(&format!("authority_hints[{i}]"), "an http(s) URL".into());
            }
        }
        let mut kids = std::collections::HashSet::new();
        for (name, keys) in [
            ("federation_keys", &self.federation_keys),
            ("signing_keys", &self.signing_keys),
            ("encryption_keys", &self.encryption_keys),
        ] {
            if keys.is_empty() {
                bad(name, "at least one key".into());
            }
            for (i, k) in keys.iter().enumerate() {
                if k.kid.is_empty() || k.kid.len() > 256 || !k.kid.bytes().all(|b| b.is_ascii_graphic()) {
                    bad(&format!("{name}[{i}].kid"), "1 to 256 printable characters".into());
                } else if !kids.insert(k.kid.as_str()) {
                    bad(&format!("{name}[{i}].kid"), format!("`{}` is used twice", k.kid));
                }
            }
        }
        if self.contacts.is_empty() || self.contacts.iter().any(|c| c.trim().is_empty()) {
            bad("contacts", "at least one address, none empty".into());
        }
        for (i, m) in self.trust_marks.iter().enumerate() {
            if m.id.is_empty() || m.trust_mark.split('.').count() != 3 {
                bad(&format!("trust_marks[{i}]"), "an `id` and the signed trust mark (a compact JWS)".into());
            }
        }
        let life = self.statement_lifetime.0.as_secs();
        if !(60..=30 * 86_400).contains(&life) {
            bad("statement_lifetime", "1m to 30d".into());
        }
        if !(1..=3).contains(&self.login.acr) {
            bad("login.acr", "SPID/CIE levels are 1, 2 or 3".into());
        }
        for (i, c) in self.login.claims.iter().enumerate() {
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_graphic()) {
                bad(&format!("login.claims[{i}]"), "a claim name".into());
            }
        }
        let (idle, absolute) = (self.session.idle.0.as_secs(), self.session.absolute.0.as_secs());
        if !(60..=86_400).contains(&idle) {
            bad("session.idle", "1m to 1d".into());
        }
        if absolute < idle || absolute > 7 * 86_400 {
            bad("session.absolute", "at least `idle`, at most 7d".into());
        }
        let c = &self.session.cookie;
        if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
            bad("session.cookie", "1 to 64 of a-z, A-Z, 0-9, `_`, `-`".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(entity_id: &str) -> OidcRpConfig {
        let key = |kid: &str| TenantKeyConfig {
            kid: kid.into(),
            private_key: crate::SecretRef::File("/k.pem".into()),
            certificate_chain: None,
        };
        OidcRpConfig {
            entity_id: entity_id.into(),
            authority_hints: vec!["https://registry.spid.gov.it/".into()],
            federation_keys: vec![key("fed")],
            signing_keys: vec![key("sig")],
            encryption_keys: vec![key("enc")],
            client_name: None,
            contacts: vec!["urp@comune.example.it".into()],
            trust_marks: vec![],
            statement_lifetime: d_statement_lifetime(),
            login: LoginConfig::default(),
            session: SessionConfig::default(),
        }
    }

    #[test]
    fn the_entity_id_must_be_where_varco_serves_the_ente() {
        let hosts = vec!["servizi.comune.macerata.it".to_owned(), "127.0.0.1".to_owned()];
        let fields =
            |c: &OidcRpConfig, prefix| c.validate(&hosts, prefix).into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        assert!(fields(&rp("https://servizi.comune.macerata.it"), None).is_empty());
        assert!(fields(&rp("https://SERVIZI.comune.macerata.it/c_e783/"), Some("/c_e783")).is_empty());
        assert!(fields(&rp("http://127.0.0.1:8080/c_e783"), Some("/c_e783")).is_empty(), "loopback may be http");
        for (id, prefix) in [
            ("http://servizi.comune.macerata.it", None), // plain http off loopback
            ("https://altro.example.it", None),          // not the ente's host
            ("https://servizi.comune.macerata.it/c_a662", Some("/c_e783")), // another prefix
            ("https://servizi.comune.macerata.it?x=1", None),
            ("not a url", None),
        ] {
            assert_eq!(fields(&rp(id), prefix), ["entity_id"], "{id}");
        }
        let mut c = rp("https://servizi.comune.macerata.it");
        c.signing_keys[0].kid = "fed".into();
        c.encryption_keys.clear();
        c.contacts.clear();
        c.authority_hints = vec!["registry".into()];
        c.trust_marks = vec![TrustMarkConfig {
            id: "https://registry/openid_relying_party/public/".into(),
            trust_mark: "x".into(),
        }];
        c.statement_lifetime = Dur(std::time::Duration::from_secs(5));
        let got = fields(&c, None);
        for f in [
            "signing_keys[0].kid",
            "encryption_keys",
            "contacts",
            "authority_hints[0]",
            "trust_marks[0]",
            "statement_lifetime",
        ] {
            assert!(got.iter().any(|g| g == f), "{f} missing in {got:?}");
        }
    }
}
