//! Prometheus metrics through the `prometheus` crate: process-wide counters
//! updated on the request path, gauges set when scraped, rendered in the
//! text exposition format at `GET /metrics`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

/// A point-in-time value set at scrape time: which gauge, its label value
/// (`""` for the unlabeled one), the value.
pub type Gauge<'a> = (GaugeKind, &'a str, f64);

/// The gauges `/metrics` reports (sizes of cache structures).
#[derive(Debug, Clone, Copy)]
pub enum GaugeKind {
    /// Bytes held by a cache tier (label: tier).
    CacheBytes,
    /// Entries held by a cache tier (label: tier).
    CacheEntries,
    /// Package downloads in progress (no label).
    FillsInFlight,
    /// Fills waiting for upload to the shared bucket (no label).
    UploadBacklog,
}

/// Upper bounds (seconds) of the upstream latency histogram.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    responses: IntCounterVec,
    bytes_served: IntCounter,
    sendfile_bytes: IntCounter,
    coalesced: IntCounter,
    upstream_requests: IntCounter,
    upstream_errors: IntCounterVec,
    upstream_latency: Histogram,
    connections_refused: IntCounter,
    header_timeouts: IntCounter,
    disk_write_failures: IntCounter,
    disk_bypassed: IntCounter,
    task_panics: IntCounter,
    /// Mirrors the logger's own count when scraped.
    log_dropped: IntCounter,
    cache_bytes: GaugeVec,
    cache_entries: GaugeVec,
    fills_in_flight: GaugeVec,
    store_requests: IntCounterVec,
    store_bytes: IntCounterVec,
    store_backlog: GaugeVec,
    peer_requests: IntCounterVec,
    peer_bytes: IntCounter,
    /// Tells instances apart in `REQUEST_COUNTERS` (tests build several;
    /// an address could be reused by the next one).
    id: usize,
}

impl Metrics {
    /// Registers every metric. Names and labels are constants, so this
    /// either always works or never does; `builds` below proves it works.
    fn build() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            prometheus::Result::Ok(c)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            prometheus::Result::Ok(g)
        };
        let upstream_latency = Histogram::with_opts(
            HistogramOpts::new(
                "feedcache_upstream_seconds",
                "Time to upstream response headers.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(upstream_latency.clone()))?;
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Ok(Metrics {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            requests: counter_vec(
                "feedcache_requests_total",
                "Requests by route kind, cache status and body source.",
                &["route", "cache", "tier"],
            )?,
            responses: counter_vec(
                "feedcache_responses_total",
                "Responses by status code.",
                &["status"],
            )?,
            bytes_served: counter(
                "feedcache_bytes_served_total",
                "Body bytes sent to clients.",
            )?,
            sendfile_bytes: counter(
                "feedcache_sendfile_bytes_total",
                "Body bytes sent by sendfile(2), part of feedcache_bytes_served_total.",
            )?,
            coalesced: counter(
                "feedcache_coalesced_waiters_total",
                "Requests that joined a fetch already in flight.",
            )?,
            upstream_requests: counter(
                "feedcache_upstream_requests_total",
                "Requests sent upstream.",
            )?,
            upstream_errors: counter_vec(
                "feedcache_upstream_errors_total",
                "Upstream failures by kind.",
                &["kind"],
            )?,
            upstream_latency,
            connections_refused: counter(
                "feedcache_connections_refused_total",
                "Connections refused at the connection cap (every slot busy).",
            )?,
            header_timeouts: counter(
                "feedcache_header_timeouts_total",
                "Request headers not complete within connections.header_timeout.",
            )?,
            disk_write_failures: counter(
                "feedcache_disk_write_failures_total",
                "Writes to the cache disk that failed (full, read-only, ...).",
            )?,
            disk_bypassed: counter(
                "feedcache_disk_bypassed_total",
                "Misses served from the upstream uncached because the cache disk was not writable.",
            )?,
            task_panics: counter(
                "feedcache_background_panics_total",
                "Background task rounds (eviction, sync) that panicked and were restarted.",
            )?,
            log_dropped: counter(
                "feedcache_log_lines_dropped_total",
                "Log lines dropped because the log writer fell behind.",
            )?,
            cache_bytes: gauge_vec(
                "feedcache_cache_bytes",
                "Bytes held by a cache tier.",
                &["tier"],
            )?,
            cache_entries: gauge_vec(
                "feedcache_cache_entries",
                "Entries held by a cache tier.",
                &["tier"],
            )?,
            fills_in_flight: gauge_vec(
                "feedcache_fills_in_flight",
                "Package downloads from upstreams in progress.",
                &[],
            )?,
            store_requests: counter_vec(
                "feedcache_store_requests_total",
                "Requests to the shared bucket by operation and result.",
                &["op", "result"],
            )?,
            store_bytes: counter_vec(
                "feedcache_store_bytes_total",
                "Entry bytes read from or written to the shared bucket.",
                &["op"],
            )?,
            store_backlog: gauge_vec(
                "feedcache_store_upload_backlog",
                "Fills waiting for upload to the shared bucket.",
                &[],
            )?,
            peer_requests: counter_vec(
                "feedcache_peer_requests_total",
                "Misses asked of the owner node, by result (ok, error).",
                &["result"],
            )?,
            peer_bytes: counter(
                "feedcache_peer_bytes_total",
                "Body bytes received from owner nodes.",
            )?,
            registry,
        })
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    Metrics::build().unwrap_or_else(|e| unreachable!("constant metric names (tested): {e}"))
});

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The counters in use for `Metrics::request` on this thread, by the
/// metrics' id, where the label values are (address and length: static
/// strings, a handful of entries) and the status. Hashed with foldhash,
/// not SipHash: the keys are our own addresses and statuses, nothing a
/// client can choose to collide, and SipHash over them was 0.5% of a
/// 10 KB hit's samples.
type RequestCounters = HashMap<
    (usize, [(usize, usize); 3], u16),
    (IntCounter, IntCounter),
    foldhash::fast::RandomState,
>;

thread_local! {
    static REQUEST_COUNTERS: RefCell<RequestCounters> = RefCell::new(HashMap::default());
}

/// Status codes as label values, formatted once (not once per request).
static STATUS_LABELS: LazyLock<Vec<String>> =
    LazyLock::new(|| (100..600u16).map(|c| c.to_string()).collect());

fn status_label(status: u16) -> &'static str {
    status
        .checked_sub(100)
        .and_then(|i| STATUS_LABELS.get(usize::from(i)))
        .map_or("other", String::as_str)
}

impl Metrics {
    /// One finished request: route kind, `X-Cache` status, where the body
    /// came from (`memory`, `disk`, `upstream`, `package`, `-`), status, bytes.
    pub fn request(
        &self,
        route: &'static str,
        cache: &'static str,
        tier: &'static str,
        status: u16,
        bytes: u64,
    ) {
        // The labelled counters are looked up once per thread and label
        // set: `with_label_values` hashes the labels under a lock both
        // workers share and clones the counter's `Arc`, per request.
        let at = |s: &str| (s.as_ptr() as usize, s.len());
        let id = (self.id, [at(route), at(cache), at(tier)], status);
        REQUEST_COUNTERS.with_borrow_mut(|seen| {
            let (requests, responses) = seen.entry(id).or_insert_with(|| {
                (
                    self.requests.with_label_values(&[route, cache, tier]),
                    self.responses.with_label_values(&[status_label(status)]),
                )
            });
            requests.inc();
            responses.inc();
        });
        self.bytes_served.inc_by(bytes);
    }

    /// Requests answered as hits, misses and stale hits so far.
    pub fn cache_counts(&self) -> (u64, u64, u64) {
        let mut out = (0, 0, 0);
        for family in self.requests.collect() {
            for m in family.get_metric() {
                let cache = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "cache")
                    .map(|l| l.value().to_owned());
                let n = m.get_counter().get_value() as u64;
                match cache.as_deref() {
                    Some("HIT" | "REVALIDATED") => out.0 += n,
                    Some("MISS") => out.1 += n,
                    Some("STALE") => out.2 += n,
                    _ => {}
                }
            }
        }
        out
    }

    /// Body bytes that left by `sendfile` (the `sendfile` setting at work).
    pub fn sendfile_bytes(&self, n: u64) {
        self.sendfile_bytes.inc_by(n);
    }

    /// A connection was refused at the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A request header missed its deadline.
    pub fn header_timeout(&self) {
        self.header_timeouts.inc();
    }

    /// A write to the cache disk failed.
    pub fn disk_write_failed(&self) {
        self.disk_write_failures.inc();
    }

    /// A miss was streamed from the upstream uncached (disk not writable).
    pub fn disk_bypassed(&self) {
        self.disk_bypassed.inc();
    }

    /// A background task round panicked.
    pub fn task_panicked(&self) {
        self.task_panics.inc();
    }

    /// A request joined a fetch already in flight instead of starting one.
    pub fn coalesced(&self) {
        self.coalesced.inc();
    }

    /// One upstream request and how long it took to its response headers.
    pub fn upstream(&self, elapsed: Duration, error: Option<&'static str>) {
        self.upstream_requests.inc();
        if let Some(kind) = error {
            self.upstream_errors.with_label_values(&[kind]).inc();
        }
        self.upstream_latency.observe(elapsed.as_secs_f64());
    }

    /// One request to the shared bucket: `op` get or put, `result` hit,
    /// miss, rejected (failed its checks), ok, error or dropped (queue full).
    pub fn store(&self, op: &'static str, result: &'static str, bytes: u64) {
        self.store_requests.with_label_values(&[op, result]).inc();
        if bytes > 0 {
            self.store_bytes.with_label_values(&[op]).inc_by(bytes);
        }
    }

    /// One miss asked of its owner node.
    pub fn peer(&self, result: &'static str) {
        self.peer_requests.with_label_values(&[result]).inc();
    }

    /// Bytes of one body received from its owner node.
    pub fn peer_bytes(&self, n: u64) {
        self.peer_bytes.inc_by(n);
    }

    /// The text exposition format, after setting `gauges` (point-in-time
    /// values supplied by the caller).
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        for (kind, label, value) in gauges {
            let (vec, labels): (&GaugeVec, &[&str]) = match kind {
                GaugeKind::CacheBytes => (&self.cache_bytes, &[label]),
                GaugeKind::CacheEntries => (&self.cache_entries, &[label]),
                GaugeKind::FillsInFlight => (&self.fills_in_flight, &[]),
                GaugeKind::UploadBacklog => (&self.store_backlog, &[]),
            };
            vec.with_label_values(labels).set(*value);
        }
        let dropped = crate::logging::dropped_lines();
        self.log_dropped
            .inc_by(dropped.saturating_sub(self.log_dropped.get()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot render metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds() {
        assert!(Metrics::build().is_ok());
    }

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::build().unwrap();
        m.request("flat_file", "HIT", "memory", 200, 10);
        m.request("flat_file", "HIT", "memory", 200, 5);
        m.request("flat_file", "MISS", "upstream", 499, 0);
        m.coalesced();
        m.upstream(Duration::from_millis(20), None);
        m.upstream(Duration::from_secs(3), Some("timeout"));
        let text = m.render(&[
            (GaugeKind::CacheBytes, "memory", 42.0),
            (GaugeKind::FillsInFlight, "", 1.0),
        ]);
        for want in [
            "feedcache_requests_total{cache=\"HIT\",route=\"flat_file\",tier=\"memory\"} 2",
            "feedcache_responses_total{status=\"200\"} 2",
            "feedcache_responses_total{status=\"499\"} 1",
            "feedcache_bytes_served_total 15",
            "feedcache_coalesced_waiters_total 1",
            "feedcache_upstream_errors_total{kind=\"timeout\"} 1",
            "feedcache_upstream_seconds_bucket{le=\"0.025\"} 1",
            "feedcache_upstream_seconds_bucket{le=\"+Inf\"} 2",
            "feedcache_cache_bytes{tier=\"memory\"} 42",
            "feedcache_fills_in_flight 1",
            "# TYPE feedcache_disk_bypassed_total counter",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert_eq!(m.cache_counts(), (2, 1, 0));
    }

    /// The per-thread counter lookup keeps instances apart and counts a
    /// label value by its content wherever it is stored.
    #[test]
    fn counters_are_per_instance_and_by_label_content() {
        let (a, b) = (Metrics::build().unwrap(), Metrics::build().unwrap());
        let elsewhere: &'static str = Box::leak(String::from("HIT").into_boxed_str());
        // A label that starts where another one does is still another label.
        let longer: &'static str = Box::leak(String::from("MISSED").into_boxed_str());
        let (miss, missed) = (&longer[..4], longer);
        for (m, cache) in [(&a, "HIT"), (&a, elsewhere), (&b, miss), (&b, missed)] {
            m.request("flat_file", cache, "memory", 200, 1);
        }
        assert_eq!(a.cache_counts(), (2, 0, 0));
        assert_eq!(b.cache_counts(), (0, 1, 0));
        assert!(b.render(&[]).contains(
            "feedcache_requests_total{cache=\"MISSED\",route=\"flat_file\",tier=\"memory\"} 1"
        ));
    }
}
