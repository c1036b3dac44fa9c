//! API keys: the configuration stores only `sha256:<hex>` of each key; a request's key is
//! hashed and looked up, never compared as text, and never forwarded to the back-office.

use crate::error::{AuthError, Reason};
use std::collections::HashMap;
use varco_config::ApiKeyConfig;
use varco_core::headers as names;

/// `sha256:<hex>` of an API key, as stored in the configuration.
pub fn api_key_hash(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = String::from("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// An issued API key, by the SHA-256 of the key.
#[derive(Debug)]
pub struct ApiKey {
    pub name: String,
    /// Route indexes it may call (`None`: all API-key routes).
    pub routes: Option<Vec<usize>>,
}

/// An ente's issued keys.
#[derive(Debug, Default)]
pub struct ApiKeys {
    tenant: String,
    keys: HashMap<[u8; 32], ApiKey>,
}

/// Who called with a valid key: its name (the client id) and the identity headers for the
/// back-office.
#[derive(Debug)]
pub struct ApiKeyCaller {
    pub name: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl ApiKeys {
    /// The table of `tenant`'s keys; `route_index` maps a route name to its index (keys
    /// naming unknown routes were refused by validation, so they are simply skipped here).
    pub fn build(tenant: &str, keys: &[ApiKeyConfig], route_index: impl Fn(&str) -> Option<usize>) -> Self {
        let keys = keys
            .iter()
            .filter_map(|k| {
                let hex = k.hash.strip_prefix("sha256:")?;
                let mut digest = [0u8; 32];
                for (i, b) in digest.iter_mut().enumerate() {
                    *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                let routes = (!k.routes.is_empty()).then(|| k.routes.iter().filter_map(|r| route_index(r)).collect());
                Some((digest, ApiKey { name: k.name.clone(), routes }))
            })
            .collect();
        Self { tenant: tenant.to_owned(), keys }
    }

    /// Checks the route's API-key header. On success the caller removes the header from the
    /// request (the back-office gets who called, never the key).
    pub fn check(
        &self,
        headers: &http::HeaderMap,
        header: &http::HeaderName,
        route: usize,
    ) -> Result<ApiKeyCaller, AuthError> {
        let challenge = |reason, detail: String| {
            let mut e = AuthError::new(reason, detail);
            e.challenge =
                http::HeaderValue::from_str(&format!("ApiKey realm=\"{}\", header=\"{header}\"", self.tenant)).ok();
            e
        };
        let key = headers
            .get(header)
            .ok_or_else(|| challenge(Reason::TokenMissing, format!("this route needs an API key in `{header}`")))?;
        let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let digest: [u8; 32] = d.as_ref().try_into().unwrap_or([0; 32]);
        let found = self
            .keys
            .get(&digest)
            .ok_or_else(|| challenge(Reason::TokenInvalid, "the API key is unknown or revoked".to_owned()))?;
        if found.routes.as_ref().is_some_and(|r| !r.contains(&route)) {
            return Err(AuthError::new(
                Reason::Forbidden,
                format!("the API key `{}` may not call this route", found.name),
            ));
        }
        let headers = [(&names::TENANT, self.tenant.as_str()), (&names::CLIENT_ID, found.name.as_str())]
            .into_iter()
            .filter_map(|(n, v)| Some((n.clone(), http::HeaderValue::from_str(v).ok()?)))
            .collect();
        Ok(ApiKeyCaller { name: found.name.clone(), headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ApiKeys {
        let cfg: Vec<ApiKeyConfig> = serde_yaml_ng::from_str(&format!(
            "[{{name: app-a, hash: \"{}\"}}, {{name: app-b, hash: \"{}\", routes: [events]}}]",
            api_key_hash("key-a"),
            api_key_hash("key-b")
        ))
        .unwrap();
        ApiKeys::build("c_e783", &cfg, |r| (r == "events").then_some(3))
    }

    fn with(key: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", http::HeaderValue::from_str(key).unwrap());
        h
    }

    #[test]
    fn known_keys_pass_and_name_the_caller() {
        let name = http::HeaderName::from_static("x-api-key");
        let c = table().check(&with("key-a"), &name, 0).unwrap();
        assert_eq!(c.name, "app-a");
        assert!(c.headers.iter().any(|(k, v)| k == names::CLIENT_ID && v == "app-a"));
        assert!(c.headers.iter().all(|(_, v)| v != "key-a"), "the key itself is never forwarded");
    }

    #[test]
    fn unknown_missing_and_out_of_scope_keys_are_refused() {
        let name = http::HeaderName::from_static("x-api-key");
        let t = table();
        let e = t.check(&with("key-c"), &name, 0).unwrap_err();
        assert_eq!(e.reason, Reason::TokenInvalid);
        assert!(e.challenge.is_some());
        assert_eq!(t.check(&http::HeaderMap::new(), &name, 0).unwrap_err().reason, Reason::TokenMissing);
        assert_eq!(t.check(&with("key-b"), &name, 0).unwrap_err().reason, Reason::Forbidden);
        assert_eq!(t.check(&with("key-b"), &name, 3).unwrap().name, "app-b");
    }
}
