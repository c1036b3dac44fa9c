//! Hot reload: read, validate and build a new runtime, then swap it in one atomic step.
//! In-flight requests finish on the runtime they hold; an invalid config changes nothing.

use crate::runtime::Runtime;
use crate::shared::Shared;
use std::path::PathBuf;
use std::sync::Arc;
use varco_config::ConfigIssue;

/// Why a reload was refused; the old configuration keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read the configuration file: {0}")]
    Read(String),
    #[error("the new configuration is invalid ({} problem(s))", .0.len())]
    Invalid(Vec<ConfigIssue>),
    #[error("{0}")]
    Build(String),
    #[error("listeners, the admin listener or redis changed; restart varco to apply that")]
    ListenersChanged,
}

impl ReloadError {
    /// The problems as `path: message` lines.
    pub fn details(&self) -> Vec<String> {
        match self {
            Self::Invalid(is) => is.iter().map(|i| i.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// Reloads the configuration from its file (or the embedded default).
pub struct Reloader {
    pub path: Option<PathBuf>,
    /// Command-line addresses, applied to every configuration read again.
    pub overrides: varco_config::Overrides,
    pub shared: Arc<Shared>,
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(path: Option<PathBuf>, overrides: varco_config::Overrides, shared: Arc<Shared>) -> Self {
        Self { path, overrides, shared, lock: tokio::sync::Mutex::new(()) }
    }

    /// Returns the new generation.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.lock.lock().await;
        let res = self.reload_inner().await;
        let label = if res.is_ok() { "ok" } else { "rejected" };
        self.shared.metrics.reloads.with_label_values(&[label]).inc();
        match &res {
            Ok(g) => tracing::info!(generation = g, "configuration reloaded"),
            Err(e) => {
                tracing::warn!(problems = ?e.details(), "configuration reload rejected; the old one keeps serving")
            }
        }
        res
    }

    async fn reload_inner(&self) -> Result<u64, ReloadError> {
        let text = match &self.path {
            Some(p) => {
                tokio::fs::read_to_string(p).await.map_err(|e| ReloadError::Read(format!("{}: {e}", p.display())))?
            }
            None => varco_config::EMBEDDED_DEFAULT.to_owned(),
        };
        let mut cfg = varco_config::load_str(&text).map_err(ReloadError::Invalid)?;
        self.overrides.apply(&mut cfg);
        let old = self.shared.current.load_full();
        if cfg.listeners != old.config.listeners || cfg.admin != old.config.admin || cfg.redis != old.config.redis {
            return Err(ReloadError::ListenersChanged);
        }
        let generation = old.generation + 1;
        let shared = self.shared.clone();
        // Building resolves names and reads secrets: keep it off the async workers.
        let rt = tokio::task::spawn_blocking(move || {
            Runtime::build(cfg, generation, &shared.metrics, &shared.reg, Some(&old))
        })
        .await
        .map_err(|e| ReloadError::Build(e.to_string()))?
        .map_err(|e| ReloadError::Build(e.to_string()))?;
        let rt = Arc::new(rt);
        self.shared.current.store(rt.clone());
        rt.commit_streams(&self.shared.reg.streams);
        rt.commit_pullers(&self.shared.reg.pullers);
        self.shared.reg.retain_used();
        self.shared.metrics.generation.set(generation as i64);
        Ok(generation)
    }
}
