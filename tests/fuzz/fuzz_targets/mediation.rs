//! Mediation's outside bytes: a back-office's SOAP answer (read against its WSDL), a
//! platform's SOAP request to a published service, a caller's JSON, a WSDL itself. Nothing
//! panics; a request that passes is well-formed SOAP that reads back.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use varco_adapter_mediation::client::{ClientSpec, SoapClient};
use varco_adapter_mediation::service::{RestSpec, SoapService};
use varco_core::{AdapterRequest, AdapterResponse, Mediation, Mediator};
use varco_xml::wsdl::Wsdl;

const WSDL: &[u8] = include_bytes!("../../../adapters/mediation/testdata/pratiche.wsdl");

fn parts() -> &'static (SoapClient, SoapClient, SoapService) {
    static P: OnceLock<(SoapClient, SoapClient, SoapService)> = OnceLock::new();
    P.get_or_init(|| {
        let w = Wsdl::load(WSDL, &|_| Err("no imports".into())).expect("the fixture WSDL loads");
        let client = |op: &str, route: &str| {
            SoapClient::build(ClientSpec {
                wsdl: &w,
                operation: op,
                version: None,
                path: None,
                route_path: route,
                ws_security: None,
                basic_auth: None,
                request_template: None,
                response_template: None,
                faults: BTreeMap::new(),
                unwrap: true,
            })
            .expect("the operation exists")
        };
        let spec = |op, method, path| RestSpec { operation: op, method, path, request_template: None, response_template: None };
        let service = SoapService::build(
            &w,
            WSDL,
            None,
            &[spec("getPratica", "GET", "/p/{id}"), spec("presentaIstanza", "POST", "/istanze")],
        )
        .expect("the service builds");
        (client("getPratica", "/p/{id}"), client("presentaIstanza", "/istanze"), service)
    })
}

fn request(body: &[u8]) -> (http::HeaderMap, Bytes) {
    (http::HeaderMap::new(), Bytes::copy_from_slice(body))
}

fuzz_target!(|data: &[u8]| {
    let (get, post, service) = parts();
    let reply = AdapterResponse {
        status: 200,
        headers: vec![(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/xml"))],
        body: Bytes::copy_from_slice(data),
    };
    let _ = get.response(0, reply.clone());
    let _ = service.response(0, AdapterResponse { status: 200, ..reply });
    let (headers, body) = request(data);
    let req = AdapterRequest {
        method: &http::Method::POST,
        path: "/istanze",
        prefix: "",
        tls: false,
        query: None,
        headers: &headers,
        body,
        tenant_id: "c_a662",
        request_id: "r",
        traceparent: "",
        caller: None,
        client_id: None,
    };
    let _ = service.request(&req);
    if let Ok(Mediation::Call(c)) = post.request(&req) {
        // What varco sends a back-office is SOAP that reads back.
        let doc = varco_xml::parse(&c.body).expect("varco's request is well-formed XML");
        varco_xml::soap::open(&doc).expect("varco's request is a SOAP envelope");
    }
    let _ = Wsdl::load(data, &|_| Err("no imports".into()));
});
