//! Where a request comes from, and whether that place may call: the caller's address (the TCP
//! peer, or behind a trusted load balancer the right-most untrusted `X-Forwarded-For` entry),
//! and the ente's and route's `source` rules (deny wins; a non-empty allow list admits only its
//! networks). Checked before authentication: a refused address costs no token check.

use ipnet::IpNet;
use pingora_http::RequestHeader;
use std::net::IpAddr;
use varco_config::SourceRules;
use varco_core::{Filter, FilterState, Problem, ProblemKind};

/// An IPv4 caller seen on a dual-stack socket as `::ffff:a.b.c.d`, as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is one of the `trusted` proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// The caller's address. Only a peer inside `trusted` is believed about who it forwards for:
/// its `X-Forwarded-For` entries are read right to left (the right-most were added by the
/// nearest proxies), skipping trusted ones; an entry that is not an address ends the walk at
/// the last good one (a forged left part cannot be trusted anyway).
pub fn client_address<'a>(peer: IpAddr, forwarded_for: impl Iterator<Item = &'a [u8]>, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let entries: Vec<&[u8]> =
        forwarded_for.flat_map(|v| v.split(|b| *b == b',')).map(<[u8]>::trim_ascii).filter(|e| !e.is_empty()).collect();
    let mut client = peer;
    for e in entries.iter().rev() {
        let Some(ip) = std::str::from_utf8(e).ok().and_then(|s| s.parse::<IpAddr>().ok()) else { break };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    client
}

/// Compiled `source` rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Rules {
    /// Parses validated rules.
    pub fn new(r: &SourceRules) -> Result<Self, String> {
        let parse = |l: &[String]| l.iter().map(|n| varco_config::parse_net(n)).collect::<Result<Vec<_>, _>>();
        Ok(Self { allow: parse(&r.allow)?, deny: parse(&r.deny)? })
    }

    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }
}

/// The filter: the ente's rules, then the route's.
#[derive(Debug)]
pub struct SourceFilter {
    pub tenant: Option<Rules>,
    pub route: Option<Rules>,
}

impl Filter for SourceFilter {
    fn name(&self) -> &'static str {
        "source"
    }

    fn on_request(&self, _req: &mut RequestHeader, state: &mut FilterState) -> Result<(), Problem> {
        self.check(state.client_ip)
    }
}

impl SourceFilter {
    /// Whether the caller at `ip` may call (also before a CORS preflight is answered).
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Problem> {
        let Some(ip) = ip else {
            // No address (a Unix socket): nothing to match, so nothing admitted.
            return Err(Problem::new(
                ProblemKind::Forbidden,
                "the caller's address is unknown; this route admits listed addresses only",
            ));
        };
        for (rules, what) in [(&self.tenant, "ente"), (&self.route, "route")] {
            if rules.as_ref().is_some_and(|r| !r.admits(ip)) {
                return Err(Problem::new(
                    ProblemKind::Forbidden,
                    format!("the caller's address is not admitted on this {what}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(l: &[&str]) -> Vec<IpNet> {
        l.iter().map(|n| varco_config::parse_net(n).unwrap_or_else(|e| panic!("{e}"))).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_caller_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let lb = nets(&["10.0.0.0/24", "10.9.9.9"]);
        let xff = |v: &'static str| std::iter::once(v.as_bytes());
        assert_eq!(
            client_address(ip("203.0.113.7"), xff("1.2.3.4"), &lb),
            ip("203.0.113.7"),
            "untrusted peer: its XFF is ignored"
        );
        assert_eq!(client_address(ip("10.0.0.5"), xff("1.2.3.4"), &lb), ip("1.2.3.4"));
        // A caller prepending a forged entry gets the address the trusted proxy saw.
        assert_eq!(client_address(ip("10.0.0.5"), xff("6.6.6.6, 198.51.100.1"), &lb), ip("198.51.100.1"));
        // Two trusted hops.
        assert_eq!(client_address(ip("10.0.0.5"), xff("198.51.100.1, 10.9.9.9"), &lb), ip("198.51.100.1"));
        // Garbage ends the walk at the last good entry.
        assert_eq!(client_address(ip("10.0.0.5"), xff("198.51.100.1, nonsense, 10.9.9.9"), &lb), ip("10.9.9.9"));
        assert_eq!(client_address(ip("10.0.0.5"), std::iter::empty(), &lb), ip("10.0.0.5"), "no XFF: the proxy itself");
        let two = [b"198.51.100.1".as_slice(), b"10.0.0.7".as_slice()];
        assert_eq!(client_address(ip("10.0.0.5"), two.into_iter(), &lb), ip("198.51.100.1"), "several header lines");
    }

    #[test]
    fn deny_wins_and_a_non_empty_allow_admits_only_its_networks() {
        let r = Rules::new(&SourceRules {
            allow: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            deny: vec!["10.6.6.0/24".into()],
        })
        .unwrap();
        assert!(r.admits(ip("10.1.2.3")));
        assert!(r.admits(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6 matches as IPv4");
        assert!(r.admits(ip("2001:db8::1")));
        assert!(!r.admits(ip("10.6.6.6")));
        assert!(!r.admits(ip("192.0.2.1")));
        let deny_only = Rules::new(&SourceRules { allow: vec![], deny: vec!["192.0.2.1".into()] }).unwrap();
        assert!(deny_only.admits(ip("192.0.2.2")) && !deny_only.admits(ip("192.0.2.1")));
    }

    #[test]
    fn the_filter_answers_403_naming_the_level() {
        let f = SourceFilter {
            tenant: None,
            route: Some(Rules::new(&SourceRules { allow: vec!["127.0.0.1".into()], deny: vec![] }).unwrap()),
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap_or_else(|e| panic!("{e}"));
        let mut st = FilterState { client_ip: Some(ip("127.0.0.1")), ..Default::default() };
        assert!(f.on_request(&mut req, &mut st).is_ok());
        st.client_ip = Some(ip("127.0.0.2"));
        let p = f.on_request(&mut req, &mut st).unwrap_err();
        assert_eq!((p.kind, p.detail.contains("route")), (ProblemKind::Forbidden, true));
        st.client_ip = None;
        assert!(f.on_request(&mut req, &mut st).is_err());
    }
}
