//! The proxy's side of citizens' sessions (SPID/CIE login, `varco-auth`'s `rp`): building an
//! ente's relying party from its configuration, and the `Step::Session` check a route runs.

use crate::ctx::RequestCtx;
use crate::registries::Registries;
use crate::runtime::Runtime;
use crate::secrets::{read_secret, BuildError};
use http::HeaderValue;
use pingora_proxy::Session;
use std::sync::Arc;
use varco_auth::rp::{Decrypter, RelyingParty};
use varco_auth::KeySet;
use varco_core::{Problem, ProblemKind};

/// The ente's relying party (`t` at config path `p`): its keys read, the federation shared
/// across enti and reloads, sessions in the process's store.
pub(crate) fn relying_party(
    t: &varco_config::TenantConfig,
    p: &str,
    o: &varco_config::OidcRpConfig,
    federation: &varco_config::FederationConfig,
    reg: &Registries,
) -> Result<Arc<RelyingParty>, BuildError> {
    let err = |path: String, message: String| BuildError { path, message };
    let at = |f: &str| format!("{p}.oidc.{f}");
    let federation = reg.federation(federation).map_err(|m| err("federation".into(), m))?;
    let signing = KeySet::new(crate::runtime::read_keys(&o.signing_keys, &at("signing_keys"))?)
        .map_err(|m| err(at("signing_keys"), m))?;
    let mut decrypters = Vec::new();
    for (i, k) in o.encryption_keys.iter().enumerate() {
        let kp = format!("{}[{i}]", at("encryption_keys"));
        let pem = read_secret(&format!("{kp}.private_key"), &k.private_key)?;
        decrypters.push(Decrypter::from_pem(&k.kid, pem.as_bytes()).map_err(|m| err(kp.clone(), m))?);
    }
    let rp = RelyingParty::new(&t.id, o, signing, decrypters, federation, reg.sessions.clone())
        .map_err(|m| err(format!("{p}.oidc"), m))?;
    Ok(Arc::new(rp))
}

/// Why a citizen's request did not pass: a problem, or (for a browser) the login to go to.
pub(crate) enum Refusal {
    Problem(Problem),
    Login(HeaderValue),
}

/// A route for logged-in citizens: the session the cookie names, at the route's level. A
/// browser without one is sent to the ente's login (coming back here); other callers get 401.
/// The session cookies never reach the back-office.
pub(crate) async fn check(
    session: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Runtime,
    rp: &varco_auth::rp::RelyingParty,
    acr_min: Option<u8>,
) -> std::result::Result<(), Refusal> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let req = session.req_header();
    let found = rp.session(&req.headers, now).await.map_err(|e| Refusal::Problem(varco_auth::rp::problem(&e)))?;
    let level = found.as_ref().map_or(0, |s| varco_auth::jwt::acr_level(s.record.acr.as_deref()));
    let browser = matches!(req.method, http::Method::GET | http::Method::HEAD)
        && req.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    match found {
        Some(s) if acr_min.is_none_or(|m| level >= m) => {
            strip_session_cookies(session, rp);
            crate::pipeline::admit(ctx, rt, s.identity.clone()).map_err(Refusal::Problem)
        }
        _ if browser => {
            let here = std::str::from_utf8(req.raw_path()).unwrap_or("/");
            Err(match HeaderValue::from_str(&rp.login_location(here, acr_min)) {
                Ok(to) => Refusal::Login(to),
                Err(_) => Refusal::Problem(Problem::new(ProblemKind::BadRequest, "the path is not header text")),
            })
        }
        Some(_) => Err(Refusal::Problem(Problem::new(
            ProblemKind::Forbidden,
            format!("this route needs a SPID/CIE login of level {} or higher", acr_min.unwrap_or(0)),
        ))),
        None => Err(Refusal::Problem(Problem::new(
            ProblemKind::SessionRequired,
            format!("this route needs a citizen's session: log in at {}{}", rp.base(), varco_auth::rp::LOGIN_PATH),
        ))),
    }
}

/// Removes varco's own cookies from the request the back-office gets (a session id there could
/// be replayed by whoever reads the back-office's logs); the ente's other cookies stay.
fn strip_session_cookies(session: &mut Session, rp: &varco_auth::rp::RelyingParty) {
    let names = rp.cookie_names();
    let headers = &session.req_header().headers;
    if !headers.get_all(http::header::COOKIE).iter().any(|v| {
        v.to_str().is_ok_and(|v| v.split(';').any(|p| names.iter().any(|n| p.trim().split('=').next() == Some(n))))
    }) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !names.iter().any(|n| p.split('=').next() == Some(n)))
        .map(str::to_owned)
        .collect();
    let req = session.req_header_mut();
    req.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            let _ = req.insert_header(http::header::COOKIE, v);
        }
    }
}
