//! Where tracing's settings come from: `server.tracing`, then the standard `OTEL_*`
//! variables, then OpenTelemetry's defaults. Pure: the environment is a function.

use std::collections::BTreeMap;
use std::time::Duration;
use varco_config::{Sampler, TracingConfig};

/// Tracing's settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `None`: the OTLP exporter reads `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` or uses its default.
    pub endpoint: Option<String>,
    /// Secrets already read; `None` left to the exporter's `OTEL_*` headers.
    pub headers: BTreeMap<String, String>,
    pub sampler: Option<(Sampler, f64)>,
    pub service_name: String,
    pub queue_size: usize,
    pub batch_size: usize,
    pub batch_delay: Duration,
    pub timeout: Option<Duration>,
}

/// A bad `OTEL_*` value.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{var}: {message}")]
pub struct SettingsError {
    pub var: &'static str,
    pub message: String,
}

impl Settings {
    /// Tracing's settings, or `None` when tracing is off: no `server.tracing` and no OTLP
    /// endpoint in the environment, or the SDK disabled there. `headers` are the section's
    /// header values, their secrets already read.
    pub fn resolve(
        cfg: Option<&TracingConfig>,
        headers: BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        let set = |v: &str| env(v).filter(|s| !s.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
        {
            return Ok(None);
        }
        let from_env =
            set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        if cfg.is_none() && !from_env {
            return Ok(None);
        }
        let c = cfg.cloned().unwrap_or_default();
        let number = |var: &'static str| -> Result<Option<u64>, SettingsError> {
            set(var)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| SettingsError { var, message: format!("`{v}` is not a whole number") })
                })
                .transpose()
        };
        let sampler = match c.sampler {
            Some(s) => Some((s, c.ratio.unwrap_or(1.0))),
            None => match set("OTEL_TRACES_SAMPLER") {
                Some(name) => {
                    let s = Sampler::from_name(&name).ok_or_else(|| SettingsError {
                        var: "OTEL_TRACES_SAMPLER",
                        message: format!("`{name}` is not a sampler varco knows"),
                    })?;
                    let ratio = match set("OTEL_TRACES_SAMPLER_ARG") {
                        Some(a) => match a.trim().parse::<f64>() {
                            Ok(r) if (0.0..=1.0).contains(&r) => r,
                            _ => {
                                return Err(SettingsError {
                                    var: "OTEL_TRACES_SAMPLER_ARG",
                                    message: format!("`{a}` is not a share between 0 and 1"),
                                })
                            }
                        },
                        None => c.ratio.unwrap_or(1.0),
                    };
                    Some((s, ratio))
                }
                None => c.ratio.map(|r| (Sampler::ParentbasedTraceidratio, r)),
            },
        };
        let queue_size = match c.queue_size {
            Some(q) => q,
            None => number("OTEL_BSP_MAX_QUEUE_SIZE")?.map_or(2048, |n| n as usize),
        }
        .max(1);
        let batch_size = match c.batch_size {
            Some(b) => b,
            None => number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")?.map_or(512, |n| n as usize),
        }
        .clamp(1, queue_size);
        let batch_delay = match c.batch_delay {
            Some(d) => d.0,
            None => number("OTEL_BSP_SCHEDULE_DELAY")?.map_or(Duration::from_secs(5), Duration::from_millis),
        };
        let timeout = match c.timeout {
            Some(d) => Some(d.0),
            None => match number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")? {
                Some(ms) => Some(Duration::from_millis(ms)),
                None => number("OTEL_EXPORTER_OTLP_TIMEOUT")?.map(Duration::from_millis),
            },
        }
        .or(Some(Duration::from_secs(10)));
        let service_name = c.service_name.or_else(|| set("OTEL_SERVICE_NAME")).unwrap_or_else(|| "varco".to_owned());
        Ok(Some(Self {
            endpoint: c.endpoint,
            headers,
            sampler,
            service_name,
            queue_size,
            batch_size,
            batch_delay,
            timeout,
        }))
    }

    /// The SDK sampler, when varco chooses one (else the SDK reads `OTEL_TRACES_SAMPLER`).
    pub(crate) fn sampler(&self) -> Option<opentelemetry_sdk::trace::Sampler> {
        use opentelemetry_sdk::trace::Sampler as S;
        let (s, r) = self.sampler?;
        Some(match s {
            Sampler::AlwaysOn => S::AlwaysOn,
            Sampler::AlwaysOff => S::AlwaysOff,
            Sampler::Traceidratio => S::TraceIdRatioBased(r),
            Sampler::ParentbasedAlwaysOn => S::ParentBased(Box::new(S::AlwaysOn)),
            Sampler::ParentbasedAlwaysOff => S::ParentBased(Box::new(S::AlwaysOff)),
            Sampler::ParentbasedTraceidratio => S::ParentBased(Box::new(S::TraceIdRatioBased(r))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn off_without_a_section_or_an_endpoint() {
        assert_eq!(Settings::resolve(None, BTreeMap::new(), env(&[])), Ok(None));
        assert_eq!(Settings::resolve(None, BTreeMap::new(), env(&[("OTEL_SERVICE_NAME", "x")])), Ok(None));
        let on = Settings::resolve(None, BTreeMap::new(), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]));
        assert!(matches!(on, Ok(Some(_))));
        // The SDK switch wins over a configured section.
        let cfg = TracingConfig::default();
        for off in [&[("OTEL_SDK_DISABLED", "true")][..], &[("OTEL_TRACES_EXPORTER", "none")]] {
            let e = off.to_vec();
            let got = Settings::resolve(Some(&cfg), BTreeMap::new(), move |k| {
                e.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
            });
            assert_eq!(got, Ok(None));
        }
    }

    #[test]
    fn the_section_wins_over_the_environment_and_defaults_fill_the_rest() {
        let cfg = TracingConfig {
            sampler: Some(Sampler::Traceidratio),
            ratio: Some(0.25),
            service_name: Some("varco-bari".into()),
            queue_size: Some(100),
            batch_size: Some(1000),
            ..Default::default()
        };
        let e = env(&[
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OTEL_SERVICE_NAME", "other"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ]);
        let s = Settings::resolve(Some(&cfg), BTreeMap::new(), e).unwrap().unwrap();
        assert_eq!(s.sampler, Some((Sampler::Traceidratio, 0.25)));
        assert_eq!(s.service_name, "varco-bari");
        assert_eq!((s.queue_size, s.batch_size), (100, 100), "a batch never exceeds the queue");
        assert_eq!(s.batch_delay, Duration::from_millis(250));
        assert_eq!(s.timeout, Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_standard_variables_are_read_and_bad_ones_named() {
        let cfg = TracingConfig::default();
        let e = env(&[("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.01")]);
        let s = Settings::resolve(Some(&cfg), BTreeMap::new(), e).unwrap().unwrap();
        assert_eq!(s.sampler, Some((Sampler::ParentbasedTraceidratio, 0.01)));
        assert_eq!(s.service_name, "varco");
        let bad = Settings::resolve(Some(&cfg), BTreeMap::new(), env(&[("OTEL_TRACES_SAMPLER", "sometimes")]));
        assert_eq!(bad.unwrap_err().var, "OTEL_TRACES_SAMPLER");
        let bad = Settings::resolve(
            Some(&cfg),
            BTreeMap::new(),
            env(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]),
        );
        assert_eq!(bad.unwrap_err().var, "OTEL_TRACES_SAMPLER_ARG");
        let bad = Settings::resolve(Some(&cfg), BTreeMap::new(), env(&[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")]));
        assert_eq!(bad.unwrap_err().var, "OTEL_BSP_MAX_QUEUE_SIZE");
    }
}
