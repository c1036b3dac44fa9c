//! What a build reads from outside the configuration file (secrets from the environment or
//! files), and the error a build reports with the place in the file it concerns.

use varco_config::{Config, SecretRef};

/// Why a valid configuration could not be built (I/O: DNS, files, environment).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct BuildError {
    pub path: String,
    pub message: String,
}

pub(crate) fn build_err(path: impl Into<String>, message: impl Into<String>) -> BuildError {
    BuildError { path: path.into(), message: message.into() }
}

pub(crate) fn read_secret(path: &str, s: &SecretRef) -> Result<String, BuildError> {
    match s {
        SecretRef::Env(v) => {
            std::env::var(v).map_err(|_| build_err(path, format!("environment variable `{v}` is not set")))
        }
        SecretRef::File(f) => std::fs::read_to_string(f)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| build_err(path, format!("cannot read `{}`: {e}", f.display()))),
    }
}

/// Reads the admin token, if any.
pub fn admin_token(cfg: &Config) -> Result<Option<String>, BuildError> {
    cfg.admin.token.as_ref().map(|t| read_secret("admin.token", t)).transpose()
}
