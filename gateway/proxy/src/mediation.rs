//! Mediated routes (`kind: soap`, `kind: soap_service`, `kind: rest`): their translators are built here
//! from the WSDL and the secrets, and [`run`] is their pipeline step — the request translated,
//! sent to the route's upstream pool like any proxied request (admission, breaker, health,
//! retries, the total budget: `exchange::forward_call`), the answer translated back.

use crate::ctx::RequestCtx;
use crate::runtime::Runtime;
use crate::secrets::{read_secret, BuildError};
use crate::shared::Shared;
use pingora_proxy::Session;
use std::sync::Arc;
use varco_adapter_mediation::client::{ClientSpec, SoapClient};
use varco_adapter_mediation::rest::{RestMediator, RestMediatorSpec};
use varco_adapter_mediation::service::{RestSpec, SoapService};
use varco_config::{AdapterConfig, Credentials, SoapVersion};
use varco_core::{Mediation, Mediator};
use varco_xml::soap::Version;

fn version(v: Option<SoapVersion>) -> Option<Version> {
    v.map(|v| match v {
        SoapVersion::V11 => Version::V11,
        SoapVersion::V12 => Version::V12,
    })
}

/// A mediator and the name of the upstream pool it calls.
pub type Built = (String, Arc<dyn Mediator>);

/// The mediator of `cfg` and the upstream pool it calls, or `None` for other adapters.
/// `route_path` is the route's path template; `at` where errors are reported.
pub fn build(cfg: &AdapterConfig, route_path: &str, at: &str) -> Result<Option<Built>, BuildError> {
    build_with(cfg, route_path, at, true)
}

/// What `varco check` can know of the ente's mediated routes without their secrets: each
/// WSDL reads and has the operations named, templates compile.
pub fn check(cfg: &varco_config::Config) -> Vec<varco_config::ConfigIssue> {
    let mut out = Vec::new();
    for (ti, t) in cfg.tenants.iter().enumerate() {
        for (ri, r) in t.routes.iter().enumerate() {
            let varco_config::RouteTarget::Adapter(a) = &r.to else { continue };
            let at = format!("tenants[{ti}].routes[{ri}].to.adapter");
            if let Err(e) = build_with(a, &r.path, &at, false) {
                out.push(varco_config::ConfigIssue { path: e.path, line: None, column: None, message: e.message });
            }
        }
    }
    out
}

fn build_with(cfg: &AdapterConfig, route_path: &str, at: &str, secrets: bool) -> Result<Option<Built>, BuildError> {
    let err = |m: String| BuildError { path: at.to_owned(), message: m };
    let creds = |name: &str, c: &Option<Credentials>| -> Result<Option<(String, String)>, BuildError> {
        c.as_ref()
            .map(|c| {
                let password =
                    if secrets { read_secret(&format!("{at}.{name}.password"), &c.password)? } else { String::new() };
                Ok((c.username.clone(), password))
            })
            .transpose()
    };
    match cfg {
        AdapterConfig::Soap(c) => {
            let ws = creds("ws_security", &c.ws_security)?;
            let basic = creds("basic_auth", &c.basic_auth)?;
            let m = soap_client(c, route_path, ws, basic).map_err(err)?;
            Ok(Some((c.upstream.clone(), Arc::new(m))))
        }
        AdapterConfig::SoapService(c) => {
            let (wsdl, text) = varco_adapter_mediation::load_wsdl(&c.wsdl).map_err(|e| err(format!("wsdl: {e}")))?;
            let specs: Vec<RestSpec<'_>> = c
                .operations
                .iter()
                .map(|(name, r)| RestSpec {
                    operation: name,
                    method: &r.method,
                    path: &r.path,
                    request_template: r.request_template.as_deref(),
                    response_template: r.response_template.as_deref(),
                })
                .collect();
            let m = SoapService::build(&wsdl, &text, version(c.soap_version), &specs).map_err(err)?;
            Ok(Some((c.upstream.clone(), Arc::new(m))))
        }
        AdapterConfig::Rest(c) => {
            let m = RestMediator::build(RestMediatorSpec {
                method: c.method.as_deref(),
                path: &c.path,
                route_path,
                request_template: c.request_template.as_deref(),
                response_template: c.response_template.as_deref(),
            })
            .map_err(err)?;
            Ok(Some((c.upstream.clone(), Arc::new(m))))
        }
        _ => Ok(None),
    }
}

/// A `soap` route's client over its WSDL (read now).
fn soap_client(
    c: &varco_config::SoapConfig,
    route_path: &str,
    ws_security: Option<(String, String)>,
    basic_auth: Option<(String, String)>,
) -> Result<SoapClient, String> {
    let (wsdl, _) = varco_adapter_mediation::load_wsdl(&c.wsdl).map_err(|e| format!("wsdl: {e}"))?;
    SoapClient::build(ClientSpec {
        wsdl: &wsdl,
        operation: &c.operation,
        version: version(c.soap_version),
        path: c.path.as_deref(),
        route_path,
        ws_security,
        basic_auth,
        request_template: c.request_template.as_deref(),
        response_template: c.response_template.as_deref(),
        faults: c.faults.clone(),
        unwrap: c.unwrap,
    })
}

/// The mediated route's terminal step: always answers.
pub async fn run(
    shared: &Shared,
    session: &mut Session,
    ctx: &mut RequestCtx,
    rt: &Arc<Runtime>,
    m: &Arc<dyn Mediator>,
) -> pingora_error::Result<bool> {
    use crate::respond;
    let (Some(tenant), Some(route)) = (ctx.tenant(rt), ctx.route(rt)) else { return Ok(false) };
    let body = match crate::pipeline::read_body(session, route.max_body_bytes).await? {
        Ok(b) => b,
        Err(p) => {
            respond::problem(session, ctx, &p, true).await?;
            return Ok(true);
        }
    };
    let tp = crate::spans::traceparent(ctx);
    let translated = m.request(&crate::pipeline::adapter_request(session, ctx, &tenant.id, body, &tp));
    let call = match translated {
        Ok(Mediation::Call(c)) => c,
        Ok(Mediation::Answer(resp)) => {
            respond::adapter(session, ctx, resp).await?;
            return Ok(true);
        }
        Err(p) => {
            respond::problem(session, ctx, &p, false).await?;
            return Ok(true);
        }
    };
    let op = call.op;
    let answer = match crate::exchange::forward_call(shared, session, ctx, rt, call).await {
        Ok(reply) => m.response(op, reply),
        Err(p) => Err(p),
    };
    match answer {
        Ok(mut resp) => {
            if let Some(s) = ctx.state.rate_limit {
                resp.headers.extend(s.headers());
            }
            respond::adapter(session, ctx, resp).await?
        }
        Err(p) => respond::problem(session, ctx, &p, false).await?,
    }
    Ok(true)
}

/// The OpenAPI 3.0 contract of ente `tenant`'s mediated REST routes (`soap` routes with the
/// JSON their WSDL gives, `rest` routes as any JSON), served by a `kind: openapi` route and
/// written by `varco openapi`.
pub fn openapi(cfg: &varco_config::Config, tenant: &str) -> Result<serde_json::Value, BuildError> {
    use varco_adapter_mediation::openapi::{document, RouteDoc, Schemas, Security};
    use varco_config::{Access, RouteTarget};
    let Some((ti, t)) = cfg.tenants.iter().enumerate().find(|(_, t)| t.id == tenant) else {
        return Err(BuildError { path: "tenants".into(), message: format!("no ente `{tenant}`") });
    };
    let mut schemas = Schemas::default();
    let mut routes = Vec::new();
    for (ri, r) in t.routes.iter().enumerate() {
        let RouteTarget::Adapter(a) = &r.to else { continue };
        let at = format!("tenants[{ti}].routes[{ri}].to.adapter");
        let (summary, input, output) = match &**a {
            AdapterConfig::Soap(c) => {
                let m = soap_client(c, &r.path, None, None).map_err(|e| BuildError { path: at.clone(), message: e })?;
                schemas.next_model();
                let (i, o) = m.schemas(&mut schemas);
                (format!("Operation `{}` of the back-office `{}`.", c.operation, c.upstream), i, o)
            }
            AdapterConfig::Rest(c) => (format!("The back-office `{}` at `{}`.", c.upstream, c.path), None, None),
            _ => continue,
        };
        let security = match &r.access {
            Access::Public => Security::Public,
            Access::ApiKey(_) => Security::ApiKey,
            Access::Jwt(_) => Security::Bearer,
            Access::Session(_) => Security::Session,
        };
        routes.push(RouteDoc {
            name: r.name.clone(),
            path: r.path.clone(),
            methods: r.methods.clone(),
            summary,
            security,
            input,
            output,
        });
    }
    let host = t.hosts.first().map_or("varco.example.invalid", String::as_str);
    let server = format!("https://{host}{}", t.prefix.as_deref().unwrap_or(""));
    Ok(document(&format!("{}: mediated back-office APIs", t.name), &server, &routes, schemas))
}
