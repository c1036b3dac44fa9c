//! The spine's route filters. Each is built once from config and unit-tested without sockets.

use http::{HeaderName, HeaderValue};
use pingora_http::RequestHeader;
use varco_core::{Filter, FilterState, Problem, ProblemKind};

/// Rejects a declared body larger than the route allows, and tells the proxy the limit so that
/// streamed (chunked) bodies are cut off too.
#[derive(Debug)]
pub struct BodyLimit {
    pub max: u64,
}

impl Filter for BodyLimit {
    fn name(&self) -> &'static str {
        "body_limit"
    }

    fn on_request(&self, req: &mut RequestHeader, state: &mut FilterState) -> Result<(), Problem> {
        state.max_body_bytes = Some(self.max);
        let declared = req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(n) if n > self.max => Err(Problem::new(
                ProblemKind::BodyTooLarge,
                format!("the body is {n} bytes; this route accepts at most {}", self.max),
            )),
            _ => Ok(()),
        }
    }
}

/// Sets and removes headers on the way to the upstream (e.g. a back-office credential).
#[derive(Debug)]
pub struct HeaderRewrite {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl Filter for HeaderRewrite {
    fn name(&self) -> &'static str {
        "request_headers"
    }

    fn on_request(&self, req: &mut RequestHeader, _state: &mut FilterState) -> Result<(), Problem> {
        for name in &self.remove {
            req.remove_header(name);
        }
        for (name, value) in &self.set {
            // Header names and values were validated when the filter was built.
            let _ = req.insert_header(name.clone(), value.clone());
        }
        Ok(())
    }
}

/// Header changes on the back-office's answer (`response_headers`).
#[derive(Debug)]
pub struct ResponseHeaderRewrite {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl Filter for ResponseHeaderRewrite {
    fn name(&self) -> &'static str {
        "response_headers"
    }

    fn on_request(&self, _req: &mut RequestHeader, _state: &mut FilterState) -> Result<(), Problem> {
        Ok(())
    }

    fn on_response(&self, resp: &mut pingora_http::ResponseHeader, _state: &FilterState) {
        for name in &self.remove {
            resp.remove_header(name);
        }
        for (name, value) in &self.set {
            // Names and values were validated when the filter was built.
            let _ = resp.insert_header(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/x", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), v.to_string()).unwrap();
        }
        r
    }

    #[test]
    fn response_headers_are_removed_then_set() {
        let f = ResponseHeaderRewrite {
            set: vec![(
                HeaderName::from_static("strict-transport-security"),
                HeaderValue::from_static("max-age=63072000"),
            )],
            remove: vec![HeaderName::from_static("server"), HeaderName::from_static("x-powered-by")],
        };
        let mut resp = pingora_http::ResponseHeader::build(200, None).unwrap();
        for (k, v) in [("Server", "Apache/2.2.3 (CentOS)"), ("X-Powered-By", "PHP/5.2"), ("Content-Type", "text/xml")] {
            resp.append_header(k, v).unwrap();
        }
        f.on_response(&mut resp, &FilterState::default());
        assert!(resp.headers.get("server").is_none() && resp.headers.get("x-powered-by").is_none());
        assert_eq!(resp.headers.get("strict-transport-security").unwrap(), "max-age=63072000");
        assert_eq!(resp.headers.get("content-type").unwrap(), "text/xml");
    }

    #[test]
    fn body_limit_rejects_declared_oversize_and_records_the_limit() {
        let f = BodyLimit { max: 10 };
        let mut st = FilterState::default();
        f.on_request(&mut req(&[("content-length", "10")]), &mut st).unwrap();
        assert_eq!(st.max_body_bytes, Some(10));
        let e = f.on_request(&mut req(&[("content-length", "11")]), &mut st).unwrap_err();
        assert_eq!(e.kind, ProblemKind::BodyTooLarge);
        f.on_request(&mut req(&[("transfer-encoding", "chunked")]), &mut st).unwrap();
    }

    #[test]
    fn header_rewrite_replaces_and_removes() {
        let f = HeaderRewrite {
            set: vec![(HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer backoffice"))],
            remove: vec![HeaderName::from_static("cookie")],
        };
        let mut r = req(&[("authorization", "Bearer caller"), ("cookie", "a=b"), ("accept", "*/*")]);
        f.on_request(&mut r, &mut FilterState::default()).unwrap();
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer backoffice");
        assert!(r.headers.get("cookie").is_none());
        assert_eq!(r.headers.get("accept").unwrap(), "*/*");
    }
}
