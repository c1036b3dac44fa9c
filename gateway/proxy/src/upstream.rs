//! Upstream pools: server selection (round robin, rendezvous hashing), active health state and
//! passive ejection. Health is plain atomics so the hot path never locks.

use pingora_core::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use varco_config::{Balance, HealthCheckConfig, UpstreamConfig};
use varco_core::UpstreamHealth;

/// One back-office server and its health.
#[derive(Debug)]
pub struct Server {
    /// As written in config (`host:port`).
    pub name: String,
    pub addr: SocketAddr,
    /// Template peer with TLS and timeouts set; cloned per request.
    pub peer: HttpPeer,
    /// Result of the active health check (true until a check says otherwise).
    pub active_healthy: AtomicBool,
    pub active_successes: AtomicU32,
    pub active_failures: AtomicU32,
    /// Consecutive live-traffic failures.
    pub passive_failures: AtomicU32,
    /// Until when (ms since the pool's epoch) the server is ejected.
    pub ejected_until_ms: AtomicU64,
}

/// A pool of servers with its policy.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub servers: Vec<Server>,
    pub hash_header: Option<http::HeaderName>,
    pub retries: u32,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub total_timeout: Duration,
    pub health_check: Option<HealthCheckConfig>,
    pub max_failures: u32,
    pub eject_for: Duration,
    /// Answer statuses that count as a failure of the server (`passive.statuses`).
    pub failure_statuses: Vec<u16>,
    /// Host header and path for health checks.
    pub tls: bool,
    epoch: Instant,
    rr: AtomicUsize,
    /// Round-robin order of server indexes, each as often as its weight (smooth weighted round
    /// robin, so a heavy server's turns are spread out, not bunched).
    schedule: Vec<u16>,
    /// Each server's weight, for rendezvous hashing.
    weights: Vec<u32>,
    /// ms since epoch at which the next active check is due.
    pub next_check_ms: AtomicU64,
    pub breaker: Option<Arc<varco_traffic::Breaker>>,
    pub max_concurrent: Option<u32>,
    /// Requests in flight to the pool (shared with the previous generation's pool).
    pub in_flight: Arc<AtomicUsize>,
}

/// Smooth weighted round robin (as nginx): each turn, every server gains its weight and the
/// richest takes the turn and pays the total. Weights are divided by their common divisor
/// first, so equal weights give a plain rotation.
fn schedule(weights: &[u32]) -> Vec<u16> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let Some((best, _)) =
            current.iter().enumerate().filter(|(i, _)| w[*i] > 0).max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

/// Holds one unit of a concurrency counter; gives it back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a unit unless `max` are taken.
    pub fn acquire(counter: &Arc<AtomicUsize>, max: Option<u32>) -> Option<Self> {
        let n = counter.fetch_add(1, Relaxed);
        if max.is_some_and(|m| n >= m as usize) {
            counter.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Self(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The builder's inputs: resolved addresses, and the TLS settings already applied to peers.
pub struct ResolvedServer {
    pub name: String,
    pub addr: SocketAddr,
    pub peer: HttpPeer,
    /// Share of the traffic (`servers[].weight`), 0 for none.
    pub weight: u32,
}

impl Pool {
    /// `previous`: the same pool in the configuration being replaced, whose in-flight counter
    /// and (if its settings did not change) circuit breaker carry over.
    pub fn new(name: &str, cfg: &UpstreamConfig, servers: Vec<ResolvedServer>, previous: Option<&Pool>) -> Self {
        let t = &cfg.timeouts;
        let breaker = cfg.circuit_breaker.as_ref().map(|c| {
            previous
                .and_then(|p| p.breaker.clone())
                .filter(|b| b.config() == c)
                .unwrap_or_else(|| Arc::new(varco_traffic::Breaker::new(c)))
        });
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        Self {
            schedule: schedule(&weights),
            weights,
            breaker,
            max_concurrent: cfg.max_concurrent,
            in_flight: previous.map_or_else(|| Arc::new(AtomicUsize::new(0)), |p| p.in_flight.clone()),
            name: name.to_owned(),
            servers: servers
                .into_iter()
                .map(|s| Server {
                    name: s.name,
                    addr: s.addr,
                    peer: s.peer,
                    active_healthy: AtomicBool::new(true),
                    active_successes: AtomicU32::new(0),
                    active_failures: AtomicU32::new(0),
                    passive_failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                })
                .collect(),
            hash_header: match &cfg.balance {
                Balance::RoundRobin => None,
                Balance::ConsistentHash { header } => http::HeaderName::from_bytes(header.as_bytes()).ok(),
            },
            retries: cfg.retries,
            connect_timeout: t.connect.0,
            read_timeout: t.read.0,
            write_timeout: t.write.0,
            total_timeout: t.total.0,
            health_check: cfg.health_check.clone(),
            max_failures: cfg.passive.max_failures,
            eject_for: cfg.passive.eject_for.0,
            failure_statuses: cfg.passive.statuses.clone(),
            tls: cfg.tls.is_some(),
            epoch: Instant::now(),
            rr: AtomicUsize::new(fastrand::usize(..1024)),
            next_check_ms: AtomicU64::new(0),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn available(&self, i: usize, now_ms: u64) -> bool {
        let s = &self.servers[i];
        s.active_healthy.load(Relaxed) && s.ejected_until_ms.load(Relaxed) <= now_ms
    }

    /// Picks a server not in `tried`; `hash` pins a key to a server (rendezvous hashing).
    /// `None` when no available server is left.
    pub fn select(&self, hash: Option<u64>, tried: &[usize]) -> Option<usize> {
        let now = self.now_ms();
        let n = self.servers.len();
        let ok = |i: usize| !tried.contains(&i) && self.available(i, now);
        if let Some(h) = hash {
            // Weighted rendezvous hashing: the highest `w / -ln(u)` wins, `u` the key's hash
            // with the server's in (0, 1). Equal weights order like `u` itself.
            let score = |i: usize| {
                let u = (mix(h ^ mix(i as u64 + 1)) >> 11) as f64 / (1u64 << 53) as f64;
                f64::from(self.weights[i]) / -(u.max(f64::MIN_POSITIVE)).ln()
            };
            return (0..n).filter(|&i| ok(i) && self.weights[i] > 0).max_by(|&a, &b| score(a).total_cmp(&score(b)));
        }
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.rr.fetch_add(1, Relaxed);
        (0..len).map(|k| usize::from(self.schedule[(start + k) % len])).find(|&i| ok(i))
    }

    /// Live traffic reached the server: forget its failures.
    pub fn record_success(&self, i: usize) {
        if let Some(s) = self.servers.get(i) {
            if s.passive_failures.load(Relaxed) != 0 {
                s.passive_failures.store(0, Relaxed);
            }
        }
    }

    /// Live traffic failed on the server; ejects it after `max_failures` in a row.
    /// Returns true when this failure ejected it.
    pub fn record_failure(&self, i: usize) -> bool {
        let Some(s) = self.servers.get(i) else { return false };
        if self.max_failures == 0 {
            return false;
        }
        let n = s.passive_failures.fetch_add(1, Relaxed) + 1;
        if n >= self.max_failures {
            s.passive_failures.store(0, Relaxed);
            s.ejected_until_ms.store(self.now_ms() + self.eject_for.as_millis() as u64, Relaxed);
            return true;
        }
        false
    }

    /// Applies one active check result with the configured thresholds.
    pub fn record_check(&self, i: usize, ok: bool) {
        let (Some(s), Some(hc)) = (self.servers.get(i), &self.health_check) else { return };
        if ok {
            s.active_failures.store(0, Relaxed);
            let n = s.active_successes.fetch_add(1, Relaxed) + 1;
            if n >= hc.healthy_threshold {
                s.active_healthy.store(true, Relaxed);
            }
        } else {
            s.active_successes.store(0, Relaxed);
            let n = s.active_failures.fetch_add(1, Relaxed) + 1;
            if n >= hc.unhealthy_threshold {
                s.active_healthy.store(false, Relaxed);
            }
        }
    }

    /// Copies health state from the same server of a previous pool (config reload).
    pub fn inherit_health(&self, old: &Pool) {
        let now_new = self.now_ms();
        let now_old = old.now_ms();
        for s in &self.servers {
            if let Some(o) = old.servers.iter().find(|o| o.addr == s.addr) {
                s.active_healthy.store(o.active_healthy.load(Relaxed), Relaxed);
                let left = o.ejected_until_ms.load(Relaxed).saturating_sub(now_old);
                if left > 0 {
                    s.ejected_until_ms.store(now_new + left, Relaxed);
                }
            }
        }
    }

    pub fn health(&self) -> UpstreamHealth {
        let now = self.now_ms();
        UpstreamHealth {
            name: self.name.clone(),
            healthy_servers: (0..self.servers.len()).filter(|&i| self.available(i, now)).count(),
            servers: self.servers.len(),
        }
    }

    pub fn is_available(&self, i: usize) -> bool {
        self.available(i, self.now_ms())
    }
}

/// The servers a request has tried, without allocating (retries are at most 5).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried {
    list: [usize; 8],
    len: usize,
}

impl Tried {
    pub fn push(&mut self, i: usize) {
        if self.len < self.list.len() {
            self.list[self.len] = i;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[usize] {
        &self.list[..self.len]
    }

    pub fn count(&self) -> usize {
        self.len
    }
}

use varco_core::hash::mix;

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, yaml_extra: &str) -> Pool {
        let servers: Vec<String> = (0..n).map(|i| format!("\"127.0.0.1:{}\"", 9000 + i)).collect();
        let cfg: UpstreamConfig =
            serde_yaml_ng::from_str(&format!("{{servers: [{}]{yaml_extra}}}", servers.join(","))).unwrap();
        let resolved = (0..n)
            .map(|i| {
                let addr: SocketAddr = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
                ResolvedServer {
                    name: addr.to_string(),
                    addr,
                    peer: HttpPeer::new(addr, false, String::new()),
                    weight: 1,
                }
            })
            .collect();
        Pool::new("p", &cfg, resolved, None)
    }

    fn weighted(weights: &[u32]) -> Pool {
        let mut p = pool(weights.len(), "");
        p.weights = weights.to_vec();
        p.schedule = schedule(weights);
        p
    }

    #[test]
    fn weights_share_the_traffic_smoothly() {
        assert_eq!(schedule(&[1, 1, 1]), [0, 1, 2], "equal weights: a plain rotation");
        assert_eq!(schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0], "spread, not bunched");
        assert_eq!(schedule(&[90, 10]).len(), 10, "divided by the common divisor");
        assert_eq!(schedule(&[1, 0]), [0]);
        let p = weighted(&[95, 5]);
        let mut n = [0usize; 2];
        for _ in 0..10_000 {
            n[p.select(None, &[]).unwrap()] += 1;
        }
        assert_eq!(n, [9_500, 500]);
        // A weight-0 server gets nothing, even by hash; a tried heavy server leaves the light one.
        let p = weighted(&[1, 0, 3]);
        for k in 0..200u64 {
            assert_ne!(p.select(Some(k), &[]), Some(1));
            assert_ne!(p.select(None, &[]), Some(1));
        }
        assert_eq!(p.select(None, &[2]), Some(0));
    }

    #[test]
    fn weighted_hashing_keeps_keys_in_proportion() {
        let p = weighted(&[3, 1]);
        let mut n = [0usize; 2];
        for k in 0..20_000u64 {
            n[p.select(Some(varco_core::hash::mix(k)), &[]).unwrap()] += 1;
        }
        let share = n[0] as f64 / 20_000.0;
        assert!((0.73..=0.77).contains(&share), "{n:?}");
    }

    #[test]
    fn slots_bound_concurrency() {
        let c = Arc::new(AtomicUsize::new(0));
        let a = Slot::acquire(&c, Some(2)).unwrap();
        let b = Slot::acquire(&c, Some(2)).unwrap();
        assert!(Slot::acquire(&c, Some(2)).is_none());
        drop(a);
        let _c2 = Slot::acquire(&c, Some(2)).unwrap();
        drop(b);
        assert!(Slot::acquire(&c, None).is_some());
        assert_eq!(c.load(Relaxed), 1);
    }

    #[test]
    fn round_robin_visits_every_server_and_skips_tried() {
        let p = pool(3, "");
        let mut seen: Vec<usize> = (0..3).map(|_| p.select(None, &[]).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(p.select(None, &[0, 1, 2]), None);
        let only = p.select(None, &[0, 2]).unwrap();
        assert_eq!(only, 1);
    }

    #[test]
    fn passive_ejection_after_max_failures() {
        let p = pool(2, ", passive: {max_failures: 2, eject_for: 60s}");
        assert!(!p.record_failure(0));
        p.record_success(0);
        assert!(!p.record_failure(0));
        assert!(p.record_failure(0));
        for _ in 0..10 {
            assert_eq!(p.select(None, &[]), Some(1));
        }
        assert_eq!(p.health().healthy_servers, 1);
    }

    #[test]
    fn active_thresholds() {
        let p = pool(1, ", health_check: {unhealthy_threshold: 2, healthy_threshold: 2}");
        p.record_check(0, false);
        assert!(p.is_available(0));
        p.record_check(0, false);
        assert!(!p.is_available(0));
        p.record_check(0, true);
        assert!(!p.is_available(0));
        p.record_check(0, true);
        assert!(p.is_available(0));
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_the_lost_keys() {
        let p = pool(4, "");
        let keys: Vec<u64> =
            (0..200).map(|k| varco_core::hash::hash_bytes(format!("RSSMRA80A01H501{k}").as_bytes())).collect();
        let before: Vec<usize> = keys.iter().map(|&k| p.select(Some(k), &[]).unwrap()).collect();
        let again: Vec<usize> = keys.iter().map(|&k| p.select(Some(k), &[]).unwrap()).collect();
        assert_eq!(before, again);
        for s in 0..4 {
            assert!(before.contains(&s), "server {s} got no key");
        }
        p.servers[2].active_healthy.store(false, Relaxed);
        for (k, &b) in keys.iter().zip(&before) {
            let now = p.select(Some(*k), &[]).unwrap();
            if b != 2 {
                assert_eq!(now, b, "a key of a healthy server moved");
            } else {
                assert_ne!(now, 2);
            }
        }
    }
}
