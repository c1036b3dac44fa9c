//! Mediated routes (`kind: soap`, `kind: soap_service`): their translators are built here
//! from the WSDL and the secrets, and [`run`] is their pipeline step — the request translated,
//! sent to the route's upstream pool like any proxied request (admission, breaker, health,
//! retries, the total budget: `exchange::forward_call`), the answer translated back.

use crate::ctx::RequestCtx;
use crate::runtime::Runtime;
use crate::secrets::{read_secret, BuildError};
use crate::shared::Shared;
use pingora_proxy::Session;
use std::sync::Arc;
use varco_adapter_soap::client::{ClientSpec, SoapClient};
use varco_adapter_soap::service::{RestSpec, SoapService};
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
pub fn build(
    cfg: &AdapterConfig,
    route_path: &str,
    at: &str,
) -> Result<Option<Built>, BuildError> {
    let err = |m: String| BuildError { path: at.to_owned(), message: m };
    let creds = |name: &str, c: &Option<Credentials>| -> Result<Option<(String, String)>, BuildError> {
        c.as_ref()
            .map(|c| Ok((c.username.clone(), read_secret(&format!("{at}.{name}.password"), &c.password)?)))
            .transpose()
    };
    match cfg {
        AdapterConfig::Soap(c) => {
            let (wsdl, _) = varco_adapter_soap::load_wsdl(&c.wsdl).map_err(|e| err(format!("wsdl: {e}")))?;
            let m = SoapClient::build(ClientSpec {
                wsdl: &wsdl,
                operation: &c.operation,
                version: version(c.soap_version),
                path: c.path.as_deref(),
                route_path,
                ws_security: creds("ws_security", &c.ws_security)?,
                basic_auth: creds("basic_auth", &c.basic_auth)?,
                request_template: c.request_template.as_deref(),
                response_template: c.response_template.as_deref(),
                faults: c.faults.clone(),
                unwrap: c.unwrap,
            })
            .map_err(err)?;
            Ok(Some((c.upstream.clone(), Arc::new(m))))
        }
        AdapterConfig::SoapService(c) => {
            let (wsdl, text) = varco_adapter_soap::load_wsdl(&c.wsdl).map_err(|e| err(format!("wsdl: {e}")))?;
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
        _ => Ok(None),
    }
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
    let tp = ctx.trace.as_ref().map_or([b'0'; 55], |t| t.traceparent());
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
