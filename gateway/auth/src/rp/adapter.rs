//! The ente's login pages as a route target: `GET /oidc/login` (the chooser, or with `idp` the
//! start of a login), `GET /oidc/callback`, `GET /oidc/logout` (a page asking) and
//! `POST /oidc/logout` (the logout). Browsers get HTML (the
//! chooser, an error page naming the failed check and the trace id); other callers get
//! problem+json.

use super::{RelyingParty, RpError, LOGIN_PATH, LOGOUT_PATH};
use async_trait::async_trait;
use http::{HeaderValue, Method};
use serde_json::json;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use varco_config::{ProviderKind, OIDC_CALLBACK_PATH};
use varco_core::fetch::Fetch;
use varco_core::{Adapter, AdapterRequest, AdapterResponse, Answer, Problem, ProblemKind};

const CHOOSER: &str = include_str!("chooser.html");

/// The page texts, Italian first.
fn texts(lang: &str) -> serde_json::Value {
    if lang == "en" {
        json!({
            "title": "Log in", "skip": "Skip to content", "language": "Language",
            "heading": "Log in to the online services",
            "intro": "Choose how to prove who you are. You will come back here once logged in.",
            "spid": "Log in with SPID", "spid_list": "SPID identity providers",
            "spid_help": "SPID is the public digital identity system.", "spid_more": "How to get SPID",
            "cie": "Log in with CIE",
            "cie_help": "With your electronic identity card (CIE) and its PIN, on a phone or a card reader.",
            "footer": "The login is handled by the identity provider you choose; this ente receives only the data it asks for.",
            "error": "The login could not be completed", "again": "Try again", "trace": "Reference for support",
            "logout_title": "Log out", "logout_question": "Do you want to leave the online services?",
            "logout_button": "Log out",
        })
    } else {
        json!({
            "title": "Accedi", "skip": "Vai al contenuto", "language": "Lingua",
            "heading": "Accedi ai servizi online",
            "intro": "Scegli come identificarti. Dopo l'accesso tornerai a questa pagina.",
            "spid": "Entra con SPID", "spid_list": "Gestori di identità SPID",
            "spid_help": "SPID è il sistema pubblico di identità digitale.", "spid_more": "Come ottenere SPID",
            "cie": "Entra con CIE",
            "cie_help": "Con la carta d'identità elettronica (CIE) e il suo PIN, da smartphone o con un lettore.",
            "footer": "L'accesso avviene presso il gestore di identità che scegli; l'ente riceve solo i dati che richiede.",
            "error": "Non è stato possibile completare l'accesso", "again": "Riprova", "trace": "Riferimento per l'assistenza",
            "logout_title": "Esci", "logout_question": "Vuoi uscire dai servizi online?",
            "logout_button": "Esci",
        })
    }
}

const ERROR_PAGE: &str = r#"<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ t.error }}</title>
<style>body{margin:0;font-family:"Titillium Web","Segoe UI",Geneva,Tahoma,sans-serif;color:#17324d}
header{background:#0066cc;color:#fff}.wrap{max-width:48rem;margin:0 auto;padding:1rem 1.5rem}
h1{font-size:1.75rem}p.detail{border-left:4px solid #d9364f;padding-left:1rem}a{color:#0066cc}code{font-size:.9rem}</style>
</head><body><header><div class="wrap"><strong>{{ ente }}</strong></div></header>
<main class="wrap"><h1>{{ t.error }}</h1><p class="detail">{{ detail }}</p>
<p><a href="{{ again }}">{{ t.again }}</a></p>
<p>{{ t.trace }}: <code>{{ trace_id }}</code> · <code>{{ type }}</code></p></main></body></html>"#;

/// `GET /oidc/logout`: a page whose button logs out with a `POST`. A link alone never ends a
/// session: the cookie is `SameSite=Lax`, so another site's form cannot post with it, but
/// its link (a top-level `GET`) would carry it.
const LOGOUT_PAGE: &str = r#"<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ t.logout_title }} – {{ ente }}</title>
<style>body{margin:0;font-family:"Titillium Web","Segoe UI",Geneva,Tahoma,sans-serif;color:#17324d}
header{background:#0066cc;color:#fff}.wrap{max-width:48rem;margin:0 auto;padding:1rem 1.5rem}
button{min-height:3rem;padding:.5rem 1.5rem;border-radius:4px;background:#0066cc;color:#fff;border:0;font-size:1.125rem;font-weight:600;cursor:pointer}
button:focus-visible{outline:3px solid #ff9900;outline-offset:2px}</style>
</head><body><header><div class="wrap"><strong>{{ ente }}</strong></div></header>
<main class="wrap"><h1>{{ t.logout_question }}</h1>
<form method="post" action="{{ action }}"><input type="hidden" name="return_to" value="{{ return_to }}">
<button type="submit" id="logout">{{ t.logout_button }}</button></form></main></body></html>"#;

/// The login, callback and logout of one ente.
#[derive(Debug)]
pub struct OidcLoginAdapter {
    pub rp: Arc<RelyingParty>,
    pub fetch: Arc<dyn Fetch>,
    /// The ente's name on its pages.
    pub ente: String,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The problem a refused login becomes.
pub fn problem(e: &RpError) -> Problem {
    let kind = match e {
        RpError::BadRequest(_) => ProblemKind::BadRequest,
        RpError::Untrusted { .. } => ProblemKind::ProviderUntrusted,
        RpError::Failed(_) => ProblemKind::LoginFailed,
        RpError::Store => ProblemKind::SessionStoreUnavailable,
    };
    Problem::new(kind, e.to_string())
}

fn wants_html(req: &AdapterRequest<'_>) -> bool {
    req.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

fn lang(req: &AdapterRequest<'_>, q: &[(String, String)]) -> &'static str {
    match q.iter().find(|(k, _)| k == "lang").map(|(_, v)| v.as_str()) {
        Some("en") => "en",
        Some(_) => "it",
        None => {
            let al = req.headers.get(http::header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
            if al.trim_start().to_ascii_lowercase().starts_with("en") {
                "en"
            } else {
                "it"
            }
        }
    }
}

fn page(status: u16, html: String) -> AdapterResponse {
    let mut r = AdapterResponse::json(status, "text/html; charset=utf-8", html.into_bytes());
    r.headers.push((http::header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    // The pages need no script and no other origin: nothing else may run or frame them.
    r.headers.push((
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    ));
    r
}

fn redirect(to: super::Redirect) -> AdapterResponse {
    let mut r = AdapterResponse { status: 302, headers: Vec::new(), body: bytes::Bytes::new() };
    if let Ok(v) = HeaderValue::from_str(&to.location) {
        r.headers.push((http::header::LOCATION, v));
    }
    for c in to.cookies {
        if let Ok(mut v) = HeaderValue::from_str(&c) {
            v.set_sensitive(true);
            r.headers.push((http::header::SET_COOKIE, v));
        }
    }
    r.headers.push((http::header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    r
}

fn render(template: &str, ctx: serde_json::Value) -> Result<String, Problem> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.render_str(template, ctx).map_err(|e| Problem::new(ProblemKind::Internal, format!("page: {e}")))
}

impl OidcLoginAdapter {
    fn chooser(&self, lang: &str, return_to: &str, acr: Option<u8>) -> Result<AdapterResponse, Problem> {
        let base = self.rp.base();
        let href = |op: &str| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("idp", op).append_pair("return_to", return_to);
            if let Some(a) = acr {
                q.append_pair("acr", &a.to_string());
            }
            format!("{base}{LOGIN_PATH}?{}", q.finish())
        };
        let list = |k| {
            self.rp.chooser_entries(k).map(|p| json!({"name": p.name, "href": href(&p.entity_id)})).collect::<Vec<_>>()
        };
        let mut other = url::form_urlencoded::Serializer::new(String::new());
        other.append_pair("return_to", return_to).append_pair("lang", if lang == "it" { "en" } else { "it" });
        let html = render(
            CHOOSER,
            json!({
                "lang": lang, "t": texts(lang), "ente": self.ente,
                "spid": list(ProviderKind::Spid), "cie": list(ProviderKind::Cie),
                "other_lang_href": format!("{base}{LOGIN_PATH}?{}", other.finish()),
            }),
        )?;
        Ok(page(200, html))
    }

    /// A refusal: an HTML page for a browser, problem+json otherwise.
    fn refuse(&self, req: &AdapterRequest<'_>, lang: &str, e: &RpError) -> Result<Answer, Problem> {
        tracing::info!(tenant = %self.rp.tenant, error = %e, "login refused");
        let p = problem(e);
        if !wants_html(req) {
            return Err(p);
        }
        let trace_id = req.traceparent.get(3..35).unwrap_or("");
        let html = render(
            ERROR_PAGE,
            json!({
                "lang": lang, "t": texts(lang), "ente": self.ente, "detail": p.detail,
                "trace_id": trace_id, "type": p.kind.type_uri(),
                "again": format!("{}{LOGIN_PATH}", self.rp.base()),
            }),
        )?;
        Ok(Answer::Body(page(p.status(), html)))
    }
}

#[async_trait]
impl Adapter for OidcLoginAdapter {
    fn kind(&self) -> &'static str {
        "oidc_login"
    }

    async fn call(&self, req: AdapterRequest<'_>) -> Result<Answer, Problem> {
        let q: Vec<(String, String)> =
            url::form_urlencoded::parse(req.query.unwrap_or("").as_bytes()).into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let lang = lang(&req, &q);
        let fetch = self.fetch.as_ref();
        match req.path {
            LOGIN_PATH => {
                let acr = get("acr").and_then(|a| a.parse::<u8>().ok()).filter(|a| (1..=3).contains(a));
                let Some(rt) = self.rp.safe_return_to(get("return_to")) else {
                    return self.refuse(
                        &req,
                        lang,
                        &RpError::BadRequest("`return_to` must be a path of this ente".into()),
                    );
                };
                match get("idp") {
                    None => Ok(Answer::Body(self.chooser(lang, &rt, acr)?)),
                    Some(op) => match self.rp.begin(fetch, req.headers, op, Some(&rt), acr, now()).await {
                        Ok(r) => Ok(Answer::Body(redirect(r))),
                        Err(e) => self.refuse(&req, lang, &e),
                    },
                }
            }
            OIDC_CALLBACK_PATH => match self.rp.finish(fetch, req.headers, req.query, now()).await {
                Ok(r) => {
                    tracing::info!(tenant = %self.rp.tenant, "citizen logged in");
                    Ok(Answer::Body(redirect(r)))
                }
                Err(e) => self.refuse(&req, lang, &e),
            },
            LOGOUT_PATH if *req.method == Method::GET => {
                let rt = self.rp.safe_return_to(get("return_to")).unwrap_or_else(|| format!("{}/", self.rp.base()));
                let html = render(
                    LOGOUT_PAGE,
                    json!({"lang": lang, "t": texts(lang), "ente": self.ente, "return_to": rt,
                           "action": format!("{}{LOGOUT_PATH}", self.rp.base())}),
                )?;
                Ok(Answer::Body(page(200, html)))
            }
            LOGOUT_PATH if *req.method == Method::POST => {
                // `return_to` from the page's form, or from the query of an API call.
                let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body).into_owned().collect();
                let rt = form.iter().find(|(k, _)| k == "return_to").map(|(_, v)| v.as_str()).or(get("return_to"));
                Ok(Answer::Body(redirect(self.rp.logout(fetch, req.headers, rt, now()).await)))
            }
            _ => Err(Problem::new(ProblemKind::NotFound, "no such login page")),
        }
    }
}
