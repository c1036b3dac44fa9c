//! Configuration of every in-process adapter, by `kind` (`to: {adapter: {kind: ...}}`). The
//! types live here, not in the adapters' crates, so that the configuration depends on no
//! adapter; each adapter crate imports its own type from here, and the proxy's adapter
//! factory maps each variant to the code that builds it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::model_events::EventStreamConfig;
pub use crate::model_mediation::{
    check_template, Credentials, RestCall, RestMediationConfig, SoapConfig, SoapServiceConfig, SoapVersion,
};
pub use crate::model_pagopa::{GpdConfig, PagopaConfig};
pub use crate::model_pdnd::{AnprConfig, EserviceConfig, PdndClientConfig, TrackingDefaults};
pub use crate::model_signalhub::{DepositConfig, PullConfig, SignalHubConfig, SignalMapping, SignalType};
pub use crate::model_siuss::{SiussAdapterConfig, SiussConfig, SiussSide};

/// In-process adapters, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdapterConfig {
    /// ModI `GET /status` from the tenant's upstream health.
    Status(StatusConfig),
    /// The ente's public signing keys (`tenants[].keys`, or the `server.identity_token` key).
    Jwks(JwksConfig),
    /// `POST` CloudEvents (structured, batch or binary) into the durable outbox.
    Events(EventsAdapterConfig),
    /// `GET` live events the ente may read, as server-sent events (for apps).
    EventStream(EventStreamConfig),
    /// The ente's pagoPA station: paForNode SOAP backed by the back-office.
    Pagopa(PagopaConfig),
    /// Debt positions on pagoPA's GPD, for the ente's back-offices.
    Gpd(GpdConfig),
    /// ANPR (C001 residence, C021 family) for the ente's back-offices, through PDND.
    Anpr(Box<AnprConfig>),
    /// PDND Signal Hub: events deposited as signals, signals pulled into the bus.
    SignalHub(Box<SignalHubConfig>),
    /// The SIUSS e-service INPS polls, or the back-office's submissions to it.
    Siuss(SiussAdapterConfig),
    /// REST+JSON in front of one operation of a SOAP back-office (mediation).
    Soap(Box<SoapConfig>),
    /// A SOAP service varco publishes, each operation a call to a REST back-office.
    SoapService(Box<SoapServiceConfig>),
    /// A REST back-office whose request and answer are reshaped by templates (mediation).
    Rest(Box<RestMediationConfig>),
    /// The OpenAPI contract varco generates for the ente's mediated routes.
    Openapi(OpenapiConfig),
    /// The ente's OIDC Federation Entity Configuration (`tenants[].oidc`), signed afresh.
    FederationEntity(FederationEntityConfig),
    /// The ente's citizen login (`tenants[].oidc`): the chooser, the SPID/CIE login, its
    /// callback and logout, at `/oidc/login`, `/oidc/callback`, `/oidc/logout`.
    OidcLogin(OidcLoginConfig),
}

/// Configuration of the `oidc_login` adapter (nothing to set: `tenants[].oidc` says it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcLoginConfig {}

/// Configuration of the `federation_entity` adapter (nothing to set: `tenants[].oidc` says it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationEntityConfig {}

/// Configuration of the `openapi` adapter (nothing to set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenapiConfig {}

impl AdapterConfig {
    /// Whether the adapter is a mediator in front of an upstream pool of the ente.
    pub fn is_mediated(&self) -> bool {
        matches!(self, Self::Soap(_) | Self::SoapService(_) | Self::Rest(_))
    }
}

/// Configuration of the `events` publish adapter (nothing to set: the ente publishes with
/// `source` under `/enti/<its id>/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsAdapterConfig {}

/// Configuration of the `jwks` adapter (nothing to set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {}

/// Configuration of the `status` adapter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Seconds a caller should wait before asking again when unhealthy. Default 10.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u32,
}

fn default_retry_after() -> u32 {
    10
}

impl StatusConfig {
    /// Pure validation; returns (field, message) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        if self.retry_after_secs == 0 || self.retry_after_secs > 3600 {
            vec![("retry_after_secs".into(), "must be between 1 and 3600".into())]
        } else {
            Vec::new()
        }
    }
}
