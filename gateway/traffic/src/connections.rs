//! How many connections a listener holds, in total and per client address. A connection over
//! either limit is refused as soon as it is accepted; a granted one holds a [`Permit`] that gives
//! its place back when the connection ends.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Why a connection was refused (the `reason` label of the refusal metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds `max_connections` already.
    Listener,
    /// This address holds `max_connections_per_address` already.
    Address,
}

impl Refusal {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::Address => "address",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The counts of one listener.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self { max_total, max_per_address, counts: Arc::default() }
    }

    /// A place for a connection from `peer` (none for a peer without an IP address, e.g. a
    /// Unix socket). An `unlimited_address` (a trusted proxy) counts only towards the total.
    pub fn admit(&self, peer: Option<IpAddr>, unlimited_address: bool) -> Result<Permit, Refusal> {
        // An IPv4 client on a dual-stack socket is one address whichever way it is written.
        let peer = peer.map(crate::source::canonical);
        let mut c = self.counts.lock();
        if c.total >= self.max_total {
            return Err(Refusal::Listener);
        }
        let counted = match peer {
            Some(ip) if !unlimited_address => {
                let n = c.per_address.entry(ip).or_insert(0);
                if *n >= self.max_per_address {
                    return Err(Refusal::Address);
                }
                *n += 1;
                Some(ip)
            }
            _ => None,
        };
        c.total += 1;
        Ok(Permit { counts: self.counts.clone(), address: counted })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }

    /// Connections `ip` holds now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.counts.lock().per_address.get(&ip).copied().unwrap_or(0)
    }
}

/// One connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    address: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.address {
            // Forget an address with no connection left, so the map stays as small as the
            // set of connected clients.
            if let Some(n) = c.per_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_address.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn an_address_over_its_limit_is_refused_and_others_are_not() {
        let l = ConnectionLimits::new(10, 2);
        let a = l.admit(ip("10.0.0.1"), false).expect("first");
        let _b = l.admit(ip("10.0.0.1"), false).expect("second");
        assert_eq!(l.admit(ip("10.0.0.1"), false).err(), Some(Refusal::Address));
        assert!(l.admit(ip("10.0.0.2"), false).is_ok(), "another address has its own count");
        drop(a);
        assert!(l.admit(ip("10.0.0.1"), false).is_ok(), "a closed connection gives its place back");
    }

    #[test]
    fn the_listener_total_binds_everyone_even_trusted_proxies() {
        let l = ConnectionLimits::new(2, 100);
        let _a = l.admit(ip("10.0.0.1"), true).expect("a");
        let _b = l.admit(ip("10.0.0.2"), false).expect("b");
        assert_eq!(l.admit(ip("10.0.0.3"), false).err(), Some(Refusal::Listener));
        assert_eq!(l.admit(ip("10.0.0.1"), true).err(), Some(Refusal::Listener));
        assert_eq!(l.open(), 2);
    }

    #[test]
    fn a_trusted_proxy_is_not_limited_per_address() {
        let l = ConnectionLimits::new(100, 1);
        let _p: Vec<_> = (0..5).map(|_| l.admit(ip("10.0.0.9"), true).expect("proxy")).collect();
        assert_eq!(l.open_from("10.0.0.9".parse().expect("ip")), 0);
        assert_eq!(l.open(), 5);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_same_address() {
        let l = ConnectionLimits::new(10, 1);
        let _a = l.admit(ip("127.0.0.1"), false).expect("v4");
        assert_eq!(l.admit(ip("::ffff:127.0.0.1"), false).err(), Some(Refusal::Address));
    }

    #[test]
    fn a_refused_connection_takes_no_place() {
        let l = ConnectionLimits::new(10, 1);
        let _a = l.admit(ip("10.0.0.1"), false).expect("a");
        for _ in 0..5 {
            assert!(l.admit(ip("10.0.0.1"), false).is_err());
        }
        assert_eq!(l.open(), 1);
        assert_eq!(l.open_from("10.0.0.1".parse().expect("ip")), 1);
    }
}
