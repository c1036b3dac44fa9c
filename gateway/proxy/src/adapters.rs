//! The one place where an adapter's configuration becomes its code. Each `kind` is one match
//! arm: explicit and greppable, no registry. What an adapter may use comes in the
//! [`AdapterContext`]; an adapter that needs something new gets a field here, not a global.

use crate::registries::Registries;
use crate::secrets::{read_secret, BuildError};
use std::sync::Arc;
use varco_config::{AdapterConfig, Config};
use varco_core::{Adapter, HealthView};
use varco_events::stream::{EventStreamAdapter, StreamAcl, StreamRoute};

/// What an adapter is built with: its ente, the route, and the process's shared parts.
pub struct AdapterContext<'a> {
    /// The whole configuration (the event ACL reads every ente's grants).
    pub config: &'a Config,
    /// The ente's codice IPA.
    pub tenant: &'a str,
    pub route: &'a str,
    /// Where errors are reported (`tenants[0].routes[2].to.adapter`).
    pub path: &'a str,
    pub registries: &'a Registries,
    /// The ente's upstream and issuer health (the `status` adapter).
    pub health: &'a Arc<dyn HealthView>,
    /// The ente's signing keys, when it has some (the `jwks` adapter publishes them).
    pub keys: Option<&'a Arc<varco_auth::KeySet>>,
    /// The process's outbound client (webhooks, back-offices, GPD).
    pub client: &'a varco_outbound::HttpsClient,
    /// The ente's SPID/CIE relying party, when it has `oidc` (the `oidc_login` adapter).
    pub rp: Option<&'a Arc<varco_auth::rp::RelyingParty>>,
}

/// A built adapter, and for event-stream routes the state their streams share across reloads.
pub struct Built {
    pub adapter: Arc<dyn Adapter>,
    pub stream: Option<(Arc<StreamRoute>, Arc<StreamAcl>)>,
    /// For `signal_hub` routes that pull: (key, fingerprint, puller), started at commit.
    pub puller: Option<(String, String, Arc<varco_adapter_signalhub::Puller>)>,
}

/// Builds the adapter of `cfg` (I/O allowed: secrets, the event bus).
pub fn build(cfg: &AdapterConfig, cx: &AdapterContext<'_>) -> Result<Built, BuildError> {
    let err = |m: String| BuildError { path: cx.path.to_owned(), message: m };
    let events = &cx.config.server.events;
    let plain = |adapter: Arc<dyn Adapter>| Ok(Built { adapter, stream: None, puller: None });
    match cfg {
        AdapterConfig::Status(s) => plain(Arc::new(varco_adapter_status::StatusAdapter::build(s, cx.health.clone()))),
        AdapterConfig::FederationEntity(_) => {
            let found = cx.config.tenants.iter().enumerate().find(|(_, t)| t.id == cx.tenant);
            let Some((i, t, o)) = found.and_then(|(i, t)| t.oidc.as_deref().map(|o| (i, t, o))) else {
                return Err(err("needs tenants[].oidc".into()));
            };
            let at = |f: &str| format!("tenants[{i}].oidc.{f}");
            let federation = crate::runtime::read_keys(&o.federation_keys, &at("federation_keys"))?;
            let signing = crate::runtime::read_keys(&o.signing_keys, &at("signing_keys"))?;
            let encryption = crate::runtime::read_keys(&o.encryption_keys, &at("encryption_keys"))?;
            let ec = varco_auth::EntityConfiguration::new(o, &t.name, federation, &signing, &encryption)
                .map_err(|m| BuildError { path: format!("tenants[{i}].oidc"), message: m })?;
            plain(Arc::new(varco_auth::EntityConfigurationAdapter(Arc::new(ec))))
        }
        AdapterConfig::OidcLogin(_) => {
            let rp = cx.rp.ok_or_else(|| err("needs tenants[].oidc".into()))?;
            let ente = cx.config.tenants.iter().find(|t| t.id == cx.tenant).map_or("", |t| t.name.as_str());
            plain(Arc::new(varco_auth::rp::OidcLoginAdapter {
                rp: rp.clone(),
                fetch: Arc::new(varco_outbound::Fetcher::new(cx.client.clone())),
                ente: ente.to_owned(),
            }))
        }
        AdapterConfig::Jwks(_) => {
            let keys =
                cx.keys.ok_or_else(|| err("needs a signing key (tenants[].keys or server.identity_token)".into()))?;
            plain(Arc::new(varco_auth::JwksAdapter(keys.jwks.clone())))
        }
        AdapterConfig::Events(_) => {
            plain(Arc::new(varco_events::EventsAdapter { bus: cx.registries.events.open(events).map_err(err)? }))
        }
        AdapterConfig::EventStream(c) => {
            let a = EventStreamAdapter {
                bus: cx.registries.events.open(events).map_err(err)?,
                acl: Arc::new(StreamAcl::for_tenant(cx.config, cx.tenant)),
                heartbeat: c.heartbeat.0,
                max_streams: c.max_streams as usize,
                route: cx.registries.streams.get(cx.tenant, cx.route),
            };
            let stream = Some((a.route.clone(), a.acl.clone()));
            Ok(Built { adapter: Arc::new(a), stream, puller: None })
        }
        AdapterConfig::Pagopa(c) => {
            let bus = cx.registries.events.open(events).map_err(err)?;
            let redis = cx.registries.redis.clone();
            let a =
                varco_adapter_pagopa::PagopaAdapter::build(cx.tenant, c, bus, cx.client.clone(), redis).map_err(err)?;
            plain(Arc::new(a))
        }
        AdapterConfig::Gpd(c) => {
            let key = read_secret(&format!("{}.subscription_key", cx.path), &c.subscription_key)?;
            plain(Arc::new(
                varco_adapter_pagopa::gpd::GpdAdapter::build(c, &key, cx.client.clone())
                    .map_err(err)?
                    .with_audit(recorder(cx)),
            ))
        }
        AdapterConfig::Openapi(_) => {
            let doc = crate::mediation::openapi(cx.config, cx.tenant)?;
            let body = serde_json::to_vec_pretty(&doc).map_err(|e| err(e.to_string()))?;
            plain(Arc::new(varco_adapter_mediation::openapi::Published { body: body.into() }))
        }
        // Mediators, built by `mediation::build` with their upstream pool.
        AdapterConfig::Soap(_) | AdapterConfig::SoapService(_) | AdapterConfig::Rest(_) => {
            Err(err("a mediated route has no adapter".into()))
        }
        AdapterConfig::Anpr(c) => plain(Arc::new(anpr(c, cx)?)),
        AdapterConfig::SignalHub(c) => signal_hub(c, cx),
        AdapterConfig::Siuss(c) => {
            let tenant =
                cx.config.tenants.iter().find(|t| t.id == cx.tenant).ok_or_else(|| err("unknown ente".into()))?;
            let s = tenant.siuss.as_ref().ok_or_else(|| err("the ente has no `siuss`".into()))?;
            let ente = varco_adapter_siuss::Ente {
                codice: s.codice_ente.clone(),
                denominazione: s.denominazione.clone(),
                indirizzo: s.indirizzo.clone().unwrap_or_else(|| s.codice_ente.clone()),
                cf_operatore: s.cf_operatore.clone(),
            };
            let a = varco_adapter_siuss::SiussAdapter {
                side: c.side,
                tenant: cx.tenant.to_owned(),
                store: cx.registries.siuss.get(&s.dir.join(cx.tenant), &s.codice_ente).map_err(err)?,
                ente,
                xsd: varco_adapter_siuss::xsd::Xsd::shared().map_err(err)?,
                bus: cx.registries.events.open(events).map_err(err)?,
                retention_days: s.retention_days,
            };
            if let Some(days) = s.retention_days {
                let removed = a.store.sweep(days).map_err(err)?;
                if removed > 0 {
                    tracing::info!(tenant = %cx.tenant, removed, "SIUSS: answered flows past retention removed");
                }
            }
            plain(Arc::new(a))
        }
    }
}

/// The `anpr` adapter: the ente's PDND client (vouchers kept across reloads), and for each
/// configured e-service its endpoint and the check of ANPR's signed answers.
fn anpr(c: &varco_config::AnprConfig, cx: &AdapterContext<'_>) -> Result<varco_adapter_anpr::AnprAdapter, BuildError> {
    use varco_adapter_anpr::{AnprAdapter, Service};
    use varco_config::{Dur, IntegrityPattern, ModiAccess};
    let err = |m: String| BuildError { path: cx.path.to_owned(), message: m };
    let tenant = cx.config.tenants.iter().find(|t| t.id == cx.tenant).ok_or_else(|| err("unknown ente".into()))?;
    let pdnd = tenant.pdnd.as_ref().ok_or_else(|| err("the ente has no `pdnd` client".into()))?;
    let keys = cx.keys.ok_or_else(|| err("the ente's PDND client needs `tenants[].keys`".into()))?;
    let vouchers = cx.registries.vouchers.get(cx.tenant, pdnd, keys, cx.client).map_err(err)?;
    let verifier = match &c.provider_keys {
        None => None,
        Some(name) => {
            let icfg =
                tenant.issuers.get(name).ok_or_else(|| err(format!("provider_keys: unknown issuer `{name}`")))?;
            let issuer = cx.registries.issuers.get(cx.tenant, name, icfg).map_err(err)?;
            // ANPR signs its answer for the consumer that called: the ente's PDND client.
            let access = ModiAccess {
                integrity: Some(IntegrityPattern::Rest02),
                audit: None,
                audience: pdnd.client_id.clone(),
                keys_issuer: Some(name.clone()),
                trust_anchors: None,
                algorithms: vec!["RS256".into(), "ES256".into()],
                leeway: Dur::secs(30),
                sign_responses: false,
            };
            Some(Arc::new(varco_auth::ModiVerifier::build(cx.tenant, &access, Some(issuer), None).map_err(err)?))
        }
    };
    let replay = Arc::new(varco_auth::ReplayGuard::default());
    let service = |e: &Option<varco_config::EserviceConfig>, code: &str| -> Result<Option<Service>, BuildError> {
        let Some(e) = e else { return Ok(None) };
        let purpose_id =
            vouchers.purpose_id(&e.purpose).ok_or_else(|| err(format!("unknown purpose `{}`", e.purpose)))?;
        let url = format!("{}/anpr-service-e002", e.url.trim_end_matches('/'));
        let call = varco_outbound::Eservice {
            url: url.parse().map_err(|x| err(format!("{url}: {x}")))?,
            audience: e.audience.clone().unwrap_or_else(|| e.url.clone()),
            purpose_id: purpose_id.to_owned(),
            integrity: true,
            audit: e.audit,
            timeout: c.timeout.0,
            vouchers: vouchers.clone(),
            verifier: verifier.clone(),
            http: cx.client.clone(),
            fetch: varco_outbound::Fetcher::new(cx.client.clone()),
            replay: replay.clone(),
            // The adapter keeps a richer record of its own (operator, idOperazioneClient).
            trail: None,
        };
        let ordered = e.ordered.unwrap_or(code == "C001");
        Ok(Some(Service {
            call,
            caso_uso: e.caso_uso.clone().unwrap_or_else(|| code.to_owned()),
            turn: ordered.then(|| tokio::sync::Mutex::new(())),
        }))
    };
    Ok(AnprAdapter::new(cx.tenant, c, service(&c.residenza, "C001")?, service(&c.famiglia, "C021")?)
        .with_audit(recorder(cx)))
}

/// A call to one of PDND's own services (Signal Hub) with the ente's API interop voucher (no
/// purpose) and no ModI on the body.
fn pdnd_call(
    cx: &AdapterContext<'_>,
    vouchers: &Arc<varco_outbound::VoucherClient>,
    url: String,
    timeout: std::time::Duration,
    route: &'static str,
) -> Result<varco_outbound::Eservice, BuildError> {
    let err = |m: String| BuildError { path: cx.path.to_owned(), message: m };
    Ok(varco_outbound::Eservice {
        url: url.parse().map_err(|x| err(format!("{url}: {x}")))?,
        audience: String::new(),
        purpose_id: String::new(),
        integrity: false,
        audit: false,
        timeout,
        vouchers: vouchers.clone(),
        verifier: None,
        http: cx.client.clone(),
        fetch: varco_outbound::Fetcher::new(cx.client.clone()),
        replay: Arc::new(varco_auth::ReplayGuard::default()),
        trail: recorder(cx).map(|r| (r, route)),
    })
}

/// The ente's recorder of outbound calls, when the audit trail is on.
fn recorder(cx: &AdapterContext<'_>) -> Option<varco_audit::Recorder> {
    cx.registries.audit.as_ref().map(|t| varco_audit::Recorder::new(cx.tenant, t.clone(), cx.keys.cloned()))
}

/// The `signal_hub` adapter: a depositor for the events its subscriptions hand over, and a
/// puller (started when the configuration is committed) publishing signals on the bus.
fn signal_hub(c: &varco_config::SignalHubConfig, cx: &AdapterContext<'_>) -> Result<Built, BuildError> {
    use varco_adapter_signalhub::{Depositor, Feed, Puller, SignalHubAdapter};
    let err = |m: String| BuildError { path: cx.path.to_owned(), message: m };
    let tenant = cx.config.tenants.iter().find(|t| t.id == cx.tenant).ok_or_else(|| err("unknown ente".into()))?;
    let pdnd = tenant.pdnd.as_ref().ok_or_else(|| err("the ente has no `pdnd` client".into()))?;
    let keys = cx.keys.ok_or_else(|| err("the ente's PDND client needs `tenants[].keys`".into()))?;
    let vouchers = cx.registries.vouchers.get(cx.tenant, pdnd, keys, cx.client).map_err(err)?;
    let base = |u: &str| u.trim_end_matches('/').to_owned();
    let deposit = match &c.deposit {
        None => None,
        Some(d) => {
            let seed = read_secret(&format!("{}.deposit.seed", cx.path), &d.seed)?;
            if seed.len() < 16 {
                return Err(err("deposit.seed: at least 16 characters".into()));
            }
            let call = pdnd_call(cx, &vouchers, format!("{}/signals", base(&d.url)), d.timeout.0, "signalhub:deposit")?;
            Some(Depositor::new(cx.tenant, call, &d.eservice_id, seed, d.signals.clone()))
        }
    };
    let mut puller = None;
    if let Some(p) = &c.pull {
        let bus = cx.registries.events.open(&cx.config.server.events).map_err(err)?;
        let mut feeds = Vec::new();
        for e in &p.eservices {
            let url = format!("{}/signals/{e}", base(&p.url));
            feeds.push(Feed {
                eservice_id: e.clone(),
                call: pdnd_call(cx, &vouchers, url, p.timeout.0, "signalhub:pull")?,
            });
        }
        let key = format!("{}/{}", cx.tenant, cx.route);
        let print = format!("{p:?}|{pdnd:?}|{}", String::from_utf8_lossy(&keys.jwks));
        let pl = Puller {
            tenant: cx.tenant.to_owned(),
            bus,
            feeds,
            interval: p.interval.0,
            size: p.size,
            dir: p.state_dir.clone(),
            status: Default::default(),
        };
        puller = Some((key, print, Arc::new(pl)));
    }
    let pullers = puller.as_ref().map(|(k, _, _)| (cx.registries.pullers.clone(), k.clone()));
    Ok(Built { adapter: Arc::new(SignalHubAdapter { deposit, pullers }), stream: None, puller })
}
