//! The export queue: finished spans go into a bounded channel (never waiting: a full queue
//! drops the span and counts it), and one thread of its own batches them and hands each batch
//! to the OTLP exporter on a small runtime, so exporting neither slows nor fails a request.
//!
//! The thread is not woken per span (a futex wake and two context switches per span cost more
//! than the span): it sleeps until `batch_delay` passes or a request thread sees a whole batch
//! queued, then drains the channel.
//!
//! The SDK's own batch processor runs its exporter without a Tokio reactor, which varco's
//! hyper-based client needs, and keeps its drop count to itself; hence this one.

use crate::Settings;
use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Spans exported, dropped (queue full) and lost in failed exports, since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

enum Msg {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
    /// Export what is queued, answer and stop.
    Stop(SyncSender<()>),
}

/// The span processor the tracer provider calls.
#[derive(Debug)]
pub(crate) struct QueueProcessor {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
    /// The resource, handed to the thread before the first batch.
    resource: SyncSender<Resource>,
    /// Spans queued since the thread last drained: a whole batch wakes it.
    queued: Arc<AtomicUsize>,
    batch_size: usize,
    thread: std::thread::Thread,
}

impl QueueProcessor {
    pub(crate) fn start<E: SpanExporter + 'static>(
        exporter: E,
        s: &Settings,
    ) -> std::io::Result<(Self, Arc<Counters>)> {
        let (tx, rx) = sync_channel(s.queue_size);
        let (resource_tx, resource_rx) = sync_channel(1);
        let counters = Arc::new(Counters::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            exporter,
            rx,
            resource: resource_rx,
            counters: counters.clone(),
            queued: queued.clone(),
            batch_size: s.batch_size,
            delay: s.batch_delay,
            timeout: s.timeout.unwrap_or(Duration::from_secs(10)),
            failing: false,
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = std::thread::Builder::new().name("varco-otlp".into()).spawn(move || worker.run(&rt))?;
        let thread = handle.thread().clone();
        let p =
            Self { tx, counters: counters.clone(), resource: resource_tx, queued, batch_size: s.batch_size, thread };
        Ok((p, counters))
    }

    fn ask(&self, make: fn(SyncSender<()>) -> Msg, timeout: Duration) -> OTelSdkResult {
        let (ack, done) = sync_channel(1);
        let started = Instant::now();
        // The queue may be full: the thread, woken, makes room.
        let mut msg = make(ack);
        loop {
            self.thread.unpark();
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if started.elapsed() < timeout => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(timeout)),
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
            }
        }
        self.thread.unpark();
        done.recv_timeout(timeout.saturating_sub(started.elapsed())).map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.tx.try_send(Msg::Span(Box::new(span))) {
            Ok(()) => {
                if self.queued.fetch_add(1, Ordering::Relaxed) + 1 == self.batch_size {
                    self.thread.unpark();
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Msg::Flush, Duration::from_secs(30))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Msg::Stop, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.resource.try_send(resource.clone());
    }
}

struct Worker<E> {
    exporter: E,
    rx: Receiver<Msg>,
    resource: Receiver<Resource>,
    counters: Arc<Counters>,
    queued: Arc<AtomicUsize>,
    batch_size: usize,
    delay: Duration,
    timeout: Duration,
    /// Whether the last export failed (a failure is logged once, not per batch).
    failing: bool,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self, rt: &tokio::runtime::Runtime) {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            // Woken by a whole batch, a flush or a stop; else every `delay`.
            std::thread::park_timeout(self.delay);
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Span(s)) => {
                        self.queued.fetch_sub(1, Ordering::Relaxed);
                        batch.push(*s);
                        if batch.len() >= self.batch_size {
                            self.export(rt, &mut batch);
                        }
                    }
                    Ok(Msg::Flush(ack)) => {
                        self.export(rt, &mut batch);
                        let _ = ack.send(());
                    }
                    Ok(Msg::Stop(ack)) => {
                        self.export(rt, &mut batch);
                        let _ = rt.block_on(async { self.exporter.shutdown() });
                        let _ = ack.send(());
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.export(rt, &mut batch);
                        return;
                    }
                }
            }
            self.export(rt, &mut batch);
        }
    }

    fn export(&mut self, rt: &tokio::runtime::Runtime, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        if let Ok(r) = self.resource.try_recv() {
            self.exporter.set_resource(&r);
        }
        let n = batch.len() as u64;
        let spans = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
        let timeout = self.timeout;
        let outcome = rt.block_on(async { tokio::time::timeout(timeout, self.exporter.export(spans)).await });
        match outcome {
            Ok(Ok(())) => {
                self.counters.exported.fetch_add(n, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    tracing::info!("tracing: spans are exported again");
                }
            }
            Ok(Err(e)) => self.failed(n, &e.to_string()),
            Err(_) => self.failed(n, "timed out"),
        }
    }

    fn failed(&mut self, n: u64, why: &str) {
        self.counters.failed.fetch_add(n, Ordering::Relaxed);
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(error = %why, spans = n, "tracing: the collector did not take a batch of spans");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use parking_lot::Mutex;

    /// A mock exporter for these unit tests: keeps batches, or fails, or stalls.
    #[derive(Debug, Clone, Default)]
    struct MockExporter {
        batches: Arc<Mutex<Vec<usize>>>,
        fail: bool,
        stall: Option<Duration>,
    }

    impl SpanExporter for MockExporter {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if let Some(d) = self.stall {
                tokio::time::sleep(d).await;
            }
            if self.fail {
                return Err(OTelSdkError::InternalFailure("collector down".into()));
            }
            self.batches.lock().push(batch.len());
            Ok(())
        }
    }

    fn settings(queue: usize, batch: usize) -> Settings {
        Settings {
            endpoint: None,
            headers: Default::default(),
            sampler: None,
            service_name: "t".into(),
            queue_size: queue,
            batch_size: batch,
            batch_delay: Duration::from_millis(20),
            timeout: Some(Duration::from_millis(200)),
        }
    }

    fn provider(e: MockExporter, s: &Settings) -> (opentelemetry_sdk::trace::SdkTracerProvider, Arc<Counters>) {
        let (p, c) = QueueProcessor::start(e, s).unwrap();
        (opentelemetry_sdk::trace::SdkTracerProvider::builder().with_span_processor(p).build(), c)
    }

    #[test]
    fn spans_are_batched_and_flushed() {
        let e = MockExporter::default();
        let (p, c) = provider(e.clone(), &settings(100, 4));
        let t = p.tracer("t");
        for _ in 0..10 {
            t.start("s").end();
        }
        p.force_flush().unwrap();
        assert_eq!(c.snapshot().exported, 10);
        assert!(e.batches.lock().iter().all(|&n| n <= 4), "{:?}", e.batches.lock());
        p.shutdown().unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let e = MockExporter { stall: Some(Duration::from_millis(150)), ..Default::default() };
        let (p, c) = provider(e, &settings(2, 1));
        let t = p.tracer("t");
        for _ in 0..50 {
            t.start("s").end();
        }
        // Ending spans never waited for the stalled exporter: what did not fit was dropped.
        assert!(c.snapshot().dropped >= 40, "{:?}", c.snapshot());
        p.shutdown_with_timeout(Duration::from_secs(5)).unwrap();
        let s = c.snapshot();
        assert_eq!(s.dropped + s.exported + s.failed, 50, "{s:?}");
    }

    #[test]
    fn failed_and_stalled_exports_are_counted() {
        let (p, c) = provider(MockExporter { fail: true, ..Default::default() }, &settings(10, 10));
        p.tracer("t").start("s").end();
        p.force_flush().unwrap();
        assert_eq!(c.snapshot(), Stats { exported: 0, dropped: 0, failed: 1 });
        let (p, c) =
            provider(MockExporter { stall: Some(Duration::from_secs(5)), ..Default::default() }, &settings(10, 10));
        p.tracer("t").start("s").end();
        p.force_flush().unwrap();
        assert_eq!(c.snapshot().failed, 1, "the 200 ms export timeout gave up on the stalled collector");
    }
}
