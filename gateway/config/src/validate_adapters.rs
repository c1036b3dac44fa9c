//! Per-adapter rules of a route's `to: {adapter: ...}`: each adapter's own pure `validate()`,
//! and what it asks of the ente and the route (keys, a PDND client, an access rule).

use crate::issues::Issues;
use crate::model::*;

/// The checks of one route's adapter; `rp` is the route's path in the file.
pub(crate) fn validate_adapter(
    a: &AdapterConfig,
    t: &TenantConfig,
    r: &RouteConfig,
    rp: &str,
    server_identity: Option<&IdentityTokenConfig>,
    is: &mut Issues,
) {
    let ap = format!("{rp}.to.adapter");
    match a {
        AdapterConfig::Status(s) => {
            for (f, m) in s.validate() {
                is.add(format!("{ap}.{f}"), m);
            }
        }
        AdapterConfig::FederationEntity(_) => {
            if t.oidc.is_none() {
                is.add(ap.clone(), "the federation_entity adapter publishes `tenants[].oidc`: set it");
            }
        }
        AdapterConfig::OidcLogin(_) => {
            if t.oidc.is_none() {
                is.add(ap.clone(), "the oidc_login adapter logs citizens in with `tenants[].oidc`: set it");
            }
        }
        AdapterConfig::Jwks(_) => {
            if server_identity.is_none() && t.keys.is_empty() {
                is.add(ap.clone(), "the jwks adapter needs a signing key: tenants[].keys or server.identity_token");
            }
        }
        AdapterConfig::Events(_) | AdapterConfig::EventStream(_) if r.access == Access::Public => is.add(
            format!("{rp}.access"),
            "event routes speak for the ente (publish) or show what it may read (stream): \
             admit callers with `jwt` or `api_key`",
        ),
        AdapterConfig::Events(_) => {}
        AdapterConfig::EventStream(c) => {
            for (f, m) in c.validate() {
                is.add(format!("{ap}.{f}"), m);
            }
            if matches!(&r.access, Access::Jwt(j) if j.modi.is_some()) {
                is.add(
                    format!("{rp}.access.jwt.modi"),
                    "a live stream cannot be a ModI route: ModI answers are read whole and signed",
                );
            }
        }
        AdapterConfig::Pagopa(c) => {
            for (f, m) in c.validate() {
                is.add(format!("{ap}.{f}"), m);
            }
        }
        AdapterConfig::Gpd(c) => {
            for (f, m) in c.validate() {
                is.add(format!("{ap}.{f}"), m);
            }
        }
        AdapterConfig::Siuss(c) => match &t.siuss {
            None => is.add(ap.clone(), "a SIUSS route needs the ente's `tenants[].siuss`"),
            Some(_) => {
                if r.access == Access::Public {
                    let who = if c.side == SiussSide::Inps {
                        "INPS's PDND voucher (`jwt`)"
                    } else {
                        "the back-office (`api_key` or `jwt`)"
                    };
                    is.add(format!("{rp}.access"), format!("SIUSS flows are personal data: admit {who}"));
                }
            }
        },
        AdapterConfig::SignalHub(c) => {
            for (f, m) in c.validate(t.pdnd.as_ref().map(|d| d.api_client_id.is_some())) {
                is.add(if f.is_empty() { ap.clone() } else { format!("{ap}.{f}") }, m);
            }
            if r.access == Access::Public {
                is.add(format!("{rp}.access"), "the Signal Hub route shows the bridge's state: use `jwt` or `api_key`");
            }
        }
        AdapterConfig::Soap(c) => {
            for (f, m) in c.validate() {
                is.add(format!("{ap}.{f}"), m);
            }
            mediated(&c.upstream, t, r, rp, is);
        }
        AdapterConfig::SoapService(c) => {
            for (f, m) in c.validate() {
                is.add(format!("{ap}.{f}"), m);
            }
            mediated(&c.upstream, t, r, rp, is);
        }
        AdapterConfig::Openapi(_) => {}
        AdapterConfig::Rest(c) => {
            for (f, m) in c.validate() {
                is.add(format!("{ap}.{f}"), m);
            }
            mediated(&c.upstream, t, r, rp, is);
        }
        AdapterConfig::Anpr(c) => {
            let purposes = t.pdnd.as_ref().map(|d| d.purposes.keys().map(String::as_str).collect());
            for (f, m) in c.validate(purposes) {
                is.add(if f.is_empty() { ap.clone() } else { format!("{ap}.{f}") }, m);
            }
            if let Some(k) = c.provider_keys.as_ref().filter(|k| !t.issuers.contains_key(k.as_str())) {
                is.add(format!("{ap}.provider_keys"), format!("`{k}` is not one of the ente's `issuers`"));
            }
            if r.access == Access::Public {
                is.add(format!("{rp}.access"), "ANPR is read on behalf of a known caller: use `jwt` or `api_key`");
            }
        }
    }
}

/// What a mediated route asks of its ente: the pool it names, and no ModI store-and-forward
/// (the mediated answer is not the back-office's to sign).
fn mediated(upstream: &str, t: &TenantConfig, r: &RouteConfig, rp: &str, is: &mut Issues) {
    if !t.upstreams.contains_key(upstream) {
        is.add(format!("{rp}.to.adapter.upstream"), format!("`{upstream}` is not one of the ente's upstreams"));
    }
    if matches!(&r.access, Access::Jwt(j) if j.modi.is_some()) {
        is.add(format!("{rp}.access.jwt.modi"), "mediated routes are not ModI routes yet");
    }
}
