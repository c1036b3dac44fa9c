//! Circuit breaker of an upstream pool, in atomics (no lock on the request path).
//!
//! Closed: requests flow; failures in a row, or a failure ratio over a window, open it.
//! Open: requests are answered 503 at once until `open_for` has passed. Half-open: up to
//! `half_open_probes` requests go through; if they all succeed the circuit closes, one failure
//! opens it again.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Instant;
use varco_config::CircuitBreakerConfig;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Debug)]
pub struct Breaker {
    cfg: CircuitBreakerConfig,
    epoch: Instant,
    state: AtomicU8,
    opened_at_ms: AtomicU64,
    consecutive: AtomicU32,
    window_start_ms: AtomicU64,
    window_requests: AtomicU32,
    window_failures: AtomicU32,
    probes_started: AtomicU32,
    probes_ok: AtomicU32,
}

impl Breaker {
    pub fn new(cfg: &CircuitBreakerConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            epoch: Instant::now(),
            state: AtomicU8::new(CLOSED),
            opened_at_ms: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            window_start_ms: AtomicU64::new(0),
            window_requests: AtomicU32::new(0),
            window_failures: AtomicU32::new(0),
            probes_started: AtomicU32::new(0),
            probes_ok: AtomicU32::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// 0 closed, 1 open, 2 half-open (the metric's value).
    pub fn state(&self) -> u8 {
        self.state.load(Relaxed)
    }

    /// May a request go to the pool? `Err(seconds)` to wait while open.
    pub fn allow(&self) -> Result<(), u64> {
        match self.state.load(Relaxed) {
            CLOSED => Ok(()),
            OPEN => {
                let open_ms = self.cfg.open_for.0.as_millis() as u64;
                let since = self.now_ms().saturating_sub(self.opened_at_ms.load(Relaxed));
                if since < open_ms {
                    return Err((open_ms - since).div_ceil(1000).max(1));
                }
                // Time is up: one caller moves the circuit to half-open.
                if self.state.compare_exchange(OPEN, HALF_OPEN, Relaxed, Relaxed).is_ok() {
                    self.probes_started.store(0, Relaxed);
                    self.probes_ok.store(0, Relaxed);
                    self.opened_at_ms.store(self.now_ms(), Relaxed);
                }
                self.allow()
            }
            _ => {
                if self.probes_started.fetch_add(1, Relaxed) < self.cfg.half_open_probes {
                    return Ok(());
                }
                // Probes that never reported (the request died before reaching the pool) must
                // not keep the circuit half-open forever: after `open_for`, probe again.
                let since = self.now_ms().saturating_sub(self.opened_at_ms.load(Relaxed));
                if since > self.cfg.open_for.0.as_millis() as u64 {
                    self.opened_at_ms.store(self.now_ms(), Relaxed);
                    self.probes_started.store(1, Relaxed);
                    self.probes_ok.store(0, Relaxed);
                    return Ok(());
                }
                Err(1)
            }
        }
    }

    fn open(&self) {
        self.opened_at_ms.store(self.now_ms(), Relaxed);
        self.state.store(OPEN, Relaxed);
        self.consecutive.store(0, Relaxed);
        self.window_requests.store(0, Relaxed);
        self.window_failures.store(0, Relaxed);
    }

    fn count_in_window(&self, failed: bool) -> (u32, u32) {
        let now = self.now_ms();
        let start = self.window_start_ms.load(Relaxed);
        if now.saturating_sub(start) > self.cfg.window.0.as_millis() as u64
            && self.window_start_ms.compare_exchange(start, now, Relaxed, Relaxed).is_ok()
        {
            self.window_requests.store(0, Relaxed);
            self.window_failures.store(0, Relaxed);
        }
        let r = self.window_requests.fetch_add(1, Relaxed) + 1;
        let f =
            if failed { self.window_failures.fetch_add(1, Relaxed) + 1 } else { self.window_failures.load(Relaxed) };
        (r, f)
    }

    /// The outcome of one request to the pool. Returns true when this call opened the circuit.
    pub fn record(&self, ok: bool) -> bool {
        match self.state.load(Relaxed) {
            HALF_OPEN => {
                if !ok {
                    self.open();
                    return true;
                }
                if self.probes_ok.fetch_add(1, Relaxed) + 1 >= self.cfg.half_open_probes {
                    self.consecutive.store(0, Relaxed);
                    self.state.store(CLOSED, Relaxed);
                }
                false
            }
            CLOSED => {
                let (requests, failures) = self.count_in_window(!ok);
                if ok {
                    self.consecutive.store(0, Relaxed);
                    return false;
                }
                let in_a_row = self.consecutive.fetch_add(1, Relaxed) + 1;
                let ratio = self.cfg.failure_ratio > 0.0
                    && requests >= self.cfg.min_requests
                    && f64::from(failures) / f64::from(requests) >= self.cfg.failure_ratio;
                if in_a_row >= self.cfg.consecutive_failures || ratio {
                    self.open();
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker(yaml: &str) -> Breaker {
        Breaker::new(&serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn opens_after_consecutive_failures_and_recloses_after_a_good_probe() {
        let b = breaker("{consecutive_failures: 3, failure_ratio: 0, open_for: 50ms, half_open_probes: 1}");
        assert!(!b.record(false));
        assert!(!b.record(true), "a success resets the run");
        assert!(!b.record(false));
        assert!(!b.record(false));
        assert!(b.record(false));
        assert_eq!(b.state(), OPEN);
        assert_eq!(b.allow(), Err(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.allow(), Ok(()), "half-open lets a probe through");
        assert_eq!(b.state(), HALF_OPEN);
        assert_eq!(b.allow(), Err(1), "only one probe");
        b.record(true);
        assert_eq!(b.state(), CLOSED);
        assert_eq!(b.allow(), Ok(()));
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker("{consecutive_failures: 1, open_for: 10ms}");
        b.record(false);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.allow(), Ok(()));
        assert!(b.record(false));
        assert_eq!(b.state(), OPEN);
    }

    #[test]
    fn failure_ratio_over_a_window() {
        let b = breaker("{consecutive_failures: 100, failure_ratio: 0.5, min_requests: 10, window: 1m}");
        for i in 0..9 {
            b.record(i % 2 == 0);
        }
        assert_eq!(b.state(), CLOSED, "not enough requests yet");
        b.record(false);
        assert_eq!(b.state(), OPEN, "5 of 10 failed");
    }
}
