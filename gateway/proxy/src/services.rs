//! Every background loop of the process, in one place. Each is a pingora `BackgroundService`
//! that reads the *current* runtime at each tick (so it follows reloads) and ends when the
//! server shuts down. [`all`] lists them in the order they are added.
//!
//! Stopping is ordered: on SIGTERM the event service stops the subscription workers (a
//! delivery in flight completes and its position is saved) and the Kafka relay (the cursor
//! is saved after the last acknowledgements), then says so; the drain waits for that and for
//! the requests in flight before the process exits.

use crate::reload::Reloader;
use crate::shared::Shared;
use crate::upstream::Pool;
use async_trait::async_trait;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::ServiceWithDependents;
use pingora_http::RequestHeader;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use varco_events::delivery::{Deliveries, Subscription};

/// The background services of a running gateway.
pub fn all(shared: &Arc<Shared>, reloader: Arc<Reloader>, grace: Duration) -> Vec<Box<dyn ServiceWithDependents>> {
    vec![
        Box::new(background_service("health checks", HealthChecks(shared.clone()))),
        Box::new(background_service("sighup reload", SighupReload(reloader))),
        Box::new(background_service("jwks refresh", JwksRefresh(shared.clone()))),
        Box::new(background_service("rate-limit gc", LimitsGc(shared.clone()))),
        Box::new(background_service("access log", AccessLogFlush(shared.clone()))),
        Box::new(background_service("events", Events(shared.clone()))),
        Box::new(background_service("signal hub", SignalHubPullers(shared.clone()))),
        Box::new(background_service("drain", Drain { shared: shared.clone(), grace })),
    ]
}

/// Waits for the next tick of a background loop; false once the server shuts down.
pub(crate) async fn tick_or_shutdown(tick: &mut tokio::time::Interval, shutdown: &mut ShutdownWatch) -> bool {
    tokio::select! {
        _ = tick.tick() => true,
        _ = shutdown.changed() => false,
    }
}

/// Active HTTP health checks of every pool that has one.
struct HealthChecks(Arc<Shared>);

async fn check(connector: &Connector, pool: &Pool, i: usize) -> bool {
    let Some(hc) = &pool.health_check else { return true };
    let s = &pool.servers[i];
    let mut peer = s.peer.clone();
    peer.options.connection_timeout = Some(hc.timeout.0);
    peer.options.total_connection_timeout = Some(hc.timeout.0);
    peer.options.read_timeout = Some(hc.timeout.0);
    let attempt = async {
        let (mut session, _) = connector.get_http_session(&peer).await.ok()?;
        let mut req = RequestHeader::build("GET", hc.path.as_bytes(), None).ok()?;
        req.insert_header("host", s.name.as_str()).ok()?;
        req.insert_header("user-agent", "varco-health-check").ok()?;
        session.write_request_header(Box::new(req)).await.ok()?;
        session.finish_request_body().await.ok()?;
        session.read_response_header().await.ok()?;
        let ok = session.response_header().is_some_and(|r| r.status.is_success() || r.status.is_redirection());
        while let Ok(Some(_)) = session.read_response_body().await {}
        Some(ok)
    };
    tokio::time::timeout(hc.timeout.0, attempt).await.ok().flatten().unwrap_or(false)
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let connector = Arc::new(Connector::new(None));
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while tick_or_shutdown(&mut tick, &mut shutdown).await {
            let rt = self.0.current.load_full();
            for t in &rt.tenants {
                for pool in &t.pools {
                    let Some(hc) = &pool.health_check else { continue };
                    let now = pool.now_ms();
                    if now < pool.next_check_ms.load(Relaxed) {
                        continue;
                    }
                    pool.next_check_ms.store(now + hc.interval.0.as_millis() as u64, Relaxed);
                    for i in 0..pool.servers.len() {
                        let (pool, connector, shared, tenant) =
                            (pool.clone(), connector.clone(), self.0.clone(), t.id.clone());
                        tokio::spawn(async move {
                            let ok = check(&connector, &pool, i).await;
                            let was = pool.is_available(i);
                            pool.record_check(i, ok);
                            let now = pool.is_available(i);
                            if was != now {
                                tracing::warn!(tenant = %tenant, upstream = %pool.name, server = %pool.servers[i].name, healthy = now, "upstream server health changed");
                            }
                            shared
                                .metrics
                                .upstream_healthy
                                .with_label_values(&[&tenant, &pool.name, &pool.servers[i].name])
                                .set(i64::from(now));
                        });
                    }
                }
            }
        }
    }
}

/// Reloads on SIGHUP.
struct SighupReload(Arc<Reloader>);

#[async_trait]
impl BackgroundService for SighupReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP; reload through the admin API only");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = self.0.reload().await; }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Refreshes JWKS and the OPs' trust chains on schedule, evicts expired verified tokens and
/// `jti` marks.
struct JwksRefresh(Arc<Shared>);

#[async_trait]
impl BackgroundService for JwksRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while tick_or_shutdown(&mut tick, &mut shutdown).await {
            self.0.reg.replay.evict_expired();
            for i in self.0.reg.issuers.all() {
                if i.refresh_due() {
                    i.refresh(&self.0.fetcher).await;
                }
                i.evict_expired();
                self.0.metrics.jwks_up.with_label_values(&[&i.tenant, &i.name]).set(i64::from(i.up.load(Relaxed)));
                if let Some(age) = i.keys_age() {
                    self.0.metrics.jwks_age.with_label_values(&[&i.tenant, &i.name]).set(age.as_secs() as i64);
                }
            }
            if let Some(f) = self.0.reg.federation_in_use() {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                f.renew_due(&self.0.fetcher, now).await;
                let m = &self.0.metrics;
                for (op, at, exp) in f.chains() {
                    m.trust_chain_age.with_label_values(&[&op]).set(now.saturating_sub(at) as i64);
                    m.trust_chain_remaining.with_label_values(&[&op]).set(exp.saturating_sub(now) as i64);
                }
            }
        }
    }
}

/// The runtime the Signal Hub pullers run on: they start once it is there (and at each
/// commit of a configuration), and stop with the server.
struct SignalHubPullers(Arc<Shared>);

#[async_trait]
impl BackgroundService for SignalHubPullers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.0.reg.pullers.attach(tokio::runtime::Handle::current());
        let _ = shutdown.changed().await;
        self.0.reg.pullers.stop_all();
    }
}

/// Evicts idle rate-limit buckets and unused limiters and quotas every second.
struct LimitsGc(Arc<Shared>);

#[async_trait]
impl BackgroundService for LimitsGc {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while tick_or_shutdown(&mut tick, &mut shutdown).await {
            self.0.reg.retain_used();
            if let Some(r) = &self.0.reg.redis {
                self.0.metrics.quota_redis_up.set(i64::from(r.up.load(Relaxed)));
            }
            let (_, keys) = self.0.reg.limiters.evict_idle();
            self.0.metrics.ratelimit_keys.set(keys as i64);
        }
    }
}

/// Flushes the access log every 200 ms (and once more at shutdown).
struct AccessLogFlush(Arc<Shared>);

#[async_trait]
impl BackgroundService for AccessLogFlush {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        while tick_or_shutdown(&mut tick, &mut shutdown).await {
            self.0.access_log.flush();
        }
        self.0.access_log.flush();
    }
}

/// Runs the Kafka relay and keeps the subscription workers in line with the running
/// configuration; at shutdown stops both in order and tells the drain.
struct Events(Arc<Shared>);

#[async_trait]
impl BackgroundService for Events {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let events = &self.0.reg.events;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut generation = 0;
        let mut admin_generation = 0;
        let mut deliveries: Option<Arc<Deliveries>> = None;
        let mut relay: Option<tokio::task::JoinHandle<()>> = None;
        while tick_or_shutdown(&mut tick, &mut shutdown).await {
            let rt = self.0.current.load_full();
            let admin_now = events.admin_generation.load(Relaxed);
            if rt.generation == generation && admin_now == admin_generation {
                continue;
            }
            admin_generation = admin_now;
            if !crate::events::uses_events(&rt.config) {
                generation = rt.generation;
                if let Some(d) = &deliveries {
                    d.sync(Vec::new());
                }
                continue;
            }
            let bus = match events.open(&rt.config.server.events) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the event outbox");
                    continue;
                }
            };
            generation = rt.generation;
            if let (Some(codec), None) = (bus.kafka.clone(), &relay) {
                relay = Some(tokio::spawn(varco_events::relay::run(bus.clone(), codec, shutdown.clone())));
            }
            if deliveries.is_none() {
                match Deliveries::new(bus.clone()) {
                    Ok(d) => {
                        let _ = events.deliveries.set(d.clone());
                        deliveries = Some(d);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot start event delivery"),
                }
            }
            match (Subscription::all(&events.with_admin_subscriptions(&rt.config)), &deliveries) {
                (Ok(mut subs), Some(d)) => {
                    // `route` subscriptions hand events to that route's adapter of this runtime.
                    for s in &mut subs {
                        let Some(name) = &s.cfg.route else { continue };
                        let target = rt
                            .tenants
                            .iter()
                            .find(|t| t.id == s.tenant)
                            .and_then(|t| t.routes.iter().find(|r| &r.name == name));
                        if let Some(crate::runtime::Route { target: crate::runtime::Target::Adapter(a), .. }) = target {
                            s.sink = Some(a.clone());
                        }
                    }
                    d.sync(subs)
                }
                (Err(e), _) => tracing::error!(error = %e, "subscriptions not started"),
                _ => {}
            }
        }
        // Shutdown: workers first (their positions saved), then the relay (it saw the same
        // signal and saves its cursor after the last acknowledgements).
        if let Some(d) = deliveries {
            d.stop_all(Duration::from_secs(5)).await;
        }
        if let Some(r) = relay {
            if tokio::time::timeout(Duration::from_secs(5), r).await.is_err() {
                tracing::warn!("the Kafka relay did not stop in time");
            }
        }
        self.0.stopped.notify_one();
        self.0.background_stopped.store(true, Relaxed);
    }
}

/// After SIGTERM, exits as soon as no request is in flight and the event service has stopped,
/// instead of always sleeping the whole grace period (pingora's own behaviour, which still
/// applies as the upper bound).
struct Drain {
    shared: Arc<Shared>,
    grace: Duration,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        let started = Instant::now();
        tracing::info!(in_flight = self.shared.in_flight.load(Relaxed), "SIGTERM: draining");
        // Let listeners stop accepting and keep-alive connections see the shutdown first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while started.elapsed() < self.grace {
            if self.shared.in_flight.load(Relaxed) == 0 {
                let left = self.grace.saturating_sub(started.elapsed());
                if !self.shared.background_stopped.load(Relaxed)
                    && tokio::time::timeout(left, self.shared.stopped.notified()).await.is_err()
                {
                    tracing::warn!("the event service did not stop within the grace period");
                }
                tracing::info!(after_ms = started.elapsed().as_millis() as u64, "drained; exiting");
                self.shared.access_log.flush();
                if let Some(trail) = &self.shared.reg.audit {
                    // The last records synced and a checkpoint signed over them.
                    let trail = trail.clone();
                    let _ = tokio::task::spawn_blocking(move || trail.flush()).await;
                }
                // The last requests' spans go to the collector (at most 2 s more).
                let _ = tokio::task::spawn_blocking(|| varco_telemetry::shutdown(Duration::from_secs(2))).await;
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
