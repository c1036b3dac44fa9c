//! `server.tracing`: OpenTelemetry traces.

use crate::{Dur, SecretRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `server.tracing`: spans exported over OTLP/HTTP (protobuf). Tracing is off unless this
/// section is present or `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
/// set (`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off again). What the
/// section leaves out comes from the standard `OTEL_*` variables, then from the defaults below.
/// Changes need a restart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's traces URL (`http(s)://host:4318/v1/traces`). Default:
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`,
    /// else `http://localhost:4318/v1/traces`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Headers sent with each export (e.g. the collector's `authorization`), values from
    /// secrets. Default: `OTEL_EXPORTER_OTLP_TRACES_HEADERS` / `OTEL_EXPORTER_OTLP_HEADERS`.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretRef>,
    /// Which traces are recorded. Default: `OTEL_TRACES_SAMPLER` (with
    /// `OTEL_TRACES_SAMPLER_ARG`), else `parentbased_always_on`: a caller's sampled flag is
    /// followed, every trace varco starts is kept.
    #[serde(default)]
    pub sampler: Option<Sampler>,
    /// The share of traces kept by the `*traceidratio` samplers, 0 to 1. Default 1.
    #[serde(default)]
    pub ratio: Option<f64>,
    /// `service.name` of the spans. Default: `OTEL_SERVICE_NAME`, else `varco`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Finished spans waiting for export; when the queue is full new spans are dropped (and
    /// counted in `varco_tracing_spans_dropped_total`), requests never wait. Default:
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, else 2048.
    #[serde(default)]
    pub queue_size: Option<usize>,
    /// Spans per export request. Default: `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, else 512.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// The longest a finished span waits before it is exported. Default:
    /// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds), else 5s.
    #[serde(default)]
    pub batch_delay: Option<Dur>,
    /// One export request's time limit. Default: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` /
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else 10s.
    #[serde(default)]
    pub timeout: Option<Dur>,
}

/// The OpenTelemetry samplers (`OTEL_TRACES_SAMPLER`'s names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    Traceidratio,
    ParentbasedAlwaysOn,
    ParentbasedAlwaysOff,
    ParentbasedTraceidratio,
}

impl Sampler {
    /// From `OTEL_TRACES_SAMPLER`'s value.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "always_on" => Self::AlwaysOn,
            "always_off" => Self::AlwaysOff,
            "traceidratio" => Self::Traceidratio,
            "parentbased_always_on" => Self::ParentbasedAlwaysOn,
            "parentbased_always_off" => Self::ParentbasedAlwaysOff,
            "parentbased_traceidratio" => Self::ParentbasedTraceidratio,
            _ => return None,
        })
    }
}
