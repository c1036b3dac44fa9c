//! CORS (the Fetch standard's CORS protocol) for a route: preflights answered by varco before
//! authentication (a browser sends them without credentials), and the `Access-Control-*`
//! headers on every answer to an admitted origin, errors included, so that a web app can read
//! the problem it got.

use http::{HeaderName, HeaderValue, Method};
use varco_config::CorsConfig;
use varco_core::{Problem, ProblemKind};

static ALLOW_ORIGIN: HeaderName = HeaderName::from_static("access-control-allow-origin");
static ALLOW_METHODS: HeaderName = HeaderName::from_static("access-control-allow-methods");
static ALLOW_HEADERS: HeaderName = HeaderName::from_static("access-control-allow-headers");
static ALLOW_CREDENTIALS: HeaderName = HeaderName::from_static("access-control-allow-credentials");
static EXPOSE_HEADERS: HeaderName = HeaderName::from_static("access-control-expose-headers");
static MAX_AGE: HeaderName = HeaderName::from_static("access-control-max-age");

/// The headers an answer varies on (added to `Vary`).
const VARY_ACTUAL: &str = "Origin";
const VARY_PREFLIGHT: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// A route's CORS policy, built once.
#[derive(Debug)]
pub struct Cors {
    /// `None`: any origin (`*`).
    origins: Option<Vec<String>>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    headers: Vec<HeaderName>,
    headers_value: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

/// Headers to add to an answer.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

impl Cors {
    /// The policy of `cfg` on a route with `route_methods` (the default `allow_methods`).
    pub fn build(cfg: &CorsConfig, route_methods: &[String]) -> Result<Self, String> {
        let names = if cfg.allow_methods.is_empty() { route_methods } else { &cfg.allow_methods };
        let methods: Vec<Method> = names
            .iter()
            .map(|m| m.parse::<Method>().map_err(|_| format!("`{m}` is not a method")))
            .collect::<Result<_, _>>()?;
        let header_list = |l: &[String]| -> Result<Vec<HeaderName>, String> {
            l.iter()
                .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("`{h}` is not a header name")))
                .collect()
        };
        let headers = header_list(&cfg.allow_headers)?;
        let join = |l: &[String]| -> Result<Option<HeaderValue>, String> {
            if l.is_empty() {
                return Ok(None);
            }
            HeaderValue::from_str(&l.join(", ")).map(Some).map_err(|e| e.to_string())
        };
        header_list(&cfg.expose_headers)?;
        Ok(Self {
            origins: (!cfg.allow_origins.iter().any(|o| o == "*")).then(|| cfg.allow_origins.clone()),
            methods_value: HeaderValue::from_str(&names.join(", ")).map_err(|e| e.to_string())?,
            methods,
            headers_value: join(&cfg.allow_headers)?,
            headers,
            expose: join(&cfg.expose_headers)?,
            credentials: cfg.allow_credentials,
            max_age: HeaderValue::from(cfg.max_age.0.as_secs()),
        })
    }

    fn admits(&self, origin: &HeaderValue) -> bool {
        match &self.origins {
            None => true,
            // Origins are compared exactly (scheme, host and port), as browsers send them.
            Some(list) => origin.to_str().is_ok_and(|o| list.iter().any(|a| a == o)),
        }
    }

    fn origin_headers(&self, origin: &HeaderValue, vary: &'static str) -> Headers {
        let allow = match self.origins {
            // Any origin without credentials: `*` (cacheable for everyone).
            None if !self.credentials => HeaderValue::from_static("*"),
            _ => origin.clone(),
        };
        let mut h = vec![(ALLOW_ORIGIN.clone(), allow), (http::header::VARY, HeaderValue::from_static(vary))];
        if self.credentials {
            h.push((ALLOW_CREDENTIALS.clone(), HeaderValue::from_static("true")));
        }
        h
    }

    /// The headers of any answer to a request from `origin`; `None` for an origin not admitted
    /// (the answer then carries none, and the browser keeps it from the page).
    pub fn actual(&self, origin: &HeaderValue) -> Option<Headers> {
        if !self.admits(origin) {
            return None;
        }
        let mut h = self.origin_headers(origin, VARY_ACTUAL);
        if let Some(e) = &self.expose {
            h.push((EXPOSE_HEADERS.clone(), e.clone()));
        }
        Some(h)
    }

    /// The answer to a preflight: its headers, or why the call may not be made.
    pub fn preflight(
        &self,
        origin: &HeaderValue,
        method: &Method,
        request_headers: Option<&HeaderValue>,
    ) -> Result<Headers, Problem> {
        let refuse = |d: String| Err(Problem::new(ProblemKind::Forbidden, d));
        if !self.admits(origin) {
            return refuse("this origin may not call this route from a browser (CORS)".into());
        }
        if !self.methods.contains(method) {
            return refuse(format!(
                "{method} is not allowed from a browser here (CORS allows {:?})",
                self.methods_value
            ));
        }
        if let Some(asked) = request_headers {
            let text = asked
                .to_str()
                .map_err(|_| Problem::new(ProblemKind::BadRequest, "Access-Control-Request-Headers is not text"))?;
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let ok = HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| self.headers.contains(&n));
                if !ok {
                    return refuse(format!("the header `{name}` may not be sent from a browser here (CORS)"));
                }
            }
        }
        let mut h = self.origin_headers(origin, VARY_PREFLIGHT);
        h.push((ALLOW_METHODS.clone(), self.methods_value.clone()));
        if let Some(v) = &self.headers_value {
            h.push((ALLOW_HEADERS.clone(), v.clone()));
        }
        h.push((MAX_AGE.clone(), self.max_age.clone()));
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        let cfg: CorsConfig = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        Cors::build(&cfg, &["GET".into(), "POST".into()]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn get<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.to_str().ok())
    }

    const APP: HeaderValue = HeaderValue::from_static("https://app.comune.macerata.it");

    #[test]
    fn a_listed_origin_is_echoed_and_others_get_nothing() {
        let c = cors("{allow_origins: [\"https://app.comune.macerata.it\"], allow_credentials: true}");
        let h = c.actual(&APP).unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://app.comune.macerata.it"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "vary"), Some("Origin"));
        assert!(get(&h, "access-control-expose-headers").unwrap().contains("X-RateLimit-Remaining"));
        assert!(c.actual(&HeaderValue::from_static("https://evil.example")).is_none());
        assert!(c.actual(&HeaderValue::from_static("http://app.comune.macerata.it")).is_none(), "scheme counts");
        assert!(c.actual(&HeaderValue::from_static("https://app.comune.macerata.it:8443")).is_none(), "port counts");
        assert!(c.actual(&HeaderValue::from_static("null")).is_none());
    }

    #[test]
    fn any_origin_is_a_star_without_credentials() {
        let c = cors("{allow_origins: [\"*\"]}");
        let h = c.actual(&HeaderValue::from_static("https://whoever.example")).unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
    }

    #[test]
    fn preflights_check_origin_method_and_headers() {
        let c = cors("{allow_origins: [\"https://app.comune.macerata.it\"], allow_headers: [Authorization, Content-Type], max_age: 1h}");
        let ok =
            c.preflight(&APP, &Method::POST, Some(&HeaderValue::from_static("content-type, authorization"))).unwrap();
        assert_eq!(get(&ok, "access-control-allow-methods"), Some("GET, POST"), "the route's methods by default");
        assert_eq!(get(&ok, "access-control-allow-headers"), Some("Authorization, Content-Type"));
        assert_eq!(get(&ok, "access-control-max-age"), Some("3600"));
        assert!(get(&ok, "vary").unwrap().contains("Access-Control-Request-Headers"));
        let no = |m: Method, hdr: Option<&'static str>| {
            c.preflight(&APP, &m, hdr.map(HeaderValue::from_static).as_ref()).unwrap_err().kind
        };
        assert_eq!(no(Method::DELETE, None), ProblemKind::Forbidden);
        assert_eq!(no(Method::POST, Some("x-api-key")), ProblemKind::Forbidden);
        let other = c.preflight(&HeaderValue::from_static("https://evil.example"), &Method::GET, None);
        assert_eq!(other.unwrap_err().kind, ProblemKind::Forbidden);
    }
}
