//! TLS material: per-hostname certificates (SNI) and client-certificate verification for
//! listeners, CA bundles for upstreams. Everything is loaded and checked when the server is
//! built, so a bad file is a clear error at start, never a panic in a handshake.

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::tls::CaType;
use pingora_core::utils::tls::{parse_x509, WrappedX509};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use varco_config::{ClientAuth, TlsListenerConfig};

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{}` is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| format!("`{}` holds an invalid certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| format!("`{}` is not a PEM key file: {e}", path.display()))?
        .ok_or_else(|| format!("`{}` holds no private key", path.display()))
}

/// A CA bundle for upstream verification.
pub fn load_ca(path: &Path) -> Result<Arc<CaType>, String> {
    let certs = read_certs(path)?;
    let wrapped: Vec<WrappedX509> = certs.into_iter().map(|c| WrappedX509::new(c.to_vec(), parse_x509)).collect();
    Ok(Arc::from(wrapped.into_boxed_slice()))
}

/// A client certificate for an upstream (mutual TLS), checked now: the key must parse and
/// must be one rustls can sign with.
pub fn load_client_cert(cert: &Path, key: &Path) -> Result<Arc<pingora_core::utils::tls::CertKey>, String> {
    let certs = read_certs(cert)?;
    let k = read_key(key)?;
    rustls::crypto::ring::sign::any_supported_type(&k)
        .map_err(|e| format!("`{}` is not a key varco can sign with: {e}", key.display()))?;
    Ok(Arc::new(pingora_core::utils::tls::CertKey::new(
        certs.into_iter().map(|c| c.to_vec()).collect(),
        k.secret_der().to_vec(),
    )))
}

/// Chooses the certificate by SNI; the first configured one answers unknown or missing names.
#[derive(Debug)]
struct SniResolver {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = hello.server_name().and_then(|n| self.by_host.get(&n.to_ascii_lowercase()));
        Some(key.unwrap_or(&self.default).clone())
    }
}

/// Builds the TLS settings of a listener.
pub fn listener_settings(cfg: &TlsListenerConfig, http2: bool) -> Result<TlsSettings, String> {
    pingora_rustls::install_default_crypto_provider();
    let provider = rustls::crypto::ring::default_provider();
    let mut by_host = HashMap::new();
    let mut default = None;
    for c in &cfg.certificates {
        let certs = read_certs(&c.cert)?;
        let key = read_key(&c.key)?;
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("`{}`: unsupported private key: {e}", c.key.display()))?;
        let ck = Arc::new(CertifiedKey::new(certs, signer));
        ck.keys_match().map_err(|e| format!("`{}` does not match `{}`: {e}", c.key.display(), c.cert.display()))?;
        for h in &c.hosts {
            by_host.insert(h.to_ascii_lowercase(), ck.clone());
        }
        default.get_or_insert(ck);
    }
    let default = default.ok_or("a TLS listener needs at least one certificate")?;
    let mut settings = TlsSettings::intermediate("", "").map_err(|e| e.to_string())?;
    settings.set_cert_resolver(Arc::new(SniResolver { by_host, default }));
    if let (Some(ca), mode) = (&cfg.client_ca, cfg.client_auth) {
        if mode != ClientAuth::None {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("`{}`: {e}", ca.display()))?;
            }
            let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider));
            let builder = if mode == ClientAuth::Optional { builder.allow_unauthenticated() } else { builder };
            settings.set_client_cert_verifier(builder.build().map_err(|e| format!("client_ca: {e}"))?);
        }
    }
    if http2 {
        settings.enable_h2();
    }
    Ok(settings)
}
